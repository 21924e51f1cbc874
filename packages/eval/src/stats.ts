/**
 * `@forge/eval/stats`: the statistics, importable with no tfjs installed (CI compares result
 * files with it, no model needed).
 */

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
export {
  deltaSvg,
  heatmapSvg,
  heatmapTerminal,
  type ReportInput,
  toHtml,
  toJUnit,
  toMarkdown,
} from "./report.js";
export type { EvalResults, ItemRecord, TaskResult } from "./runner.js";
export {
  backwardTransfer,
  type ForgettingCell,
  type ForgettingResult,
  forgettingAnalysis,
  nonInferiority,
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
export { mulberry32 } from "./stats/random.js";
