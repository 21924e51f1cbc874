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
  MAX_NEW_TOKENS,
  MAX_ROUNDS,
  parseTask,
  renderMessages,
  renderTemplate,
  SCORER_TYPES,
  type ScorerSpec,
  type ScorerType,
  type Task,
  type TaskOptions,
  type TaskProblem,
  taskInputs,
  type ValidatedTask,
  validateTask,
} from "./tasks.js";
