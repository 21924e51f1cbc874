/**
 * @forge/baking: bake a prompt into a model's weights and measure it (Prompt Baking, Bhargava
 * et al.). Plumbing for forge's own packages and tests is in `@forge/baking/internal`.
 */
/** The bake settings and their defaults; the losses a bake can train on. */
export {
  type BakeSettings,
  type BakeTraining,
  DEFAULT_BAKE,
  LOSS_DESCRIPTIONS,
  LOSS_KINDS,
  type LossKind,
  resolveBake,
} from "./bake.js";
/** A bake's report: its facts, KL before/after and training curve, for @forge/eval's toHtml. */
export { bakeReportInput, klSummary } from "./bake-report.js";
/**
 * The A/B cycle engine: A-cycles bake task prompts, B-cycles discover and bake a persona; a
 * plateau detector with an adaptive threshold switches between them and stops the run.
 */
export {
  CYCLE_STATE_FILE,
  type CycleEvaluator,
  type CycleEvent,
  type CycleKind,
  type CycleOptions,
  type CycleRecord,
  type CycleResult,
  type CycleTask,
  detectPlateau,
  type PlateauOptions,
  type PlateauVerdict,
  personaCandidates,
  runCycles,
} from "./cycle.js";
/** Persona drift over a long conversation: prompted vs baked, per-turn curves with intervals. */
export {
  CONTEXT_POLICIES,
  type ContextPolicy,
  type CurvePoint,
  compareDrift,
  type DriftComparison,
  type DriftOptions,
  type DriftResult,
  type DriftTurn,
  type Estimate,
  measureDrift,
  summariseDrift,
} from "./drift.js";
/** The error @forge/baking throws (a @forge/core ForgeError). */
export {
  BakingError,
  type BakingErrorCode,
} from "./errors.js";
/**
 * Scale-out: export a bake's trajectories and teacher top-K for a distillation job elsewhere
 * (JSONL, docs/scale-out.md), and import the PEFT adapter it returns as a forge bake.
 */
export {
  type BakeFiles,
  DEFAULT_EXPORT_TOPK,
  EXPORT_SCHEMA,
  type ExportHeader,
  type ExportOptions,
  type ExportRecord,
  exportRecords,
  readBakeFiles,
  streamExport,
  tokenizerHash,
  writeExport,
} from "./export.js";
/**
 * Half-baking: behaviour as a function of the adapter strength α; a bake applied at α (merged
 * or as a scaled adapter), on all its blocks or a subset.
 */
export {
  type HalfBakeOptions,
  type HalfBakeResult,
  halfBake,
  MAX_HALFBAKE_ALPHA,
  parseLayers,
  type StrengthPoint,
  strengthCurve,
} from "./halfbake.js";
export {
  type ImportAdapterOptions,
  type ImportedAdapter,
  importAdapter,
  type PeftAdapter,
  readPeftAdapter,
} from "./import-adapter.js";
/** Monte-Carlo KL between a prompted teacher and a student, with standard errors. */
export {
  DEFAULT_MEASURE,
  type KLMeasurement,
  type MeasureSettings,
  type MeasureTarget,
  measureKL,
  sampleTrajectories,
} from "./measure.js";
/** Prompt pursuit: re-bake a prompt into its own baked model while a score improves. */
export {
  type PursueOptions,
  type PursuitEvent,
  type PursuitResult,
  type PursuitRound,
  pursue,
  pursueAll,
  readLineage,
  repromptTable,
} from "./pursue.js";
/**
 * Quiet-STaR: thought tokens, replies that think (injected at the start and at sentence or
 * clause boundaries), an A/B test of thinking over rounds, and baking successful thought traces
 * into the weights.
 */
export {
  type AbEvent,
  type AbResult,
  type AbRound,
  type AbSummary,
  type ArmRun,
  abTest,
  decideAb,
  modeSettings,
  runArm,
  type ScoredTrace,
  type ThinkingMode,
} from "./quietstar/ab.js";
export {
  DEFAULT_QUIETSTAR,
  INJECTION_POINTS,
  type InjectionPoint,
  type QuietStarConfig,
  resolveQuietStar,
} from "./quietstar/config.js";
export {
  type QualityDistribution,
  qualityDistribution,
  type TraceQuality,
  traceQuality,
} from "./quietstar/quality.js";
export { accuracySvg, quietStarMarkdown, quietStarSummary } from "./quietstar/report.js";
export {
  bakeQuietStar,
  type HeldOutAccuracy,
  type QuietStarEvent,
  type QuietStarPhase,
  type QuietStarResult,
  type QuietStarRunOptions,
  splitItems,
} from "./quietstar/run.js";
export {
  extractThoughts,
  formatTrace,
  injectionPoints,
  splitThoughts,
  type ThinkingEvalModel,
  type ThinkingSettings,
  type Thought,
  type Trace,
  thinkingEvalModel,
  thinkingReplies,
} from "./quietstar/thoughts.js";
export {
  type AddThoughtTokensOptions,
  addThoughtTokens,
  type ThoughtTokens,
  thoughtTokensOf,
  type WithThoughtTokens,
} from "./quietstar/tokens.js";
export {
  splitByItem,
  successfulTraces,
  type TraceExample,
  type TraceTraining,
  traceExamples,
  trainOnTraces,
} from "./quietstar/train.js";
/** Prompts, stimuli and trajectories, and their JSONL files. */
export {
  type BakePrompt,
  promptHash,
  readStimuli,
  readTrajectories,
  type Stimulus,
  systemPrompt,
  type Trajectory,
  toJsonl,
} from "./records.js";
/**
 * A remote teacher behind an OpenAI-compatible endpoint (forge serve, vLLM, llama.cpp, Ollama,
 * TGI): stimuli, rollouts and top-K log-probabilities over HTTP, resumable.
 */
export {
  checkRetokenization,
  connectTeacher,
  describeTeacher,
  MAX_REMOTE_TOPK,
  MAX_RETOKENIZED_SHARE,
  type MappedReply,
  mapReply,
  measureRemoteKL,
  type RemoteRolloutOptions,
  type RemoteTeacher,
  type RemoteTeacherSpec,
  readPartialRollout,
  remoteRollout,
  remoteStimuli,
  TokenMap,
} from "./remote.js";
/** The runner a bake repository (@forge/git-recipe) calls for stim, rollout and bake. */
export {
  type BakeRecorder,
  type RepositoryBakeJob,
  type RepositoryBakeSettings,
  type RepositoryJob,
  type RepositoryRunnerOptions,
  repositoryRunner,
} from "./repository.js";
/** Teacher rollouts: k sampled trajectories per stimulus. */
export {
  DEFAULT_ROLLOUT,
  type RolloutSettings,
  resolveRollout,
  rollout,
  type Teacher,
} from "./rollout.js";
/** A whole bake: stim → rollout → bake → KL before/after, into an output forge owns. */
export {
  type BakeEvent,
  type BakePhase,
  type BakeRunOptions,
  type BakeRunResult,
  bakePrompt,
  loadBaked,
  summarise,
} from "./run.js";
/** Stimulus generators: list, file, template, self, persona, multiturn; the default mix. */
export {
  DEFAULT_STIM_COUNTS,
  defaultStimuli,
  generateStimuli,
  MODEL_STIMULI_FILE,
  PERSONA_PROBES,
  STIM_TYPES,
  type StimContext,
  type StimSpec,
} from "./stim.js";
