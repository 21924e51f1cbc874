import * as tf from "@tensorflow/tfjs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { generate } from "../generate.js";
import { GPT } from "../gpt.js";
import { attachLora } from "../lora.js";
import {
  causalSoftmax,
  crossEntropyRows,
  fromHeads,
  fusedCausalAttention,
  gelu,
  layerNorm,
  linear,
  setFusedInference,
  setHandWrittenGradients,
  toHeads,
} from "./fused.js";
import { initBackend } from "./select.js";
import { activeNativeGemm, FUSED_GELU_MAX_ELEMENTS, setNativeGemm } from "./wasm-kernels.js";

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});
afterEach(() => {
  setHandWrittenGradients(true);
  setFusedInference(true);
});

function compare(fn: () => { value: tf.Tensor; grads: tf.Tensor[] }, tolerance = 1e-5): void {
  setHandWrittenGradients(true);
  const fast = fn();
  setHandWrittenGradients(false);
  const plain = fn();
  setHandWrittenGradients(true);
  const pairs: Array<[tf.Tensor, tf.Tensor]> = [
    [fast.value, plain.value],
    ...fast.grads.map((g, i) => [g, plain.grads[i]!] as [tf.Tensor, tf.Tensor]),
  ];
  for (const [a, b] of pairs) {
    expect(a.shape).toEqual(b.shape);
    const x = a.dataSync();
    const y = b.dataSync();
    let scale = 1e-3;
    for (const v of y) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < x.length; i++)
      expect(Math.abs(x[i]! - y[i]!) / scale).toBeLessThan(tolerance);
  }
  tf.dispose([fast.value, plain.value, ...fast.grads, ...plain.grads]);
}

function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]) {
  const g = tf.valueAndGrads(f as (...xs: tf.Tensor[]) => tf.Scalar);
  const { value, grads } = g(inputs, undefined);
  return { value, grads };
}

