import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { loadModel } from "./checkpoint.js";
import {
  checkModelFits,
  describeLoadPlan,
  type LoadPlan,
  setLoadPlanListener,
  WASM_HEAP_LIMIT_BYTES,
} from "./memory.js";
import { writeSparseCheckpoint } from "./testing/sparse-checkpoint.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-memory-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

/** Llama-3.2-1B's shapes (1.24 B parameters, 4.9 GB as float32), stored BF16. */
const LLAMA_1B = {
  architecture: "llama" as const,
  vocabSize: 128_256,
  blockSize: 2048,
  nLayer: 16,
  nHead: 32,
  nEmbd: 2048,
  dropout: 0,
  bias: false,
  layerNormEpsilon: 1e-5,
  llama: {
    nKvHead: 8,
    headDim: 64,
    intermediateSize: 8192,
    ropeTheta: 500_000,
    ropeScaling: null,
    tieWordEmbeddings: true,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
  },
};

const plan = (weightBytes: number): LoadPlan => ({
  directory: "/models/m",
  parameters: weightBytes / 4,
  weightBytes,
  storedBytes: weightBytes / 2,
  dtypes: ["BF16"],
  files: ["/models/m/model.safetensors"],
});

describe("whether a model fits the backend", () => {
  it("wasm: 2.5× the float32 weights must fit its 4 GiB heap; the other backends have no ceiling", () => {
    const largest = Math.floor(WASM_HEAP_LIMIT_BYTES / 2.5);
    expect(() => checkModelFits(plan(largest - (largest % 4)), "wasm")).not.toThrow();
    expect(() => checkModelFits(plan(largest + 4), "wasm")).toThrow(/limited to 4 GiB/);
    expect(() => checkModelFits(plan(8e9), "tensorflow")).not.toThrow();
    expect(() => checkModelFits(plan(8e9), "cpu")).not.toThrow();
  });

  it("a Llama-3.2-1B-shaped checkpoint is refused on wasm from its headers, nothing allocated", async () => {
    const dir = path.join(scratch, "llama-1b");
    writeSparseCheckpoint(dir, LLAMA_1B);
    const file = path.join(dir, "model.safetensors");
    expect(statSync(file).size).toBeGreaterThan(2.4e9); // a hole: no disk behind it
    const tensors = tf.memory().numTensors;
    let seen: LoadPlan | undefined;
    const error = await loadModel(dir, { onPlan: (p) => (seen = p) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "E_TOO_LARGE", category: "input" });
    const message = (error as Error).message;
    expect(message).toContain(dir);
    expect(message).toContain("1.24 B parameters, 4.94 GB as float32");
    expect(message).toContain("limited to 4 GiB");
    expect(message).toContain("@tensorflow/tfjs-node");
    expect(tf.memory().numTensors).toBe(tensors);
    // the plan came first, from the headers
    expect(seen).toMatchObject({ directory: dir, parameters: 1_235_814_400, dtypes: ["BF16"] });
    expect(seen!.weightBytes).toBe(4 * 1_235_814_400);
    expect(seen!.storedBytes).toBe(2 * 1_235_814_400);
    expect(describeLoadPlan(seen!)).toBe(
      "1.24 B parameters, 4.94 GB as float32 (stored: 2.47 GB BF16 in 1 file)",
    );
  });

  it("the same checkpoint passes the check for native TensorFlow (its plan is what is refused, not the file)", async () => {
    const dir = path.join(scratch, "llama-1b");
    // checked against tensorflow the plan fits; the load then reads the weights, which this
    // sparse file does not have — stop it at the plan
    const stop = new Error("stop after the plan");
    const error = await loadModel(dir, {
      backend: "tensorflow",
      onPlan: () => {
        throw stop;
      },
    }).catch((e: unknown) => e);
    expect(error).toBe(stop);
    expect(() =>
      checkModelFits({ ...plan(4 * 1_235_814_400), directory: dir }, "tensorflow"),
    ).not.toThrow();
  });

  it("a process-wide listener hears every load that passes no onPlan of its own", async () => {
    const dir = path.join(scratch, "llama-1b");
    const heard: LoadPlan[] = [];
    setLoadPlanListener((p) => heard.push(p));
    try {
      await expect(loadModel(dir)).rejects.toThrow(/limited to 4 GiB/);
      await expect(loadModel(dir, { onPlan: () => {} })).rejects.toThrow(/limited to 4 GiB/);
    } finally {
      setLoadPlanListener(undefined);
    }
    expect(heard.map((p) => p.parameters)).toEqual([1_235_814_400]);
  });
});
