/**
 * Hugging Face `config.json` for the Llama family (`model_type` "llama" and "qwen2"), in and
 * out. Every field forge cannot honour is refused by name rather than ignored: a model computed
 * with the wrong rotary scaling or activation would give plausible, wrong logits.
 */
import { type GPTConfig, type Llama3RopeScaling, resolveConfig } from "./config.js";
import { ModelError } from "./errors.js";

function number(
  c: Record<string, unknown>,
  key: string,
  source: string,
  fallback?: number,
): number {
  const value = c[key] ?? fallback;
  if (typeof value !== "number" || !Number.isFinite(value))
    throw new ModelError(
      "E_CONFIG",
      `${source}: ${key} must be a number; got ${JSON.stringify(c[key])}`,
    );
  return value;
}

function ropeScaling(value: unknown, source: string): Llama3RopeScaling | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "object" || Array.isArray(value))
    throw new ModelError("E_CONFIG", `${source}: rope_scaling must be an object or null`);
  const r = value as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === "default") return null;
  if (type !== "llama3")
    throw new ModelError(
      "E_CONFIG",
      `${source}: rope_scaling type ${JSON.stringify(type)} is not supported; accepted: "llama3" (or none)`,
    );
  const field = (key: string) => number(r, key, `${source} rope_scaling`);
  return {
    type: "llama3",
    factor: field("factor"),
    lowFreqFactor: field("low_freq_factor"),
    highFreqFactor: field("high_freq_factor"),
    originalMaxPositionEmbeddings: field("original_max_position_embeddings"),
  };
}

/** Read a Llama or Qwen2 config.json. */
export function fromHfLlamaConfig(c: Record<string, unknown>, source: string): GPTConfig {
  const architecture = c.model_type as "llama" | "qwen2";
  const act = c.hidden_act ?? "silu";
  if (act !== "silu")
    throw new ModelError(
      "E_CONFIG",
      `${source}: hidden_act ${JSON.stringify(act)} is not supported; accepted: "silu"`,
    );
  if (architecture === "qwen2" && c.use_sliding_window === true)
    throw new ModelError(
      "E_CONFIG",
      `${source}: use_sliding_window true is not supported; forge attends over the whole window`,
    );
  const nEmbd = number(c, "hidden_size", source);
  const nHead = number(c, "num_attention_heads", source);
  const attentionBias = architecture === "qwen2" ? true : c.attention_bias === true;
  return resolveConfig(
    {
      architecture,
      vocabSize: number(c, "vocab_size", source),
      blockSize: number(c, "max_position_embeddings", source),
      nLayer: number(c, "num_hidden_layers", source),
      nHead,
      nEmbd,
      dropout: typeof c.attention_dropout === "number" ? c.attention_dropout : 0,
      bias: false,
      layerNormEpsilon: number(c, "rms_norm_eps", source, 1e-6),
      llama: {
        nKvHead: number(c, "num_key_value_heads", source, nHead),
        headDim: number(c, "head_dim", source, Math.floor(nEmbd / nHead)),
        intermediateSize: number(c, "intermediate_size", source),
        ropeTheta: number(c, "rope_theta", source, 10_000),
        ropeScaling: ropeScaling(c.rope_scaling, source),
        tieWordEmbeddings: c.tie_word_embeddings === true,
        qkvBias: attentionBias,
        oBias: architecture === "llama" && attentionBias,
        mlpBias: c.mlp_bias === true,
      },
    },
    source,
  );
}

/** config.json for a Llama-family config. */
export function toHfLlamaConfig(config: GPTConfig): Record<string, unknown> {
  const l = config.llama!;
  const qwen = config.architecture === "qwen2";
  return {
    architectures: [qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
    model_type: config.architecture,
    vocab_size: config.vocabSize,
    hidden_size: config.nEmbd,
    intermediate_size: l.intermediateSize,
    num_hidden_layers: config.nLayer,
    num_attention_heads: config.nHead,
    num_key_value_heads: l.nKvHead,
    head_dim: l.headDim,
    max_position_embeddings: config.blockSize,
    rms_norm_eps: config.layerNormEpsilon,
    rope_theta: l.ropeTheta,
    rope_scaling: l.ropeScaling
      ? {
          rope_type: "llama3",
          factor: l.ropeScaling.factor,
          low_freq_factor: l.ropeScaling.lowFreqFactor,
          high_freq_factor: l.ropeScaling.highFreqFactor,
          original_max_position_embeddings: l.ropeScaling.originalMaxPositionEmbeddings,
        }
      : null,
    hidden_act: "silu",
    tie_word_embeddings: l.tieWordEmbeddings,
    ...(qwen ? { use_sliding_window: false } : { attention_bias: l.qkvBias, mlp_bias: l.mlpBias }),
    attention_dropout: config.dropout,
    torch_dtype: "float32",
  };
}

/**
 * The rotary inverse frequencies, 1 / θ^(2i/d) for i < d/2, with Llama 3's frequency-dependent
 * scaling when configured: wavelengths shorter than original/highFreqFactor are kept, longer
 * than original/lowFreqFactor divided by `factor`, and those between interpolated smoothly.
 */
export function rotaryInverseFrequencies(
  headDim: number,
  theta: number,
  scaling: Llama3RopeScaling | null,
): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const frequency = 1 / theta ** ((2 * i) / headDim);
    if (!scaling) {
      out[i] = frequency;
      continue;
    }
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = scaling;
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < old / highFreqFactor) out[i] = frequency;
    else if (wavelength > old / lowFreqFactor) out[i] = frequency / factor;
    else {
      const smooth = (old / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      out[i] = (1 - smooth) * (frequency / factor) + smooth * frequency;
    }
  }
  return out;
}
