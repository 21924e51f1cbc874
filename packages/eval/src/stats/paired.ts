/**
 * Paired comparisons of two models on the same items.
 *
 * Each item has one score per model per round (R rounds, e.g. sampling seeds); the unit of
 * analysis is the item: its score is the mean over rounds, and the paired difference is
 * d_i = mean_B(i) − mean_A(i). From the n differences:
 *
 * - paired t-test: t = mean(d) / (sd(d)/√n), df = n − 1, two-sided p;
 * - paired bootstrap CI of mean(d): items resampled with replacement (seeded), percentile;
 * - McNemar's test for binary scores (R = 1): exact two-sided binomial on the discordant pairs
 *   when b + c < 25, else the continuity-corrected χ² (1 df);
 * - effect size d_z = mean(d) / sd(d);
 * - minimum detectable effect at 80% power and level α for this n and sd:
 *   (t_{1−α/2, n−1} + t_{0.8, n−1}) · sd(d) / √n;
 * - winner: B (or A) when p < α and |mean(d)| ≥ the threshold; otherwise none.
 */

import { mulberry32 } from "@forge/core";
import jStat from "jstat";
import { EvaluationError } from "../errors.js";

export interface PairedInput {
  /** Item ids, aligned with the score rows. */
  ids: readonly string[];
  /** scores[i][r]: item i, round r. */
  a: ReadonlyArray<readonly number[]>;
  b: ReadonlyArray<readonly number[]>;
}

export interface PairedOptions {
  /** Significance level (default 0.05). */
  alpha?: number;
  /** Smallest |Δ| that counts as a win (default 0). */
  threshold?: number;
  /** Bootstrap resamples (default 10,000). */
  bootstrap?: number;
  seed?: number;
}

