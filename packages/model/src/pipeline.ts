/**
 * Training runs: named profiles (smoke, dev, tiny) with every setting, overridable from a JSON
 * config; a run directory per run (`<runs>/<run-id>/`: resolved_settings.json, checkpoints per
 * phase, `pretrain-model/` after pretraining); and the pretrain → SFT pipeline over token caches
 * from a corpus (`pretrain-train`, `pretrain-val`, `sft-train`, `sft-val`).
 *
 * The pipeline records nothing itself: steps, evaluations and phase ends arrive as events, and
 * a killed run resumes from its last checkpoint with the settings it started with.
 */
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { readJsonFile, writeJsonAtomic } from "@forge/core";
import type { Tokenizer } from "@forge/tokenizer";
import { loadModel, saveModel } from "./checkpoint.js";
import { type GPTConfig, parameterCount, resolveConfig } from "./config.js";
import {
  type BatchSource,
  disposeBatch,
  type LmBatch,
  openTokenCache,
  PretrainSampler,
  SftSampler,
} from "./data.js";
import { ModelError } from "./errors.js";
import { GPT } from "./gpt.js";
import { fixedBatches, lmTask, type TrainEvent, trainModel } from "./train.js";

export interface ModelSettings {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  blockSize: number;
  dropout: number;
  bias: boolean;
}

export interface PhaseSettings {
  steps: number;
  batchSize: number;
  gradAccumulation: number;
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  weightDecay: number;
  gradClip: number;
  evalEvery: number;
  evalBatches: number;
  checkpointEvery: number;
  /** Evaluations without improvement before stopping (0: never stop early). */
  earlyStoppingPatience: number;
  earlyStoppingMinDelta: number;
}

export interface RunSettings {
  seed: number;
  /** Token caches (from a corpus build): a directory holding one cache per subdirectory. */
  data: string;
  /**
   * Pretraining mix: cache names under `data` (e.g. "pretrain-train", "commits-train") with
   * sampling weights (normalised; a weight of 0 leaves a cache out).
   */
  mixPretrain: Record<string, number>;
  /** The cache pretraining is validated on (under `data`). */
  validationPretrain: string;
  /** The tokenizer the caches were built with. */
  tokenizer: string;
  model: ModelSettings;
  pretrain: PhaseSettings;
  sft: PhaseSettings;
}

export type TrainingPhase = "pretrain" | "sft";
/** What a run trains: one phase, or pretraining then SFT. */
export type RunKind = TrainingPhase | "pipeline";
export const RUN_KINDS: readonly RunKind[] = ["pretrain", "sft", "pipeline"];

const phase = (overrides: Partial<PhaseSettings>): PhaseSettings => ({
  steps: 100,
  batchSize: 8,
  gradAccumulation: 1,
  learningRate: 1e-3,
  minLearningRate: 1e-4,
  warmupSteps: 20,
  weightDecay: 0.1,
  gradClip: 1,
  evalEvery: 50,
  evalBatches: 4,
  checkpointEvery: 50,
  earlyStoppingPatience: 0,
  earlyStoppingMinDelta: 0,
  ...overrides,
});

/** The smoke profile trains both phases alike. */
const SMOKE_PHASE = phase({
  steps: 20,
  batchSize: 4,
  learningRate: 3e-3,
  warmupSteps: 2,
  evalEvery: 10,
  evalBatches: 2,
  checkpointEvery: 10,
});

const DATA = {
  data: "data/cache",
  mixPretrain: { "pretrain-train": 1 },
  validationPretrain: "pretrain-val",
  tokenizer: "data/tokenizer",
};

