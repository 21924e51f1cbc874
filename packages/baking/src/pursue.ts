/**
 * Prompt pursuit (Prompt Baking, Eq. 4): θ_u^(i+1) = B(θ_u^(i), u). Round i takes the model
 * baked in round i − 1 — prompted with u again — as its teacher, and bakes a new adapter into
 * it; the adapter is then merged, so the next round starts from θ_u^(i). After each round an
 * evaluator scores the model (higher is better); pursuit stops when the improvement over the
 * previous round falls below `minImprovement`, or after `rounds`. Every round's model (merged
 * weights), adapter and score are kept, with its lineage in forge.json.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "@forge/core";
import { type GPT, mergeLora, saveModel } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import { type BakePrompt, promptHash } from "./records.js";
import { type BakeEvent, type BakeRunOptions, type BakeRunResult, bakePrompt } from "./run.js";

export interface PursuitRound {
  round: number;
  score: number;
  improvement: number;
  /** The merged model after this round. */
  model: string;
  /** This round's bake output (adapter relative to the previous round's model). */
  bake: string;
  parent: string | null;
  klAfter?: number;
}

export interface PursueOptions {
  /** Round cap. */
  rounds: number;
  /** Stop when a round improves the score by less than this. */
  minImprovement: number;
  /** Scores a model; higher is better (a task score, a persona rate, −KL, …). */
  evaluator: (model: GPT, round: number) => number | Promise<number>;
  /** Everything the bakes need but the prompt and the output directory. */
  bake: Omit<BakeRunOptions, "out" | "output" | "prompt" | "baseModel" | "resume">;
  /** Directory for round-<i>/ outputs (the paths recorded in lineage and results). */
  out: string;
  /**
   * Where the files are written, when not `out` itself: a claimed work directory that the
   * caller renames to `out` at the end (see @forge/core `claimOutput`).
   */
  work?: string;
  /** The base model's directory (lineage). */
  baseModel?: string;
  /** Extra lineage to record in every round's forge.json (e.g. earlier prompts). */
  lineage?: Record<string, unknown>[];
  onEvent?: (event: PursuitEvent) => void;
}

/** Progress of a pursuit; `prompt` (1-based) is set by `pursueAll`. */
export type PursuitEvent = (
  | { type: "round-start"; round: number }
  | { type: "round-end"; round: PursuitRound }
  | { type: "bake"; round: number; event: BakeEvent }
) & { prompt?: number };

export interface PursuitResult {
  /** The score before any round (the model as given). */
  initialScore: number;
  rounds: PursuitRound[];
  /** Why it stopped. */
  stopReason: "converged" | "round-cap";
  best: PursuitRound;
}

