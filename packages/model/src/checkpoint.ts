/**
 * Model directories in Hugging Face's GPT-2 layout, and PEFT-style LoRA adapters.
 *
 *   config.json              GPT-2 config (toHfConfig)
 *   model.safetensors        HF GPT-2 tensor names; Conv1D weights [in, out]
 *   tokenizer.json (+ tokenizer_config.json)   when a tokenizer is given
 *   generation_config.json   sampling defaults
 *   forge.json               forge's lineage record (whatever the caller passes)
 *
 *   adapter_config.json + adapter_model.safetensors   (PEFT keys, lora_A [r, in], lora_B [out, r])
 *
 * A directory is written into a temporary sibling and renamed into place, so a reader (or a
 * crash) never sees half a model.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { loadTokenizer, saveTokenizer, type Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { fromHfConfig, toHfConfig } from "./config.js";
import { ModelError } from "./errors.js";
import { GPT, parameterShapes } from "./gpt.js";
import { LoraAdapter, type LoraConfig, type LoraTarget, resolveLoraConfig } from "./lora.js";
import {
  type LoadedTensor,
  readSafetensors,
  writeFileAtomic,
  writeSafetensors,
} from "./safetensors.js";

export interface GenerationDefaults {
  temperature?: number;
  top_k?: number;
  top_p?: number;
  max_new_tokens?: number;
  eos_token_id?: number | number[];
  [key: string]: unknown;
}

export interface SaveModelOptions {
  tokenizer?: Tokenizer;
  generationConfig?: GenerationDefaults;
  /** forge's record of how this model was made (lineage, settings, metrics). */
  forge?: Record<string, unknown>;
}

export interface LoadedModel {
  model: GPT;
  tokenizer?: Tokenizer;
  generationConfig?: GenerationDefaults;
  forge?: Record<string, unknown>;
  directory: string;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ModelError(
      "E_IO",
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ModelError("E_FORMAT", `${file}: not valid JSON (${(error as Error).message})`, {
      cause: error,
    });
  }
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/**
 * Build a directory by writing into a fresh temporary sibling, then swapping it into place
 * (replacing any previous directory of that name).
 */
export async function writeDirectoryAtomic(
  dir: string,
  fill: (staging: string) => Promise<void>,
): Promise<void> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true }).catch((error: Error) => {
    throw new ModelError("E_IO", `cannot create ${parent}: ${error.message}`, { cause: error });
  });
  const suffix = `${process.pid}.${randomBytes(4).toString("hex")}`;
  const staging = path.join(parent, `.${path.basename(target)}.staging.${suffix}`);
  const retired = path.join(parent, `.${path.basename(target)}.old.${suffix}`);
  await mkdir(staging);
  try {
    await fill(staging);
    const had = await exists(target);
    if (had) await rename(target, retired);
    await rename(staging, target);
    if (had) await rm(retired, { recursive: true, force: true });
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (ModelError.isInstance(error)) throw error;
    throw new ModelError("E_IO", `cannot write ${target}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Parameters as float32 arrays by name (optionally with the LoRA merged in). */
export function modelTensors(
  model: GPT,
  options: { mergeAdapter?: boolean } = {},
): Map<string, { shape: number[]; data: Float32Array }> {
  const merged =
    options.mergeAdapter && model.lora
      ? model.lora.mergedWeights(model)
      : new Map<string, tf.Tensor>();
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, variable] of model.params) {
    const source = merged.get(name) ?? variable;
    out.set(name, { shape: [...variable.shape], data: source.dataSync() as Float32Array });
  }
  tf.dispose([...merged.values()]);
  return out;
}

async function writeModelFiles(
  model: GPT,
  dir: string,
  options: SaveModelOptions & { mergeAdapter?: boolean },
): Promise<void> {
  await writeFileAtomic(path.join(dir, "config.json"), json(toHfConfig(model.config)));
  await writeSafetensors(path.join(dir, "model.safetensors"), modelTensors(model, options), {
    format: "pt",
  });
  if (options.tokenizer) await saveTokenizer(options.tokenizer, dir);
  if (options.generationConfig)
    await writeFileAtomic(path.join(dir, "generation_config.json"), json(options.generationConfig));
  if (options.forge) await writeFileAtomic(path.join(dir, "forge.json"), json(options.forge));
}

/**
 * Save a model directory. An attached LoRA adapter is not part of the base weights; use
 * `saveAdapter` for it, or `saveMergedModel` for base + adapter folded together.
 */
export async function saveModel(
  model: GPT,
  dir: string,
  options: SaveModelOptions = {},
): Promise<void> {
  await writeDirectoryAtomic(dir, (staging) => writeModelFiles(model, staging, options));
}

/** Save the model with its adapter merged into the weights (at the adapter's strength). */
export async function saveMergedModel(
  model: GPT,
  dir: string,
  options: SaveModelOptions = {},
): Promise<void> {
  await writeDirectoryAtomic(dir, (staging) =>
    writeModelFiles(model, staging, { ...options, mergeAdapter: true }),
  );
}

/** Weights from a loaded file → the model's parameter names (HF spellings accepted). */
function normaliseWeights(
  tensors: Map<string, LoadedTensor>,
  file: string,
): Map<string, LoadedTensor> {
  const out = new Map<string, LoadedTensor>();
  for (const [raw, tensor] of tensors) {
    const name = raw.startsWith("transformer.") ? raw.slice("transformer.".length) : raw;
    // GPT-2 checkpoints may carry the causal-mask buffers; they are not parameters.
    if (/^h\.\d+\.attn\.(bias|masked_bias)$/.test(name)) continue;
    if (out.has(name))
      throw new ModelError(
        "E_FORMAT",
        `${file}: tensor ${name} appears twice (with and without "transformer.")`,
      );
    out.set(name, tensor);
  }
  const head = out.get("lm_head.weight");
  if (head) {
    const wte = out.get("wte.weight");
    const tied =
      wte !== undefined &&
      tf.util.arraysEqual(head.shape, wte.shape) &&
      head.data.every((v, i) => Math.abs(v - wte.data[i]!) <= 1e-6 * Math.max(1, Math.abs(v)));
    if (!tied) {
      throw new ModelError(
        "E_FORMAT",
        `${file}: lm_head.weight differs from wte.weight; forge's output layer is tied to the embedding`,
      );
    }
    out.delete("lm_head.weight");
  }
  return out;
}

