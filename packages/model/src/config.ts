/**
 * The decoder's configuration: a small typed record, and its mapping to Hugging Face's GPT-2
 * `config.json`.
 */
import os from "node:os";
import { ModelError } from "./errors.js";
import { fromHfLlamaConfig, toHfLlamaConfig } from "./llama-config.js";

export interface GPTConfig {
  /** Vocabulary size (ids 0 .. vocabSize-1). */
  vocabSize: number;
  /** Context window: the most positions the model sees. */
  blockSize: number;
  nLayer: number;
  nHead: number;
  /** Width of the residual stream; divisible by nHead. */
  nEmbd: number;
  /** Dropout probability on embeddings, attention weights and residual branches (training only). */
  dropout: number;
  /** Biases in the linear layers and LayerNorms (GPT-2: true). */
  bias: boolean;
  /** LayerNorm epsilon (GPT-2: 1e-5); RMSNorm's for the Llama family (`rms_norm_eps`). */
  layerNormEpsilon: number;
  /**
   * The architecture (default "gpt2"). "llama" and "qwen2": RMSNorm, rotary positions, SwiGLU
   * MLP, grouped-query attention, no position table; qwen2 has q/k/v biases.
   */
  architecture?: Architecture;
  /** Llama family: the rest of its shape (see LlamaShape). */
  llama?: LlamaShape;
}

export type Architecture = "gpt2" | "llama" | "qwen2";
export const ARCHITECTURES: readonly Architecture[] = ["gpt2", "llama", "qwen2"];

/** What a Llama-family decoder adds to the shared fields (HF names in comments). */
export interface LlamaShape {
  /** num_key_value_heads: nHead for plain multi-head attention, fewer for grouped queries. */
  nKvHead: number;
  /** head_dim (default nEmbd / nHead). */
  headDim: number;
  /** intermediate_size: the SwiGLU MLP's width. */
  intermediateSize: number;
  /** rope_theta. */
  ropeTheta: number;
  /** rope_scaling of type "llama3" (Llama 3.1/3.2), or null. */
  ropeScaling: Llama3RopeScaling | null;
  /** tie_word_embeddings: the output layer is embed_tokens (else lm_head). */
  tieWordEmbeddings: boolean;
  /** Biases on q/k/v (attention_bias in llama also puts one on o_proj; qwen2: q/k/v only). */
  qkvBias: boolean;
  oBias: boolean;
  /** mlp_bias. */
  mlpBias: boolean;
}

export interface Llama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** The config's Llama shape (throws for a GPT-2 config). */
export function llamaShape(config: GPTConfig): LlamaShape {
  if (!config.llama) throw new ModelError("E_CONFIG", "not a Llama-family config");
  return config.llama;
}

export const isLlamaFamily = (config: GPTConfig): boolean =>
  config.architecture === "llama" || config.architecture === "qwen2";

export const DEFAULT_CONFIG: Omit<
  GPTConfig,
  "vocabSize" | "blockSize" | "nLayer" | "nHead" | "nEmbd"
> = {
  dropout: 0,
  bias: true,
  layerNormEpsilon: 1e-5,
};

