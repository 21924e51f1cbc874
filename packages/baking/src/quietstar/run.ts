/**
 * The Quiet-STaR pipeline: thought tokens → A/B test (baseline vs thoughts over R rounds) →
 * if thoughts win, bake the successful traces into the weights → compare the base (its natural
 * mode), base + injected thoughts and the baked model (its natural mode) on held-out items →
 * report.
 *
 * The output directory (claimed as @forge/core `claimOutput` says: never one forge did not
 * make; a previous one only with `force`) holds `report.json`, `report.md`, `accuracy.svg`,
 * `traces.jsonl` (the traces baked) and, when something was baked, `model/` — a model
 * directory in the HF layout whose tokenizer carries the thought tokens as `added_tokens` and
 * whose forge.json records them (`thoughtTokens`). Work happens in the claim's work directory;
 * a stopped run resumes from there: the A/B result is kept, training continues from its
 * checkpoint.
 */
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { claimOutput, InterruptedError, type OutputClaim, Rng, writeFileAtomic } from "@forge/core";
import { type Item, pairedComparison, renderMessages, type Task } from "@forge/eval";
import { type GPT, mergeLora, modelHash, type TrainEvent } from "@forge/model";
import { writeModelFiles } from "@forge/model/internal";
import type { Tokenizer } from "@forge/tokenizer";
import { BakingError } from "../errors.js";
import {
  type AbEvent,
  type AbResult,
  abTest,
  modeSettings,
  runArm,
  type ScoredTrace,
} from "./ab.js";
import type { QuietStarConfig } from "./config.js";
import { type QualityDistribution, qualityDistribution } from "./quality.js";
import { accuracySvg, quietStarMarkdown } from "./report.js";
import { addThoughtTokens, type ThoughtTokens } from "./tokens.js";
import {
  splitByItem,
  successfulTraces,
  type TraceTraining,
  traceExamples,
  trainOnTraces,
} from "./train.js";

export type QuietStarPhase = "tokens" | "ab" | "held-out" | "bake" | "baked-eval" | "save";

export type QuietStarEvent =
  | { type: "phase-start"; phase: QuietStarPhase }
  | { type: "phase-end"; phase: QuietStarPhase; seconds: number }
  | AbEvent
  | { type: "train"; event: TrainEvent; steps: number };

export interface QuietStarRunOptions {
  config: QuietStarConfig;
  /** The dataset (a GSM8K-format file or a forge task, loaded by @forge/eval). */
  task: Task;
  out: string;
  /** The base model's directory (recorded; the output may not be inside it). */
  baseModel?: string;
  /** The thought tokens the base model's forge.json records, if any. */
  recordedThoughtTokens?: { start?: unknown; end?: unknown };
  /** `out` already claimed by the caller (who commits or releases it). */
  output?: OutputClaim;
  force?: boolean;
  resume?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: QuietStarEvent) => void;
}

/**
 * Accuracy of one mode on the held-out items, with the per-item scores. The base and the baked
 * model answer in their natural mode (thoughts neither injected nor banned: a model may open
 * one itself); "thoughts" is the base with thoughts injected.
 */
export interface HeldOutAccuracy {
  accuracy: number;
  scores: number[];
}

