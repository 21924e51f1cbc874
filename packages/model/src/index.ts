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
export { ModelError, type ModelErrorCode } from "./errors.js";