function positiveInteger(value: unknown, field: string, source: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: ${field} must be a positive integer; got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Fill defaults and validate; every problem names the field. */
export function resolveConfig(
  input: Partial<GPTConfig> &
    Pick<GPTConfig, "vocabSize" | "blockSize" | "nLayer" | "nHead" | "nEmbd">,
  source = "config",
): GPTConfig {
  const config: GPTConfig = { ...DEFAULT_CONFIG, ...input };
  positiveInteger(config.vocabSize, "vocabSize", source);
  positiveInteger(config.blockSize, "blockSize", source);
  positiveInteger(config.nLayer, "nLayer", source);
  positiveInteger(config.nHead, "nHead", source);
  positiveInteger(config.nEmbd, "nEmbd", source);
  if (config.architecture !== undefined && !ARCHITECTURES.includes(config.architecture))
    throw new ModelError(
      "E_CONFIG",
      `${source}: architecture ${JSON.stringify(config.architecture)} is not one of ${ARCHITECTURES.join(", ")}`,
    );
  if (isLlamaFamily(config)) {
    const l = config.llama;
    if (!l)
      throw new ModelError(
        "E_CONFIG",
        `${source}: a ${config.architecture} config needs its llama shape`,
      );
    positiveInteger(l.nKvHead, "num_key_value_heads", source);
    positiveInteger(l.headDim, "head_dim", source);
    positiveInteger(l.intermediateSize, "intermediate_size", source);
    if (config.nHead % l.nKvHead !== 0)
      throw new ModelError(
        "E_CONFIG",
        `${source}: num_attention_heads (${config.nHead}) must be a multiple of num_key_value_heads (${l.nKvHead})`,
      );
    if (l.headDim % 2 !== 0)
      throw new ModelError(
        "E_CONFIG",
        `${source}: head_dim must be even for rotary positions; got ${l.headDim}`,
      );
    if (!(l.ropeTheta > 0))
      throw new ModelError("E_CONFIG", `${source}: rope_theta must be a positive number`);
    checkSize(config, source);
    return config;
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: nEmbd (${config.nEmbd}) must be divisible by nHead (${config.nHead})`,
    );
  }
  if (typeof config.dropout !== "number" || !(config.dropout >= 0 && config.dropout < 1)) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: dropout must be in [0, 1); got ${JSON.stringify(config.dropout)}`,
    );
  }
  if (typeof config.bias !== "boolean") {
    throw new ModelError(
      "E_CONFIG",
      `${source}: bias must be true or false; got ${JSON.stringify(config.bias)}`,
    );
  }
  if (typeof config.layerNormEpsilon !== "number" || !(config.layerNormEpsilon > 0)) {
    throw new ModelError("E_CONFIG", `${source}: layerNormEpsilon must be a positive number`);
  }
  checkSize(config, source);
  return config;
}

/** The largest tensor forge can hold (elements): typed arrays and wasm index with 32 bits. */
const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

const gigabytes = (bytes: number) =>
  bytes >= 1e12 ? `${(bytes / 1e12).toPrecision(3)} TB` : `${(bytes / 1e9).toPrecision(3)} GB`;

/** Parameters and float32 memory of a config: the weights, and training's 4× (grads, Adam m, v). */
export function memoryEstimate(config: GPTConfig): {
  parameters: number;
  weightBytes: number;
  trainingBytes: number;
} {
  const parameters = parameterCount(config);
  return { parameters, weightBytes: 4 * parameters, trainingBytes: 16 * parameters };
}

/**
 * Refuse a config this machine could never hold, before anything is allocated: a layer count of
 * 1e9 would otherwise spend minutes and gigabytes before failing.
 */
function checkSize(config: GPTConfig, source: string): void {
  const { vocabSize: V, blockSize: T, nEmbd: C } = config;
  const llama = isLlamaFamily(config);
  for (const [name, elements] of [
    ["the embedding (vocabSize × nEmbd)", V * C],
    ["the position table (blockSize × nEmbd)", llama ? 0 : T * C],
    ["the MLP weight", llama ? C * config.llama!.intermediateSize : 4 * C * C],
  ] as const) {
    if (elements > MAX_TENSOR_ELEMENTS)
      throw new ModelError(
        "E_CONFIG",
        `${source}: ${name} would hold ${elements.toExponential(2)} values; one tensor holds at most ${MAX_TENSOR_ELEMENTS}`,
      );
  }
  const { parameters, weightBytes } = memoryEstimate(config);
  const available = os.totalmem();
  if (weightBytes > available)
    throw new ModelError(
      "E_CONFIG",
      `${source}: ${parameters.toExponential(2)} parameters (n_layer ${config.nLayer}, n_embd ${C}, vocab ${V}) need ${gigabytes(weightBytes)} as float32; this machine has ${gigabytes(available)} of memory`,
    );
}

