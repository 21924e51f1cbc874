/**
 * The cached decode step in plain JavaScript, for small models.
 *
 * One generated token of a small model is little arithmetic (forge-tiny: about 0.9 M
 * multiply-adds) but ~114 tfjs kernels, and tfjs spends more time dispatching them (engine
 * bookkeeping, tensor allocation) than computing. This decoder runs the per-token step over
 * Float32Arrays instead: weights copied out of the model once (and kept until a variable
 * changes: tfjs tensors are immutable and `assign` gives a variable new data, so a changed
 * data id is a changed weight), the KV cache in preallocated arrays filled from a tfjs
 * prefill, and every product on decode-kernel.ts's WebAssembly SIMD kernels. The prefill (and every window
 * re-encode) stays on tfjs; `generate` picks this path by batch size and width
 * (`jsDecodePays`), or as `decoder` / FORGE_DECODE says.
 *
 * With forge's native addon loaded, a GPT-2 step runs there whole (`decodeStep`: one call per
 * token for every layer and row, on weights packed for it, rows split across the addon's pool
 * for a large batch); a Llama-family step runs its products of 4+ rows and its attention there.
 *
 * It computes what `GPT.run` computes for one new token per sequence — GPT-2 (LayerNorm,
 * tanh-GELU, tied head) and the Llama family (RMSNorm, rotary positions, SwiGLU,
 * grouped-query attention, tied or untied head, q/k/v/o/MLP biases) — with an attached LoRA
 * adapter applied as tfjs applies it (x·W + s·(x·A)·B on its active blocks), pad columns of
 * ragged rows excluded from attention as the -1e9 bias excludes them.
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeGemmModule } from "./backend/native-gemm.js";
import { activeNativeGemm, GELU_C, GELU_K } from "./backend/wasm-kernels.js";
import { isLlamaFamily, parameterCount } from "./config.js";
import {
  matmulKernels,
  matmulPlain,
  WASM_PAGE,
  type WasmMemory,
  wasmMemory,
} from "./decode-kernel.js";
import { ModelError } from "./errors.js";
import type { GPT, LayerCache } from "./gpt.js";
import { rotaryInverseFrequencies } from "./llama-config.js";

/** Which decode step `generate` runs: tfjs kernels, this module's loops, or chosen by size. */
export type DecoderChoice = "auto" | "js" | "tfjs";
const CHOICES: readonly DecoderChoice[] = ["auto", "js", "tfjs"];

/** The choice an option or FORGE_DECODE makes (the option wins; default "auto"). */
export function decoderChoice(option: string | undefined): DecoderChoice {
  const env = process.env.FORGE_DECODE;
  const [value, source] =
    option !== undefined ? [option, "decoder"] : env ? [env, "FORGE_DECODE"] : ["auto", ""];
  if (!CHOICES.includes(value as DecoderChoice))
    throw new ModelError(
      "E_INPUT",
      `${source} must be one of ${CHOICES.join(", ")}; got ${JSON.stringify(value)}`,
    );
  return value as DecoderChoice;
}

/**
 * Where "auto" picks the JS step: batch · width² at most this. The JS step's cost grows with
 * batch · width² (its products run on the SIMD kernels, 5–11 G multiply-adds/s), tfjs' is
 * mostly fixed per kernel until XNNPACK's throughput takes over. Measured (generate, 64
 * tokens, 4 layers, 4 heads, JS ÷ tfjs tokens/s on the shared 2-core machine, with the
 * two-by-four kernel): width 128 — batch 4 3.5×, 16 1.8×; width 256 — 16 1.5×, 32 1.4×;
 * width 512 — 4 1.0–1.15×, 8 1.24×, 16 1.29×; width 768 — 1 1.4×, 4 0.96×, 16 1.18×. Before
 * that kernel: width 128 — 1 3.3×, 8 1.9×, 32 1.3×; width 256 — 1 2.2×. Past 2²¹ the gain
 * is small and uneven, and the JS step holds a copy of the weights.
 */
export const JS_DECODE_MAX_BATCH_WIDTH2 = 1 << 21;
/**
 * …and models up to this many parameters: the JS step keeps a float32 copy of the weights
 * (here at most 128 MB), made again whenever a weight changes.
 */
export const JS_DECODE_MAX_PARAMETERS = 32_000_000;

/**
 * Whether the JS decode step pays for this model and batch (the "auto" choice). The limits
 * were measured on the wasm backend; native TensorFlow (`@tensorflow/tfjs-node`), not
 * measured here, keeps its own step under "auto".
 */
export function jsDecodePays(model: GPT, batch: number): boolean {
  const { nEmbd } = model.config;
  return (
    tf.getBackend() !== "tensorflow" &&
    parameterCount(model.config) <= JS_DECODE_MAX_PARAMETERS &&
    batch * nEmbd * nEmbd <= JS_DECODE_MAX_BATCH_WIDTH2
  );
}

