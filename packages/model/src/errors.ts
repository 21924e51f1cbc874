const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/model. */
export type ModelErrorCode =
  /** FORGE_BACKEND or the backend option names no backend */
  | "E_BACKEND_UNKNOWN"
  /** a forced backend cannot load */
  | "E_BACKEND_UNAVAILABLE"
  /** another backend is already initialised in this process */
  | "E_BACKEND_LOCKED"
  /** bad input to a kernel */
  | "E_KERNEL_INPUT"
  /** an invalid model configuration (config.json, options) */
  | "E_CONFIG"
  /** bad input to the model: ids out of range, wrong shapes, bad generation options */
  | "E_INPUT"
  /** a malformed file: safetensors, adapter, checkpoint, token shards */
  | "E_FORMAT"
  /** a file or directory that cannot be read or written */
  | "E_IO"
  /** training stopped: non-finite loss, or an inconsistent resume */
  | "E_TRAINING";

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
