import { ForgeError, type ForgeErrorOptions } from "@forge/core";

export type ManifestErrorCode =
  /** a bad argument */
  | "E_INPUT"
  /** a manifest that does not match the schema (the message lists each path) */
  | "E_SCHEMA"
  /** a file that cannot be read or written */
  | "E_IO";

/**
 * The one error type @forge/manifest throws. `code` is stable and machine-readable; the category
 * (from @forge/core: E_IO is an io error, the rest bad input unless said otherwise) decides the
 * CLI's exit code; `message` names the file, field or line at fault and what would be accepted.
 */
export class ManifestError extends ForgeError<ManifestErrorCode> {
  constructor(code: ManifestErrorCode, message: string, options?: ForgeErrorOptions) {
    super(code, message, options);
    this.name = "ManifestError";
  }

  /** True for a ManifestError even when two copies of this package are installed. */
  static override isInstance(error: unknown): error is ManifestError {
    return ForgeError.isInstance(error) && (error as Error).name === "ManifestError";
  }
}