/** Named profiles, each a complete set of settings. */
export const PROFILES: Record<string, { description: string; settings: RunSettings }> = {
  minimal: {
    description: "bare bones: a 1-layer, 64-wide model, 200 steps per phase, nothing else changed",
    settings: {
      seed: 1337,
      ...DATA,
      model: { nLayer: 1, nHead: 2, nEmbd: 64, blockSize: 128, dropout: 0, bias: true },
      pretrain: phase({ steps: 200 }),
      sft: phase({ steps: 200 }),
    },
  },
  smoke: {
    description: "seconds: a 1-layer, 32-wide model, 20 steps per phase (tests and CI)",
    settings: {
      seed: 1337,
      ...DATA,
      model: { nLayer: 1, nHead: 2, nEmbd: 32, blockSize: 64, dropout: 0, bias: true },
      pretrain: { ...SMOKE_PHASE },
      sft: { ...SMOKE_PHASE },
    },
  },
  dev: {
    description: "minutes: a 2-layer, 64-wide model, 300 + 600 steps (trying corpus changes)",
    settings: {
      seed: 1337,
      ...DATA,
      model: { nLayer: 2, nHead: 2, nEmbd: 64, blockSize: 128, dropout: 0, bias: true },
      pretrain: phase({
        steps: 300,
        batchSize: 8,
        learningRate: 3e-3,
        minLearningRate: 3e-4,
        warmupSteps: 30,
        evalEvery: 100,
      }),
      sft: phase({
        steps: 600,
        batchSize: 8,
        learningRate: 2e-3,
        minLearningRate: 2e-4,
        warmupSteps: 30,
        evalEvery: 100,
      }),
    },
  },
  tiny: {
    description:
      "forge-tiny: 4 layers, 128 wide, 256-token context, ~1M parameters (the shipped model)",
    settings: {
      seed: 1337,
      ...DATA,
      model: { nLayer: 4, nHead: 4, nEmbd: 128, blockSize: 256, dropout: 0, bias: true },
      pretrain: phase({
        steps: 400,
        batchSize: 8,
        learningRate: 3e-3,
        minLearningRate: 3e-4,
        warmupSteps: 40,
        evalEvery: 100,
        evalBatches: 8,
        checkpointEvery: 100,
      }),
      sft: phase({
        steps: 2400,
        batchSize: 8,
        learningRate: 2e-3,
        minLearningRate: 1e-4,
        warmupSteps: 60,
        evalEvery: 200,
        evalBatches: 8,
        checkpointEvery: 100,
      }),
    },
  },
  prod: {
    description:
      "GPT-2 small's shape (12 layers, 768 wide, 1,024 context), 20,000 + 10,000 steps: days on a laptop CPU — for native TensorFlow or a GPU",
    settings: {
      seed: 1337,
      ...DATA,
      model: { nLayer: 12, nHead: 12, nEmbd: 768, blockSize: 1024, dropout: 0.1, bias: true },
      pretrain: phase({
        steps: 20_000,
        batchSize: 8,
        gradAccumulation: 4,
        learningRate: 6e-4,
        minLearningRate: 6e-5,
        warmupSteps: 1000,
        evalEvery: 500,
        evalBatches: 20,
        checkpointEvery: 500,
        earlyStoppingPatience: 3,
        earlyStoppingMinDelta: 1e-4,
      }),
      sft: phase({
        steps: 10_000,
        batchSize: 8,
        gradAccumulation: 4,
        learningRate: 1e-4,
        minLearningRate: 1e-5,
        warmupSteps: 200,
        evalEvery: 500,
        evalBatches: 20,
        checkpointEvery: 500,
        earlyStoppingPatience: 3,
        earlyStoppingMinDelta: 1e-4,
      }),
    },
  },
};

/** The profiles as lines a person reads. */
export function describeProfiles(): string {
  return Object.entries(PROFILES)
    .map(([name, { description, settings }]) => {
      const m = settings.model;
      return `${name.padEnd(6)} ${description}\n       model L=${m.nLayer} H=${m.nHead} C=${m.nEmbd} T=${m.blockSize}; pretrain ${settings.pretrain.steps} steps × ${settings.pretrain.batchSize}; sft ${settings.sft.steps} steps × ${settings.sft.batchSize}`;
    })
    .join("\n");
}

