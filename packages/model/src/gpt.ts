/**
 * A GPT-2-architecture decoder, as in nanoGPT: learned token and position embeddings,
 * pre-LayerNorm blocks (causal self-attention, tanh-GELU MLP 4× wide), a final LayerNorm, and
 * an output layer tied to the token embedding. Parameters carry Hugging Face GPT-2 names and
 * layouts (Conv1D weights are [in, out]), so checkpoints open in transformers.
 *
 * The residual stream is kept 2-D, [B·T, C], so every linear layer is one plain 2-D matmul;
 * attention is the only batched product. Both run on the wasm backend's fast path through the
 * BatchMatMul routing in backend/wasm-kernels.ts.
 */
import * as tf from "@tensorflow/tfjs";
import {
  causalSoftmax,
  crossEntropyRows,
  fromHeads,
  fusedAttentionRuns,
  fusedCausalAttention,
  gelu,
  layerNorm,
  linear,
  recording,
  toHeads,
} from "./backend/fused.js";
import { type GPTConfig, isLlamaFamily, parameterCount, resolveConfig } from "./config.js";
import { ModelError } from "./errors.js";
import { rotaryInverseFrequencies } from "./llama-config.js";
import type { LoraAdapter } from "./lora.js";

/** Keys and values of one layer for the positions seen so far: [B, H, T, hs] each. */
export interface LayerCache {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

export interface RunOptions {
  /** Apply dropout (training). */
  training?: boolean;
  /** Seed for this call's dropout masks. */
  seed?: number;
  /** Compute logits only for the last position (generation). */
  lastOnly?: boolean;
  /**
   * Position id of every input token, [B, T] int32 (default past..past+T-1 for every row); each
   * below past + T (a ragged batch's positions are within its padded width) unless
   * `positionLimit` says otherwise.
   */
  positions?: tf.Tensor2D;
  /**
   * An upper bound on `positions` when they may pass past + T: a rotary model decoding with a
   * rolling cache keeps counting positions after the oldest keys leave it (rotary attention
   * depends only on the distance between positions). Learned positions stop at blockSize.
   */
  positionLimit?: number;
  /**
   * Additive attention bias [B or 1, 1, T, Tpast + T] (ragged batches). Default: causal, where
   * query i sees keys up to Tpast + i.
   */
  attentionBias?: tf.Tensor4D;
  /** Per-layer keys/values of earlier positions (incremental decoding). */
  past?: LayerCache[];
  /** Return this call's keys/values (past + new) per layer. */
  returnCache?: boolean;
}

export interface RunResult {
  /** [B, T, V], or [B, 1, V] with lastOnly. */
  logits: tf.Tensor3D;
  cache?: LayerCache[];
}

/** Names of the parameters of layer i, in checkpoint order. */
export function layerParameterNames(i: number, bias: boolean): string[] {
  const names = [
    `h.${i}.ln_1.weight`,
    `h.${i}.attn.c_attn.weight`,
    `h.${i}.attn.c_proj.weight`,
    `h.${i}.ln_2.weight`,
    `h.${i}.mlp.c_fc.weight`,
    `h.${i}.mlp.c_proj.weight`,
  ];
  if (bias) {
    names.push(
      `h.${i}.ln_1.bias`,
      `h.${i}.attn.c_attn.bias`,
      `h.${i}.attn.c_proj.bias`,
      `h.${i}.ln_2.bias`,
      `h.${i}.mlp.c_fc.bias`,
      `h.${i}.mlp.c_proj.bias`,
    );
  }
  return names;
}

/**
 * A Llama-family model's parameters: Hugging Face names without the "model." prefix; linear
 * weights stored [in, out] (transposed from torch's [out, in] on load, back on save) so every
 * projection is the same plain matmul as GPT-2's; lm_head [V, C] as stored, when untied.
 */
function llamaShapes(config: GPTConfig): Map<string, number[]> {
  const { vocabSize: V, nLayer: L, nEmbd: C } = config;
  const l = config.llama!;
  const q = config.nHead * l.headDim;
  const kv = l.nKvHead * l.headDim;
  const I = l.intermediateSize;
  const shapes = new Map<string, number[]>([["embed_tokens.weight", [V, C]]]);
  for (let i = 0; i < L; i++) {
    const p = `layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [C]);
    for (const [name, out] of [
      ["q_proj", q],
      ["k_proj", kv],
      ["v_proj", kv],
    ] as const) {
      shapes.set(`${p}.self_attn.${name}.weight`, [C, out]);
      if (l.qkvBias) shapes.set(`${p}.self_attn.${name}.bias`, [out]);
    }
    shapes.set(`${p}.self_attn.o_proj.weight`, [q, C]);
    if (l.oBias) shapes.set(`${p}.self_attn.o_proj.bias`, [C]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [C]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [C, I]);
    shapes.set(`${p}.mlp.up_proj.weight`, [C, I]);
    shapes.set(`${p}.mlp.down_proj.weight`, [I, C]);
    if (l.mlpBias) {
      shapes.set(`${p}.mlp.gate_proj.bias`, [I]);
      shapes.set(`${p}.mlp.up_proj.bias`, [I]);
      shapes.set(`${p}.mlp.down_proj.bias`, [C]);
    }
  }
  shapes.set("norm.weight", [C]);
  if (!l.tieWordEmbeddings) shapes.set("lm_head.weight", [V, C]);
  return shapes;
}

/** Every parameter name with its shape, for a config. */
export function parameterShapes(config: GPTConfig): Map<string, number[]> {
  if (isLlamaFamily(config)) return llamaShapes(config);
  const { vocabSize: V, blockSize: T, nLayer: L, nEmbd: C, bias } = config;
  const shapes = new Map<string, number[]>([
    ["wte.weight", [V, C]],
    ["wpe.weight", [T, C]],
  ]);
  for (let i = 0; i < L; i++) {
    shapes.set(`h.${i}.ln_1.weight`, [C]);
    shapes.set(`h.${i}.attn.c_attn.weight`, [C, 3 * C]);
    shapes.set(`h.${i}.attn.c_proj.weight`, [C, C]);
    shapes.set(`h.${i}.ln_2.weight`, [C]);
    shapes.set(`h.${i}.mlp.c_fc.weight`, [C, 4 * C]);
    shapes.set(`h.${i}.mlp.c_proj.weight`, [4 * C, C]);
    if (bias) {
      shapes.set(`h.${i}.ln_1.bias`, [C]);
      shapes.set(`h.${i}.attn.c_attn.bias`, [3 * C]);
      shapes.set(`h.${i}.attn.c_proj.bias`, [C]);
      shapes.set(`h.${i}.ln_2.bias`, [C]);
      shapes.set(`h.${i}.mlp.c_fc.bias`, [4 * C]);
      shapes.set(`h.${i}.mlp.c_proj.bias`, [C]);
    }
  }
  shapes.set("ln_f.weight", [C]);
  if (bias) shapes.set("ln_f.bias", [C]);
  return shapes;
}

export class GPT {
  readonly config: GPTConfig;
  /** Parameters by Hugging Face GPT-2 name. */
  readonly params: Map<string, tf.Variable>;
  /** The LoRA adapter, when one is attached (see lora.ts). */
  lora: LoraAdapter | undefined;
  /** Llama family: cos and sin of every position's rotary angles, [P, headDim] (grown on demand). */
  private rotary: { cos: tf.Tensor2D; sin: tf.Tensor2D; length: number } | undefined;

  private constructor(config: GPTConfig, params: Map<string, tf.Variable>) {
    this.config = config;
    this.params = params;
  }

  /**
   * A freshly initialised model, nanoGPT style: weights N(0, 0.02), residual projections
   * (c_proj) N(0, 0.02/√(2·nLayer)), biases 0, LayerNorm gains 1. Deterministic for a seed.
   */
  static create(input: Parameters<typeof resolveConfig>[0], options: { seed?: number } = {}): GPT {
    const config = resolveConfig(input);
    const seed = options.seed ?? 1337;
    const params = new Map<string, tf.Variable>();
    let index = 0;
    for (const [name, shape] of parameterShapes(config)) {
      index++;
      const value = tf.tidy(() => {
        if (name.includes("ln_") || name.endsWith("layernorm.weight") || name === "norm.weight")
          return name.endsWith(".weight") ? tf.ones(shape) : tf.zeros(shape);
        if (name.endsWith(".bias")) return tf.zeros(shape);
        const residual = /(c_proj|o_proj|down_proj)\.weight$/.test(name);
        const std = residual ? 0.02 / Math.sqrt(2 * config.nLayer) : 0.02;
        return tf.randomNormal(shape, 0, std, "float32", seed * 1000 + index);
      });
      params.set(name, tf.variable(value, true, `${name}#${seed}#${nextModelId()}`));
      value.dispose();
    }
    return new GPT(config, params);
  }