describe("hand-written gradients equal tfjs autodiff of the plain compositions", () => {
  const x = tf.randomNormal([64, 24], 0, 2, "float32", 1) as tf.Tensor2D;
  const w = tf.randomNormal([24, 40], 0, 0.3, "float32", 2) as tf.Tensor2D;
  const b = tf.randomNormal([40], 0, 0.3, "float32", 3) as tf.Tensor1D;
  const g = tf.randomNormal([24], 1, 0.2, "float32", 4);
  const beta = tf.randomNormal([24], 0, 0.2, "float32", 5);
  const weights = tf.randomNormal([64, 40], 0, 1, "float32", 6);

  // on the native addon where it is loaded (both passes in one kernel each), and without it
  it("GELU", () =>
    compare(() =>
      valueAndGrads((a) => tf.sum(tf.mul(gelu(a!), weights.slice([0, 0], [64, 24]))), [x]),
    ));
  it("causal softmax on the native addon equals the masked tfjs softmax, value and gradient", () => {
    for (const [t, tk] of [
      [7, 7],
      [5, 9], // cached keys before the queries
      [33, 33],
    ] as const) {
      const scores = tf.randomNormal([2, 3, t, tk], 0, 4, "float32", t + tk) as tf.Tensor4D;
      const mix = tf.randomNormal([2, 3, t, tk], 0, 1, "float32", 7);
      const run = () =>
        valueAndGrads((a) => tf.sum(tf.mul(causalSoftmax(a as tf.Tensor4D), mix)), [scores]);
      const probabilities = () => causalSoftmax(scores);
      setFusedInference(true);
      const fast = run();
      const p = probabilities();
      setFusedInference(false);
      const plain = run();
      const q = probabilities();
      setFusedInference(true);
      for (const [a, b] of [
        [fast.value, plain.value],
        [fast.grads[0]!, plain.grads[0]!],
        [p, q],
      ] as const) {
        expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-5);
      }
      // masked positions are exactly zero; each row sums to 1
      const values = p.arraySync() as number[][][][];
      for (let i = 0; i < t; i++) {
        const row = values[1]![2]![i]!;
        for (let j = i + tk - t + 1; j < tk; j++) expect(row[j]).toBe(0);
        expect(Math.abs(row.reduce((x, y) => x + y, 0) - 1)).toBeLessThan(1e-6);
      }
      tf.dispose([scores, mix, fast.value, plain.value, ...fast.grads, ...plain.grads, p, q]);
    }
  });
  it("causal self-attention on the native addon equals the head-split composition, value and gradients", (context) => {
    if (!activeNativeGemm()) context.skip();
    // [batch, time, heads, key/value heads, head size]: GPT-2's (the third splits its 16
    // sequence-heads across the pool), grouped-query and multi-query attention
    for (const [batch, time, heads, kvHeads, hd] of [
      [2, 7, 3, 3, 4],
      [3, 33, 2, 2, 12],
      [4, 128, 4, 4, 8],
      [2, 19, 4, 2, 8],
      [2, 9, 6, 1, 4],
    ] as const) {
      const rows = batch * time;
      const [q, k, v] = [heads, kvHeads, kvHeads].map(
        (h, i) => tf.randomNormal([rows, h * hd], 0, 1.5, "float32", i + time) as tf.Tensor2D,
      ) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
      const mix = tf.randomNormal([rows, heads * hd], 0, 1, "float32", 9);
      // each key/value head serves heads / kvHeads consecutive query heads
      const shared = (t: tf.Tensor2D) =>
        toHeads(t, time, kvHeads)
          .reshape([batch, kvHeads, 1, time * hd])
          .tile([1, 1, heads / kvHeads, 1])
          .reshape([batch, heads, time, hd]) as tf.Tensor4D;
      const composition = (a: tf.Tensor2D, b: tf.Tensor2D, c: tf.Tensor2D) => {
        const qh = toHeads(tf.mul(a, 1 / Math.sqrt(hd)) as tf.Tensor2D, time, heads);
        const scores = tf.matMul(qh, shared(b), false, true) as tf.Tensor4D;
        return fromHeads(tf.matMul(causalSoftmax(scores), shared(c)));
      };
      let fused = 0;
      // hand-written: the fused kernels; tfjs' gradients: the composition
      compare(() =>
        valueAndGrads(
          (a, b, c) => {
            const y = fusedCausalAttention(
              a as tf.Tensor2D,
              b as tf.Tensor2D,
              c as tf.Tensor2D,
              batch,
              heads,
              kvHeads,
            );
            if (y) fused++;
            return tf.sum(
              tf.mul(y ?? composition(a as tf.Tensor2D, b as tf.Tensor2D, c as tf.Tensor2D), mix),
            );
          },
          [q, k, v],
        ),
      );
      expect(fused).toBe(1);
      tf.dispose([q, k, v, mix]);
    }
  });
  it("GELU without the native addon", () => {
    const addon = activeNativeGemm();
    setNativeGemm(undefined);
    try {
      compare(() =>
        valueAndGrads((a) => tf.sum(tf.mul(gelu(a!), weights.slice([0, 0], [64, 24]))), [x]),
      );
    } finally {
      setNativeGemm(addon);
    }
  });
  it("LayerNorm with bias", () =>
    compare(() =>
      valueAndGrads(
        (a, gg, bb) =>
          tf.sum(
            tf.mul(layerNorm(a as tf.Tensor2D, gg!, bb, 1e-5), weights.slice([0, 0], [64, 24])),
          ),
        [x, g, beta],
      ),
    ));
  it("LayerNorm without bias", () =>
    compare(() =>
      valueAndGrads(
        (a, gg) =>
          tf.sum(
            tf.mul(
              layerNorm(a as tf.Tensor2D, gg!, undefined, 1e-5),
              weights.slice([0, 0], [64, 24]),
            ),
          ),
        [x, g],
      ),
    ));
  it("LayerNorm with and without bias, without the native addon", () => {
    const addon = activeNativeGemm();
    setNativeGemm(undefined);
    try {
      for (const withBias of [true, false])
        compare(() =>
          valueAndGrads(
            (a, gg, bb) =>
              tf.sum(
                tf.mul(
                  layerNorm(a as tf.Tensor2D, gg!, withBias ? bb : undefined, 1e-5),
                  weights.slice([0, 0], [64, 24]),
                ),
              ),
            withBias ? [x, g, beta] : [x, g],
          ),
        );
    } finally {
      setNativeGemm(addon);
    }
  });
  it("linear", () =>
    compare(() =>
      valueAndGrads(
        (a, ww, bb) =>
          tf.sum(tf.mul(linear(a as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D), weights)),
        [x, w, b],
      ),
    ));
  it("cross-entropy", () => {
    const targets = tf.tensor1d(
      Array.from({ length: 64 }, (_, i) => (i * 7) % 40),
      "int32",
    );
    compare(() =>
      valueAndGrads(
        (logits) =>
          tf.sum(
            tf.mul(crossEntropyRows(logits as tf.Tensor2D, targets), tf.linspace(0.5, 1.5, 64)),
          ),
        [tf.matMul(x, w)],
      ),
    );
  });

  const llama = {
    architecture: "llama",
    vocabSize: 50,
    blockSize: 12,
    nLayer: 2,
    nHead: 4,
    nEmbd: 16,
    dropout: 0,
    bias: false,
    layerNormEpsilon: 1e-5,
    llama: {
      nKvHead: 2,
      headDim: 4,
      intermediateSize: 24,
      ropeTheta: 10_000,
      ropeScaling: null,
      tieWordEmbeddings: false,
      qkvBias: true,
      oBias: false,
      mlpBias: false,
    },
  } as const;
  // GPT-2, and Llama (rotary positions and grouped-query attention: on the native addon its
  // attention is the fused kernel with rotary on the rows, against tfjs' gradients of the
  // head-split composition)
  it.each([
    ["GPT-2", { vocabSize: 50, blockSize: 12, nLayer: 2, nHead: 2, nEmbd: 16 }],
    ["Llama", llama],
  ] as const)(
    "a whole %s model's loss gradients (with a LoRA adapter and without)",
    (name, config) => {
      const model = GPT.create(config as never, { seed: 2 });
      const ids = tf.tensor2d(
        [
          [1, 2, 3, 4, 5, 6, 7, 8],
          [9, 10, 11, 12, 13, 14, 15, 16],
        ],
        undefined,
        "int32",
      );
      const targets = tf.tensor2d(
        [
          [2, 3, 4, 5, 6, 7, 8, 9],
          [10, 11, 12, 13, 14, 15, 16, 17],
        ],
        undefined,
        "int32",
      );
      const run = () => {
        const vars = model.trainableVariables();
        const { value, grads } = tf.variableGrads(() => model.lossUnchecked(ids, targets), vars);
        return { value, grads: vars.map((v) => grads[v.name]!) };
      };
      compare(run, 1e-4);
      const adapter = attachLora(model, {
        r: 2,
        ...(name === "Llama" ? { targetModules: ["q_proj", "v_proj"] as never } : {}),
      });
      for (const bb of adapter.b.values())
        tf.tidy(() => bb.assign(tf.randomNormal(bb.shape, 0, 0.1, "float32", 8)));
      compare(run, 1e-4);
      tf.dispose([ids, targets]);
      model.dispose();
    },
  );
});

