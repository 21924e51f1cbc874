import { describe, expect, it } from "vitest";
import { BakingError } from "./errors.js";

describe("BakingError", () => {
  it("carries a code and a cause, and is recognised across package copies", () => {
    const cause = new Error("root cause");
    const error = new BakingError("E_INPUT", "bad input", { cause });
    expect(error.code).toBe("E_INPUT");
    expect(error.cause).toBe(cause);
    expect(BakingError.isInstance(error)).toBe(true);
    // A structurally identical error from another copy of the package is still recognised.
    const foreign = Object.assign(new Error("x"), {
      name: "BakingError",
      [Symbol.for("forge.error")]: true,
    });
    expect(BakingError.isInstance(foreign)).toBe(true);
    expect(BakingError.isInstance(new Error("plain"))).toBe(false);
  });
});
