import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { activeNativeGemm, setNativeGemm } from "./backend/wasm-kernels.js";
import { AdamW, setFusedAdamW } from "./optimizer.js";

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});
afterAll(() => setFusedAdamW(true));

/** Five AdamW steps on a matrix, a vector and a 3-D tensor; the variables' values after each. */
function run(fused: boolean): number[][][] {
  setFusedAdamW(fused);
  const variables = new Map<string, tf.Variable>([
    ["w", tf.variable(tf.randomNormal([7, 5], 0, 1, "float32", 1), true, `w-${fused}`)],
    ["b", tf.variable(tf.randomNormal([5], 0, 1, "float32", 2), true, `b-${fused}`)],
    ["t", tf.variable(tf.randomNormal([2, 3, 4], 0, 1, "float32", 3), true, `t-${fused}`)],
  ]);
  const optimizer = new AdamW(variables, { weightDecay: 0.1 });
  const history: number[][][] = [];
  for (let step = 0; step < 5; step++) {
    const grads: tf.NamedTensorMap = {};
    for (const [name, v] of variables) {
      grads[v.name] = tf.randomNormal(v.shape, 0, 0.5 + step, "float32", 10 * step + name.length);
    }
    const before = tf.memory().numTensors;
    optimizer.apply(grads, 1e-2 * (step + 1));
    expect(tf.memory().numTensors).toBe(before); // no tensor leaks from an update
    tf.dispose(Object.values(grads));
    history.push([...variables.values()].map((v) => Array.from(v.dataSync())));
  }
  const moments = [...optimizer.stateTensors().values()].map((t) => Array.from(t.dataSync()));
  history.push(moments);
  optimizer.dispose();
  tf.dispose([...variables.values()]);
  return history;
}

describe("AdamW", () => {
  it("the one-kernel update on wasm (on the native addon where it is loaded, and in JS) gives the tfjs composition's parameters and moments", () => {
    const addon = activeNativeGemm();
    const fused = run(true);
    setNativeGemm(undefined);
    const inJs = run(true);
    setNativeGemm(addon);
    const composed = run(false);
    compareRuns(inJs, composed);
    compareRuns(fused, composed);
  });

  function compareRuns(fused: number[][][], composed: number[][][]): void {
    expect(fused.length).toBe(composed.length);
    for (let s = 0; s < fused.length; s++) {
      for (let p = 0; p < fused[s]!.length; p++) {
        const a = fused[s]![p]!;
        const b = composed[s]![p]!;
        expect(a.length).toBe(b.length);
        for (let i = 0; i < a.length; i++) {
          expect(Math.abs(a[i]! - b[i]!), `step ${s} tensor ${p} [${i}]`).toBeLessThan(
            1e-6 * Math.max(1, Math.abs(b[i]!)),
          );
        }
      }
    }
  }

  it("decays matrices only: a zero gradient shrinks a matrix by lr·decay and leaves a vector", () => {
    const w = tf.variable(tf.ones([2, 2]), true, "decay-w");
    const b = tf.variable(tf.ones([2]), true, "decay-b");
    const optimizer = new AdamW(
      new Map([
        ["w", w],
        ["b", b],
      ]),
      { weightDecay: 0.5 },
    );
    optimizer.apply({ [w.name]: tf.zeros([2, 2]), [b.name]: tf.zeros([2]) }, 0.1);
    expect(Array.from(w.dataSync())).toEqual([0.95, 0.95, 0.95, 0.95].map(Math.fround));
    expect(Array.from(b.dataSync())).toEqual([1, 1]);
    optimizer.dispose();
    tf.dispose([w, b]);
  });
});
