import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import {
  type BatchSource,
  type LmBatch,
  openTokenCache,
  PretrainSampler,
  TokenCacheWriter,
} from "./data.js";
import { GPT } from "./gpt.js";
import { attachLora } from "./lora.js";
import { learningRateAt } from "./optimizer.js";
import { fixedBatches, lmTask, type TrainEvent, trainModel } from "./train.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-train-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = { vocabSize: 48, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 };

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const writer = new TokenCacheWriter(path.join(dir, "cache"), { kind: "pretrain", vocabSize: 48 });
  // a learnable stream: counting mod 40 with occasional resets
  writer.append(Array.from({ length: 4000 }, (_, i) => (i % 97 < 3 ? 47 : (i * 3) % 40)));
  writer.close();
});

async function sampler(seed = 1): Promise<PretrainSampler> {
  return new PretrainSampler([{ cache: await openTokenCache(path.join(dir, "cache")) }], {
    batchSize: 4,
    blockSize: 16,
    seed,
  });
}

/** The same batch forever (for overfitting). */
function repeat(batch: LmBatch): BatchSource<LmBatch> {
  return {
    next: () => ({ ids: batch.ids.clone(), targets: batch.targets.clone(), tokens: batch.tokens }),
    state: () => null,
    restore: () => undefined,
  };
}

const settings = {
  learningRate: 3e-3,
  minLearningRate: 3e-4,
  warmupSteps: 5,
  evalEvery: 0,
  weightDecay: 0.01,
  seed: 9,
};

