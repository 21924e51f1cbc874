export { LossError, type LossErrorCode } from "./errors.js";
