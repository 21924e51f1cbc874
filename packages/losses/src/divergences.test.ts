import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  crossEntropy,
  distillation,
  forwardKL,
  generalizedJSD,
  jensenShannon,
  type Reduction,
  reverseKL,
  teacherTopK,
  topKDivergence,
  topKForwardKL,
} from "./divergences.js";
import { LossError } from "./errors.js";
import * as reference from "./reference.js";

beforeAll(async () => {
  await tf.setBackend("cpu");
});

/** Seeded uniform numbers (an LCG: enough for test data). */
function numbers(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function randomLogits(shape: number[], seed: number, scale = 3): number[][] {
  const next = numbers(seed);
  const vocabulary = shape.at(-1)!;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return Array.from({ length: rows }, () =>
    Array.from({ length: vocabulary }, () => (next() * 2 - 1) * scale),
  );
}

function randomMask(rows: number, seed: number): number[] {
  const next = numbers(seed);
  const mask = Array.from({ length: rows }, () => (next() < 0.7 ? 1 : 0));
  mask[0] = 1;
  return mask;
}

const tensor = (rows: number[][], shape: number[]) => tf.tensor(rows.flat(), shape, "float32");

function closeTo(actual: number[] | number, expected: number[] | number, tolerance = 1e-5): void {
  const a = Array.isArray(actual) ? actual : [actual];
  const e = Array.isArray(expected) ? expected : [expected];
  expect(a.length).toBe(e.length);
  a.forEach((v, i) => {
    expect(Number.isNaN(v)).toBe(false);
    expect(Math.abs(v - e[i]!), `index ${i}: ${v} vs ${e[i]}`).toBeLessThanOrEqual(
      tolerance * Math.max(1, Math.abs(e[i]!)),
    );
  });
}

function values(t: tf.Tensor): number[] | number {
  const data = Array.from(t.dataSync());
  const rank = t.rank;
  t.dispose();
  return rank === 0 ? data[0]! : data;
}

type Pairwise = (
  teacher: tf.Tensor,
  student: tf.Tensor,
  options: { mask?: tf.Tensor; reduction?: Reduction },
) => tf.Tensor;
const pairwise: Array<[string, Pairwise, (t: number[], s: number[]) => number]> = [
  ["forwardKL", forwardKL, (t, s) => reference.forwardKL(t, s)],
  ["reverseKL", reverseKL, (t, s) => reference.reverseKL(t, s)],
  ["jensenShannon", jensenShannon, (t, s) => reference.jensenShannon(t, s)],
  [
    "generalizedJSD(β=0.3)",
    (t, s, o) => generalizedJSD(t, s, { ...o, beta: 0.3 }),
    (t, s) => reference.generalizedJSD(t, s, 0.3),
  ],
  [
    "distillation(T=2)",
    (t, s, o) => distillation(t, s, { ...o, temperature: 2 }),
    (t, s) => reference.distillation(t, s, 2),
  ],
  [
    "forwardKL(temperature 0.5)",
    (t, s, o) => forwardKL(t, s, { ...o, temperature: 0.5 }),
    (t, s) => reference.forwardKL(t, s, 0.5),
  ],
];
const shapes = [
  [7, 11],
  [2, 3, 17],
  [1, 1, 5],
  [4, 2],
];
const reductions: Reduction[] = ["none", "sum", "mean", "batchmean"];

describe("tfjs equals the Float64 reference within 1e-5", () => {
  for (const [name, fn, ref] of pairwise) {
    for (const shape of shapes) {
      it(`${name} on ${JSON.stringify(shape)}, every reduction, with and without a mask`, () => {
        const teacherRows = randomLogits(shape, 1);
        const studentRows = randomLogits(shape, 2);
        const perToken = teacherRows.map((row, i) => ref(row, studentRows[i]!));
        const tokenShape = shape.slice(0, -1);
        const mask = randomMask(perToken.length, 3);
        for (const masked of [false, true]) {
          for (const reduction of reductions) {
            const teacher = tensor(teacherRows, shape);
            const student = tensor(studentRows, shape);
            const maskTensor = masked ? tf.tensor(mask, tokenShape, "float32") : undefined;
            const result = fn(teacher, student, {
              reduction,
              ...(maskTensor ? { mask: maskTensor } : {}),
            });
            const expected = reference.reduce(perToken, {
              ...(masked ? { mask } : {}),
              reduction,
              batchSize: shape[0]!,
            });
            closeTo(values(result), expected);
            tf.dispose([teacher, student, maskTensor]);
          }
        }
      });
    }
  }

  it("crossEntropy on [2,3,17] with a mask", () => {
    const rows = randomLogits([2, 3, 17], 4);
    const targets = [0, 16, 5, 7, 3, 9];
    const mask = [1, 0, 1, 1, 0, 1];
    const result = crossEntropy(tensor(rows, [2, 3, 17]), tf.tensor(targets, [2, 3], "int32"), {
      mask: tf.tensor(mask, [2, 3]),
      reduction: "sum",
    });
    closeTo(
      values(result),
      reference.reduce(
        rows.map((r, i) => reference.crossEntropy(r, targets[i]!)),
        { mask, reduction: "sum" },
      ),
    );
  });

  it("topKForwardKL with K < V equals the reference", () => {
    const teacherRows = randomLogits([6, 13], 5);
    const studentRows = randomLogits([6, 13], 6);
    const top = teacherTopK(tensor(teacherRows, [6, 13]), 4);
    const logprobs = top.logprobs.arraySync() as number[][];
    const ids = top.ids.arraySync() as number[][];
    const result = topKForwardKL(top, tensor(studentRows, [6, 13]), { reduction: "none" });
    closeTo(
      values(result),
      studentRows.map((row, i) => reference.topKForwardKL(logprobs[i]!, ids[i]!, row)),
    );
  });
});

describe("top-K + tail for reverse KL and JSD", () => {
  for (const [divergence, beta] of [
    ["reverse-kl", undefined],
    ["jsd", 0.5],
    ["jsd", 0.2],
  ] as const) {
    it(`${divergence}${beta !== undefined ? ` β = ${beta}` : ""} with K < V equals the reference`, () => {
      const teacherRows = randomLogits([6, 13], 40);
      const studentRows = randomLogits([6, 13], 41);
      const teacher = tensor(teacherRows, [6, 13]);
      const student = tensor(studentRows, [6, 13]);
      const top = teacherTopK(teacher, 4);
      const logprobs = top.logprobs.arraySync() as number[][];
      const ids = top.ids.arraySync() as number[][];
      const result = topKDivergence(top, student, {
        divergence,
        ...(beta !== undefined ? { beta } : {}),
        reduction: "none",
      });
      closeTo(
        values(result),
        studentRows.map((row, i) =>
          reference.topKDivergence(logprobs[i]!, ids[i]!, row, divergence, beta ?? 0.5),
        ),
      );
      tf.dispose([teacher, student, top.logprobs, top.ids]);
    });
  }

  it("with K = V it equals the full-vocabulary divergence; forward-kl is topKForwardKL", () => {
    const teacher = tensor(randomLogits([3, 4, 10], 42), [3, 4, 10]);
    const student = tensor(randomLogits([3, 4, 10], 43), [3, 4, 10]);
    const top = teacherTopK(teacher, 10);
    closeTo(
      values(topKDivergence(top, student, { divergence: "reverse-kl", reduction: "none" })),
      values(reverseKL(teacher, student, { reduction: "none" })),
      1e-6,
    );
    closeTo(
      values(topKDivergence(top, student, { divergence: "jsd", beta: 0.3, reduction: "none" })),
      values(generalizedJSD(teacher, student, { beta: 0.3, reduction: "none" })),
      1e-6,
    );
    const small = teacherTopK(teacher, 3);
    closeTo(
      values(topKDivergence(small, student, { reduction: "none" })),
      values(topKForwardKL(small, student, { reduction: "none" })),
      1e-7,
    );
    tf.dispose([teacher, student, top.logprobs, top.ids, small.logprobs, small.ids]);
  });

  it("a teacher whose top-K holds all the mass gives a finite reverse KL (the tail floor)", () => {
    const teacher = tf.tensor2d([[60, 0, 0, 0, 0]]);
    const student = tf.tensor2d([[0, 0, 0, 0, 0]]);
    const top = teacherTopK(teacher, 1);
    const value = values(topKDivergence(top, student, { divergence: "reverse-kl" })) as number;
    expect(Number.isFinite(value)).toBe(true);
    expect(value).toBeGreaterThan(0);
    const { grads, value: loss } = tf.variableGrads(
      () => topKDivergence(top, studentVariable, { divergence: "reverse-kl" }) as tf.Scalar,
      [studentVariable],
    );
    const gradient = Object.values(grads)[0]!.dataSync();
    expect(Array.from(gradient).every(Number.isFinite)).toBe(true);
    tf.dispose([teacher, student, top.logprobs, top.ids, loss, ...Object.values(grads)]);
  });
  const studentVariable = tf.variable(tf.zeros([1, 5]));

  it("a divergence without a top-K form is refused", () => {
    const teacher = tensor(randomLogits([2, 5], 44), [2, 5]);
    const top = teacherTopK(teacher, 2);
    expect(() => topKDivergence(top, teacher, { divergence: "distillation" as "jsd" })).toThrow(
      /has no top-K form; accepted: forward-kl, reverse-kl, jsd/,
    );
    tf.dispose([teacher, top.logprobs, top.ids]);
  });
});

describe("properties", () => {
  it("KL ≥ 0, and = 0 exactly when the distributions are equal (logits equal up to a shift)", () => {
    const rows = randomLogits([20, 9], 7);
    const teacher = tensor(rows, [20, 9]);
    const shifted = tensor(
      rows.map((r) => r.map((x) => x + 3.5)),
      [20, 9],
    );
    const other = tensor(randomLogits([20, 9], 8), [20, 9]);
    const same = values(forwardKL(teacher, shifted, { reduction: "none" })) as number[];
    for (const v of same) expect(Math.abs(v)).toBeLessThan(1e-6);
    const different = values(forwardKL(teacher, other, { reduction: "none" })) as number[];
    for (const v of different) expect(v).toBeGreaterThan(0);
    tf.dispose([teacher, shifted, other]);
  });

  it("JS is symmetric and at most ln 2, reached for disjoint supports", () => {
    const a = tensor(randomLogits([10, 7], 9, 8), [10, 7]);
    const b = tensor(randomLogits([10, 7], 10, 8), [10, 7]);
    const ab = values(jensenShannon(a, b, { reduction: "none" })) as number[];
    const ba = values(jensenShannon(b, a, { reduction: "none" })) as number[];
    closeTo(ab, ba, 1e-6);
    for (const v of ab) expect(v).toBeLessThanOrEqual(Math.LN2 + 1e-6);
    const left = tf.tensor2d([[0, Number.NEGATIVE_INFINITY]]);
    const right = tf.tensor2d([[Number.NEGATIVE_INFINITY, 0]]);
    closeTo(values(jensenShannon(left, right)), Math.LN2, 1e-6);
    tf.dispose([a, b, left, right]);
  });

  it("generalized JSD at β = 0 is forward KL and at β = 1 reverse KL; near the ends it approaches 0", () => {
    const a = tensor(randomLogits([5, 6], 11), [5, 6]);
    const b = tensor(randomLogits([5, 6], 12), [5, 6]);
    closeTo(values(generalizedJSD(a, b, { beta: 0 })), values(forwardKL(a, b)), 1e-7);
    closeTo(values(generalizedJSD(a, b, { beta: 1 })), values(reverseKL(a, b)), 1e-7);
    expect(values(generalizedJSD(a, b, { beta: 1e-4 }))).toBeLessThan(1e-3);
    tf.dispose([a, b]);
  });

  it("top-K + tail equals the full forward KL when K = vocabulary size", () => {
    const teacher = tensor(randomLogits([3, 4, 10], 13), [3, 4, 10]);
    const student = tensor(randomLogits([3, 4, 10], 14), [3, 4, 10]);
    const top = teacherTopK(teacher, 10);
    closeTo(
      values(topKForwardKL(top, student, { reduction: "none" })),
      values(forwardKL(teacher, student, { reduction: "none" })),
      1e-6,
    );
    tf.dispose([teacher, student, top.logprobs, top.ids]);
  });

  it("top-K + tail is a lower bound of the full KL that tightens as K grows", () => {
    const teacher = tensor(randomLogits([8, 30], 15), [8, 30]);
    const student = tensor(randomLogits([8, 30], 16), [8, 30]);
    const full = values(forwardKL(teacher, student)) as number;
    let previous = 0;
    for (const k of [1, 5, 15, 29]) {
      const top = teacherTopK(teacher, k);
      const value = values(topKForwardKL(top, student)) as number;
      expect(value).toBeLessThanOrEqual(full + 1e-6);
      expect(value).toBeGreaterThanOrEqual(previous - 1e-6);
      previous = value;
      tf.dispose([top.logprobs, top.ids]);
    }
    tf.dispose([teacher, student]);
  });
});

describe("numerical stability", () => {
  it("logits of magnitude 1e4 give finite values matching the reference", () => {
    const teacherRows = randomLogits([6, 8], 17, 1e4);
    const studentRows = randomLogits([6, 8], 18, 1e4);
    for (const [name, fn, ref] of pairwise) {
      const result = values(
        fn(tensor(teacherRows, [6, 8]), tensor(studentRows, [6, 8]), { reduction: "none" }),
      ) as number[];
      const expected = teacherRows.map((row, i) => ref(row, studentRows[i]!));
      result.forEach((v, i) => {
        expect(Number.isFinite(v), name).toBe(true);
        expect(Math.abs(v - expected[i]!), name).toBeLessThanOrEqual(
          1e-3 * Math.max(1, Math.abs(expected[i]!)),
        );
      });
    }
  });

  it("−Infinity entries (a masked vocabulary) never produce NaN, in values or gradients", () => {
    const inf = Number.NEGATIVE_INFINITY;
    // The same vocabulary entries masked in both models: every divergence is finite.
    const teacherRows = [
      [1, inf, 0.5, inf],
      [inf, 2, 1, 0],
    ];
    const studentRows = [
      [0.3, inf, 1, inf],
      [inf, 1, -2, 0.2],
    ];
    for (const [name, fn, ref] of pairwise) {
      const grad = tf.grad((s: tf.Tensor) =>
        fn(tensor(teacherRows, [2, 4]), s, { reduction: "sum" }),
      );
      const g = grad(tensor(studentRows, [2, 4])).dataSync();
      for (const v of g) expect(Number.isFinite(v), `${name} gradient ${v}`).toBe(true);
      const perToken = values(
        fn(tensor(teacherRows, [2, 4]), tensor(studentRows, [2, 4]), { reduction: "none" }),
      ) as number[];
      closeTo(
        perToken,
        teacherRows.map((row, i) => ref(row, studentRows[i]!)),
      );
    }
  });

  it("mass where the other model has none is an honest +∞, never NaN, and a mask removes it", () => {
    const inf = Number.NEGATIVE_INFINITY;
    const teacherRows = [
      [1, 0, 0.5, 2],
      [inf, 2, 1, 0],
    ];
    const studentRows = [
      [0.3, 1, 1, 2],
      [1, 1, inf, 0.2],
    ];
    for (const [name, fn] of pairwise) {
      const perToken = values(
        fn(tensor(teacherRows, [2, 4]), tensor(studentRows, [2, 4]), { reduction: "none" }),
      ) as number[];
      for (const v of perToken) expect(Number.isNaN(v), name).toBe(false);
    }
    const kl = values(
      forwardKL(tensor(teacherRows, [2, 4]), tensor(studentRows, [2, 4]), { reduction: "none" }),
    ) as number[];
    closeTo(kl[0]!, reference.forwardKL(teacherRows[0]!, studentRows[0]!));
    expect(kl[1]).toBe(Number.POSITIVE_INFINITY);
    const masked = forwardKL(tensor(teacherRows, [2, 4]), tensor(studentRows, [2, 4]), {
      mask: tf.tensor1d([1, 0]),
    });
    closeTo(values(masked), reference.forwardKL(teacherRows[0]!, studentRows[0]!));
    // JS stays bounded by ln 2 even with disjoint support.
    const js = values(
      jensenShannon(tensor(teacherRows, [2, 4]), tensor(studentRows, [2, 4]), {
        reduction: "none",
      }),
    ) as number[];
    for (const v of js) expect(v).toBeLessThanOrEqual(Math.LN2 + 1e-6);
  });

  it("a fully masked batch reduces to 0 with mean, not NaN", () => {
    const t = tensor(randomLogits([3, 5], 19), [3, 5]);
    expect(values(forwardKL(t, t, { mask: tf.zeros([3]) }))).toBe(0);
    t.dispose();
  });
});

describe("gradients agree with central finite differences of the Float64 reference", () => {
  const h = 1e-5;
  for (const [name, fn, ref] of pairwise) {
    it(name, () => {
      const teacherRows = randomLogits([3, 6], 20);
      const studentRows = randomLogits([3, 6], 21);
      const analytic = tf.grads((t: tf.Tensor, s: tf.Tensor) => fn(t, s, { reduction: "sum" }));
      const [gt, gs] = analytic([tensor(teacherRows, [3, 6]), tensor(studentRows, [3, 6])]);
      const total = (tr: number[][], sr: number[][]) =>
        tr.reduce((acc, row, i) => acc + ref(row, sr[i]!), 0);
      const numeric = (which: "teacher" | "student", r: number, c: number) => {
        const bump = (delta: number) => {
          const tr = teacherRows.map((row) => [...row]);
          const sr = studentRows.map((row) => [...row]);
          (which === "teacher" ? tr : sr)[r]![c]! += delta;
          return total(tr, sr);
        };
        return (bump(h) - bump(-h)) / (2 * h);
      };
      const teacherGrad = gt!.arraySync() as number[][];
      const studentGrad = gs!.arraySync() as number[][];
      for (let r = 0; r < 3; r++) {
        for (let c = 0; c < 6; c++) {
          expect(
            Math.abs(studentGrad[r]![c]! - numeric("student", r, c)),
            `d/dstudent[${r}][${c}]`,
          ).toBeLessThan(1e-4);
          expect(
            Math.abs(teacherGrad[r]![c]! - numeric("teacher", r, c)),
            `d/dteacher[${r}][${c}]`,
          ).toBeLessThan(1e-4);
        }
      }
      tf.dispose([gt!, gs!]);
    });
  }

  it("crossEntropy and topKForwardKL (student side)", () => {
    const rows = randomLogits([3, 6], 22);
    const targets = [1, 5, 0];
    const ce = tf.grad((s: tf.Tensor) =>
      crossEntropy(s, tf.tensor1d(targets, "int32"), { reduction: "sum" }),
    );
    const g = ce(tensor(rows, [3, 6])).arraySync() as number[][];
    const teacherRows = randomLogits([3, 6], 23);
    const top = teacherTopK(tensor(teacherRows, [3, 6]), 3);
    const lp = top.logprobs.arraySync() as number[][];
    const ids = top.ids.arraySync() as number[][];
    const tk = tf.grad((s: tf.Tensor) => topKForwardKL(top, s, { reduction: "sum" }));
    const gk = tk(tensor(rows, [3, 6])).arraySync() as number[][];
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 6; c++) {
        const bumped = (delta: number) =>
          rows.map((row, i) => row.map((x, j) => (i === r && j === c ? x + delta : x)));
        const ceNumeric =
          (bumped(h).reduce((a, row, i) => a + reference.crossEntropy(row, targets[i]!), 0) -
            bumped(-h).reduce((a, row, i) => a + reference.crossEntropy(row, targets[i]!), 0)) /
          (2 * h);
        const tkNumeric =
          (bumped(h).reduce((a, row, i) => a + reference.topKForwardKL(lp[i]!, ids[i]!, row), 0) -
            bumped(-h).reduce(
              (a, row, i) => a + reference.topKForwardKL(lp[i]!, ids[i]!, row),
              0,
            )) /
          (2 * h);
        expect(Math.abs(g[r]![c]! - ceNumeric)).toBeLessThan(1e-4);
        expect(Math.abs(gk[r]![c]! - tkNumeric)).toBeLessThan(1e-4);
      }
    }
  });
});

