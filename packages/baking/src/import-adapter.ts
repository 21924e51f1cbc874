/**
 * Import a PEFT LoRA adapter trained elsewhere (a PyTorch/TRL job on an exported bake) as a
 * forge bake: the adapter is validated against the base model — every tensor key parsed to a
 * block and a target module forge can adapt, every shape matched to the base layer and r — and
 * written in forge's layout with a forge.json recording where it came from, so `forge eval`,
 * `forge halfbake`, `forge chat` and the manifests treat it as any bake.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { claimOutput, writeFileAtomic } from "@forge/core";
import {
  defaultLoraTargets,
  type GPT,
  LORA_TARGETS,
  type LoraTarget,
  loadAdapter,
  readSafetensors,
  writeSafetensors,
} from "@forge/model";
import { BakingError } from "./errors.js";

/** The Llama family's adapters target self_attn.* / mlp.*_proj; GPT-2's attn.* / mlp.c_*. */
const isLlama = (model: GPT): boolean => defaultLoraTargets(model)[0]!.startsWith("self_attn.");
const LLAMA_TARGETS = LORA_TARGETS.filter((t) =>
  /^(self_attn\.|mlp\.(gate|up|down)_proj$)/.test(t),
);
const GPT2_TARGETS = LORA_TARGETS.filter((t) => !(LLAMA_TARGETS as readonly string[]).includes(t));

export interface ImportAdapterOptions {
  /** The new bake directory (claimed as forge's "bake" output). */
  out: string;
  /** The base model's directory (recorded as the bake's base). */
  baseModel: string;
  /** The bake the adapter was trained from (its forge.json: prompt, settings): lineage. */
  fromBake?: { dir: string; record: Record<string, unknown> };
  force?: boolean;
}

export interface ImportedAdapter {
  out: string;
  r: number;
  alpha: number;
  targetModules: LoraTarget[];
  layers: number[];
  tensors: number;
  record: Record<string, unknown>;
}

/** A tensor key of a PEFT LoRA adapter: block, target module, A or B. */
const KEY =
  /^(?:base_model\.model\.)?(?:transformer\.|model\.)?(h|layers)\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$/;

