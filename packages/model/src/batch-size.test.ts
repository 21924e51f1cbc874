import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { chooseBatchSize } from "./batch-size.js";
import { resolveConfig } from "./config.js";

const config = resolveConfig(
  {
    nLayer: 1,
    nHead: 2,
    nEmbd: 32,
    blockSize: 32,
    vocabSize: 128,
    dropout: 0,
    bias: true,
    layerNormEpsilon: 1e-5,
  },
  "test",
);

beforeAll(async () => {
  await initBackend();
  // the first training step anywhere caches one tensor for the process: count after it
  await chooseBatchSize(config, { candidates: [1], steps: 1 });
});

describe("chooseBatchSize", () => {
  it("measures real steps at each size and says why it stopped; the tensor count is flat", async () => {
    const before = tf.memory().numTensors;
    const choice = await chooseBatchSize(config, { candidates: [1, 2, 4], steps: 1, minGain: 0 });
    expect(tf.memory().numTensors).toBe(before);
    if (choice.reason === "largest candidate")
      expect(choice.probes.map((p) => p.batchSize)).toEqual([1, 2, 4]);
    for (const probe of choice.probes) {
      expect(probe.tokensPerSecond).toBeGreaterThan(0);
      expect(probe.memoryBytes).toBeGreaterThanOrEqual(0);
    }
    expect(choice.probes.map((p) => p.batchSize)).toContain(choice.batchSize);
    expect(["throughput", "memory", "largest candidate"]).toContain(choice.reason);
  });

  it("stops at the first size whose memory, scaled to the next size, exceeds the budget", async () => {
    // a budget of 1 byte: any measured growth stops the search at that size
    const choice = await chooseBatchSize(config, {
      candidates: [1, 2, 4, 8, 16],
      budgetBytes: 1,
      steps: 1,
      minGain: -1,
    });
    const last = choice.probes.at(-1)!;
    expect(choice.batchSize).toBe(last.batchSize);
    for (const earlier of choice.probes.slice(0, -1)) expect(earlier.memoryBytes).toBe(0);
    expect(choice.reason).toBe(last.memoryBytes > 0 ? "memory" : "largest candidate");
  });

  it("stops when a doubling no longer buys throughput", async () => {
    // asking for a 1000× gain per doubling: the second size never earns it
    const choice = await chooseBatchSize(config, {
      candidates: [1, 2, 4],
      minGain: 1000,
      steps: 1,
      budgetBytes: 2 ** 40,
    });
    expect(choice).toMatchObject({ batchSize: 1, reason: "throughput" });
    expect(choice.probes).toHaveLength(2);
  });
});
