/**
 * A bake's report for people (`forge bake --report`): the run's facts, the KL to the prompted
 * model before and after with its standard errors, and the training loss — as @forge/eval's
 * `ReportInput`, which `toHtml` turns into one self-contained page.
 */
import type { KLSummary, ReportInput } from "@forge/eval";
import type { KLMeasurement } from "./measure.js";
import type { BakeRunResult } from "./run.js";

const summary = (m: KLMeasurement) => ({
  token: m.token.estimate,
  tokenSE: m.token.standardError,
  sequence: m.sequence.estimate,
  sequenceSE: m.sequence.standardError,
});

/** The KL before and after as the report shows it (undefined when the bake did not measure). */
export function klSummary(
  before: KLMeasurement | undefined,
  after: KLMeasurement | undefined,
): KLSummary | undefined {
  if (!before || !after) return undefined;
  return {
    before: summary(before),
    after: summary(after),
    reduction: 1 - after.token.estimate / before.token.estimate,
    n: after.n,
  };
}

/** What `toHtml` needs to show a bake: facts, KL before/after and the training curve. */
export function bakeReportInput(
  result: BakeRunResult,
  context: { model: string; prompt: string; out?: string },
): ReportInput {
  const kl = klSummary(result.before, result.after);
  const training = result.training;
  return {
    title: `forge bake — "${context.prompt}"`,
    facts: [
      ["model", context.model],
      ["prompt", context.prompt],
      ["baked adapter", context.out ?? result.out],
      ["stimuli", String(result.stimuli.length)],
      ["trajectories", String(result.trajectories.length)],
      ...(kl ? [] : ([["KL", "not measured (--no-measure)"]] as const)),
    ],
    ...(kl ? { kl } : {}),
    training: {
      history: training.result.history,
      ...(training.validationBefore !== undefined
        ? { validationBefore: training.validationBefore }
        : {}),
      ...(training.validationBest !== undefined ? { validationBest: training.validationBest } : {}),
    },
    timings: Object.fromEntries(
      Object.entries(result.phaseSeconds).filter(
        (entry): entry is [string, number] => entry[1] !== undefined,
      ),
    ),
  };
}
