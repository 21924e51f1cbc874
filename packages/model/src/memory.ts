/**
 * Whether a checkpoint fits the compute backend, decided from its load plan (headers only)
 * before a byte of it is allocated.
 *
 * The wasm backend keeps every tensor in one WebAssembly memory, which cannot grow past 4 GiB
 * (tfjs-backend-wasm's heap maximum is 4 GiB − 64 KiB). The weights are not the only thing in
 * it: XNNPACK packs the right-hand side of every matrix product it runs into a copy of its own
 * and caches it while the weight lives, and a forward needs its activations. Measured on this
 * package's Llama forward (one 64-token sequence, wasm): a 45 M-parameter model (180 MB of
 * float32 weights) took the heap to 442 MB, a 180 M one (721 MB) to 1,621 MB — 2.25–2.45× the
 * float32 weights. The rule used here: a model needs 2.5× its float32 weights on wasm, so at most
 * 1.72 GB of float32 weights (about 430 M parameters) load there. Training needs more (the
 * 180 M model's LoRA step on a 4 × 128 batch ran out of memory): batch sizes are chosen by
 * measuring (chooseBatchSize). Native TensorFlow (@tensorflow/tfjs-node) and the cpu backend
 * have no such ceiling; the machine's memory is theirs.
 */
import { type BackendName, currentBackend } from "./backend/select.js";
import { ModelError } from "./errors.js";

/** The largest the wasm backend's memory can grow (bytes): tfjs-backend-wasm's heap maximum. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 1024 ** 3 - 64 * 1024;

/** The wasm heap a model needs, as a multiple of its float32 weight bytes (see above). */
export const WASM_WEIGHT_FACTOR = 2.5;

/** Parameters and memory a checkpoint needs, known from its headers before anything is allocated. */
export interface LoadPlan {
  /** The model directory. */
  directory: string;
  parameters: number;
  /** float32 bytes the weights take once loaded. */
  weightBytes: number;
  /** Bytes of the weights as stored (F16/BF16 files are half the float32 size). */
  storedBytes: number;
  dtypes: string[];
  files: string[];
}

/** "1.24 GB", "538.4 MB", "704 B" (decimal units, as the hub shows sizes). */
export function formatBytes(bytes: number): string {
  if (bytes < 1e3) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

/** "135 M", "1.24 B", "96 k" parameters. */
export function formatCount(n: number): string {
  if (n < 1e3) return String(n);
  if (n < 1e6) return `${Math.round(n / 1e3)} k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} M`;
  return `${(n / 1e9).toFixed(2)} B`;
}

/** One line: "135 M parameters, 538 MB as float32 (stored: 269 MB BF16 in 1 file)". */
export function describeLoadPlan(plan: LoadPlan): string {
  const files = plan.files.length === 1 ? "1 file" : `${plan.files.length} files`;
  return `${formatCount(plan.parameters)} parameters, ${formatBytes(plan.weightBytes)} as float32 (stored: ${formatBytes(plan.storedBytes)} ${plan.dtypes.join("+")} in ${files})`;
}

/** The most memory `backend` can give a model's tensors, or undefined when only the machine limits it. */
export function backendMemoryLimit(backend: BackendName): number | undefined {
  return backend === "wasm" ? WASM_HEAP_LIMIT_BYTES : undefined;
}

/**
 * Refuse, before anything is allocated, a model that cannot fit the backend (see the module
 * comment for the rule). `backend` defaults to the initialised one; before `initBackend` nothing
 * is checked.
 */
export function checkModelFits(plan: LoadPlan, backend = currentBackend()?.name): void {
  if (backend === undefined) return;
  const limit = backendMemoryLimit(backend);
  if (limit === undefined) return;
  const needed = plan.weightBytes * WASM_WEIGHT_FACTOR;
  if (needed <= limit) return;
  const largest = limit / WASM_WEIGHT_FACTOR;
  throw new ModelError(
    "E_TOO_LARGE",
    `${plan.directory}: the model has ${formatCount(plan.parameters)} parameters, ${formatBytes(plan.weightBytes)} as float32; the ${backend} backend's memory is limited to 4 GiB and a model needs about ${WASM_WEIGHT_FACTOR}× its float32 weights there (the weights, XNNPACK's packed copies of them, activations), so at most ${formatBytes(largest)} of float32 weights (about ${formatCount(Math.floor(largest / 4))} parameters). Install @tensorflow/tfjs-node (native TensorFlow, limited only by the machine's memory; forge uses it when present), or choose a smaller model`,
  );
}

let planListener: ((plan: LoadPlan) => void) | undefined;

/**
 * A listener every `loadModel` in this process calls with its plan when the caller passes no
 * `onPlan` of its own — how an application (the forge CLI) reports every model it loads, also
 * those loaded inside other packages. `undefined` removes it.
 */
export function setLoadPlanListener(listener: ((plan: LoadPlan) => void) | undefined): void {
  planListener = listener;
}

/** The listener `setLoadPlanListener` installed, if any. */
export function loadPlanListener(): ((plan: LoadPlan) => void) | undefined {
  return planListener;
}