/** Pursue one prompt. `model` ends as the last round's merged model. */
export async function pursue(
  model: GPT,
  tokenizer: Tokenizer,
  prompt: BakePrompt,
  options: PursueOptions,
): Promise<PursuitResult> {
  if (!Number.isInteger(options.rounds) || options.rounds < 1)
    throw new BakingError("E_INPUT", `rounds must be a positive integer; got ${options.rounds}`);
  if (!Number.isFinite(options.minImprovement))
    throw new BakingError("E_INPUT", "minImprovement must be a number");
  if (model.lora)
    throw new BakingError(
      "E_INPUT",
      "pursue needs a model without an adapter attached (merge it first)",
    );
  const initialScore = await options.evaluator(model, 0);
  const rounds: PursuitRound[] = [];
  let previous = initialScore;
  let parent = options.baseModel ?? null;
  let stopReason: PursuitResult["stopReason"] = "round-cap";
  for (let round = 1; round <= options.rounds; round++) {
    options.onEvent?.({ type: "round-start", round });
    const dir = path.join(options.out, `round-${round}`);
    const written = path.join(options.work ?? options.out, `round-${round}`);
    const result: BakeRunResult = await bakePrompt(model, tokenizer, {
      ...options.bake,
      prompt,
      out: path.join(written, "bake"),
      ...(parent ? { baseModel: parent } : {}),
      onEvent: (event) => options.onEvent?.({ type: "bake", round, event }),
    });
    mergeLora(model);
    const score = await options.evaluator(model, round);
    const record: PursuitRound = {
      round,
      score,
      improvement: score - previous,
      model: path.join(dir, "model"),
      bake: path.join(dir, "bake"),
      parent,
      ...(result.after ? { klAfter: result.after.token.estimate } : {}),
    };
    const lineage = [
      ...(options.lineage ?? []),
      ...rounds.map((r) => ({
        round: r.round,
        promptHash: promptHash(prompt),
        model: r.model,
        score: r.score,
      })),
      { round, promptHash: promptHash(prompt), model: record.model, score },
    ];
    await saveModel(model, path.join(written, "model"), {
      tokenizer,
      forge: {
        kind: "pursuit-round",
        prompt: { hash: promptHash(prompt), ...prompt },
        round,
        score,
        improvement: record.improvement,
        parent,
        lineage,
      },
    });
    rounds.push(record);
    options.onEvent?.({ type: "round-end", round: record });
    previous = score;
    parent = record.model;
    if (record.improvement < options.minImprovement) {
      stopReason = "converged";
      break;
    }
  }
  const best = rounds.reduce((a, b) => (b.score > a.score ? b : a));
  await writeFileAtomic(
    path.join(options.work ?? options.out, "pursuit.json"),
    `${JSON.stringify({ prompt: { hash: promptHash(prompt), ...prompt }, initialScore, rounds, stopReason, best: best.round, minImprovement: options.minImprovement }, null, 2)}\n`,
  );
  return { initialScore, rounds, stopReason, best };
}

/**
 * Several prompts in sequence: each is pursued starting from the previous prompt's final
 * model; every round's forge.json records the whole lineage so far.
 */
export async function pursueAll(
  model: GPT,
  tokenizer: Tokenizer,
  prompts: readonly BakePrompt[],
  options: Omit<PursueOptions, "out" | "work" | "lineage"> & { out: string; work?: string },
): Promise<PursuitResult[]> {
  const results: PursuitResult[] = [];
  const lineage: Record<string, unknown>[] = [];
  let base = options.baseModel;
  for (const [index, prompt] of prompts.entries()) {
    const onEvent = options.onEvent;
    const result = await pursue(model, tokenizer, prompt, {
      ...options,
      ...(onEvent ? { onEvent: (event) => onEvent({ ...event, prompt: index + 1 }) } : {}),
      out: path.join(options.out, `prompt-${index + 1}`),
      ...(options.work ? { work: path.join(options.work, `prompt-${index + 1}`) } : {}),
      lineage: [...lineage],
      ...(base ? { baseModel: base } : {}),
    });
    results.push(result);
    const last = result.rounds.at(-1)!;
    lineage.push({
      prompt: index + 1,
      promptHash: promptHash(prompt),
      model: last.model,
      score: last.score,
    });
    base = last.model;
  }
  return results;
}

/** The lineage a pursued model's forge.json records. */
export async function readLineage(modelDir: string): Promise<Record<string, unknown>[]> {
  const file = path.join(modelDir, "forge.json");
  if (!existsSync(file)) throw new BakingError("E_INPUT", `${modelDir} has no forge.json`);
  const record = JSON.parse(await readFile(file, "utf8")) as {
    lineage?: Record<string, unknown>[];
  };
  return record.lineage ?? [];
}

/** The paper's "re-prompting amplifies" table: {base, baked} × {unprompted, prompted}. */
export async function repromptTable(
  models: { base: GPT; baked: GPT },
  metric: (model: GPT, prompted: boolean) => number | Promise<number>,
): Promise<{
  base: { unprompted: number; prompted: number };
  baked: { unprompted: number; prompted: number };
}> {
  return {
    base: {
      unprompted: await metric(models.base, false),
      prompted: await metric(models.base, true),
    },
    baked: {
      unprompted: await metric(models.baked, false),
      prompted: await metric(models.baked, true),
    },
  };
}