describe("bad input", () => {
  const t = () => tf.zeros([2, 3, 5]);
  const cases: Array<[string, () => unknown, string, RegExp]> = [
    [
      "mismatched shapes",
      () => forwardKL(t(), tf.zeros([2, 3, 6])),
      "E_SHAPE",
      /teacher logits \[2,3,5\] and student logits \[2,3,6\] must have the same shape/,
    ],
    [
      "int32 logits",
      () => forwardKL(tf.zeros([2, 5], "int32"), tf.zeros([2, 5])),
      "E_DTYPE",
      /teacher logits has dtype int32; logits must be float32/,
    ],
    [
      "a wrong-shape mask",
      () => forwardKL(t(), t(), { mask: tf.ones([2, 5]) }),
      "E_SHAPE",
      /mask \[2,5\] must have the token shape \[2,3\]/,
    ],
    [
      "an unknown reduction",
      () => forwardKL(t(), t(), { reduction: "avg" as Reduction }),
      "E_INPUT",
      /reduction "avg" is not one of none, sum, mean, batchmean/,
    ],
    [
      "β outside [0, 1]",
      () => generalizedJSD(t(), t(), { beta: 1.5 }),
      "E_INPUT",
      /beta must be in \[0, 1\]; got 1.5/,
    ],
    [
      "a zero temperature",
      () => distillation(t(), t(), { temperature: 0 }),
      "E_INPUT",
      /temperature must be a positive number/,
    ],
    [
      "K larger than the vocabulary",
      () => teacherTopK(t(), 6),
      "E_TOPK",
      /K must be an integer in \[1, 5\]; got 6/,
    ],
    [
      "top-K data wider than the vocabulary",
      () =>
        topKForwardKL({ logprobs: tf.zeros([2, 3, 6]), ids: tf.zeros([2, 3, 6], "int32") }, t()),
      "E_TOPK",
      /K = 6, larger than the student's vocabulary of 5/,
    ],
    [
      "top-K ids out of range",
      () =>
        topKForwardKL({ logprobs: tf.zeros([2, 3, 2]), ids: tf.fill([2, 3, 2], 7, "int32") }, t()),
      "E_TOPK",
      /teacher top-K ids holds 7 at flat index 0; ids must be in \[0, 5\)/,
    ],
    [
      "float targets",
      () => crossEntropy(t(), tf.zeros([2, 3])),
      "E_DTYPE",
      /targets has dtype float32; ids must be int32/,
    ],
    [
      "targets out of range",
      () => crossEntropy(t(), tf.fill([2, 3], 9, "int32")),
      "E_INPUT",
      /targets holds 9 at flat index 0/,
    ],
  ];
  for (const [name, run, code, message] of cases) {
    it(`${name} → ${code}`, () => {
      let caught: unknown;
      try {
        run();
      } catch (error) {
        caught = error;
      }
      expect(LossError.isInstance(caught), String(caught)).toBe(true);
      expect((caught as LossError).code).toBe(code);
      expect((caught as Error).message).toMatch(message);
    });
  }
});

describe("tensor hygiene", () => {
  it("the tensor count is flat across repeated calls of every loss", () => {
    const teacher = tensor(randomLogits([4, 9], 30), [4, 9]);
    const student = tensor(randomLogits([4, 9], 31), [4, 9]);
    const targets = tf.tensor1d([1, 2, 3, 4], "int32");
    const top = teacherTopK(teacher, 3);
    const run = () => {
      tf.dispose([
        forwardKL(teacher, student),
        reverseKL(teacher, student, { reduction: "none" }),
        jensenShannon(teacher, student),
        generalizedJSD(teacher, student, { beta: 0.2 }),
        distillation(teacher, student, { temperature: 2 }),
        crossEntropy(student, targets),
        topKForwardKL(top, student),
        topKDivergence(top, student, { divergence: "reverse-kl" }),
        topKDivergence(top, student, { divergence: "jsd", beta: 0.3 }),
      ]);
      const { grads, value } = tf.variableGrads(
        () => forwardKL(teacher, studentVariable) as tf.Scalar,
        [studentVariable],
      );
      tf.dispose([value, ...Object.values(grads)]);
    };
    const studentVariable = tf.variable(student);
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) run();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([teacher, student, targets, top.logprobs, top.ids, studentVariable]);
  });
});
