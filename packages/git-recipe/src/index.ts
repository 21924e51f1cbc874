export { RecipeError, type RecipeErrorCode } from "./errors.js";
export { HOOKS, runHook } from "./hook.js";
export {
  type BakeSpec,
  clearedInput,
  type Generator,
  INPUT_TEMPLATE,
  type InputProblem,
  type InputSpec,
  type Message,
  NAME_PATTERN,
  type ParseInputOptions,
  parseInput,
  type RolloutSpec,
  sectionHashes,
  stableJson,
} from "./input.js";
export {
  type BakeRecord,
  formatRecipe,
  formatState,
  INPUT_FILE,
  parseRecipe,
  parseState,
  RECIPE_FILE,
  type Recipe,
  STATE_FILE,
  type State,
} from "./recipe.js";
export {
  type BakeJob,
  type BakeOutput,
  BakeRepo,
  type BakeResult,
  checkName,
  type GitInfo,
  type InitOptions,
  type JobRecord,
  type LossSummary,
  MERGE_DRIVER,
  OPERATIONS,
  type Operation,
  type OperationStatus,
  type PhaseJob,
  type Progress,
  type Runner,
  summariseLosses,
} from "./repo.js";
export {
  type CommitRecord,
  commitText,
  complexityScore,
  type FileChange,
  parseTrailers,
  scrapeHistory,
  windows,
} from "./scrape.js";
export {
  defaultStoreRoot,
  digestDirectory,
  ModelStore,
  parseModelId,
  type StoredModel,
} from "./store.js";
export { buildTree, formatTree, type LineageTree, type TreeColors, type TreeNode } from "./tree.js";