/**
 * Overlay `overrides` (a config file's JSON) on `base`, checking every key exists and every
 * value has the base's type. Errors name the source and the key path.
 */
/** Settings whose keys are the user's (cache names → weights): any key, a number ≥ 0 each. */
const FREE_MAPS = new Set(["mixPretrain"]);

export function overlaySettings<T extends object>(
  base: T,
  overrides: unknown,
  source: string,
  prefix = "",
): T {
  if (typeof overrides !== "object" || overrides === null || Array.isArray(overrides))
    throw new ModelError("E_CONFIG", `${source}: ${prefix || "the file"} must be a JSON object`);
  if (FREE_MAPS.has(prefix)) {
    const map: Record<string, number> = {};
    for (const [key, value] of Object.entries(overrides)) {
      if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
        throw new ModelError(
          "E_CONFIG",
          `${source}: "${prefix}.${key}" must be a weight ≥ 0; got ${JSON.stringify(value)}`,
        );
      map[key] = value;
    }
    if (!Object.values(map).some((w) => w > 0))
      throw new ModelError("E_CONFIG", `${source}: "${prefix}" needs at least one weight above 0`);
    return map as T;
  }
  const out = { ...base } as Record<string, unknown>;
  for (const [key, value] of Object.entries(overrides)) {
    const keyPath = prefix ? `${prefix}.${key}` : key;
    if (!(key in out))
      throw new ModelError(
        "E_CONFIG",
        `${source}: unknown key "${keyPath}"; known keys${prefix ? ` in ${prefix}` : ""}: ${Object.keys(out).join(", ")}`,
      );
    const current = out[key];
    if (typeof current === "object" && current !== null)
      out[key] = overlaySettings(current, value, source, keyPath);
    else if (typeof value !== typeof current)
      throw new ModelError(
        "E_CONFIG",
        `${source}: "${keyPath}" must be a ${typeof current}; got ${JSON.stringify(value)}`,
      );
    else out[key] = value;
  }
  return out as T;
}

/** A profile's settings with a config file's overrides (a JSON file) laid over them. */
export async function resolveRunSettings(
  profile: string,
  configFile?: string,
): Promise<RunSettings> {
  const named = PROFILES[profile];
  if (!named)
    throw new ModelError(
      "E_CONFIG",
      `profile ${JSON.stringify(profile)} does not exist; profiles:\n${describeProfiles()}`,
    );
  const settings = structuredClone(named.settings);
  return configFile
    ? overlaySettings(settings, await readJsonFile(configFile), configFile)
    : settings;
}

export interface RunDirectory {
  runId: string;
  runDir: string;
  /** The settings the run uses (a resumed run keeps the ones it started with). */
  settings: RunSettings;
  resumed: boolean;
}

const timestamp = () =>
  new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);

/**
 * The run's directory: a new `<profile>-<kind>-<time>` one, the one named by `runId`, or — with
 * `resume` — that run or the latest of this profile and kind. A new run never reuses an
 * existing directory; a resumed one reads its settings back.
 */
export async function openRunDirectory(options: {
  runsDir: string;
  profile: string;
  kind: RunKind;
  settings: RunSettings;
  runId?: string;
  resume?: boolean;
}): Promise<RunDirectory> {
  const { runsDir, profile, kind } = options;
  const latest = () =>
    existsSync(runsDir)
      ? readdirSync(runsDir)
          .filter(
            (name) =>
              name.startsWith(`${profile}-${kind}-`) &&
              existsSync(path.join(runsDir, name, "resolved_settings.json")),
          )
          .sort()
          .at(-1)
      : undefined;
  const runId =
    options.runId ?? (options.resume ? latest() : undefined) ?? `${profile}-${kind}-${timestamp()}`;
  const runDir = path.join(runsDir, runId);
  const settingsFile = path.join(runDir, "resolved_settings.json");
  if (options.resume) {
    if (!existsSync(settingsFile))
      throw new ModelError(
        "E_INPUT",
        `nothing to resume: ${options.runId ? `${runDir} holds no resolved_settings.json` : `no ${profile}-${kind}-* run in ${runsDir}`}`,
      );
    const saved = (await readJsonFile(settingsFile)) as { settings: RunSettings };
    return { runId, runDir, settings: saved.settings, resumed: true };
  }
  if (existsSync(runDir))
    throw new ModelError(
      "E_INPUT",
      `the run ${runDir} already exists: continue it with --resume --run-id ${runId}, or choose another run id`,
    );
  return { runId, runDir, settings: options.settings, resumed: false };
}

