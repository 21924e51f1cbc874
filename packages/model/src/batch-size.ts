/**
 * Choosing a batch size by measuring, not by table: a few real training steps of the model at
 * batch sizes 1, 2, 4, … until the next size would not fit the memory budget, or the last one
 * stopped buying throughput (less than `minGain` more tokens per second). The CPU analogue of a
 * GPU-memory table, with every measurement returned so a manifest can state how it was chosen.
 */
import os from "node:os";
import { Rng } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import type { GPTConfig } from "./config.js";
import type { BatchSource, LmBatch } from "./data.js";
import { GPT } from "./gpt.js";
import { lmTask, trainModel } from "./train.js";

export interface BatchProbe {
  batchSize: number;
  tokensPerSecond: number;
  /**
   * Memory the steps needed: the process's resident size after them, above where it stood
   * before the first probe (the wasm heap grows to the high-water mark and stays there).
   */
  memoryBytes: number;
}

export interface BatchChoice {
  batchSize: number;
  /** Why the search stopped there. */
  reason: "throughput" | "memory" | "largest candidate";
  budgetBytes: number;
  probes: BatchProbe[];
}

export interface ChooseBatchOptions {
  /** Sizes to try, in order (default 1, 2, 4, … 64). */
  candidates?: number[];
  /** Memory the run may use (default: half the free memory). */
  budgetBytes?: number;
  /** Timed steps per size, after one warm-up step (default 2). */
  steps?: number;
  /** Smallest relative throughput gain worth a doubling (default 0.05). */
  minGain?: number;
  seed?: number;
}

/** Random full-length batches (the probe measures speed and memory, not learning). */
function randomBatches(config: GPTConfig, batchSize: number, seed: number): BatchSource<LmBatch> {
  const rng = new Rng(seed);
  const t = config.blockSize;
  return {
    next() {
      const ids = Int32Array.from({ length: batchSize * (t + 1) }, () => rng.int(config.vocabSize));
      const rows = Array.from({ length: batchSize }, (_, b) =>
        ids.subarray(b * (t + 1), (b + 1) * (t + 1)),
      );
      return {
        ids: tf.tensor2d(
          rows.flatMap((r) => [...r.subarray(0, t)]),
          [batchSize, t],
          "int32",
        ),
        targets: tf.tensor2d(
          rows.flatMap((r) => [...r.subarray(1)]),
          [batchSize, t],
          "int32",
        ),
        tokens: batchSize * t,
      };
    },
    state: () => rng.snapshot,
    restore: () => undefined,
  };
}

export async function chooseBatchSize(
  config: GPTConfig,
  options: ChooseBatchOptions = {},
): Promise<BatchChoice> {
  const candidates = options.candidates ?? [1, 2, 4, 8, 16, 32, 64];
  const budgetBytes = options.budgetBytes ?? os.freemem() / 2;
  const steps = options.steps ?? 2;
  const minGain = options.minGain ?? 0.05;
  const probes: BatchProbe[] = [];
  const baseline = process.memoryUsage().rss;
  for (const batchSize of candidates) {
    const model = GPT.create(config, { seed: options.seed ?? 1 });
    let tokensPerSecond = 0;
    try {
      await trainModel(
        lmTask(model, randomBatches(config, batchSize, options.seed ?? 1)),
        { steps: steps + 1, learningRate: 1e-4, warmupSteps: 0, evalEvery: 0, checkpointEvery: 0 },
        {
          onEvent: (event) => {
            if (event.type === "step-end" && event.step > 1)
              tokensPerSecond = event.tokensPerSecond;
          },
        },
      );
    } finally {
      model.dispose();
    }
    const memoryBytes = Math.max(0, process.memoryUsage().rss - baseline);
    probes.push({ batchSize, tokensPerSecond, memoryBytes });
    const previous = probes.at(-2);
    if (previous && tokensPerSecond < previous.tokensPerSecond * (1 + minGain))
      return { batchSize: previous.batchSize, reason: "throughput", budgetBytes, probes };
    // activations grow with the batch: the next size needs about twice this one's extra memory
    const next = candidates[candidates.indexOf(batchSize) + 1];
    if (next !== undefined && memoryBytes * (next / batchSize) > budgetBytes)
      return { batchSize, reason: "memory", budgetBytes, probes };
  }
  return { batchSize: candidates.at(-1)!, reason: "largest candidate", budgetBytes, probes };
}
