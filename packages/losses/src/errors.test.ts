import { describe, expect, it } from "vitest";
import { LossError } from "./errors.js";

describe("LossError", () => {
  it("carries a code and a cause, and is recognised across package copies", () => {
    const cause = new Error("root cause");
    const error = new LossError("E_INPUT", "bad input", { cause });
    expect(error.code).toBe("E_INPUT");
    expect(error.cause).toBe(cause);
    expect(LossError.isInstance(error)).toBe(true);
    // A structurally identical error from another copy of the package is still recognised.
    const foreign = Object.assign(new Error("x"), {
      name: "LossError",
      [Symbol.for("forge.error")]: true,
    });
    expect(LossError.isInstance(foreign)).toBe(true);
    expect(LossError.isInstance(new Error("plain"))).toBe(false);
  });
});
