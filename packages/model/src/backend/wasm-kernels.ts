/**
 * Kernels that make the tfjs wasm backend fit for training.
 *
 * 1. `BatchMatMul` is overridden so every product runs on the native OpenBLAS addon where it
 *    is loaded (native-gemm.ts: it reads every layout in place), else on XNNPACK's
 *    fully-connected path.
 *    The stock kernel only uses XNNPACK for an untransposed product of two batch-1 operands;
 *    everything else (transposed operands — which is what tfjs' own matMul gradient emits —
 *    batched attention products, and rank-3 × rank-2 dense layers) falls into a scalar loop
 *    that runs 10–40× slower. The override transposes explicitly, folds a shared right-hand
 *    side into one tall product, and runs batched products slice by slice on views of the
 *    operands (no copies).
 * 2. `UnsortedSegmentSum` — the gradient of `gather`, i.e. of an embedding lookup — has no
 *    wasm kernel at all; training fails without it.
 * 3. `Exp` runs on the native addon where it is loaded (the stock kernel calls the C library
 *    per element; the KL losses exponentiate [tokens, vocabulary] several times a step).
 */
import {
  type BatchMatMulAttrs,
  type BatchMatMulInputs,
  broadcast_util,
  getKernel,
  type KernelConfig,
  type KernelFunc,
  registerKernel,
  type TensorInfo,
  type UnsortedSegmentSumAttrs,
  type UnsortedSegmentSumInputs,
  unregisterKernel,
  util,
} from "@tensorflow/tfjs";
import { ModelError } from "../errors.js";
import type { NativeGemmModule } from "./native-gemm.js";

