/**
 * Cross-task forgetting: a base model and one or more baked models, every task.
 *
 * - matrix R: rows are models (base first), columns tasks; R[m][t] is model m's mean score on t;
 * - per (baked model, task): Δ = mean(baked − base) over items, its paired bootstrap CI, the
 *   paired t-test, and a non-inferiority test with margin δ: H0 Δ ≤ −δ against H1 Δ > −δ,
 *   one-sided paired t on (d_i + δ). The default δ = 0.034 (3.4 points on a 0–100 scale) is the
 *   seed pipeline's threshold;
 * - relative degradation, as the Prompt Baking paper states forgetting: per (baked model, task)
 *   (base − baked) / base (0 when the base scores 0: nothing to lose), each model's maximum
 *   degradation over the tasks, and "tasks passed N/M" — a task passes when its degradation is
 *   below the threshold (default 0.034: the paper's "max degradation < 3.4%");
 * - backward transfer: for a sequence of bakes whose i-th bake targets task i (R square after
 *   the base row), BWT = mean over i < K of (R[K][i] − R[i][i]) (Lopez-Paz & Ranzato, 2017);
 *   and for any sequence, each model's mean change against the base over all tasks.
 */
import jStat from "jstat";
import { EvaluationError } from "../errors.js";
import { bootstrapMeanCI, pairedT } from "./paired.js";

export interface TaskScores {
  task: string;
  ids: string[];
  /** byModel[m][i][r]: model m (base first), item i, round r. */
  byModel: number[][][];
}

export interface ForgettingCell {
  model: string;
  task: string;
  base: number;
  baked: number;
  delta: number;
  ci: { low: number; high: number };
  pValue: number;
  nonInferiority: { margin: number; t: number; p: number; nonInferior: boolean };
  /** (base − baked) / base: positive is a loss, negative a gain (0 when base is 0). */
  relativeDegradation: number;
  /** relativeDegradation < the degradation threshold. */
  passed: boolean;
}

/** Per baked model: the paper's forgetting summary. */
export interface DegradationSummary {
  model: string;
  /** The largest relative degradation over the tasks, and the task it is on. */
  maxDegradation: number;
  maxTask: string;
  /** Tasks whose relative degradation is below the threshold, of all tasks. */
  tasksPassed: number;
  tasks: number;
  /** maxDegradation < threshold. */
  passed: boolean;
}

export interface ForgettingResult {
  models: string[];
  tasks: string[];
  /** models × tasks mean scores. */
  matrix: number[][];
  cells: ForgettingCell[];
  /** Per baked model: mean over tasks of (its score − the base's). */
  meanChange: Record<string, number>;
  /** Present when there is one bake per task, in task order. */
  backwardTransfer?: number;
  margin: number;
  alpha: number;
  /** The relative degradation a task may reach and still pass (default 0.034). */
  degradationThreshold: number;
  /** Per baked model, in order: maximum degradation and tasks passed. */
  degradation: DegradationSummary[];
}

/** The paper's forgetting threshold: max relative degradation < 3.4%. */
export const DEFAULT_DEGRADATION_THRESHOLD = 0.034;

