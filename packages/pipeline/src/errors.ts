import { type ForgeError, packageError } from "@forge/core";

export type PipelineErrorCode =
  /** a repository, option or profile that cannot be used (the message says which and why) */
  | "E_INPUT"
  /** a pipeline directory whose state does not match what a resume expects */
  | "E_STATE";

/**
 * The error @forge/pipeline throws (a @forge/core ForgeError: bad input exits 2); errors of
 * the packages it composes — git-recipe's "not a git repository", model's training errors —
 * pass through unchanged.
 */
export const PipelineError = packageError<PipelineErrorCode>("PipelineError");
export type PipelineError = ForgeError<PipelineErrorCode>;
