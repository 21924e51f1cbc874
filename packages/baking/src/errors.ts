import { type ForgeError, packageError } from "@forge/core";

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
 * The one error type @forge/baking throws: a @forge/core ForgeError (its category — E_IO an io
 * error, the rest bad input unless said otherwise — decides the CLI's exit code); `message`
 * names the file, field or line at fault and what would be accepted.
 */
export const BakingError = packageError<BakingErrorCode>("BakingError");
export type BakingError = ForgeError<BakingErrorCode>;
