/**
 * LoRA adapters (Hu et al.): a frozen weight W [in, out] gains a low-rank update, so a layer
 * computes x·W + s·(x·A)·B with A [in, r], B [r, out] and s = strength · alpha / r.
 * B starts at zero (the adapted model starts equal to the base); A is Kaiming-uniform, as in
 * PEFT. `strength` is the half-baking knob α: 0 is the base model, 1 the trained adapter,
 * above 1 amplifies it.
 */
import * as tf from "@tensorflow/tfjs";
import { isLlamaFamily } from "./config.js";
import { ModelError } from "./errors.js";
import { type GPT, nextModelId } from "./gpt.js";

/** GPT-2's layers an adapter may target, by their name within a block. */
export const GPT2_LORA_TARGETS = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] as const;
/** The Llama family's (PEFT's short names, q_proj … down_proj, are accepted for these). */
export const LLAMA_LORA_TARGETS = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
] as const;
/** Layers an adapter may target, by their name within a block. */
export const LORA_TARGETS = [...GPT2_LORA_TARGETS, ...LLAMA_LORA_TARGETS] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** A target as written (PEFT's "q_proj" or forge's "self_attn.q_proj") → forge's name. */
function targetName(target: string): string {
  return LLAMA_LORA_TARGETS.find((t) => t.endsWith(`.${target}`)) ?? target;
}

/** The default targets for a model: the attention projections (PEFT's q_proj, v_proj for Llama). */
export function defaultLoraTargets(model: GPT): LoraTarget[] {
  return isLlamaFamily(model.config)
    ? ["self_attn.q_proj", "self_attn.v_proj"]
    : [...DEFAULT_LORA.targetModules];
}

export interface LoraConfig {
  /** Rank r of the update. */
  r: number;
  /** Scale numerator: the update is multiplied by alpha / r. */
  alpha: number;
  /** Dropout on the adapter's input during training. */
  dropout: number;
  /** Which layers of every block get an adapter (default the attention projections). */
  targetModules: LoraTarget[];
  /**
   * Which blocks get adapters, by index (PEFT's `layers_to_transform`; default every block):
   * layer-wise baking trains and stores only these.
   */
  layers?: number[];
}

export const DEFAULT_LORA: LoraConfig = {
  r: 8,
  alpha: 16,
  dropout: 0,
  targetModules: ["attn.c_attn", "attn.c_proj"],
};

export function resolveLoraConfig(
  input: Partial<LoraConfig> = {},
  source = "LoRA config",
): LoraConfig {
  const config = { ...DEFAULT_LORA, ...input };
  if (!Number.isInteger(config.r) || config.r < 1) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: r must be a positive integer; got ${JSON.stringify(config.r)}`,
    );
  }
  if (typeof config.alpha !== "number" || !Number.isFinite(config.alpha) || config.alpha <= 0) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: alpha must be a positive number; got ${JSON.stringify(config.alpha)}`,
    );
  }
  if (typeof config.dropout !== "number" || !(config.dropout >= 0 && config.dropout < 1)) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: dropout must be in [0, 1); got ${JSON.stringify(config.dropout)}`,
    );
  }
  if (!Array.isArray(config.targetModules) || config.targetModules.length === 0) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: targetModules must list at least one of ${LORA_TARGETS.join(", ")}`,
    );
  }
  config.targetModules = config.targetModules.map((t) => targetName(t) as LoraTarget);
  for (const target of config.targetModules) {
    if (!(LORA_TARGETS as readonly string[]).includes(target)) {
      throw new ModelError(
        "E_CONFIG",
        `${source}: target module ${JSON.stringify(target)} is not one of ${LORA_TARGETS.join(", ")}`,
      );
    }
  }
  const resolved: LoraConfig = { ...config, targetModules: [...new Set(config.targetModules)] };
  if (config.layers === undefined) delete resolved.layers;
  else {
    if (
      !Array.isArray(config.layers) ||
      config.layers.length === 0 ||
      config.layers.some((l) => !Number.isInteger(l) || l < 0)
    )
      throw new ModelError(
        "E_CONFIG",
        `${source}: layers must be a non-empty list of block indices ≥ 0; got ${JSON.stringify(config.layers)}`,
      );
    resolved.layers = [...new Set(config.layers)].sort((a, b) => a - b);
  }
  return resolved;
}

/** Refuse block indices the model does not have (`layers` of a LoRA config, or a subset). */
export function checkLayers(
  nLayer: number,
  layers: readonly number[] | undefined,
  source: string,
): void {
  const beyond = layers?.filter((l) => l >= nLayer) ?? [];
  if (beyond.length)
    throw new ModelError(
      "E_CONFIG",
      `${source}: the model has ${nLayer} blocks (0…${nLayer - 1}); no block ${beyond.join(", ")}`,
    );
}

