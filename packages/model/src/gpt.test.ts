import { crossEntropy } from "@forge/losses";
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { ModelError } from "./errors.js";
import { GPT } from "./gpt.js";
import { attachLora } from "./lora.js";
import { referenceForward, type Weights } from "./testing/reference.js";

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

const config = { vocabSize: 37, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16 };

function weightsOf(model: GPT, merged?: Map<string, tf.Tensor>): Weights {
  const out: Weights = new Map();
  for (const [name, v] of model.params) {
    const t = merged?.get(name) ?? v;
    out.set(name, { shape: [...v.shape], data: Float64Array.from(t.dataSync()) });
  }
  return out;
}

function maxDiff(a: number[][], b: ArrayLike<number>): number {
  let worst = 0;
  a.flat().forEach((v, i) => {
    worst = Math.max(worst, Math.abs(v - b[i]!));
  });
  return worst;
}

/** Weights with non-trivial LayerNorm gains and biases, so every parameter matters. */
function perturbed(seed: number): GPT {
  const model = GPT.create(config, { seed });
  let i = 0;
  for (const [name, v] of model.params) {
    if (name.includes("ln_") || name.endsWith(".bias")) {
      tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.1, "float32", 100 + i++))));
    }
  }
  return model;
}

describe("GPT forward", () => {
  it("logits equal an independent Float64 reference forward pass within 1e-4", () => {
    const model = perturbed(3);
    const sequences = [
      [1, 5, 9, 2, 36, 0, 17, 8, 8, 3, 12],
      [30, 4, 4, 4, 21, 9, 11, 0, 1, 2, 13],
    ];
    const logits = model.forward(tf.tensor2d(sequences, undefined, "int32"));
    expect(logits.shape).toEqual([2, 11, 37]);
    const values = logits.dataSync();
    const reference = { ...config, eps: 1e-5, bias: true };
    sequences.forEach((ids, b) => {
      const expected = referenceForward(ids, weightsOf(model), reference);
      expect(maxDiff(expected, values.subarray(b * 11 * 37, (b + 1) * 11 * 37))).toBeLessThan(1e-4);
    });
    logits.dispose();
    model.dispose();
  });

  it("lastOnly returns the last position's logits", () => {
    const model = GPT.create(config);
    const ids = tf.tensor2d([[1, 2, 3, 4]], undefined, "int32");
    const all = model.forward(ids);
    const last = model.forward(ids, { lastOnly: true });
    expect(last.shape).toEqual([1, 1, 37]);
    expect(
      maxDiff([Array.from(all.slice([0, 3, 0], [1, 1, 37]).dataSync())], last.dataSync()),
    ).toBeLessThan(1e-6);
    tf.dispose([ids, all, last]);
    model.dispose();
  });

  it("without biases it still matches the reference", () => {
    const model = GPT.create({ ...config, bias: false }, { seed: 9 });
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const logits = model.forward(tf.tensor2d([ids], undefined, "int32"));
    const expected = referenceForward(ids, weightsOf(model), { ...config, eps: 1e-5, bias: false });
    expect(maxDiff(expected, logits.dataSync())).toBeLessThan(1e-4);
    logits.dispose();
    model.dispose();
  });

  it("loss equals the cross-entropy of the logits (with and without a mask)", () => {
    const model = perturbed(4);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5]], undefined, "int32");
    const targets = tf.tensor2d([[2, 3, 4, 5, 6]], undefined, "int32");
    const mask = tf.tensor2d([[0, 1, 1, 0, 1]]);
    const logits = model.forward(ids);
    for (const m of [undefined, mask]) {
      const ours = model.loss(ids, targets, m);
      const reference = crossEntropy(logits, targets, m ? { mask: m } : {});
      expect(Math.abs(ours.dataSync()[0]! - reference.dataSync()[0]!)).toBeLessThan(1e-5);
      tf.dispose([ours, reference]);
    }
    tf.dispose([ids, targets, mask, logits]);
    model.dispose();
  });

  it("rejects ids out of range, wrong dtype and sequences longer than the context window", () => {
    const model = GPT.create(config);
    const check = (ids: tf.Tensor2D, message: RegExp) => {
      let caught: unknown;
      try {
        model.forward(ids);
      } catch (error) {
        caught = error;
      }
      ids.dispose();
      expect(ModelError.isInstance(caught)).toBe(true);
      expect((caught as Error).message).toMatch(message);
    };
    check(
      tf.tensor2d([[1, 37]], undefined, "int32"),
      /id 37 at \[0, 1\] is outside the vocabulary \(0\.\.36\)/,
    );
    check(tf.tensor2d([[1, -1]], undefined, "int32"), /id -1 at \[0, 1\]/);
    check(tf.tensor2d([[1, 2]]) as tf.Tensor2D, /ids must be an int32 tensor/);
    check(
      tf.zeros([1, 17], "int32") as tf.Tensor2D,
      /17 positions; the context window \(blockSize\) is 16/,
    );
    model.dispose();
  });

  it("rejects a config whose width does not split into heads", () => {
    expect(() => GPT.create({ ...config, nEmbd: 15 })).toThrow(
      "config: nEmbd (15) must be divisible by nHead (2)",
    );
    expect(() => GPT.create({ ...config, nLayer: 0 })).toThrow(/nLayer must be a positive integer/);
  });
});

describe("LoRA", () => {
  it("strength 0 equals the base model; merging equals the applied adapter", () => {
    const model = perturbed(5);
    const ids = tf.tensor2d([[4, 8, 15, 16, 23, 36]], undefined, "int32");
    const base = model.forward(ids).dataSync().slice();
    const adapter = attachLora(model, {
      r: 4,
      alpha: 8,
      targetModules: ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
    });
    for (const b of adapter.b.values())
      tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.2, "float32", 77)));
    const applied = model.forward(ids).dataSync().slice();
    expect(maxDiff([Array.from(base)], applied)).toBeGreaterThan(1e-3);
    adapter.strength = 0;
    expect(maxDiff([Array.from(base)], model.forward(ids).dataSync())).toBe(0);
    adapter.strength = 1;
    // reference on merged weights equals the adapted model
    const merged = adapter.mergedWeights(model);
    const expected = referenceForward([4, 8, 15, 16, 23, 36], weightsOf(model, merged), {
      ...config,
      eps: 1e-5,
      bias: true,
    });
    expect(maxDiff(expected, applied)).toBeLessThan(1e-4);
    tf.dispose([...merged.values(), ids]);
    model.dispose();
  });

  it("with an adapter only the adapter's weights train", () => {
    const model = GPT.create(config);
    attachLora(model, { r: 2 });
    const names = [...model.trainableParameters().keys()];
    expect(names).toHaveLength(2 * 2 * 2); // 2 layers × 2 targets × (A, B)
    expect(names.every((n) => /\.lora_[AB]$/.test(n))).toBe(true);
    model.dispose();
  });
});
