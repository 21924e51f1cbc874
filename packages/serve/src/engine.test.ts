/**
 * The engine on forge-tiny without HTTP: sequences that join a running batch mid-generation
 * (their cache rows merged into it) and sequences that leave early give the tokens and
 * log-probabilities they give alone; the tensor count is flat across batches.
 */
import { fileURLToPath } from "node:url";
import { type GPT, initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import type { Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type Sequence, type SequenceSpec } from "./engine.js";

let model: GPT;
let tokenizer: Tokenizer;

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const loaded = await loadModel(FORGE_TINY_DIR);
  model = loaded.model;
  tokenizer = loaded.tokenizer!;
});

afterAll(() => model.dispose());

const spec = (question: string, extra: Partial<SequenceSpec> = {}): SequenceSpec => ({
  promptIds: tokenizer.promptIds([{ role: "user", content: question }]),
  maxTokens: 24,
  temperature: 0.9,
  seed: question.length,
  stopIds: tokenizer.stopIds(),
  bannedIds: tokenizer.bannedIds(),
  stop: [],
  topLogprobs: 2,
  ...extra,
});

const questions = [
  "What is 2 + 3?",
  "Write a poem about the moon and the stars.",
  "Hi",
  "Name three colours.",
];

describe("Engine", () => {
  it("gives each sequence what it gives alone, when others join and leave mid-generation", async () => {
    const engine = new Engine(model, tokenizer);
    const alone: Sequence[] = [];
    for (const [i, q] of questions.entries())
      alone.push(...(await Promise.all(engine.submit([spec(q, { maxTokens: 8 + 6 * i })]))));
    const before = tf.memory().numTensors;

    // two start together; two more join from inside the first's third token, at different
    // prompt lengths (the merge pads the narrower side); the short ones leave early
    const later: Promise<Sequence>[] = [];
    const first = engine.submit(
      [
        spec(questions[0]!, {
          maxTokens: 8,
          onToken: (s) => {
            if (s.tokens.length === 3)
              later.push(
                ...engine.submit(
                  [spec(questions[2]!, { maxTokens: 20 }), spec(questions[3]!, { maxTokens: 26 })],
                  {},
                ),
              );
          },
        }),
        spec(questions[1]!, { maxTokens: 14 }),
      ],
      {},
    );
    const together = await Promise.all(first);
    // the joiners were submitted during the first's third token, before it finished
    const all = [...together, ...(await Promise.all(later))];
    expect(all).toHaveLength(4);
    all.forEach((s, i) => {
      expect(s.tokens).toEqual(alone[i]!.tokens);
      expect(s.text).toBe(alone[i]!.text);
      s.logprobs.forEach((entry, t) => {
        expect(Math.abs(entry.logprob - alone[i]!.logprobs[t]!.logprob)).toBeLessThan(1e-4);
      });
    });
    expect(engine.stats.sharedPasses).toBeGreaterThan(0);
    expect(engine.stats.maxBatch).toBe(4);
    await engine.idle();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("batches a Llama model (GQA, rotary positions) as it runs it alone", async () => {
    // the model package's tiny Llama fixture: vocab 96, no tokenizer of its own — forge-tiny's
    // decodes its ids (text is not what this checks), no stop or banned ids
    const fixture = fileURLToPath(
      new URL("../../model/src/testing/llama/tiny-llama/", import.meta.url),
    );
    const { model: llama } = await loadModel(fixture);
    try {
      const engine = new Engine(llama, tokenizer);
      const raw = (prompt: number[], maxTokens: number, seed: number): SequenceSpec => ({
        promptIds: prompt,
        maxTokens,
        temperature: 1,
        seed,
        stopIds: [],
        bannedIds: [],
        stop: [],
        topLogprobs: 1,
      });
      const prompts = [[5, 9, 12], [40, 41, 42, 43, 44, 45, 46, 47, 48], [7], [60, 61, 62, 63, 64]];
      const lengths = [6, 20, 15, 9];
      const alone: Sequence[] = [];
      for (const [i, prompt] of prompts.entries())
        alone.push(...(await Promise.all(engine.submit([raw(prompt, lengths[i]!, i)]))));
      const before = tf.memory().numTensors;
      const later: Promise<Sequence>[] = [];
      const first = engine.submit([
        {
          ...raw(prompts[0]!, lengths[0]!, 0),
          onToken: (s) => {
            if (s.tokens.length === 2)
              later.push(
                ...engine.submit([
                  raw(prompts[2]!, lengths[2]!, 2),
                  raw(prompts[3]!, lengths[3]!, 3),
                ]),
              );
          },
        },
        raw(prompts[1]!, lengths[1]!, 1),
      ]);
      const all = [...(await Promise.all(first)), ...(await Promise.all(later))];
      all.forEach((s, i) => {
        expect(s.tokens).toEqual(alone[i]!.tokens);
        for (const [t, entry] of s.logprobs.entries())
          expect(Math.abs(entry.logprob - alone[i]!.logprobs[t]!.logprob)).toBeLessThan(1e-4);
      });
      expect(engine.stats.maxBatch).toBe(4);
      await engine.idle();
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      llama.dispose();
    }
  });

  it("stops at a stop string and cuts the text before it", async () => {
    const engine = new Engine(model, tokenizer);
    const [free] = await Promise.all(engine.submit([spec(questions[1]!, { maxTokens: 40 })]));
    const text = free!.text;
    const stop = text.slice(5, 7);
    expect(stop.length).toBe(2);
    const [cut] = await Promise.all(
      engine.submit([spec(questions[1]!, { maxTokens: 40, stop: [stop] })]),
    );
    expect(cut!.finishReason).toBe("stop");
    expect(cut!.text).toBe(text.slice(0, text.indexOf(stop)));
  });

  it("refuses a prompt and max_tokens past the context window", () => {
    const engine = new Engine(model, tokenizer);
    expect(() => engine.submit([spec("a", { maxTokens: 300 })])).toThrow(
      /exceed the model's context window of 256 tokens/,
    );
  });
});
