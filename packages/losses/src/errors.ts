import { ForgeError, type ForgeErrorOptions } from "@forge/core";

export type LossErrorCode =
  /** an argument out of range (β, temperature, reduction) */
  | "E_INPUT"
  /** tensors whose shapes do not fit together */
  | "E_SHAPE"
  /** a tensor of the wrong dtype */
  | "E_DTYPE"
  /** top-K data that cannot describe the vocabulary (K larger than it, mismatched ids) */
  | "E_TOPK";

/**
 * The one error type @forge/losses throws. `code` is stable and machine-readable; the category
 * (from @forge/core: E_IO is an io error, the rest bad input unless said otherwise) decides the
 * CLI's exit code; `message` names the file, field or line at fault and what would be accepted.
 */
export class LossError extends ForgeError<LossErrorCode> {
  constructor(code: LossErrorCode, message: string, options?: ForgeErrorOptions) {
    super(code, message, options);
    this.name = "LossError";
  }

  /** True for a LossError even when two copies of this package are installed. */
  static override isInstance(error: unknown): error is LossError {
    return ForgeError.isInstance(error) && (error as Error).name === "LossError";
  }
}