/** The parts of tfjs-backend-wasm's BackendWasm this module touches. */
interface WasmBackend {
  wasm: {
    cwrap(name: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
    HEAPU8: Uint8Array;
    tfjs: {
      registerTensor(id: number, size: number, memoryOffset: number): void;
      disposeData(id: number): void;
    };
  };
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  disposeData(dataId: object): boolean;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

type WasmBatchMatMulFn = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: boolean,
  transposeB: boolean,
  outId: number,
) => void;

const BACKEND = "wasm";
const BATCH_MATMUL = "BatchMatMul";
const TRANSPOSE = "Transpose";
const UNSORTED_SEGMENT_SUM = "UnsortedSegmentSum";
const EXP = "Exp";
const GATHER = "GatherV2";
/** tanh-GELU's constants: 0.5·x·(1 + tanh(c·(x + k·x³))), c = √(2/π), k = 0.044715. */
export const GELU_C = Math.sqrt(2 / Math.PI);
export const GELU_K = 0.044715;

/** forge's fused inference tanh-GELU (one kernel instead of seven; see `fusedGelu`). */
export const FORGE_GELU = "ForgeGelu";
/** Elements up to which the fused GELU beats XNNPACK's vectorised composition (dispatch-bound). */
export const FUSED_GELU_MAX_ELEMENTS = 65_536;
/** Training LayerNorm on the native addon: outputs y, x̂ and 1/σ (see `nativeLayerNorm`). */
export const FORGE_LAYER_NORM_TRAIN = "ForgeLayerNormTrain";
/** LayerNorm's input gradient from dy, γ, x̂ and 1/σ. */
export const FORGE_LAYER_NORM_GRAD = "ForgeLayerNormGrad";
/** Causal attention softmax on the native addon (see `nativeCausalSoftmax`). */
export const FORGE_CAUSAL_SOFTMAX = "ForgeCausalSoftmax";
/** Softmax's gradient from dy and the softmax. */
export const FORGE_SOFTMAX_GRAD = "ForgeSoftmaxGrad";
/** Training tanh-GELU on the native addon: outputs y and the saved σ (see `nativeGelu`). */
export const FORGE_GELU_TRAIN = "ForgeGeluTrain";
/** Its gradient from dy, x and σ. */
export const FORGE_GELU_GRAD = "ForgeGeluGrad";
/**
 * Causal self-attention on the native addon, on q [B·T, H·d] and k, v [B·T, KV·d] with no head
 * transposes: outputs y [B·T, H·d] and the probabilities [B, H, T, T] (see `nativeAttention`).
 */
export const FORGE_ATTENTION = "ForgeAttention";
/** Its gradients dq, dk, dv from dy, q, k, v and the saved probabilities. */
export const FORGE_ATTENTION_GRAD = "ForgeAttentionGrad";
/** forge's fused AdamW update (one kernel per parameter instead of ~14; see `fusedAdamW`). */
export const FORGE_ADAMW = "ForgeAdamW";
/** forge's fused inference LayerNorm (one kernel instead of nine; see `fusedLayerNorm`). */
export const FORGE_LAYER_NORM = "ForgeLayerNorm";

/**
 * Below this many multiply-adds per slice, XNNPACK's operator set-up (it packs the right-hand
 * side on every call for non-weight operands) costs more than the product; the stock kernel's
 * loop is used instead, with the operand layout that loop reads contiguously.
 */
const SMALL_PRODUCT_MACS = 4096;

let routeMatMul = true;
let stockForOneRow = false;
let nativeGemm: NativeGemmModule | undefined;
let installed = false;
let originalBatchMatMul: KernelConfig | undefined;
let originalGather: KernelConfig | undefined;
let originalTranspose: KernelConfig | undefined;
let wasmBatchMatMul: WasmBatchMatMulFn | undefined;

/**
 * Turn the fast matmul routing on or off at run time (default on). Off runs the stock tfjs
 * wasm kernel; tests use it to check the two agree and benchmarks to measure the difference.
 */
export function setWasmMatMulRouting(enabled: boolean): void {
  routeMatMul = enabled;
}

export function wasmMatMulRouting(): boolean {
  return routeMatMul;
}

/**
 * Run `fn` with the stock matmul kernel unless the native matmul is on. For a one-row product
 * against a fresh (uncached) right-hand side — a column sum 1ᵀ·Y in a backward pass — the
 * stock loop beats XNNPACK, which would pack all of Y first; OpenBLAS beats both.
 */
export function withStockMatMul<T>(fn: () => T): T {
  const previous = stockForOneRow;
  stockForOneRow = true;
  try {
    return fn();
  } finally {
    stockForOneRow = previous;
  }
}

/**
 * Hand every routed float32 product to the native OpenBLAS addon (see native-gemm.ts), or,
 * with undefined, back to XNNPACK. `initBackend` sets it; tests switch it to cover both.
 */
export function setNativeGemm(module: NativeGemmModule | undefined): void {
  nativeGemm = module;
}

/** The native addon products run on, if any. */
export function activeNativeGemm(): NativeGemmModule | undefined {
  return nativeGemm;
}

/** A tensor's byte offset in the wasm memory. */
function offsetOf(backend: WasmBackend, t: TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}

function shapeBytes(shape: readonly number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

function nextId(backend: WasmBackend): number {
  const counter = backend as unknown as { dataIdNextNumber: number };
  return counter.dataIdNextNumber++;
}

/** Swap the last two axes with the backend's own (fast, copying) transpose kernel. */
function transposeLastTwo(backend: WasmBackend, x: TensorInfo): TensorInfo {
  const kernel = getKernel(TRANSPOSE, BACKEND);
  if (!kernel) throw new Error("tfjs wasm backend has no Transpose kernel");
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return kernel.kernelFunc({
    inputs: { x },
    backend: backend as never,
    attrs: { perm },
  }) as TensorInfo;
}

function fastBatchMatMul(args: {
  inputs: BatchMatMulInputs;
  backend: WasmBackend;
  attrs: BatchMatMulAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const a = inputs.a as TensorInfo;
  const b = inputs.b as TensorInfo;
  const original = originalBatchMatMul!.kernelFunc as unknown as (x: typeof args) => TensorInfo;
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  if (!routeMatMul || a.dtype !== "float32" || b.dtype !== "float32" || aRank < 2 || bRank < 2) {
    return original(args);
  }
  const { transposeA, transposeB } = attrs;
  const m = a.shape[transposeA ? aRank - 1 : aRank - 2]!;
  const k = a.shape[transposeA ? aRank - 2 : aRank - 1]!;
  const kB = b.shape[transposeB ? bRank - 1 : bRank - 2]!;
  const n = b.shape[transposeB ? bRank - 2 : bRank - 1]!;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = util.sizeFromShape(outerA);
  const batchB = util.sizeFromShape(outerB);
  const pairedBatches = batchA === 1 || batchB === 1 || util.arraysEqual(outerA, outerB);
  if (k !== kB || !pairedBatches) return original(args); // stock kernel reports / broadcasts
  if (nativeGemm) {
    // OpenBLAS reads any layout in place: no transposes, no slicing, one call.
    const out = backend.makeOutput(
      [...broadcast_util.assertAndGetBroadcastShape(outerA, outerB), m, n],
      "float32",
    );
    nativeGemm.gemm(
      backend.wasm.HEAPU8, // read after makeOutput, which may grow the memory
      offsetOf(backend, a),
      offsetOf(backend, b),
      offsetOf(backend, out),
      Math.max(batchA, batchB),
      m,
      n,
      k,
      transposeA ? 1 : 0,
      transposeB ? 1 : 0,
      batchA === 1 ? 0 : m * k,
      batchB === 1 ? 0 : k * n,
      m * n,
    );
    return out;
  }
  if (stockForOneRow) return original(args);
  // Small products, and one-row products with a batch (attention while decoding one token):
  // XNNPACK's per-call set-up, which packs the right-hand side, costs more than the product.
  if (m * n * k < SMALL_PRODUCT_MACS || (m === 1 && Math.max(batchA, batchB) > 1)) {
    return original(args);
  }
  const outOuter = broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batch = Math.max(batchA, batchB);

  // C = op(A)·op(B) needs its operands untransposed. Either transpose the flagged operands,
  // or compute Cᵀ = op(B)ᵀ·op(A)ᵀ — which flips which operands need transposing — and
  // transpose the (smaller) result back. Pick whichever moves fewer elements.
  const elementsA = batchA * m * k;
  const elementsB = batchB * k * n;
  const direct = (transposeA ? elementsA : 0) + (transposeB ? elementsB : 0);
  const flipped = (transposeB ? 0 : elementsB) + (transposeA ? 0 : elementsA) + batch * m * n;
  if (flipped < direct && batchA === batchB) {
    const swapped = fastBatchMatMul({
      inputs: { a: b, b: a } as BatchMatMulInputs,
      backend,
      attrs: { transposeA: !transposeB, transposeB: !transposeA } as BatchMatMulAttrs,
    }); // [..., n, m]
    const result = transposeLastTwo(backend, swapped);
    backend.disposeData(swapped.dataId);
    return result;
  }

  const temporaries: TensorInfo[] = [];
  const left = transposeA ? transposeLastTwo(backend, a) : a; // [..., m, k]
  if (left !== a) temporaries.push(left);
  const right = transposeB ? transposeLastTwo(backend, b) : b; // [..., k, n]
  if (right !== b) temporaries.push(right);
  const out = backend.makeOutput([...outOuter, m, n], "float32");
  const call = wasmBatchMatMul!;
  const leftData = backend.dataIdMap.get(left.dataId);
  const rightData = backend.dataIdMap.get(right.dataId);
  const outData = backend.dataIdMap.get(out.dataId);

  if (batchB === 1) {
    // A shared right-hand side: fold every batch of the left into one tall product.
    call(
      leftData.id,
      shapeBytes([1, batchA * m, k]),
      3,
      rightData.id,
      shapeBytes([1, k, n]),
      3,
      false,
      false,
      outData.id,
    );
  } else {
    // One XNNPACK product per batch, on views into the operands' memory.
    const tfjs = backend.wasm.tfjs;
    const leftShape = shapeBytes([1, m, k]);
    const rightShape = shapeBytes([1, k, n]);
    for (let i = 0; i < batch; i++) {
      let leftId = leftData.id;
      if (batchA !== 1) {
        leftId = nextId(backend);
        tfjs.registerTensor(leftId, m * k, leftData.memoryOffset + i * m * k * 4);
      }
      const rightId = nextId(backend);
      tfjs.registerTensor(rightId, k * n, rightData.memoryOffset + i * k * n * 4);
      const outId = nextId(backend);
      tfjs.registerTensor(outId, m * n, outData.memoryOffset + i * m * n * 4);
      call(leftId, leftShape, 3, rightId, rightShape, 3, false, false, outId);
      // Views own no memory: dropping them from the C++ registry also drops the XNNPACK
      // operator cached on the right-hand view.
      tfjs.disposeData(outId);
      tfjs.disposeData(rightId);
      if (leftId !== leftData.id) tfjs.disposeData(leftId);
    }
  }
  for (const t of temporaries) backend.disposeData(t.dataId);
  return out;
}

function unsortedSegmentSum(args: {
  inputs: UnsortedSegmentSumInputs;
  backend: WasmBackend;
  attrs: UnsortedSegmentSumAttrs;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs.x as TensorInfo;
  const segmentIds = inputs.segmentIds as TensorInfo;
  const { numSegments } = attrs;
  if (x.dtype !== "float32" && x.dtype !== "int32") {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `UnsortedSegmentSum: x has dtype ${x.dtype}; float32 or int32 is accepted`,
    );
  }
  const idsRank = segmentIds.shape.length;
  if (!util.arraysEqual(x.shape.slice(0, idsRank), segmentIds.shape)) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] must be a prefix of x shape [${x.shape}]`,
    );
  }
  const inner = util.sizeFromShape(x.shape.slice(idsRank));
  const count = util.sizeFromShape(segmentIds.shape);
  const out = backend.makeOutput([numSegments, ...x.shape.slice(idsRank)], x.dtype);
  const values = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  const target = backend.typedArrayFromHeap(out);
  target.fill(0);
  for (let i = 0; i < count; i++) {
    const segment = ids[i]!;
    if (segment < 0) continue; // TensorFlow drops negative segment ids
    if (segment >= numSegments) {
      backend.disposeData(out.dataId);
      throw new ModelError(
        "E_KERNEL_INPUT",
        `UnsortedSegmentSum: segment id ${segment} at position ${i} is not below numSegments ${numSegments}`,
      );
    }
    const from = i * inner;
    const to = segment * inner;
    for (let j = 0; j < inner; j++) target[to + j]! += values[from + j]!;
  }
  return out;
}

/**
 * Row gather along axis 0 (embedding lookups, picking one logit per row): rows are copied
 * with typed-array block copies. The stock kernel validates each index through an assertion
 * closure and gathers element by element — ~50 ns per element. Other gathers go to it.
 */
function fastGather(args: {
  inputs: { x: TensorInfo; indices: TensorInfo };
  backend: WasmBackend;
  attrs: { axis: number; batchDims: number };
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, indices } = inputs;
  const axis = util.parseAxisParam(attrs.axis, x.shape)[0];
  if (
    axis !== 0 ||
    (attrs.batchDims ?? 0) !== 0 ||
    (x.dtype !== "float32" && x.dtype !== "int32") ||
    indices.dtype !== "int32"
  ) {
    return (originalGather!.kernelFunc as unknown as (a: typeof args) => TensorInfo)(args);
  }
  const rows = x.shape[0]!;
  const rowSize = util.sizeFromShape(x.shape.slice(1));
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const index = backend.typedArrayFromHeap(indices);
  const source = backend.typedArrayFromHeap(x);
  const target = backend.typedArrayFromHeap(out);
  for (let i = 0; i < index.length; i++) {
    const r = index[i]!;
    if (!(r >= 0 && r < rows)) {
      backend.disposeData(out.dataId);
      throw new ModelError(
        "E_KERNEL_INPUT",
        `GatherV2: the index value ${r} is not in [0, ${rows - 1}]`,
      );
    }
    if (rowSize === 1) target[i] = source[r]!;
    else target.set(source.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize);
  }
  return out;
}

/** Side of the square tiles the blocked transpose copies (fits L1 for float32). */
const TILE = 32;

/**
 * Transposes that swap the last two axes of large matrices, as blocked tile copies. The stock
 * kernel writes with a stride of a whole row, which thrashes the cache: [4096, 128] takes
 * ~4.6 ms there and ~1.5 ms here. Smaller or other permutations go to the stock kernel.
 */
function fastTranspose(args: {
  inputs: { x: TensorInfo };
  backend: WasmBackend;
  attrs: { perm: number[] };
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const { perm } = attrs;
  const rank = x.shape.length;
  const swapsLastTwo =
    rank >= 2 &&
    perm[rank - 2] === rank - 1 &&
    perm[rank - 1] === rank - 2 &&
    perm.slice(0, -2).every((p, i) => p === i);
  const rows = x.shape[rank - 2] ?? 0;
  const cols = x.shape[rank - 1] ?? 0;
  if (!swapsLastTwo || x.dtype !== "float32" || rows < TILE || cols < TILE || rows * cols < 65536) {
    return (originalTranspose!.kernelFunc as unknown as (a: typeof args) => TensorInfo)(args);
  }
  const batch = util.sizeFromShape(x.shape.slice(0, -2));
  const out = backend.makeOutput([...x.shape.slice(0, -2), cols, rows], "float32");
  const a = backend.typedArrayFromHeap(x);
  const b = backend.typedArrayFromHeap(out);
  const size = rows * cols;
  for (let n = 0; n < batch; n++) {
    const base = n * size;
    for (let i0 = 0; i0 < rows; i0 += TILE) {
      const iEnd = Math.min(i0 + TILE, rows);
      for (let j0 = 0; j0 < cols; j0 += TILE) {
        const jEnd = Math.min(j0 + TILE, cols);
        for (let j = j0; j < jEnd; j++) {
          const target = base + j * rows;
          for (let i = i0; i < iEnd; i++) b[target + i] = a[base + i * cols + j]!;
        }
      }
    }
  }
  return out;
}

/**
 * Identity as an alias (a reference count on the same memory), as the backend's Reshape
 * already is. tfjs clones every tensor it saves for a backward pass through this kernel, and
 * the stock wasm kernel copies: dozens of full-tensor copies per layer per training step.
 * Tensors are immutable (variables swap their data on assign), so sharing is safe.
 */
function aliasIdentity(args: {
  inputs: { x: TensorInfo };
  backend: WasmBackend & { incRef(dataId: object): void };
}): TensorInfo {
  const { x } = args.inputs;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * LayerNorm over the last axis of x [N, C] with gain and optional bias, for inference (no
 * gradient): one kernel where the tfjs composition dispatches nine (two means, subtract,
 * square, add, rsqrt, two multiplies, add). Batch-1 decoding is dominated by per-kernel
 * dispatch, not arithmetic. Statistics in float64, like the float32 composition to ~1e-7.
 */
function fusedLayerNorm(args: {
  inputs: { x: TensorInfo; gamma: TensorInfo; beta?: TensorInfo };
  backend: WasmBackend;
  attrs: { epsilon: number };
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, gamma, beta } = inputs;
  const columns = x.shape[x.shape.length - 1]!;
  if (x.dtype !== "float32" || gamma.shape[0] !== columns || (beta && beta.shape[0] !== columns)) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${FORGE_LAYER_NORM}: x [${x.shape}] (float32) needs gamma and beta of [${columns}]`,
    );
  }
  const out = backend.makeOutput(x.shape, "float32");
  const rows = util.sizeFromShape(x.shape) / columns;
  const native = nativeGemm;
  if (native) {
    // the addon's training kernel (AVX2, rows split across the pool), x̂ written over the
    // output before the output itself, 1/σ into a scratch tensor dropped after
    const rstd = backend.makeOutput([rows], "float32");
    native.layerNorm(
      backend.wasm.HEAPU8,
      offsetOf(backend, x),
      offsetOf(backend, gamma),
      beta ? offsetOf(backend, beta) : 0,
      offsetOf(backend, out),
      offsetOf(backend, out),
      offsetOf(backend, rstd),
      rows,
      columns,
      beta ? 1 : 0,
      attrs.epsilon,
    );
    backend.disposeData(rstd.dataId);
    return out;
  }
  const source = backend.typedArrayFromHeap(x);
  const g = backend.typedArrayFromHeap(gamma);
  const b = beta ? backend.typedArrayFromHeap(beta) : undefined;
  const target = backend.typedArrayFromHeap(out);
  for (let r = 0; r < rows; r++) {
    const from = r * columns;
    let sum = 0;
    for (let c = 0; c < columns; c++) sum += source[from + c]!;
    const mean = sum / columns;
    let squares = 0;
    for (let c = 0; c < columns; c++) {
      const d = source[from + c]! - mean;
      squares += d * d;
    }
    const rstd = 1 / Math.sqrt(squares / columns + attrs.epsilon);
    for (let c = 0; c < columns; c++) {
      const v = (source[from + c]! - mean) * rstd * g[c]!;
      target[from + c] = b ? v + b[c]! : v;
    }
  }
  return out;
}

