/**
 * `@forge/baking/internal`: the bake's training pieces (examples, sampler, loss, validation
 * KL), record checks and drift helpers that forge's own code and tests use. Not a stable API.
 */
export {
  type BakeBatch,
  type BakeExample,
  type BakeLossSpec,
  BakeSampler,
  bakeLoss,
  disposeBakeBatch,
  packBatch,
  prepareExamples,
  splitExamples,
  type TrainBakeOptions,
  trainStudent,
  usesTopK,
  validationKL,
} from "./bake.js";
export {
  type DriftTurnContext,
  defaultDistractor,
  driftScript,
  type FittedContext,
  fitContext,
  meanInterval,
} from "./drift.js";
export {
  checkStimulus,
  checkTrajectory,
  RECORD_SCHEMA,
} from "./records.js";
export { repositoryBakeSettings } from "./repository.js";
export { checkPromptFits } from "./rollout.js";
export {
  logSoftmaxRow,
  type PositionedSequence,
  positionLogits,
  responseLogits,
  type ScoredSequence,
  topKOf,
} from "./score.js";
