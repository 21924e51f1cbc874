import { type ForgeError, packageError } from "@forge/core";

export type ModelErrorCode =
  /** FORGE_BACKEND or the backend option names no backend */
  | "E_BACKEND_UNKNOWN"
  /** FORGE_WASM_THREADS or the wasmThreads option is not a thread count */
  | "E_BACKEND_THREADS"
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
  /** a model too large for the backend's memory (refused before loading) */
  | "E_TOO_LARGE"
  /** a file or directory that cannot be read or written */
  | "E_IO"
  /** training stopped: non-finite loss, or an inconsistent resume */
  | "E_TRAINING"
  /** the training loss became NaN or infinite: the run did not converge (exit 1, like a failed gate) */
  | "E_DIVERGED";

/**
 * The one error type @forge/model throws: a @forge/core ForgeError (its category — E_IO an io
 * error, the rest bad input unless said otherwise — decides the CLI's exit code); `message`
 * names the file, field or line at fault and what would be accepted.
 */
export const ModelError = packageError<ModelErrorCode>("ModelError");
export type ModelError = ForgeError<ModelErrorCode>;
