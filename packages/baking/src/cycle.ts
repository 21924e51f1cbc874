/**
 * The A/B cycle engine (the seed pipeline's `BakingEngine`): alternating cycles of baking.
 *
 * - An **A-cycle** bakes a task (or tool) prompt into the current model — the tasks in turn —
 *   merges the adapter, and scores the model with the task evaluator.
 * - A **B-cycle** optimises a persona by self-guided discovery: the current model proposes
 *   persona traits (sampled replies to a trait question), candidate prompts are made from them
 *   (with the seed prompt), each candidate is scored by the persona evaluator on the model
 *   prompted with it, and the best is baked; the model is then scored unprompted.
 *
 * Each cycle kind has a score history; `detectPlateau` (an adaptive threshold over the history)
 * decides when it has stopped improving. The engine runs A-cycles until they plateau, switches
 * to B-cycles, switches back while the other kind has not plateaued, and stops when both have
 * (or at the cycle cap). Every cycle's merged model is kept (`cycle-<i>/model`) with its
 * lineage, and `cycles.json` records the history after every cycle, so a killed run resumes
 * from its last finished cycle.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { InterruptedError, writeFileAtomic } from "@forge/core";
import { type GPT, generateReplies, loadModel, mergeLora, saveModel } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import { type BakePrompt, promptHash, systemPrompt } from "./records.js";
import { type BakeEvent, type BakeRunOptions, bakePrompt } from "./run.js";

export interface PlateauOptions {
  /** Cycles the latest improvement is measured over (default 2). */
  window?: number;
  /** The smallest improvement that counts, whatever the noise (default 0.01). */
  minDelta?: number;
  /** The threshold is at least this many noise deviations (default 1). */
  noiseFactor?: number;
}

export interface PlateauVerdict {
  /** Enough history (window + 1 scores) to judge. */
  enough: boolean;
  plateau: boolean;
  /** Best of the last `window` scores − best before them (0 without enough history). */
  improvement: number;
  /** max(minDelta, noiseFactor · noise): the improvement needed not to be a plateau. */
  threshold: number;
  /** The history's noise: the standard deviation of its successive differences / √2. */
  noise: number;
}

/**
 * Has a score history (higher is better) stopped improving? The improvement is the best of the
 * last `window` scores over the best before them; the threshold adapts to the history's noise —
 * the standard deviation of its successive differences / √2 (von Neumann's estimate), which a
 * steady trend does not inflate (its differences are alike) and scatter or oscillation does —
 * and is at least `minDelta`. A plateau is an improvement below the threshold.
 */
export function detectPlateau(
  history: readonly number[],
  options: PlateauOptions = {},
): PlateauVerdict {
  const window = options.window ?? 2;
  const minDelta = options.minDelta ?? 0.01;
  const noiseFactor = options.noiseFactor ?? 1;
  if (!Number.isInteger(window) || window < 1)
    throw new BakingError("E_INPUT", `plateau window must be a positive integer; got ${window}`);
  if (!(minDelta >= 0) || !(noiseFactor >= 0))
    throw new BakingError("E_INPUT", "plateau minDelta and noiseFactor must be ≥ 0");
  if (history.some((x) => !Number.isFinite(x)))
    throw new BakingError("E_INPUT", "a score history must hold finite numbers");
  const diffs = history.slice(1).map((x, i) => x - history[i]!);
  // the spread of successive differences / √2: a steady trend (alike differences) adds
  // nothing, scores scattered around a level (or oscillating) add their deviation
  const meanDiff = diffs.reduce((a, d) => a + d, 0) / Math.max(1, diffs.length);
  const noise =
    diffs.length >= 2
      ? Math.sqrt(diffs.reduce((a, d) => a + (d - meanDiff) ** 2, 0) / (diffs.length - 1) / 2)
      : 0;
  const threshold = Math.max(minDelta, noiseFactor * noise);
  if (history.length < window + 1)
    return { enough: false, plateau: false, improvement: 0, threshold, noise };
  const recent = Math.max(...history.slice(-window));
  const before = Math.max(...history.slice(0, -window));
  const improvement = recent - before;
  return { enough: true, plateau: improvement < threshold, improvement, threshold, noise };
}

