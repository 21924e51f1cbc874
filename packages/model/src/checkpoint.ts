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
 * crash) never sees half a model. An existing directory is replaced only when it is forge's own
 * output of the same kind and the caller says `force` (see @forge/core's `claimOutput`): a
 * user's directory, or the model being saved from, is never overwritten.
 */
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { type ClaimOptions, writeFileAtomic, writeOutputDirectory } from "@forge/core";
import { loadTokenizer, saveTokenizer, type Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import type { BackendName } from "./backend/select.js";
import { fromHfConfig, type GPTConfig, isLlamaFamily, toHfConfig } from "./config.js";
import { ModelError } from "./errors.js";
import { GPT, parameterShapes } from "./gpt.js";
import { checkModelFits, type LoadPlan, loadPlanListener } from "./memory.js";

export type { LoadPlan } from "./memory.js";

import { LoraAdapter, type LoraConfig, type LoraTarget, resolveLoraConfig } from "./lora.js";
import {
  openSafetensors,
  readSafetensors,
  type SafetensorsReader,
  writeSafetensors,
} from "./safetensors.js";

export interface GenerationDefaults {
  temperature?: number;
  top_k?: number;
  top_p?: number;
  max_new_tokens?: number;
  eos_token_id?: number | number[];
  /** forge's own key: the system prompt `forge chat` and `forge generate` start with by default. */
  system_prompt?: string;
  [key: string]: unknown;
}

/** Where a model or adapter may be written (see @forge/core `claimOutput`). */
export interface OutputOptions {
  /** Replace a previous model (or adapter) directory forge wrote there. */
  force?: boolean;
  /** Directories the caller reads (the base model): the output may not be or contain one. */
  inputs?: readonly (string | undefined)[];
  /** How the caller named the directory, for messages (e.g. "--out"). */
  flag?: string;
}

export interface SaveModelOptions extends OutputOptions {
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
  const llama = isLlamaFamily(model.config);
  for (const [name, variable] of model.params) {
    const source = merged.get(name) ?? variable;
    const data = source.dataSync() as Float32Array;
    if (!llama) out.set(name, { shape: [...variable.shape], data });
    else if (/_proj\.weight$/.test(name)) {
      // forge holds projections [in, out]; torch's nn.Linear stores [out, in]
      const [rows, columns] = variable.shape as [number, number];
      out.set(`model.${name}`, { shape: [columns, rows], data: transpose(data, rows, columns) });
    } else
      out.set(name === "lm_head.weight" ? name : `model.${name}`, {
        shape: [...variable.shape],
        data,
      });
  }
  tf.dispose([...merged.values()]);
  return out;
}

/**
 * Write a model's files (config, weights, tokenizer, generation config, forge.json) into `dir`,
 * a directory the caller owns (a run's work directory); `saveModel` is the claimed version.
 */
export async function writeModelFiles(
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
  await writeOutputDirectory(dir, outputClaim("model", options), (staging) =>
    writeModelFiles(model, staging, options),
  );
}

function outputClaim(kind: string, options: OutputOptions): ClaimOptions {
  return {
    kind,
    ...(options.force ? { force: true } : {}),
    ...(options.inputs ? { inputs: options.inputs } : {}),
    ...(options.flag ? { flag: options.flag } : {}),
  };
}

/** Save the model with its adapter merged into the weights (at the adapter's strength). */
export async function saveMergedModel(
  model: GPT,
  dir: string,
  options: SaveModelOptions = {},
): Promise<void> {
  await writeOutputDirectory(dir, outputClaim("model", options), (staging) =>
    writeModelFiles(model, staging, { ...options, mergeAdapter: true }),
  );
}

/** A row-major [rows, columns] matrix transposed. */
function transpose(data: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < columns; c++) out[c * rows + r] = data[r * columns + c]!;
  return out;
}

/** Where one of the model's parameters comes from in the checkpoint. */
interface PlannedTensor {
  reader: SafetensorsReader;
  /** Its name in the file. */
  stored: string;
  /** Stored [out, in] (torch's nn.Linear), held [in, out]. */
  transpose: boolean;
  shape: number[];
  storedBytes: number;
}

/**
 * The checkpoint's files opened for reading tensor by tensor: model.safetensors, or the shards
 * model.safetensors.index.json maps each tensor to (every listed shard must exist and hold its
 * tensors). Only headers are read here.
 */
async function openCheckpoint(dir: string): Promise<{
  file: string;
  tensors: Map<string, SafetensorsReader>;
  readers: SafetensorsReader[];
}> {
  const single = path.join(dir, "model.safetensors");
  if (await exists(single)) {
    const reader = await openSafetensors(single);
    return {
      file: single,
      tensors: new Map([...reader.entries.keys()].map((name) => [name, reader])),
      readers: [reader],
    };
  }
  const indexFile = path.join(dir, "model.safetensors.index.json");
  if (!(await exists(indexFile)))
    throw new ModelError(
      "E_FORMAT",
      `${dir} is not a model directory: neither model.safetensors nor model.safetensors.index.json is there`,
    );
  const index = (await readJson(indexFile)) as { weight_map?: unknown };
  const map = index.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw new ModelError("E_FORMAT", `${indexFile}: weight_map must be an object of tensor → file`);
  const files = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
    if (
      typeof shard !== "string" ||
      shard.includes("/") ||
      shard.includes("\\") ||
      shard.startsWith(".")
    )
      throw new ModelError(
        "E_FORMAT",
        `${indexFile}: weight_map["${tensor}"] must name a file in ${dir}; got ${JSON.stringify(shard)}`,
      );
    files.set(shard, [...(files.get(shard) ?? []), tensor]);
  }
  const tensors = new Map<string, SafetensorsReader>();
  const readers: SafetensorsReader[] = [];
  try {
    for (const [shard, names] of files) {
      const file = path.join(dir, shard);
      if (!(await exists(file)))
        throw new ModelError("E_FORMAT", `${indexFile} lists ${shard}, which is not in ${dir}`);
      const reader = await openSafetensors(file);
      readers.push(reader);
      for (const name of names) {
        if (!reader.entries.has(name))
          throw new ModelError(
            "E_FORMAT",
            `${indexFile} places ${name} in ${shard}, which does not hold it`,
          );
        tensors.set(name, reader);
      }
    }
  } catch (error) {
    await Promise.all(readers.map((r) => r.close()));
    throw error;
  }
  return { file: indexFile, tensors, readers };
}

