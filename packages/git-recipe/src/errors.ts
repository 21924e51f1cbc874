const FORGE_ERROR = Symbol.for("forge.error");

/**
 * Error codes raised by @forge/git-recipe: bad input (a file, a name, a flag), not a bake
 * repository, a git failure, a repository locked by another run, a model the store lacks.
 */
export type RecipeErrorCode =
  | "E_INPUT"
  | "E_NOT_REPO"
  | "E_GIT"
  | "E_LOCKED"
  | "E_STORE"
  | "E_STATE";

/**
 * The one error type @forge/git-recipe throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class RecipeError extends Error {
  readonly code: RecipeErrorCode;
  /** For input files: every problem, with its path and position. */
  readonly problems?: { path: string; message: string; line?: number; column?: number }[];
  readonly [FORGE_ERROR] = true;

  constructor(
    code: RecipeErrorCode,
    message: string,
    options?: { cause?: unknown; problems?: RecipeError["problems"] },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "RecipeError";
    this.code = code;
    if (options?.problems) this.problems = options.problems;
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