/**
 * tanh-GELU, x·σ(2c·(x + k·x³)), for inference on small tensors (decoding): one kernel where
 * the composition dispatches seven. Scalar JavaScript, so only below FUSED_GELU_MAX_ELEMENTS
 * (larger tensors go to the vectorised composition; fused.ts decides).
 */
function fusedGelu(args: { inputs: { x: TensorInfo }; backend: WasmBackend }): TensorInfo {
  const { inputs, backend } = args;
  const { x } = inputs;
  if (x.dtype !== "float32") {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${FORGE_GELU}: x has dtype ${x.dtype}; float32 is accepted`,
    );
  }
  const out = backend.makeOutput(x.shape, "float32");
  const native = nativeGemm;
  if (native) {
    // the addon's (AVX2, split across the pool), σ written over the output before it
    const at = offsetOf(backend, out);
    native.gelu(backend.wasm.HEAPU8, offsetOf(backend, x), at, at, util.sizeFromShape(x.shape));
    return out;
  }
  const source = backend.typedArrayFromHeap(x);
  const target = backend.typedArrayFromHeap(out);
  const a = 2 * GELU_C;
  const b = a * GELU_K;
  for (let i = 0; i < source.length; i++) {
    const v = source[i]!;
    target[i] = v / (1 + Math.exp(-v * (a + b * v * v)));
  }
  return out;
}

/** The AdamW step's constants (see optimizer.ts). */
export interface AdamWAttrs {
  beta1: number;
  beta2: number;
  /** 1 − β1^t and 1 − β2^t */
  correction1: number;
  correction2: number;
  epsilon: number;
  lr: number;
  /** lr · weight decay, or 0 for a parameter that is not decayed */
  decay: number;
}

/**
 * One AdamW update of a parameter: new x, m and v from x, m, v and the gradient g, in one pass
 * where the tfjs composition dispatches ~14 kernels (and allocates a scalar tensor for each
 * constant). A training step updates every parameter, so this is ~700 dispatches a step for a
 * 4-layer GPT. On the native addon where it is loaded (float32 arithmetic); else a JS loop in
 * float64, stored as float32.
 */
function fusedAdamW(args: {
  inputs: { x: TensorInfo; m: TensorInfo; v: TensorInfo; g: TensorInfo };
  backend: WasmBackend;
  attrs: AdamWAttrs;
}): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const { x, m, v, g } = inputs;
  for (const t of [m, v, g]) {
    if (t.dtype !== "float32" || !util.arraysEqual(t.shape, x.shape) || x.dtype !== "float32") {
      throw new ModelError(
        "E_KERNEL_INPUT",
        `${FORGE_ADAMW}: x, m, v and g must be float32 of one shape; got [${x.shape}], [${m.shape}], [${v.shape}], [${g.shape}]`,
      );
    }
  }
  const outX = backend.makeOutput(x.shape, "float32");
  const outM = backend.makeOutput(x.shape, "float32");
  const outV = backend.makeOutput(x.shape, "float32");
  const { beta1, beta2, correction1, correction2, epsilon, lr, decay } = attrs;
  if (nativeGemm) {
    nativeGemm.adamw(
      backend.wasm.HEAPU8,
      offsetOf(backend, x),
      offsetOf(backend, m),
      offsetOf(backend, v),
      offsetOf(backend, g),
      offsetOf(backend, outX),
      offsetOf(backend, outM),
      offsetOf(backend, outV),
      util.sizeFromShape(x.shape),
      beta1,
      beta2,
      correction1,
      correction2,
      epsilon,
      lr,
      decay,
    );
    return [outX, outM, outV];
  }
  // Views after every allocation (an allocation may grow, and so move, the heap).
  const [px, pm, pv, pg, nx, nm, nv] = [x, m, v, g, outX, outM, outV].map(
    (t) => backend.typedArrayFromHeap(t) as Float32Array,
  ) as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  const keep1 = 1 - beta1;
  const keep2 = 1 - beta2;
  for (let i = 0; i < px.length; i++) {
    const gi = pg[i]!;
    const mi = pm[i]! * beta1 + gi * keep1;
    const vi = pv[i]! * beta2 + gi * gi * keep2;
    nm[i] = mi;
    nv[i] = vi;
    const xi = px[i]!;
    nx[i] = xi - (lr * (mi / correction1)) / (Math.sqrt(vi / correction2) + epsilon) - decay * xi;
  }
  return [outX, outM, outV];
}

/** e^x on the native addon (float32) where it is loaded; else the stock kernel. */
function nativeExp(
  stock: KernelConfig,
): (args: { inputs: { x: TensorInfo }; backend: WasmBackend }) => TensorInfo {
  return (args) => {
    const { x } = args.inputs;
    const native = nativeGemm;
    if (!native || x.dtype !== "float32") return stock.kernelFunc(args as never) as TensorInfo;
    const { backend } = args;
    const out = backend.makeOutput(x.shape, "float32");
    native.exp(
      backend.wasm.HEAPU8, // read after makeOutput, which may grow the memory
      offsetOf(backend, x),
      offsetOf(backend, out),
      util.sizeFromShape(x.shape),
    );
    return out;
  };
}

/** The native addon, or an E_KERNEL_INPUT naming the kernel that needs it. */
function requireNative(kernel: string): NativeGemmModule {
  if (!nativeGemm) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${kernel} runs on the native addon, which is not loaded`,
    );
  }
  return nativeGemm;
}

