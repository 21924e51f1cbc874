/**
 * The A/B test of Quiet-STaR: does thinking help? The same items are answered R times (rounds,
 * one sampling seed each, the same seed for both arms) by the model without thoughts (baseline:
 * thought tokens banned) and with thoughts injected. Per round, each arm's accuracy; across
 * rounds, a paired t-test on the R accuracy differences (the seed document's test); over items,
 * @forge/eval's paired comparison of the per-item scores (each item's R scores per arm: a
 * t-test on the item means, or McNemar when there is one round; a bootstrap interval). Thoughts win
 * when the mean gain reaches the threshold and both tests are significant at `alpha`; the
 * baseline wins in the mirror case; otherwise nobody does.
 */
import {
  type Item,
  makeScorer,
  type PairedResult,
  pairedComparison,
  pairedT,
  renderMessages,
  renderTemplate,
  type Task,
} from "@forge/eval";
import type { GPT } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import type { QuietStarConfig } from "./config.js";
import { type TraceQuality, traceQuality } from "./quality.js";
import { type ThinkingSettings, type Trace, thinkingReplies } from "./thoughts.js";
import type { ThoughtTokens } from "./tokens.js";

/** How a model answers in an evaluation. */
export type ThinkingMode =
  /** No thoughts at all: thought tokens are banned. */
  | "baseline"
  /** Thoughts injected at the configured points. */
  | "thoughts"
  /** Left alone: the model may open thoughts by itself, none are injected. */
  | "natural";

/** One answered item. */
export interface ScoredTrace {
  item: string;
  round: number;
  score: number;
  trace: Trace;
  quality: TraceQuality;
}

/** An arm's answers to a set of items in one round. */
export interface ArmRun {
  accuracy: number;
  scored: ScoredTrace[];
}

/** The settings of `thinkingReplies` for a mode (seed left to the caller). */
export function modeSettings(
  mode: ThinkingMode,
  config: QuietStarConfig,
  tokens: ThoughtTokens,
  generation: { maxNewTokens: number; temperature: number },
): Omit<ThinkingSettings, "seed"> {
  return {
    tokens,
    inject: mode === "thoughts",
    allowThoughts: mode !== "baseline",
    points: config.injectAt,
    probability: config.thoughtProbability,
    maxThoughtLength: config.maxThoughtLength,
    samplesPerPoint: config.samplesPerPoint,
    thoughtTemperature: config.thoughtTemperature,
    maxThoughts: config.maxThoughts,
    maxNewTokens: generation.maxNewTokens,
    temperature: generation.temperature,
  };
}

/** What an item's answer should be, as text (the scorer's target, or the item's answer). */
export function expectedAnswer(task: Task, item: Item): string {
  const target = task.scorer.target;
  if (target) return renderTemplate(target, item, `${task.name}: scorer.target`);
  return String(item.answer ?? "");
}

/**
 * Answer `items` of `task` once in `mode` with `seed`, scored by the task's own scorer on the
 * answer without its thoughts.
 */
export async function runArm(
  model: GPT,
  tokenizer: Tokenizer,
  task: Task,
  items: readonly Item[],
  settings: Omit<ThinkingSettings, "seed">,
  seed: number,
  round = 0,
): Promise<ArmRun> {
  const score = await makeScorer(task);
  const prompts = items.map((item) => tokenizer.promptIds(renderMessages(task, item)));
  const traces = thinkingReplies(model, tokenizer, prompts, { ...settings, seed });
  const scored: ScoredTrace[] = [];
  for (const [i, trace] of traces.entries()) {
    const item = items[i]!;
    const value = await score(trace.answer, item);
    scored.push({
      item: item.id,
      round,
      score: value,
      trace,
      quality: traceQuality(trace, expectedAnswer(task, item)),
    });
  }
  const accuracy = scored.reduce((s, x) => s + x.score, 0) / Math.max(1, scored.length);
  return { accuracy, scored };
}

export interface AbRound {
  round: number;
  seed: number;
  baseline: number;
  thoughts: number;
}

export interface AbSummary {
  mean: number;
  sd: number;
}

export interface AbResult {
  items: string[];
  rounds: AbRound[];
  baseline: AbSummary;
  thoughts: AbSummary;
  /** thoughts − baseline, mean accuracy (a fraction). */
  improvement: number;
  /** The improvement relative to the baseline's accuracy (a fraction; null when it is 0). */
  relativeImprovement: number | null;
  /** Paired t-test on the per-round accuracy differences. */
  roundTest: { t: number; df: number; p: number };
  /** @forge/eval's paired comparison of per-item scores (A = baseline, B = thoughts: delta = thoughts − baseline). */
  itemTest: PairedResult;
  winner: "thoughts" | "baseline" | "none";
  /** Why, in words. */
  reason: string;
  alpha: number;
  threshold: number;
  /** Every answer of the thoughts arm (the traces a bake learns from). */
  thoughtTraces: ScoredTrace[];
  /** Every answer of the baseline arm. */
  baselineTraces: ScoredTrace[];
}