/**
 * A linear layer in the weight memory: W as [out, in] rows at float offset `w` (transposed
 * from the model's [in, out]), its bias, and an active LoRA adapter's A [r, in] and B [out, r].
 */
interface Linear {
  w: number;
  b: Float32Array | undefined;
  /** The bias' offset in the memory (−1: none), for the native step. */
  bAt: number;
  inDim: number;
  outDim: number;
  lora: { a: number; b: number; r: number; scale: number } | undefined;
}

interface Norm {
  g: Float32Array;
  b: Float32Array | undefined;
  /** Their offsets in the memory (−1: no bias), for the native step. */
  gAt: number;
  bAt: number;
}

interface Block {
  norm1: Norm;
  norm2: Norm;
  /** GPT-2: c_attn (q, k, v columns). Llama: q, k, v separately. */
  qkv?: Linear;
  q?: Linear;
  k?: Linear;
  v?: Linear;
  o: Linear;
  /** GPT-2: c_fc; Llama: gate and up. */
  fc?: Linear;
  gate?: Linear;
  up?: Linear;
  down: Linear;
}

/** A model's weights copied into a WebAssembly memory (float offsets), for the kernel. */
interface Weights {
  llama: boolean;
  /** Token embedding [V, C]; position embedding [T, C] (GPT-2). */
  wte: number;
  wpe: number | undefined;
  blocks: Block[];
  normF: Norm;
  /** Output layer [V, C]. */
  head: number;
  /** Floats the weights take at the start of `memory`; a decoder's scratch follows. */
  floats: number;
  memory: WasmMemory;
  /** A decoder is using the memory past `floats` (a nested one works on a copy). */
  busy: boolean;
  /** The widest LoRA rank (scratch). */
  rank: number;
}

/** Offsets are kept 16-byte aligned. */
/**
 * Rows from which a product goes to the native OpenBLAS matmul when it is loaded (below, the
 * SIMD kernel's single-row and four-row paths are as fast as the call).
 */
const NATIVE_MIN_ROWS = 4;

const align = (floats: number) => Math.ceil(floats / 4) * 4;