/**
 * The checkpoint's tensors → the model's parameter names, from the headers alone. GPT-2: a
 * "transformer." prefix accepted, attention-mask buffers skipped, an lm_head that must equal
 * wte (checked by the caller). The Llama family: "model." dropped, projections transposed to
 * [in, out], rotary buffers skipped, a tied model's lm_head dropped.
 */
function planWeights(
  stored: Map<string, SafetensorsReader>,
  file: string,
  config: GPTConfig,
): Map<string, PlannedTensor> {
  const llama = isLlamaFamily(config);
  const out = new Map<string, PlannedTensor>();
  for (const [raw, reader] of stored) {
    const entry = reader.entries.get(raw)!;
    let name = raw;
    let transposed = false;
    if (llama) {
      name = raw.startsWith("model.") ? raw.slice("model.".length) : raw;
      if (name.endsWith("rotary_emb.inv_freq")) continue; // a buffer, recomputed from the config
      if (name === "lm_head.weight" && config.llama!.tieWordEmbeddings) continue;
      transposed = /_proj\.weight$/.test(name) && entry.shape.length === 2;
    } else {
      name = raw.startsWith("transformer.") ? raw.slice("transformer.".length) : raw;
      // GPT-2 checkpoints may carry the causal-mask buffers; they are not parameters.
      if (/^h\.\d+\.attn\.(bias|masked_bias)$/.test(name)) continue;
    }
    if (out.has(name))
      throw new ModelError(
        "E_FORMAT",
        `${file}: tensor ${name} appears twice${llama ? "" : ' (with and without "transformer.")'}`,
      );
    out.set(name, {
      reader,
      stored: raw,
      transpose: transposed,
      shape: transposed ? [entry.shape[1]!, entry.shape[0]!] : entry.shape,
      storedBytes: entry.bytes,
    });
  }
  return out;
}

