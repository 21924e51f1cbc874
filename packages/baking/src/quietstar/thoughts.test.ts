/**
 * Quiet-STaR building blocks: the settings and their checks, thought tokens added to a model
 * and tokenizer (ids, rows, save/load in the HF layout), injection points, extraction and
 * hiding of thoughts, writing replies with injected thoughts, and trace quality.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GPT, initBackend, loadModel, saveModel } from "@forge/model";
import { THOUGHT_TOKENS, type Tokenizer, train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BakingError } from "../errors.js";
import { resolveQuietStar } from "./config.js";
import { qualityDistribution, repetition, traceQuality } from "./quality.js";
import {
  extractThoughts,
  formatTrace,
  injectionPoints,
  splitThoughts,
  type ThinkingSettings,
  type Trace,
  thinkingEvalModel,
  thinkingReplies,
} from "./thoughts.js";
import { addThoughtTokens, thoughtTokensOf } from "./tokens.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-quietstar-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
const config = { nLayer: 1, nHead: 2, nEmbd: 16, blockSize: 128 };

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const corpus = Array.from(
    { length: 300 },
    (_, i) => `What is ${i % 50} + ${i % 7}? So, ${i % 50} + ${i % 7} = ${(i % 50) + (i % 7)}.`,
  );
  tokenizer = trainTokenizer(corpus, { vocabSize: 300 });
});

describe("resolveQuietStar", () => {
  it("lays overrides over the defaults and names the field at fault", () => {
    const config = resolveQuietStar({ maxThoughtLength: 8, abTestRounds: 4 });
    expect(config.maxThoughtLength).toBe(8);
    expect(config.abTestRounds).toBe(4);
    expect(config.thoughtProbability).toBe(0.5);
    expect(() => resolveQuietStar({ maxThoughtLength: 0 }, "q.json")).toThrow(
      /q\.json: maxThoughtLength must be an integer ≥ 1; got 0/,
    );
    expect(() => resolveQuietStar({ thoughtProbability: 1.5 })).toThrow(/thoughtProbability/);
    expect(() => resolveQuietStar({ nonsense: 1 }, "q.json")).toThrow(
      /q\.json: unknown setting "nonsense"/,
    );
    expect(() => resolveQuietStar({ injectAt: ["start", "start"] })).toThrow(/injectAt/);
    expect(() => resolveQuietStar({ startThoughtToken: "<a>", endThoughtToken: "<a>" })).toThrow(
      /two different tokens/,
    );
    expect(() => resolveQuietStar([] as never)).toThrow(BakingError);
  });
});

describe("thought tokens", () => {
  it("adds both tokens after the last id, rows the mean of the init text's embeddings; saves and loads in the HF layout", async () => {
    const model = GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed: 1 });
    const before = tf.memory().numTensors;
    const added = addThoughtTokens(model, tokenizer, {
      start: THOUGHT_TOKENS.start,
      end: THOUGHT_TOKENS.end,
      init: " =",
    });
    expect(added.added).toBe(true);
    expect(added.tokens.startId).toBe(tokenizer.vocabSize);
    expect(added.tokens.endId).toBe(tokenizer.vocabSize + 1);
    expect(added.model.config.vocabSize).toBe(tokenizer.vocabSize + 2);
    expect(added.tokenizer.specialTokenId(THOUGHT_TOKENS.start)).toBe(tokenizer.vocabSize);
    const init = tokenizer.encode(" =");
    const C = config.nEmbd;
    const wte = added.model.param("wte.weight").dataSync();
    const old = model.param("wte.weight").dataSync();
    for (const row of [added.tokens.startId, added.tokens.endId])
      for (let c = 0; c < C; c++) {
        const mean = init.reduce((s, id) => s + old[id * C + c]!, 0) / init.length;
        expect(wte[row * C + c]).toBeCloseTo(mean, 6);
      }
    model.dispose();
    const out = path.join(dir, "with-thoughts");
    await saveModel(added.model, out, { tokenizer: added.tokenizer });
    const json = JSON.parse(readFileSync(path.join(out, "tokenizer.json"), "utf8"));
    const listed = json.added_tokens.filter((t: { content: string }) =>
      [THOUGHT_TOKENS.start, THOUGHT_TOKENS.end as string].includes(t.content),
    );
    expect(listed.map((t: { id: number; special: boolean }) => [t.id, t.special])).toEqual([
      [tokenizer.vocabSize, true],
      [tokenizer.vocabSize + 1, true],
    ]);
    const loaded = await loadModel(out);
    expect(thoughtTokensOf(loaded.tokenizer!)).toEqual(added.tokens);
    // A model that has them keeps them: nothing is added again.
    const again = addThoughtTokens(loaded.model, loaded.tokenizer!, {
      start: THOUGHT_TOKENS.start,
      end: THOUGHT_TOKENS.end,
    });
    expect(again.added).toBe(false);
    expect(again.model).toBe(loaded.model);
    // …and other tokens are refused, naming both pairs.
    expect(() =>
      addThoughtTokens(loaded.model, loaded.tokenizer!, {
        start: "<think>",
        end: "</think>",
        source: "m/",
      }),
    ).toThrow(
      /m\/ already has the thought tokens <\|startofthought\|>.*asks for <think> and <\/think>/,
    );
    expect(() =>
      addThoughtTokens(loaded.model, loaded.tokenizer!, {
        start: THOUGHT_TOKENS.start,
        end: THOUGHT_TOKENS.end,
        recorded: { start: "<t>", end: "</t>" },
      }),
    ).toThrow(/forge\.json thoughtTokens/);
    loaded.model.dispose();
    added.model.dispose();
    expect(tf.memory().numTensors).toBe(before - model.params.size);
  });
});

describe("injection points, extraction and hiding", () => {
  it("finds the start and every sentence and clause boundary", () => {
    const ids = tokenizer.encode("So, 3 + 4 = 7. Yes");
    const points = injectionPoints(tokenizer, ids);
    expect(points[0]).toEqual({ index: 0, point: "start" });
    const kinds = points.slice(1).map((p) => p.point);
    expect(kinds).toEqual(["clause", "sentence"]);
    for (const p of points.slice(1)) {
      const before = tokenizer.decode(ids.slice(0, p.index)).trimEnd();
      expect([",", "."]).toContain(before.at(-1));
    }
  });

  it("splits thoughts from the answer, on ids and on text, and shows them only when asked", () => {
    const tokens = { start: "<s>", end: "</s>", startId: 1000, endId: 1001 };
    expect(extractThoughts([1000, 5, 6, 1001, 7, 1000, 8, 1001, 9, 1000, 10], tokens)).toEqual({
      answerIds: [7, 9],
      thoughts: [
        { ids: [5, 6], closed: true },
        { ids: [8], closed: true },
        { ids: [10], closed: false },
      ],
    });
    expect(extractThoughts([4, 1001, 5], tokens).answerIds).toEqual([4, 5]); // a stray end
    expect(splitThoughts("<s>3 + 4 = 7</s>The answer is 7.<s>done", tokens)).toEqual({
      answer: "The answer is 7.",
      thoughts: ["3 + 4 = 7", "done"],
    });
    expect(splitThoughts("a </s>b", tokens).answer).toBe("a b");
  });
});

describe("thinking replies", () => {
  let model: GPT;
  let thinker: Tokenizer;
  let settings: ThinkingSettings;
  beforeAll(() => {
    const base = GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed: 2 });
    const added = addThoughtTokens(base, tokenizer, {
      start: THOUGHT_TOKENS.start,
      end: THOUGHT_TOKENS.end,
    });
    base.dispose();
    model = added.model;
    thinker = added.tokenizer;
    settings = {
      tokens: added.tokens,
      inject: true,
      allowThoughts: true,
      points: ["start", "sentence", "clause"],
      probability: 1,
      maxThoughtLength: 5,
      samplesPerPoint: 2,
      thoughtTemperature: 1,
      maxThoughts: 2,
      maxNewTokens: 12,
      temperature: 1,
      seed: 7,
    };
  });
  afterAll(() => model.dispose());

  it("injects a thought at the start (probability 1), caps thoughts, hides them from the answer; deterministic; tensors flat", () => {
    const prompts = ["What is 3 + 4?", "What is 10 + 2?", "What is 7 + 7?"].map((q) =>
      thinker.promptIds([{ role: "user", content: q }]),
    );
    thinkingReplies(model, thinker, prompts.slice(0, 1), settings); // warm-up
    const before = tf.memory().numTensors;
    const traces = thinkingReplies(model, thinker, prompts, settings);
    expect(tf.memory().numTensors).toBe(before);
    expect(traces).toHaveLength(3);
    for (const trace of traces) {
      expect(trace.ids[0]).toBe(settings.tokens.startId);
      expect(trace.thoughts[0]!.point).toBe("start");
      expect(trace.thoughts.length).toBeGreaterThanOrEqual(1);
      expect(trace.thoughts.length).toBeLessThanOrEqual(settings.maxThoughts + 1);
      for (const t of trace.thoughts) expect(t.ids.length).toBeLessThanOrEqual(5);
      const { answerIds, thoughts } = extractThoughts(trace.ids, settings.tokens);
      expect(thoughts.map((t) => t.ids)).toEqual(trace.thoughts.map((t) => t.ids));
      expect(answerIds.length).toBeLessThanOrEqual(settings.maxNewTokens);
      expect(trace.answer).toBe(thinker.decode(answerIds, { skipSpecial: true }).trim());
      expect(trace.answer).not.toContain(THOUGHT_TOKENS.start);
      expect(formatTrace(trace, thinker, settings.tokens)).toBe(trace.answer);
      expect(formatTrace(trace, thinker, settings.tokens, { showThoughts: true })).toContain(
        "[thought:",
      );
    }
    expect(thinkingReplies(model, thinker, prompts, settings)).toEqual(traces);
  });

  it("probability 0 without self-opened thoughts writes no thoughts at all", () => {
    const prompts = [thinker.promptIds([{ role: "user", content: "What is 1 + 1?" }])];
    const [trace] = thinkingReplies(model, thinker, prompts, {
      ...settings,
      probability: 0,
      allowThoughts: false,
    });
    expect(trace!.thoughts).toEqual([]);
    expect(trace!.ids).not.toContain(settings.tokens.startId);
    expect(trace!.ids).not.toContain(settings.tokens.endId);
  });

  it("serves @forge/eval as an EvalModel whose replies are answers, keeping the traces", async () => {
    const { seed: _s, maxNewTokens: _m, temperature: _t, ...rest } = settings;
    const evalModel = thinkingEvalModel(model, thinker, rest, { name: "thinker" });
    const conversation = [{ role: "user" as const, content: "What is 2 + 2?" }];
    const [reply] = await evalModel.generate([conversation], {
      maxNewTokens: 8,
      temperature: 0,
      seed: 3,
    });
    const trace = [...evalModel.traces.values()][0]!;
    expect(reply).toBe(trace.answer);
    expect(trace.thoughts.length).toBeGreaterThan(0);
  });
});

describe("trace quality", () => {
  const thought = (ids: number[], text: string, closed = true) => ({
    ids,
    text,
    closed,
    point: "start" as const,
    meanLogprob: -1,
  });
  const trace = (thoughts: ReturnType<typeof thought>[]): Trace => ({
    ids: [],
    thoughts,
    answer: "7",
    finishReason: "stop",
  });

  it("multiplies closure, non-repetition and grounding; no thought is quality 0", () => {
    expect(repetition([1, 2, 3, 1, 2, 3])).toBeCloseTo(1 / 4);
    expect(repetition([1, 2, 3])).toBe(0);
    const good = traceQuality(trace([thought([1, 2, 3, 4], "3 + 4 = 7")]), "7");
    expect(good).toMatchObject({ quality: 1, grounded: true, closed: true, length: 4 });
    const ungrounded = traceQuality(trace([thought([1, 2, 3, 4], "3 + 4 = 8")]), "7");
    expect(ungrounded.quality).toBe(0.5);
    const rambling = traceQuality(trace([thought([1, 2, 3, 1, 2, 3], "7 7", false)]), "7");
    expect(rambling.quality).toBeCloseTo(0.5 * (1 - 1 / 4));
    expect(traceQuality(trace([]), "7").quality).toBe(0);
    const dist = qualityDistribution(
      [
        { quality: good, correct: true },
        { quality: ungrounded, correct: true },
        { quality: rambling, correct: false },
        { quality: traceQuality(trace([]), "7"), correct: true },
      ],
      0.6,
    );
    expect(dist).toMatchObject({ traces: 4, withThoughts: 3, usable: 1 });
    expect(dist.correctShare).toBeCloseTo(2 / 3);
    expect(dist.histogram[9]).toBe(1);
    expect(dist.histogram[5]).toBe(1);
    expect(dist.histogram[3]).toBe(1);
  });
});
