export { PipelineError, type PipelineErrorCode } from "./errors.js";
export {
  isValidationCommit,
  PHASES,
  type PhaseName,
  type PipelineEvent,
  type PipelineOptions,
  type PipelineResult,
  runPipeline,
  VALIDATION_RULE,
} from "./run.js";
export {
  PIPELINE_PROFILES,
  type PipelineProfile,
  pipelineProfile,
  planTraining,
  type TrainingPlan,
} from "./settings.js";