/** Load a model directory (config.json + model.safetensors, and whatever else is there). */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory())
    throw new ModelError(
      "E_IO",
      `${dir} is not a directory; a model directory holds config.json and model.safetensors`,
    );
  const configFile = path.join(dir, "config.json");
  if (!(await exists(configFile))) {
    throw new ModelError("E_FORMAT", `${dir} is not a model directory: config.json is missing`);
  }
  const config = fromHfConfig(await readJson(configFile), configFile);
  const weightsFile = path.join(dir, "model.safetensors");
  if (!(await exists(weightsFile)))
    throw new ModelError(
      "E_FORMAT",
      `${dir} is not a model directory: model.safetensors is missing`,
    );
  const weights = normaliseWeights((await readSafetensors(weightsFile)).tensors, weightsFile);
  const expected = parameterShapes(config);
  const unknown = [...weights.keys()].filter((name) => !expected.has(name));
  if (unknown.length > 0) {
    throw new ModelError(
      "E_FORMAT",
      `${weightsFile}: unexpected tensor${unknown.length > 1 ? "s" : ""} ${unknown.slice(0, 5).join(", ")} for this config`,
    );
  }
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, tensor] of weights)
    tensors.set(name, tf.tensor(tensor.data, tensor.shape, "float32"));
  let model: GPT;
  try {
    model = GPT.fromTensors(config, tensors, weightsFile);
  } finally {
    tf.dispose([...tensors.values()]);
  }
  const result: LoadedModel = { model, directory: dir };
  if (
    (await exists(path.join(dir, "tokenizer.json"))) ||
    (await exists(path.join(dir, "vocab.json")))
  ) {
    result.tokenizer = await loadTokenizer(dir);
  }
  if (await exists(path.join(dir, "generation_config.json"))) {
    result.generationConfig = (await readJson(
      path.join(dir, "generation_config.json"),
    )) as GenerationDefaults;
  }
  if (await exists(path.join(dir, "forge.json")))
    result.forge = (await readJson(path.join(dir, "forge.json"))) as Record<string, unknown>;
  return result;
}

const PEFT_PREFIX = "base_model.model.transformer.";

