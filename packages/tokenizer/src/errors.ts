const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/tokenizer. */
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
 * The one error type @forge/tokenizer throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class TokenizerError extends Error {
  readonly code: TokenizerErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: TokenizerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenizerError";
    this.code = code;
  }

  /** True for a TokenizerError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is TokenizerError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "TokenizerError"
    );
  }
}
