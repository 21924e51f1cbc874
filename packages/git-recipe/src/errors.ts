import { ForgeError, type ForgeErrorOptions, type LocatedProblem } from "@forge/core";

/** Error codes raised by @forge/git-recipe: bad input, not a bake repository, a git failure, a lock held by another run, a model the store lacks, inconsistent state. */
export type RecipeErrorCode =
  | "E_INPUT"
  | "E_NOT_REPO"
  | "E_GIT"
  | "E_LOCKED"
  | "E_STORE"
  | "E_STATE";

/**
 * The one error type @forge/git-recipe throws. `code` is stable and machine-readable; the
 * category (from @forge/core) decides the CLI's exit code; `problems` lists every problem of an
 * input file with its path and position.
 */
export class RecipeError extends ForgeError<RecipeErrorCode> {
  readonly problems?: LocatedProblem[];

  constructor(
    code: RecipeErrorCode,
    message: string,
    options: ForgeErrorOptions & { problems?: LocatedProblem[] } = {},
  ) {
    super(code, message, options);
    this.name = "RecipeError";
    if (options.problems) this.problems = options.problems;
  }

  /** True for a RecipeError even when two copies of this package are installed. */
  static override isInstance(error: unknown): error is RecipeError {
    return ForgeError.isInstance(error) && (error as Error).name === "RecipeError";
  }
}
