import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import {
  loadAdapter,
  loadModel,
  modelTensors,
  saveAdapter,
  saveMergedModel,
  saveModel,
} from "./checkpoint.js";
import { ModelError } from "./errors.js";
import { GPT } from "./gpt.js";
import { attachLora } from "./lora.js";
import { readSafetensors, serializeSafetensors } from "./safetensors.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-ckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

const config = { vocabSize: 300, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 16 };
const ids = () => tf.tensor2d([[1, 2, 3, 250, 5, 6, 7]], undefined, "int32");

function logitsOf(model: GPT): Float32Array {
  const x = ids();
  const logits = model.forward(x);
  const values = logits.dataSync() as Float32Array;
  tf.dispose([x, logits]);
  return values;
}

describe("model directories", () => {
  it("save → load gives identical logits, and keeps tokenizer, generation config and forge.json", async () => {
    const model = GPT.create(config, { seed: 4 });
    const tokenizer = trainTokenizer(["hello world, hello forge"], { vocabSize: 264 });
    const target = path.join(dir, "model-a");
    await saveModel(model, target, {
      tokenizer,
      generationConfig: { temperature: 0.7, max_new_tokens: 20 },
      forge: { made: "test" },
    });
    expect(readdirSync(target).sort()).toEqual([
      ".forge-output.json",
      "config.json",
      "forge.json",
      "generation_config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    const hfConfig = JSON.parse(readFileSync(path.join(target, "config.json"), "utf8"));
    expect(hfConfig).toMatchObject({
      model_type: "gpt2",
      n_embd: 16,
      n_layer: 2,
      n_head: 2,
      n_positions: 32,
      vocab_size: 300,
    });
    const { tensors } = await readSafetensors(path.join(target, "model.safetensors"));
    expect(tensors.get("h.0.attn.c_attn.weight")!.shape).toEqual([16, 48]); // Conv1D [in, out]
    expect(tensors.get("wte.weight")!.shape).toEqual([300, 16]);
    const loaded = await loadModel(target);
    expect(logitsOf(loaded.model)).toEqual(logitsOf(model));
    expect(loaded.tokenizer!.encode("hello forge")).toEqual(tokenizer.encode("hello forge"));
    expect(loaded.generationConfig).toEqual({ temperature: 0.7, max_new_tokens: 20 });
    expect(loaded.forge).toEqual({ made: "test" });
    // no staging directories left behind
    expect(readdirSync(dir).filter((n) => n.startsWith("."))).toEqual([]);
    model.dispose();
    loaded.model.dispose();
  });

  it("accepts Hugging Face spellings: a transformer. prefix, a tied lm_head, attention mask buffers", async () => {
    const model = GPT.create(config, { seed: 5 });
    const target = path.join(dir, "hf-style");
    await saveModel(model, target);
    const tensors = modelTensors(model);
    const renamed = new Map([...tensors].map(([name, t]) => [`transformer.${name}`, t]));
    renamed.set("lm_head.weight", tensors.get("wte.weight")!);
    renamed.set("transformer.h.0.attn.bias", { shape: [1, 1, 2, 2], data: new Float32Array(4) });
    writeFileSync(path.join(target, "model.safetensors"), serializeSafetensors(renamed));
    const loaded = await loadModel(target);
    expect(logitsOf(loaded.model)).toEqual(logitsOf(model));
    model.dispose();
    loaded.model.dispose();
  });

  it("a wrong-shape tensor, a missing config.json and an untied lm_head are clear errors", async () => {
    const model = GPT.create(config, { seed: 6 });
    const target = path.join(dir, "broken");
    await saveModel(model, target);
    const tensors = modelTensors(model);
    tensors.set("h.1.mlp.c_fc.weight", { shape: [16, 10], data: new Float32Array(160) });
    writeFileSync(path.join(target, "model.safetensors"), serializeSafetensors(tensors));
    await expect(loadModel(target)).rejects.toThrow(
      /tensor h.1.mlp.c_fc.weight has shape \[16,10\]; the config needs \[16,64\]/,
    );
    const untied = modelTensors(model);
    untied.set("lm_head.weight", { shape: [300, 16], data: new Float32Array(4800).fill(1) });
    writeFileSync(path.join(target, "model.safetensors"), serializeSafetensors(untied));
    await expect(loadModel(target)).rejects.toThrow(/lm_head.weight differs from wte.weight/);
    rmSync(path.join(target, "config.json"));
    const error = await loadModel(target).catch((e: unknown) => e);
    expect(ModelError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe(
      `${target} is not a model directory: config.json is missing`,
    );
    await expect(loadModel(path.join(dir, "absent"))).rejects.toThrow(/is not a directory/);
    model.dispose();
  });
});

describe("what a save may replace", () => {
  it("never a user's directory or the model it loads from; its own previous model only with force", async () => {
    const model = GPT.create(config, { seed: 8 });
    const users = path.join(dir, "users-dir");
    mkdirSync(users);
    writeFileSync(path.join(users, "notes.txt"), "mine");
    await expect(saveModel(model, users)).rejects.toThrow(
      /not forge's output \(a directory holding notes.txt\)/,
    );
    await expect(saveModel(model, users, { force: true })).rejects.toThrow(/never replaces/);
    expect(readFileSync(path.join(users, "notes.txt"), "utf8")).toBe("mine");

    const own = path.join(dir, "own-model");
    await saveModel(model, own);
    await expect(saveModel(model, own)).rejects.toThrow(/previous model output.*--force/);
    await expect(saveModel(model, own, { force: true, inputs: [own] })).rejects.toThrow(
      /is the input/,
    );
    const other = GPT.create(config, { seed: 9 });
    await saveModel(other, own, { force: true });
    expect(logitsOf((await loadModel(own)).model)).toEqual(logitsOf(other));
    attachLora(model, { r: 2 });
    await expect(saveAdapter(model, own, { force: true })).rejects.toThrow(
      /holds forge's model output/,
    );
    model.dispose();
    other.dispose();
  });
});

describe("loading checks what it reads before allocating", () => {
  it("a tokenizer with ids beyond the model's vocabulary is refused at load, naming tokenizer.json", async () => {
    const model = GPT.create({ ...config, vocabSize: 260 }, { seed: 4 });
    const target = path.join(dir, "small-vocab");
    const tokenizer = trainTokenizer(["hello world, hello forge"], { vocabSize: 270 });
    expect(tokenizer.vocabSize).toBeGreaterThan(260);
    await saveModel(model, target, { tokenizer });
    await expect(loadModel(target)).rejects.toThrow(
      new RegExp(
        `${path.join(target, "tokenizer.json")}: the tokenizer has ids up to ${tokenizer.vocabSize - 1}, but .*config.json says vocab_size 260`,
      ),
    );
    model.dispose();
  });

  it("a bad generation_config.json is blamed on the file and field", async () => {
    const model = GPT.create(config, { seed: 4 });
    const target = path.join(dir, "bad-generation");
    await saveModel(model, target, { generationConfig: { temperature: -1 } });
    await expect(loadModel(target)).rejects.toThrow(
      `${path.join(target, "generation_config.json")}: temperature must be a number ≥ 0; got -1`,
    );
    writeFileSync(path.join(target, "generation_config.json"), '{"eos_token_id": 5000}');
    await expect(loadModel(target)).rejects.toThrow(/eos_token_id must be a token id/);
    model.dispose();
  });

  it("an absurd config or LoRA rank is refused in well under a second", async () => {
    const model = GPT.create(config, { seed: 4 });
    const target = path.join(dir, "absurd");
    await saveModel(model, target);
    const hf = JSON.parse(readFileSync(path.join(target, "config.json"), "utf8"));
    for (const [field, value] of [
      ["n_layer", 1e9],
      ["n_embd", 1e6],
      ["vocab_size", 1e12],
    ] as const) {
      writeFileSync(path.join(target, "config.json"), JSON.stringify({ ...hf, [field]: value }));
      const started = performance.now();
      const error = await loadModel(target).catch((e: unknown) => e);
      expect(performance.now() - started).toBeLessThan(1000);
      expect(ModelError.isInstance(error)).toBe(true);
      expect((error as Error).message).toMatch(/config.json: .*(parameters|one tensor holds)/);
    }
    const started = performance.now();
    expect(() => attachLora(model, { r: 100_000 })).toThrow(
      /rank 100000 is larger than the model's width \(16\)/,
    );
    expect(performance.now() - started).toBeLessThan(1000);
    model.dispose();
  });
});

describe("adapters", () => {
  it("save → load an adapter (PEFT keys and layout) reproduces the adapted logits; merged saves equal it too", async () => {
    const model = GPT.create(config, { seed: 7 });
    const adapter = attachLora(model, {
      r: 4,
      alpha: 8,
      targetModules: ["attn.c_attn", "mlp.c_fc"],
    });
    for (const b of adapter.b.values())
      tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.3, "float32", 3)));
    adapter.strength = 0.5;
    const adapted = logitsOf(model);
    const target = path.join(dir, "adapter");
    await saveAdapter(model, target, { baseModel: "models/forge-tiny" });
    const peft = JSON.parse(readFileSync(path.join(target, "adapter_config.json"), "utf8"));
    expect(peft).toMatchObject({
      peft_type: "LORA",
      r: 4,
      lora_alpha: 8,
      fan_in_fan_out: true,
      target_modules: ["attn.c_attn", "mlp.c_fc"],
    });
    const { tensors } = await readSafetensors(path.join(target, "adapter_model.safetensors"));
    expect(
      tensors.get("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight")!.shape,
    ).toEqual([4, 16]);
    expect(
      tensors.get("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight")!.shape,
    ).toEqual([48, 4]);

    const fresh = GPT.create(config, { seed: 7 });
    await loadAdapter(fresh, target);
    expect(fresh.lora!.strength).toBe(0.5);
    const reloaded = logitsOf(fresh);
    adapted.forEach((v, i) => {
      expect(Math.abs(v - reloaded[i]!)).toBeLessThan(1e-6);
    });

    await saveMergedModel(model, path.join(dir, "merged"));
    const merged = await loadModel(path.join(dir, "merged"));
    const mergedLogits = logitsOf(merged.model);
    adapted.forEach((v, i) => {
      expect(Math.abs(v - mergedLogits[i]!)).toBeLessThan(1e-4);
    });
    tf.dispose([]);
    model.dispose();
    fresh.dispose();
    merged.model.dispose();
    expect(existsSync(path.join(dir, "merged", "adapter_config.json"))).toBe(false);
  });

  it("layer subsets: an adapter on chosen blocks, or applied on a subset, saves, reloads and merges as that subset", async () => {
    const base = GPT.create(config, { seed: 7 });
    const baseLogits = logitsOf(base);
    // an adapter that covers block 1 only
    const model = GPT.create(config, { seed: 7 });
    const adapter = attachLora(model, { r: 4, alpha: 8, layers: [1] });
    expect([...adapter.a.keys()].every((p) => p.startsWith("h.1."))).toBe(true);
    for (const b of adapter.b.values())
      tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.3, "float32", 5)));
    const adapted = logitsOf(model);
    expect(adapted.some((v, i) => Math.abs(v - baseLogits[i]!) > 1e-4)).toBe(true);
    await saveAdapter(model, path.join(dir, "layer1"));
    const peft = JSON.parse(readFileSync(path.join(dir, "layer1", "adapter_config.json"), "utf8"));
    expect(peft.layers_to_transform).toEqual([1]);
    const fresh = GPT.create(config, { seed: 7 });
    await loadAdapter(fresh, path.join(dir, "layer1"));
    logitsOf(fresh).forEach((v, i) => {
      expect(Math.abs(v - adapted[i]!)).toBeLessThan(1e-6);
    });

    // an adapter on every block, applied on block 0 only: saved and merged as block 0 only
    const full = GPT.create(config, { seed: 7 });
    const every = attachLora(full, { r: 4, alpha: 8 });
    for (const b of every.b.values())
      tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.3, "float32", 6)));
    const allBlocks = logitsOf(full);
    every.setActiveLayers([0]);
    expect(every.activeLayers).toEqual([0]);
    const block0 = logitsOf(full);
    expect(block0.some((v, i) => Math.abs(v - allBlocks[i]!) > 1e-4)).toBe(true);
    await saveAdapter(full, path.join(dir, "active0"));
    const { tensors } = await readSafetensors(
      path.join(dir, "active0", "adapter_model.safetensors"),
    );
    expect([...tensors.keys()].every((k) => k.includes(".h.0."))).toBe(true);
    const again = GPT.create(config, { seed: 7 });
    await loadAdapter(again, path.join(dir, "active0"));
    logitsOf(again).forEach((v, i) => {
      expect(Math.abs(v - block0[i]!)).toBeLessThan(1e-6);
    });
    await saveMergedModel(full, path.join(dir, "merged0"));
    const merged = await loadModel(path.join(dir, "merged0"));
    logitsOf(merged.model).forEach((v, i) => {
      expect(Math.abs(v - block0[i]!)).toBeLessThan(1e-4);
    });
    // α = 0 on the subset is the base model exactly
    every.strength = 0;
    expect(Array.from(logitsOf(full))).toEqual(Array.from(baseLogits));
    expect(() => every.setActiveLayers([])).toThrow(/non-empty list/);
    expect(() => attachLora(GPT.create(config, { seed: 1 }), { layers: [2] })).toThrow(
      /the model has 2 blocks/,
    );
    for (const m of [base, model, fresh, full, again, merged.model]) m.dispose();
  });
});