/** Parameters of a config (tied embeddings counted once), as nanoGPT counts them. */
export function parameterCount(config: GPTConfig): number {
  const { vocabSize: V, blockSize: T, nLayer: L, nEmbd: C, bias } = config;
  if (isLlamaFamily(config)) {
    const l = config.llama!;
    const q = config.nHead * l.headDim;
    const kv = l.nKvHead * l.headDim;
    const I = l.intermediateSize;
    const perLayer =
      2 * C + // input_layernorm, post_attention_layernorm
      C * (q + 2 * kv) +
      (l.qkvBias ? q + 2 * kv : 0) +
      q * C +
      (l.oBias ? C : 0) +
      3 * C * I +
      (l.mlpBias ? 2 * I + C : 0);
    return V * C + L * perLayer + C + (l.tieWordEmbeddings ? 0 : V * C);
  }
  const b = bias ? 1 : 0;
  const perLayer =
    2 * C * (1 + b) + // ln_1, ln_2
    C * 3 * C +
    b * 3 * C + // c_attn
    C * C +
    b * C + // attn.c_proj
    C * 4 * C +
    b * 4 * C + // c_fc
    4 * C * C +
    b * C; // mlp.c_proj
  return V * C + T * C + L * perLayer + C * (1 + b);
}

/** Hugging Face `config.json` for this config (forge's extra keys are namespaced). */
export function toHfConfig(config: GPTConfig): Record<string, unknown> {
  if (isLlamaFamily(config)) return toHfLlamaConfig(config);
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: config.vocabSize,
    n_positions: config.blockSize,
    n_ctx: config.blockSize,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_embd: config.nEmbd,
    n_inner: null,
    activation_function: "gelu_new",
    resid_pdrop: config.dropout,
    embd_pdrop: config.dropout,
    attn_pdrop: config.dropout,
    layer_norm_epsilon: config.layerNormEpsilon,
    initializer_range: 0.02,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    forge_bias: config.bias,
  };
}

const KNOWN_ACTIVATIONS = new Set(["gelu_new", "gelu_pytorch_tanh"]);

/** Read a Hugging Face GPT-2 `config.json` (as written by `toHfConfig` or transformers). */
export function fromHfConfig(json: unknown, source = "config.json"): GPTConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ModelError("E_CONFIG", `${source}: must be a JSON object`);
  }
  const c = json as Record<string, unknown>;
  if (c.model_type === "llama" || c.model_type === "qwen2") return fromHfLlamaConfig(c, source);
  if (c.model_type !== undefined && c.model_type !== "gpt2") {
    throw new ModelError(
      "E_CONFIG",
      `${source}: model_type is ${JSON.stringify(c.model_type)}; accepted: "gpt2", "llama", "qwen2"`,
    );
  }
  if (c.n_inner !== undefined && c.n_inner !== null && c.n_inner !== 4 * (c.n_embd as number)) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: n_inner ${JSON.stringify(c.n_inner)} is not supported; the MLP is 4 × n_embd wide`,
    );
  }
  if (
    c.activation_function !== undefined &&
    !KNOWN_ACTIVATIONS.has(c.activation_function as string)
  ) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: activation_function ${JSON.stringify(c.activation_function)} is not supported; accepted: gelu_new (tanh GELU)`,
    );
  }
  if (c.tie_word_embeddings === false) {
    throw new ModelError(
      "E_CONFIG",
      `${source}: tie_word_embeddings false is not supported; the output layer is tied to wte`,
    );
  }
  const dropout = [c.resid_pdrop, c.embd_pdrop, c.attn_pdrop].find((p) => typeof p === "number") as
    | number
    | undefined;
  return resolveConfig(
    {
      vocabSize: c.vocab_size as number,
      blockSize: (c.n_positions ?? c.n_ctx) as number,
      nLayer: c.n_layer as number,
      nHead: c.n_head as number,
      nEmbd: c.n_embd as number,
      dropout: dropout ?? 0,
      bias: typeof c.forge_bias === "boolean" ? c.forge_bias : true,
      layerNormEpsilon: typeof c.layer_norm_epsilon === "number" ? c.layer_norm_epsilon : 1e-5,
    },
    source,
  );
}