/** float32 inputs of one shape, or an E_KERNEL_INPUT naming the kernel. */
function sameFloat32(kernel: string, tensors: TensorInfo[]): void {
  const shape = tensors[0]!.shape;
  if (tensors.some((t) => t.dtype !== "float32" || !util.arraysEqual(t.shape, shape))) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${kernel}: inputs must be float32 of one shape; got ${tensors.map((t) => `[${t.shape}] ${t.dtype}`).join(", ")}`,
    );
  }
}

/** Training LayerNorm over the last axis of x [N, C]: [y, x̂, 1/σ ([N, 1])] in one pass. */
function nativeLayerNorm(args: {
  inputs: { x: TensorInfo; gamma: TensorInfo; beta?: TensorInfo };
  backend: WasmBackend;
  attrs: { epsilon: number };
}): TensorInfo[] {
  const native = requireNative(FORGE_LAYER_NORM_TRAIN);
  const { backend, attrs } = args;
  const { x, gamma, beta } = args.inputs;
  const cols = x.shape[x.shape.length - 1]!;
  sameFloat32(FORGE_LAYER_NORM_TRAIN, beta ? [gamma, beta] : [gamma]);
  if (x.dtype !== "float32" || x.shape.length !== 2 || gamma.shape[0] !== cols) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${FORGE_LAYER_NORM_TRAIN}: x [${x.shape}] (float32, 2-D) needs gamma and beta of [${cols}]`,
    );
  }
  const rows = x.shape[0]!;
  const y = backend.makeOutput(x.shape, "float32");
  const xhat = backend.makeOutput(x.shape, "float32");
  const rstd = backend.makeOutput([rows, 1], "float32");
  native.layerNorm(
    backend.wasm.HEAPU8,
    offsetOf(backend, x),
    offsetOf(backend, gamma),
    beta ? offsetOf(backend, beta) : 0,
    offsetOf(backend, y),
    offsetOf(backend, xhat),
    offsetOf(backend, rstd),
    rows,
    cols,
    beta ? 1 : 0,
    attrs.epsilon,
  );
  return [y, xhat, rstd];
}