/** The model config a run's settings and tokenizer make. */
export function runModelConfig(
  settings: RunSettings,
  tokenizer: Tokenizer,
  source: string,
): GPTConfig {
  return resolveConfig(
    { ...settings.model, vocabSize: tokenizer.vocabSize, layerNormEpsilon: 1e-5 },
    source,
  );
}

/** Write resolved_settings.json: every setting the run uses, and where it came from. */
export function writeRunSettings(
  run: RunDirectory,
  details: { profile: string; kind: RunKind; config: GPTConfig; backend: string },
): Promise<void> {
  return writeJsonAtomic(path.join(run.runDir, "resolved_settings.json"), {
    runId: run.runId,
    profile: details.profile,
    phase: details.kind,
    command: process.argv.slice(2),
    settings: run.settings,
    modelConfig: details.config,
    parameters: parameterCount(details.config),
    backend: details.backend,
  });
}

export interface PhaseSummary {
  phase: TrainingPhase;
  steps: number;
  /** Training loss of the first step (of this process, after a resume). */
  firstLoss: number;
  finalLoss: number;
  bestValidationLoss?: number;
  bestStep?: number;
  reason: "completed" | "early-stopped" | "aborted";
  seconds: number;
  tokensPerSecond: number;
  resumedFrom?: number;
}

export type PipelineEvent =
  | { type: "phase-start"; phase: TrainingPhase; steps: number }
  | { type: "train"; phase: TrainingPhase; event: TrainEvent }
  | { type: "phase-end"; phase: TrainingPhase; summary: PhaseSummary };

/**
 * A phase's batch sources: pretraining samples the `mixPretrain` caches by weight and validates
 * on `validationPretrain`; SFT walks `sft-train` and validates on `sft-val`.
 */
export async function phaseSources(
  settings: RunSettings,
  which: TrainingPhase,
): Promise<{ train: BatchSource<LmBatch>; validation: BatchSource<LmBatch> }> {
  const p = settings[which];
  const samplerOptions = { batchSize: p.batchSize, blockSize: settings.model.blockSize };
  const open = (name: string) => openTokenCache(path.join(settings.data, name));
  if (which === "sft")
    return {
      train: new SftSampler(await open("sft-train"), { ...samplerOptions, seed: settings.seed }),
      validation: new SftSampler(await open("sft-val"), { ...samplerOptions, seed: 4242 }),
    };
  const mix = Object.entries(settings.mixPretrain).filter(([, weight]) => weight > 0);
  if (mix.length === 0)
    throw new ModelError("E_CONFIG", "mixPretrain names no cache with a weight above 0");
  const sources = await Promise.all(
    mix.map(async ([name, weight]) => ({ cache: await open(name), weight })),
  );
  return {
    train: new PretrainSampler(sources, { ...samplerOptions, seed: settings.seed }),
    validation: new PretrainSampler([{ cache: await open(settings.validationPretrain) }], {
      ...samplerOptions,
      seed: 4242,
    }),
  };
}

