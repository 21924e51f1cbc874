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
import { exitCodeFor } from "@forge/core";
import { GPT, initBackend, loadAdapter } from "@forge/model";
import { type Tokenizer, train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BakingError } from "./errors.js";
import { strengthCurve } from "./halfbake.js";
import { measureKL } from "./measure.js";
import { readStimuli, type Stimulus, systemPrompt } from "./records.js";
import { rollout } from "./rollout.js";
import { bakePrompt, loadBaked } from "./run.js";
import { generateStimuli, PERSONA_PROBES } from "./stim.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-bake-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
const config = { nLayer: 2, nHead: 2, nEmbd: 32, blockSize: 96 };
const newModel = (seed = 1) => GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed });
const prompt = systemPrompt("You are a pirate.");
const questions = [
  "What is 2 + 3?",
  "Name a colour.",
  "Say hello.",
  "What is the capital of France?",
  "Count to three.",
  "Who are you?",
];

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const corpus = Array.from(
    { length: 200 },
    (_, i) => `${questions[i % questions.length]} Arr matey, the answer is ${i}. You are a pirate.`,
  );
  tokenizer = trainTokenizer(corpus, { vocabSize: 320 });
});

describe("stimulus generators", () => {
  it("list, template (cartesian product, sampled without replacement), persona and self", async () => {
    const model = newModel();
    const stimuli = await generateStimuli(
      [
        { type: "list", items: ["Hi?", "Hi?", "Bye?"] },
        {
          type: "template",
          template: "What is the capital of {country}?",
          slots: { country: ["France", "Spain", "Peru"] },
        },
        {
          type: "template",
          template: "{a} plus {b}?",
          slots: { a: ["1", "2", "3"], b: ["4", "5"] },
          count: 4,
        },
        { type: "persona", count: 5 },
        { type: "self", count: 3, maxNewTokens: 6 },
      ],
      { seed: 3, teacher: { model, tokenizer, prompt } },
    );
    const by = (source: string) =>
      stimuli.filter((s) => s.source === source).map((s) => s.messages[0]!.content);
    expect(by("list")).toEqual(["Hi?", "Bye?"]); // duplicates dropped
    expect(by("template").slice(0, 3)).toEqual([
      "What is the capital of France?",
      "What is the capital of Spain?",
      "What is the capital of Peru?",
    ]);
    const sums = by("template").slice(3);
    expect(sums).toHaveLength(4);
    expect(new Set(sums).size).toBe(4);
    for (const s of sums) expect(s).toMatch(/^[123] plus [45]\?$/);
    expect(by("persona")).toHaveLength(5);
    for (const p of by("persona")) expect(PERSONA_PROBES).toContain(p);
    expect(by("self").length).toBeGreaterThan(0);
    expect(new Set(by("self")).size).toBe(by("self").length);
    expect(new Set(stimuli.map((s) => s.id)).size).toBe(stimuli.length);
    // deterministic under a seed
    const again = await generateStimuli(
      [
        {
          type: "template",
          template: "{a} plus {b}?",
          slots: { a: ["1", "2", "3"], b: ["4", "5"] },
          count: 4,
        },
      ],
      { seed: 3 },
    );
    const first = await generateStimuli(
      [
        {
          type: "template",
          template: "{a} plus {b}?",
          slots: { a: ["1", "2", "3"], b: ["4", "5"] },
          count: 4,
        },
      ],
      { seed: 3 },
    );
    expect(again).toEqual(first);
    model.dispose();
  });

  it("file: JSONL records or plain lines; a malformed line is an error naming it", async () => {
    writeFileSync(
      path.join(dir, "q.jsonl"),
      '{"text": "One?"}\n{"messages": [{"role": "user", "content": "Two?"}]}\n',
    );
    writeFileSync(path.join(dir, "q.txt"), "Three?\n\nFour?\n");
    writeFileSync(path.join(dir, "bad.jsonl"), '{"text": "fine"}\n{"text": \n');
    const stimuli = await generateStimuli(
      [
        { type: "file", path: path.join(dir, "q.jsonl") },
        { type: "file", path: path.join(dir, "q.txt") },
      ],
      { seed: 1 },
    );
    expect(stimuli.map((s) => s.messages[0]!.content)).toEqual(["One?", "Two?", "Three?", "Four?"]);
    await expect(
      generateStimuli([{ type: "file", path: path.join(dir, "bad.jsonl") }], { seed: 1 }),
    ).rejects.toThrow(/bad.jsonl:2: the JSON ends too early/);
    await expect(
      generateStimuli([{ type: "file", path: path.join(dir, "none.txt") }], { seed: 1 }),
    ).rejects.toThrow(/cannot read stimulus file .*none.txt: no such file or directory \(ENOENT\)/);
    await expect(generateStimuli([{ type: "magic" } as never], { seed: 1 })).rejects.toThrow(
      'stim[0]: unknown generator "magic"; accepted: list, file, template, self, persona',
    );
    await expect(
      generateStimuli([{ type: "template", template: "{x}?", slots: {} }], { seed: 1 }),
    ).rejects.toThrow("template slot {x} has no values");
  });
});

