export {
  type BakeBatch,
  type BakeExample,
  BakeSampler,
  type BakeSettings,
  type BakeTraining,
  bakeLoss,
  DEFAULT_BAKE,
  disposeBakeBatch,
  packBatch,
  prepareExamples,
  resolveBake,
  splitExamples,
  type TrainBakeOptions,
  trainStudent,
  validationKL,
} from "./bake.js";
export {
  CONTEXT_POLICIES,
  type ContextPolicy,
  type CurvePoint,
  compareDrift,
  type DriftComparison,
  type DriftOptions,
  type DriftResult,
  type DriftTurn,
  type DriftTurnContext,
  defaultDistractor,
  driftScript,
  type Estimate,
  type FittedContext,
  fitContext,
  meanInterval,
  measureDrift,
  summariseDrift,
} from "./drift.js";
export { BakingError, type BakingErrorCode } from "./errors.js";
export { type StrengthPoint, strengthCurve } from "./halfbake.js";
export {
  DEFAULT_MEASURE,
  type KLMeasurement,
  type MeasureSettings,
  type MeasureTarget,
  measureKL,
  sampleTrajectories,
} from "./measure.js";
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
export {
  type BakePrompt,
  checkStimulus,
  checkTrajectory,
  promptHash,
  RECORD_SCHEMA,
  readStimuli,
  readTrajectories,
  type Stimulus,
  systemPrompt,
  type Trajectory,
  toJsonl,
} from "./records.js";
export {
  type BakeRecorder,
  type RepositoryBakeJob,
  type RepositoryBakeSettings,
  type RepositoryJob,
  type RepositoryRunnerOptions,
  repositoryBakeSettings,
  repositoryRunner,
} from "./repository.js";
export {
  checkPromptFits,
  DEFAULT_ROLLOUT,
  type RolloutSettings,
  resolveRollout,
  rollout,
  type Teacher,
} from "./rollout.js";
export {
  type BakeEvent,
  type BakePhase,
  type BakeRunOptions,
  type BakeRunResult,
  bakePrompt,
  loadBaked,
  summarise,
} from "./run.js";
export { logSoftmaxRow, responseLogits, type ScoredSequence, topKOf } from "./score.js";
export {
  generateStimuli,
  PERSONA_PROBES,
  STIM_TYPES,
  type StimContext,
  type StimSpec,
} from "./stim.js";