/** The block index of a layer prefix ("h.3.attn.c_attn" → 3). */
const layerOf = (prefix: string) => Number(prefix.split(".")[1]);

/**
 * Refuse a rank the model's layers cannot carry (LoRA's rank is at most the narrower side of the
 * weight it adapts: the model width), before any stimulus is generated or tensor allocated.
 */
export function checkLoraFits(
  width: number,
  lora: Partial<LoraConfig>,
  source = "LoRA config",
): void {
  const r = lora.r ?? DEFAULT_LORA.r;
  if (Number.isInteger(r) && r > width)
    throw new ModelError(
      "E_CONFIG",
      `${source}: rank ${r} is larger than the model's width (${width}); LoRA's rank is at most the narrower side of the weight it adapts (try 4–64)`,
    );
}

export class LoraAdapter {
  readonly config: LoraConfig;
  /** A [in, r] and B [r, out] by layer prefix ("h.0.attn.c_attn"). */
  readonly a = new Map<string, tf.Variable>();
  readonly b = new Map<string, tf.Variable>();
  private strengthValue = 1;
  private active: Set<number> | undefined;
  /** The blocks' name prefix: "h" (GPT-2) or "layers" (Llama family). */
  private readonly block: string;

  private constructor(config: LoraConfig, model: GPT) {
    this.config = config;
    this.block = isLlamaFamily(model.config) ? "layers" : "h";
    const allowed: readonly string[] = isLlamaFamily(model.config)
      ? LLAMA_LORA_TARGETS
      : GPT2_LORA_TARGETS;
    const wrong = config.targetModules.filter((t) => !allowed.includes(t));
    if (wrong.length > 0)
      throw new ModelError(
        "E_CONFIG",
        `target module ${wrong.map((t) => JSON.stringify(t)).join(", ")} is not a layer of a ${model.config.architecture ?? "gpt2"} model; its layers: ${allowed.join(", ")}`,
      );
  }

  /** A fresh adapter for `model` (B = 0: the adapted model equals the base). */
  static create(
    model: GPT,
    input: Partial<LoraConfig> = {},
    options: { seed?: number } = {},
  ): LoraAdapter {
    const config = resolveLoraConfig({
      ...input,
      targetModules: input.targetModules ?? defaultLoraTargets(model),
    });
    checkLoraFits(model.config.nEmbd, config);
    checkLayers(model.config.nLayer, config.layers, "LoRA config");
    const adapter = new LoraAdapter(config, model);
    const seed = options.seed ?? 7;
    const id = nextModelId();
    let index = 0;
    for (const prefix of adapter.prefixes(model.config.nLayer)) {
      const [fanIn, fanOut] = model.param(`${prefix}.weight`).shape as [number, number];
      // Kaiming-uniform with a = √5 (PyTorch's Linear default, PEFT's lora_A init): bound 1/√fan_in
      const bound = 1 / Math.sqrt(fanIn);
      const a = tf.tidy(() =>
        tf.randomUniform([fanIn, config.r], -bound, bound, "float32", seed * 1000 + index++),
      );
      adapter.a.set(prefix, tf.variable(a, true, `${prefix}.lora_A#${id}`));
      const zeros = tf.zeros([config.r, fanOut]);
      adapter.b.set(prefix, tf.variable(zeros, true, `${prefix}.lora_B#${id}`));
      tf.dispose([a, zeros]);
    }
    return adapter;
  }

  /** An adapter from existing A/B tensors (validated against the model); takes ownership. */
  static fromTensors(
    model: GPT,
    input: Partial<LoraConfig>,
    tensors: Map<string, { a: tf.Tensor; b: tf.Tensor }>,
    source = "adapter",
  ): LoraAdapter {
    const config = resolveLoraConfig(input, source);
    checkLayers(model.config.nLayer, config.layers, source);
    const adapter = new LoraAdapter(config, model);
    const id = nextModelId();
    for (const prefix of adapter.prefixes(model.config.nLayer)) {
      const pair = tensors.get(prefix);
      if (!pair) {
        adapter.dispose();
        throw new ModelError("E_FORMAT", `${source}: no lora_A/lora_B for ${prefix}`);
      }
      const [fanIn, fanOut] = model.param(`${prefix}.weight`).shape as [number, number];
      if (
        !tf.util.arraysEqual(pair.a.shape, [fanIn, config.r]) ||
        !tf.util.arraysEqual(pair.b.shape, [config.r, fanOut])
      ) {
        adapter.dispose();
        throw new ModelError(
          "E_FORMAT",
          `${source}: ${prefix} has A [${pair.a.shape}] and B [${pair.b.shape}]; the model and r = ${config.r} need [${fanIn},${config.r}] and [${config.r},${fanOut}]`,
        );
      }
      adapter.a.set(prefix, tf.variable(pair.a, true, `${prefix}.lora_A#${id}`));
      adapter.b.set(prefix, tf.variable(pair.b, true, `${prefix}.lora_B#${id}`));
    }
    return adapter;
  }