/** Save the model's adapter as adapter_model.safetensors + adapter_config.json (PEFT keys). */
export async function saveAdapter(
  model: GPT,
  dir: string,
  options: { baseModel?: string; extraFiles?: Record<string, unknown> } = {},
): Promise<void> {
  const adapter = model.lora;
  if (!adapter) throw new ModelError("E_INPUT", "the model has no LoRA adapter to save");
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [prefix, a] of adapter.a) {
    const b = adapter.b.get(prefix)!;
    const aT = tf.tidy(() => tf.transpose(a)); // PEFT lora_A: [r, in]
    const bT = tf.tidy(() => tf.transpose(b)); // PEFT lora_B: [out, r]
    tensors.set(`${PEFT_PREFIX}${prefix}.lora_A.weight`, {
      shape: [...aT.shape],
      data: aT.dataSync() as Float32Array,
    });
    tensors.set(`${PEFT_PREFIX}${prefix}.lora_B.weight`, {
      shape: [...bT.shape],
      data: bT.dataSync() as Float32Array,
    });
    tf.dispose([aT, bT]);
  }
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    r: adapter.config.r,
    lora_alpha: adapter.config.alpha,
    lora_dropout: adapter.config.dropout,
    target_modules: adapter.config.targetModules,
    fan_in_fan_out: true,
    bias: "none",
    inference_mode: true,
    base_model_name_or_path: options.baseModel ?? null,
    forge_strength: adapter.strength,
  };
  await writeDirectoryAtomic(dir, async (staging) => {
    await writeSafetensors(path.join(staging, "adapter_model.safetensors"), tensors, {
      format: "pt",
    });
    await writeFileAtomic(path.join(staging, "adapter_config.json"), json(config));
    for (const [name, value] of Object.entries(options.extraFiles ?? {})) {
      await writeFileAtomic(
        path.join(staging, name),
        typeof value === "string" ? value : json(value),
      );
    }
  });
}

/** Read an adapter directory and attach it to `model` (replacing any adapter). */
export async function loadAdapter(model: GPT, dir: string): Promise<LoraAdapter> {
  const configFile = path.join(dir, "adapter_config.json");
  if (!(await exists(configFile)))
    throw new ModelError(
      "E_FORMAT",
      `${dir} is not an adapter directory: adapter_config.json is missing`,
    );
  const raw = (await readJson(configFile)) as Record<string, unknown>;
  if (raw.peft_type !== undefined && raw.peft_type !== "LORA") {
    throw new ModelError(
      "E_FORMAT",
      `${configFile}: peft_type is ${JSON.stringify(raw.peft_type)}; accepted: "LORA"`,
    );
  }
  const targets = raw.target_modules;
  const config: Partial<LoraConfig> = {
    r: raw.r as number,
    alpha: raw.lora_alpha as number,
    dropout: (raw.lora_dropout as number) ?? 0,
    targetModules: (Array.isArray(targets) ? targets : [targets]) as LoraTarget[],
  };
  const resolved = resolveLoraConfig(config, configFile);
  const weightsFile = path.join(dir, "adapter_model.safetensors");
  const { tensors } = await readSafetensors(weightsFile);
  const pairs = new Map<string, { a: tf.Tensor; b: tf.Tensor }>();
  try {
    for (let i = 0; i < model.config.nLayer; i++) {
      for (const target of resolved.targetModules) {
        const prefix = `h.${i}.${target}`;
        const a = tensors.get(`${PEFT_PREFIX}${prefix}.lora_A.weight`);
        const b = tensors.get(`${PEFT_PREFIX}${prefix}.lora_B.weight`);
        if (!a || !b)
          throw new ModelError(
            "E_FORMAT",
            `${weightsFile}: lora_A/lora_B for ${prefix} are missing`,
          );
        pairs.set(prefix, {
          a: tf.tidy(() => tf.tensor(a.data, a.shape).transpose()),
          b: tf.tidy(() => tf.tensor(b.data, b.shape).transpose()),
        });
      }
    }
    const adapter = LoraAdapter.fromTensors(model, resolved, pairs, weightsFile);
    if (typeof raw.forge_strength === "number") adapter.strength = raw.forge_strength;
    model.lora?.dispose();
    model.lora = adapter;
    return adapter;
  } finally {
    for (const { a, b } of pairs.values()) tf.dispose([a, b]);
  }
}