  /** A model from existing parameter tensors (checked against the config); takes ownership. */
  static fromTensors(
    input: Parameters<typeof resolveConfig>[0],
    tensors: Map<string, tf.Tensor>,
    source = "weights",
  ): GPT {
    const config = resolveConfig(input, source);
    const params = new Map<string, tf.Variable>();
    const id = nextModelId();
    for (const [name, shape] of parameterShapes(config)) {
      const tensor = tensors.get(name);
      if (!tensor) {
        tf.dispose([...params.values()]);
        throw new ModelError("E_FORMAT", `${source}: tensor ${name} is missing`);
      }
      if (!tf.util.arraysEqual(tensor.shape, shape)) {
        tf.dispose([...params.values()]);
        throw new ModelError(
          "E_FORMAT",
          `${source}: tensor ${name} has shape [${tensor.shape}]; the config needs [${shape}]`,
        );
      }
      params.set(name, tf.variable(tensor, true, `${name}#${id}`));
    }
    return new GPT(config, params);
  }

  get parameterCount(): number {
    return parameterCount(this.config);
  }

  /** A parameter by name. */
  param(name: string): tf.Variable {
    const p = this.params.get(name);
    if (!p) throw new ModelError("E_INPUT", `no parameter ${name}`);
    return p;
  }

