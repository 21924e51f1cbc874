import { ForgeError, type ForgeErrorOptions } from "@forge/core";

export type TokenizerErrorCode =
  /** bad argument: vocabulary size, empty corpus, unknown option value */
  | "E_INPUT"
  /** a special token appeared in text where it was not allowed */
  | "E_SPECIAL_TOKEN"
  /** an id that is not in the vocabulary */
  | "E_UNKNOWN_ID"
  /** a malformed tokenizer file (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json) */
  | "E_FORMAT"
  /** a file could not be read or written */
  | "E_IO";

/**
 * The one error type @forge/tokenizer throws. `code` is stable and machine-readable; the category
 * (from @forge/core: E_IO is an io error, the rest bad input unless said otherwise) decides the
 * CLI's exit code; `message` names the file, field or line at fault and what would be accepted.
 */
export class TokenizerError extends ForgeError<TokenizerErrorCode> {
  constructor(code: TokenizerErrorCode, message: string, options?: ForgeErrorOptions) {
    super(code, message, options);
    this.name = "TokenizerError";
  }

  /** True for a TokenizerError even when two copies of this package are installed. */
  static override isInstance(error: unknown): error is TokenizerError {
    return ForgeError.isInstance(error) && (error as Error).name === "TokenizerError";
  }
}