/** Load a model directory (config.json + model.safetensors, and whatever else is there). */
export interface LoadModelOptions {
  /** Called with the parameters and memory the weights need, before any is allocated. */
  onPlan?: (plan: LoadPlan) => void;
  /**
   * The backend whose memory the model must fit (default: the initialised one); a model that
   * cannot fit is refused before anything is allocated (see checkModelFits).
   */
  backend?: BackendName;
}

export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
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
  if (
    !(await exists(path.join(dir, "model.safetensors"))) &&
    !(await exists(path.join(dir, "model.safetensors.index.json")))
  )
    throw new ModelError(
      "E_FORMAT",
      `${dir} is not a model directory: model.safetensors is missing (nor is there a model.safetensors.index.json)`,
    );
  // Everything small is read and checked before the weights are allocated.
  const result: Omit<LoadedModel, "model"> = { directory: dir };
  const tokenizerFile = ["tokenizer.json", "vocab.json"]
    .map((name) => path.join(dir, name))
    .find((file) => existsSync(file));
  if (tokenizerFile) {
    const tokenizer = await loadTokenizer(dir);
    if (tokenizer.vocabSize > config.vocabSize)
      throw new ModelError(
        "E_FORMAT",
        `${tokenizerFile}: the tokenizer has ids up to ${tokenizer.vocabSize - 1}, but ${configFile} says vocab_size ${config.vocabSize}; the tokenizer and the weights do not belong together`,
      );
    result.tokenizer = tokenizer;
  }
  const generationFile = path.join(dir, "generation_config.json");
  if (await exists(generationFile))
    result.generationConfig = checkGenerationConfig(
      await readJson(generationFile),
      generationFile,
      config.vocabSize,
    );
  if (await exists(path.join(dir, "forge.json")))
    result.forge = (await readJson(path.join(dir, "forge.json"))) as Record<string, unknown>;
  // a model's chat template ends turns at its eos_token, and at generation_config's eos ids
  const eos = result.generationConfig?.eos_token_id;
  if (result.tokenizer?.usesTemplate && eos !== undefined)
    result.tokenizer = result.tokenizer.withStopIds(Array.isArray(eos) ? eos : [eos]);

  const { file: weightsFile, tensors: stored, readers } = await openCheckpoint(dir);
  const tensors = new Map<string, tf.Tensor>();
  try {
    const plan = planWeights(stored, weightsFile, config);
    const expected = parameterShapes(config);
    const unknown = [...plan.keys()].filter(
      (name) => !expected.has(name) && !(name === "lm_head.weight" && !isLlamaFamily(config)),
    );
    if (unknown.length > 0) {
      throw new ModelError(
        "E_FORMAT",
        `${weightsFile}: unexpected tensor${unknown.length > 1 ? "s" : ""} ${unknown.slice(0, 5).join(", ")} for this config`,
      );
    }
    for (const [name, shape] of expected) {
      const planned = plan.get(name);
      if (!planned) throw new ModelError("E_FORMAT", `${weightsFile}: tensor ${name} is missing`);
      if (!tf.util.arraysEqual(planned.shape, shape))
        throw new ModelError(
          "E_FORMAT",
          `${weightsFile}: tensor ${name} has shape [${planned.shape}]; the config needs [${shape}]`,
        );
    }
    const parameters = [...expected.values()].reduce(
      (sum, s) => sum + s.reduce((a, b) => a * b, 1),
      0,
    );
    const loadPlan: LoadPlan = {
      directory: dir,
      parameters,
      weightBytes: 4 * parameters,
      storedBytes: [...expected.keys()].reduce((sum, n) => sum + plan.get(n)!.storedBytes, 0),
      dtypes: [...new Set([...stored].map(([n, r]) => r.entries.get(n)!.dtype))].sort(),
      files: readers.map((r) => r.file),
    };
    (options.onPlan ?? loadPlanListener())?.(loadPlan);
    checkModelFits(loadPlan, options.backend);
    // GPT-2's lm_head, when a checkpoint carries one, must be the embedding it is tied to
    const head = isLlamaFamily(config) ? undefined : plan.get("lm_head.weight");
    if (head) {
      const wte = plan.get("wte.weight")!;
      const [h, w] = [await head.reader.read(head.stored), await wte.reader.read(wte.stored)];
      const tied =
        h.length === w.length &&
        h.every((v, i) => Math.abs(v - w[i]!) <= 1e-6 * Math.max(1, Math.abs(v)));
      if (!tied)
        throw new ModelError(
          "E_FORMAT",
          `${weightsFile}: lm_head.weight differs from wte.weight; forge's output layer is tied to the embedding`,
        );
    }
    // one tensor at a time: read, convert, hand to tfjs, let the bytes go
    for (const name of expected.keys()) {
      const planned = plan.get(name)!;
      let data = await planned.reader.read(planned.stored);
      if (planned.transpose) data = transpose(data, planned.shape[1]!, planned.shape[0]!);
      tensors.set(name, tf.tensor(data, planned.shape, "float32"));
    }
    return { ...result, model: GPT.fromTensors(config, tensors, weightsFile) };
  } finally {
    tf.dispose([...tensors.values()]);
    await Promise.all(readers.map((r) => r.close()));
  }
}

