import { type ForgeError, packageError } from "@forge/core";

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
 * The one error type @forge/tokenizer throws: a @forge/core ForgeError (its category — E_IO an io
 * error, the rest bad input unless said otherwise — decides the CLI's exit code); `message`
 * names the file, field or line at fault and what would be accepted.
 */
export const TokenizerError = packageError<TokenizerErrorCode>("TokenizerError");
export type TokenizerError = ForgeError<TokenizerErrorCode>;