/** LayerNorm's input gradient from dy, γ and the saved x̂ and 1/σ. */
function nativeLayerNormGrad(args: {
  inputs: { dy: TensorInfo; gamma: TensorInfo; xhat: TensorInfo; rstd: TensorInfo };
  backend: WasmBackend;
}): TensorInfo {
  const native = requireNative(FORGE_LAYER_NORM_GRAD);
  const { backend } = args;
  const { dy, gamma, xhat, rstd } = args.inputs;
  sameFloat32(FORGE_LAYER_NORM_GRAD, [dy, xhat]);
  const [rows, cols] = xhat.shape as [number, number];
  const dx = backend.makeOutput(xhat.shape, "float32");
  native.layerNormGrad(
    backend.wasm.HEAPU8,
    offsetOf(backend, dy),
    offsetOf(backend, gamma),
    offsetOf(backend, xhat),
    offsetOf(backend, rstd),
    offsetOf(backend, dx),
    rows,
    cols,
  );
  return dx;
}

/**
 * Softmax of attention scores [B, H, T, Tk] where query i sees keys up to i + Tk − T (zero
 * beyond), in one pass on the addon; the composition adds a mask tensor and runs four kernels.
 */
function nativeCausalSoftmax(args: {
  inputs: { x: TensorInfo };
  backend: WasmBackend;
}): TensorInfo {
  const native = requireNative(FORGE_CAUSAL_SOFTMAX);
  const { backend } = args;
  const { x } = args.inputs;
  sameFloat32(FORGE_CAUSAL_SOFTMAX, [x]);
  const [t, tk] = x.shape.slice(-2) as [number, number];
  if (x.shape.length < 2 || tk < t) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${FORGE_CAUSAL_SOFTMAX}: scores [${x.shape}] need at least as many keys as queries`,
    );
  }
  const p = backend.makeOutput(x.shape, "float32");
  native.causalSoftmax(
    backend.wasm.HEAPU8,
    offsetOf(backend, x),
    offsetOf(backend, p),
    util.sizeFromShape(x.shape) / tk,
    t,
    tk,
  );
  return p;
}

interface AttentionAttrs {
  batch: number;
  heads: number;
  kvHeads: number;
}

/**
 * q [B·T, H·d] and k, v [B·T, KV·d] as the kernels' shape arguments — batch, time, heads,
 * key/value heads, head size and the scale 1/√d — or an E_KERNEL_INPUT naming them.
 */
function attentionShape(
  kernel: string,
  q: TensorInfo,
  kv: TensorInfo[],
  attrs: AttentionAttrs,
): [number, number, number, number, number, number] {
  const [rows, width] = q.shape as [number, number];
  const { batch, heads, kvHeads } = attrs;
  const hd = width / heads;
  const fits =
    q.shape.length === 2 &&
    rows % batch === 0 &&
    Number.isInteger(hd) &&
    heads % kvHeads === 0 &&
    kv.every((t) => util.arraysEqual(t.shape, [rows, kvHeads * hd]));
  if (!fits) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${kernel}: q [${q.shape}], k and v [${kv.map((t) => t.shape).join("], [")}] are not [batch ${batch} · time, ${heads} heads · head size] and [batch · time, ${kvHeads} heads · head size]`,
    );
  }
  return [batch, rows / batch, heads, kvHeads, hd, 1 / Math.sqrt(hd)];
}

