/**
 * The bake: train the student (the model without the prompt, plus a LoRA adapter by default)
 * so that, on each trajectory, its next-token distributions match the teacher's (the model
 * with the prompt): forward KL(teacher ‖ student) over the full vocabulary at every response
 * position, averaged over response tokens — or over the teacher's cached top-K plus a tail
 * bucket. Teacher distributions are computed once, before training, and reused every epoch.
 */

import { Rng } from "@forge/core";
import { forwardKL, topKForwardKL } from "@forge/losses";
import {
  attachLora,
  type BatchSource,
  defaultLoraTargets,
  type GPT,
  type LoraConfig,
  type TrainEvent,
  type TrainResult,
  trainModel,
} from "@forge/model";
import { loadCheckpointWeights } from "@forge/model/internal";
import type { Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { BakingError } from "./errors.js";
import type { BakePrompt, Stimulus, Trajectory } from "./records.js";
import { responseLogits } from "./score.js";

export interface BakeSettings {
  /** "lora" (default: only adapter weights train) or "full" (every weight trains). */
  mode: "lora" | "full";
  lora: Partial<LoraConfig>;
  /** Passes over the training trajectories (ignored when `steps` is set). */
  epochs: number;
  steps?: number;
  batchSize: number;
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  weightDecay: number;
  gradClip: number;
  /** Share of trajectories held out for validation KL. */
  validationFraction: number;
  /** Evaluate every N steps (0: epoch ends only). */
  evalEvery: number;
  earlyStopping?: { patience: number; minDelta: number };
  /** "full" (default) or "topk": the loss over the teacher's cached top-K + tail. */
  loss: "full" | "topk";
  /** Save adapter snapshots at these fractions of training (half-baking). */
  snapshotFractions: number[];
  seed: number;
}

/**
 * The adapter's settings for this model: the default targets mean "the attention
 * projections", which a Llama-family model names q_proj and v_proj (PEFT's default).
 */
function loraFor(model: GPT, settings: BakeSettings): BakeSettings["lora"] {
  const targets = settings.lora.targetModules ?? [];
  const defaults = DEFAULT_BAKE.lora.targetModules ?? [];
  const isDefault =
    targets.length === defaults.length && targets.every((t, i) => t === defaults[i]);
  return isDefault ? { ...settings.lora, targetModules: defaultLoraTargets(model) } : settings.lora;
}

/**
 * Defaults that bake a persona into forge-tiny in about a minute: LoRA r = 8 on the attention
 * projections, Adam at 1e-3 (the paper's 1e-4 is for 7B models), 4 epochs, batch 16.
 */
export const DEFAULT_BAKE: BakeSettings = {
  mode: "lora",
  lora: { r: 8, alpha: 16, dropout: 0, targetModules: ["attn.c_attn", "attn.c_proj"] },
  epochs: 4,
  batchSize: 16,
  learningRate: 1e-3,
  minLearningRate: 1e-4,
  warmupSteps: 10,
  weightDecay: 0,
  gradClip: 1,
  validationFraction: 0.1,
  evalEvery: 0,
  loss: "full",
  snapshotFractions: [],
  seed: 1,
};

export function resolveBake(input: Partial<BakeSettings>): BakeSettings {
  const s: BakeSettings = {
    ...DEFAULT_BAKE,
    ...input,
    lora: { ...DEFAULT_BAKE.lora, ...input.lora },
  };
  if (s.mode !== "lora" && s.mode !== "full")
    throw new BakingError(
      "E_INPUT",
      `bake.mode must be "lora" or "full"; got ${JSON.stringify(s.mode)}`,
    );
  if (s.loss !== "full" && s.loss !== "topk")
    throw new BakingError(
      "E_INPUT",
      `bake.loss must be "full" or "topk"; got ${JSON.stringify(s.loss)}`,
    );
  for (const [name, value] of [
    ["epochs", s.epochs],
    ["batchSize", s.batchSize],
  ] as const) {
    if (!Number.isInteger(value) || value < 1)
      throw new BakingError("E_INPUT", `bake.${name} must be a positive integer; got ${value}`);
  }
  if (s.steps !== undefined && (!Number.isInteger(s.steps) || s.steps < 1))
    throw new BakingError("E_INPUT", `bake.steps must be a positive integer`);
  if (!(s.validationFraction >= 0 && s.validationFraction < 1))
    throw new BakingError("E_INPUT", "bake.validationFraction must be in [0, 1)");
  if (s.snapshotFractions.some((f) => !(f > 0 && f <= 1)))
    throw new BakingError("E_INPUT", "bake.snapshotFractions must be in (0, 1]");
  return s;
}

/** One trajectory as a training example: the student's ids and the teacher's targets. */
export interface BakeExample {
  id: string;
  /** Student prompt ids followed by the response (the last response token is only a target). */
  studentPrompt: number[];
  response: number[];
  /** Teacher logits [R · V] at the response positions (loss "full"). */
  teacherLogits?: Float32Array;
  /** Teacher top-K per response position (loss "topk"). */
  teacherTopK?: { ids: number[][]; logprobs: number[][] };
}

/**
 * Build the examples: the student's view (prompt.student + stimulus) of each trajectory, and
 * the teacher's distributions on it — computed here from `teacher` (the model before any
 * adapter is attached), or taken from the rollout's cached top-K.
 */
export function prepareExamples(
  teacher: GPT,
  tokenizer: Tokenizer,
  prompt: BakePrompt,
  stimuli: readonly Stimulus[],
  trajectories: readonly Trajectory[],
  loss: BakeSettings["loss"],
  onProgress?: (done: number, total: number) => void,
): BakeExample[] {
  const byId = new Map(stimuli.map((s) => [s.id, s]));
  const examples: BakeExample[] = trajectories.map((t) => {
    const stimulus = byId.get(t.stimulusId);
    if (!stimulus)
      throw new BakingError(
        "E_INPUT",
        `trajectory ${t.id} names stimulus ${t.stimulusId}, which is not among the stimuli`,
      );
    return {
      id: t.id,
      studentPrompt: tokenizer.promptIds([...prompt.student, ...stimulus.messages]),
      response: t.tokenIds,
    };
  });
  const blockSize = teacher.config.blockSize;
  for (const e of examples) {
    if (e.studentPrompt.length + e.response.length - 1 > blockSize) {
      throw new BakingError(
        "E_CONTEXT",
        `trajectory ${e.id} does not fit the context window of ${blockSize} tokens`,
      );
    }
  }
  if (loss === "topk") {
    trajectories.forEach((t, i) => {
      if (!t.topK)
        throw new BakingError(
          "E_INPUT",
          `bake.loss "topk" needs cached teacher top-K; trajectory ${t.id} has none (rollout.cacheTopK)`,
        );
      examples[i]!.teacherTopK = t.topK;
    });
    return examples;
  }
  const logits = responseLogits(
    teacher,
    trajectories.map((t) => ({
      prompt: tokenizer.promptIds([...prompt.teacher, ...byId.get(t.stimulusId)!.messages]),
      response: t.tokenIds,
    })),
    { onProgress: (done) => onProgress?.(done, trajectories.length) },
  );
  logits.forEach((l, i) => {
    examples[i]!.teacherLogits = l;
  });
  return examples;
}

export interface BakeBatch {
  ids: tf.Tensor2D;
  /** 1 at positions that predict a response token. */
  mask: tf.Tensor2D;
  teacherLogits?: tf.Tensor3D;
  teacherTopK?: { logprobs: tf.Tensor3D; ids: tf.Tensor3D };
  tokens: number;
}

/** Pack examples into a batch: right-padded ids, teacher targets aligned to student positions. */
export function packBatch(examples: readonly BakeExample[], vocabSize: number): BakeBatch {
  const width = Math.max(...examples.map((e) => e.studentPrompt.length + e.response.length - 1));
  const b = examples.length;
  const ids = new Int32Array(b * width);
  const mask = new Float32Array(b * width);
  const full = examples[0]!.teacherLogits !== undefined;
  const k = full ? 0 : examples[0]!.teacherTopK!.ids[0]!.length;
  const teacher = full ? new Float32Array(b * width * vocabSize) : undefined;
  const topIds = full ? undefined : new Int32Array(b * width * k);
  const topLogprobs = full ? undefined : new Float32Array(b * width * k).fill(Math.log(1 / k));
  if (topIds) for (let i = 0; i < topIds.length; i++) topIds[i] = i % k; // distinct ids for masked slots
  let tokens = 0;
  examples.forEach((e, row) => {
    const base = row * width;
    ids.set(e.studentPrompt, base);
    ids.set(e.response.slice(0, -1), base + e.studentPrompt.length);
    const first = base + e.studentPrompt.length - 1;
    for (let r = 0; r < e.response.length; r++) {
      mask[first + r] = 1;
      if (teacher)
        teacher.set(
          e.teacherLogits!.subarray(r * vocabSize, (r + 1) * vocabSize),
          (first + r) * vocabSize,
        );
      else {
        topIds!.set(e.teacherTopK!.ids[r]!, (first + r) * k);
        topLogprobs!.set(e.teacherTopK!.logprobs[r]!, (first + r) * k);
      }
    }
    tokens += e.response.length;
  });
  return {
    ids: tf.tensor2d(ids, [b, width], "int32"),
    mask: tf.tensor2d(mask, [b, width]),
    ...(teacher ? { teacherLogits: tf.tensor3d(teacher, [b, width, vocabSize]) } : {}),
    ...(topIds
      ? {
          teacherTopK: {
            ids: tf.tensor3d(topIds, [b, width, k], "int32"),
            logprobs: tf.tensor3d(topLogprobs!, [b, width, k]),
          },
        }
      : {}),
    tokens,
  };
}

export function disposeBakeBatch(batch: BakeBatch): void {
  tf.dispose([batch.ids, batch.mask]);
  if (batch.teacherLogits) batch.teacherLogits.dispose();
  if (batch.teacherTopK) tf.dispose([batch.teacherTopK.ids, batch.teacherTopK.logprobs]);
}

/** Epochs of shuffled examples, position saved and restored for resume. */
export class BakeSampler implements BatchSource<BakeBatch> {
  private order: number[] = [];
  private epoch = 0;
  private position = 0;

  constructor(
    private readonly examples: readonly BakeExample[],
    private readonly batchSize: number,
    private readonly vocabSize: number,
    private readonly seed: number,
  ) {
    if (examples.length === 0) throw new BakingError("E_INPUT", "no trajectories to bake on");
    this.shuffle();
  }

  private shuffle(): void {
    this.order = new Rng(this.seed * 31 + this.epoch).shuffle([...this.examples.keys()]);
  }

  next(): BakeBatch {
    const picked: BakeExample[] = [];
    while (picked.length < Math.min(this.batchSize, this.examples.length)) {
      if (this.position >= this.order.length) {
        this.epoch++;
        this.position = 0;
        this.shuffle();
      }
      picked.push(this.examples[this.order[this.position++]!]!);
    }
    return packBatch(picked, this.vocabSize);
  }

  state(): unknown {
    return { epoch: this.epoch, position: this.position };
  }

  restore(state: unknown): void {
    const s = state as { epoch: number; position: number };
    this.epoch = s.epoch;
    this.position = s.position;
    this.shuffle();
  }
}

/** KL(teacher ‖ student) of a batch, averaged over response tokens. */
export function bakeLoss(
  model: GPT,
  batch: BakeBatch,
  context: { training: boolean; seed: number },
): tf.Scalar {
  return tf.tidy(() => {
    const { logits } = model.run(batch.ids, { training: context.training, seed: context.seed });
    if (batch.teacherTopK)
      return topKForwardKL(batch.teacherTopK, logits, {
        mask: batch.mask,
        reduction: "mean",
      }) as tf.Scalar;
    return forwardKL(batch.teacherLogits!, logits, {
      mask: batch.mask,
      reduction: "mean",
    }) as tf.Scalar;
  });
}

/** Mean KL over examples (no dropout), in batches. */
export function validationKL(
  model: GPT,
  examples: readonly BakeExample[],
  batchSize: number,
): number {
  let weighted = 0;
  let tokens = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const batch = packBatch(examples.slice(i, i + batchSize), model.config.vocabSize);
    const loss = bakeLoss(model, batch, { training: false, seed: 0 });
    weighted += loss.dataSync()[0]! * batch.tokens;
    tokens += batch.tokens;
    loss.dispose();
    disposeBakeBatch(batch);
  }
  return weighted / Math.max(1, tokens);
}

