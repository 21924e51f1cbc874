/**
 * Reference values: Student's sleep data (R: t.test(extra ~ group, data = sleep, paired = TRUE)
 * gives t = −4.0621, df = 9, p = 0.002833); the rest computed independently with Python 3.11
 * (math.comb, math.erfc, and Simpson integration of the t density for CDFs and quantiles).
 */

import { mulberry32 } from "@forge/core";
import { describe, expect, it } from "vitest";
import { evaluateGates } from "../compare.js";
import {
  backwardTransfer,
  forgettingAnalysis,
  nonInferiority,
  relativeDegradation,
} from "./forgetting.js";
import {
  binomialTwoSided,
  bootstrapMeanCI,
  holmBonferroni,
  mcnemar,
  minimumDetectableEffect,
  pairedComparison,
  pairedT,
} from "./paired.js";

describe("paired statistics against reference values", () => {
  it("paired t-test: Student's sleep data", () => {
    const d = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4];
    const { t, df, p } = pairedT(d);
    expect(t).toBeCloseTo(4.062127683382037, 9);
    expect(df).toBe(9);
    expect(p).toBeCloseTo(0.0028328901973884157, 8);
  });

  it("McNemar: exact binomial for few discordant pairs, continuity-corrected χ² otherwise", () => {
    expect(binomialTwoSided(2, 9)).toBeCloseTo(0.0654296875, 12);
    expect(mcnemar(2, 9)).toEqual({ method: "exact", p: expect.closeTo(0.0654296875, 12) });
    const chi = mcnemar(30, 50);
    expect(chi.method).toBe("chi-square");
    expect(chi.statistic).toBeCloseTo(4.5125, 12);
    expect(chi.p).toBeCloseTo(0.03364802587476163, 9);
  });

  it("binomialTwoSided stays exact for large counts (it returned NaN from n ≈ 1,030)", () => {
    /** 2 · Σ_{i ≤ min(b, c)} C(n, i) / 2^n in exact integer arithmetic, as a double. */
    const exact = (b: number, c: number): number => {
      const n = b + c;
      let term = 1n;
      let sum = 1n;
      for (let i = 1; i <= Math.min(b, c); i++) {
        term = (term * BigInt(n - i + 1)) / BigInt(i); // C(n, i), exactly
        sum += term;
      }
      // p = 2 · sum · 2^-n: the top 64 bits of 2 · sum, scaled by a power of two in two exact steps
      const numerator = 2n * sum;
      const bits = numerator.toString(2).length;
      if (bits > n) return 1;
      const dropped = Math.max(0, bits - 64);
      const exponent = dropped - n;
      const half = Math.trunc(exponent / 2);
      return Number(numerator >> BigInt(dropped)) * 2 ** half * 2 ** (exponent - half);
    };
    for (const [b, c] of [
      [2, 9],
      [10, 14],
      [520, 540],
      [900, 1100],
      [980, 1020],
      [5, 1030],
      [3000, 3100],
      [40_000, 40_600],
    ] as const) {
      const p = binomialTwoSided(b, c);
      const reference = exact(b, c);
      expect(Number.isFinite(p), `${b}, ${c}`).toBe(true);
      expect(Math.abs(p - reference) / reference, `${b}, ${c}: ${p} vs ${reference}`).toBeLessThan(
        1e-9,
      );
      expect(binomialTwoSided(c, b)).toBe(p);
    }
    // scipy.stats.binomtest(900, 2000).pvalue and binomtest(3000, 6100).pvalue
    expect(binomialTwoSided(900, 1100)).toBeCloseTo(8.45708953550381e-6, 15);
    expect(binomialTwoSided(3000, 3100)).toBeCloseTo(0.2049495446515585, 12);
    expect(binomialTwoSided(1000, 1000)).toBe(1);
    expect(binomialTwoSided(0, 0)).toBe(1);
    expect(binomialTwoSided(0, 2000)).toBe(0); // 2^-1999 underflows a double, as in scipy
    expect(() => binomialTwoSided(1.5, 3)).toThrow("binomialTwoSided needs two counts");
    expect(() => binomialTwoSided(-1, 3)).toThrow("binomialTwoSided needs two counts");
  });

  it("minimum detectable effect at 80% power", () => {
    expect(minimumDetectableEffect(1, 20, 0.05, 0.8)).toBeCloseTo(0.660528801986601, 6);
  });

  it("non-inferiority with the 3.4-point margin", () => {
    const result = nonInferiority(
      [-0.02, 0.01, -0.03, 0.0, 0.02, -0.01, 0.0, -0.02, 0.01, -0.01],
      0.034,
    );
    expect(result.t).toBeCloseTo(5.8, 9);
    expect(result.p).toBeCloseTo(0.00012973731305043756, 8);
    expect(result.nonInferior).toBe(true);
  });

  it("Holm–Bonferroni (R: p.adjust(c(.01,.04,.03,.005), 'holm') = .03 .06 .06 .02)", () => {
    for (const [i, v] of holmBonferroni([0.01, 0.04, 0.03, 0.005]).entries()) {
      expect(v).toBeCloseTo([0.03, 0.06, 0.06, 0.02][i]!, 12);
    }
  });

  it("backward transfer of a sequence of bakes", () => {
    // after bake 1: task1 .9, task2 .5; after bake 2: task1 .8, task2 .95 → BWT = .8 − .9
    expect(
      backwardTransfer([
        [0.9, 0.5],
        [0.8, 0.95],
      ]),
    ).toBeCloseTo(-0.1, 12);
  });
});