/** Causal self-attention: [y, p] in one call (native/forge_gemm.cc `CausalAttention`). */
function nativeAttention(args: {
  inputs: { q: TensorInfo; k: TensorInfo; v: TensorInfo };
  backend: WasmBackend;
  attrs: AttentionAttrs;
}): TensorInfo[] {
  const native = requireNative(FORGE_ATTENTION);
  const { backend, attrs } = args;
  const { q, k, v } = args.inputs;
  sameFloat32(FORGE_ATTENTION, [q]);
  sameFloat32(FORGE_ATTENTION, [k, v]);
  const shape = attentionShape(FORGE_ATTENTION, q, [k, v], attrs);
  const [batch, time, heads] = shape;
  const y = backend.makeOutput(q.shape, "float32");
  const p = backend.makeOutput([batch, heads, time, time], "float32");
  const at = (t: TensorInfo) => offsetOf(backend, t);
  native.attention(backend.wasm.HEAPU8, at(q), at(k), at(v), at(y), at(p), ...shape);
  return [y, p];
}

/** Its gradients [dq, dk, dv] (native/forge_gemm.cc `CausalAttentionGrad`). */
function nativeAttentionGrad(args: {
  inputs: { dy: TensorInfo; q: TensorInfo; k: TensorInfo; v: TensorInfo; p: TensorInfo };
  backend: WasmBackend;
  attrs: AttentionAttrs;
}): TensorInfo[] {
  const native = requireNative(FORGE_ATTENTION_GRAD);
  const { backend, attrs } = args;
  const { dy, q, k, v, p } = args.inputs;
  sameFloat32(FORGE_ATTENTION_GRAD, [dy, q]);
  sameFloat32(FORGE_ATTENTION_GRAD, [k, v]);
  const shape = attentionShape(FORGE_ATTENTION_GRAD, q, [k, v], attrs);
  const [batch, time, heads] = shape;
  if (p.dtype !== "float32" || !util.arraysEqual(p.shape, [batch, heads, time, time])) {
    throw new ModelError(
      "E_KERNEL_INPUT",
      `${FORGE_ATTENTION_GRAD}: p [${p.shape}] is not [${batch}, ${heads}, ${time}, ${time}]`,
    );
  }
  const [dq, dk, dv] = [q, k, v].map((t) => backend.makeOutput(t.shape, "float32")) as [
    TensorInfo,
    TensorInfo,
    TensorInfo,
  ];
  const at = (t: TensorInfo) => offsetOf(backend, t);
  native.attentionGrad(
    backend.wasm.HEAPU8,
    at(dy),
    at(q),
    at(k),
    at(v),
    at(p),
    at(dq),
    at(dk),
    at(dv),
    ...shape,
  );
  return [dq, dk, dv];
}

