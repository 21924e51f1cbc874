export { setHandWrittenGradients } from "./backend/fused.js";
export { type MatMulProbeResult, probeMatMul } from "./backend/probe.js";
export {
  BACKEND_NAMES,
  type BackendAttempt,
  type BackendInfo,
  type BackendName,
  currentBackend,
  describeBackend,
  type InitBackendOptions,
  initBackend,
} from "./backend/select.js";
export { setWasmMatMulRouting, wasmMatMulRouting } from "./backend/wasm-kernels.js";
export {
  type AdapterOptions,
  type GenerationDefaults,
  type LoadedModel,
  loadAdapter,
  loadModel,
  modelTensors,
  type OutputOptions,
  type SaveModelOptions,
  saveAdapter,
  saveMergedModel,
  saveModel,
  writeAdapterFiles,
  writeModelFiles,
} from "./checkpoint.js";
export {
  DEFAULT_CONFIG,
  fromHfConfig,
  type GPTConfig,
  memoryEstimate,
  parameterCount,
  resolveConfig,
  toHfConfig,
} from "./config.js";
export {
  type BatchSource,
  type CacheKind,
  disposeBatch,
  type LmBatch,
  openTokenCache,
  PretrainSampler,
  SftSampler,
  type Shard,
  type ShardMeta,
  type TokenCache,
  type TokenCacheMeta,
  TokenCacheWriter,
  type TokenDtype,
} from "./data.js";
export { ModelError, type ModelErrorCode } from "./errors.js";
export {
  type EvalGenerateOptions,
  evalModel,
  type LocalEvalModel,
  modelHash,
} from "./eval-model.js";
export {
  type FinishReason,
  type GenerateOptions,
  type Generation,
  generate,
  sampleToken,
} from "./generate.js";
export { GPT, type LayerCache, parameterShapes, type RunOptions, type RunResult } from "./gpt.js";
export {
  attachLora,
  checkLoraFits,
  DEFAULT_LORA,
  LORA_TARGETS,
  LoraAdapter,
  type LoraConfig,
  type LoraTarget,
  mergeLora,
  resolveLoraConfig,
} from "./lora.js";
export {
  AdamW,
  type AdamWConfig,
  clipByGlobalNorm,
  DEFAULT_ADAMW,
  learningRateAt,
  type ScheduleSettings,
} from "./optimizer.js";
export {
  describeProfiles,
  type ModelSettings,
  openRunDirectory,
  overlaySettings,
  type PhaseSettings,
  type PhaseSummary,
  type PipelineEvent,
  PROFILES,
  RUN_KINDS,
  type RunDirectory,
  type RunKind,
  type RunSettings,
  resolveRunSettings,
  runModelConfig,
  type TrainingPhase,
  type TrainRunOptions,
  type TrainRunResult,
  trainRun,
  writeRunSettings,
} from "./pipeline.js";
export { generateReplies, generateReply, type Reply, type ReplyOptions } from "./reply.js";
export {
  type LoadedTensor,
  parseSafetensors,
  readSafetensors,
  type SafetensorsContent,
  type StoredDtype,
  serializeSafetensors,
  writeSafetensors,
} from "./safetensors.js";
export {
  DEFAULT_TRAIN_SETTINGS,
  fixedBatches,
  lmTask,
  loadCheckpointWeights,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
  type TrainSettings,
  type TrainTask,
  trainModel,
} from "./train.js";
