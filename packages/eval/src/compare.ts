/**
 * Comparing result files (no model, no tfjs): A/B per task with paired statistics and
 * Holm–Bonferroni across tasks, forgetting across tasks, and CI gates.
 */
import { readFile } from "node:fs/promises";
import { EvaluationError } from "./errors.js";
import type { EvalResults, TaskResult } from "./runner.js";
import { type ForgettingResult, forgettingAnalysis, type TaskScores } from "./stats/forgetting.js";
import { holmBonferroni, type PairedResult, pairedComparison } from "./stats/paired.js";

/** Read and check a results file. */
export async function readResults(file: string): Promise<EvalResults> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, "utf8"));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new EvaluationError(
      code ? "E_IO" : "E_INPUT",
      code ? `cannot read ${file}: ${code}` : `${file}: not valid JSON`,
      { cause: error },
    );
  }
  const results = value as Partial<EvalResults>;
  if (
    results?.kind !== "forge-eval-results" ||
    results.schemaVersion !== 1 ||
    !Array.isArray(results.tasks)
  ) {
    throw new EvaluationError(
      "E_INPUT",
      `${file} is not a forge eval results file (kind "forge-eval-results", schemaVersion 1)`,
    );
  }
  results.tasks.forEach((task, t) => {
    if (typeof task?.name !== "string" || !Array.isArray(task.records))
      throw new EvaluationError("E_INPUT", `${file}: tasks[${t}] needs a name and records`);
  });
  return results as EvalResults;
}

/** Scores by item id: rows of rounds. */
function byItem(task: TaskResult): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const record of task.records) {
    const row = map.get(record.id) ?? [];
    row[record.round] = record.score;
    map.set(record.id, row);
  }
  return map;
}

/** Align two result sets item by item; different item sets are an error naming the ids. */
export function alignTasks(
  a: EvalResults,
  b: EvalResults,
): { task: string; ids: string[]; a: number[][]; b: number[][] }[] {
  const tasksA = new Map(a.tasks.map((t) => [t.name, t]));
  const tasksB = new Map(b.tasks.map((t) => [t.name, t]));
  const missing = [...tasksA.keys()].filter((n) => !tasksB.has(n));
  const extra = [...tasksB.keys()].filter((n) => !tasksA.has(n));
  if (missing.length || extra.length) {
    throw new EvaluationError(
      "E_COMPARE",
      `the results cover different tasks: ${missing.length ? `only in A (${a.model.name}): ${missing.join(", ")}` : ""}${missing.length && extra.length ? "; " : ""}${extra.length ? `only in B (${b.model.name}): ${extra.join(", ")}` : ""}`,
    );
  }
  return [...tasksA.keys()].map((name) => {
    const itemsA = byItem(tasksA.get(name)!);
    const itemsB = byItem(tasksB.get(name)!);
    const onlyA = [...itemsA.keys()].filter((id) => !itemsB.has(id));
    const onlyB = [...itemsB.keys()].filter((id) => !itemsA.has(id));
    if (onlyA.length || onlyB.length) {
      const list = (ids: string[]) =>
        `${ids.slice(0, 8).join(", ")}${ids.length > 8 ? ` and ${ids.length - 8} more` : ""}`;
      throw new EvaluationError(
        "E_COMPARE",
        `task ${name}: the results have different items — ${onlyA.length ? `missing from B: ${list(onlyA)}` : ""}${onlyA.length && onlyB.length ? "; " : ""}${onlyB.length ? `missing from A: ${list(onlyB)}` : ""}`,
      );
    }
    const ids = [...itemsA.keys()].sort();
    return {
      task: name,
      ids,
      a: ids.map((id) => itemsA.get(id)!.filter((v) => v !== undefined)),
      b: ids.map((id) => itemsB.get(id)!.filter((v) => v !== undefined)),
    };
  });
}

export interface TaskComparison {
  task: string;
  result: PairedResult;
  /** Holm–Bonferroni adjusted p across the tasks compared. */
  pAdjusted: number;
  /** The winner after adjustment. */
  winner: "A" | "B" | "none";
}

export interface Comparison {
  a: { name: string; hash: string };
  b: { name: string; hash: string };
  tasks: TaskComparison[];
  alpha: number;
  threshold: number;
}

