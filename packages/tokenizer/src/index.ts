export { TokenizerError, type TokenizerErrorCode } from "./errors.js";