export interface QuietStarResult {
  out: string;
  tokens: ThoughtTokens;
  /** The thought tokens were added (false: the model had them). */
  added: boolean;
  abItems: number;
  heldOutItems: string[];
  ab: Omit<AbResult, "thoughtTraces" | "baselineTraces">;
  /** Quality of the thoughts arm's traces (all rounds). */
  quality: QualityDistribution;
  baked: boolean;
  /** Why (not) baked, in words. */
  decision: string;
  heldOut: {
    base: HeldOutAccuracy;
    thoughts: HeldOutAccuracy;
    baked?: HeldOutAccuracy;
  };
  /** Baked (natural mode) − base on held-out items, with a bootstrap interval and p. */
  bakedImprovement?: { delta: number; low: number; high: number; level: number; p: number };
  training?: {
    steps: number;
    trainExamples: number;
    validationExamples: number;
    tooLong: number;
    firstLoss: number;
    finalLoss: number;
    validationBefore: number | null;
    validationBest: number | null;
    resumedFrom: number | null;
    history: { step: number; loss: number }[];
  };
  /** The baked model's directory (inside `out`), when baked. */
  model?: string;
  phaseSeconds: Partial<Record<QuietStarPhase, number>>;
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/** Items for the A/B test and held-out items: a seeded shuffle, then the first n and the next m. */
export function splitItems(
  task: Task,
  config: Pick<QuietStarConfig, "evalSamples" | "heldOutSamples" | "seed">,
): { ab: Item[]; heldOut: Item[] } {
  const need = config.evalSamples + config.heldOutSamples;
  if (task.items.length < need)
    throw new BakingError(
      "E_INPUT",
      `${task.file ?? task.name} has ${task.items.length} items; evalSamples (${config.evalSamples}) + heldOutSamples (${config.heldOutSamples}) = ${need} are needed`,
    );
  const order = new Rng(config.seed * 101 + 7).shuffle([...task.items]);
  return {
    ab: order.slice(0, config.evalSamples),
    heldOut: order.slice(config.evalSamples, need),
  };
}

/**
 * Run the pipeline on `model` (the base, which a bake modifies; the caller disposes of it —
 * when thought tokens are added, the grown copy is disposed of here).
 */
export async function bakeQuietStar(
  model: GPT,
  tokenizer: Tokenizer,
  options: QuietStarRunOptions,
): Promise<QuietStarResult> {
  const claim =
    options.output ??
    (await claimOutput(options.out, {
      kind: "quietstar",
      resumable: true,
      ...(options.resume ? { resume: true } : {}),
      ...(options.force ? { force: true } : {}),
      inputs: [options.baseModel],
    }));
  const own = options.output === undefined;
  try {
    const result = await runPipeline(model, tokenizer, options, claim);
    if (own) await claim.commit();
    return result;
  } catch (error) {
    if (own)
      await claim.release({
        keepWork:
          InterruptedError.isInstance(error) || existsSync(path.join(claim.work, "ab.json")),
      });
    throw error;
  }
}

async function runPipeline(
  base: GPT,
  baseTokenizer: Tokenizer,
  options: QuietStarRunOptions,
  claim: OutputClaim,
): Promise<QuietStarResult> {
  const { config, task } = options;
  const work = claim.work;
  const emit = options.onEvent ?? (() => undefined);
  const phaseSeconds: QuietStarResult["phaseSeconds"] = {};
  const timed = async <T>(phase: QuietStarPhase, fn: () => T | Promise<T>): Promise<T> => {
    if (options.signal?.aborted)
      throw new InterruptedError(
        `stopped before ${phase}; what was made so far is in ${work}: run again with --resume`,
      );
    emit({ type: "phase-start", phase });
    const started = performance.now();
    const value = await fn();
    phaseSeconds[phase] = (performance.now() - started) / 1000;
    emit({ type: "phase-end", phase, seconds: phaseSeconds[phase]! });
    return value;
  };
  const { ab: abItems, heldOut } = splitItems(task, config);

  const withTokens = await timed("tokens", () =>
    addThoughtTokens(base, baseTokenizer, {
      start: config.startThoughtToken,
      end: config.endThoughtToken,
      init: config.thoughtInit,
      ...(options.recordedThoughtTokens ? { recorded: options.recordedThoughtTokens } : {}),
      ...(options.baseModel ? { source: options.baseModel } : {}),
    }),
  );
  const { tokenizer, tokens } = withTokens;
  const model = withTokens.model;
  try {
    const generation = { maxNewTokens: config.maxNewTokens, temperature: config.temperature };
    const fingerprint = JSON.stringify({
      model: modelHash(model),
      task: task.hash,
      config,
    });

    // The A/B test (kept in the work directory; a resumed run with the same inputs reuses it).
    const abFile = path.join(work, "ab.json");
    let ab: AbResult | undefined;
    if (claim.resumed && existsSync(abFile)) {
      const saved = JSON.parse(await readFile(abFile, "utf8")) as {
        fingerprint: string;
        ab: AbResult;
      };
      if (saved.fingerprint !== fingerprint)
        throw new BakingError(
          "E_INPUT",
          `${work} holds a run of a different model, dataset or configuration; start over with --force instead of --resume`,
        );
      ab = saved.ab;
    }
    ab ??= await timed("ab", () =>
      abTest(model, tokenizer, task, abItems, config, tokens, generation, emit),
    );
    if (!existsSync(abFile)) await writeFileAtomic(abFile, json({ fingerprint, ab }));
    const { thoughtTraces, baselineTraces: _b, ...abSummary } = ab;
    const quality = qualityDistribution(
      thoughtTraces.map((s) => ({ quality: s.quality, correct: s.score >= 1 })),
      config.minTraceQuality,
    );

    const heldOutSeed = config.seed + 7_777;
    const evaluate = async (
      mode: "baseline" | "thoughts" | "natural",
    ): Promise<HeldOutAccuracy> => {
      const run = await runArm(
        model,
        tokenizer,
        task,
        heldOut,
        modeSettings(mode, config, tokens, generation),
        heldOutSeed,
      );
      return { accuracy: run.accuracy, scores: run.scored.map((s) => s.score) };
    };
    const [baseHeld, thoughtsHeld] = await timed("held-out", async () => [
      await evaluate("natural"),
      await evaluate("thoughts"),
    ]);

    const usable = successfulTraces(thoughtTraces, config.minTraceQuality);
    let decision: string;
    let bake = ab.winner === "thoughts";
    if (!bake) decision = `nothing baked: ${ab.reason}`;
    else if (usable.length === 0) {
      bake = false;
      decision = `nothing baked: thoughts won (${ab.reason}), but no trace was correct with quality ≥ ${config.minTraceQuality}`;
    } else decision = `thoughts won (${ab.reason}); baked ${usable.length} successful traces`;

    const result: QuietStarResult = {
      out: claim.target,
      tokens,
      added: withTokens.added,
      abItems: abItems.length,
      heldOutItems: heldOut.map((i) => i.id),
      ab: abSummary,
      quality,
      baked: false,
      decision,
      heldOut: { base: baseHeld, thoughts: thoughtsHeld },
      phaseSeconds,
    };

    if (bake) {
      const prompts = new Map(
        abItems.map((item) => [item.id, tokenizer.promptIds(renderMessages(task, item))]),
      );
      const { examples, tooLong } = traceExamples(
        usable,
        tokenizer,
        (id) => prompts.get(id)!,
        model.config.blockSize,
      );
      const { train, validation } = splitByItem(examples, config.validationFraction, config.seed);
      if (train.length === 0)
        throw new BakingError(
          "E_INPUT",
          `no successful trace fits the model's context of ${model.config.blockSize} tokens`,
        );
      const steps = Math.max(1, Math.ceil(train.length / config.batchSize) * config.numEpochs);
      // A stopped or failed bake leaves no adapter on the caller's model.
      const dropAdapter = () => {
        if (config.bakeMode === "lora" && model.lora) {
          model.lora.dispose();
          model.lora = undefined;
        }
      };
      let training: TraceTraining;
      try {
        training = await timed("bake", () =>
          trainOnTraces(model, train, validation, config, {
            checkpointDir: path.join(work, "checkpoints"),
            resume: claim.resumed,
            ...(options.signal ? { signal: options.signal } : {}),
            onEvent: (event) => emit({ type: "train", event, steps }),
          }),
        );
      } catch (error) {
        dropAdapter();
        throw error;
      }
      if (training.result.reason === "aborted") {
        dropAdapter();
        throw new InterruptedError(
          `the bake stopped at step ${training.result.step}; its checkpoint is in ${work}: run again with --resume`,
        );
      }
      if (config.bakeMode === "lora") mergeLora(model);
      const bakedHeld = await timed("baked-eval", () => evaluate("natural"));
      const comparison = pairedComparison(
        {
          ids: heldOut.map((i) => i.id),
          a: baseHeld.scores.map((s) => [s]),
          b: bakedHeld.scores.map((s) => [s]),
        },
        { alpha: config.alpha, seed: config.seed },
      );
      const history = training.result.history;
      result.baked = true;
      result.heldOut.baked = bakedHeld;
      result.bakedImprovement = {
        delta: comparison.delta,
        low: comparison.bootstrap.low,
        high: comparison.bootstrap.high,
        level: comparison.bootstrap.level,
        p: comparison.mcnemar?.p ?? comparison.tTest.p,
      };
      result.training = {
        steps: training.result.step,
        trainExamples: training.trainExamples,
        validationExamples: training.validationExamples,
        tooLong,
        firstLoss: history[0]?.loss ?? Number.NaN,
        finalLoss: training.result.finalLoss,
        validationBefore: training.validationBefore ?? null,
        validationBest: training.validationBest ?? null,
        resumedFrom: training.result.resumedFrom ?? null,
        history,
      };
      result.model = path.join(claim.target, "model");
      await timed("save", async () => {
        await writeModelFiles(model, path.join(work, "model"), {
          tokenizer,
          generationConfig: {
            max_new_tokens: config.maxNewTokens,
            temperature: config.temperature,
            eos_token_id: tokenizer.stopIds(),
          },
          forge: {
            kind: "quietstar",
            baseModel: options.baseModel ?? null,
            thoughtTokens: {
              start: tokens.start,
              end: tokens.end,
              startId: tokens.startId,
              endId: tokens.endId,
            },
            dataset: task.file ?? task.name,
            quietstar: config,
            metrics: {
              abImprovement: ab.improvement,
              abP: ab.roundTest.p,
              heldOutBase: baseHeld.accuracy,
              heldOutThoughts: thoughtsHeld.accuracy,
              heldOutBaked: bakedHeld.accuracy,
            },
            createdAt: new Date().toISOString(),
          },
        });
        await writeFileAtomic(
          path.join(work, "traces.jsonl"),
          usable.map((s) => JSON.stringify(traceRecord(s, tokenizer))).join("\n") + "\n",
        );
      });
    }
    await writeFileAtomic(path.join(work, "report.json"), json(reportJson(result)));
    await writeFileAtomic(path.join(work, "report.md"), quietStarMarkdown(result));
    await writeFileAtomic(path.join(work, "accuracy.svg"), accuracySvg(result));
    await rm(path.join(work, "checkpoints"), { recursive: true, force: true });
    await rm(abFile, { force: true });
    return result;
  } finally {
    if (model !== base) model.dispose();
  }
}

function traceRecord(s: ScoredTrace, tokenizer: Tokenizer) {
  return {
    item: s.item,
    round: s.round,
    ids: s.trace.ids,
    thoughts: s.trace.thoughts.map((t) => t.text),
    answer: s.trace.answer,
    quality: s.quality.quality,
    text: tokenizer.decode(s.trace.ids),
  };
}

/** The result as report.json holds it (per-item held-out scores left out). */
export function reportJson(result: QuietStarResult): Record<string, unknown> {
  const strip = (h?: HeldOutAccuracy) =>
    h ? { accuracy: h.accuracy, items: h.scores.length } : null;
  return {
    kind: "forge-quietstar-report",
    schemaVersion: 1,
    ...result,
    heldOut: {
      base: strip(result.heldOut.base),
      thoughts: strip(result.heldOut.thoughts),
      baked: strip(result.heldOut.baked),
    },
  };
}
