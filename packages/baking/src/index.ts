export { BakingError, type BakingErrorCode } from "./errors.js";