describe("trainModel", () => {
  it("overfits a tiny batch: loss near zero, tensor count flat across 50 steps", async () => {
    const model = GPT.create(config, { seed: 1 });
    const batch = (await sampler()).next();
    const counts: number[] = [];
    const result = await trainModel(
      lmTask(model, repeat(batch)),
      { ...settings, steps: 120, warmupSteps: 10, learningRate: 1e-2, minLearningRate: 1e-3 },
      {
        onEvent: (e) => {
          if (e.type === "step-end" && e.step > 10 && e.step <= 60)
            counts.push(tf.memory().numTensors);
        },
      },
    );
    expect(result.history[0]!.loss).toBeGreaterThan(3);
    expect(result.finalLoss).toBeLessThan(0.1);
    expect(new Set(counts).size).toBe(1);
    tf.dispose([batch.ids, batch.targets]);
    model.dispose();
  });

  it("resume after a crash reproduces the uninterrupted loss curve exactly", async () => {
    const straight = GPT.create(config, { seed: 2 });
    const full = await trainModel(lmTask(straight, await sampler(3)), { ...settings, steps: 20 });
    straight.dispose();

    const checkpointDir = path.join(dir, "ckpt-resume");
    const crashing = GPT.create(config, { seed: 2 });
    const crash = trainModel(
      lmTask(crashing, await sampler(3)),
      { ...settings, steps: 20, checkpointEvery: 5 },
      {
        checkpointDir,
        onEvent: (e) => {
          if (e.type === "step-end" && e.step === 8) throw new Error("killed");
        },
      },
    );
    await expect(crash).rejects.toThrow("killed");
    crashing.dispose();
    const state = JSON.parse(
      readFileSync(path.join(checkpointDir, "last", "trainer_state.json"), "utf8"),
    );
    expect(state.step).toBe(5);

    const resumed = GPT.create(config, { seed: 99 }); // different init: the checkpoint must overwrite it
    const result = await trainModel(
      lmTask(resumed, await sampler(3)),
      { ...settings, steps: 20, checkpointEvery: 5 },
      {
        checkpointDir,
        resume: true,
      },
    );
    expect(result.resumedFrom).toBe(5);
    expect(result.history.map((h) => h.loss)).toEqual(full.history.map((h) => h.loss));
    resumed.dispose();
  });

  it("evaluates, keeps the best checkpoint, and stops early when validation stops improving", async () => {
    const model = GPT.create(config, { seed: 4 });
    const validation = fixedBatches(await sampler(77), 2);
    const events: TrainEvent[] = [];
    const checkpointDir = path.join(dir, "ckpt-early");
    const result = await trainModel(
      lmTask(model, await sampler(5), { batches: validation }),
      {
        ...settings,
        steps: 400,
        evalEvery: 5,
        learningRate: 0.05,
        minLearningRate: 0.05,
        earlyStopping: { patience: 2, minDelta: 0.5 },
      },
      { checkpointDir, onEvent: (e) => events.push(e) },
    );
    expect(result.reason).toBe("early-stopped");
    expect(result.step).toBeLessThan(400);
    expect(events.some((e) => e.type === "early-stop")).toBe(true);
    expect(events.filter((e) => e.type === "eval-end").length).toBeGreaterThanOrEqual(3);
    expect(existsSync(path.join(checkpointDir, "best", "weights.safetensors"))).toBe(true);
    const best = JSON.parse(
      readFileSync(path.join(checkpointDir, "best", "trainer_state.json"), "utf8"),
    );
    expect(best.step).toBe(result.bestStep);
    for (const b of validation) tf.dispose([b.ids, b.targets]);
    model.dispose();
  });

  it("a non-finite loss stops training with an error naming the last good checkpoint, which stays intact", async () => {
    const model = GPT.create(config, { seed: 6 });
    const checkpointDir = path.join(dir, "ckpt-nan");
    const base = lmTask(model, await sampler(6));
    let calls = 0;
    const task = {
      ...base,
      loss: (batch: LmBatch, context: { training: boolean; seed: number }) => {
        calls++;
        const loss = base.loss(batch, context);
        return calls >= 7 ? (tf.mul(loss, Number.NaN) as tf.Scalar) : loss;
      },
    };
    const error = await trainModel(
      task,
      { ...settings, steps: 20, checkpointEvery: 3 },
      { checkpointDir },
    ).catch((e: unknown) => e);
    expect((error as Error).message).toBe(
      `the training loss is NaN at step 7; training stopped (a lower learning rate usually helps). Last good checkpoint: ${path.join(checkpointDir, "last")} (step 6)`,
    );
    expect(exitCodeFor(error)).toBe(1); // did not converge: a failed check, not bad input
    const state = JSON.parse(
      readFileSync(path.join(checkpointDir, "last", "trainer_state.json"), "utf8"),
    );
    expect(state.step).toBe(6);
    model.dispose();
  });

  it("gradient accumulation of two half batches matches one full batch", async () => {
    const full = await sampler(8);
    const batch = full.next();
    const halves = [0, 1].map((h) => ({
      ids: batch.ids.slice([h * 2, 0], [2, 16]) as tf.Tensor2D,
      targets: batch.targets.slice([h * 2, 0], [2, 16]) as tf.Tensor2D,
      tokens: 32,
    }));
    let i = 0;
    const alternating: BatchSource<LmBatch> = {
      next: () => {
        const half = halves[i++ % 2]!;
        return { ids: half.ids.clone(), targets: half.targets.clone(), tokens: 32 };
      },
      state: () => null,
      restore: () => undefined,
    };
    const a = GPT.create(config, { seed: 7 });
    const b = GPT.create(config, { seed: 7 });
    await trainModel(lmTask(a, repeat(batch)), { ...settings, steps: 3 });
    await trainModel(lmTask(b, alternating), { ...settings, steps: 3, gradAccumulation: 2 });
    const wa = a.param("h.0.attn.c_attn.weight").dataSync();
    const wb = b.param("h.0.attn.c_attn.weight").dataSync();
    wa.forEach((v, k) => {
      expect(Math.abs(v - wb[k]!)).toBeLessThan(1e-5);
    });
    a.dispose();
    b.dispose();
  });

  it("with a LoRA adapter only the adapter changes", async () => {
    const model = GPT.create(config, { seed: 8 });
    const before = model.param("h.0.attn.c_attn.weight").dataSync().slice();
    attachLora(model, { r: 4 });
    await trainModel(lmTask(model, await sampler(9)), { ...settings, steps: 5, weightDecay: 0 });
    expect(model.param("h.0.attn.c_attn.weight").dataSync()).toEqual(before);
    expect(
      Math.max(...model.lora!.b.get("h.0.attn.c_attn")!.dataSync().map(Math.abs)),
    ).toBeGreaterThan(0);
    model.dispose();
  });

  it("rejects nonsense settings", async () => {
    const model = GPT.create(config);
    await expect(trainModel(lmTask(model, await sampler()), { steps: 0 })).rejects.toThrow(
      "steps must be a positive integer; got 0",
    );
    await expect(trainModel(lmTask(model, await sampler()), { learningRate: -1 })).rejects.toThrow(
      /learningRate must be positive/,
    );
    model.dispose();
  });
});

describe("learning-rate schedule", () => {
  it("warms up linearly, decays by cosine to the floor, then stays there", () => {
    const s = { learningRate: 1, minLearningRate: 0.1, warmupSteps: 10, decaySteps: 110 };
    expect(learningRateAt(0, s)).toBeCloseTo(1 / 11);
    expect(learningRateAt(9, s)).toBeCloseTo(10 / 11);
    expect(learningRateAt(10, s)).toBeCloseTo(1);
    expect(learningRateAt(60, s)).toBeCloseTo(0.55);
    expect(learningRateAt(110, s)).toBe(0.1);
    expect(learningRateAt(500, s)).toBe(0.1);
  });
});