/**
 * generation_config.json's sampling defaults, checked where they are read: a bad value is blamed
 * on the file and its field, not on a command-line flag the user never passed.
 */
export function checkGenerationConfig(
  value: unknown,
  file: string,
  vocabSize: number,
): GenerationDefaults {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new ModelError("E_FORMAT", `${file}: must be a JSON object`);
  const config = value as GenerationDefaults;
  const bad = (field: string, expected: string) =>
    new ModelError(
      "E_FORMAT",
      `${file}: ${field} must be ${expected}; got ${JSON.stringify(config[field])}`,
    );
  const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
  if (
    config.temperature !== undefined &&
    !(isNumber(config.temperature) && config.temperature >= 0)
  )
    throw bad("temperature", "a number ≥ 0");
  if (
    config.top_k !== undefined &&
    config.top_k !== null &&
    !(Number.isInteger(config.top_k) && (config.top_k as number) >= 0)
  )
    throw bad("top_k", "an integer ≥ 0");
  if (
    config.top_p !== undefined &&
    config.top_p !== null &&
    !(isNumber(config.top_p) && config.top_p > 0 && config.top_p <= 1)
  )
    throw bad("top_p", "a number in (0, 1]");
  if (
    config.max_new_tokens !== undefined &&
    config.max_new_tokens !== null &&
    !(Number.isInteger(config.max_new_tokens) && (config.max_new_tokens as number) >= 1)
  )
    throw bad("max_new_tokens", "an integer ≥ 1");
  if (
    config.system_prompt !== undefined &&
    config.system_prompt !== null &&
    !(typeof config.system_prompt === "string" && config.system_prompt.trim() !== "")
  )
    throw bad(
      "system_prompt",
      "a non-empty string (the default system prompt forge chat starts with)",
    );
  const eos = config.eos_token_id;
  if (eos !== undefined && eos !== null) {
    const ids = Array.isArray(eos) ? eos : [eos];
    if (!ids.every((id) => Number.isInteger(id) && id >= 0 && id < vocabSize))
      throw bad(
        "eos_token_id",
        `a token id (or list of ids) below the vocabulary size ${vocabSize}`,
      );
  }
  return config;
}

const PEFT_PREFIX = "base_model.model.transformer.";
/** PEFT's keys for a Llama-family model: base_model.model.model.layers.0.self_attn.q_proj…. */
const PEFT_LLAMA_PREFIX = "base_model.model.model.";

export interface AdapterOptions {
  baseModel?: string;
  extraFiles?: Record<string, unknown>;
}