export interface PairedResult {
  n: number;
  rounds: number;
  meanA: number;
  meanB: number;
  /** mean(B − A). */
  delta: number;
  sdDelta: number;
  tTest: { t: number; df: number; p: number };
  bootstrap: { low: number; high: number; level: number; resamples: number };
  /** Present when every score is 0 or 1 and there is one round. */
  mcnemar?: { b: number; c: number; method: "exact" | "chi-square"; statistic?: number; p: number };
  effectSize: number;
  minimumDetectableEffect: number;
  winner: "A" | "B" | "none";
  alpha: number;
  threshold: number;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

function sampleSd(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}

/** Two-sided p of a t statistic. */
export function tTestP(t: number, df: number): number {
  if (!Number.isFinite(t)) return 0;
  return Math.min(1, 2 * (1 - jStat.studentt.cdf(Math.abs(t), df)));
}

/** Paired t-test on differences. A zero-variance difference gives p = 1 (no difference) or 0. */
export function pairedT(differences: readonly number[]): { t: number; df: number; p: number } {
  const n = differences.length;
  if (n < 2)
    throw new EvaluationError("E_STATS", `a paired t-test needs at least 2 items; got ${n}`);
  const m = mean(differences);
  const sd = sampleSd(differences);
  if (sd === 0)
    return {
      t: m === 0 ? 0 : Math.sign(m) * Number.POSITIVE_INFINITY,
      df: n - 1,
      p: m === 0 ? 1 : 0,
    };
  const t = m / (sd / Math.sqrt(n));
  return { t, df: n - 1, p: tTestP(t, n - 1) };
}

/**
 * Exact two-sided binomial test of b successes in b + c trials at p = 1/2:
 * 2 · Σ_{i ≤ min(b, c)} C(n, i) / 2^n, capped at 1.
 *
 * Computed in log space (C(n, i) and 2^n overflow a double from n ≈ 1,030): each term relative
 * to the largest, the one at i = min(b, c), so the sum is ≥ 1 and never underflows to nothing.
 * A p-value below ~1e-308 underflows to 0, as it does in scipy.
 */
export function binomialTwoSided(b: number, c: number): number {
  if (!Number.isInteger(b) || !Number.isInteger(c) || b < 0 || c < 0)
    throw new EvaluationError(
      "E_STATS",
      `binomialTwoSided needs two counts (integers ≥ 0); got ${b} and ${c}`,
    );
  const n = b + c;
  const k = Math.min(b, c);
  if (2 * k === n) return 1;
  // log C(n, i) - log C(n, k) for i = k, k - 1, …, 0 by the recurrence
  // C(n, i - 1) = C(n, i) · i / (n - i + 1); the terms fall geometrically (ratio ≤ k / (n - k + 1)),
  // so stop once they no longer change the sum.
  let logRatio = 0;
  let sum = 1;
  for (let i = k; i > 0; i--) {
    logRatio += Math.log(i) - Math.log(n - i + 1);
    const term = Math.exp(logRatio);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  let logChoose = 0; // log C(n, k)
  for (let i = 1; i <= k; i++) logChoose += Math.log(n - k + i) - Math.log(i);
  return Math.min(1, Math.exp(Math.LN2 + logChoose + Math.log(sum) - n * Math.LN2));
}

/** McNemar's test from discordant counts: b (A right, B wrong) and c (A wrong, B right). */
export function mcnemar(
  b: number,
  c: number,
): { method: "exact" | "chi-square"; statistic?: number; p: number } {
  if (b + c < 25) return { method: "exact", p: binomialTwoSided(b, c) };
  const statistic = (Math.abs(b - c) - 1) ** 2 / (b + c);
  return { method: "chi-square", statistic, p: 1 - jStat.chisquare.cdf(statistic, 1) };
}

/** Percentile bootstrap CI of the mean of `values` (items resampled with replacement). */
export function bootstrapMeanCI(
  values: readonly number[],
  options: { level?: number; resamples?: number; seed?: number } = {},
): { low: number; high: number; level: number; resamples: number } {
  const level = options.level ?? 0.95;
  const resamples = options.resamples ?? 10_000;
  const random = mulberry32(options.seed ?? 1);
  const n = values.length;
  const means = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[Math.floor(random() * n)]!;
    means[r] = sum / n;
  }
  means.sort();
  const lowIndex = Math.floor(((1 - level) / 2) * resamples);
  const highIndex = Math.min(resamples - 1, Math.ceil(((1 + level) / 2) * resamples) - 1);
  return { low: means[lowIndex]!, high: means[highIndex]!, level, resamples };
}

/** Smallest |mean difference| detectable with power `power` at two-sided level α. */
export function minimumDetectableEffect(sd: number, n: number, alpha = 0.05, power = 0.8): number {
  if (n < 2) return Number.POSITIVE_INFINITY;
  const df = n - 1;
  return (
    (jStat.studentt.inv(1 - alpha / 2, df) + jStat.studentt.inv(power, df)) * (sd / Math.sqrt(n))
  );
}

function checkInput(input: PairedInput): void {
  const { ids, a, b } = input;
  if (a.length !== ids.length || b.length !== ids.length) {
    throw new EvaluationError(
      "E_STATS",
      `paired scores need one row per item: ${ids.length} ids, ${a.length} rows for A, ${b.length} for B`,
    );
  }
  if (ids.length < 2)
    throw new EvaluationError(
      "E_STATS",
      `a paired comparison needs at least 2 items; got ${ids.length}`,
    );
  ids.forEach((id, i) => {
    if (a[i]!.length === 0 || b[i]!.length === 0)
      throw new EvaluationError("E_STATS", `item ${id} has no scores`);
    for (const v of [...a[i]!, ...b[i]!]) {
      if (!Number.isFinite(v))
        throw new EvaluationError("E_STATS", `item ${id} has a non-finite score ${v}`);
    }
  });
}

/** The full paired comparison of B against A. */
export function pairedComparison(input: PairedInput, options: PairedOptions = {}): PairedResult {
  checkInput(input);
  const alpha = options.alpha ?? 0.05;
  const threshold = options.threshold ?? 0;
  const meanA = input.a.map(mean);
  const meanB = input.b.map(mean);
  const diffs = meanA.map((x, i) => meanB[i]! - x);
  const rounds = Math.max(...input.a.map((r) => r.length), ...input.b.map((r) => r.length));
  const delta = mean(diffs);
  const sdDelta = sampleSd(diffs);
  const tTest = pairedT(diffs);
  const binary =
    rounds === 1 &&
    [...input.a, ...input.b].every((row) => row.every((v) => v === 0 || v === 1)) &&
    input.a.every((row) => row.length === 1);
  let mcnemarResult: PairedResult["mcnemar"];
  if (binary) {
    let bCount = 0;
    let cCount = 0;
    input.a.forEach((row, i) => {
      if (row[0] === 1 && input.b[i]![0] === 0) bCount++;
      if (row[0] === 0 && input.b[i]![0] === 1) cCount++;
    });
    mcnemarResult = { b: bCount, c: cCount, ...mcnemar(bCount, cCount) };
  }
  const p = mcnemarResult?.p ?? tTest.p;
  const significant = p < alpha && Math.abs(delta) >= threshold && delta !== 0;
  return {
    n: diffs.length,
    rounds,
    meanA: mean(meanA),
    meanB: mean(meanB),
    delta,
    sdDelta,
    tTest,
    bootstrap: bootstrapMeanCI(diffs, {
      resamples: options.bootstrap ?? 10_000,
      seed: options.seed ?? 1,
    }),
    ...(mcnemarResult ? { mcnemar: mcnemarResult } : {}),
    effectSize:
      sdDelta > 0 ? delta / sdDelta : delta === 0 ? 0 : Math.sign(delta) * Number.POSITIVE_INFINITY,
    minimumDetectableEffect: minimumDetectableEffect(sdDelta, diffs.length, alpha),
    winner: significant ? (delta > 0 ? "B" : "A") : "none",
    alpha,
    threshold,
  };
}

/** Holm–Bonferroni adjusted p-values, in the input order. */
export function holmBonferroni(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = [...pValues.keys()].sort((i, j) => pValues[i]! - pValues[j]!);
  const adjusted = new Array<number>(m);
  let running = 0;
  order.forEach((index, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * pValues[index]!));
    adjusted[index] = running;
  });
  return adjusted;
}
