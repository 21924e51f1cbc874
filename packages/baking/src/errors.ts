import { ForgeError, type ForgeErrorOptions } from "@forge/core";

export type BakingErrorCode =
  /** a bad argument: empty prompt, unknown generator, settings out of range */
  | "E_INPUT"
  /** a malformed stimulus or rollout file (the message names the line) */
  | "E_FORMAT"
  /** a prompt or trajectory that does not fit the model's context window */
  | "E_CONTEXT"
  /** a file or directory that cannot be read or written */
  | "E_IO";

/**
 * The one error type @forge/baking throws. `code` is stable and machine-readable; the category
 * (from @forge/core: E_IO is an io error, the rest bad input unless said otherwise) decides the
 * CLI's exit code; `message` names the file, field or line at fault and what would be accepted.
 */
export class BakingError extends ForgeError<BakingErrorCode> {
  constructor(code: BakingErrorCode, message: string, options?: ForgeErrorOptions) {
    super(code, message, options);
    this.name = "BakingError";
  }

  /** True for a BakingError even when two copies of this package are installed. */
  static override isInstance(error: unknown): error is BakingError {
    return ForgeError.isInstance(error) && (error as Error).name === "BakingError";
  }
}