/** Softmax's gradient over the last axis, from dy and the softmax p. */
function nativeSoftmaxGrad(args: {
  inputs: { dy: TensorInfo; p: TensorInfo };
  backend: WasmBackend;
}): TensorInfo {
  const native = requireNative(FORGE_SOFTMAX_GRAD);
  const { backend } = args;
  const { dy, p } = args.inputs;
  sameFloat32(FORGE_SOFTMAX_GRAD, [dy, p]);
  const cols = p.shape[p.shape.length - 1]!;
  const dx = backend.makeOutput(p.shape, "float32");
  native.softmaxGrad(
    backend.wasm.HEAPU8,
    offsetOf(backend, dy),
    offsetOf(backend, p),
    offsetOf(backend, dx),
    util.sizeFromShape(p.shape) / cols,
    cols,
  );
  return dx;
}

/** Training tanh-GELU on the addon: [y, σ(2u)] in one pass (the composition dispatches 7). */
function nativeGelu(args: { inputs: { x: TensorInfo }; backend: WasmBackend }): TensorInfo[] {
  const native = requireNative(FORGE_GELU_TRAIN);
  const { backend } = args;
  const { x } = args.inputs;
  sameFloat32(FORGE_GELU_TRAIN, [x]);
  const y = backend.makeOutput(x.shape, "float32");
  const s = backend.makeOutput(x.shape, "float32");
  native.gelu(
    backend.wasm.HEAPU8,
    offsetOf(backend, x),
    offsetOf(backend, y),
    offsetOf(backend, s),
    util.sizeFromShape(x.shape),
  );
  return [y, s];
}

