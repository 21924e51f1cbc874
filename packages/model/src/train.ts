/**
 * The training loop: AdamW, warmup + cosine schedule, global-norm clipping, gradient
 * accumulation, periodic evaluation, early stopping, checkpoints (every N steps and at the best
 * validation loss) and resume — weights, optimizer moments, step, random state and data
 * position — after a kill. A non-finite loss stops training with an error that names the last
 * good checkpoint, which is left untouched.
 *
 * The loop is generic over the batch type and the loss: language-model pretraining and SFT use
 * `lmTask`; baking passes a KL loss. It emits events (`step-end`, `eval-end`,
 * `checkpoint-saved`, `early-stop`, `train-end`) and records nothing itself.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Rng, writeFileAtomic, writeOutputDirectory } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import type { BatchSource, LmBatch } from "./data.js";
import { disposeBatch } from "./data.js";
import { ModelError } from "./errors.js";
import type { GPT } from "./gpt.js";
import { AdamW, clipByGlobalNorm, learningRateAt } from "./optimizer.js";
import { readSafetensors, writeSafetensors } from "./safetensors.js";

export interface TrainSettings {
  /** Optimizer steps. */
  steps: number;
  /** Micro-batches averaged into one step (default 1). */
  gradAccumulation: number;
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  /** Step at which the cosine reaches minLearningRate (default: steps). */
  decaySteps?: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** Global-norm clip; 0 disables (default 1). */
  gradClip: number;
  /** Evaluate every N steps (0: only at the end). */
  evalEvery: number;
  /** Checkpoint every N steps (0: only at the end and at best validation loss). */
  checkpointEvery: number;
  /** Stop after `patience` evaluations without an improvement above `minDelta` (0: never). */
  earlyStopping?: { patience: number; minDelta: number };
  seed: number;
}

export const DEFAULT_TRAIN_SETTINGS: TrainSettings = {
  steps: 1000,
  gradAccumulation: 1,
  learningRate: 1e-3,
  minLearningRate: 1e-4,
  warmupSteps: 100,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  gradClip: 1,
  evalEvery: 100,
  checkpointEvery: 0,
  seed: 1337,
};

export type TrainEvent =
  | {
      type: "step-end";
      step: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokens: number;
      tokensPerSecond: number;
      elapsedSeconds: number;
    }
  | { type: "eval-end"; step: number; loss: number; perplexity: number; best: boolean }
  | { type: "checkpoint-saved"; step: number; kind: "last" | "best"; path: string }
  | { type: "early-stop"; step: number; bestStep: number; bestLoss: number }
  | { type: "train-end"; step: number; reason: "completed" | "early-stopped" | "aborted" };

export interface TrainTask<T> {
  model: GPT;
  train: BatchSource<T>;
  /**
   * The loss of one batch; called under a gradient tape during training, with the optimizer
   * step it computes (0-based; absent outside training).
   */
  loss(batch: T, context: { training: boolean; seed: number; step?: number }): tf.Scalar;
  /** Tokens a batch contributes (throughput). */
  tokens(batch: T): number;
  dispose(batch: T): void;
  /** Validation loss; absent: no evaluation (and no early stopping or best checkpoint). */
  evaluate?: () => number;
}

export interface TrainOptions {
  /** Where `last/` and `best/` checkpoints go; absent: no checkpoints, no resume. */
  checkpointDir?: string;
  /** Continue from `checkpointDir/last` when it exists. */
  resume?: boolean;
  onEvent?: (event: TrainEvent) => void;
  /** Stop cleanly (after the current step, with a checkpoint) when aborted. */
  signal?: AbortSignal;
}

export interface TrainResult {
  step: number;
  finalLoss: number;
  bestLoss?: number;
  bestStep?: number;
  reason: "completed" | "early-stopped" | "aborted";
  /** Training loss per step (including steps before a resume). */
  history: { step: number; loss: number }[];
  resumedFrom?: number;
}

