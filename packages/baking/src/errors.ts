const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/baking. */
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
 * The one error type @forge/baking throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class BakingError extends Error {
  readonly code: BakingErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: BakingErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BakingError";
    this.code = code;
  }

  /** True for a BakingError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is BakingError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "BakingError"
    );
  }
}