/** The gradient of `nativeGelu` from dy, x and the saved σ. */
function nativeGeluGrad(args: {
  inputs: { dy: TensorInfo; x: TensorInfo; s: TensorInfo };
  backend: WasmBackend;
}): TensorInfo {
  const native = requireNative(FORGE_GELU_GRAD);
  const { backend } = args;
  const { dy, x, s } = args.inputs;
  sameFloat32(FORGE_GELU_GRAD, [dy, x, s]);
  const dx = backend.makeOutput(x.shape, "float32");
  native.geluGrad(
    backend.wasm.HEAPU8,
    offsetOf(backend, dy),
    offsetOf(backend, x),
    offsetOf(backend, s),
    offsetOf(backend, dx),
    util.sizeFromShape(x.shape),
  );
  return dx;
}

/**
 * Register forge's wasm kernels. Must run after `@tensorflow/tfjs-backend-wasm` is imported
 * and before the wasm backend is initialised (kernel set-up runs at initialisation).
 * Idempotent.
 */
export function installWasmKernels(): void {
  if (installed) return;
  const stock = getKernel(BATCH_MATMUL, BACKEND);
  if (!stock) {
    throw new Error("@tensorflow/tfjs-backend-wasm must be imported before installWasmKernels()");
  }
  originalBatchMatMul = stock;
  unregisterKernel(BATCH_MATMUL, BACKEND);
  registerKernel({
    kernelName: BATCH_MATMUL,
    backendName: BACKEND,
    setupFunc: (backend) => {
      stock.setupFunc?.(backend);
      wasmBatchMatMul = (backend as unknown as WasmBackend).wasm.cwrap(BATCH_MATMUL, null, [
        "number",
        "array",
        "number",
        "number",
        "array",
        "number",
        "number",
        "number",
        "number",
      ]) as unknown as WasmBatchMatMulFn;
    },
    kernelFunc: fastBatchMatMul as unknown as KernelFunc,
  });
  const stockIdentity = getKernel("Identity", BACKEND);
  if (stockIdentity) {
    unregisterKernel("Identity", BACKEND);
    registerKernel({
      kernelName: "Identity",
      backendName: BACKEND,
      kernelFunc: ((args: Parameters<typeof aliasIdentity>[0]) =>
        args.inputs.x.dtype === "string"
          ? stockIdentity.kernelFunc(args as never)
          : aliasIdentity(args)) as unknown as KernelFunc,
    });
  }
  const stockTranspose = getKernel(TRANSPOSE, BACKEND);
  if (stockTranspose) {
    originalTranspose = stockTranspose;
    unregisterKernel(TRANSPOSE, BACKEND);
    registerKernel({
      kernelName: TRANSPOSE,
      backendName: BACKEND,
      setupFunc: (backend) => stockTranspose.setupFunc?.(backend),
      kernelFunc: fastTranspose as unknown as KernelFunc,
    });
  }
  const stockGather = getKernel(GATHER, BACKEND);
  if (stockGather) {
    originalGather = stockGather;
    unregisterKernel(GATHER, BACKEND);
    registerKernel({
      kernelName: GATHER,
      backendName: BACKEND,
      setupFunc: (backend) => stockGather.setupFunc?.(backend),
      kernelFunc: fastGather as unknown as KernelFunc,
    });
  }
  const stockExp = getKernel(EXP, BACKEND);
  if (stockExp) {
    unregisterKernel(EXP, BACKEND);
    registerKernel({
      kernelName: EXP,
      backendName: BACKEND,
      setupFunc: (backend) => stockExp.setupFunc?.(backend),
      kernelFunc: nativeExp(stockExp) as unknown as KernelFunc,
    });
  }
  if (!getKernel(FORGE_GELU, BACKEND)) {
    registerKernel({
      kernelName: FORGE_GELU,
      backendName: BACKEND,
      kernelFunc: fusedGelu as unknown as KernelFunc,
    });
  }
  for (const [kernelName, kernelFunc] of [
    [FORGE_LAYER_NORM_TRAIN, nativeLayerNorm],
    [FORGE_LAYER_NORM_GRAD, nativeLayerNormGrad],
    [FORGE_CAUSAL_SOFTMAX, nativeCausalSoftmax],
    [FORGE_SOFTMAX_GRAD, nativeSoftmaxGrad],
    [FORGE_GELU_TRAIN, nativeGelu],
    [FORGE_GELU_GRAD, nativeGeluGrad],
    [FORGE_ATTENTION, nativeAttention],
    [FORGE_ATTENTION_GRAD, nativeAttentionGrad],
  ] as const) {
    if (!getKernel(kernelName, BACKEND)) {
      registerKernel({
        kernelName,
        backendName: BACKEND,
        kernelFunc: kernelFunc as unknown as KernelFunc,
      });
    }
  }
  if (!getKernel(FORGE_ADAMW, BACKEND)) {
    registerKernel({
      kernelName: FORGE_ADAMW,
      backendName: BACKEND,
      kernelFunc: fusedAdamW as unknown as KernelFunc,
    });
  }
  if (!getKernel(FORGE_LAYER_NORM, BACKEND)) {
    registerKernel({
      kernelName: FORGE_LAYER_NORM,
      backendName: BACKEND,
      kernelFunc: fusedLayerNorm as unknown as KernelFunc,
    });
  }
  if (!getKernel(UNSORTED_SEGMENT_SUM, BACKEND)) {
    registerKernel({
      kernelName: UNSORTED_SEGMENT_SUM,
      backendName: BACKEND,
      kernelFunc: unsortedSegmentSum as unknown as KernelFunc,
    });
  }
  installed = true;
}