/** (base − baked) / base; 0 when the base scores 0 or less (nothing to lose). */
export function relativeDegradation(base: number, baked: number): number {
  return base > 0 ? (base - baked) / base : 0;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** One-sided non-inferiority p for differences d with margin δ (H0: mean(d) ≤ −δ). */
export function nonInferiority(
  differences: readonly number[],
  margin: number,
  alpha = 0.05,
): { margin: number; t: number; p: number; nonInferior: boolean } {
  const shifted = differences.map((d) => d + margin);
  const n = shifted.length;
  const m = mean(shifted);
  const sd = Math.sqrt(shifted.reduce((s, x) => s + (x - m) ** 2, 0) / (n - 1));
  const t =
    sd === 0
      ? m > 0
        ? Number.POSITIVE_INFINITY
        : m < 0
          ? Number.NEGATIVE_INFINITY
          : 0
      : m / (sd / Math.sqrt(n));
  const p = Number.isFinite(t) ? 1 - jStat.studentt.cdf(t, n - 1) : t > 0 ? 0 : 1;
  return { margin, t, p, nonInferior: p < alpha };
}

/** BWT of a square matrix R (row i: after bake i; column i: bake i's task). */
export function backwardTransfer(matrix: readonly (readonly number[])[]): number {
  const k = matrix.length;
  if (k < 2 || matrix.some((row) => row.length !== k))
    throw new EvaluationError(
      "E_STATS",
      "backward transfer needs a square matrix of at least 2 bakes",
    );
  let sum = 0;
  for (let i = 0; i < k - 1; i++) sum += matrix[k - 1]![i]! - matrix[i]![i]!;
  return sum / (k - 1);
}

export function forgettingAnalysis(
  tasks: readonly TaskScores[],
  models: readonly string[],
  options: {
    margin?: number;
    alpha?: number;
    seed?: number;
    bootstrap?: number;
    degradationThreshold?: number;
  } = {},
): ForgettingResult {
  const margin = options.margin ?? 0.034;
  const threshold = options.degradationThreshold ?? DEFAULT_DEGRADATION_THRESHOLD;
  if (!(Number.isFinite(threshold) && threshold >= 0))
    throw new EvaluationError(
      "E_STATS",
      `the degradation threshold must be a number ≥ 0; got ${threshold}`,
    );
  const alpha = options.alpha ?? 0.05;
  if (models.length < 2)
    throw new EvaluationError("E_STATS", "forgetting needs the base and at least one baked model");
  for (const t of tasks) {
    if (t.byModel.length !== models.length) {
      throw new EvaluationError(
        "E_STATS",
        `task ${t.task} has scores for ${t.byModel.length} models; expected ${models.length}`,
      );
    }
  }
  const itemMeans = tasks.map((t) => t.byModel.map((rows) => rows.map(mean)));
  const matrix = models.map((_, m) => itemMeans.map((perModel) => mean(perModel[m]!)));
  const cells: ForgettingCell[] = [];
  for (let m = 1; m < models.length; m++) {
    tasks.forEach((task, t) => {
      const diffs = itemMeans[t]![m]!.map((v, i) => v - itemMeans[t]![0]![i]!);
      const ci = bootstrapMeanCI(diffs, {
        seed: (options.seed ?? 1) + m * 97 + t,
        resamples: options.bootstrap ?? 5000,
      });
      const degradation = relativeDegradation(matrix[0]![t]!, matrix[m]![t]!);
      cells.push({
        model: models[m]!,
        task: task.task,
        base: matrix[0]![t]!,
        baked: matrix[m]![t]!,
        delta: mean(diffs),
        ci: { low: ci.low, high: ci.high },
        pValue: diffs.length >= 2 ? pairedT(diffs).p : 1,
        nonInferiority: nonInferiority(diffs, margin, alpha),
        relativeDegradation: degradation,
        passed: degradation < threshold,
      });
    });
  }
  const meanChange = Object.fromEntries(
    models
      .slice(1)
      .map((name, k) => [name, mean(matrix[k + 1]!.map((v, t) => v - matrix[0]![t]!))]),
  );
  const degradation = models.slice(1).map((model): DegradationSummary => {
    const own = cells.filter((c) => c.model === model);
    const worst = own.reduce((a, c) => (c.relativeDegradation > a.relativeDegradation ? c : a));
    return {
      model,
      maxDegradation: worst.relativeDegradation,
      maxTask: worst.task,
      tasksPassed: own.filter((c) => c.passed).length,
      tasks: own.length,
      passed: worst.relativeDegradation < threshold,
    };
  });
  const bakes = matrix.slice(1);
  return {
    models: [...models],
    tasks: tasks.map((t) => t.task),
    matrix,
    cells,
    meanChange,
    ...(bakes.length >= 2 && bakes.length === tasks.length
      ? { backwardTransfer: backwardTransfer(bakes) }
      : {}),
    margin,
    alpha,
    degradationThreshold: threshold,
    degradation,
  };
}
