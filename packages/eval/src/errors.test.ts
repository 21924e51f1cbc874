import { describe, expect, it } from "vitest";
import { EvaluationError } from "./errors.js";

describe("EvaluationError", () => {
  it("carries a code and a cause, and is recognised across package copies", () => {
    const cause = new Error("root cause");
    const error = new EvaluationError("E_INPUT", "bad input", { cause });
    expect(error.code).toBe("E_INPUT");
    expect(error.cause).toBe(cause);
    expect(EvaluationError.isInstance(error)).toBe(true);
    // A structurally identical error from another copy of the package is still recognised.
    const foreign = Object.assign(new Error("x"), {
      name: "EvaluationError",
      [Symbol.for("forge.error")]: true,
    });
    expect(EvaluationError.isInstance(foreign)).toBe(true);
    expect(EvaluationError.isInstance(new Error("plain"))).toBe(false);
  });
});
