/**
 * @forge/git-recipe: git-native bake repositories — input.yml, recipe.yml and the .forge state
 * file in git, bakes run through an injected runner, models in a content-addressed store, the
 * lineage tree across branches — and git history as training data.
 *
 * This is the public API. Plumbing (formatters and parsers of the generated files, hashing,
 * name checks, the merge driver's name, scrape internals) is in `@forge/git-recipe/internal`,
 * with no stability promise.
 */

/** A repository at a glance: commits on every branch, authors, files and languages at HEAD. */
export { analyseRepository, languageOf, type RepositoryStats } from "./analyse.js";
/** The one error type this package throws: a stable `code`, a category that decides the exit code. */
export { RecipeError, type RecipeErrorCode } from "./errors.js";
/** The git hooks of a bake repository (pre-commit, post-merge), for a CLI's `hook` command. */
export { HOOKS, runHook } from "./hook.js";
/** input.yml: the template `init` writes, its parser (every problem with line and column), and what it parses to. */
export {
  BAKE_LOSSES,
  type BakeLoss,
  type BakeSpec,
  type Generator,
  INPUT_TEMPLATE,
  type InputProblem,
  type InputSpec,
  type Message,
  type ParseInputOptions,
  parseInput,
  type RolloutSpec,
  type TeacherSpec,
} from "./input.js";
/** The files of a bake repository: their names, and the recipe and state that `readRecipe` and `readState` return. */
export {
  type BakeRecord,
  INPUT_FILE,
  RECIPE_FILE,
  type Recipe,
  type SectionHashes,
  STATE_FILE,
  type State,
} from "./recipe.js";
/** Bake repositories: `BakeRepo` (init, open, stage, commit, run, status, fetch, lineage) and what its methods take and return. */
export {
  BakeRepo,
  type FetchResult,
  type InitOptions,
  type JobRecord,
  type OpenOptions,
  type OperationStatus,
  type RepoStatus,
  type RunOptions,
  type RunResult,
} from "./repo.js";
/** What a runner implements: one job per phase (stim, rollout, bake), answered with counts or a model directory. */
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
} from "./runner.js";

/** Git history as training data: every commit with its metadata, rendered as text, cut into token windows. */
export {
  type CommitRecord,
  commitText,
  type FileChange,
  type ScrapeOptions,
  scrapeHistory,
  windows,
} from "./scrape.js";

/** The model store: bakes' weights outside git, content-addressed, by id `<repository>/<bake>/<step>`. */
export { defaultStoreRoot, ModelStore, parseModelId, type StoredModel } from "./store.js";

/** The lineage tree: every branch's recipe.yml joined into one tree, and drawn as text. */
export { buildTree, formatTree, type LineageTree, type TreeColors, type TreeNode } from "./tree.js";
