import { type ForgeError, packageError } from "@forge/core";

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
 * The one error type @forge/losses throws: a @forge/core ForgeError (its category — E_IO an io
 * error, the rest bad input unless said otherwise — decides the CLI's exit code); `message`
 * names the file, field or line at fault and what would be accepted.
 */
export const LossError = packageError<LossErrorCode>("LossError");
export type LossError = ForgeError<LossErrorCode>;
