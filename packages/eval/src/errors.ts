const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/eval. */
export type EvaluationErrorCode =
  /** a bad argument */
  | "E_INPUT"
  /** a task file that does not validate (the message lists each problem with its path and line) */
  | "E_TASK"
  /** data a statistic cannot be computed from */
  | "E_STATS"
  /** result files that cannot be compared (the message names the missing ids) */
  | "E_COMPARE"
  /** a file that cannot be read or written */
  | "E_IO";

/**
 * The one error type @forge/eval throws for bad input. `code` is stable and machine-readable;
 * `message` names the file, field or line at fault and what would be accepted.
 */
export class EvaluationError extends Error {
  readonly code: EvaluationErrorCode;
  readonly [FORGE_ERROR] = true;

  constructor(code: EvaluationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EvaluationError";
    this.code = code;
  }

  /** True for a EvaluationError even when two copies of this package are installed. */
  static isInstance(error: unknown): error is EvaluationError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true &&
      (error as Error).name === "EvaluationError"
    );
  }
}