function values(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

/** Every tensor the snapshot copies, whose data ids tell whether it is still current. */
function sources(model: GPT): tf.Tensor[] {
  const out: tf.Tensor[] = [...model.params.values()];
  if (model.lora) out.push(...model.lora.variables());
  return out;
}

interface Snapshot {
  weights: Weights;
  dataIds: object[];
  lora: string;
  packed: boolean;
}

/** Outputs per panel of a packed weight (native/forge_gemm.cc `kPanel`). */
export const PANEL = 16;

const snapshots = new WeakMap<GPT, Snapshot>();

/** The adapter's state besides its tensors: which blocks, at what scale. */
function loraKey(model: GPT): string {
  const lora = model.lora;
  return lora ? `${lora.scale}|${lora.activeLayers?.join(",") ?? "all"}` : "";
}

/**
 * The model's weights in a wasm memory: cached per model while no variable has changed.
 * `packed`: the linear layers' and the head's weights in the native step's panels instead of
 * [out, in] rows.
 */
function weightsOf(model: GPT, packed: boolean): Weights {
  const tensors = sources(model);
  const ids = tensors.map((t) => (t as unknown as { dataId: object }).dataId);
  const key = loraKey(model);
  const cached = snapshots.get(model);
  if (
    cached &&
    cached.lora === key &&
    cached.packed === packed &&
    cached.dataIds.length === ids.length &&
    cached.dataIds.every((id, i) => id === ids[i])
  )
    return cached.weights;
  const weights = snapshot(model, packed);
  snapshots.set(model, { weights, dataIds: ids, lora: key, packed });
  return weights;
}

/**
 * How a tensor is placed: as it is; a matrix [in, out] as [out, in] rows (the SIMD kernels'
 * and the per-op step's layout); or, for the native step, as panels of `PANEL` outputs, each
 * [in, PANEL] (zero past the last output), from a matrix [in, out] (`panels`) or [out, in]
 * (`panels of transpose`).
 */
type Layout = "as is" | "transposed" | "panels" | "panels of transpose";

function packedSize(inDim: number, outDim: number): number {
  return Math.ceil(outDim / PANEL) * PANEL * inDim;
}

/** Write w [in, out] (row-major values) into `view` at `at` as panels. */
function writePanels(
  view: Float32Array,
  at: number,
  w: Float32Array,
  inDim: number,
  outDim: number,
): void {
  for (let p = 0; p * PANEL < outDim; p++) {
    const cols = Math.min(PANEL, outDim - p * PANEL);
    const panel = at + p * PANEL * inDim;
    for (let i = 0; i < inDim; i++)
      view.set(
        w.subarray(i * outDim + p * PANEL, i * outDim + p * PANEL + cols),
        panel + i * PANEL,
      );
  }
}

function snapshot(model: GPT, packed: boolean): Weights {
  const config = model.config;
  const llama = isLlamaFamily(config);
  const lora = model.lora;
  const active = lora?.activeLayers;
  // First the layout (every matrix's offset), then one memory, then the copies.
  const writes: { at: number; tensor: tf.Tensor; layout: Layout }[] = [];
  let floats = 0;
  /** Place a tensor in the memory. */
  const place = (tensor: tf.Tensor, layout: Layout = "as is"): number => {
    const at = floats;
    writes.push({ at, tensor, layout });
    const [rows, cols] = tensor.shape as [number, number];
    const size =
      layout === "panels"
        ? packedSize(rows, cols)
        : layout === "panels of transpose"
          ? packedSize(cols, rows)
          : tensor.size;
    floats = align(floats + size);
    return at;
  };
  /** A linear layer's weight [in, out]: panels for the native step, else [out, in] rows. */
  const matrix: Layout = packed ? "panels" : "transposed";
  let rank = 0;
  const linear = (prefix: string): Linear => {
    const w = model.param(`${prefix}.weight`);
    const [inDim, outDim] = w.shape as [number, number];
    const bias = model.params.get(`${prefix}.bias`);
    const a = lora?.a.get(prefix);
    const layer = Number(prefix.split(".")[1]);
    const applies =
      a !== undefined && lora!.strength !== 0 && (active === undefined || active.includes(layer));
    let adapter: Linear["lora"];
    if (applies) {
      const r = lora!.config.r;
      rank = Math.max(rank, r);
      adapter = {
        a: place(a, "transposed"),
        b: place(lora!.b.get(prefix)!, "transposed"),
        r,
        scale: lora!.scale,
      };
    }
    return {
      w: place(w, matrix),
      b: bias ? values(bias) : undefined,
      bAt: bias ? place(bias) : -1,
      inDim,
      outDim,
      lora: adapter,
    };
  };
  const norm = (gain: string, bias?: string): Norm => {
    const b = bias === undefined ? undefined : model.params.get(bias);
    const g = model.param(gain);
    return {
      g: values(g),
      b: b ? values(b) : undefined,
      gAt: place(g),
      bAt: b ? place(b) : -1,
    };
  };
  const blocks: Block[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    if (llama) {
      const p = `layers.${i}`;
      blocks.push({
        norm1: norm(`${p}.input_layernorm.weight`),
        norm2: norm(`${p}.post_attention_layernorm.weight`),
        q: linear(`${p}.self_attn.q_proj`),
        k: linear(`${p}.self_attn.k_proj`),
        v: linear(`${p}.self_attn.v_proj`),
        o: linear(`${p}.self_attn.o_proj`),
        gate: linear(`${p}.mlp.gate_proj`),
        up: linear(`${p}.mlp.up_proj`),
        down: linear(`${p}.mlp.down_proj`),
      });
    } else {
      const p = `h.${i}`;
      blocks.push({
        norm1: norm(`${p}.ln_1.weight`, `${p}.ln_1.bias`),
        norm2: norm(`${p}.ln_2.weight`, `${p}.ln_2.bias`),
        qkv: linear(`${p}.attn.c_attn`),
        o: linear(`${p}.attn.c_proj`),
        fc: linear(`${p}.mlp.c_fc`),
        down: linear(`${p}.mlp.c_proj`),
      });
    }
  }
  let wte: number;
  let wpe: number | undefined;
  let head: number;
  let normF: Norm;
  if (llama) {
    wte = place(model.param("embed_tokens.weight"));
    head = config.llama!.tieWordEmbeddings ? wte : place(model.param("lm_head.weight"));
    if (packed) throw new ModelError("E_INPUT", "the native step runs GPT-2 models only");
    normF = norm("norm.weight");
  } else {
    wte = place(model.param("wte.weight"));
    wpe = place(model.param("wpe.weight"));
    head = packed ? place(model.param("wte.weight"), "panels of transpose") : wte;
    normF = norm("ln_f.weight", "ln_f.bias");
  }
  const memory = wasmMemory(floats * 4);
  const view = new Float32Array(memory.buffer);
  for (const { at, tensor, layout } of writes) {
    if (layout === "as is") view.set(values(tensor), at);
    else if (layout === "panels") {
      const [inDim, outDim] = tensor.shape as [number, number];
      writePanels(view, at, values(tensor), inDim, outDim);
    } else {
      // the backend's transpose kernel (blocked, on wasm) beats a JS loop
      const turned = tf.transpose(tensor);
      if (layout === "transposed") view.set(values(turned), at);
      else writePanels(view, at, values(turned), turned.shape[0]!, turned.shape[1]!);
      turned.dispose();
    }
  }
  return { llama, wte, wpe, blocks, normF, head, floats, memory, busy: false, rank };
}

/**
 * Scratch (activations and KV cache) a decoder may leave the model's weight memory grown by
 * (wasm memory never shrinks); a decoder that needs more works on its own copy of the weights
 * (forge-tiny: batch 16 at the full window fits, 3.5 MB of weights to copy beyond).
 */
const SHARED_SCRATCH_BYTES = 32 << 20;

// Elementwise loops over a float32 view, as small functions V8 optimises on their own.

/** view[x..x+n) += view[y..y+n). */
function addInto(view: Float32Array, x: number, y: number, n: number): void {
  for (let j = 0; j < n; j++) view[x + j] = view[x + j]! + view[y + j]!;
}

/** 2^k for k in −127…128 (expApprox's scale). */
const POWERS_OF_TWO = Float64Array.from({ length: 256 }, (_, i) => 2 ** (i - 127));
const LN2_HI = 0.693145751953125; // ln 2 split so that k · LN2_HI is exact (Cody and Waite)
const LN2_LO = 1.428606765330187e-6;

/**
 * e^y within 1e-8 (relative) for y in [−87, 88], clamped outside — far inside float32's
 * precision, and several times cheaper than Math.exp in V8's loops: y = k·ln 2 + f with
 * |f| ≤ ln 2 / 2, e^f by its degree-7 Taylor polynomial, times 2^k from a table.
 */
export function expApprox(y: number): number {
  const x = Math.max(-87, Math.min(y, 88));
  const k = Math.round(x * Math.LOG2E);
  const f = x - k * LN2_HI - k * LN2_LO;
  const p =
    1 + f * (1 + f * (0.5 + f * (1 / 6 + f * (1 / 24 + f * (1 / 120 + f * (1 / 720 + f / 5040))))));
  return p * POWERS_OF_TWO[k + 127]!;
}

/** tanh-GELU in place, as x·σ(2u), u = c·(x + k·x³) (the tfjs kernels' form). */
function gelu(view: Float32Array, at: number, n: number): void {
  const a = -2 * GELU_C;
  const b = -2 * GELU_C * GELU_K;
  for (let j = at; j < at + n; j++) {
    const u = view[j]!;
    view[j] = u / (1 + expApprox(a * u + b * u * u * u));
  }
}

/** SiLU(gate) · up into gate. */
function swiglu(view: Float32Array, gate: number, up: number, n: number): void {
  for (let j = 0; j < n; j++) {
    const g = view[gate + j]!;
    view[gate + j] = Math.fround(g / (1 + expApprox(-g))) * view[up + j]!;
  }
}

/**
 * A decoder for one generate call's batch: its KV cache, and one step at a time. Load it from
 * a tfjs prefill (`load`), `step` one token per row, `dispose` when done (it lends the
 * model's weight memory its scratch space).
 */
export class JsDecoder {
  private readonly weights: Weights;
  private readonly batch: number;
  private readonly capacity: number;
  private readonly C: number;
  private readonly H: number;
  private readonly KV: number;
  private readonly hd: number;
  private readonly V: number;
  private readonly epsilon: number;
  /** The weights' memory, or a copy when another decoder holds it. */
  private readonly memory: WasmMemory;
  private readonly owner: boolean;
  private readonly view: Float32Array;
  /** The same memory as bytes, for the native matmul. */
  private readonly bytes: Uint8Array;
  private readonly kernels: ReturnType<typeof matmulKernels>;
  /** Llama: inverse rotary frequencies, per pair. */
  private readonly frequencies: Float64Array | undefined;
  // scratch (float offsets into view): [B, ·] activations; keys per layer [B, KV, capacity,
  // hd], values per layer transposed, [B, KV, hd, capacity] (so both attention products are
  // rows · vector), or as the keys for the native step (`nativeStep`), which streams through
  // them
  private readonly x: number;
  private readonly h: number;
  private readonly qkv: number;
  private readonly q: number;
  private readonly k: number;
  private readonly v: number;
  private readonly att: number;
  private readonly proj: number;
  private readonly hidden: number;
  private readonly up: number;
  private readonly low: number;
  private readonly update: number;
  private readonly logits: number;
  private readonly keys: number[] = [];
  private readonly vals: number[] = [];
  /** Attention weights of one head, [capacity]. */
  private readonly scores: number;
  /** Each row's first attended position (−1: inactive), int32 [B], for the native attention. */
  private readonly starts: number;
  private readonly startsView: Int32Array;
  /** This step's token ids and positions, int32 [B], for the native step. */
  private readonly ids: number;
  private readonly positions: number;
  private readonly idsView: Int32Array;
  private readonly positionsView: Int32Array;
  /**
   * The native addon's whole step (GPT-2 models): the addon loaded when the decoder was made,
   * and the plan it reads (`stepPlan`). The per-op path runs Llama-family models, and runs
   * without the addon.
   */
  private readonly nativeStep: { addon: NativeGemmModule; plan: Float64Array } | undefined;
  private readonly active: Uint8Array;
  private pads: number[] = [];
  private length = 0;
  private disposed = false;

  constructor(model: GPT, batch: number) {
    const config = model.config;
    const l = config.llama;
    // GPT-2 models take the native addon's whole step where it is loaded
    const addon = l ? undefined : activeNativeGemm();
    const weights = weightsOf(model, addon !== undefined);
    this.weights = weights;
    this.batch = batch;
    this.capacity = config.blockSize;
    this.C = config.nEmbd;
    this.H = config.nHead;
    this.V = config.vocabSize;
    this.epsilon = config.layerNormEpsilon;
    this.KV = l ? l.nKvHead : config.nHead;
    this.hd = l ? l.headDim : config.nEmbd / config.nHead;
    this.frequencies = l
      ? rotaryInverseFrequencies(l.headDim, l.ropeTheta, l.ropeScaling)
      : undefined;
    const qWidth = this.H * this.hd;
    const kvWidth = this.KV * this.hd;
    const inner = l ? l.intermediateSize : 4 * this.C;
    let end = weights.floats;
    const take = (floats: number) => {
      const at = end;
      end = align(end + floats);
      return at;
    };
    this.x = take(batch * this.C);
    this.h = take(batch * this.C);
    this.qkv = take(batch * 3 * this.C);
    this.q = take(batch * qWidth);
    this.k = take(batch * kvWidth);
    this.v = take(batch * kvWidth);
    this.att = take(batch * qWidth);
    this.proj = take(batch * this.C);
    this.hidden = take(batch * inner);
    this.up = take(batch * inner);
    this.low = take(batch * weights.rank);
    this.update = take(weights.rank > 0 ? batch * Math.max(3 * this.C, qWidth, inner) : 0);
    this.logits = take(batch * this.V);
    this.scores = take(this.capacity);
    this.starts = take(batch);
    this.ids = take(batch);
    this.positions = take(batch);
    for (let i = 0; i < config.nLayer; i++) {
      this.keys.push(take(batch * this.KV * this.capacity * this.hd));
      this.vals.push(take(batch * this.KV * this.capacity * this.hd));
    }
    const bytes = end * 4;
    if (weights.busy || bytes - weights.floats * 4 > SHARED_SCRATCH_BYTES) {
      // another decoder (an onStep callback generating with the same model) holds the scratch,
      // or this one needs more than the model's memory should keep after it: a copy of the
      // weights in a memory of its own, freed with the decoder
      this.memory = wasmMemory(bytes);
      new Uint8Array(this.memory.buffer).set(
        new Uint8Array(weights.memory.buffer, 0, weights.floats * 4),
      );
      this.owner = false;
    } else {
      const have = weights.memory.buffer.byteLength;
      if (bytes > have) weights.memory.grow(Math.ceil((bytes - have) / WASM_PAGE));
      this.memory = weights.memory;
      weights.busy = true;
      this.owner = true;
    }
    this.view = new Float32Array(this.memory.buffer);
    this.bytes = new Uint8Array(this.memory.buffer);
    this.startsView = new Int32Array(this.memory.buffer, this.starts * 4, batch);
    this.idsView = new Int32Array(this.memory.buffer, this.ids * 4, batch);
    this.positionsView = new Int32Array(this.memory.buffer, this.positions * 4, batch);
    this.kernels = matmulKernels(this.memory);
    this.active = new Uint8Array(batch);
    this.nativeStep = addon ? { addon, plan: this.stepPlan(inner) } : undefined;
  }

  /**
   * The layout native/forge_gemm.cc's `decodeStep` reads (its kPlan* names): the shape, then
   * byte offsets of the scratch and weights, then per block its norms, cache and four linear
   * layers (weight, bias, LoRA A and B, rank, scale); −1 marks an absent bias or adapter.
   */
  private stepPlan(inner: number): Float64Array {
    const w = this.weights;
    const bytes = (at: number) => (at < 0 ? -1 : at * 4);
    const norm = (n: Norm) => [bytes(n.gAt), bytes(n.bAt)];
    const linear = (l: Linear) => [
      bytes(l.w),
      bytes(l.bAt),
      l.lora ? bytes(l.lora.a) : -1,
      l.lora ? bytes(l.lora.b) : -1,
      l.lora?.r ?? 0,
      l.lora?.scale ?? 0,
    ];
    const header = [
      this.batch,
      this.C,
      this.H,
      this.hd,
      this.capacity,
      this.V,
      inner,
      w.blocks.length,
      w.rank,
      this.epsilon,
      ...[
        ...[this.x, this.h, this.qkv, this.att, this.proj, this.hidden, this.low, this.update],
        ...[this.logits, this.starts, this.ids, this.positions, w.wte, w.wpe!],
      ].map(bytes),
      ...norm(w.normF),
      bytes(w.head),
    ];
    const blocks = w.blocks.flatMap((b, i) => [
      ...norm(b.norm1),
      ...norm(b.norm2),
      bytes(this.keys[i]!),
      bytes(this.vals[i]!),
      ...[b.qkv!, b.o, b.fc!, b.down].flatMap(linear),
    ]);
    return Float64Array.from([...header, ...blocks]);
  }

  /** Give the weight memory's scratch space back. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.owner) this.weights.busy = false;
  }

  /** Positions the cache holds (the padded width). */
  get cachedLength(): number {
    return this.length;
  }

  /** Take the cache of a prefill ([B, KV, T, hd] per layer) and each row's left pads. */
  load(cache: readonly LayerCache[], pads: readonly number[]): void {
    const [batch, heads, time, hd] = cache[0]!.k.shape;
    if (batch !== this.batch || heads !== this.KV || hd !== this.hd || time > this.capacity)
      throw new ModelError(
        "E_INPUT",
        `a cache of shape [${cache[0]!.k.shape}] does not fit this decoder (batch ${this.batch}, ${this.KV} heads of ${this.hd}, ${this.capacity} positions)`,
      );
    const { view, capacity } = this;
    cache.forEach((layer, i) => {
      const keys = values(layer.k);
      const vals = values(layer.v);
      for (let row = 0; row < batch * heads; row++) {
        const slice = [row * time * hd, (row + 1) * time * hd] as const;
        view.set(keys.subarray(...slice), this.keys[i]! + row * capacity * hd);
        if (this.nativeStep) {
          view.set(vals.subarray(...slice), this.vals[i]! + row * capacity * hd);
          continue;
        }
        const to = this.vals[i]! + row * hd * capacity;
        for (let t = 0; t < time; t++) {
          const from = (row * time + t) * hd;
          for (let j = 0; j < hd; j++) view[to + j * capacity + t] = vals[from + j]!;
        }
      }
    });
    this.pads = [...pads];
    this.length = time;
  }

  /** y [rows, m] = x [rows, n] · wᵀ (w [m, n], rows `wStride` apart), float offsets. */
  private matmul(
    w: number,
    x: number,
    y: number,
    n: number,
    m: number,
    rows: number,
    wStride = n,
  ): void {
    const native = activeNativeGemm();
    if (native && rows >= NATIVE_MIN_ROWS && wStride === n) {
      // OpenBLAS (FMA, 256-bit vectors, the pool's threads) on this memory, in place
      native.gemm(this.bytes, x * 4, w * 4, y * 4, 1, rows, m, n, 0, 1, 0, 0, 0);
      return;
    }
    const kernels = this.kernels;
    if (!kernels) {
      matmulPlain(this.view, w, x, y, n, m, rows, wStride);
      return;
    }
    const rows4 = rows & ~3;
    const m2 = m & ~1;
    if (rows4 === 0 || m2 === 0 || n % 4 !== 0) {
      kernels.matmul(w * 4, x * 4, y * 4, n * 4, m, rows, wStride * 4);
      return;
    }
    // two outputs by four rows at a time; then an odd last output, and the last rows
    kernels.matmul2x4(w * 4, x * 4, y * 4, n * 4, m2, rows4, wStride * 4, m * 4);
    if (m2 < m)
      for (let r = 0; r < rows4; r++)
        kernels.matmul(
          (w + m2 * wStride) * 4,
          (x + r * n) * 4,
          (y + r * m + m2) * 4,
          n * 4,
          1,
          1,
          wStride * 4,
        );
    if (rows4 < rows)
      kernels.matmul(
        w * 4,
        (x + rows4 * n) * 4,
        (y + rows4 * m) * 4,
        n * 4,
        m,
        rows - rows4,
        wStride * 4,
      );
  }

  /** y = x·W (+ b) (+ s·(x·A)·B) for all rows. */
  private linear(layer: Linear, x: number, y: number): void {
    const { inDim: n, outDim: m, b } = layer;
    const B = this.batch;
    const view = this.view;
    this.matmul(layer.w, x, y, n, m, B);
    if (b)
      for (let r = 0; r < B; r++) {
        const base = y + r * m;
        for (let o = 0; o < m; o++) view[base + o] = view[base + o]! + b[o]!;
      }
    const lora = layer.lora;
    if (!lora) return;
    // y += s · (x·A)·B, with (x·A) in float32 as tfjs holds it
    this.matmul(lora.a, x, this.low, n, lora.r, B);
    const update = this.update;
    this.matmul(lora.b, this.low, update, lora.r, m, B);
    for (let j = 0; j < B * m; j++)
      view[y + j] = view[y + j]! + Math.fround(view[update + j]! * lora.scale);
  }

  /** LayerNorm (with beta) or RMSNorm (`rms`) of each active row of x [B, C] into y. */
  private norm(x: number, y: number, norm: Norm, rms: boolean): void {
    const { C, view, active } = this;
    const { g, b: beta } = norm;
    for (let r = 0; r < this.batch; r++) {
      if (active[r] === 0) continue;
      const base = r * C;
      let mean = 0;
      if (!rms) {
        for (let c = 0; c < C; c++) mean += view[x + base + c]!;
        mean /= C;
      }
      let squares = 0;
      for (let c = 0; c < C; c++) {
        const d = view[x + base + c]! - mean;
        squares += d * d;
      }
      const rstd = 1 / Math.sqrt(squares / C + this.epsilon);
      for (let c = 0; c < C; c++) {
        const v = (view[x + base + c]! - mean) * rstd * g[c]!;
        view[y + base + c] = beta === undefined ? v : v + beta[c]!;
      }
    }
  }

  /**
   * Drop the cache's oldest `drop` positions (a rotary model's context shift: the rest keep
   * their keys and values, and their positions, since rotary attention depends on distance).
   */
  shift(drop: number): void {
    if (!(Number.isInteger(drop) && drop >= 0 && drop <= this.length))
      throw new ModelError("E_INPUT", `cannot drop ${drop} of ${this.length} cached positions`);
    const { view, capacity, hd, length } = this;
    for (let i = 0; i < this.keys.length; i++) {
      for (let row = 0; row < this.batch * this.KV; row++) {
        const keys = this.keys[i]! + row * capacity * hd; // [t][hd]
        view.copyWithin(keys, keys + drop * hd, keys + length * hd);
        if (this.nativeStep) {
          const vals = this.vals[i]! + row * capacity * hd; // [t][hd]
          view.copyWithin(vals, vals + drop * hd, vals + length * hd);
          continue;
        }
        const vals = this.vals[i]! + row * hd * capacity; // [hd][t]
        for (let j = 0; j < hd; j++) {
          const from = vals + j * capacity;
          view.copyWithin(from, from + drop, from + length);
        }
      }
    }
    this.length -= drop;
    this.pads = this.pads.map((pad) => Math.max(0, pad - drop));
  }

  /**
   * One token per row (`ids`, at `positions`), appended to the cache; rows with `skip[r]` are
   * left out of attention and normalisation (their logits are unspecified). Returns logits
   * [B·V], a view the next step overwrites.
   */
  step(
    ids: readonly number[],
    positions: readonly number[],
    skip?: readonly boolean[],
  ): Float32Array {
    const { batch: B, C, H, KV, hd, V, weights, active, view } = this;
    if (this.disposed) throw new ModelError("E_INPUT", "this decoder was disposed");
    if (this.length + 1 > this.capacity)
      throw new ModelError("E_INPUT", `the cache is full (${this.capacity} positions)`);
    for (let r = 0; r < B; r++) active[r] = skip?.[r] ? 0 : 1;
    if (this.nativeStep) {
      // the whole step in one call (rows split across the pool when the batch pays for it)
      const { startsView, idsView, positionsView } = this;
      for (let r = 0; r < B; r++) {
        startsView[r] = active[r] === 0 ? -1 : this.pads[r]!;
        idsView[r] = ids[r]!;
        positionsView[r] = positions[r]!;
      }
      this.nativeStep.addon.decodeStep(this.bytes, this.nativeStep.plan, this.length);
      this.length++;
      return view.subarray(this.logits, this.logits + B * V);
    }
    const x = this.x;
    for (let r = 0; r < B; r++) {
      const te = weights.wte + ids[r]! * C;
      const to = x + r * C;
      if (weights.wpe === undefined) view.copyWithin(to, te, te + C);
      else {
        const pe = weights.wpe + positions[r]! * C;
        for (let c = 0; c < C; c++) view[to + c] = view[te + c]! + view[pe + c]!;
      }
    }
    const llama = weights.llama;
    const t = this.length; // this token's slot
    const qWidth = H * hd;
    const kvWidth = KV * hd;
    const capacity = this.capacity;
    for (let i = 0; i < weights.blocks.length; i++) {
      const block = weights.blocks[i]!;
      this.norm(x, this.h, block.norm1, llama);
      let q = this.q;
      let k = this.k;
      let v = this.v;
      let rowWidth = kvWidth; // floats per row of the buffers k and v sit in
      if (llama) {
        this.linear(block.q!, this.h, q);
        this.linear(block.k!, this.h, k);
        this.linear(block.v!, this.h, v);
        this.rotate(q, H, positions);
        this.rotate(k, KV, positions);
      } else {
        this.linear(block.qkv!, this.h, this.qkv);
        q = this.qkv;
        k = this.qkv + C;
        v = this.qkv + 2 * C;
        rowWidth = 3 * C;
      }
      // append k, v at slot t
      const keys = this.keys[i]!;
      const vals = this.vals[i]!;
      for (let r = 0; r < B; r++) {
        for (let head = 0; head < KV; head++) {
          const from = r * rowWidth + head * hd;
          const to = ((r * KV + head) * capacity + t) * hd;
          view.copyWithin(keys + to, k + from, k + from + hd);
          const column = vals + (r * KV + head) * hd * capacity + t;
          for (let j = 0; j < hd; j++) view[column + j * capacity] = view[v + from + j]!;
        }
      }
      this.attend(q, llama ? qWidth : 3 * C, keys, vals);
      this.linear(block.o, this.att, this.proj);
      addInto(view, x, this.proj, B * C);
      this.norm(x, this.h, block.norm2, llama);
      const hidden = this.hidden;
      if (llama) {
        this.linear(block.gate!, this.h, hidden);
        this.linear(block.up!, this.h, this.up);
        swiglu(view, hidden, this.up, B * block.gate!.outDim);
      } else {
        this.linear(block.fc!, this.h, hidden);
        gelu(view, hidden, B * block.fc!.outDim);
      }
      this.linear(block.down, hidden, this.proj);
      addInto(view, x, this.proj, B * C);
    }
    this.length++;
    this.norm(x, this.h, weights.normF, llama);
    this.matmul(weights.head, this.h, this.logits, C, V, B);
    return view.subarray(this.logits, this.logits + B * V);
  }

  /** Rotary positions on x [B, heads·hd] in place (rotate-half, as GPT.rotate). */
  private rotate(x: number, heads: number, positions: readonly number[]): void {
    const { hd, batch: B, active, view } = this;
    const half = hd / 2;
    const frequencies = this.frequencies!;
    for (let r = 0; r < B; r++) {
      if (active[r] === 0) continue;
      const p = positions[r]!;
      for (let j = 0; j < half; j++) {
        const angle = p * frequencies[j]!;
        // the tfjs path's table holds float32 cos and sin
        const cos = Math.fround(Math.cos(angle));
        const sin = Math.fround(Math.sin(angle));
        for (let head = 0; head < heads; head++) {
          const base = x + r * heads * hd + head * hd;
          const first = view[base + j]!;
          const second = view[base + half + j]!;
          view[base + j] = first * cos - second * sin;
          view[base + half + j] = second * cos + first * sin;
        }
      }
    }
  }

  /**
   * Attention of each active row's query heads (q: rows of `qRow` floats) over its cached
   * positions from its first real token (pads are excluded, as the -1e9 bias excludes them),
   * into att [B, H·hd].
   */
  private attend(q: number, qRow: number, keys: number, vals: number): void {
    const { batch: B, H, KV, hd, capacity, view, active, scores } = this;
    const group = H / KV;
    const scale = 1 / Math.sqrt(hd);
    const end = this.length + 1; // keys 0..length (this token included)
    const native = activeNativeGemm();
    if (native) {
      // every row and head in one call (AVX2: ~4× the SIMD kernel's per-head products)
      const starts = this.startsView;
      for (let r = 0; r < B; r++) starts[r] = active[r] === 0 ? -1 : this.pads[r]!;
      native.attend(
        this.bytes,
        q * 4,
        qRow,
        keys * 4,
        vals * 4,
        this.att * 4,
        this.starts * 4,
        B,
        H,
        KV,
        hd,
        capacity,
        end,
        scale,
      );
      return;
    }
    for (let r = 0; r < B; r++) {
      if (active[r] === 0) continue;
      const start = this.pads[r]!;
      const count = end - start;
      for (let head = 0; head < H; head++) {
        const kv = Math.floor(head / group);
        const qb = q + r * qRow + head * hd;
        // scores = K[start..end) · q
        this.matmul(keys + ((r * KV + kv) * capacity + start) * hd, qb, scores, hd, count, 1);
        let max = Number.NEGATIVE_INFINITY;
        for (let t = 0; t < count; t++) {
          const s = view[scores + t]! * scale;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t = 0; t < count; t++) {
          const e = expApprox(view[scores + t]! * scale - max);
          view[scores + t] = e;
          sum += e;
        }
        for (let t = 0; t < count; t++) view[scores + t] = view[scores + t]! / sum;
        // att = Vᵀ[:, start..end) · p
        const out = this.att + r * H * hd + head * hd;
        this.matmul(
          vals + (r * KV + kv) * hd * capacity + start,
          scores,
          out,
          count,
          hd,
          1,
          capacity,
        );
      }
    }
  }
}
