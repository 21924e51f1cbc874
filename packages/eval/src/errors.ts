import { type ForgeError, packageError } from "@forge/core";

export type EvaluationErrorCode =
  /** a bad argument */
  | "E_INPUT"
  /** a task file that does not validate (the message lists each problem with its path and line) */
  | "E_TASK"
  /** data a statistic cannot be computed from */
  | "E_STATS"
  /** result files that cannot be compared (the message names the missing ids) */
  | "E_COMPARE"
  /** a path from a task file (data, scorer module) that leaves the task file's directory */
  | "E_OUTSIDE"
  /** a js scorer the caller did not allow to run (--allow-code) */
  | "E_CODE"
  /** an output that would replace an input, a directory, or something forge does not own */
  | "E_OUTPUT"
  /** a file that cannot be read or written */
  | "E_IO"
  /**
   * a model that refused a request (its own error's category is kept: a context window
   * exceeded is bad input) or answered with something other than what EvalModel promises
   */
  | "E_MODEL";

/**
 * The one error type @forge/eval throws: a @forge/core ForgeError (its category — E_IO an io
 * error, the rest bad input unless said otherwise — decides the CLI's exit code); `message`
 * names the file, field or line at fault and what would be accepted.
 */
export const EvaluationError = packageError<EvaluationErrorCode>("EvaluationError");
export type EvaluationError = ForgeError<EvaluationErrorCode>;
