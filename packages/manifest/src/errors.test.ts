import { describe, expect, it } from "vitest";
import { ManifestError } from "./errors.js";

describe("ManifestError", () => {
  it("carries a code and a cause, and is recognised across package copies", () => {
    const cause = new Error("root cause");
    const error = new ManifestError("E_INPUT", "bad input", { cause });
    expect(error.code).toBe("E_INPUT");
    expect(error.cause).toBe(cause);
    expect(ManifestError.isInstance(error)).toBe(true);
    // A structurally identical error from another copy of the package is still recognised.
    const foreign = Object.assign(new Error("x"), {
      name: "ManifestError",
      [Symbol.for("forge.error")]: true,
    });
    expect(ManifestError.isInstance(foreign)).toBe(true);
    expect(ManifestError.isInstance(new Error("plain"))).toBe(false);
  });
});
