const FORGE_ERROR = Symbol.for("forge.error");

/** Error codes raised by @forge/eval. */
export type EvaluationErrorCode = "E_INPUT";

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