  /** The variables a training step updates: the adapter's when one is attached, else all. */
  trainableVariables(): tf.Variable[] {
    return [...this.trainableParameters().values()];
  }

  /** The same, by stable name (HF names; `<layer>.lora_A` / `.lora_B` for an adapter). */
  trainableParameters(): Map<string, tf.Variable> {
    return this.lora ? this.lora.namedVariables() : new Map(this.params);
  }

  /** Validate ids [B, T]: int32, non-empty, within the vocabulary. */
  checkIds(ids: tf.Tensor, maxLength = this.config.blockSize): void {
    if (ids.rank !== 2 || ids.dtype !== "int32") {
      throw new ModelError(
        "E_INPUT",
        `ids must be an int32 tensor [batch, time]; got ${ids.dtype} [${ids.shape}]`,
      );
    }
    const [b, t] = ids.shape as [number, number];
    if (b < 1 || t < 1) throw new ModelError("E_INPUT", `ids [${ids.shape}] is empty`);
    if (t > maxLength) {
      throw new ModelError(
        "E_INPUT",
        `ids have ${t} positions; the context window (blockSize) is ${maxLength}`,
      );
    }
    const values = ids.dataSync();
    for (let i = 0; i < values.length; i++) {
      const id = values[i]!;
      if (id < 0 || id >= this.config.vocabSize) {
        throw new ModelError(
          "E_INPUT",
          `id ${id} at [${Math.floor(i / t)}, ${i % t}] is outside the vocabulary (0..${this.config.vocabSize - 1})`,
        );
      }
    }
  }

  private layerNorm(x: tf.Tensor2D, prefix: string): tf.Tensor2D {
    const beta = this.config.bias ? this.param(`${prefix}.bias`) : undefined;
    return layerNorm(x, this.param(`${prefix}.weight`), beta, this.config.layerNormEpsilon);
  }

