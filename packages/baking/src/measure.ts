/**
 * How close a student is to the prompted teacher (Prompt Baking, Eq. 3): sample N
 * trajectories from the teacher (temperature 1, nothing banned or truncated but the length
 * cap, so the samples come from P_θ(·|u, x)), then
 *
 *   sequence level  D ≈ mean_i [log P_θ(y_i | u, x_i) − log P_student(y_i | x_i)]
 *   token level     D ≈ mean_i Σ_t KL(P_θ(·| u, x_i, y_<t) ‖ P_student(·| x_i, y_<t))
 *
 * each with its standard error. Trajectories stopped by the length cap measure the KL of the
 * first maxNewTokens tokens.
 */

import { Rng } from "@forge/core";
import { type KLEstimate, sequenceKL, tokenLevelKL } from "@forge/losses";
import { type GPT, generate } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import { type BakePrompt, inContext, type Stimulus } from "./records.js";
import { logSoftmaxRow, responseLogits } from "./score.js";

export interface MeasureSettings {
  /** Trajectories (stimuli are cycled). */
  n: number;
  maxNewTokens: number;
  batchSize: number;
  seed: number;
}

export const DEFAULT_MEASURE: MeasureSettings = {
  n: 128,
  maxNewTokens: 64,
  batchSize: 32,
  seed: 7,
};

export interface KLMeasurement {
  sequence: KLEstimate;
  token: KLEstimate;
  n: number;
  /** Mean response length (tokens). */
  meanTokens: number;
}

export interface MeasureTarget {
  model: GPT;
  /** Messages in front of each stimulus (the teacher's u; usually none for a student). */
  prefix: BakePrompt["teacher"];
}

/** Sample trajectories from the prompted teacher. */
export function sampleTrajectories(
  teacher: MeasureTarget,
  tokenizer: Tokenizer,
  stimuli: readonly Stimulus[],
  settings: MeasureSettings,
): { stimulus: Stimulus; response: number[] }[] {
  if (stimuli.length === 0)
    throw new BakingError("E_INPUT", "measuring KL needs at least one stimulus");
  const rng = new Rng(settings.seed);
  const jobs = Array.from({ length: settings.n }, (_, i) => stimuli[i % stimuli.length]!);
  const out: { stimulus: Stimulus; response: number[] }[] = [];
  for (let start = 0; start < jobs.length; start += settings.batchSize) {
    const batch = jobs.slice(start, start + settings.batchSize);
    const { tokens } = generate(
      teacher.model,
      batch.map((s) => tokenizer.promptIds(inContext(teacher.prefix, s.messages))),
      {
        maxNewTokens: settings.maxNewTokens,
        temperature: 1,
        seed: rng.seed(),
        stopIds: tokenizer.stopIds(),
      },
    );
    batch.forEach((stimulus, i) => {
      if (tokens[i]!.length > 0) out.push({ stimulus, response: tokens[i]! });
    });
  }
  return out;
}

/** KL(teacher with its prefix ‖ student with its prefix), both estimators, on shared samples. */
export function measureKL(
  teacher: MeasureTarget,
  student: MeasureTarget,
  tokenizer: Tokenizer,
  stimuli: readonly Stimulus[],
  input: Partial<MeasureSettings> = {},
  samples?: { stimulus: Stimulus; response: number[] }[],
): KLMeasurement {
  const settings = { ...DEFAULT_MEASURE, ...input };
  if (!Number.isInteger(settings.n) || settings.n < 2)
    throw new BakingError("E_INPUT", `measure.n must be an integer ≥ 2; got ${settings.n}`);
  const trajectories = samples ?? sampleTrajectories(teacher, tokenizer, stimuli, settings);
  const vocab = teacher.model.config.vocabSize;
  const logitsOf = (side: MeasureTarget) =>
    responseLogits(
      side.model,
      trajectories.map((t) => ({
        prompt: tokenizer.promptIds(inContext(side.prefix, t.stimulus.messages)),
        response: t.response,
      })),
      { batchSize: settings.batchSize },
    );
  const teacherLogits = logitsOf(teacher);
  const studentLogits = logitsOf(student);
  const teacherTotals: number[] = [];
  const studentTotals: number[] = [];
  const perPosition: number[][] = [];
  const lp = new Float64Array(vocab);
  const lq = new Float64Array(vocab);
  trajectories.forEach((t, i) => {
    let tSum = 0;
    let sSum = 0;
    const kls: number[] = [];
    t.response.forEach((token, r) => {
      logSoftmaxRow(teacherLogits[i]!, r * vocab, vocab, lp);
      logSoftmaxRow(studentLogits[i]!, r * vocab, vocab, lq);
      tSum += lp[token]!;
      sSum += lq[token]!;
      let kl = 0;
      for (let j = 0; j < vocab; j++) {
        const p = Math.exp(lp[j]!);
        if (p > 0) kl += p * (lp[j]! - lq[j]!);
      }
      kls.push(Math.max(0, kl));
    });
    teacherTotals.push(tSum);
    studentTotals.push(sSum);
    perPosition.push(kls);
  });
  return {
    sequence: sequenceKL(teacherTotals, studentTotals),
    token: tokenLevelKL(perPosition),
    n: trajectories.length,
    meanTokens: trajectories.reduce((a, t) => a + t.response.length, 0) / trajectories.length,
  };
}
