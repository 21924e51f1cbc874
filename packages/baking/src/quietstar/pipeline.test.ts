/**
 * The Quiet-STaR A/B statistics against reference values (scipy.stats.ttest_rel), the pipeline's
 * no-win path (nothing baked, the report says why), baking traces (the loss falls) and resuming
 * a stopped bake from its checkpoint.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Rng } from "@forge/core";
import { parseGsm8k } from "@forge/eval";
import { GPT, initBackend, loadModel } from "@forge/model";
import { THOUGHT_TOKENS, type Tokenizer, train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decideAb, modeSettings, runArm } from "./ab.js";
import { resolveQuietStar } from "./config.js";
import { bakeQuietStar, splitItems } from "./run.js";
import { addThoughtTokens, thoughtTokensOf } from "./tokens.js";
import { splitByItem, successfulTraces, traceExamples, traceLoss, trainOnTraces } from "./train.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-quietstar-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
const config = { nLayer: 1, nHead: 2, nEmbd: 32, blockSize: 96 };
const sums = Array.from({ length: 30 }, (_, i) => [10 + i, 3 + (i % 5)] as const);
const gsm8k = sums
  .map(([a, b], i) =>
    JSON.stringify({ id: `q${i}`, question: `What is ${a} + ${b}?`, answer: `#### ${a + b}` }),
  )
  .join("\n");
const task = parseGsm8k(gsm8k, "sums.jsonl", { maxNewTokens: 8 });

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const corpus = sums.map(([a, b]) => `What is ${a} + ${b}? ${a} + ${b} = ${a + b}.`);
  tokenizer = trainTokenizer(corpus, { vocabSize: 300 });
});

describe("A/B decision", () => {
  const rounds = [
    { round: 1, seed: 1, baseline: 0.682, thoughts: 0.734 },
    { round: 2, seed: 2, baseline: 0.675, thoughts: 0.741 },
    { round: 3, seed: 3, baseline: 0.689, thoughts: 0.738 },
  ];
  const items = ["a", "b", "c", "d", "e", "f"];
  const baseline = [
    [1, 1, 0],
    [0, 0, 0],
    [1, 0, 1],
    [0, 0, 0],
    [1, 1, 1],
    [0, 1, 0],
  ];
  const thoughts = [
    [1, 1, 1],
    [1, 1, 0],
    [1, 1, 1],
    [0, 1, 0],
    [1, 1, 1],
    [1, 1, 1],
  ];

  it("matches scipy's paired t-tests, across rounds and over items", () => {
    const result = decideAb(rounds, items, baseline, thoughts, { alpha: 0.05, threshold: 0.01 });
    expect(result.improvement).toBeCloseTo(0.0556667, 6);
    expect(result.baseline.mean).toBeCloseTo(0.682, 6);
    expect(result.thoughts.sd).toBeCloseTo(0.0035119, 6);
    // scipy.stats.ttest_rel(thoughts, baseline): t = 10.625955541695522, p = 0.008740591244720852
    expect(result.roundTest.t).toBeCloseTo(10.625955541695522, 8);
    expect(result.roundTest.df).toBe(2);
    expect(result.roundTest.p).toBeCloseTo(0.008740591244720852, 8);
    // item means: ttest_rel(b, a): t = 3.7962830118264828, p = 0.012676602478014495
    expect(result.itemTest.tTest.t).toBeCloseTo(3.7962830118264828, 8);
    expect(result.itemTest.tTest.p).toBeCloseTo(0.012676602478014495, 8);
    expect(result.itemTest.delta).toBeCloseTo(7 / 18, 8);
    expect(result.winner).toBe("thoughts");
    expect(result.relativeImprovement).toBeCloseTo(0.0556667 / 0.682, 5);
  });

  it("needs both tests significant and the threshold reached", () => {
    const strict = decideAb(rounds, items, baseline, thoughts, { alpha: 0.01, threshold: 0.01 });
    expect(strict.winner).toBe("none");
    expect(strict.reason).toMatch(/not significantly at 0\.01/);
    const high = decideAb(rounds, items, baseline, thoughts, { alpha: 0.05, threshold: 0.1 });
    expect(high.winner).toBe("none");
    expect(high.reason).toMatch(/below the 10\.0-point threshold/);
    const mirrored = decideAb(
      rounds.map((r) => ({ ...r, baseline: r.thoughts, thoughts: r.baseline })),
      items,
      thoughts,
      baseline,
      { alpha: 0.05, threshold: 0.01 },
    );
    expect(mirrored.winner).toBe("baseline");
  });
});

describe("the pipeline", () => {
  it("splits items by a seeded shuffle and refuses too few", () => {
    const { ab, heldOut } = splitItems(task, { evalSamples: 10, heldOutSamples: 5, seed: 1 });
    expect(ab).toHaveLength(10);
    expect(heldOut).toHaveLength(5);
    expect(new Set([...ab, ...heldOut].map((i) => i.id)).size).toBe(15);
    expect(() => splitItems(task, { evalSamples: 25, heldOutSamples: 6, seed: 1 })).toThrow(
      /sums\.jsonl has 30 items; evalSamples \(25\) \+ heldOutSamples \(6\) = 31 are needed/,
    );
  });

  it("bakes nothing when thoughts do not win, and its report says why", async () => {
    const model = GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed: 5 });
    const before = tf.memory().numTensors;
    const out = path.join(dir, "no-win");
    const result = await bakeQuietStar(model, tokenizer, {
      config: resolveQuietStar({
        evalSamples: 8,
        heldOutSamples: 4,
        abTestRounds: 2,
        maxThoughtLength: 4,
        maxNewTokens: 6,
      }),
      task,
      out,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(result.baked).toBe(false);
    expect(result.ab.winner).not.toBe("thoughts");
    expect(result.decision).toMatch(/^nothing baked: /);
    expect(result.ab.rounds).toHaveLength(2);
    expect(existsSync(path.join(out, "model"))).toBe(false);
    const report = JSON.parse(readFileSync(path.join(out, "report.json"), "utf8"));
    expect(report).toMatchObject({ kind: "forge-quietstar-report", baked: false });
    expect(readFileSync(path.join(out, "report.md"), "utf8")).toContain("nothing baked");
    expect(readFileSync(path.join(out, "accuracy.svg"), "utf8")).toMatch(/^<svg/);
    model.dispose();
  });
});

describe("stopping and resuming the pipeline", () => {
  it("keeps the A/B result of a stopped run and reuses it on --resume; a different configuration is refused", async () => {
    const settings = resolveQuietStar({
      evalSamples: 6,
      heldOutSamples: 4,
      abTestRounds: 2,
      maxThoughtLength: 4,
      maxNewTokens: 6,
      seed: 4,
    });
    const out = path.join(dir, "resume");
    const model = GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed: 8 });
    const controller = new AbortController();
    await expect(
      bakeQuietStar(model, tokenizer, {
        config: settings,
        task,
        out,
        signal: controller.signal,
        onEvent: (event) => {
          if (event.type === "phase-end" && event.phase === "ab") controller.abort();
        },
      }),
    ).rejects.toThrow(/stopped before held-out; .* run again with --resume/);
    expect(existsSync(out)).toBe(false);
    const phases: string[] = [];
    const resumed = await bakeQuietStar(model, tokenizer, {
      config: settings,
      task,
      out,
      resume: true,
      onEvent: (event) => {
        if (event.type === "phase-start") phases.push(event.phase);
      },
    });
    expect(phases).not.toContain("ab");
    expect(phases).toContain("held-out");
    const fresh = await bakeQuietStar(model, tokenizer, {
      config: settings,
      task,
      out: path.join(dir, "resume-reference"),
    });
    expect(resumed.ab.rounds).toEqual(fresh.ab.rounds);
    expect(resumed.heldOut).toEqual(fresh.heldOut);
    // A stopped run of other settings is not resumed with these.
    const again = new AbortController();
    await expect(
      bakeQuietStar(model, tokenizer, {
        config: settings,
        task,
        out: path.join(dir, "resume-other"),
        signal: again.signal,
        onEvent: (event) => {
          if (event.type === "phase-end" && event.phase === "ab") again.abort();
        },
      }),
    ).rejects.toThrow(/stopped/);
    await expect(
      bakeQuietStar(model, tokenizer, {
        config: { ...settings, seed: 5 },
        task,
        out: path.join(dir, "resume-other"),
        resume: true,
      }),
    ).rejects.toThrow(/different model, dataset or configuration; start over with --force/);
    model.dispose();
  }, 120_000);
});

describe("baking traces", () => {
  let model: GPT;
  let thinker: Tokenizer;
  let examples: ReturnType<typeof traceExamples>["examples"];
  const settings = resolveQuietStar({
    bakeMode: "lora",
    loraRank: 8,
    learningRate: 3e-2,
    numEpochs: 40,
    batchSize: 4,
    validationFraction: 0.25,
    seed: 3,
  });
  beforeAll(async () => {
    const base = GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed: 6 });
    const added = addThoughtTokens(base, tokenizer, {
      start: THOUGHT_TOKENS.start,
      end: THOUGHT_TOKENS.end,
    });
    base.dispose();
    model = added.model;
    thinker = added.tokenizer;
    const run = await runArm(
      model,
      thinker,
      task,
      task.items.slice(0, 16),
      modeSettings(
        "thoughts",
        resolveQuietStar({ maxThoughtLength: 6, thoughtProbability: 1 }),
        added.tokens,
        {
          maxNewTokens: 6,
          temperature: 1,
        },
      ),
      11,
    );
    // A random model is never right: mark its traces correct to have something to learn —
    // the test is of the training, not of the model.
    const marked = run.scored.map((s) => ({
      ...s,
      score: 1,
      quality: { ...s.quality, quality: 1 },
    }));
    expect(successfulTraces(run.scored, 0)).toHaveLength(
      run.scored.filter((s) => s.score === 1 && s.quality.thoughts > 0).length,
    );
    const prompts = new Map(
      task.items.map((item) => [
        item.id,
        thinker.promptIds([{ role: "user", content: String(item.question) }]),
      ]),
    );
    ({ examples } = traceExamples(
      successfulTraces(marked, 0.5),
      thinker,
      (id) => prompts.get(id)!,
      model.config.blockSize,
    ));
    expect(examples.length).toBeGreaterThan(8);
  });
  afterAll(() => model.dispose());

  it("fine-tunes a LoRA on the traces: the loss falls; validation split by item", async () => {
    const { train, validation } = splitByItem(examples, 0.25, 3);
    const trainItems = new Set(train.map((e) => e.item));
    expect(validation.length).toBeGreaterThan(0);
    for (const e of validation) expect(trainItems.has(e.item)).toBe(false);
    const startLoss = traceLoss(model, train, 4);
    const tensors = tf.memory().numTensors;
    const training = await trainOnTraces(model, train, validation, settings);
    const endLoss = traceLoss(model, train, 4);
    expect(endLoss).toBeLessThan(startLoss - 0.15); // 5.69 → 5.37 when written
    expect(training.result.history.at(-1)!.loss).toBeLessThan(training.result.history[0]!.loss);
    expect(training.validationBefore).toBeDefined();
    model.lora!.dispose();
    model.lora = undefined;
    expect(tf.memory().numTensors).toBe(tensors);
  }, 120_000);

  it("resumes a stopped bake from its checkpoint and ends where an uninterrupted one does", async () => {
    const { train, validation } = splitByItem(examples, 0, 3);
    const full = { ...settings, bakeMode: "full" as const, learningRate: 3e-3, numEpochs: 2 };
    const copy = () => GPT.fromTensors(model.config, model.params);
    const straight = copy();
    const reference = await trainOnTraces(straight, train, validation, full);
    const stopped = copy();
    const checkpointDir = path.join(dir, "resume-checkpoints");
    const controller = new AbortController();
    const first = await trainOnTraces(stopped, train, validation, full, {
      checkpointDir,
      signal: controller.signal,
      onEvent: (event) => {
        if (event.type === "step-end" && event.step === 3) controller.abort();
      },
    });
    expect(first.result.reason).toBe("aborted");
    expect(first.result.step).toBe(3);
    stopped.dispose();
    const resumedModel = copy();
    const resumed = await trainOnTraces(resumedModel, train, validation, full, {
      checkpointDir,
      resume: true,
    });
    expect(resumed.result.resumedFrom).toBe(3);
    expect(resumed.result.step).toBe(reference.result.step);
    expect(resumed.result.finalLoss).toBeCloseTo(reference.result.finalLoss, 4);
    straight.dispose();
    resumedModel.dispose();
  }, 120_000);
});

describe("a model that thinks better than it answers", () => {
  // A task where thinking helps, trained here in seconds: "Repeat 34." — half the training
  // replies think first and are right (<|startofthought|>34<|endofthought|>34.), half answer
  // at once with a random number. Answering at once the model is right by chance; with a
  // thought started for it, it copies.
  it("wins the A/B test, bakes the successful traces (resumable) and saves a model with its thought tokens", async () => {
    const numbers = Array.from({ length: 40 }, (_, i) => 10 + i * 2);
    const rng = new Rng(3);
    const corpus = Array.from({ length: 400 }, () => {
      const x = numbers[rng.int(numbers.length)]!;
      const think = rng.next() < 0.5;
      const noise = numbers[rng.int(numbers.length)]!;
      return {
        q: `Repeat ${x}.`,
        a: think ? `${THOUGHT_TOKENS.start}${x}${THOUGHT_TOKENS.end}${x}.` : `${noise}.`,
      };
    });
    const base = trainTokenizer(
      corpus.map((c) => `${c.q} ${c.a.replace(/<\|[a-z]+\|>/g, " ")}`),
      { vocabSize: 300 },
    );
    const model0 = GPT.create(
      { vocabSize: base.vocabSize, nLayer: 1, nHead: 2, nEmbd: 32, blockSize: 48 },
      { seed: 1 },
    );
    const added = addThoughtTokens(model0, base, {
      start: THOUGHT_TOKENS.start,
      end: THOUGHT_TOKENS.end,
    });
    model0.dispose();
    const { model, tokenizer: thinker } = added;
    const examples = corpus.map((c, i) => {
      const rendered = thinker.renderChat([
        { role: "user", content: c.q },
        { role: "assistant", content: c.a },
      ]);
      return { item: String(i), ids: rendered.ids, promptLength: rendered.spans[1]!.start + 1 };
    });
    expect(examples.some((e) => e.ids.includes(added.tokens.startId))).toBe(true);
    await trainOnTraces(model, examples, [], {
      ...resolveQuietStar({ bakeMode: "full", learningRate: 5e-3, numEpochs: 40, batchSize: 16 }),
    });
    const repeat = parseGsm8k(
      numbers
        .map((x, i) =>
          JSON.stringify({ id: `r${i}`, question: `Repeat ${x}.`, answer: `#### ${x}` }),
        )
        .join("\n"),
      "repeat.jsonl",
      { maxNewTokens: 6 },
    );
    const settings = resolveQuietStar({
      evalSamples: 20,
      heldOutSamples: 20,
      abTestRounds: 3,
      thoughtProbability: 1,
      injectAt: ["start"],
      maxThoughts: 1,
      maxThoughtLength: 4,
      maxNewTokens: 6,
      numEpochs: 3,
      batchSize: 4,
    });
    const out = path.join(dir, "win");
    const tensors = tf.memory().numTensors;
    // Stopped during the bake…
    const controller = new AbortController();
    await expect(
      bakeQuietStar(model, thinker, {
        config: settings,
        task: repeat,
        out,
        signal: controller.signal,
        onEvent: (event) => {
          if (event.type === "train" && event.event.type === "step-end" && event.event.step === 2)
            controller.abort();
        },
      }),
    ).rejects.toThrow(/the bake stopped at step 2; .* --resume/);
    expect(existsSync(out)).toBe(false);
    expect(model.lora).toBeUndefined(); // the stopped bake took its adapter with it
    // …and resumed: the A/B result is kept, training continues from its checkpoint.
    const result = await bakeQuietStar(model, thinker, {
      config: settings,
      task: repeat,
      out,
      resume: true,
    });
    expect(tf.memory().numTensors).toBe(tensors);
    expect(result.ab.winner).toBe("thoughts");
    expect(result.ab.thoughts.mean).toBeGreaterThan(result.ab.baseline.mean + 0.5);
    expect(result.ab.roundTest.p).toBeLessThan(0.05);
    expect(result.baked).toBe(true);
    expect(result.training!.resumedFrom).toBe(2);
    expect(result.training!.steps).toBeGreaterThan(2);
    expect(result.heldOut.baked).toBeDefined();
    expect(result.bakedImprovement).toBeDefined();
    const traces = readFileSync(path.join(out, "traces.jsonl"), "utf8").trim().split("\n");
    expect(traces.length).toBe(
      result.training!.trainExamples + result.training!.validationExamples,
    );
    expect(JSON.parse(traces[0]!).text).toContain(THOUGHT_TOKENS.start);
    const saved = await loadModel(path.join(out, "model"));
    expect(thoughtTokensOf(saved.tokenizer!)).toEqual(added.tokens);
    expect(saved.model.config.vocabSize).toBe(thinker.vocabSize);
    expect(saved.forge?.thoughtTokens).toMatchObject({
      start: THOUGHT_TOKENS.start,
      endId: added.tokens.endId,
    });
    expect(saved.model.lora).toBeUndefined(); // the adapter is merged into the weights
    saved.model.dispose();
    model.dispose();
  }, 300_000);
});