  /**
   * x [N, in] · W [in, out] (+ b), plus the LoRA update when the adapter targets this layer.
   * `columns` [start, width] restricts the layer to those output columns.
   */
  private linear(
    x: tf.Tensor2D,
    prefix: string,
    training: boolean,
    seed: number,
    columns?: [number, number],
  ): tf.Tensor2D {
    let w = this.param(`${prefix}.weight`) as tf.Tensor2D;
    let b = this.params.get(`${prefix}.bias`) as tf.Tensor1D | undefined;
    if (columns) {
      w = tf.slice(w, [0, columns[0]], [w.shape[0], columns[1]]);
      if (b) b = tf.slice(b, [columns[0]], [columns[1]]);
    }
    const y = linear(x, w, b);
    return this.lora ? this.lora.apply(prefix, x, y, training, seed, columns) : y;
  }

  private dropout(x: tf.Tensor, training: boolean, seed: number): tf.Tensor {
    return training && this.config.dropout > 0
      ? tf.dropout(x, this.config.dropout, undefined, seed)
      : x;
  }

  private attention(
    x: tf.Tensor2D,
    i: number,
    time: number,
    bias: tf.Tensor4D | undefined,
    past: LayerCache | undefined,
    training: boolean,
    seed: number,
    keepCache: boolean,
  ): { y: tf.Tensor2D; cache?: LayerCache } {
    const { nHead: H, nEmbd: C } = this.config;
    const prefix = `h.${i}.attn.c_attn`;
    let q2: tf.Tensor2D;
    let k2: tf.Tensor2D;
    let v2: tf.Tensor2D;
    if (recording()) {
      // Under a gradient tape: the three column blocks of c_attn [C, 3C] as three matmuls,
      // whose backward passes are plain matmuls too (no split/concat of activations).
      q2 = this.linear(x, prefix, training, seed + 1, [0, C]);
      k2 = this.linear(x, prefix, training, seed + 1, [C, C]);
      v2 = this.linear(x, prefix, training, seed + 1, [2 * C, C]);
    } else {
      // Inference: one matmul, then split the (small) output.
      [q2, k2, v2] = tf.split(this.linear(x, prefix, training, seed + 1), 3, 1) as [
        tf.Tensor2D,
        tf.Tensor2D,
        tf.Tensor2D,
      ];
    }
    if (!past && !bias && !keepCache && !(training && this.config.dropout > 0)) {
      // the whole attention in one native kernel a pass, where it runs
      const y = fusedCausalAttention(q2, k2, v2, x.shape[0] / time, H);
      if (y) {
        const out = this.linear(y, `h.${i}.attn.c_proj`, training, seed + 3);
        return { y: this.dropout(out, training, seed + 4) as tf.Tensor2D };
      }
    }
    const q = toHeads(tf.mul(q2, 1 / Math.sqrt(C / H)) as tf.Tensor2D, time, H);
    let k = toHeads(k2, time, H); // [B, H, T, hs]
    let v = toHeads(v2, time, H);
    if (past) {
      k = tf.concat([past.k, k], 2);
      v = tf.concat([past.v, v], 2);
    }
    const scores = tf.matMul(q, k, false, true) as tf.Tensor4D; // [B, H, T, Tk]
    let att = bias ? (tf.softmax(tf.add(scores, bias)) as tf.Tensor4D) : causalSoftmax(scores);
    att = this.dropout(att, training, seed + 2) as tf.Tensor4D;
    const y = fromHeads(tf.matMul(att, v)); // [B·T, C]
    const out = this.linear(y, `h.${i}.attn.c_proj`, training, seed + 3);
    return { y: this.dropout(out, training, seed + 4) as tf.Tensor2D, cache: { k, v } };
  }

  private mlp(x: tf.Tensor2D, i: number, training: boolean, seed: number): tf.Tensor2D {
    const hidden = gelu(this.linear(x, `h.${i}.mlp.c_fc`, training, seed + 5)) as tf.Tensor2D;
    const out = this.linear(hidden, `h.${i}.mlp.c_proj`, training, seed + 6);
    return this.dropout(out, training, seed + 7) as tf.Tensor2D;
  }

