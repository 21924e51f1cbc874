import { type ForgeError, packageError } from "@forge/core";

export type ManifestErrorCode =
  /** a bad argument */
  | "E_INPUT"
  /** a manifest that does not match the schema (the message lists each path) */
  | "E_SCHEMA"
  /** a file that cannot be read or written */
  | "E_IO";

/**
 * The one error type @forge/manifest throws: a @forge/core ForgeError (its category — E_IO an io
 * error, the rest bad input unless said otherwise — decides the CLI's exit code); `message`
 * names the file, field or line at fault and what would be accepted.
 */
export const ManifestError = packageError<ManifestErrorCode>("ManifestError");
export type ManifestError = ForgeError<ManifestErrorCode>;
