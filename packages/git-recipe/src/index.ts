export { RecipeError, type RecipeErrorCode } from "./errors.js";
