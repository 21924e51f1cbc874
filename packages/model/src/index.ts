/**
 * @forge/model: GPT-2-architecture decoders on TensorFlow.js — backends, generation, LoRA,
 * training, and model directories in Hugging Face's layout. Plumbing for forge's own packages
 * is in `@forge/model/internal`.
 */
/** Batch size chosen by measuring a few training steps at growing sizes. */

/** Compute backends: the fastest that loads (native TensorFlow, wasm, cpu), and why the others were not used. */
export {
  autoWasmThreads,
  BACKEND_NAMES,
  type BackendAttempt,
  type BackendInfo,
  type BackendName,
  currentBackend,
  describeBackend,
  type InitBackendOptions,
  initBackend,
} from "./backend/select.js";
export {
  type BatchChoice,
  type BatchProbe,
  type ChooseBatchOptions,
  chooseBatchSize,
} from "./batch-size.js";
/** Model directories in Hugging Face's layout (load, save, merged saves) and PEFT-style LoRA adapters. */
export {
  type AdapterOptions,
  type GenerationDefaults,
  type LoadedModel,
  type LoadModelOptions,
  loadAdapter,
  loadModel,
  type OutputOptions,
  type SaveModelOptions,
  saveAdapter,
  saveMergedModel,
  saveModel,
} from "./checkpoint.js";
/** The decoder configuration, its Hugging Face config.json, and what it costs (parameters, memory). */
export {
  DEFAULT_CONFIG,
  fromHfConfig,
  type GPTConfig,
  memoryEstimate,
  parameterCount,
  resolveConfig,
  toHfConfig,
} from "./config.js";
/** Token caches (shards + meta) and the samplers that read them: pretraining windows, SFT examples. */
export {
  type BatchSource,
  type CacheKind,
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
/** The error @forge/model throws (a @forge/core ForgeError). */
export {
  ModelError,
  type ModelErrorCode,
} from "./errors.js";
/** The model as @forge/eval's EvalModel (messages in, replies or log-probabilities out). */
export {
  type EvalGenerateOptions,
  evalModel,
  type LocalEvalModel,
  modelHash,
} from "./eval-model.js";
/** Sampling with a KV cache: greedy, temperature, top-k, top-p, stop ids. */
export {
  type FinishReason,
  type GenerateOptions,
  type Generation,
  generate,
} from "./generate.js";
/** The GPT-2-architecture decoder. */
export {
  GPT,
  type LayerCache,
  type RunOptions,
  type RunResult,
} from "./gpt.js";
/** Models from the Hugging Face hub: resumable, checked downloads into the hub's cache layout. */
export {
  cachedSnapshot,
  DEFAULT_HUB_ENDPOINT,
  globToRegExp,
  HUB_MODEL_FILES,
  type HubFile,
  type HubOptions,
  hubCacheDir,
  hubRepoDir,
  isHubRepoId,
  type PullEvent,
  type PulledFile,
  type PullOptions,
  type PullResult,
  parseHubRepoId,
  pullModel,
} from "./hub.js";
/** LoRA adapters: attach, merge, their settings. */
export {
  attachLora,
  DEFAULT_LORA,
  defaultLoraTargets,
  LORA_TARGETS,
  LoraAdapter,
  type LoraConfig,
  type LoraTarget,
  mergeLora,
  resolveLoraConfig,
} from "./lora.js";
/** Whether a checkpoint fits the backend's memory, decided from its headers before loading. */
export {
  backendMemoryLimit,
  checkModelFits,
  describeLoadPlan,
  formatBytes,
  formatCount,
  type LoadPlan,
  setLoadPlanListener,
  WASM_HEAP_LIMIT_BYTES,
  WASM_WEIGHT_FACTOR,
} from "./memory.js";
/** Training runs: profiles, run directories, the pretrain → SFT pipeline. */
export {
  describeProfiles,
  type ModelSettings,
  openRunDirectory,
  overlaySettings,
  type PhaseSettings,
  type PhaseSummary,
  type PipelineEvent,
  PROFILES,
  phaseSources,
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
/** Chat replies: the assistant's next turn for conversations, stop token dropped, special tokens left out. */
export {
  generateReplies,
  generateReply,
  type Reply,
  type ReplyOptions,
} from "./reply.js";
/** safetensors files, read and written (F32, F16, BF16 in). */
export {
  readSafetensors,
  writeSafetensors,
} from "./safetensors.js";
/** The training loop: warmup + cosine, gradient clipping, evaluation, early stopping, checkpoints, resume. */
export {
  fixedBatches,
  lmTask,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
  type TrainSettings,
  type TrainTask,
  trainModel,
} from "./train.js";
/** Growing the vocabulary: new token rows (embedding and tied output layer) started from existing ones. */
export { growVocabulary } from "./vocabulary.js";
