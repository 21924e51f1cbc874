import { describe, expect, it } from "vitest";
import { RecipeError } from "./errors.js";

describe("RecipeError", () => {
  it("carries a code and a cause, and is recognised across package copies", () => {
    const cause = new Error("root cause");
    const error = new RecipeError("E_INPUT", "bad input", { cause });
    expect(error.code).toBe("E_INPUT");
    expect(error.cause).toBe(cause);
    expect(RecipeError.isInstance(error)).toBe(true);
    // A structurally identical error from another copy of the package is still recognised.
    const foreign = Object.assign(new Error("x"), {
      name: "RecipeError",
      [Symbol.for("forge.error")]: true,
    });
    expect(RecipeError.isInstance(foreign)).toBe(true);
    expect(RecipeError.isInstance(new Error("plain"))).toBe(false);
  });
});
