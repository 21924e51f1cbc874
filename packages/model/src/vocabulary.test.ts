/**
 * Growing the vocabulary: the new rows are the means of the rows they start from, the old ids
 * compute exactly what they did, the grown model saves and loads with its tokenizer's
 * added_tokens, and generation can report the model's log-probability of what it wrote.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { loadModel, saveModel } from "./checkpoint.js";
import { generate } from "./generate.js";
import { GPT } from "./gpt.js";
import { attachLora } from "./lora.js";
import { growVocabulary } from "./vocabulary.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-vocab-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

const config = { vocabSize: 270, blockSize: 32, nLayer: 1, nHead: 2, nEmbd: 16 };

function logits(model: GPT, row: number[]): Float32Array {
  const ids = tf.tensor2d([row], undefined, "int32");
  const out = model.forward(ids);
  const values = out.dataSync() as Float32Array;
  tf.dispose([ids, out]);
  return values;
}

describe("growVocabulary", () => {
  it("adds rows that are the means of existing rows, and leaves the old ids' function unchanged", () => {
    const model = GPT.create(config, { seed: 3 });
    const grown = growVocabulary(model, [[5, 7], [9]]);
    expect(grown.config.vocabSize).toBe(272);
    const C = config.nEmbd;
    const wte = grown.param("wte.weight").dataSync();
    const old = model.param("wte.weight").dataSync();
    for (let c = 0; c < C; c++) {
      expect(wte[270 * C + c]).toBeCloseTo((old[5 * C + c]! + old[7 * C + c]!) / 2, 6);
      expect(wte[271 * C + c]).toBeCloseTo(old[9 * C + c]!, 6);
    }
    expect([...wte.slice(270 * C)].some((v) => v !== 0)).toBe(true);
    // the same input gives the same logits on the old ids, and logits for the new ones
    const before = logits(model, [1, 2, 3, 4]);
    const after = logits(grown, [1, 2, 3, 4]);
    for (let t = 0; t < 4; t++)
      for (let v = 0; v < 270; v++) expect(after[t * 272 + v]).toBeCloseTo(before[t * 270 + v]!, 5);
    // the tied output layer grew too: the new token's logit is h · its row
    expect(Number.isFinite(after[271])).toBe(true);
    model.dispose();
    grown.dispose();
  });

  it("refuses ids outside the vocabulary, an empty row, and a model with an adapter", () => {
    const model = GPT.create(config, { seed: 3 });
    expect(() => growVocabulary(model, [[270]])).toThrow(/id 270, which is not in the vocabulary/);
    expect(() => growVocabulary(model, [[]])).toThrow(/names no existing ids/);
    attachLora(model, { r: 2 });
    expect(() => growVocabulary(model, [[1]])).toThrow(/without a LoRA adapter/);
    model.dispose();
  });

  it("a grown model saves and loads with its grown tokenizer (added_tokens), logits identical", async () => {
    const tokenizer = trainTokenizer(["two plus three is five"], { vocabSize: 266 });
    const model = GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed: 5 });
    const grownTokenizer = tokenizer.withSpecialTokens(["<|startofthought|>", "<|endofthought|>"]);
    const grown = growVocabulary(model, [[10], [11]]);
    const target = path.join(dir, "grown");
    await saveModel(grown, target, { tokenizer: grownTokenizer });
    const hf = JSON.parse(readFileSync(path.join(target, "config.json"), "utf8"));
    const V = tokenizer.vocabSize;
    expect(hf.vocab_size).toBe(V + 2);
    const json = JSON.parse(readFileSync(path.join(target, "tokenizer.json"), "utf8"));
    expect(
      json.added_tokens.map((t: { content: string; id: number }) => [t.content, t.id]),
    ).toEqual(
      expect.arrayContaining([
        ["<|startofthought|>", V],
        ["<|endofthought|>", V + 1],
      ]),
    );
    const loaded = await loadModel(target);
    expect(loaded.tokenizer!.specialTokenId("<|endofthought|>")).toBe(V + 1);
    expect([...logits(loaded.model, [1, V, V + 1, 3])]).toEqual([
      ...logits(grown, [1, V, V + 1, 3]),
    ]);
    for (const m of [model, grown, loaded.model]) m.dispose();
  });
});

describe("generate with logprobs", () => {
  it("reports log P(token | context) of each new token, as a forward pass computes it", () => {
    const model = GPT.create(config, { seed: 8 });
    const prompt = [3, 4, 5];
    const { tokens, logprobs } = generate(model, [prompt], {
      maxNewTokens: 4,
      temperature: 1,
      seed: 2,
      logprobs: true,
    });
    const sequence = [...prompt, ...tokens[0]!];
    const ids = tf.tensor2d([sequence.slice(0, -1)], undefined, "int32");
    const expected = tf.tidy(() => tf.logSoftmax(model.forward(ids)));
    const values = expected.dataSync();
    tokens[0]!.forEach((token, i) => {
      const position = prompt.length - 1 + i;
      expect(logprobs![0]![i]).toBeCloseTo(values[position * 270 + token]!, 4);
    });
    tf.dispose([ids, expected]);
    model.dispose();
  });
});
