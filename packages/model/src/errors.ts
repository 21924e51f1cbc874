import { ForgeError, type ForgeErrorOptions } from "@forge/core";

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
  | "E_TRAINING"
  /** the training loss became NaN or infinite: the run did not converge (exit 1, like a failed gate) */
  | "E_DIVERGED";

/**
 * The one error type @forge/model throws. `code` is stable and machine-readable; the category
 * (from @forge/core: E_IO is an io error, the rest bad input unless said otherwise) decides the
 * CLI's exit code; `message` names the file, field or line at fault and what would be accepted.
 */
export class ModelError extends ForgeError<ModelErrorCode> {
  constructor(code: ModelErrorCode, message: string, options?: ForgeErrorOptions) {
    super(code, message, options);
    this.name = "ModelError";
  }

  /** True for a ModelError even when two copies of this package are installed. */
  static override isInstance(error: unknown): error is ModelError {
    return ForgeError.isInstance(error) && (error as Error).name === "ModelError";
  }
}
