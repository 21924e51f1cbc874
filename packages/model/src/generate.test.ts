import { Rng } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { initBackend } from "./backend/select.js";
import { generate, sampleToken, windowKeep } from "./generate.js";
import { GPT } from "./gpt.js";

let model: GPT;
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  model = GPT.create(
    { vocabSize: 64, blockSize: 24, nLayer: 2, nHead: 2, nEmbd: 32 },
    { seed: 11 },
  );
  // sharpen the output distribution so greedy decoding is far from ties
  tf.tidy(() => model.param("wte.weight").assign(tf.mul(model.param("wte.weight"), 40)));
});
afterAll(() => model.dispose());

describe("generate", () => {
  it("cached generation equals uncached generation token for token, within and beyond the context window", () => {
    for (const maxNewTokens of [10, 40]) {
      const prompts = [[1, 2, 3, 4, 5]];
      const cached = generate(model, prompts, { maxNewTokens, temperature: 0 });
      const uncached = generate(model, prompts, { maxNewTokens, temperature: 0, useCache: false });
      expect(cached.tokens).toEqual(uncached.tokens);
      expect(cached.tokens[0]).toHaveLength(maxNewTokens);
    }
  });

  it("past the window, each greedy token is the argmax of re-encoding the block-cropped context", () => {
    // The reference, written out: encode the whole context every step; when it outgrows the
    // window (24), keep its last ⌈24 / 2⌉ = 12 tokens.
    const { blockSize, vocabSize } = model.config;
    expect(windowKeep(blockSize)).toBe(12);
    const context = [1, 2, 3, 4, 5];
    const reference: number[] = [];
    for (let step = 0; step < 70; step++) {
      const row = tf.tidy(
        () =>
          model.run(tf.tensor2d([context], [1, context.length], "int32"), { lastOnly: true })
            .logits,
      );
      const values = Array.from(row.dataSync());
      row.dispose();
      expect(values).toHaveLength(vocabSize);
      const token = values.indexOf(Math.max(...values));
      reference.push(token);
      context.push(token);
      if (context.length > blockSize) context.splice(0, context.length - windowKeep(blockSize));
    }
    expect(
      generate(model, [[1, 2, 3, 4, 5]], { maxNewTokens: 70, temperature: 0 }).tokens[0],
    ).toEqual(reference);
    expect(
      generate(model, [[1, 2, 3, 4, 5]], { maxNewTokens: 70, temperature: 0, useCache: false })
        .tokens[0],
    ).toEqual(reference);
  });

  it("re-encodes the window once per half window, not once per token, past the window", () => {
    const run = vi.spyOn(model, "run");
    try {
      // the tfjs decode step (one model.run per token); fast-decode.test.ts counts the JS one's
      generate(model, [[1, 2, 3, 4, 5]], { maxNewTokens: 70, temperature: 0, decoder: "tfjs" });
      const encodes = run.mock.calls.filter(([ids]) => ids.shape[1] > 1).length;
      // the prompt; then crops after new tokens 20, 33, 46 and 59: the context reaches 25
      // tokens, keeps 12, and reaches 25 again 13 tokens later
      expect(encodes).toBe(5);
      expect(run.mock.calls.length).toBe(70); // one call per token produced after the first
    } finally {
      run.mockRestore();
    }
  });

  it("a ragged batch past the window gives the same tokens with and without the cache", () => {
    const prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [10, 11, 12]];
    const cached = generate(model, prompts, { maxNewTokens: 60, temperature: 0 });
    expect(cached.tokens).toEqual(
      generate(model, prompts, { maxNewTokens: 60, temperature: 0, useCache: false }).tokens,
    );
    expect(cached.tokens.map((t) => t.length)).toEqual([60, 60, 60]);
  });

  it("sampled generation is the same with and without the cache for a seed", () => {
    const options = { maxNewTokens: 30, temperature: 1.2, topK: 20, topP: 0.95, seed: 5 };
    expect(generate(model, [[7, 8, 9]], options).tokens).toEqual(
      generate(model, [[7, 8, 9]], { ...options, useCache: false }).tokens,
    );
  });

  it("a ragged batch gives each sequence what it gets alone", () => {
    const prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [10, 11, 12]];
    const together = generate(model, prompts, { maxNewTokens: 12, temperature: 0 });
    prompts.forEach((prompt, b) => {
      expect(together.tokens[b]).toEqual(
        generate(model, [prompt], { maxNewTokens: 12, temperature: 0 }).tokens[0],
      );
    });
  });

  it("is deterministic for a seed and differs across seeds", () => {
    const flat = GPT.create(
      { vocabSize: 64, blockSize: 24, nLayer: 1, nHead: 2, nEmbd: 16 },
      { seed: 3 },
    );
    const run = (seed: number) =>
      generate(flat, [[3, 4]], { maxNewTokens: 25, temperature: 1.5, seed }).tokens[0];
    expect(run(1)).toEqual(run(1));
    expect(run(1)).not.toEqual(run(2));
    flat.dispose();
  });

  it("stops each sequence at its stop id (included) and reports why", () => {
    const free = generate(
      model,
      [
        [1, 2],
        [5, 6],
      ],
      { maxNewTokens: 15, temperature: 0 },
    );
    const stopId = free.tokens[0]![3]!;
    const stopped = generate(
      model,
      [
        [1, 2],
        [5, 6],
      ],
      { maxNewTokens: 15, temperature: 0, stopIds: [stopId] },
    );
    const first = free.tokens[0]!.indexOf(stopId);
    expect(stopped.tokens[0]).toEqual(free.tokens[0]!.slice(0, first + 1));
    expect(stopped.finishReasons[0]).toBe("stop");
    const second = free.tokens[1]!.indexOf(stopId);
    expect(stopped.tokens[1]).toEqual(
      second < 0 ? free.tokens[1] : free.tokens[1]!.slice(0, second + 1),
    );
  });

  it("never produces a banned id", () => {
    const free = generate(model, [[1]], { maxNewTokens: 20, temperature: 0 });
    const banned = [...new Set(free.tokens[0])];
    const out = generate(model, [[1]], { maxNewTokens: 20, temperature: 0, bannedIds: banned })
      .tokens[0]!;
    for (const id of out) expect(banned).not.toContain(id);
    const sampled = generate(model, [[1]], {
      maxNewTokens: 40,
      temperature: 2,
      seed: 3,
      bannedIds: banned,
    }).tokens[0]!;
    for (const id of sampled) expect(banned).not.toContain(id);
  });

  it("crops a prompt longer than the context window from the left", () => {
    const long = Array.from({ length: 40 }, (_, i) => i % 64);
    expect(generate(model, [long], { maxNewTokens: 5, temperature: 0 }).tokens).toEqual(
      generate(model, [long.slice(-24)], { maxNewTokens: 5, temperature: 0 }).tokens,
    );
  });

  it("keeps the tensor count flat across 50 generate calls", () => {
    generate(model, [[1, 2, 3]], { maxNewTokens: 30, temperature: 0.8, seed: 1 });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++)
      generate(model, [[1, 2, 3], [4]], {
        maxNewTokens: 30,
        temperature: 0.8,
        seed: i,
        useCache: i % 2 === 0,
      });
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects empty prompts, out-of-range ids and bad sampling options", () => {
    expect(() => generate(model, [], { maxNewTokens: 1 })).toThrow(
      "generate needs at least one prompt",
    );
    expect(() => generate(model, [[]], { maxNewTokens: 1 })).toThrow(
      "prompt 0 is empty; give at least one token",
    );
    expect(() => generate(model, [[1, 64]], { maxNewTokens: 1 })).toThrow(
      "prompt 0 token 1 is 64; ids must be integers in [0, 64)",
    );
    expect(() => generate(model, [[1]], { maxNewTokens: 1, temperature: -1 })).toThrow(
      /temperature must be ≥ 0/,
    );
    expect(() => generate(model, [[1]], { maxNewTokens: 1, topP: 0 })).toThrow(
      /topP must be in \(0, 1\]/,
    );
    expect(() => generate(model, [[1]], { maxNewTokens: 1, topK: 0 })).toThrow(
      /topK must be an integer ≥ 1/,
    );
    expect(() => generate(model, [[1]], { maxNewTokens: 1, stopIds: [99] })).toThrow(
      /stopIds contains 99/,
    );
  });
});