export interface PeftAdapter {
  r: number;
  alpha: number;
  targetModules: LoraTarget[];
  layers: number[];
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/**
 * Read and check a PEFT adapter directory against `model`; returns its tensors under forge's
 * keys. Every problem names the file and the key or field at fault.
 */
export async function readPeftAdapter(dir: string, model: GPT): Promise<PeftAdapter> {
  const configFile = path.join(dir, "adapter_config.json");
  const weightsFile = path.join(dir, "adapter_model.safetensors");
  for (const file of [configFile, weightsFile]) {
    if (!existsSync(file))
      throw new BakingError(
        "E_INPUT",
        `${dir} is not a PEFT adapter: ${path.basename(file)} is missing (a PEFT LoRA adapter has adapter_config.json and adapter_model.safetensors)`,
      );
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(configFile, "utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new BakingError("E_FORMAT", `${configFile}: not JSON (${(error as Error).message})`);
  }
  if (raw.peft_type !== undefined && raw.peft_type !== "LORA")
    throw new BakingError(
      "E_FORMAT",
      `${configFile}: peft_type is ${JSON.stringify(raw.peft_type)}; forge imports "LORA" adapters`,
    );
  const r = raw.r;
  const alpha = raw.lora_alpha ?? r;
  if (!Number.isInteger(r) || (r as number) < 1)
    throw new BakingError(
      "E_FORMAT",
      `${configFile}: "r" must be a positive integer; got ${JSON.stringify(r)}`,
    );
  if (typeof alpha !== "number" || !(alpha > 0))
    throw new BakingError(
      "E_FORMAT",
      `${configFile}: "lora_alpha" must be a positive number; got ${JSON.stringify(alpha)}`,
    );
  for (const field of ["use_dora", "use_rslora"]) {
    if (raw[field] === true)
      throw new BakingError(
        "E_FORMAT",
        `${configFile}: "${field}" is true; forge imports plain LoRA adapters`,
      );
  }
  if (Array.isArray(raw.modules_to_save) && raw.modules_to_save.length > 0)
    throw new BakingError(
      "E_FORMAT",
      `${configFile}: "modules_to_save" lists ${JSON.stringify(raw.modules_to_save)}; forge imports LoRA weights only (no fully trained modules)`,
    );
  const llama = isLlama(model);
  const known: readonly string[] = llama ? LLAMA_TARGETS : GPT2_TARGETS;
  const block = llama ? "layers" : "h";
  const { tensors } = await readSafetensors(weightsFile);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  const targets = new Set<string>();
  const layers = new Set<number>();
  for (const [key, tensor] of tensors) {
    const match = KEY.exec(key);
    if (!match)
      throw new BakingError(
        "E_FORMAT",
        `${weightsFile}: key ${key} is not a LoRA weight forge knows (expected base_model.model.${llama ? "model.layers" : "transformer.h"}.<block>.<module>.lora_A.weight or lora_B.weight)`,
      );
    const [, blockName, index, module, which] = match;
    const target: string = llama
      ? (known.find((t) => t === module || t.endsWith(`.${module}`)) ?? module!)
      : module!;
    if (blockName !== block || !known.includes(target))
      throw new BakingError(
        "E_FORMAT",
        `${weightsFile}: key ${key} targets ${blockName}.${index}.${module}, which is not a module forge adapts on this ${llama ? "Llama-family" : "GPT-2"} base; accepted modules: ${known.join(", ")}`,
      );
    const layer = Number(index);
    if (layer >= model.config.nLayer)
      throw new BakingError(
        "E_FORMAT",
        `${weightsFile}: key ${key} names block ${layer}; the base model has ${model.config.nLayer} blocks (0..${model.config.nLayer - 1})`,
      );
    const [fanIn, fanOut] = model.param(`${block}.${layer}.${target}.weight`).shape as [
      number,
      number,
    ];
    const expected = which === "A" ? [r as number, fanIn] : [fanOut, r as number];
    if (
      tensor.shape.length !== 2 ||
      tensor.shape[0] !== expected[0] ||
      tensor.shape[1] !== expected[1]
    )
      throw new BakingError(
        "E_FORMAT",
        `${weightsFile}: key ${key} has shape [${tensor.shape.join(", ")}]; the base model's ${block}.${layer}.${target} with r = ${r} needs [${expected.join(", ")}]`,
      );
    const forgeKey = `${llama ? "base_model.model.model." : "base_model.model.transformer."}${block}.${layer}.${target}.lora_${which}.weight`;
    if (out.has(forgeKey))
      throw new BakingError("E_FORMAT", `${weightsFile}: key ${key} duplicates ${forgeKey}`);
    out.set(forgeKey, { shape: tensor.shape, data: tensor.data });
    targets.add(target);
    layers.add(layer);
  }
  if (out.size === 0)
    throw new BakingError("E_FORMAT", `${weightsFile}: holds no lora_A/lora_B weights`);
  // every (block, target) pair needs both A and B, and the adapter must cover a rectangle of
  // blocks × targets (forge's adapters name their targets and blocks once)
  const prefix = llama ? "base_model.model.model." : "base_model.model.transformer.";
  for (const layer of layers) {
    for (const target of targets) {
      for (const which of ["A", "B"]) {
        const key = `${prefix}${block}.${layer}.${target}.lora_${which}.weight`;
        if (!out.has(key))
          throw new BakingError(
            "E_FORMAT",
            `${weightsFile}: ${block}.${layer}.${target} lacks lora_${which} (the adapter covers ${[...targets].join(", ")} on blocks ${[...layers].sort((a, b) => a - b).join(", ")}; each needs lora_A and lora_B)`,
          );
      }
    }
  }
  return {
    r: r as number,
    alpha,
    targetModules: [...targets] as LoraTarget[],
    layers: [...layers].sort((a, b) => a - b),
    tensors: out,
  };
}

/**
 * Import a PEFT adapter into `options.out` as a forge bake, checked against `model` (the base;
 * the adapter is attached to it on return, so the caller can use or evaluate it).
 */
export async function importAdapter(
  peftDir: string,
  model: GPT,
  options: ImportAdapterOptions,
): Promise<ImportedAdapter> {
  const adapter = await readPeftAdapter(peftDir, model);
  const claim = await claimOutput(options.out, {
    kind: "bake",
    ...(options.force ? { force: true } : {}),
    inputs: [peftDir, options.baseModel, options.fromBake?.dir],
    flag: "--out",
  });
  try {
    const allLayers = adapter.layers.length === model.config.nLayer;
    await writeSafetensors(path.join(claim.work, "adapter_model.safetensors"), adapter.tensors, {
      format: "pt",
    });
    const config = {
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: adapter.r,
      lora_alpha: adapter.alpha,
      lora_dropout: 0,
      target_modules: adapter.targetModules,
      ...(allLayers ? {} : { layers_to_transform: adapter.layers }),
      fan_in_fan_out: !isLlama(model),
      bias: "none",
      inference_mode: true,
      base_model_name_or_path: options.baseModel,
    };
    await writeFileAtomic(
      path.join(claim.work, "adapter_config.json"),
      `${JSON.stringify(config, null, 2)}\n`,
    );
    // load it back into the base: the final check that forge reads what it wrote
    await loadAdapter(model, claim.work);
    const weights = await readFile(path.join(peftDir, "adapter_model.safetensors"));
    const from = options.fromBake?.record;
    const record: Record<string, unknown> = {
      kind: "bake",
      baseModel: options.baseModel,
      ...(from?.prompt ? { prompt: from.prompt } : {}),
      ...(from?.stim ? { stim: from.stim } : {}),
      ...(from?.rollout ? { rollout: from.rollout } : {}),
      bake: {
        mode: "lora",
        lora: {
          r: adapter.r,
          alpha: adapter.alpha,
          targetModules: adapter.targetModules,
          ...(allLayers ? {} : { layers: adapter.layers }),
        },
      },
      imported: {
        from: path.resolve(peftDir),
        sha256: createHash("sha256").update(weights).digest("hex"),
        peftConfig: JSON.parse(await readFile(path.join(peftDir, "adapter_config.json"), "utf8")),
        trainedOn: options.fromBake ? path.resolve(options.fromBake.dir) : null,
        importedAt: new Date().toISOString(),
      },
      createdAt: new Date().toISOString(),
    };
    await writeFileAtomic(
      path.join(claim.work, "forge.json"),
      `${JSON.stringify(record, null, 2)}\n`,
    );
    await claim.commit();
    return {
      out: claim.target,
      r: adapter.r,
      alpha: adapter.alpha,
      targetModules: adapter.targetModules,
      layers: adapter.layers,
      tensors: adapter.tensors.size,
      record,
    };
  } catch (error) {
    await claim.release();
    throw error;
  }
}
