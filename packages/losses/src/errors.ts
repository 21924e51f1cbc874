const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/losses. */
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
 * The one error type @forge/losses throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class LossError extends Error {
  readonly code: LossErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: LossErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LossError";
    this.code = code;
  }

  /** True for a LossError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is LossError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "LossError"
    );
  }
}