export type AbEvent = {
  type: "ab-progress";
  round: number;
  arm: "baseline" | "thoughts";
  accuracy: number;
  done: number;
  total: number;
};

const summary = (xs: readonly number[]): AbSummary => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd =
    xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
};

/** The seed of round `round` (both arms use it). */
export const roundSeed = (seed: number, round: number): number => seed + round * 1_000_003;

/** The decision from per-round accuracies and per-item scores (thoughts = A, baseline = B). */
export function decideAb(
  rounds: readonly AbRound[],
  items: readonly string[],
  baselineScores: ReadonlyArray<readonly number[]>,
  thoughtScores: ReadonlyArray<readonly number[]>,
  options: { alpha: number; threshold: number; seed?: number },
): Omit<AbResult, "thoughtTraces" | "baselineTraces"> {
  const baseline = summary(rounds.map((r) => r.baseline));
  const thoughts = summary(rounds.map((r) => r.thoughts));
  const improvement = thoughts.mean - baseline.mean;
  const roundTest = pairedT(rounds.map((r) => r.thoughts - r.baseline));
  const itemTest = pairedComparison(
    { ids: items, a: baselineScores, b: thoughtScores },
    { alpha: options.alpha, threshold: options.threshold, seed: options.seed ?? 1 },
  );
  const { alpha, threshold } = options;
  const pRound = Number.isFinite(roundTest.p) ? roundTest.p : 1;
  const pItem = itemTest.mcnemar?.p ?? itemTest.tTest.p;
  const fmt = (x: number) => (x * 100).toFixed(1);
  const p = (x: number) => (x === 0 ? "< 1e-16" : `= ${x.toPrecision(2)}`);
  const tests = `p ${p(pRound)} across ${rounds.length} rounds, p ${p(pItem)} over ${items.length} items`;
  let winner: AbResult["winner"] = "none";
  let reason: string;
  if (improvement >= threshold && pRound < alpha && pItem < alpha) {
    winner = "thoughts";
    reason = `thoughts gained ${fmt(improvement)} points (≥ ${fmt(threshold)}), ${tests} (both < ${alpha})`;
  } else if (-improvement >= threshold && pRound < alpha && pItem < alpha) {
    winner = "baseline";
    reason = `thoughts lost ${fmt(-improvement)} points, ${tests} (both < ${alpha})`;
  } else if (improvement < threshold)
    reason = `thoughts changed accuracy by ${improvement >= 0 ? "+" : ""}${fmt(improvement)} points, below the ${fmt(threshold)}-point threshold (${tests})`;
  else
    reason = `thoughts gained ${fmt(improvement)} points, but not significantly at ${alpha} (${tests})`;
  return {
    items: [...items],
    rounds: [...rounds],
    baseline,
    thoughts,
    improvement,
    relativeImprovement: baseline.mean > 0 ? improvement / baseline.mean : null,
    roundTest: { ...roundTest, p: pRound },
    itemTest,
    winner,
    reason,
    alpha,
    threshold,
  };
}

/**
 * Run the A/B test: `config.abTestRounds` rounds over `items`, baseline then thoughts per round,
 * the same seed for both.
 */
export async function abTest(
  model: GPT,
  tokenizer: Tokenizer,
  task: Task,
  items: readonly Item[],
  config: QuietStarConfig,
  tokens: ThoughtTokens,
  generation: { maxNewTokens: number; temperature: number },
  onEvent: (event: AbEvent) => void = () => undefined,
): Promise<AbResult> {
  const rounds: AbRound[] = [];
  const index = new Map(items.map((item, i) => [item.id, i]));
  const baselineScores = items.map((): number[] => []);
  const thoughtScores = items.map((): number[] => []);
  const baselineTraces: ScoredTrace[] = [];
  const thoughtTraces: ScoredTrace[] = [];
  const total = config.abTestRounds * 2;
  let done = 0;
  for (let round = 0; round < config.abTestRounds; round++) {
    const seed = roundSeed(config.seed, round);
    const arms: Record<"baseline" | "thoughts", number> = { baseline: 0, thoughts: 0 };
    for (const arm of ["baseline", "thoughts"] as const) {
      const run = await runArm(
        model,
        tokenizer,
        task,
        items,
        modeSettings(arm, config, tokens, generation),
        seed,
        round,
      );
      arms[arm] = run.accuracy;
      for (const s of run.scored) {
        (arm === "baseline" ? baselineScores : thoughtScores)[index.get(s.item)!]!.push(s.score);
        (arm === "baseline" ? baselineTraces : thoughtTraces).push(s);
      }
      onEvent({ type: "ab-progress", round, arm, accuracy: run.accuracy, done: ++done, total });
    }
    rounds.push({ round: round + 1, seed, ...arms });
  }
  const decision = decideAb(
    rounds,
    items.map((i) => i.id),
    baselineScores,
    thoughtScores,
    { alpha: config.alpha, threshold: config.improvementThreshold, seed: config.seed },
  );
  return { ...decision, thoughtTraces, baselineTraces };
}