async function runPhase(
  which: TrainingPhase,
  model: GPT,
  run: RunDirectory,
  signal: AbortSignal | undefined,
  emit: (event: PipelineEvent) => void,
): Promise<PhaseSummary> {
  const { settings } = run;
  const p = settings[which];
  const { train: trainSource, validation: validationSource } = await phaseSources(settings, which);
  const validation = fixedBatches(validationSource, p.evalBatches);
  emit({ type: "phase-start", phase: which, steps: p.steps });
  let tokens = 0;
  let firstLoss = Number.NaN;
  const started = performance.now();
  try {
    const result = await trainModel(
      lmTask(model, trainSource, { batches: validation }),
      {
        steps: p.steps,
        gradAccumulation: p.gradAccumulation,
        learningRate: p.learningRate,
        minLearningRate: p.minLearningRate,
        warmupSteps: p.warmupSteps,
        weightDecay: p.weightDecay,
        gradClip: p.gradClip,
        evalEvery: p.evalEvery,
        checkpointEvery: p.checkpointEvery,
        seed: settings.seed,
        ...(p.earlyStoppingPatience > 0
          ? {
              earlyStopping: {
                patience: p.earlyStoppingPatience,
                minDelta: p.earlyStoppingMinDelta,
              },
            }
          : {}),
      },
      {
        checkpointDir: path.join(run.runDir, "checkpoints", which),
        resume: run.resumed,
        ...(signal ? { signal } : {}),
        onEvent: (event) => {
          if (event.type === "step-end") {
            tokens += event.tokens;
            if (Number.isNaN(firstLoss)) firstLoss = event.loss;
          }
          emit({ type: "train", phase: which, event });
        },
      },
    );
    const seconds = (performance.now() - started) / 1000;
    const summary: PhaseSummary = {
      phase: which,
      steps: result.step,
      firstLoss,
      finalLoss: result.finalLoss,
      ...(result.bestLoss !== undefined
        ? { bestValidationLoss: result.bestLoss, bestStep: result.bestStep! }
        : {}),
      reason: result.reason,
      seconds,
      tokensPerSecond: tokens / seconds,
      ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
    };
    emit({ type: "phase-end", phase: which, summary });
    return summary;
  } finally {
    for (const batch of validation) disposeBatch(batch);
  }
}

export interface TrainRunOptions {
  run: RunDirectory;
  kind: RunKind;
  config: GPTConfig;
  tokenizer: Tokenizer;
  /** For an "sft" run: the model to start from (default: a fresh one). */
  init?: string;
  signal?: AbortSignal;
  onEvent?: (event: PipelineEvent) => void;
}

export interface TrainRunResult {
  /** The trained model (the caller disposes it). */
  model: GPT;
  phases: PhaseSummary[];
  /** Stopped by the signal: resumable, nothing final saved. */
  aborted: boolean;
}

/**
 * Train: pretraining, SFT, or pretraining then SFT (a "pipeline" run saves the pretrained
 * model in `pretrain-model/` and, resumed, starts SFT from it).
 */
export async function trainRun(options: TrainRunOptions): Promise<TrainRunResult> {
  const { run, kind, config, tokenizer } = options;
  const emit = options.onEvent ?? (() => undefined);
  const pretrainModelDir = path.join(run.runDir, "pretrain-model");
  const pretrained = existsSync(path.join(pretrainModelDir, "config.json"));
  const model =
    kind === "sft" && options.init
      ? (await loadModel(options.init)).model
      : kind === "pipeline" && pretrained
        ? (await loadModel(pretrainModelDir)).model
        : GPT.create(config, { seed: run.settings.seed });
  const phases: PhaseSummary[] = [];
  try {
    if (kind === "pretrain" || (kind === "pipeline" && !pretrained)) {
      const summary = await runPhase("pretrain", model, run, options.signal, emit);
      phases.push(summary);
      if (summary.reason !== "aborted")
        await saveModel(model, pretrainModelDir, { tokenizer, force: true });
    }
    if ((kind === "sft" || kind === "pipeline") && !options.signal?.aborted)
      phases.push(await runPhase("sft", model, run, options.signal, emit));
  } catch (error) {
    model.dispose();
    throw error;
  }
  const aborted = Boolean(options.signal?.aborted) || phases.some((p) => p.reason === "aborted");
  return { model, phases, aborted };
}
