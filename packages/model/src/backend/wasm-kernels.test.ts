import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./select.js";
import { setWasmMatMulRouting } from "./wasm-kernels.js";

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

function product(
  aShape: number[],
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
  routed: boolean,
): Float32Array {
  setWasmMatMulRouting(routed);
  try {
    const result = tf.tidy(() => {
      const a = tf.randomNormal(aShape, 0, 1, "float32", 11);
      const b = tf.randomNormal(bShape, 0, 1, "float32", 12);
      return tf.matMul(a, b, transposeA, transposeB);
    });
    const values = result.dataSync() as Float32Array;
    result.dispose();
    return values;
  } finally {
    setWasmMatMulRouting(true);
  }
}

function maxRelativeError(actual: Float32Array, expected: Float32Array): number {
  let worst = 0;
  let scale = 1e-6;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / scale);
  }
  return worst;
}

describe("routed BatchMatMul on wasm", () => {
  const cases: Array<[string, number[], number[], boolean, boolean]> = [
    ["2-D plain", [64, 48], [48, 40], false, false],
    ["2-D transposeB (dx of a dense layer)", [64, 48], [40, 48], false, true],
    ["2-D transposeA (dW of a dense layer)", [48, 64], [48, 40], true, false],
    ["2-D both transposed", [48, 64], [40, 48], true, true],
    ["rank-3 × rank-2 (dense on [B,T,C])", [3, 32, 48], [48, 40], false, false],
    ["batched attention scores q·kᵀ", [6, 32, 16], [6, 32, 16], false, true],
    ["batched attention values p·v", [6, 32, 32], [6, 32, 16], false, false],
    ["batched transposeA (dk of attention)", [6, 32, 32], [6, 32, 16], true, false],
    ["rank-4 batches", [2, 3, 20, 16], [2, 3, 16, 24], false, false],
    ["shared left operand", [20, 16], [4, 16, 24], false, false],
    ["tiny product (stock loop)", [3, 4], [5, 4], false, true],
    ["single row (generation step)", [8, 1, 64], [8, 64, 96], false, false],
    ["single row, transposed keys", [8, 1, 64], [8, 96, 64], false, true],
  ];
  for (const [name, aShape, bShape, ta, tb] of cases) {
    it(`${name} equals the stock kernel`, () => {
      const routed = product(aShape, bShape, ta, tb, true);
      const stock = product(aShape, bShape, ta, tb, false);
      expect(routed.length).toBe(stock.length);
      expect(maxRelativeError(routed, stock)).toBeLessThan(1e-5);
    });
  }

  it("leaves no tensors or wasm allocations behind", () => {
    product([6, 32, 16], [6, 32, 16], false, true, true);
    const before = tf.memory().numTensors;
    const bytesBefore = tf.memory().numBytes;
    for (let i = 0; i < 5; i++) product([6, 32, 16], [6, 24, 32], true, true, true);
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytesBefore);
  });

  it("still reports mismatched inner dimensions", () => {
    expect(() => tf.tidy(() => tf.matMul(tf.ones([4, 5]), tf.ones([6, 7])))).toThrow(
      /inner shapes/,
    );
  });
});

describe("UnsortedSegmentSum on wasm (gradient of gather)", () => {
  it("sums rows into their segments and drops negative ids", () => {
    const out = tf.tidy(() =>
      tf
        .unsortedSegmentSum(
          tf.tensor2d([
            [1, 2],
            [3, 4],
            [5, 6],
            [7, 8],
          ]),
          tf.tensor1d([2, 0, 2, -1], "int32"),
          3,
        )
        .arraySync(),
    );
    expect(out).toEqual([
      [3, 4],
      [0, 0],
      [6, 8],
    ]);
  });

  it("rejects a segment id that is not below numSegments", () => {
    expect(() =>
      tf.tidy(() => tf.unsortedSegmentSum(tf.ones([2, 2]), tf.tensor1d([0, 5], "int32"), 3)),
    ).toThrow(/segment id 5 at position 1 is not below numSegments 3/);
  });

  it("trains an embedding + dense + softmax cross-entropy model: loss falls, tensor count flat", () => {
    const vocab = 16;
    const dim = 8;
    const embedding = tf.variable(tf.randomNormal([vocab, dim], 0, 0.1, "float32", 1));
    const dense = tf.variable(tf.randomNormal([dim, vocab], 0, 0.1, "float32", 2));
    const bias = tf.variable(tf.zeros([vocab]));
    // Learn "next token = (token + 1) mod vocab".
    const ids = tf.tensor1d(
      [...Array(64).keys()].map((i) => i % vocab),
      "int32",
    );
    const targets = tf.oneHot(
      tf.tensor1d(
        [...Array(64).keys()].map((i) => (i + 1) % vocab),
        "int32",
      ),
      vocab,
    );
    const optimizer = tf.train.adam(0.05);
    const step = () => {
      const cost = optimizer.minimize(
        () => {
          const hidden = tf.gather(embedding, ids); // [64, dim]
          const logits = tf.add(tf.matMul(hidden, dense), bias); // [64, vocab]
          return tf.losses.softmaxCrossEntropy(targets, logits);
        },
        true,
        [embedding, dense, bias],
      )!;
      const value = cost.dataSync()[0]!;
      cost.dispose();
      return value;
    };
    const first = step();
    const counts: number[] = [];
    let last = first;
    for (let i = 0; i < 40; i++) {
      last = step();
      counts.push(tf.memory().numTensors);
    }
    expect(last).toBeLessThan(first * 0.2);
    expect(new Set(counts.slice(1)).size).toBe(1);
    tf.dispose([embedding, dense, bias, ids, targets]);
    optimizer.dispose();
  });
});