describe("fused inference kernels (wasm)", () => {
  function maxRelative(a: tf.Tensor, b: tf.Tensor): number {
    expect(a.shape).toEqual(b.shape);
    const x = a.dataSync();
    const y = b.dataSync();
    let scale = 1e-3;
    for (const v of y) scale = Math.max(scale, Math.abs(v));
    let max = 0;
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!) / scale);
    return max;
  }

  it("one position's heads are a reshape: exactly the transposes' result, both ways", () => {
    const x = tf.randomNormal([3, 24], 0, 1, "float32", 8) as tf.Tensor2D; // B 3, T 1, C 24
    const heads = toHeads(x, 1, 4);
    const viaTranspose = x.reshape([3, 1, 4, 6]).transpose([0, 2, 1, 3]);
    expect(heads.shape).toEqual([3, 4, 1, 6]);
    expect(Array.from(heads.dataSync())).toEqual(Array.from(viaTranspose.dataSync()));
    const back = fromHeads(heads);
    expect(back.shape).toEqual([3, 24]);
    expect(Array.from(back.dataSync())).toEqual(Array.from(x.dataSync()));
    tf.dispose([x, heads, viaTranspose, back]);
  });

  // on the native addon where it is loaded (AVX2, split across the pool), and as wasm/JS loops
  const engines = () => [activeNativeGemm(), undefined].filter((e, i) => i === 1 || e);
  const dataIds = () => (tf.engine().backend as unknown as { numDataIds(): number }).numDataIds();

  it("LayerNorm in one kernel equals the tfjs composition, with and without bias", () => {
    const addon = activeNativeGemm();
    // 96 columns (whole vectors) and 101 (a tail); 3000 rows split across the pool
    for (const [rows, cols] of [
      [37, 96],
      [3000, 101],
    ] as const) {
      const x = tf.randomNormal([rows, cols], 0.3, 2, "float32", 3) as tf.Tensor2D;
      const gamma = tf.randomNormal([cols], 1, 0.2, "float32", 4);
      const beta = tf.randomNormal([cols], 0, 0.2, "float32", 5);
      for (const engine of engines()) {
        setNativeGemm(engine);
        for (const b of [beta, undefined]) {
          setFusedInference(true);
          const before = [tf.memory().numTensors, dataIds()];
          const fused = layerNorm(x, gamma, b, 1e-5);
          expect([tf.memory().numTensors, dataIds()]).toEqual([before[0]! + 1, before[1]! + 1]);
          setFusedInference(false);
          const plain = tf.tidy(() => layerNorm(x, gamma, b, 1e-5));
          expect(maxRelative(fused, plain)).toBeLessThan(1e-5);
          tf.dispose([fused, plain]);
        }
      }
      setNativeGemm(addon);
      tf.dispose([x, gamma, beta]);
    }
  });

  it("GELU in one kernel equals the composition (on the addon at any size; else small tensors)", () => {
    const addon = activeNativeGemm();
    for (const shape of [
      [32, 512],
      [700, 512],
    ]) {
      const x = tf.randomNormal(shape, 0, 3, "float32", 6);
      for (const engine of engines()) {
        setNativeGemm(engine);
        setFusedInference(true);
        const before = tf.memory().numTensors;
        const fused = gelu(x);
        // one kernel (one new tensor): on the addon, or small enough for the JS loop
        if (engine || x.size <= FUSED_GELU_MAX_ELEMENTS)
          expect(tf.memory().numTensors).toBe(before + 1);
        setFusedInference(false);
        const plain = tf.tidy(() => gelu(x));
        expect(maxRelative(fused, plain)).toBeLessThan(1e-5);
        tf.dispose([fused, plain]);
      }
      setNativeGemm(addon);
      x.dispose();
    }
  });

  it("a GPT's logits and greedy tokens are the same with the fused kernels as without", () => {
    const model = GPT.create(
      { vocabSize: 80, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 48 },
      { seed: 9 },
    );
    const ids = tf.tensor2d([[1, 5, 9, 13, 17, 21, 25, 29]], [1, 8], "int32");
    const run = (fused: boolean) => {
      setFusedInference(fused);
      const logits = tf.tidy(() => model.run(ids).logits);
      // the tfjs decode step: the fused kernels run there (the JS step has its own test)
      const tokens = generate(model, [[3, 4, 5]], {
        maxNewTokens: 20,
        temperature: 0,
        decoder: "tfjs",
      }).tokens;
      return { logits, tokens };
    };
    const fused = run(true);
    const plain = run(false);
    expect(maxRelative(fused.logits, plain.logits)).toBeLessThan(1e-5);
    expect(fused.tokens).toEqual(plain.tokens);
    tf.dispose([fused.logits, plain.logits, ids]);
    model.dispose();
  });
});