  /**
   * The forward pass. Call inside `tf.tidy` (or dispose the results): it returns new tensors,
   * and with `returnCache` the caller owns the cache too.
   */
  run(ids: tf.Tensor2D, options: RunOptions = {}): RunResult {
    if (isLlamaFamily(this.config)) return this.runLlama(ids, options);
    const [batch, time] = ids.shape;
    const { nEmbd: C, vocabSize: V } = this.config;
    const training = options.training ?? false;
    const seed = options.seed ?? 0;
    const pastLength = options.past?.[0]?.k.shape[2] ?? 0;
    const positions = options.positions ?? defaultPositions(batch, time, pastLength);
    const bias = options.attentionBias;
    const tokens = tf.gather(this.param("wte.weight"), ids.reshape([batch * time]));
    const places = tf.gather(this.param("wpe.weight"), positions.reshape([batch * time]));
    let x = this.dropout(tf.add(tokens, places), training, seed) as tf.Tensor2D; // [B·T, C]
    const cache: LayerCache[] = [];
    for (let i = 0; i < this.config.nLayer; i++) {
      const layerSeed = seed + 16 * (i + 1);
      const attended = this.attention(
        this.layerNorm(x, `h.${i}.ln_1`),
        i,
        time,
        bias,
        options.past?.[i],
        training,
        layerSeed,
        options.returnCache === true,
      );
      x = tf.add(x, attended.y);
      x = tf.add(x, this.mlp(this.layerNorm(x, `h.${i}.ln_2`), i, training, layerSeed));
      if (options.returnCache) cache.push(attended.cache!);
    }
    if (options.lastOnly) x = lastPositions(x, batch, time, C);
    const h = this.layerNorm(x, "ln_f");
    const logits = tf.matMul(h, this.param("wte.weight"), false, true); // tied output layer
    const outTime = options.lastOnly ? 1 : time;
    return {
      logits: logits.reshape([batch, outTime, V]) as tf.Tensor3D,
      ...(options.returnCache ? { cache } : {}),
    };
  }

  /** The rotary table covering positions below `needed` (kept across calls). */
  private rotaryTable(needed: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    if (this.rotary && this.rotary.length >= needed) return this.rotary;
    const l = this.config.llama!;
    // the window, at most 2048 rows up front; past it only for a rolling cache's positions,
    // doubling so that decoding does not rebuild it every token
    const length = Math.max(
      needed,
      Math.min(this.config.blockSize, 2048),
      2 * (this.rotary?.length ?? 0),
    );
    const frequencies = rotaryInverseFrequencies(l.headDim, l.ropeTheta, l.ropeScaling);
    const half = l.headDim / 2;
    const cos = new Float32Array(length * l.headDim);
    const sin = new Float32Array(length * l.headDim);
    for (let p = 0; p < length; p++)
      for (let j = 0; j < l.headDim; j++) {
        const angle = p * frequencies[j % half]!;
        cos[p * l.headDim + j] = Math.cos(angle);
        sin[p * l.headDim + j] = Math.sin(angle);
      }
    if (this.rotary) tf.dispose([this.rotary.cos, this.rotary.sin]);
    this.rotary = {
      cos: tf.keep(tf.tensor2d(cos, [length, l.headDim])),
      sin: tf.keep(tf.tensor2d(sin, [length, l.headDim])),
      length,
    };
    return this.rotary;
  }

  private rmsNorm(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const variance = tf.mean(tf.square(x), -1, true);
    const normed = tf.mul(x, tf.rsqrt(tf.add(variance, this.config.layerNormEpsilon)));
    return tf.mul(normed, this.param(name)) as tf.Tensor2D;
  }

  /** Rotate x [B, heads, T, hd] by its positions' angles (cos, sin: [B, 1, T, hd]). */
  private static rotate(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
    const [first, second] = tf.split(x, 2, 3);
    const turned = tf.concat([tf.neg(second!), first!], 3);
    return tf.add(tf.mul(x, cos), tf.mul(turned, sin)) as tf.Tensor4D;
  }

