const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/git-recipe. */
export type RecipeErrorCode = "E_INPUT";

/**
 * The one error type @forge/git-recipe throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class RecipeError extends Error {
  readonly code: RecipeErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: RecipeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RecipeError";
    this.code = code;
  }

  /** True for a RecipeError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is RecipeError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "RecipeError"
    );
  }
}