/** Scores a model (higher is better), prompted with `system` when given. */
export type CycleEvaluator = (
  model: GPT,
  tokenizer: Tokenizer,
  system?: string,
) => number | Promise<number>;

export interface CycleTask {
  name: string;
  /** The task (or tool) prompt an A-cycle bakes. */
  prompt: string;
}

export interface CycleOptions {
  /** The model to start from (a model directory, no adapter). */
  modelDir: string;
  /** A-cycles bake these prompts, in turn. */
  tasks: CycleTask[];
  /** Scores the model on the tasks (unprompted). */
  taskEvaluator: CycleEvaluator;
  /** Scores the persona: unprompted after a B-cycle, prompted with each candidate before. */
  personaEvaluator: CycleEvaluator;
  /** The persona to start discovery from: a candidate itself and the stem of the others. */
  personaPrompt: string;
  discovery?: {
    /** Traits the model proposes per B-cycle (default 4). */
    traits?: number;
    /** The question that asks for a trait (default below). */
    question?: string;
    maxNewTokens?: number;
    temperature?: number;
  };
  /** Cycle cap (default 8). */
  maxCycles?: number;
  plateau?: PlateauOptions;
  /** Everything a bake needs but the prompt and the output (stim, rollout, bake, measure). */
  bake: Omit<BakeRunOptions, "out" | "output" | "prompt" | "baseModel" | "resume" | "onEvent">;
  /** Directory the cycle outputs are recorded under (lineage paths). */
  out: string;
  /** Where files are written, when not `out` (a claimed work directory). */
  work?: string;
  /** Continue from the last finished cycle recorded in `cycles.json`. */
  resume?: boolean;
  /** Stops the run: a bake stops after its current step, and no further cycle starts. */
  signal?: AbortSignal;
  seed?: number;
  onEvent?: (event: CycleEvent) => void;
}

export type CycleKind = "A" | "B";

export interface CycleRecord {
  cycle: number;
  kind: CycleKind;
  /** The prompt baked (a task's, or the best persona candidate). */
  prompt: string;
  task?: string;
  /** B-cycles: every candidate and its prompted score. */
  candidates?: { prompt: string; score: number }[];
  /** Task and persona scores of the model after the cycle (unprompted). */
  taskScore: number;
  personaScore: number;
  /** The score this cycle's kind is judged on (task for A, persona for B). */
  score: number;
  klAfter: number | null;
  /** Baking quality: the mean of the cycle's score and exp(−KL after) (the KL when measured). */
  quality: number;
  plateau: PlateauVerdict;
  model: string;
  seconds: number;
}

export type CycleEvent =
  | { type: "cycle-start"; cycle: number; kind: CycleKind }
  | { type: "candidates"; cycle: number; candidates: { prompt: string; score: number }[] }
  | { type: "bake"; cycle: number; event: BakeEvent }
  | { type: "cycle-end"; record: CycleRecord }
  | { type: "switch"; from: CycleKind; to: CycleKind; cycle: number };

export interface CycleResult {
  start: { taskScore: number; personaScore: number };
  cycles: CycleRecord[];
  /** Cycles after which the engine switched kind. */
  switches: number[];
  plateaued: { A: boolean; B: boolean };
  stopReason: "plateau" | "cycle-cap";
  /** The last cycle's model directory. */
  model: string;
}

export const CYCLE_STATE_FILE = "cycles.json";

const DEFAULT_TRAIT_QUESTION = "Describe your personality in a few words.";