/** B against A on every task. */
export function compareResults(
  a: EvalResults,
  b: EvalResults,
  options: { alpha?: number; threshold?: number; seed?: number } = {},
): Comparison {
  const alpha = options.alpha ?? 0.05;
  const threshold = options.threshold ?? 0;
  const aligned = alignTasks(a, b);
  const results = aligned.map((t) =>
    pairedComparison({ ids: t.ids, a: t.a, b: t.b }, { alpha, threshold, seed: options.seed ?? 1 }),
  );
  const raw = results.map((r) => r.mcnemar?.p ?? r.tTest.p);
  const adjusted = holmBonferroni(raw);
  return {
    a: a.model,
    b: b.model,
    alpha,
    threshold,
    tasks: aligned.map((t, i) => {
      const r = results[i]!;
      const significant = adjusted[i]! < alpha && Math.abs(r.delta) >= threshold && r.delta !== 0;
      return {
        task: t.task,
        result: r,
        pAdjusted: adjusted[i]!,
        winner: significant ? (r.delta > 0 ? "B" : "A") : "none",
      };
    }),
  };
}

/** Forgetting of baked models against the base, from result files. */
export function forgettingFromResults(
  base: EvalResults,
  baked: readonly EvalResults[],
  options: { margin?: number; alpha?: number; seed?: number; degradationThreshold?: number } = {},
): ForgettingResult {
  const aligned = baked.map((b) => alignTasks(base, b));
  const tasks: TaskScores[] = aligned[0]!.map((t, k) => ({
    task: t.task,
    ids: t.ids,
    byModel: [t.a, ...aligned.map((al) => al[k]!.b)],
  }));
  return forgettingAnalysis(tasks, [base.model.name, ...baked.map((b) => b.model.name)], options);
}

export type GateKind = "regression" | "no-improvement" | "forgetting" | "max-degradation";
export const GATE_KINDS: GateKind[] = [
  "regression",
  "no-improvement",
  "forgetting",
  "max-degradation",
];

export interface GateResult {
  gate: GateKind;
  /** The task it concerns (absent for whole-run gates). */
  task?: string;
  passed: boolean;
  message: string;
}

/**
 * Gates:
 * - `regression`: fails for each task where B is significantly worse than A (after Holm);
 * - `no-improvement`: fails unless at least one task shows B significantly better;
 * - `forgetting`: fails for each (baked model, task) that is not shown non-inferior to the base;
 * - `max-degradation`: fails for each baked model whose maximum relative degradation
 *   (base − baked) / base over the tasks is not below the threshold (the paper's < 3.4%).
 */
export function evaluateGates(
  kinds: readonly GateKind[],
  comparison?: Comparison,
  forgetting?: ForgettingResult,
): GateResult[] {
  const out: GateResult[] = [];
  const pct = (x: number) => `${(100 * x).toFixed(1)} points`;
  for (const kind of kinds) {
    if (kind === "regression") {
      if (!comparison)
        throw new EvaluationError("E_INPUT", "the regression gate needs an A/B comparison");
      for (const t of comparison.tasks) {
        const failed = t.winner === "A";
        out.push({
          gate: kind,
          task: t.task,
          passed: !failed,
          message: `${t.task}: Δ ${pct(t.result.delta)} (95% CI ${pct(t.result.bootstrap.low)} … ${pct(t.result.bootstrap.high)}), adjusted p ${t.pAdjusted.toPrecision(3)}${failed ? " — B is significantly worse" : ""}`,
        });
      }
    } else if (kind === "no-improvement") {
      if (!comparison)
        throw new EvaluationError("E_INPUT", "the no-improvement gate needs an A/B comparison");
      const wins = comparison.tasks.filter((t) => t.winner === "B");
      out.push({
        gate: kind,
        passed: wins.length > 0,
        message: wins.length
          ? `B improves on ${wins.map((t) => t.task).join(", ")}`
          : "no task shows a significant improvement of B over A",
      });
    } else if (kind === "max-degradation") {
      if (!forgetting)
        throw new EvaluationError(
          "E_INPUT",
          "the max-degradation gate needs a forgetting analysis",
        );
      const rel = (x: number) => `${(100 * x).toFixed(1)}%`;
      for (const d of forgetting.degradation) {
        out.push({
          gate: kind,
          task: d.model,
          passed: d.passed,
          message: `${d.model}: max degradation ${rel(d.maxDegradation)} on ${d.maxTask} (threshold ${rel(forgetting.degradationThreshold)}); tasks passed ${d.tasksPassed}/${d.tasks}${d.passed ? "" : " — forgetting above the threshold"}`,
        });
      }
    } else {
      if (!forgetting)
        throw new EvaluationError("E_INPUT", "the forgetting gate needs a forgetting analysis");
      for (const cell of forgetting.cells) {
        out.push({
          gate: kind,
          task: `${cell.model}/${cell.task}`,
          passed: cell.nonInferiority.nonInferior,
          message: `${cell.model} on ${cell.task}: Δ ${pct(cell.delta)} vs margin −${pct(forgetting.margin)}, non-inferiority p ${cell.nonInferiority.p.toPrecision(3)}${cell.nonInferiority.nonInferior ? "" : " — forgetting not ruled out"}`,
        });
      }
    }
  }
  return out;
}