/** Split examples into training and validation, by a seeded shuffle. */
export function splitExamples(
  examples: readonly BakeExample[],
  fraction: number,
  seed: number,
): { train: BakeExample[]; validation: BakeExample[] } {
  const order = new Rng(seed * 17 + 3).shuffle([...examples.keys()]);
  const count = fraction > 0 ? Math.max(1, Math.round(examples.length * fraction)) : 0;
  const validation = order.slice(0, count).map((i) => examples[i]!);
  const train = order.slice(count).map((i) => examples[i]!);
  if (train.length === 0)
    throw new BakingError(
      "E_INPUT",
      `only ${examples.length} trajectories: none left for training after the validation split`,
    );
  return { train, validation };
}

export interface TrainBakeOptions {
  /** Checkpoints (last/best) for resume; absent: no resume. */
  checkpointDir?: string;
  resume?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: TrainEvent) => void;
  /** Called at each snapshot fraction with the step (save the adapter there). */
  onSnapshot?: (fraction: number, step: number) => Promise<void>;
}

export interface BakeTraining {
  result: TrainResult;
  steps: number;
  /** Validation KL before training (the student at initialisation) and at the best step. */
  validationBefore?: number;
  validationBest?: number;
}

/**
 * Train the student on prepared examples. With mode "lora" a fresh adapter is attached to
 * `model` (call prepareExamples first: the teacher is the model without it). At the end the
 * best validation weights are restored (the last when there is no validation set).
 */
