/**
 * The Llama family (llama, qwen2) against an independent float64 reference written from the
 * architecture in PyTorch (testing/llama/generate.py): a bf16, sharded, GQA llama with Llama 3
 * rope scaling and an untied head; an fp16 qwen2 with q/k/v biases and a tied head.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { loadModel, saveModel } from "./checkpoint.js";
import { fromHfConfig, parameterCount } from "./config.js";
import { generate, windowKeep } from "./generate.js";
import type { GPT, LayerCache } from "./gpt.js";
import { rotaryInverseFrequencies } from "./llama-config.js";
import { readSafetensors } from "./safetensors.js";
import { fixedBatches, lmTask, trainModel } from "./train.js";

const fixtures = fileURLToPath(new URL("./testing/llama/", import.meta.url));
const reference = JSON.parse(readFileSync(path.join(fixtures, "reference.json"), "utf8")) as Record<
  string,
  { ids: number[][]; logits: number[][][] }
>;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-llama-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend();
});

function maxDifference(a: Float32Array | number[], b: number[]): number {
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function logitsOf(model: GPT, ids: number[][]): Float32Array {
  const input = tf.tensor2d(ids, undefined, "int32");
  const logits = model.forward(input);
  const values = logits.dataSync() as Float32Array;
  tf.dispose([input, logits]);
  return values;
}

for (const name of ["tiny-llama", "tiny-qwen2"]) {
  describe(name, () => {
    let model: GPT;
    beforeAll(async () => {
      model = (await loadModel(path.join(fixtures, name))).model;
    });
    afterAll(() => model.dispose());
    const { ids, logits } = reference[name]!;

    it("computes the reference's logits within 1e-4", () => {
      const diff = maxDifference(logitsOf(model, ids), logits.flat(2));
      expect(diff).toBeLessThan(1e-4);
      expect(Math.max(...logits.flat(2).map(Math.abs))).toBeGreaterThan(1); // not a vacuous match
    });

    it("counts its parameters as the checkpoint holds them", () => {
      let stored = 0;
      for (const p of model.params.values()) stored += p.size;
      expect(parameterCount(model.config)).toBe(stored);
    });

    it("gives the same logits token by token with the KV cache as in one pass", () => {
      const prompt = ids[0]!;
      const full = logitsOf(model, [prompt]);
      const stepwise = () => {
        let cache: LayerCache[] | undefined;
        const values: number[] = [];
        for (let t = 0; t < prompt.length; t++) {
          const [logits, ...kv] = tf.tidy(() => {
            const input = tf.tensor2d([[prompt[t]!]], [1, 1], "int32");
            const run = model.run(input, { ...(cache ? { past: cache } : {}), returnCache: true });
            return [run.logits, ...run.cache!.flatMap((layer) => [layer.k, layer.v])];
          });
          for (const layer of cache ?? []) tf.dispose([layer.k, layer.v]);
          cache = Array.from({ length: kv.length / 2 }, (_, i) => ({
            k: kv[2 * i] as tf.Tensor4D,
            v: kv[2 * i + 1] as tf.Tensor4D,
          }));
          values.push(...(logits!.dataSync() as Float32Array));
          logits!.dispose();
        }
        for (const layer of cache ?? []) tf.dispose([layer.k, layer.v]);
        return values;
      };
      stepwise(); // the first pass caches one causal mask per length, for the process
      const before = tf.memory().numTensors;
      const values = stepwise();
      expect(tf.memory().numTensors).toBe(before);
      expect(values).toHaveLength(prompt.length * model.config.vocabSize);
      expect(maxDifference(full, values)).toBeLessThan(1e-4);
    });

    it("generates greedily with the cache exactly as without it, ragged batches included", () => {
      const prompts = [ids[0]!.slice(0, 5), ids[1]!.slice(0, 9)];
      const cached = generate(model, prompts, { maxNewTokens: 6, temperature: 0 });
      const uncached = generate(model, prompts, {
        maxNewTokens: 6,
        temperature: 0,
        useCache: false,
      });
      expect(cached.tokens).toEqual(uncached.tokens);
      // and the first token is the reference's argmax after the prompt
      const row = logitsOf(model, [prompts[0]!]).slice(4 * model.config.vocabSize);
      expect(cached.tokens[0]![0]).toBe(row.indexOf(Math.max(...row)));
    });

    it("saves in the Hugging Face layout and loads back to the same logits", async () => {
      const out = path.join(dir, name);
      await saveModel(model, out);
      const { tensors } = await readSafetensors(path.join(out, "model.safetensors"));
      const q = tensors.get("model.layers.0.self_attn.q_proj.weight")!;
      expect(q.shape).toEqual([
        model.config.nHead * model.config.llama!.headDim,
        model.config.nEmbd,
      ]);
      expect(tensors.has("lm_head.weight")).toBe(!model.config.llama!.tieWordEmbeddings);
      const config = JSON.parse(readFileSync(path.join(out, "config.json"), "utf8"));
      expect(config.model_type).toBe(name === "tiny-llama" ? "llama" : "qwen2");
      const again = (await loadModel(out)).model;
      expect(maxDifference(logitsOf(again, ids), logits.flat(2))).toBeLessThan(1e-4);
      again.dispose();
    });
  });
}

describe("a rotary model past its window (shifted cache)", () => {
  let model: GPT;
  beforeAll(async () => {
    model = (await loadModel(path.join(fixtures, "tiny-llama"))).model;
  });
  afterAll(() => model.dispose());

  /**
   * The reference: one full forward pass over a whole sequence at absolute positions 0…L−1
   * where query i sees keys starts[i]…i (a banded causal mask). Returns log-softmax rows.
   */
  function bandedLogprobs(sequence: number[], starts: number[]): number[][] {
    const n = sequence.length;
    const bias = new Float32Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) if (j > i || j < starts[i]!) bias[i * n + j] = -1e9;
    const rows = tf.tidy(() => {
      const ids = tf.tensor2d([sequence], [1, n], "int32");
      const { logits } = model.run(ids, { attentionBias: tf.tensor4d(bias, [1, 1, n, n]) });
      return tf.logSoftmax(logits.reshape([n, model.config.vocabSize]));
    });
    const values = rows.arraySync() as number[][];
    rows.dispose();
    return values;
  }

  it.each(["js", "tfjs"] as const)(
    "decodes past the window without re-encoding; each token is the banded reference's, ragged rows included (%s step)",
    (decoder) => {
      const window = model.config.blockSize; // 128
      const keep = windowKeep(window); // 64
      const { ids } = reference["tiny-llama"]!;
      const prompts = [ids[0]!.slice(0, 5), ids[1]!.slice(0, 11)];
      const prefills: number[] = [];
      const run = model.run.bind(model);
      model.run = (input, options) => {
        if (input.shape[1] > 1) prefills.push(input.shape[1]);
        return run(input, options);
      };
      const maxNewTokens = 2 * window + 20;
      let out: ReturnType<typeof generate>;
      try {
        out = generate(model, prompts, { maxNewTokens, temperature: 0, logprobs: true, decoder });
      } finally {
        model.run = run;
      }
      expect(prefills).toEqual([11]); // the prompts, once: nothing is re-encoded
      // The schedule in padded coordinates: the cache starts at `first` and holds `held`
      // positions; before a token joins a full cache, the oldest leave until `keep` remain with it.
      const width = Math.max(...prompts.map((p) => p.length));
      const cacheStarts: number[] = []; // per decoded token fed (tokens 0 … n−2)
      let first = 0;
      let held = width;
      for (let t = 0; t < maxNewTokens - 1; t++) {
        if (held + 1 > window) {
          first += held + 1 - keep;
          held = keep - 1;
        }
        cacheStarts.push(first);
        held++;
      }
      expect(first).toBeGreaterThan(0);
      for (const [b, prompt] of prompts.entries()) {
        const tokens = out.tokens[b]!;
        expect(tokens).toHaveLength(maxNewTokens);
        const pad = width - prompt.length;
        const sequence = [...prompt, ...tokens];
        // query i (a real index) sees real keys from max(0, cache start − pad): prompt queries
        // and the first token see everything before them
        const starts = sequence.map((_, i) =>
          i < prompt.length ? 0 : Math.max(0, cacheStarts[i - prompt.length]! - pad),
        );
        const reference = bandedLogprobs(sequence, starts);
        let worst = 0;
        for (let t = 0; t < tokens.length; t++) {
          const row = reference[prompt.length - 1 + t]!;
          expect(tokens[t], `row ${b}, token ${t}`).toBe(row.indexOf(Math.max(...row)));
          worst = Math.max(worst, Math.abs(out.logprobs![b]![t]! - row[tokens[t]!]!));
        }
        expect(worst).toBeLessThan(1e-4);
      }
    },
  );

  it("keeps the tensor count flat across shifted generations", () => {
    const prompt = reference["tiny-llama"]!.ids[0]!.slice(0, 4);
    generate(model, [prompt], { maxNewTokens: model.config.blockSize + 8, temperature: 0 });
    const before = tf.memory().numTensors;
    generate(model, [prompt], { maxNewTokens: model.config.blockSize + 8, temperature: 0 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("training a Llama-family model", () => {
  it("lowers the loss on a repeated batch with a flat tensor count", async () => {
    const { model } = await loadModel(path.join(fixtures, "tiny-llama"));
    const rows = reference["tiny-llama"]!.ids;
    const source = {
      next: () => ({
        ids: tf.tensor2d(
          rows.map((r) => r.slice(0, 11)),
          undefined,
          "int32",
        ),
        targets: tf.tensor2d(
          rows.map((r) => r.slice(1)),
          undefined,
          "int32",
        ),
        tokens: 22,
      }),
      state: () => 0,
      restore: () => undefined,
    };
    const validation = fixedBatches(source, 1);
    const losses: number[] = [];
    const counts: number[] = [];
    await trainModel(
      lmTask(model, source, { batches: validation }),
      { steps: 12, learningRate: 3e-3, warmupSteps: 0, evalEvery: 0, checkpointEvery: 0 },
      {
        onEvent: (e) => {
          if (e.type === "step-end") {
            losses.push(e.loss);
            counts.push(tf.memory().numTensors);
          }
        },
      },
    );
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.8);
    expect(new Set(counts.slice(2)).size).toBe(1);
    for (const b of validation) tf.dispose([b.ids, b.targets]);
    model.dispose();
  });
});

describe("Llama-family configs", () => {
  const base = JSON.parse(readFileSync(path.join(fixtures, "tiny-llama", "config.json"), "utf8"));

  it("refuses what forge cannot compute, naming the field and what is accepted", () => {
    expect(() =>
      fromHfConfig({ ...base, rope_scaling: { rope_type: "yarn", factor: 4 } }, "c.json"),
    ).toThrow('c.json: rope_scaling type "yarn" is not supported; accepted: "llama3" (or none)');
    expect(() => fromHfConfig({ ...base, hidden_act: "gelu" }, "c.json")).toThrow(
      'c.json: hidden_act "gelu" is not supported; accepted: "silu"',
    );
    expect(() => fromHfConfig({ ...base, num_key_value_heads: 3 }, "c.json")).toThrow(
      /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/,
    );
    expect(() => fromHfConfig({ ...base, model_type: "mistral" }, "c.json")).toThrow(
      /accepted: "gpt2", "llama", "qwen2"/,
    );
    expect(() =>
      fromHfConfig({ ...base, model_type: "qwen2", use_sliding_window: true }, "c.json"),
    ).toThrow(/use_sliding_window/);
  });

  it("scales rotary frequencies as Llama 3 does: short wavelengths kept, long divided, the middle blended", () => {
    const plain = rotaryInverseFrequencies(16, 10_000, null);
    const scaled = rotaryInverseFrequencies(
      16,
      10_000,
      base.rope_scaling && {
        type: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 512,
      },
    );
    const wavelength = (f: number) => (2 * Math.PI) / f;
    for (let i = 0; i < plain.length; i++) {
      const w = wavelength(plain[i]!);
      if (w < 128) expect(scaled[i]).toBe(plain[i]);
      else if (w > 512) expect(scaled[i]).toBeCloseTo(plain[i]! / 8, 15);
      else {
        expect(scaled[i]!).toBeLessThan(plain[i]!);
        expect(scaled[i]!).toBeGreaterThan(plain[i]! / 8);
      }
    }
  });

  it("a shard the index names but the directory lacks is named", async () => {
    const broken = path.join(dir, "broken");
    const { mkdirSync, copyFileSync } = await import("node:fs");
    mkdirSync(broken);
    for (const f of [
      "config.json",
      "model.safetensors.index.json",
      "model-00001-of-00002.safetensors",
    ])
      copyFileSync(path.join(fixtures, "tiny-llama", f), path.join(broken, f));
    await expect(loadModel(broken)).rejects.toThrow(
      /model.safetensors.index.json lists model-00002-of-00002.safetensors, which is not in/,
    );
    const index = JSON.parse(
      readFileSync(path.join(broken, "model.safetensors.index.json"), "utf8"),
    );
    index.weight_map["model.norm.weight"] = "../escape.safetensors";
    writeFileSync(path.join(broken, "model.safetensors.index.json"), JSON.stringify(index));
    await expect(loadModel(broken)).rejects.toThrow(/must name a file in/);
  });
});

describe("LoRA on a Llama-family model", () => {
  it("adapts q/v by default; merging equals the scaled adapter; the adapter saves with PEFT's keys and loads back", async () => {
    const { attachLora, mergeLora } = await import("./lora.js");
    const { saveAdapter, loadAdapter } = await import("./checkpoint.js");
    const { model } = await loadModel(path.join(fixtures, "tiny-llama"));
    const ids = reference["tiny-llama"]!.ids;
    const adapter = attachLora(model, { r: 4, alpha: 8 }, { seed: 3 });
    expect(adapter.prefixes(2)).toEqual([
      "layers.0.self_attn.q_proj",
      "layers.0.self_attn.v_proj",
      "layers.1.self_attn.q_proj",
      "layers.1.self_attn.v_proj",
    ]);
    for (const b of adapter.b.values()) b.assign(tf.randomNormal(b.shape, 0, 0.3, "float32", 5));
    adapter.strength = 0.5;
    const adapted = logitsOf(model, ids);
    expect(maxDifference(adapted, reference["tiny-llama"]!.logits.flat(2))).toBeGreaterThan(1e-3);
    const out = path.join(dir, "adapter");
    await saveAdapter(model, out);
    const { tensors } = await readSafetensors(path.join(out, "adapter_model.safetensors"));
    const a = tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!;
    const b = tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")!;
    expect(a.shape).toEqual([4, 64]); // [r, in]
    expect(b.shape).toEqual([64, 4]); // [out, r]
    const config = JSON.parse(readFileSync(path.join(out, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({
      target_modules: ["q_proj", "v_proj"],
      fan_in_fan_out: false,
      r: 4,
    });
    mergeLora(model);
    expect(maxDifference(logitsOf(model, ids), [...adapted])).toBeLessThan(1e-4);
    model.dispose();
    const fresh = (await loadModel(path.join(fixtures, "tiny-llama"))).model;
    await loadAdapter(fresh, out);
    expect(fresh.lora!.strength).toBe(0.5);
    expect(maxDifference(logitsOf(fresh, ids), [...adapted])).toBeLessThan(1e-4);
    fresh.dispose();
  });

  it("PEFT's short names are accepted; GPT-2's layers are refused on a Llama", async () => {
    const { attachLora } = await import("./lora.js");
    const { model } = await loadModel(path.join(fixtures, "tiny-qwen2"));
    const adapter = attachLora(model, { r: 2, targetModules: ["q_proj", "down_proj"] as never });
    expect(adapter.config.targetModules).toEqual(["self_attn.q_proj", "mlp.down_proj"]);
    expect(() => attachLora(model, { targetModules: ["attn.c_attn"] })).toThrow(
      /"attn.c_attn" is not a layer of a qwen2 model; its layers: self_attn.q_proj/,
    );
    model.dispose();
  });
});

describe("loading tensor by tensor", () => {
  it("reports parameters and memory from the headers before allocating anything", async () => {
    const before = tf.memory().numTensors;
    let seen: { plan: import("./checkpoint.js").LoadPlan; tensors: number } | undefined;
    const { model } = await loadModel(path.join(fixtures, "tiny-llama"), {
      onPlan: (plan) => {
        seen = { plan, tensors: tf.memory().numTensors };
      },
    });
    expect(seen!.tensors).toBe(before);
    expect(seen!.plan.parameters).toBe(parameterCount(model.config));
    expect(seen!.plan.weightBytes).toBe(4 * parameterCount(model.config));
    expect(seen!.plan.storedBytes).toBe(2 * parameterCount(model.config)); // bf16
    expect(seen!.plan.dtypes).toEqual(["BF16"]);
    expect(seen!.plan.files.map((f) => path.basename(f))).toEqual([
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
    ]);
    model.dispose();
  });
});
