export { type ChartOptions, type Series, svgLineChart } from "@forge/core";
export {
  assertDynamicManifest,
  type DynamicManifest,
  type DynamicParameter,
  type DynamicSeries,
  dynamicManifest,
  dynamicManifestSchema,
} from "./dynamic.js";
export { ManifestError, type ManifestErrorCode } from "./errors.js";
export { HardwareSampler, readGpu, readTemperature } from "./hardware.js";
export { epochsFor, scaledLearningRate, warmupSteps } from "./parameters.js";
export {
  assertManifest,
  manifestSchema,
  type ValidationProblem,
  validateManifest,
} from "./schema.js";
export type {
  Derived,
  EvalRecord,
  HardwareSample,
  Manifest,
  Phase,
  PhaseStatus,
  Repository,
  RunStatus,
  Stat,
  StepRecord,
} from "./types.js";
export { formatManifest, SECTIONS, type Section, sparkline } from "./view.js";
export {
  type CreateOptions,
  downsample,
  ManifestWriter,
  readManifest,
  sha256File,
  type TrainLoopEvent,
} from "./writer.js";
