/**
 * The engine's additions to a bake: every selectable loss trains (its loss falls), progressive
 * baking ramps the adapter's strength, and the multiturn generator writes conversations whose
 * earlier replies are the prompted teacher's while the prompt never reaches the student.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor } from "@forge/core";
import { GPT, initBackend, loadModel, saveModel } from "@forge/model";
import { type Tokenizer, train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOSS_KINDS, prepareExamples, resolveBake } from "./bake.js";
import { halfBake, parseLayers, strengthCurve } from "./halfbake.js";
import { inContext, systemPrompt } from "./records.js";
import { repositoryBakeSettings } from "./repository.js";
import { rollout } from "./rollout.js";
import { bakePrompt, loadBaked } from "./run.js";
import {
  DEFAULT_STIM_COUNTS,
  defaultStimuli,
  generateStimuli,
  MODEL_STIMULI_FILE,
} from "./stim.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-engine-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
const config = { nLayer: 2, nHead: 2, nEmbd: 32, blockSize: 96 };
const newModel = (seed = 1) => GPT.create({ ...config, vocabSize: tokenizer.vocabSize }, { seed });
const prompt = systemPrompt("You are a pirate.");
const questions = ["What is 2 + 3?", "Name a colour.", "Say hello.", "Who are you?"];

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const corpus = Array.from(
    { length: 200 },
    (_, i) => `${questions[i % questions.length]} Arr matey, the answer is ${i}. You are a pirate.`,
  );
  tokenizer = trainTokenizer(corpus, { vocabSize: 320 });
});

const bakeOptions = (out: string, bake: Record<string, unknown>) => ({
  prompt,
  stim: [{ type: "list" as const, items: questions }],
  rollout: { samples: 2, maxNewTokens: 8, seed: 2, cacheTopK: 16 },
  bake: {
    epochs: 4,
    batchSize: 8,
    learningRate: 1e-2,
    minLearningRate: 1e-3,
    warmupSteps: 1,
    validationFraction: 0,
    seed: 4,
    ...bake,
  },
  measure: false as const,
  out,
});

describe("selectable losses", () => {
  for (const loss of LOSS_KINDS) {
    it(`a bake on ${loss} trains: its loss falls, and forge.json records the loss`, async () => {
      const model = newModel(3);
      const losses: number[] = [];
      const out = path.join(dir, `loss-${loss}`);
      await bakePrompt(model, tokenizer, {
        ...bakeOptions(out, {
          loss,
          ...(loss.endsWith("jsd") ? { lossBeta: 0.3 } : {}),
          ...(loss === "distillation" ? { lossTemperature: 2 } : {}),
        }),
        onEvent: (e) => {
          if (e.type === "train" && e.event.type === "step-end") losses.push(e.event.loss);
        },
      });
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses.at(-1)!).toBeLessThan(losses[0]!);
      const record = JSON.parse(readFileSync(path.join(out, "forge.json"), "utf8"));
      expect(record.bake.loss).toBe(loss);
      model.dispose();
    }, 60_000);
  }

  it("a bad loss or parameter is refused naming the field and the accepted values", () => {
    const refused = (input: Record<string, unknown>, pattern: RegExp) => {
      let error: unknown;
      try {
        resolveBake(input);
      } catch (e) {
        error = e;
      }
      expect(String(error)).toMatch(pattern);
      expect(exitCodeFor(error)).toBe(2);
    };
    refused(
      { loss: "kl" },
      /bake\.loss must be one of forward-kl, reverse-kl, js, jsd, .*topk-jsd; got "kl"/,
    );
    refused({ loss: "jsd", lossBeta: 2 }, /bake\.lossBeta must be in \[0, 1\]/);
    refused({ loss: "forward-kl", lossBeta: 0.5 }, /lossBeta is the β of "jsd"/);
    refused({ loss: "distillation", lossTemperature: 0 }, /lossTemperature must be a positive/);
    refused({ progressive: { from: 0, fraction: 0 } }, /bake\.progressive needs/);
    expect(resolveBake({ loss: "full" }).loss).toBe("forward-kl");
    refused({ earlyStopping: { patience: -1, minDelta: 0 } }, /bake\.earlyStopping needs patience/);
  });

  it("stops early by default, but not when exactly `steps` are asked for (unless patience is too)", () => {
    expect(resolveBake({}).earlyStopping).toEqual({ patience: 2, minDelta: 0 });
    expect(resolveBake({ steps: 400 }).earlyStopping).toEqual({ patience: 0, minDelta: 0 });
    expect(
      resolveBake({ steps: 400, earlyStopping: { patience: 3, minDelta: 0 } }).earlyStopping,
    ).toEqual({ patience: 3, minDelta: 0 });
  });
});

describe("progressive baking", () => {
  it("ramps the adapter's strength from `from` to 1 over the chosen fraction of steps, and ends at 1", async () => {
    const model = newModel(5);
    const strengths: number[] = [];
    await bakePrompt(model, tokenizer, {
      ...bakeOptions(path.join(dir, "progressive"), {
        progressive: { from: 0.2, fraction: 0.5 },
      }),
      onEvent: (e) => {
        if (e.type === "train" && e.event.type === "step-end") strengths.push(model.lora!.strength);
      },
    });
    expect(strengths[0]!).toBeCloseTo(0.2, 6);
    for (let i = 1; i < strengths.length; i++)
      expect(strengths[i]!).toBeGreaterThanOrEqual(strengths[i - 1]!);
    expect(strengths.at(-1)).toBe(1);
    const half = Math.ceil(strengths.length / 2);
    expect(strengths.slice(half).every((s) => s === 1)).toBe(true);
    expect(model.lora!.strength).toBe(1);
    model.dispose();
  }, 60_000);
});

describe("the multiturn generator", () => {
  it("writes conversations whose earlier replies the prompted teacher wrote; the prompt stays out of the student's context", async () => {
    const model = newModel(7);
    const stimuli = await generateStimuli(
      [
        { type: "list", items: questions },
        { type: "multiturn", count: 4, turns: 3, maxNewTokens: 6 },
      ],
      { seed: 3, teacher: { model, tokenizer, prompt }, reserve: 8, temperature: 1 },
    );
    const multi = stimuli.filter((s) => s.source === "multiturn");
    expect(multi.length).toBeGreaterThan(0);
    for (const s of multi) {
      expect(s.messages.at(-1)!.role).toBe("user");
      expect(s.messages.some((m) => m.role === "system")).toBe(false);
      for (const m of s.messages.filter((m) => m.role === "user"))
        expect(questions).toContain(m.content);
      if (s.messages.length > 1) expect(s.teacherWritten).toBe(true);
    }
    const withHistory = multi.filter((s) => s.messages.length > 1);
    expect(withHistory.length).toBeGreaterThan(0);
    // the prompt's text is in no student-side sequence
    const trajectories = rollout({ model, tokenizer, prompt }, multi, {
      samples: 1,
      maxNewTokens: 6,
      seed: 1,
    });
    const examples = prepareExamples(model, tokenizer, prompt, multi, trajectories, "forward-kl");
    const promptIds = tokenizer.encode("You are a pirate.");
    const contains = (ids: number[], needle: number[]) =>
      ids.some((_, i) => needle.every((t, j) => ids[i + j] === t));
    for (const e of examples) expect(contains(e.studentPrompt, promptIds)).toBe(false);
    // the teacher-written replies are trained on too (packed), with one teacher row per target
    const packed = examples.filter((e) => e.earlier?.length);
    expect(packed.length).toBeGreaterThan(0);
    for (const e of packed)
      expect(e.teacherLogits!.length).toBe(
        (e.earlier!.length + e.response.length) * tokenizer.vocabSize,
      );
    // deterministic under a seed
    const again = await generateStimuli(
      [
        { type: "list", items: questions },
        { type: "multiturn", count: 4, turns: 3, maxNewTokens: 6 },
      ],
      { seed: 3, teacher: { model, tokenizer, prompt }, reserve: 8, temperature: 1 },
    );
    expect(again).toEqual(stimuli);
    await expect(generateStimuli([{ type: "multiturn", count: 2 }], { seed: 1 })).rejects.toThrow(
      /multiturn generator needs the teacher model/,
    );
    model.dispose();
  }, 120_000);
});

describe("the default stimuli", () => {
  it("draw from the model's stimuli.jsonl when it ships one, else the teacher writes them; a file draws up to count", async () => {
    const modelDir = path.join(dir, "with-stimuli");
    mkdirSync(modelDir, { recursive: true });
    expect(defaultStimuli(modelDir)).toEqual([
      { type: "self", count: DEFAULT_STIM_COUNTS.questions },
      { type: "persona", count: DEFAULT_STIM_COUNTS.persona },
    ]);
    const file = path.join(modelDir, MODEL_STIMULI_FILE);
    const lines = Array.from({ length: 300 }, (_, i) => JSON.stringify({ question: `Q${i}?` }));
    writeFileSync(file, `${lines.join("\n")}\n`);
    const specs = defaultStimuli(modelDir);
    expect(specs[0]).toEqual({ type: "file", path: file, count: DEFAULT_STIM_COUNTS.questions });
    const stimuli = await generateStimuli(specs, { seed: 5 });
    const fromFile = stimuli.filter((s) => s.source === "file");
    expect(fromFile).toHaveLength(DEFAULT_STIM_COUNTS.questions);
    expect(new Set(fromFile.map((s) => s.messages[0]!.content)).size).toBe(fromFile.length);
    expect(stimuli.filter((s) => s.source === "persona")).toHaveLength(DEFAULT_STIM_COUNTS.persona);
    // seeded: another seed draws other questions; count beyond the file takes them all
    const other = await generateStimuli(specs, { seed: 6 });
    expect(other.map((s) => s.messages)).not.toEqual(stimuli.map((s) => s.messages));
    const all = await generateStimuli([{ type: "file", path: file, count: 1000 }], { seed: 1 });
    expect(all).toHaveLength(300);
    await expect(
      generateStimuli([{ type: "file", path: file, count: 0 }], { seed: 1 }),
    ).rejects.toThrow(/count must be a positive integer/);
  });

  it("a stimulus with its own system message is answered by the teacher under that prompt, not the baked one", () => {
    const model = newModel(9);
    const own = { role: "system" as const, content: "You are a poet." };
    const stimuli = [
      { id: "plain", messages: [{ role: "user" as const, content: "Say hello." }] },
      { id: "own", messages: [own, { role: "user" as const, content: "Say hello." }] },
    ];
    expect(inContext(prompt.teacher, stimuli[0]!.messages)).toEqual([
      ...prompt.teacher,
      ...stimuli[0]!.messages,
    ]);
    expect(inContext(prompt.teacher, stimuli[1]!.messages)).toEqual(stimuli[1]!.messages);
    const trajectories = rollout({ model, tokenizer, prompt }, stimuli, {
      samples: 1,
      maxNewTokens: 4,
      seed: 1,
    });
    const examples = prepareExamples(model, tokenizer, prompt, stimuli, trajectories, "forward-kl");
    const bakedPrompt = tokenizer.encode("You are a pirate.");
    const contains = (ids: number[], needle: number[]) =>
      ids.some((_, i) => needle.every((t, j) => ids[i + j] === t));
    const byId = new Map(trajectories.map((t) => [t.id, t.stimulusId]));
    for (const e of examples) expect(contains(e.studentPrompt, bakedPrompt)).toBe(false);
    // the student sees the stimulus's own prompt; the teacher's logits for it are the base's
    // under that prompt alone: equal to a teacher whose baked prompt is that same prompt
    const poetTeacher = prepareExamples(
      model,
      tokenizer,
      systemPrompt("You are a poet."),
      stimuli,
      trajectories,
      "forward-kl",
    );
    const ownIndex = examples.findIndex((_, i) => byId.get(trajectories[i]!.id) === "own");
    expect(ownIndex).toBeGreaterThanOrEqual(0);
    expect(Array.from(examples[ownIndex]!.teacherLogits!)).toEqual(
      Array.from(poetTeacher[ownIndex]!.teacherLogits!),
    );
    const plainIndex = examples.findIndex((_, i) => byId.get(trajectories[i]!.id) === "plain");
    expect(Array.from(examples[plainIndex]!.teacherLogits!)).not.toEqual(
      Array.from(poetTeacher[plainIndex]!.teacherLogits!),
    );
    model.dispose();
  }, 60_000);
});

describe("input.yml's BAKE section", () => {
  it("maps layers and progressive onto the bake's settings; a block list is checked by name", () => {
    expect(
      repositoryBakeSettings({ layers: "0-1,3", progressive: { from: 0.2 }, rank: 4 }),
    ).toEqual({
      progressive: { from: 0.2, fraction: 0.5 },
      lora: { r: 4, layers: [0, 1, 3] },
    });
    expect(repositoryBakeSettings({ layers: [2, 0] }).lora).toEqual({ layers: [0, 2] });
    expect(() => repositoryBakeSettings({ layers: "a-b" })).toThrow(/BAKE\.layers must be/);
  });
});

describe("half-baking you can apply", () => {
  it("halfBake at α writes a merged model equal to the scaled adapter; α = 0 is the base; a layer subset merges only those blocks", async () => {
    const bakeDir = path.join(dir, "hb-bake");
    const baseDir = path.join(dir, "hb-base");
    const base = newModel(11);
    await saveModel(base, baseDir, { tokenizer });
    await bakePrompt(base, tokenizer, {
      ...bakeOptions(bakeDir, {}),
      rollout: { samples: 2, maxNewTokens: 8, seed: 2 },
      baseModel: baseDir,
    });
    base.dispose();
    const ids = () => tf.tensor2d([tokenizer.encode("Who are you? Arr")], undefined, "int32");
    const logitsOf = (model: GPT) => {
      const x = ids();
      const out = Array.from(model.forward(x).dataSync());
      x.dispose();
      return out;
    };
    const maxGap = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
    const baseLogits = logitsOf((await loadModel(baseDir)).model);
    const baked = await loadBaked(bakeDir);
    const full = logitsOf(baked.model);
    expect(maxGap(full, baseLogits)).toBeGreaterThan(1e-3);

    const merged: number[][] = [];
    for (const alpha of [0, 0.5, 1]) {
      const out = path.join(dir, `hb-${alpha}`);
      const result = await halfBake(bakeDir, { alpha, out });
      expect(result.record).toMatchObject({ kind: "halfbake", alpha, form: "merged" });
      const loaded = await loadModel(out);
      expect(loaded.model.lora).toBeUndefined();
      merged.push(logitsOf(loaded.model));
      // the merged model equals the adapter at strength α
      baked.model.lora!.strength = alpha;
      expect(maxGap(merged.at(-1)!, logitsOf(baked.model))).toBeLessThan(1e-4);
      loaded.model.dispose();
    }
    expect(maxGap(merged[0]!, baseLogits)).toBeLessThan(1e-6);
    expect(maxGap(merged[2]!, full)).toBeLessThan(1e-4);
    // the half-baked model sits between: its distance to the base grows with α
    expect(maxGap(merged[1]!, baseLogits)).toBeGreaterThan(0);
    expect(maxGap(merged[1]!, baseLogits)).toBeLessThan(maxGap(merged[2]!, baseLogits));

    // the adapter form with its scale, on block 1 only, reloads as a bake
    const adapterOut = path.join(dir, "hb-adapter");
    await halfBake(bakeDir, { alpha: 0.5, layers: [1], form: "adapter", out: adapterOut });
    const peft = JSON.parse(readFileSync(path.join(adapterOut, "adapter_config.json"), "utf8"));
    expect(peft).toMatchObject({ forge_strength: 0.5, layers_to_transform: [1] });
    const again = await loadBaked(adapterOut);
    baked.model.lora!.strength = 0.5;
    baked.model.lora!.setActiveLayers([1]);
    expect(maxGap(logitsOf(again.model), logitsOf(baked.model))).toBeLessThan(1e-6);
    expect(maxGap(logitsOf(again.model), merged[1]!)).toBeGreaterThan(1e-5);

    // refused: a bad α, blocks the model lacks, an output forge did not make
    await expect(halfBake(bakeDir, { alpha: -1, out: path.join(dir, "x") })).rejects.toThrow(
      /alpha must be a number in \[0, 16\]/,
    );
    await expect(
      halfBake(bakeDir, { alpha: 1, layers: [0, 5], out: path.join(dir, "y") }),
    ).rejects.toThrow(/the model has 2 blocks \(0…1\); no block 5/);
    await expect(halfBake(bakeDir, { alpha: 1, out: baseDir })).rejects.toThrow(
      /is the input|already exists/,
    );
    // the strength curve on a layer subset: α = 1 on block 1 equals the block-1 half-bake at 1
    baked.model.lora!.setActiveLayers(undefined);
    baked.model.lora!.strength = 1;
    const curve = await strengthCurve(baked.model, [0, 1], (m) => logitsOf(m)[0]!, {
      layers: [1],
    });
    expect(curve[0]!.value).toBe(baseLogits[0]);
    baked.model.lora!.setActiveLayers([1]);
    expect(curve[1]!.value).toBeCloseTo(logitsOf(baked.model)[0]!, 5);
    baked.model.lora!.setActiveLayers(undefined);
    expect(baked.model.lora!.activeLayers).toBeUndefined();
    expect(parseLayers("0-1,3")).toEqual([0, 1, 3]);
    expect(() => parseLayers("1-0", "--layers")).toThrow(/--layers .* runs backwards/);
    for (const m of [baked.model, again.model]) m.dispose();
  }, 180_000);
});
