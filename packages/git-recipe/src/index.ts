export { RecipeError, type RecipeErrorCode } from "./errors.js";
export { MERGE_DRIVER } from "./git.js";
export { HOOKS, runHook } from "./hook.js";
export type { InitOptions } from "./init.js";
export {
  type BakeSpec,
  checkName,
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
export type { JobRecord } from "./jobs.js";
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
export { BakeRepo } from "./repo.js";
export {
  type BakeJob,
  type BakeOutput,
  type BakeResult,
  type GitInfo,
  type LossSummary,
  OPERATIONS,
  type Operation,
  type PhaseJob,
  type Progress,
  type Runner,
  summariseLosses,
} from "./runner.js";
export {
  type CommitRecord,
  commitText,
  complexityScore,
  type FileChange,
  parseTrailers,
  scrapeHistory,
  windows,
} from "./scrape.js";
export type { OperationStatus } from "./status.js";
export {
  defaultStoreRoot,
  digestDirectory,
  ModelStore,
  parseModelId,
  type StoredModel,
} from "./store.js";
export { buildTree, formatTree, type LineageTree, type TreeColors, type TreeNode } from "./tree.js";
