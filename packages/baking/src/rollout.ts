/**
 * Rollout: the teacher — the model with the prompt u in front of each stimulus — samples k
 * responses per stimulus, batched with the KV cache. Optionally the teacher's top-K
 * log-probabilities at every response position are cached with each trajectory (a cached
 * teacher: baking then needs no teacher forward passes).
 */
import { Rng } from "@forge/core";
import { type GPT, generate } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import { type BakePrompt, inContext, type Stimulus, type Trajectory } from "./records.js";
import { responseLogits, topKOf } from "./score.js";

export interface RolloutSettings {
  /** Samples per stimulus (k). */
  samples: number;
  temperature: number;
  topK?: number;
  topP?: number;
  maxNewTokens: number;
  /** Sequences generated together. */
  batchSize: number;
  /** Cache the teacher's top-K log-probabilities with each trajectory (0: do not). */
  cacheTopK: number;
  seed: number;
}

export const DEFAULT_ROLLOUT: RolloutSettings = {
  samples: 2,
  temperature: 0.7,
  maxNewTokens: 64,
  batchSize: 32,
  cacheTopK: 0,
  seed: 1,
};

export interface Teacher {
  model: GPT;
  tokenizer: Tokenizer;
  prompt: BakePrompt;
}

/** Check that the prompt alone leaves room in the context window. */
export function checkPromptFits(tokenizer: Tokenizer, prompt: BakePrompt, blockSize: number): void {
  const ids = tokenizer.renderChat([...prompt.teacher, { role: "user", content: "" }], {
    addGenerationPrompt: true,
  }).ids;
  if (ids.length >= blockSize) {
    throw new BakingError(
      "E_CONTEXT",
      `the prompt is ${ids.length} tokens with its chat framing; the model's context window is ${blockSize}: it must be shorter to leave room for a question and an answer`,
    );
  }
}

export function resolveRollout(input: Partial<RolloutSettings>): RolloutSettings {
  const s = { ...DEFAULT_ROLLOUT, ...input };
  const positive = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 1)
      throw new BakingError("E_INPUT", `rollout.${name} must be a positive integer; got ${v}`);
  };
  positive(s.samples, "samples");
  positive(s.maxNewTokens, "maxNewTokens");
  positive(s.batchSize, "batchSize");
  if (!(s.temperature >= 0))
    throw new BakingError("E_INPUT", `rollout.temperature must be ≥ 0; got ${s.temperature}`);
  if (!Number.isInteger(s.cacheTopK) || s.cacheTopK < 0)
    throw new BakingError("E_INPUT", `rollout.cacheTopK must be an integer ≥ 0`);
  return s;
}

/** Sample k trajectories per stimulus from the teacher. */
export function rollout(
  teacher: Teacher,
  stimuli: readonly Stimulus[],
  input: Partial<RolloutSettings> = {},
  onProgress?: (done: number, total: number) => void,
): Trajectory[] {
  const settings = resolveRollout(input);
  const { model, tokenizer, prompt } = teacher;
  const { blockSize, vocabSize } = model.config;
  checkPromptFits(tokenizer, prompt, blockSize);
  const stopIds = tokenizer.stopIds();
  const jobs: { stimulus: Stimulus; sample: number; ids: number[] }[] = [];
  for (const stimulus of stimuli) {
    const ids = tokenizer.promptIds(inContext(prompt.teacher, stimulus.messages));
    if (ids.length + settings.maxNewTokens > blockSize) {
      throw new BakingError(
        "E_CONTEXT",
        `stimulus ${stimulus.id} is ${ids.length} tokens with the prompt; with maxNewTokens ${settings.maxNewTokens} it exceeds the context window of ${blockSize}`,
      );
    }
    for (let sample = 0; sample < settings.samples; sample++) jobs.push({ stimulus, sample, ids });
  }
  const rng = new Rng(settings.seed);
  const trajectories: Trajectory[] = [];
  for (let start = 0; start < jobs.length; start += settings.batchSize) {
    const batch = jobs.slice(start, start + settings.batchSize);
    const { tokens, finishReasons } = generate(
      model,
      batch.map((j) => j.ids),
      {
        maxNewTokens: settings.maxNewTokens,
        temperature: settings.temperature,
        ...(settings.topK !== undefined ? { topK: settings.topK } : {}),
        ...(settings.topP !== undefined ? { topP: settings.topP } : {}),
        seed: rng.seed(),
        stopIds,
        bannedIds: tokenizer.bannedIds(),
      },
    );
    batch.forEach((job, i) => {
      const ids = tokens[i]!;
      if (ids.length === 0) return;
      trajectories.push({
        id: `${job.stimulus.id}#${job.sample}`,
        stimulusId: job.stimulus.id,
        sample: job.sample,
        text: tokenizer.decode(ids, { skipSpecial: true }).trim(),
        tokenIds: ids,
        finishReason: finishReasons[i]!,
      });
    });
    onProgress?.(Math.min(start + settings.batchSize, jobs.length), jobs.length);
  }
  if (settings.cacheTopK > 0) {
    const byId = new Map(stimuli.map((s) => [s.id, s]));
    const logits = responseLogits(
      model,
      trajectories.map((t) => ({
        prompt: tokenizer.promptIds(inContext(prompt.teacher, byId.get(t.stimulusId)!.messages)),
        response: t.tokenIds,
      })),
    );
    trajectories.forEach((t, i) => {
      t.topK = topKOf(logits[i]!, vocabSize, Math.min(settings.cacheTopK, vocabSize));
    });
  }
  return trajectories;
}
