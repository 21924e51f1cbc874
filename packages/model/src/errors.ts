const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/model. */
export type ModelErrorCode =
  | "E_BACKEND_UNKNOWN"
  | "E_BACKEND_UNAVAILABLE"
  | "E_BACKEND_LOCKED"
  | "E_KERNEL_INPUT";

/**
 * The one error type @forge/model throws for bad input or an unusable environment.
 * `code` is stable and machine-readable; `message` says what was wrong and what is accepted.
 */
export class ModelError extends Error {
  readonly code: ModelErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: ModelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ModelError";
    this.code = code;
  }

  /** True for a ModelError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is ModelError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "ModelError"
    );
  }
}
