import { describe, expect, it } from "vitest";
import { TokenizerError } from "./errors.js";

describe("TokenizerError", () => {
  it("carries a code and a cause, and is recognised across package copies", () => {
    const cause = new Error("root cause");
    const error = new TokenizerError("E_INPUT", "bad input", { cause });
    expect(error.code).toBe("E_INPUT");
    expect(error.cause).toBe(cause);
    expect(TokenizerError.isInstance(error)).toBe(true);
    // A structurally identical error from another copy of the package is still recognised.
    const foreign = Object.assign(new Error("x"), {
      name: "TokenizerError",
      [Symbol.for("forge.error")]: true,
    });
    expect(TokenizerError.isInstance(foreign)).toBe(true);
    expect(TokenizerError.isInstance(new Error("plain"))).toBe(false);
  });
});