  /**
   * The Llama-family forward: RMSNorm, grouped-query attention with rotary positions, SwiGLU
   * MLP; caches hold each layer's keys and values before they are shared across query heads.
   */
  private runLlama(ids: tf.Tensor2D, options: RunOptions): RunResult {
    const [batch, time] = ids.shape;
    const { nEmbd: C, vocabSize: V, nHead: H, nLayer: L } = this.config;
    const l = this.config.llama!;
    const KV = l.nKvHead;
    const hd = l.headDim;
    const training = options.training ?? false;
    const seed = options.seed ?? 0;
    const pastLength = options.past?.[0]?.k.shape[2] ?? 0;
    const positions = options.positions ?? defaultPositions(batch, time, pastLength);
    // positions are below past + T (the padded width) or positionLimit: no read-back is needed
    const table = this.rotaryTable(Math.max(pastLength + time, options.positionLimit ?? 0));
    const flat = positions.reshape([batch * time]);
    const cos = tf.gather(table.cos, flat).reshape([batch, 1, time, hd]) as tf.Tensor4D;
    const sin = tf.gather(table.sin, flat).reshape([batch, 1, time, hd]) as tf.Tensor4D;
    // the fused attention (one native kernel a pass) where it runs: no past, bias, cache or
    // attention dropout; rotary positions then apply to the [B·T, heads·d] rows
    const fused =
      !options.past &&
      !options.attentionBias &&
      !options.returnCache &&
      !(training && this.config.dropout > 0) &&
      fusedAttentionRuns();
    const rotateRows = (t: tf.Tensor2D, heads: number) =>
      GPT.rotate(
        t.reshape([batch, time, heads, hd]) as tf.Tensor4D,
        cos.reshape([batch, time, 1, hd]) as tf.Tensor4D,
        sin.reshape([batch, time, 1, hd]) as tf.Tensor4D,
      ).reshape([batch * time, heads * hd]) as tf.Tensor2D;
    let x = tf.gather(
      this.param("embed_tokens.weight"),
      ids.reshape([batch * time]),
    ) as tf.Tensor2D;
    const cache: LayerCache[] = [];
    const shareHeads = (t: tf.Tensor4D) => {
      if (KV === H) return t;
      const [, , tk] = t.shape;
      // each key/value head serves H/KV consecutive query heads (rank-4 tile: it has a gradient)
      return t
        .reshape([batch, KV, 1, tk * hd])
        .tile([1, 1, H / KV, 1])
        .reshape([batch, H, tk, hd]) as tf.Tensor4D;
    };
    // the composition: heads split out, rotary on [B, heads, T, d], keys and values shared
    // across query heads, the scores tensor, softmax, the value product
    const headSplitAttention = (
      q2: tf.Tensor2D,
      k2: tf.Tensor2D,
      v2: tf.Tensor2D,
      i: number,
      layerSeed: number,
    ): tf.Tensor2D => {
      const q = GPT.rotate(toHeads(q2, time, H), cos, sin);
      let k = GPT.rotate(toHeads(k2, time, KV), cos, sin);
      let v = toHeads(v2, time, KV);
      const past = options.past?.[i];
      if (past) {
        k = tf.concat([past.k, k], 2);
        v = tf.concat([past.v, v], 2);
      }
      if (options.returnCache) cache.push({ k, v });
      const scores = tf.mul(
        tf.matMul(q, shareHeads(k), false, true),
        1 / Math.sqrt(hd),
      ) as tf.Tensor4D;
      let att = options.attentionBias
        ? (tf.softmax(tf.add(scores, options.attentionBias)) as tf.Tensor4D)
        : causalSoftmax(scores);
      att = this.dropout(att, training, layerSeed + 2) as tf.Tensor4D;
      return fromHeads(tf.matMul(att, shareHeads(v)) as tf.Tensor4D);
    };
    for (let i = 0; i < L; i++) {
      const p = `layers.${i}`;
      const layerSeed = seed + 16 * (i + 1);
      const h = this.rmsNorm(x, `${p}.input_layernorm.weight`);
      const q2 = this.linear(h, `${p}.self_attn.q_proj`, training, layerSeed + 1);
      const k2 = this.linear(h, `${p}.self_attn.k_proj`, training, layerSeed + 1);
      const v2 = this.linear(h, `${p}.self_attn.v_proj`, training, layerSeed + 1);
      const y = fused
        ? fusedCausalAttention(rotateRows(q2, H), rotateRows(k2, KV), v2, batch, H, KV)!
        : headSplitAttention(q2, k2, v2, i, layerSeed);
      x = tf.add(x, this.linear(y, `${p}.self_attn.o_proj`, training, layerSeed + 3));
      const h2 = this.rmsNorm(x, `${p}.post_attention_layernorm.weight`);
      const gate = this.linear(h2, `${p}.mlp.gate_proj`, training, layerSeed + 5);
      const up = this.linear(h2, `${p}.mlp.up_proj`, training, layerSeed + 5);
      const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D; // SiLU(gate) · up
      x = tf.add(x, this.linear(hidden, `${p}.mlp.down_proj`, training, layerSeed + 6));
    }
    if (options.lastOnly) x = lastPositions(x, batch, time, C);
    const normed = this.rmsNorm(x, "norm.weight");
    const head = this.param(l.tieWordEmbeddings ? "embed_tokens.weight" : "lm_head.weight");
    const logits = tf.matMul(normed, head, false, true);
    return {
      logits: logits.reshape([batch, options.lastOnly ? 1 : time, V]) as tf.Tensor3D,
      ...(options.returnCache ? { cache } : {}),
    };
  }

