/**
 * @forge/eval: task files, the runner, paired statistics, forgetting, comparison, gates and
 * reports. No TensorFlow: a model is anything implementing `EvalModel`.
 */

export { mulberry32 } from "@forge/core";
export {
  alignTasks,
  type Comparison,
  compareResults,
  evaluateGates,
  forgettingFromResults,
  GATE_KINDS,
  type GateKind,
  type GateResult,
  readResults,
  type TaskComparison,
} from "./compare.js";
export { EvaluationError, type EvaluationErrorCode } from "./errors.js";
export { type Gsm8kOptions, gsm8kFinalAnswer, loadGsm8k, parseGsm8k } from "./gsm8k.js";
export type { ChatMessage, EvalModel, GenerateOptions, LogprobRequest } from "./model.js";
export { extractNumber } from "./numbers.js";
export {
  type ChatCompletion,
  type ChatCompletionChoice,
  type ChatCompletionRequest,
  type Completion,
  type CompletionChoice,
  type CompletionRequest,
  type ModelList,
  OpenAIClient,
  type OpenAIClientOptions,
  type RemoteEvalModel,
  type RemoteEvalModelOptions,
  remoteEvalModel,
  retryAfterMs,
  type TokenLogprob,
  type TopLogprob,
  type Usage,
} from "./openai.js";
export {
  deltaSvg,
  heatmapSvg,
  heatmapTerminal,
  type ReportInput,
  toHtml,
  toJUnit,
  toMarkdown,
} from "./report.js";
export {
  type EvalResults,
  type ItemRecord,
  makeScorer,
  RESULTS_SCHEMA,
  type RunOptions,
  runTasks,
  type TaskResult,
} from "./runner.js";
export {
  backwardTransfer,
  DEFAULT_DEGRADATION_THRESHOLD,
  type DegradationSummary,
  type ForgettingCell,
  type ForgettingResult,
  forgettingAnalysis,
  nonInferiority,
  relativeDegradation,
  type TaskScores,
} from "./stats/forgetting.js";
export {
  binomialTwoSided,
  bootstrapMeanCI,
  holmBonferroni,
  mcnemar,
  minimumDetectableEffect,
  type PairedInput,
  type PairedOptions,
  type PairedResult,
  pairedComparison,
  pairedT,
  tTestP,
} from "./stats/paired.js";
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
