/**
 * The A/B cycle engine: the plateau detector on flat, noisy, improving and oscillating
 * histories; cycles that switch kind and stop on plateau; self-guided persona discovery with a
 * seeded model; and a run killed after a cycle that resumes where it stopped.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mulberry32 } from "@forge/core";
import { type GPT, initBackend, GPT as Model, saveModel } from "@forge/model";
import { type Tokenizer, train as trainTokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CYCLE_STATE_FILE,
  type CycleEvent,
  type CycleOptions,
  detectPlateau,
  personaCandidates,
  runCycles,
} from "./cycle.js";

describe("detectPlateau", () => {
  it("flat: a plateau as soon as there is enough history", () => {
    expect(detectPlateau([0.5, 0.5]).enough).toBe(false);
    const v = detectPlateau([0.5, 0.5, 0.5]);
    expect(v).toMatchObject({ enough: true, plateau: true, improvement: 0, threshold: 0.01 });
  });

  it("improving steadily: no plateau, and the trend does not raise the threshold", () => {
    const v = detectPlateau([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    expect(v.plateau).toBe(false);
    expect(v.noise).toBeCloseTo(0, 12);
    expect(v.improvement).toBeCloseTo(0.2, 12); // best of the last 2 over the best before
    // a slower trend below minDelta is a plateau
    expect(detectPlateau([0.5, 0.502, 0.504, 0.506]).plateau).toBe(true);
  });

  it("noisy but flat: the adaptive threshold grows with the noise, so noise is not improvement", () => {
    const random = mulberry32(3);
    const noisy = Array.from({ length: 10 }, () => 0.5 + (random() - 0.5) * 0.1);
    noisy.push(Math.max(...noisy) + 0.015); // a new best by 1.5 points: within the noise
    const v = detectPlateau(noisy, { window: 1 });
    expect(v.noise).toBeGreaterThan(0.02);
    expect(v.threshold).toBe(v.noise);
    expect(v.improvement).toBeGreaterThan(0.01); // above minDelta…
    expect(v.plateau).toBe(true); // …but not above the noise
    // the same step on a quiet history is an improvement
    expect(detectPlateau([0.5, 0.5, 0.5, 0.515], { window: 1 }).plateau).toBe(false);
  });

  it("oscillating: a plateau (the recent best does not beat the earlier best)", () => {
    const v = detectPlateau([0.2, 0.6, 0.2, 0.6, 0.2, 0.6]);
    expect(v.plateau).toBe(true);
    expect(v.improvement).toBeCloseTo(0, 12);
    expect(v.noise).toBeGreaterThan(0.1);
  });

  it("a noisy improving trend is not a plateau", () => {
    const random = mulberry32(9);
    const h = Array.from({ length: 8 }, (_, i) => 0.1 * i + (random() - 0.5) * 0.02);
    expect(detectPlateau(h).plateau).toBe(false);
  });

  it("refuses bad options and non-finite scores", () => {
    expect(() => detectPlateau([1, 2], { window: 0 })).toThrow(/window must be a positive integer/);
    expect(() => detectPlateau([1, Number.NaN])).toThrow(/finite/);
  });
});

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-cycle-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
const modelDir = path.join(dir, "base");

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const corpus = Array.from(
    { length: 200 },
    (_, i) =>
      `What is ${i % 7} + 2? The answer is ${(i % 7) + 2}. Arr matey, a cheerful pirate. Describe your personality.`,
  );
  tokenizer = trainTokenizer(corpus, { vocabSize: 300 });
  const model = Model.create(
    { vocabSize: tokenizer.vocabSize, blockSize: 96, nLayer: 2, nHead: 2, nEmbd: 32 },
    { seed: 2 },
  );
  await saveModel(model, modelDir, { tokenizer });
  model.dispose();
});

/** exp(−mean NLL) of `reply` after `question` (prompted with `system`): a real model score. */
function likelihood(model: GPT, tok: Tokenizer, question: string, reply: string, system?: string) {
  const prefix = tok.promptIds([
    ...(system ? [{ role: "system" as const, content: system }] : []),
    { role: "user" as const, content: question },
  ]);
  const target = tok.encode(reply);
  const ids = [...prefix, ...target];
  return tf.tidy(() => {
    const logits = model.forward(tf.tensor2d([ids.slice(0, -1)], undefined, "int32"));
    const logp = tf.logSoftmax(logits).arraySync() as number[][][];
    let nll = 0;
    target.forEach((t, i) => {
      nll -= logp[0]![prefix.length - 1 + i]![t]!;
    });
    return Math.exp(-nll / target.length);
  });
}