export async function trainStudent(
  model: GPT,
  train: readonly BakeExample[],
  validation: readonly BakeExample[],
  settings: BakeSettings,
  options: TrainBakeOptions = {},
): Promise<BakeTraining> {
  if (settings.mode === "lora")
    attachLora(model, loraFor(model, settings), { seed: settings.seed });
  const steps =
    settings.steps ?? Math.max(1, Math.ceil(train.length / settings.batchSize) * settings.epochs);
  const validationBefore = validation.length
    ? validationKL(model, validation, settings.batchSize)
    : undefined;
  const snapshots = new Map(
    settings.snapshotFractions.map((f) => [Math.max(1, Math.round(f * steps)), f]),
  );
  const pendingSnapshots: Promise<void>[] = [];
  const result = await trainModel(
    {
      model,
      train: new BakeSampler(train, settings.batchSize, model.config.vocabSize, settings.seed),
      loss: (batch, context) => bakeLoss(model, batch, context),
      tokens: (batch) => batch.tokens,
      dispose: disposeBakeBatch,
      ...(validation.length
        ? { evaluate: () => validationKL(model, validation, settings.batchSize) }
        : {}),
    },
    {
      steps,
      learningRate: settings.learningRate,
      minLearningRate: settings.minLearningRate,
      warmupSteps: Math.min(settings.warmupSteps, Math.max(0, steps - 1)),
      weightDecay: settings.weightDecay,
      gradClip: settings.gradClip,
      evalEvery:
        settings.evalEvery > 0
          ? settings.evalEvery
          : Math.max(1, Math.ceil(train.length / settings.batchSize)),
      checkpointEvery: Math.max(1, Math.ceil(steps / 10)),
      seed: settings.seed,
      ...(settings.earlyStopping ? { earlyStopping: settings.earlyStopping } : {}),
    },
    {
      ...(options.checkpointDir ? { checkpointDir: options.checkpointDir } : {}),
      resume: options.resume ?? false,
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (event) => {
        options.onEvent?.(event);
        if (event.type === "step-end" && snapshots.has(event.step) && options.onSnapshot) {
          pendingSnapshots.push(options.onSnapshot(snapshots.get(event.step)!, event.step));
        }
      },
    },
  );
  await Promise.all(pendingSnapshots);
  if (options.checkpointDir && result.bestStep !== undefined) {
    await loadCheckpointWeights(`${options.checkpointDir}/best`, model.trainableParameters());
  }
  return {
    result,
    steps,
    ...(validationBefore !== undefined ? { validationBefore } : {}),
    ...(result.bestLoss !== undefined ? { validationBest: result.bestLoss } : {}),
  };
}