  /** Logits [B, T, V] for ids [B, T] (no dropout). The result is the caller's to dispose. */
  forward(ids: tf.Tensor2D, options: { lastOnly?: boolean } = {}): tf.Tensor3D {
    this.checkIds(ids);
    return tf.tidy(() => this.run(ids, options).logits);
  }

  /**
   * Mean cross-entropy of `targets` [B, T] under the logits of `ids` [B, T], over the tokens
   * where `mask` is 1 (all when absent). A scalar, the caller's to dispose.
   */
  loss(
    ids: tf.Tensor2D,
    targets: tf.Tensor2D,
    mask?: tf.Tensor2D,
    options: { training?: boolean; seed?: number } = {},
  ): tf.Scalar {
    this.checkIds(ids);
    return tf.tidy(() => this.lossUnchecked(ids, targets, mask, options));
  }

  /** `loss` without the id checks (the training loop validates its data once). */
  lossUnchecked(
    ids: tf.Tensor2D,
    targets: tf.Tensor2D,
    mask?: tf.Tensor2D,
    options: { training?: boolean; seed?: number } = {},
  ): tf.Scalar {
    const { logits } = this.run(ids, {
      training: options.training ?? false,
      seed: options.seed ?? 0,
    });
    const [batch, time, vocabulary] = logits.shape;
    const rows = crossEntropyRows(
      logits.reshape([batch * time, vocabulary]),
      targets.reshape([batch * time]),
    );
    if (!mask) return tf.mean(rows);
    const weights = tf.cast(mask.reshape([batch * time]), "float32");
    return tf.div(tf.sum(tf.mul(rows, weights)), tf.maximum(tf.sum(weights), 1));
  }

  /** Free every tensor this model owns (parameters, adapter, caches). */
  dispose(): void {
    tf.dispose([...this.params.values()]);
    if (this.rotary) tf.dispose([this.rotary.cos, this.rotary.sin]);
    this.rotary = undefined;
    this.lora?.dispose();
  }
}

/** Positions past .. past + T − 1 for every row, [B, T]. */
function defaultPositions(batch: number, time: number, pastLength: number): tf.Tensor2D {
  return tf.tile(tf.range(pastLength, pastLength + time, 1, "int32").reshape([1, time]), [
    batch,
    1,
  ]) as tf.Tensor2D;
}

/** The residual stream's last position per row: [B·T, C] → [B, C]. */
function lastPositions(x: tf.Tensor2D, batch: number, time: number, width: number): tf.Tensor2D {
  return x
    .reshape([batch, time, width])
    .slice([0, time - 1, 0], [batch, 1, width])
    .reshape([batch, width]) as tf.Tensor2D;
}

let modelCounter = 0;
/** Variable names must be unique per process; every model gets its own suffix. */
export function nextModelId(): number {
  return ++modelCounter;
}
