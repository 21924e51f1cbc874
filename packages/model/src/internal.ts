/**
 * `@forge/model/internal`: plumbing other forge packages and forge's own benchmarks and tests
 * use — kernel switches, the optimizer, raw safetensors bytes, writing model files into a
 * directory the caller already owns. Not a stable API.
 */
export { setFusedInference, setHandWrittenGradients } from "./backend/fused.js";
export {
  forgeCacheDir,
  loadNativeGemm,
  type NativeGemmLoad,
  type NativeGemmModule,
  type NativeMode,
  parseNativeMode,
} from "./backend/native-gemm.js";
export {
  type MatMulProbeResult,
  probeMatMul,
} from "./backend/probe.js";
export {
  activeNativeGemm,
  setNativeGemm,
  setWasmMatMulRouting,
  wasmMatMulRouting,
} from "./backend/wasm-kernels.js";
export {
  modelTensors,
  writeAdapterFiles,
  writeModelFiles,
} from "./checkpoint.js";
export { disposeBatch } from "./data.js";
export { raggedInputs, sampleToken } from "./generate.js";
export { parameterShapes } from "./gpt.js";
export { checkLayers, checkLoraFits } from "./lora.js";
export {
  AdamW,
  type AdamWConfig,
  clipByGlobalNorm,
  DEFAULT_ADAMW,
  learningRateAt,
  type ScheduleSettings,
} from "./optimizer.js";
export {
  type LoadedTensor,
  parseSafetensors,
  type SafetensorsContent,
  type StoredDtype,
  serializeSafetensors,
} from "./safetensors.js";
export {
  DEFAULT_TRAIN_SETTINGS,
  loadCheckpointWeights,
} from "./train.js";