describe("rollout", () => {
  it("is deterministic under a seed and records token ids and text", async () => {
    const model = newModel(2);
    const stimuli = await generateStimuli([{ type: "list", items: questions }], { seed: 1 });
    const a = rollout({ model, tokenizer, prompt }, stimuli, {
      samples: 2,
      maxNewTokens: 12,
      seed: 5,
      cacheTopK: 3,
    });
    const b = rollout({ model, tokenizer, prompt }, stimuli, {
      samples: 2,
      maxNewTokens: 12,
      seed: 5,
      cacheTopK: 3,
    });
    const c = rollout({ model, tokenizer, prompt }, stimuli, {
      samples: 2,
      maxNewTokens: 12,
      seed: 6,
    });
    expect(a).toEqual(b);
    expect(a.map((t) => t.tokenIds)).not.toEqual(c.map((t) => t.tokenIds));
    expect(a).toHaveLength(12);
    expect(a[0]!.topK!.ids).toHaveLength(a[0]!.tokenIds.length);
    expect(a[0]!.text).toBe(
      tokenizer.decode(a[0]!.tokenIds.filter((id) => !tokenizer.isSpecial(id))).trim(),
    );
    model.dispose();
  });

  it("refuses an empty prompt and a prompt longer than the context window", () => {
    const model = newModel();
    expect(() => systemPrompt("  ")).toThrow(BakingError);
    expect(() =>
      rollout({ model, tokenizer, prompt: systemPrompt("pirate ".repeat(200)) }, [], {}),
    ).toThrow(/the prompt is \d+ tokens with its chat framing; the model's context window is 96/);
    model.dispose();
  });
});

describe("bake", () => {
  const options = (out: string, extra: Partial<Parameters<typeof bakePrompt>[2]> = {}) => ({
    prompt,
    stim: [
      { type: "list" as const, items: questions },
      { type: "persona" as const, count: 14 },
    ],
    rollout: { samples: 3, maxNewTokens: 10, seed: 2 },
    bake: {
      epochs: 6,
      batchSize: 8,
      learningRate: 1e-2,
      minLearningRate: 1e-3,
      warmupSteps: 2,
      validationFraction: 0.2,
      seed: 4,
    },
    measure: { n: 24, maxNewTokens: 10 },
    out,
    baseModel: "test-base",
    ...extra,
  });

  it("stops after `patience` epochs without a better validation KL and keeps the best weights", async () => {
    const base = options(path.join(dir, "patient"));
    const settings = { ...base.bake, epochs: 30, learningRate: 5e-2, minLearningRate: 5e-2 };
    const validations: { step: number; loss: number }[] = [];
    const run = async (patience: number, out: string, model = newModel(3)) => {
      const result = await bakePrompt(model, tokenizer, {
        ...base,
        out: path.join(dir, out),
        measure: false,
        bake: { ...settings, earlyStopping: { patience, minDelta: 0 } },
        onEvent: (e) => {
          if (patience === 1 && e.type === "train" && e.event.type === "eval-end")
            validations.push({ step: e.event.step, loss: e.event.loss });
        },
      });
      return { result, model };
    };
    const stopped = await run(1, "patience-1");
    const planned = stopped.result.training.steps;
    const done = stopped.result.training.result;
    expect(done.reason).toBe("early-stopped");
    expect(done.step).toBeLessThan(planned);
    // it stopped one pass after the best, and the best pass's weights are the ones kept
    expect(validations.at(-1)!.loss).toBeGreaterThanOrEqual(done.bestLoss!);
    expect(validations.at(-2)!.loss).toBe(done.bestLoss);
    const all = await run(0, "patience-0");
    expect(all.result.training.result).toMatchObject({ reason: "completed", step: planned });
    // up to the stop both runs took the same steps: the same best so far
    expect(all.result.training.result.bestLoss!).toBeLessThanOrEqual(done.bestLoss!);
    stopped.model.dispose();
    all.model.dispose();
  });

  it("the bake loss and validation KL fall; KL(prompted ‖ baked) < KL(prompted ‖ base); files land in out/", async () => {
    const model = newModel(3);
    const losses: number[] = [];
    const out = path.join(dir, "baked");
    const base = options(out);
    const result = await bakePrompt(model, tokenizer, {
      ...base,
      bake: { ...base.bake, snapshotFractions: [0.5, 1] },
      onEvent: (e) => {
        if (e.type === "train" && e.event.type === "step-end") losses.push(e.event.loss);
      },
    });
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect(result.training.validationBest!).toBeLessThan(result.training.validationBefore!);
    expect(result.after!.token.estimate).toBeLessThan(result.before!.token.estimate);
    expect(existsSync(path.join(out, "adapter_model.safetensors"))).toBe(true);
    expect(existsSync(`${out}.partial`)).toBe(false);
    for (const pct of ["50", "100"])
      expect(existsSync(path.join(out, "snapshots", pct, "adapter_model.safetensors"))).toBe(true);
    const record = JSON.parse(readFileSync(path.join(out, "forge.json"), "utf8"));
    expect(record).toMatchObject({
      kind: "bake",
      baseModel: "test-base",
      prompt: { teacher: [{ role: "system", content: "You are a pirate." }] },
    });
    expect((await readStimuli(path.join(out, "stim.jsonl"))).length).toBe(result.stimuli.length);
    // the adapter reloads onto a fresh base and reproduces the baked model
    const fresh = newModel(3);
    await loadAdapter(fresh, out);
    const ids = tf.tensor2d([tokenizer.encode("Who are you?")], undefined, "int32");
    const x = model.forward(ids).dataSync();
    const y = fresh.forward(ids).dataSync();
    for (const [i, v] of x.entries()) expect(Math.abs(v - y[i]!)).toBeLessThan(1e-5);
    // strength 0 reproduces the base model's logits exactly
    const original = newModel(3);
    fresh.lora!.strength = 0;
    expect(Array.from(fresh.forward(ids).dataSync())).toEqual(
      Array.from(original.forward(ids).dataSync()),
    );
    const curve = await strengthCurve(fresh, [0, 1], (m) => m.forward(ids).dataSync()[0]!);
    expect(curve[0]!.value).toBe(original.forward(ids).dataSync()[0]);
    tf.dispose([ids]);
    for (const m of [model, fresh, original]) m.dispose();
  });

  it("top-K bake with K = vocabulary size equals the full bake", async () => {
    const full: number[] = [];
    const topk: number[] = [];
    for (const [loss, sink] of [
      ["full", full],
      ["topk", topk],
    ] as const) {
      const model = newModel(5);
      await bakePrompt(model, tokenizer, {
        ...options(path.join(dir, `k-${loss}`), { measure: false }),
        rollout: { samples: 2, maxNewTokens: 8, seed: 2, cacheTopK: tokenizer.vocabSize },
        bake: { epochs: 2, batchSize: 8, loss, seed: 4 },
        onEvent: (e) => {
          if (e.type === "train" && e.event.type === "step-end") sink.push(e.event.loss);
        },
      });
      model.dispose();
    }
    expect(topk.length).toBe(full.length);
    for (const [i, v] of topk.entries()) expect(Math.abs(v - full[i]!)).toBeLessThan(1e-4);
  });

  it("a bake interrupted mid-way resumes from its last checkpoint and finishes", async () => {
    const out = path.join(dir, "resumed");
    const controller = new AbortController();
    const first = newModel(6);
    await expect(
      bakePrompt(first, tokenizer, {
        ...options(out, { measure: false }),
        signal: controller.signal,
        onEvent: (e) => {
          if (e.type === "train" && e.event.type === "checkpoint-saved" && e.event.step >= 4)
            controller.abort();
        },
      }),
    ).rejects.toSatisfy(
      (error: unknown) =>
        exitCodeFor(error) === 130 && /the bake stopped at step \d+/.test((error as Error).message),
    );
    expect(existsSync(out)).toBe(false); // nothing half-written where the result goes
    expect(existsSync(path.join(`${out}.partial`, "rollout.jsonl"))).toBe(true);
    first.dispose();
    const second = newModel(6);
    const result = await bakePrompt(second, tokenizer, {
      ...options(out, { measure: false }),
      resume: true,
    });
    expect(result.training.result.resumedFrom).toBeGreaterThanOrEqual(4);
    expect(existsSync(path.join(out, "adapter_config.json"))).toBe(true);
    second.dispose();
  });

  it("never bakes into a directory it did not make, nor into its base model; a previous bake only with force", async () => {
    const users = path.join(dir, "users-dir");
    mkdirSync(users);
    writeFileSync(path.join(users, "thesis.tex"), "years of work");
    const model = newModel(7);
    await expect(bakePrompt(model, tokenizer, options(users, { measure: false }))).rejects.toThrow(
      /already exists and is not forge's output \(a directory holding thesis.tex\)/,
    );
    await expect(
      bakePrompt(model, tokenizer, options(users, { measure: false, force: true })),
    ).rejects.toThrow(/never replaces what it did not create/);
    expect(readFileSync(path.join(users, "thesis.tex"), "utf8")).toBe("years of work");
    const base = path.join(dir, "base-model");
    mkdirSync(base);
    writeFileSync(path.join(base, "config.json"), "{}");
    await expect(
      bakePrompt(model, tokenizer, { ...options(base, { measure: false }), baseModel: base }),
    ).rejects.toThrow(/is the input/);
    expect(readFileSync(path.join(base, "config.json"), "utf8")).toBe("{}");
    expect(
      readdirSync(dir).filter((name) => name.includes(".partial") || name.endsWith(".lock")),
    ).toEqual([]);
    model.dispose();
  });

  it("absurd settings are refused before any stimulus is made", async () => {
    const model = newModel(8);
    const started = performance.now();
    await expect(
      bakePrompt(
        model,
        tokenizer,
        options(path.join(dir, "rank"), { bake: { lora: { r: 100_000 } } }),
      ),
    ).rejects.toThrow(/rank 100000 is larger than the model's width \(32\)/);
    expect(performance.now() - started).toBeLessThan(1000);
    await expect(generateStimuli([{ type: "persona", count: 1e9 }], { seed: 1 })).rejects.toThrow(
      /persona\): count 1000000000 is more than \d+ \(there are \d+ persona probes\)/,
    );
    await expect(
      generateStimuli(
        [{ type: "template", template: "{a}?", slots: { a: ["x", "y"] }, count: 5 }],
        { seed: 1 },
      ),
    ).rejects.toThrow(/count 5 is more than the 2 combinations/);
    expect(() => systemPrompt(" \t\n ")).toThrow(/the prompt is empty/);
    expect(existsSync(path.join(dir, "rank"))).toBe(false);
    model.dispose();
  });

  it("loadBaked gives base + adapter; a bake needs trajectories that fit and a non-empty prompt", async () => {
    await expect(loadBaked(path.join(dir, "nothing"))).rejects.toThrow(
      /is not a bake output: forge.json is missing/,
    );
    const model = newModel();
    const long: Stimulus[] = [
      { id: "long", messages: [{ role: "user", content: "word ".repeat(150) }] },
    ];
    expect(() => rollout({ model, tokenizer, prompt }, long, { maxNewTokens: 8 })).toThrow(
      /stimulus long is \d+ tokens with the prompt; .* exceeds the context window of 96/,
    );
    const kl = measureKL(
      { model, prefix: prompt.teacher },
      { model, prefix: [] },
      tokenizer,
      [{ id: "a", messages: [{ role: "user", content: "Hi" }] }],
      { n: 4, maxNewTokens: 4 },
    );
    expect(kl.n).toBe(4);
    model.dispose();
  });
});