const options = (out: string, extra: Partial<CycleOptions> = {}): CycleOptions => ({
  modelDir,
  tasks: [
    { name: "sums", prompt: "Answer sums: the answer is the sum." },
    { name: "sums-2", prompt: "You add numbers." },
  ],
  taskEvaluator: (model, tok) => likelihood(model, tok, "What is 3 + 2?", "The answer is 5."),
  personaEvaluator: (model, tok, system) =>
    likelihood(model, tok, "Who are you?", "Arr matey, a cheerful pirate.", system),
  personaPrompt: "You are a pirate.",
  discovery: { traits: 3, maxNewTokens: 8 },
  maxCycles: 8,
  plateau: { window: 1, minDelta: 0.02 },
  bake: {
    stim: [{ type: "list", items: ["What is 3 + 2?", "Who are you?", "Say hello."] }],
    rollout: { samples: 2, maxNewTokens: 8, seed: 2 },
    bake: { epochs: 2, batchSize: 8, learningRate: 5e-3, validationFraction: 0, seed: 3 },
    measure: false,
  },
  out,
  seed: 5,
  ...extra,
});

describe("runCycles", () => {
  it("runs A-cycles until they plateau, switches to B-cycles, and stops when both have", async () => {
    const out = path.join(dir, "run");
    const events: CycleEvent[] = [];
    const result = await runCycles({ ...options(out), onEvent: (e) => events.push(e) });
    expect(result.cycles[0]!.kind).toBe("A");
    expect(result.switches.length).toBeGreaterThanOrEqual(1);
    const first = result.switches[0]!;
    expect(result.cycles[first - 1]!.plateau.plateau).toBe(true);
    expect(result.cycles[first]!.kind).toBe("B");
    expect(result.stopReason).toBe("plateau");
    expect(result.plateaued).toEqual({ A: true, B: true });
    expect(result.cycles.at(-1)!.plateau.plateau).toBe(true);
    expect(events.filter((e) => e.type === "switch").length).toBe(result.switches.length);
    // every cycle's model is kept with its lineage; the state file has the whole history
    for (const c of result.cycles) {
      const forge = JSON.parse(
        readFileSync(path.join(out, `cycle-${c.cycle}`, "model", "forge.json"), "utf8"),
      );
      expect(forge).toMatchObject({ kind: "cycle", cycle: c.cycle, cycleKind: c.kind });
      expect(forge.lineage).toHaveLength(c.cycle);
    }
    const state = JSON.parse(readFileSync(path.join(out, CYCLE_STATE_FILE), "utf8"));
    expect(state.cycles).toHaveLength(result.cycles.length);
    // B-cycles: the seed prompt and the model's own traits were scored; the best was baked
    const b = result.cycles.find((c) => c.kind === "B")!;
    expect(b.candidates![0]!.prompt).toBe("You are a pirate.");
    expect(b.candidates!.length).toBeGreaterThan(1);
    const best = b.candidates!.reduce((x, y) => (y.score > x.score ? y : x));
    expect(b.prompt).toBe(best.prompt);
  }, 600_000);

  it("self-guided discovery is deterministic under a seed; candidates come from the model's traits", async () => {
    expect(
      personaCandidates("You are a pirate.", ["  bold and loud!  ", "", "bold and loud"]),
    ).toEqual(["You are a pirate.", "You are a pirate. Bold and loud."]);
    const once = async (out: string) =>
      (
        await runCycles({
          ...options(out),
          tasks: [{ name: "t", prompt: "x" }],
          maxCycles: 1,
          plateau: { window: 1, minDelta: 10 },
        })
      ).cycles;
    // minDelta 10: the first A-cycle plateaus at once, so cycle 2 would be B; run 2 cycles twice
    const twice = async (out: string) =>
      (await runCycles({ ...options(out), maxCycles: 2, plateau: { window: 1, minDelta: 10 } }))
        .cycles[1]!;
    const x = await twice(path.join(dir, "seeded-1"));
    const y = await twice(path.join(dir, "seeded-2"));
    expect(x.kind).toBe("B");
    expect(x.candidates).toEqual(y.candidates);
    expect(x.candidates!.length).toBeGreaterThan(1);
    expect((await once(path.join(dir, "seeded-3")))[0]!.kind).toBe("A");
  }, 600_000);

  it("a run killed after a cycle resumes from the last finished cycle", async () => {
    const out = path.join(dir, "killed");
    await expect(
      runCycles({
        ...options(out),
        onEvent: (e) => {
          if (e.type === "cycle-end" && e.record.cycle === 1) throw new Error("killed");
        },
      }),
    ).rejects.toThrow(/killed/);
    const saved = JSON.parse(readFileSync(path.join(out, CYCLE_STATE_FILE), "utf8"));
    expect(saved.cycles).toHaveLength(1);
    const started: number[] = [];
    const result = await runCycles({
      ...options(out),
      resume: true,
      onEvent: (e) => {
        if (e.type === "cycle-start") started.push(e.cycle);
      },
    });
    expect(started[0]).toBe(2);
    expect(result.cycles.slice(0, 1)).toEqual(saved.cycles);
    expect(result.stopReason).toBe("plateau");
    expect(existsSync(path.join(out, "cycle-2", "model", "forge.json"))).toBe(true);
    await expect(
      runCycles({ ...options(out), modelDir: path.join(dir, "other"), resume: true }),
    ).rejects.toThrow(/is a cycle run from .*start over/);
  }, 600_000);
});