/** Candidate persona prompts from the seed prompt and the traits the model proposed. */
export function personaCandidates(seedPrompt: string, traits: readonly string[]): string[] {
  const clean = traits
    .map((t) =>
      t
        .replace(/\s+/g, " ")
        .trim()
        .replace(/[.!?]+$/, ""),
    )
    .filter((t) => t.length > 0)
    .map((t) => (t.length > 80 ? t.slice(0, 80).replace(/\s+\S*$/, "") : t));
  const stem = seedPrompt.trim().replace(/[.!?]+$/, "");
  const out = [
    seedPrompt.trim(),
    ...clean.map((t) => `${stem}. ${t[0]!.toUpperCase()}${t.slice(1)}.`),
  ];
  return [...new Set(out)];
}

/** Run A/B cycles until both kinds plateau or the cycle cap. */
export async function runCycles(options: CycleOptions): Promise<CycleResult> {
  const maxCycles = options.maxCycles ?? 8;
  if (!Number.isInteger(maxCycles) || maxCycles < 1)
    throw new BakingError("E_INPUT", `maxCycles must be a positive integer; got ${maxCycles}`);
  if (options.tasks.length === 0)
    throw new BakingError("E_INPUT", "A-cycles need at least one task prompt");
  if (!options.personaPrompt.trim())
    throw new BakingError("E_INPUT", "B-cycles need a persona prompt to start discovery from");
  detectPlateau([], options.plateau); // validate the plateau options now
  const traits = options.discovery?.traits ?? 4;
  if (!Number.isInteger(traits) || traits < 0 || traits > 64)
    throw new BakingError("E_INPUT", `discovery.traits must be an integer in 0…64; got ${traits}`);
  const work = options.work ?? options.out;
  const stateFile = path.join(work, CYCLE_STATE_FILE);
  const seed = options.seed ?? 1;

  let state: {
    modelDir: string;
    start: CycleResult["start"];
    cycles: CycleRecord[];
    switches: number[];
    kind: CycleKind;
    plateaued: { A: boolean; B: boolean };
  };
  let modelDir = options.modelDir;
  if (options.resume && existsSync(stateFile)) {
    state = JSON.parse(await readFile(stateFile, "utf8"));
    if (path.resolve(state.modelDir) !== path.resolve(options.modelDir))
      throw new BakingError(
        "E_INPUT",
        `${stateFile} is a cycle run from ${state.modelDir}, not ${options.modelDir}; start over instead of resuming`,
      );
    const last = state.cycles.at(-1);
    if (last) modelDir = path.join(work, `cycle-${last.cycle}`, "model");
  } else state = undefined as never;

  const loaded = await loadModel(modelDir);
  const { model } = loaded;
  const tokenizer = loaded.tokenizer;
  if (!tokenizer) {
    model.dispose();
    throw new BakingError("E_INPUT", `${modelDir} has no tokenizer.json`);
  }
  if (model.lora) mergeLora(model);
  const save = async () => writeFileAtomic(stateFile, `${JSON.stringify(state, null, 2)}\n`);
  try {
    if (!state) {
      state = {
        modelDir: options.modelDir,
        start: {
          taskScore: await options.taskEvaluator(model, tokenizer),
          personaScore: await options.personaEvaluator(model, tokenizer),
        },
        cycles: [],
        switches: [],
        kind: "A",
        plateaued: { A: false, B: false },
      };
      await save();
    }
    const history = (kind: CycleKind) => [
      kind === "A" ? state.start.taskScore : state.start.personaScore,
      ...state.cycles.filter((c) => c.kind === kind).map((c) => c.score),
    ];
    while (state.cycles.length < maxCycles && !(state.plateaued.A && state.plateaued.B)) {
      const cycle = state.cycles.length + 1;
      if (options.signal?.aborted)
        throw new InterruptedError(
          `the cycle run stopped before cycle ${cycle}; cycles 1…${cycle - 1} are kept in ${work}: resume with the same settings`,
        );
      const kind = state.kind;
      const started = performance.now();
      options.onEvent?.({ type: "cycle-start", cycle, kind });
      let prompt: string;
      let task: string | undefined;
      let candidates: { prompt: string; score: number }[] | undefined;
      if (kind === "A") {
        const aCount = state.cycles.filter((c) => c.kind === "A").length;
        const chosen = options.tasks[aCount % options.tasks.length]!;
        prompt = chosen.prompt;
        task = chosen.name;
      } else {
        const question = options.discovery?.question ?? DEFAULT_TRAIT_QUESTION;
        const replies =
          traits > 0
            ? generateReplies(
                model,
                tokenizer,
                Array.from({ length: traits }, () => [
                  { role: "user" as const, content: question },
                ]),
                {
                  maxNewTokens: options.discovery?.maxNewTokens ?? 24,
                  temperature: options.discovery?.temperature ?? 1,
                  seed: () => seed * 1009 + cycle,
                  batchSize: traits,
                },
              )
            : [];
        const scored: { prompt: string; score: number }[] = [];
        for (const candidate of personaCandidates(
          options.personaPrompt,
          replies.map((r) => r.text),
        ))
          scored.push({
            prompt: candidate,
            score: await options.personaEvaluator(model, tokenizer, candidate),
          });
        candidates = scored;
        options.onEvent?.({ type: "candidates", cycle, candidates: scored });
        prompt = scored.reduce((a, b) => (b.score > a.score ? b : a)).prompt;
      }
      const dir = path.join(work, `cycle-${cycle}`);
      const bakePromptValue: BakePrompt = systemPrompt(prompt);
      const parent =
        cycle === 1 ? options.modelDir : path.join(options.out, `cycle-${cycle - 1}`, "model");
      const result = await bakePrompt(model, tokenizer, {
        ...options.bake,
        prompt: bakePromptValue,
        out: path.join(dir, "bake"),
        baseModel: parent,
        force: true,
        ...(options.signal ? { signal: options.signal } : {}),
        onEvent: (event) => options.onEvent?.({ type: "bake", cycle, event }),
      });
      mergeLora(model);
      const taskScore = await options.taskEvaluator(model, tokenizer);
      const personaScore = await options.personaEvaluator(model, tokenizer);
      const score = kind === "A" ? taskScore : personaScore;
      const klAfter = result.after ? result.after.token.estimate : null;
      const quality = klAfter === null ? score : (score + Math.exp(-klAfter)) / 2;
      const plateau = detectPlateau([...history(kind), score], options.plateau);
      const record: CycleRecord = {
        cycle,
        kind,
        prompt,
        ...(task !== undefined ? { task } : {}),
        ...(candidates ? { candidates } : {}),
        taskScore,
        personaScore,
        score,
        klAfter,
        quality,
        plateau,
        model: path.join(options.out, `cycle-${cycle}`, "model"),
        seconds: (performance.now() - started) / 1000,
      };
      await saveModel(model, path.join(dir, "model"), {
        tokenizer,
        force: true,
        forge: {
          kind: "cycle",
          cycle,
          cycleKind: kind,
          prompt: { hash: promptHash(bakePromptValue), ...bakePromptValue },
          parent,
          taskScore,
          personaScore,
          lineage: [...state.cycles, record].map((c) => ({
            cycle: c.cycle,
            kind: c.kind,
            prompt: c.prompt,
            score: c.score,
          })),
        },
      });
      state.cycles.push(record);
      if (plateau.plateau) state.plateaued[kind] = true;
      const other: CycleKind = kind === "A" ? "B" : "A";
      if (plateau.plateau && !state.plateaued[other]) {
        state.kind = other;
        state.switches.push(cycle);
        options.onEvent?.({ type: "switch", from: kind, to: other, cycle });
      }
      await save();
      options.onEvent?.({ type: "cycle-end", record });
    }
    return {
      start: state.start,
      cycles: state.cycles,
      switches: state.switches,
      plateaued: state.plateaued,
      stopReason: state.plateaued.A && state.plateaued.B ? "plateau" : "cycle-cap",
      model: state.cycles.at(-1)?.model ?? options.modelDir,
    };
  } finally {
    model.dispose();
  }
}
