export {
  type EvalModel,
  makeScorer,
  modelHash,
  RESULTS_SCHEMA,
  type RunOptions,
  runTasks,
} from "./runner.js";
export * from "./stats.js";
export {
  type GenerationSpec,
  type Item,
  loadTask,
  parseTask,
  renderMessages,
  renderTemplate,
  SCORER_TYPES,
  type ScorerSpec,
  type ScorerType,
  type Task,
  type TaskProblem,
  validateTask,
} from "./tasks.js";