  /** Layer prefixes this adapter covers, for a model of `nLayer` blocks. */
  prefixes(nLayer: number): string[] {
    const out: string[] = [];
    const blocks = this.config.layers ?? Array.from({ length: nLayer }, (_, i) => i);
    for (const i of blocks)
      for (const target of this.config.targetModules) out.push(`${this.block}.${i}.${target}`);
    return out;
  }

  /**
   * Apply the adapter only on these blocks (the others compute the base layer), or on all of
   * them again (`undefined`): half-baking a subset of layers. Merging respects it too.
   */
  setActiveLayers(layers: readonly number[] | undefined): void {
    if (
      layers !== undefined &&
      (layers.length === 0 || layers.some((l) => !Number.isInteger(l) || l < 0))
    )
      throw new ModelError(
        "E_INPUT",
        `active layers must be a non-empty list of block indices ≥ 0; got ${JSON.stringify(layers)}`,
      );
    this.active = layers === undefined ? undefined : new Set(layers);
  }

  /** The blocks the adapter is applied on (undefined: all it covers). */
  get activeLayers(): number[] | undefined {
    return this.active ? [...this.active].sort((a, b) => a - b) : undefined;
  }

  private isActive(prefix: string): boolean {
    return this.active === undefined || this.active.has(layerOf(prefix));
  }

  /** Half-baking strength α: the update is α · (alpha / r) · A·B. */
  get strength(): number {
    return this.strengthValue;
  }

  set strength(value: number) {
    if (!Number.isFinite(value) || value < 0) {
      throw new ModelError("E_INPUT", `LoRA strength must be a finite number ≥ 0; got ${value}`);
    }
    this.strengthValue = value;
  }

  /** The multiplier on A·B: strength · alpha / r. */
  get scale(): number {
    return (this.strengthValue * this.config.alpha) / this.config.r;
  }

  /**
   * y + s·(dropout(x)·A)·B for a targeted layer (B restricted to `columns` when the layer is
   * computed in column blocks); y unchanged otherwise.
   */
  apply(
    prefix: string,
    x: tf.Tensor2D,
    y: tf.Tensor2D,
    training: boolean,
    seed: number,
    columns?: [number, number],
  ): tf.Tensor2D {
    const a = this.a.get(prefix);
    if (!a || this.strengthValue === 0 || !this.isActive(prefix)) return y;
    const input =
      training && this.config.dropout > 0
        ? tf.dropout(x, this.config.dropout, undefined, seed + 11)
        : x;
    let b = this.b.get(prefix)! as tf.Tensor2D;
    if (columns) b = tf.slice(b, [0, columns[0]], [b.shape[0], columns[1]]);
    const update = tf.matMul(tf.matMul(input, a), b);
    return tf.add(y, tf.mul(update, this.scale));
  }

  variables(): tf.Variable[] {
    return [...this.a.values(), ...this.b.values()];
  }

  /** Variables by stable name: `<layer>.lora_A`, `<layer>.lora_B`. */
  namedVariables(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [prefix, a] of this.a) {
      out.set(`${prefix}.lora_A`, a);
      out.set(`${prefix}.lora_B`, this.b.get(prefix)!);
    }
    return out;
  }

  /** W + s·A·B for every targeted layer: the weights of the merged model. New tensors. */
  mergedWeights(model: GPT): Map<string, tf.Tensor> {
    const merged = new Map<string, tf.Tensor>();
    for (const [prefix, a] of this.a) {
      if (!this.isActive(prefix)) continue;
      merged.set(
        `${prefix}.weight`,
        tf.tidy(() =>
          tf.add(
            model.param(`${prefix}.weight`),
            tf.mul(tf.matMul(a, this.b.get(prefix)!), this.scale),
          ),
        ),
      );
    }
    return merged;
  }

  dispose(): void {
    tf.dispose(this.variables());
    this.a.clear();
    this.b.clear();
  }
}

/** Attach a fresh adapter to `model` (replacing any) and return it. */
export function attachLora(
  model: GPT,
  config: Partial<LoraConfig> = {},
  options: { seed?: number } = {},
): LoraAdapter {
  model.lora?.dispose();
  model.lora = LoraAdapter.create(model, config, options);
  return model.lora;
}

/**
 * Fold the adapter into the base weights (at its current strength) and detach it: the model
 * then computes exactly what it computed with the adapter applied.
 */
export function mergeLora(model: GPT): void {
  const adapter = model.lora;
  if (!adapter) throw new ModelError("E_INPUT", "the model has no LoRA adapter to merge");
  const merged = adapter.mergedWeights(model);
  for (const [name, value] of merged) {
    model.param(name).assign(value);
    value.dispose();
  }
  adapter.dispose();
  model.lora = undefined;
}