describe("sampleToken", () => {
  const logits = Float32Array.from([0, 5, 3, 1, -2]);
  it("greedy takes the largest non-banned logit", () => {
    expect(sampleToken(logits, { temperature: 0, banned: new Set() }, new Rng(1))).toBe(1);
    expect(sampleToken(logits, { temperature: 0, banned: new Set([1]) }, new Rng(1))).toBe(2);
  });
  it("top-k 1 is greedy; top-p keeps the nucleus only", () => {
    const rng = new Rng(2);
    for (let i = 0; i < 50; i++)
      expect(sampleToken(logits, { temperature: 1, topK: 1, banned: new Set() }, rng)).toBe(1);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++)
      seen.add(sampleToken(logits, { temperature: 1, topP: 0.9, banned: new Set() }, rng));
    expect([...seen].sort()).toEqual([1, 2]); // p(1) ≈ 0.86, p(1)+p(2) ≈ 0.98
  });
  it("draws the token a full sort of the vocabulary would (top-k, top-p, ties, bans)", () => {
    // The definition: candidates sorted by logit (ties: lower id), weights exp(l/T - max),
    // top-k then top-p cuts, one uniform draw walked down the sorted list.
    const sorted = (
      row: Float32Array,
      o: { temperature: number; topK?: number; topP?: number; banned: ReadonlySet<number> },
      u01: number,
    ) => {
      let c = [...row.keys()].filter((i) => !o.banned.has(i) && row[i]! > -Infinity);
      c.sort((a, b) => row[b]! - row[a]! || a - b);
      if (o.topK !== undefined) c = c.slice(0, o.topK);
      const max = row[c[0]!]! / o.temperature;
      let w = c.map((i) => Math.exp(row[i]! / o.temperature - max));
      if (o.topP !== undefined && o.topP < 1) {
        const total = w.reduce((a, b) => a + b, 0);
        let cumulative = 0;
        let keep = 0;
        while (keep < w.length) {
          cumulative += w[keep]! / total;
          keep++;
          if (cumulative >= o.topP) break;
        }
        c = c.slice(0, keep);
        w = w.slice(0, keep);
      }
      let u = u01 * w.reduce((a, b) => a + b, 0);
      for (let i = 0; i < c.length; i++) {
        u -= w[i]!;
        if (u < 0) return c[i]!;
      }
      return c.at(-1)!;
    };
    const make = new Rng(11);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(make.next() * 300);
      // Coarse values so that ties occur; some -Infinity (masked) entries.
      const row = Float32Array.from({ length: n }, () =>
        make.next() < 0.05 ? -Infinity : Math.round(make.next() * 40 - 20) / 4,
      );
      if (!row.some((v) => v > -Infinity)) row[0] = 0;
      const banned = new Set<number>();
      for (let i = 0; i < n; i++) if (make.next() < 0.05 && row[i]! > -Infinity) banned.add(i);
      if ([...row.keys()].every((i) => banned.has(i) || row[i] === -Infinity)) banned.clear();
      const options = {
        temperature: [0.3, 0.7, 1, 2][trial % 4]!,
        ...(trial % 3 === 1 ? { topK: 1 + (trial % 17) } : {}),
        ...(trial % 5 === 2 ? { topP: 0.5 + (trial % 7) / 14 } : {}),
        banned,
      };
      const seed = 1000 + trial;
      const u01 = new Rng(seed).next();
      expect(sampleToken(row, options, new Rng(seed)), `trial ${trial}`).toBe(
        sorted(row, options, u01),
      );
    }
    expect(() =>
      sampleToken(
        Float32Array.from([0, 1]),
        { temperature: 1, banned: new Set([0, 1]) },
        new Rng(1),
      ),
    ).toThrow("no token can be sampled: every token is banned or has probability 0");
  });
  it("samples in proportion to softmax(logits / T)", () => {
    const rng = new Rng(3);
    const counts = [0, 0, 0, 0, 0];
    const n = 20_000;
    for (let i = 0; i < n; i++)
      counts[sampleToken(logits, { temperature: 2, banned: new Set() }, rng)]!++;
    const weights = Array.from(logits, (v) => Math.exp(v / 2));
    const total = weights.reduce((a, b) => a + b, 0);
    weights.forEach((w, i) => {
      expect(Math.abs(counts[i]! / n - w / total)).toBeLessThan(0.015);
    });
  });
});