/** Save the model's adapter as adapter_model.safetensors + adapter_config.json (PEFT keys). */
export async function saveAdapter(
  model: GPT,
  dir: string,
  options: OutputOptions & AdapterOptions = {},
): Promise<void> {
  if (!model.lora) throw new ModelError("E_INPUT", "the model has no LoRA adapter to save");
  await writeOutputDirectory(dir, outputClaim("adapter", options), (staging) =>
    writeAdapterFiles(model, staging, options),
  );
}

/** Write the adapter's two files into `dir`, a directory the caller owns. */
export async function writeAdapterFiles(
  model: GPT,
  dir: string,
  options: AdapterOptions = {},
): Promise<void> {
  const adapter = model.lora;
  if (!adapter) throw new ModelError("E_INPUT", "the model has no LoRA adapter to save");
  const llama = isLlamaFamily(model.config);
  const peftPrefix = llama ? PEFT_LLAMA_PREFIX : PEFT_PREFIX;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  // an adapter applied on a subset of its blocks (`setActiveLayers`) is saved as that subset
  const active = adapter.activeLayers;
  const layers = active
    ? (adapter.config.layers ?? active).filter((l) => active.includes(l))
    : adapter.config.layers;
  if (layers && layers.length === 0)
    throw new ModelError("E_INPUT", "the adapter is active on none of the blocks it covers");
  for (const [prefix, a] of adapter.a) {
    if (layers && !layers.includes(Number(prefix.split(".")[1]))) continue;
    const b = adapter.b.get(prefix)!;
    const aT = tf.tidy(() => tf.transpose(a)); // PEFT lora_A: [r, in]
    const bT = tf.tidy(() => tf.transpose(b)); // PEFT lora_B: [out, r]
    tensors.set(`${peftPrefix}${prefix}.lora_A.weight`, {
      shape: [...aT.shape],
      data: aT.dataSync() as Float32Array,
    });
    tensors.set(`${peftPrefix}${prefix}.lora_B.weight`, {
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
    // PEFT matches by suffix; the Llama family's adapters name the projections as PEFT does
    target_modules: llama
      ? adapter.config.targetModules.map((t) => t.split(".").at(-1))
      : adapter.config.targetModules,
    ...(layers ? { layers_to_transform: layers } : {}),
    fan_in_fan_out: !llama, // GPT-2's Conv1D stores [in, out]; nn.Linear [out, in]
    bias: "none",
    inference_mode: true,
    base_model_name_or_path: options.baseModel ?? null,
    forge_strength: adapter.strength,
  };
  await writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  await writeFileAtomic(path.join(dir, "adapter_config.json"), json(config));
  for (const [name, value] of Object.entries(options.extraFiles ?? {}))
    await writeFileAtomic(path.join(dir, name), typeof value === "string" ? value : json(value));
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
  const layers = raw.layers_to_transform;
  if (layers !== undefined && layers !== null)
    config.layers = (Array.isArray(layers) ? layers : [layers]) as number[];
  const resolved = resolveLoraConfig(config, configFile);
  const llama = isLlamaFamily(model.config);
  const peftPrefix = llama ? PEFT_LLAMA_PREFIX : PEFT_PREFIX;
  const weightsFile = path.join(dir, "adapter_model.safetensors");
  const { tensors } = await readSafetensors(weightsFile);
  const pairs = new Map<string, { a: tf.Tensor; b: tf.Tensor }>();
  try {
    if (resolved.layers?.some((l) => l >= model.config.nLayer))
      throw new ModelError(
        "E_FORMAT",
        `${configFile}: layers_to_transform names block ${resolved.layers.find((l) => l >= model.config.nLayer)}; the model has ${model.config.nLayer} blocks`,
      );
    const blocks = resolved.layers ?? Array.from({ length: model.config.nLayer }, (_, i) => i);
    for (const i of blocks) {
      for (const target of resolved.targetModules) {
        const prefix = `${llama ? "layers" : "h"}.${i}.${target}`;
        const a = tensors.get(`${peftPrefix}${prefix}.lora_A.weight`);
        const b = tensors.get(`${peftPrefix}${prefix}.lora_B.weight`);
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
