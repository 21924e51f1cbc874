const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/manifest. */
export type ManifestErrorCode =
  /** a bad argument */
  | "E_INPUT"
  /** a manifest that does not match the schema (the message lists each path) */
  | "E_SCHEMA"
  /** a file that cannot be read or written */
  | "E_IO";

/**
 * The one error type @forge/manifest throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class ManifestError extends Error {
  readonly code: ManifestErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: ManifestErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ManifestError";
    this.code = code;
  }

  /** True for a ManifestError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is ManifestError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "ManifestError"
    );
  }
}