describe("paired comparisons on simulated data", () => {
  function binaryRun(seed: number, pA: number, pB: number, n: number) {
    const random = mulberry32(seed);
    const ids = Array.from({ length: n }, (_, i) => `q${i}`);
    return {
      ids,
      a: ids.map(() => [random() < pA ? 1 : 0]),
      b: ids.map(() => [random() < pB ? 1 : 0]),
    };
  }

  it("detects a planted difference and names the winner", () => {
    const result = pairedComparison(binaryRun(1, 0.5, 0.85, 200), { threshold: 0.05 });
    expect(result.mcnemar!.method).toBe("chi-square");
    expect(result.delta).toBeGreaterThan(0.25);
    expect(result.winner).toBe("B");
    expect(result.bootstrap.low).toBeGreaterThan(0);
    expect(result.minimumDetectableEffect).toBeLessThan(result.delta);
  });

  it("keeps the false-positive rate near α over 1,000 seeded null runs", () => {
    let binaryRejections = 0;
    let tRejections = 0;
    const runs = 1000;
    for (let seed = 0; seed < runs; seed++) {
      if (pairedComparison(binaryRun(seed, 0.7, 0.7, 60), { bootstrap: 50 }).winner !== "none")
        binaryRejections++;
      const random = mulberry32(10_000 + seed);
      const normal = () =>
        Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      const ids = Array.from({ length: 30 }, (_, i) => `x${i}`);
      const a = ids.map(() => [normal(), normal()]);
      const b = ids.map(() => [normal(), normal()]);
      if (pairedComparison({ ids, a, b }, { bootstrap: 50 }).tTest.p < 0.05) tRejections++;
    }
    // binomial SE of a rate of 0.05 over 1,000 runs is 0.007; McNemar's exact test is conservative
    expect(tRejections / runs).toBeGreaterThan(0.03);
    expect(tRejections / runs).toBeLessThan(0.07);
    expect(binaryRejections / runs).toBeLessThan(0.07);
  });

  it("the bootstrap CI covers the true mean about 95% of the time", () => {
    let covered = 0;
    for (let seed = 0; seed < 300; seed++) {
      const random = mulberry32(seed);
      const values = Array.from({ length: 40 }, () => random()); // uniform, mean 0.5
      const ci = bootstrapMeanCI(values, { resamples: 1000, seed });
      if (ci.low <= 0.5 && 0.5 <= ci.high) covered++;
    }
    expect(covered / 300).toBeGreaterThan(0.9);
    expect(covered / 300).toBeLessThan(0.99);
  });

  it("refuses mismatched rows, too few items and non-finite scores", () => {
    expect(() => pairedComparison({ ids: ["a", "b"], a: [[1]], b: [[1], [0]] })).toThrow(
      /one row per item: 2 ids, 1 rows for A/,
    );
    expect(() => pairedComparison({ ids: ["a"], a: [[1]], b: [[0]] })).toThrow(/at least 2 items/);
    expect(() =>
      pairedComparison({ ids: ["a", "b"], a: [[1], [Number.NaN]], b: [[1], [0]] }),
    ).toThrow(/item b has a non-finite score/);
  });
});