interface TrainerState {
  version: 1;
  step: number;
  rng: number;
  data: unknown;
  bestLoss: number | null;
  bestStep: number | null;
  evalsWithoutImprovement: number;
  history: { step: number; loss: number }[];
  parameters: Record<string, number[]>;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function checkSettings(s: TrainSettings): void {
  const positive = (value: number, name: string) => {
    if (!Number.isInteger(value) || value < 1)
      throw new ModelError("E_CONFIG", `${name} must be a positive integer; got ${value}`);
  };
  positive(s.steps, "steps");
  positive(s.gradAccumulation, "gradAccumulation");
  if (!(s.learningRate > 0))
    throw new ModelError("E_CONFIG", `learningRate must be positive; got ${s.learningRate}`);
  if (!(s.minLearningRate >= 0 && s.minLearningRate <= s.learningRate)) {
    throw new ModelError(
      "E_CONFIG",
      `minLearningRate must be in [0, learningRate]; got ${s.minLearningRate}`,
    );
  }
  for (const [name, value] of [
    ["warmupSteps", s.warmupSteps],
    ["evalEvery", s.evalEvery],
    ["checkpointEvery", s.checkpointEvery],
  ] as const) {
    if (!Number.isInteger(value) || value < 0)
      throw new ModelError("E_CONFIG", `${name} must be an integer ≥ 0; got ${value}`);
  }
  if (!(s.gradClip >= 0))
    throw new ModelError("E_CONFIG", `gradClip must be ≥ 0; got ${s.gradClip}`);
}

async function saveCheckpoint(
  dir: string,
  parameters: Map<string, tf.Variable>,
  optimizer: AdamW | undefined,
  state: TrainerState,
): Promise<void> {
  const tensors = (map: Map<string, tf.Tensor>) =>
    new Map(
      [...map].map(([name, t]) => [
        name,
        { shape: [...t.shape], data: t.dataSync() as Float32Array },
      ]),
    );
  // last/ and best/ are the trainer's own: each save replaces the previous one it wrote
  await writeOutputDirectory(dir, { kind: "checkpoint", force: true }, async (staging) => {
    await writeSafetensors(path.join(staging, "weights.safetensors"), tensors(parameters));
    if (optimizer)
      await writeSafetensors(
        path.join(staging, "optimizer.safetensors"),
        tensors(optimizer.stateTensors()),
      );
    await writeFileAtomic(
      path.join(staging, "trainer_state.json"),
      `${JSON.stringify(state, null, 2)}\n`,
    );
  });
}

/** Assign weights saved in a checkpoint directory to `parameters` (by stable name). */
export async function loadCheckpointWeights(
  dir: string,
  parameters: Map<string, tf.Variable>,
): Promise<void> {
  const file = path.join(dir, "weights.safetensors");
  const { tensors } = await readSafetensors(file);
  for (const [name, variable] of parameters) {
    const saved = tensors.get(name);
    if (!saved || !tf.util.arraysEqual(saved.shape, variable.shape)) {
      throw new ModelError(
        "E_TRAINING",
        `${file}: ${name} is missing or has shape [${saved?.shape}], not [${variable.shape}]`,
      );
    }
    tf.tidy(() => variable.assign(tf.tensor(saved.data, saved.shape)));
  }
}

/** Train `task.model` (or its adapter) for `settings.steps` optimizer steps. */
export async function trainModel<T>(
  task: TrainTask<T>,
  input: Partial<TrainSettings> = {},
  options: TrainOptions = {},
): Promise<TrainResult> {
  const settings: TrainSettings = { ...DEFAULT_TRAIN_SETTINGS, ...input };
  checkSettings(settings);
  const emit = options.onEvent ?? (() => undefined);
  const parameters = task.model.trainableParameters();
  const shapes = Object.fromEntries([...parameters].map(([name, v]) => [name, [...v.shape]]));
  const optimizer = new AdamW(parameters, {
    beta1: settings.beta1,
    beta2: settings.beta2,
    weightDecay: settings.weightDecay,
  });
  const lastDir = options.checkpointDir ? path.join(options.checkpointDir, "last") : undefined;
  const bestDir = options.checkpointDir ? path.join(options.checkpointDir, "best") : undefined;
  const schedule = {
    learningRate: settings.learningRate,
    minLearningRate: settings.minLearningRate,
    warmupSteps: settings.warmupSteps,
    decaySteps: settings.decaySteps ?? settings.steps,
  };

  let rng = new Rng(settings.seed);
  let step = 0;
  let bestLoss: number | undefined;
  let bestStep: number | undefined;
  let evalsWithoutImprovement = 0;
  let history: { step: number; loss: number }[] = [];
  let resumedFrom: number | undefined;
  let lastSavedStep: number | undefined;

  try {
    if (options.resume && lastDir && (await exists(path.join(lastDir, "trainer_state.json")))) {
      const stateFile = path.join(lastDir, "trainer_state.json");
      const state = JSON.parse(await readFile(stateFile, "utf8")) as TrainerState;
      if (state.version !== 1)
        throw new ModelError(
          "E_TRAINING",
          `${stateFile}: version ${state.version} is not supported`,
        );
      const mismatch = Object.keys(shapes).find(
        (name) => JSON.stringify(state.parameters[name]) !== JSON.stringify(shapes[name]),
      );
      if (mismatch || Object.keys(state.parameters).length !== Object.keys(shapes).length) {
        throw new ModelError(
          "E_TRAINING",
          `${stateFile}: the checkpoint's parameters do not match this model${mismatch ? ` (${mismatch})` : ""}; resume with the same model and adapter settings`,
        );
      }
      await loadCheckpointWeights(lastDir, parameters);
      const moments = (await readSafetensors(path.join(lastDir, "optimizer.safetensors"))).tensors;
      optimizer.restore(moments, state.step, path.join(lastDir, "optimizer.safetensors"));
      task.train.restore(state.data);
      rng = Rng.restore(state.rng);
      step = state.step;
      bestLoss = state.bestLoss ?? undefined;
      bestStep = state.bestStep ?? undefined;
      evalsWithoutImprovement = state.evalsWithoutImprovement;
      history = state.history;
      resumedFrom = step;
      lastSavedStep = step;
    }

    const snapshot = (): TrainerState => ({
      version: 1,
      step,
      rng: rng.snapshot,
      data: task.train.state(),
      bestLoss: bestLoss ?? null,
      bestStep: bestStep ?? null,
      evalsWithoutImprovement,
      history,
      parameters: shapes,
    });
    const checkpoint = async (kind: "last" | "best") => {
      const dir = kind === "last" ? lastDir : bestDir;
      if (!dir) return;
      await saveCheckpoint(dir, parameters, kind === "last" ? optimizer : undefined, snapshot());
      if (kind === "last") lastSavedStep = step;
      emit({ type: "checkpoint-saved", step, kind, path: dir });
    };
    const evaluate = async (): Promise<boolean> => {
      if (!task.evaluate) return false;
      const loss = task.evaluate();
      const improved =
        bestLoss === undefined || loss < bestLoss - (settings.earlyStopping?.minDelta ?? 0);
      if (improved) {
        bestLoss = loss;
        bestStep = step;
        evalsWithoutImprovement = 0;
      } else {
        evalsWithoutImprovement++;
      }
      emit({ type: "eval-end", step, loss, perplexity: Math.exp(loss), best: improved });
      if (improved) await checkpoint("best");
      const patience = settings.earlyStopping?.patience;
      return patience !== undefined && patience > 0 && evalsWithoutImprovement >= patience;
    };

    const started = performance.now();
    let reason: TrainResult["reason"] = "completed";
    let finalLoss = history.at(-1)?.loss ?? Number.NaN;
    while (step < settings.steps) {
      if (options.signal?.aborted) {
        reason = "aborted";
        break;
      }
      const stepStart = performance.now();
      const lr = learningRateAt(step, schedule);
      let lossSum = 0;
      let tokens = 0;
      let accumulated: tf.NamedTensorMap | undefined;
      for (let micro = 0; micro < settings.gradAccumulation; micro++) {
        const batch = task.train.next();
        const seed = rng.seed();
        try {
          const { value, grads } = tf.variableGrads(
            () => task.loss(batch, { training: true, seed, step }),
            [...parameters.values()],
          );
          const loss = value.dataSync()[0]!;
          value.dispose();
          if (!Number.isFinite(loss)) {
            tf.dispose(Object.values(grads));
            tf.dispose(Object.values(accumulated ?? {}));
            const where =
              lastSavedStep !== undefined && lastDir
                ? `${lastDir} (step ${lastSavedStep})`
                : "none (no checkpoint was saved)";
            throw new ModelError(
              "E_DIVERGED",
              `the training loss is ${loss} at step ${step + 1}; training stopped (a lower learning rate usually helps). Last good checkpoint: ${where}`,
              { category: "gate" },
            );
          }
          lossSum += loss;
          tokens += task.tokens(batch);
          if (!accumulated) accumulated = grads;
          else {
            const previous = accumulated;
            accumulated = Object.fromEntries(
              Object.keys(grads).map((name) => [name, tf.add(previous[name]!, grads[name]!)]),
            );
            tf.dispose([...Object.values(previous), ...Object.values(grads)]);
          }
        } finally {
          task.dispose(batch);
        }
      }
      if (settings.gradAccumulation > 1) {
        const summed = accumulated!;
        accumulated = Object.fromEntries(
          Object.entries(summed).map(([name, g]) => [name, tf.div(g, settings.gradAccumulation)]),
        );
        tf.dispose(Object.values(summed));
      }
      const clipped = clipByGlobalNorm(accumulated!, settings.gradClip);
      tf.dispose(Object.values(accumulated!));
      optimizer.apply(clipped.grads, lr);
      tf.dispose(Object.values(clipped.grads));
      step++;
      finalLoss = lossSum / settings.gradAccumulation;
      history.push({ step, loss: finalLoss });
      const seconds = (performance.now() - stepStart) / 1000;
      emit({
        type: "step-end",
        step,
        loss: finalLoss,
        lr,
        gradNorm: clipped.norm,
        tokens,
        tokensPerSecond: tokens / seconds,
        elapsedSeconds: (performance.now() - started) / 1000,
      });
      // Yield to the event loop once per step: tfjs work is synchronous, and without this no
      // timer (hardware sampling), file write completion (manifest flushes) or signal handler
      // (SIGINT → clean stop) would run until training ends.
      await new Promise((resolve) => setImmediate(resolve));
      const stop =
        settings.evalEvery > 0 && step % settings.evalEvery === 0 && step < settings.steps
          ? await evaluate()
          : false;
      if (
        settings.checkpointEvery > 0 &&
        step % settings.checkpointEvery === 0 &&
        step < settings.steps
      )
        await checkpoint("last");
      if (stop) {
        emit({ type: "early-stop", step, bestStep: bestStep!, bestLoss: bestLoss! });
        reason = "early-stopped";
        break;
      }
    }
    if (
      reason === "completed" &&
      (settings.evalEvery === 0 || step % settings.evalEvery !== 0 || step === settings.steps)
    ) {
      await evaluate();
    }
    await checkpoint("last");
    emit({ type: "train-end", step, reason });
    return {
      step,
      finalLoss,
      ...(bestLoss !== undefined ? { bestLoss, bestStep: bestStep! } : {}),
      reason,
      history,
      ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    };
  } finally {
    optimizer.dispose();
  }
}

/** A language-modelling task (pretraining or SFT) over LM batches. */
export function lmTask(
  model: GPT,
  train: BatchSource<LmBatch>,
  validation?: { batches: LmBatch[] },
): TrainTask<LmBatch> {
  return {
    model,
    train,
    loss: (batch, { training, seed }) =>
      model.lossUnchecked(batch.ids, batch.targets, batch.mask, { training, seed }),
    tokens: (batch) => batch.tokens,
    dispose: disposeBatch,
    ...(validation
      ? {
          evaluate: () => {
            let total = 0;
            for (const batch of validation.batches) {
              const loss = tf.tidy(() => model.lossUnchecked(batch.ids, batch.targets, batch.mask));
              total += loss.dataSync()[0]!;
              loss.dispose();
            }
            return total / validation.batches.length;
          },
        }
      : {}),
  };
}

/** `count` batches from a sampler, kept for repeated evaluation (dispose with disposeBatch). */
export function fixedBatches(source: BatchSource<LmBatch>, count: number): LmBatch[] {
  return Array.from({ length: count }, () => source.next());
}
