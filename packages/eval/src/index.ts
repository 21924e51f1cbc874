export { EvaluationError, type EvaluationErrorCode } from "./errors.js";