describe("forgetting", () => {
  it("builds the matrix, per-task deltas with CIs and non-inferiority verdicts", () => {
    const random = mulberry32(5);
    const ids = Array.from({ length: 80 }, (_, i) => `i${i}`);
    const base = ids.map(() => [random() < 0.9 ? 1 : 0]);
    const same = base.map((row) => [...row]);
    const worse = base.map((row) => [row[0]! === 1 && random() < 0.3 ? 0 : row[0]!]);
    const result = forgettingAnalysis(
      [
        { task: "kept", ids, byModel: [base, same] },
        { task: "broken", ids, byModel: [base, worse] },
      ],
      ["base", "baked"],
    );
    expect(result.matrix[0]![0]).toBeCloseTo(result.matrix[1]![0]!, 12);
    const kept = result.cells.find((c) => c.task === "kept")!;
    const broken = result.cells.find((c) => c.task === "broken")!;
    expect(kept.delta).toBe(0);
    expect(broken.delta).toBeLessThan(-0.15);
    expect(broken.nonInferiority.nonInferior).toBe(false);
    expect(broken.ci.high).toBeLessThan(0);
    expect(result.meanChange.baked).toBeCloseTo(broken.delta / 2, 12);
  });

  it("relative degradation as the paper states it: per task, the maximum, tasks passed N/M, and the gate", () => {
    const ids = Array.from({ length: 50 }, (_, i) => `i${i}`);
    // base scores 0.8 on both tasks; baked: 0.79 on "kept" (1.25% down), 0.7 on "broken" (12.5%)
    const column = (ones: number) => ids.map((_, i) => [i < ones ? 1 : 0]);
    const kept = [column(40), column(40).map((r, i) => (i === 0 ? [0] : r))];
    kept[1]![45] = [1]; // one item lost, one gained: 0.8 → 0.8
    const result = forgettingAnalysis(
      [
        { task: "kept", ids, byModel: kept },
        { task: "broken", ids, byModel: [column(40), column(35)] },
        { task: "zero", ids, byModel: [column(0), column(0)] },
      ],
      ["base", "baked"],
    );
    const cell = (task: string) => result.cells.find((c) => c.task === task)!;
    expect(cell("kept").relativeDegradation).toBeCloseTo(0, 12);
    expect(cell("broken").relativeDegradation).toBeCloseTo((0.8 - 0.7) / 0.8, 12);
    expect(cell("zero").relativeDegradation).toBe(0); // nothing to lose
    expect(cell("broken").passed).toBe(false);
    expect(result.degradationThreshold).toBe(0.034);
    expect(result.degradation).toEqual([
      {
        model: "baked",
        maxDegradation: cell("broken").relativeDegradation,
        maxTask: "broken",
        tasksPassed: 2,
        tasks: 3,
        passed: false,
      },
    ]);
    expect(relativeDegradation(0.8, 0.79)).toBeCloseTo(0.0125, 12);
    expect(relativeDegradation(0.5, 0.6)).toBeCloseTo(-0.2, 12);
    const gates = evaluateGates(["max-degradation"], undefined, result);
    expect(gates).toHaveLength(1);
    expect(gates[0]).toMatchObject({ gate: "max-degradation", passed: false });
    expect(gates[0]!.message).toMatch(
      /baked: max degradation 12\.5% on broken \(threshold 3\.4%\); tasks passed 2\/3/,
    );
    // a looser threshold passes the same bake
    const loose = forgettingAnalysis(
      [{ task: "broken", ids, byModel: [column(40), column(35)] }],
      ["base", "baked"],
      { degradationThreshold: 0.2 },
    );
    expect(evaluateGates(["max-degradation"], undefined, loose)[0]!.passed).toBe(true);
    expect(() => evaluateGates(["max-degradation"])).toThrow(/needs a forgetting analysis/);
  });
});
