/**
 * The bake: train the student (the model without the prompt, plus a LoRA adapter by default)
 * so that, on each trajectory, its next-token distributions match the teacher's (the model
 * with the prompt): a divergence between the two at every response position, averaged over
 * response tokens — forward KL(teacher ‖ student) over the full vocabulary by default (the
 * paper's), or reverse KL, Jensen–Shannon, generalised JSD(β), distillation at a temperature,
 * or a divergence over the teacher's cached top-K plus a tail bucket (`LOSS_KINDS`). Teacher
 * distributions are computed once, before training, and reused every epoch.
 *
 * Packing: a stimulus whose earlier assistant turns the teacher wrote (the `multiturn`
 * generator) trains the student on those turns as well — one sequence, every reply in it a
 * target — so a conversation of n turns costs one forward pass instead of n.
 */

import { Rng } from "@forge/core";
import {
  distillation,
  forwardKL,
  generalizedJSD,
  reverseKL,
  topKDivergence,
  topKForwardKL,
} from "@forge/losses";
import {
  attachLora,
  type BatchSource,
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
import { type BakePrompt, inContext, type Stimulus, type Trajectory } from "./records.js";
import { positionLogits } from "./score.js";

/**
 * The divergences a bake can train on. The `topk…` kinds use the teacher's cached top-K
 * log-probabilities plus one tail bucket (rollout.cacheTopK > 0; no teacher forward passes);
 * the others the teacher's full distributions.
 */
export const LOSS_KINDS = [
  "forward-kl",
  "reverse-kl",
  "js",
  "jsd",
  "distillation",
  "topk",
  "topk-reverse-kl",
  "topk-js",
  "topk-jsd",
] as const;
export type LossKind = (typeof LOSS_KINDS)[number];

/** What each loss is, in a line (help texts, documentation). */
export const LOSS_DESCRIPTIONS: Record<LossKind, string> = {
  "forward-kl": "KL(teacher ‖ student) over the vocabulary — the paper's loss (default)",
  "reverse-kl": "KL(student ‖ teacher): mode-seeking",
  js: "Jensen–Shannon divergence (symmetric, bounded by ln 2)",
  jsd: "generalised JSD(β), β = lossBeta (0 is forward KL, 1 reverse KL)",
  distillation: "T² · KL at temperature T = lossTemperature (Hinton et al.)",
  topk: "forward KL over the teacher's cached top-K + a tail bucket",
  "topk-reverse-kl": "reverse KL over the cached top-K + tail",
  "topk-js": "Jensen–Shannon over the cached top-K + tail",
  "topk-jsd": "generalised JSD(β) over the cached top-K + tail",
};

/** Whether a loss trains on the teacher's cached top-K rather than its full distributions. */
export const usesTopK = (loss: LossKind): boolean => loss.startsWith("topk");

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
  /**
   * Stop after `patience` validation passes (each epoch's end, or every `evalEvery` steps)
   * without a validation KL below the best by more than `minDelta`; the best weights are
   * restored either way, so stopping only skips steps that would not be kept unless a later
   * pass beat the best. Patience 0, no validation set, or `snapshotFractions` (half-baking
   * snapshots fractions of the planned steps): train every step. With `steps` given (exactly
   * that many steps) the default is patience 0.
   */
  earlyStopping?: { patience: number; minDelta: number };
  /**
   * The divergence trained on (`LOSS_KINDS`; default "forward-kl"). The older names are
   * accepted: "full" is "forward-kl"; "topk" stays "topk" (forward KL over the cached top-K).
   */
  loss: LossKind | "full";
  /** β of "jsd" and "topk-jsd": the teacher's weight in the mixture (default 0.5). */
  lossBeta?: number;
  /** T of "distillation" (default 2). */
  lossTemperature?: number;
  /** Train on the teacher-written earlier turns of multiturn stimuli too (default true). */
  packTurns: boolean;
  /**
   * Progressive baking: the adapter's strength α ramps linearly from `from` to 1 over the first
   * `fraction` of the steps, then stays at 1 (validation always measures α = 1). LoRA only.
   */
  progressive?: { from: number; fraction: number };
  /** Save adapter snapshots at these fractions of training (half-baking). */
  snapshotFractions: number[];
  seed: number;
}

/**
 * Defaults that bake a persona into forge-tiny in about a minute with the default stimuli
 * (`defaultStimuli`) and rollout: LoRA r = 8 on the attention projections, Adam at 2e-3
 * decaying to 2e-4 after 5 warm-up steps (the paper's 1e-4 is for 7B models), up to 8 epochs,
 * batch 16, stopping after 2 epochs without a better validation KL. The package README gives
 * the measurements these were chosen from.
 */
export const DEFAULT_BAKE: BakeSettings = {
  mode: "lora",
  // no targetModules: the model's attention projections (c_attn and c_proj on GPT-2, q_proj
  // and v_proj on the Llama family), as attachLora chooses by architecture
  lora: { r: 8, alpha: 16, dropout: 0 },
  epochs: 8,
  batchSize: 16,
  learningRate: 2e-3,
  minLearningRate: 2e-4,
  warmupSteps: 5,
  weightDecay: 0,
  gradClip: 1,
  validationFraction: 0.1,
  evalEvery: 0,
  earlyStopping: { patience: 2, minDelta: 0 },
  loss: "forward-kl",
  packTurns: true,
  snapshotFractions: [],
  seed: 1,
};

export function resolveBake(input: Partial<BakeSettings>): BakeSettings {
  const s: BakeSettings = {
    ...DEFAULT_BAKE,
    ...input,
    lora: { ...DEFAULT_BAKE.lora, ...input.lora },
    // `steps` asks for exactly that many steps: no early stopping unless it is asked for too
    ...(input.steps !== undefined && input.earlyStopping === undefined
      ? { earlyStopping: { patience: 0, minDelta: 0 } }
      : {}),
  };
  if (s.mode !== "lora" && s.mode !== "full")
    throw new BakingError(
      "E_INPUT",
      `bake.mode must be "lora" or "full"; got ${JSON.stringify(s.mode)}`,
    );
  if (s.loss === "full") s.loss = "forward-kl";
  if (!(LOSS_KINDS as readonly string[]).includes(s.loss))
    throw new BakingError(
      "E_INPUT",
      `bake.loss must be one of ${LOSS_KINDS.join(", ")}; got ${JSON.stringify(s.loss)}`,
    );
  if (s.lossBeta !== undefined && !(s.lossBeta >= 0 && s.lossBeta <= 1))
    throw new BakingError("E_INPUT", `bake.lossBeta must be in [0, 1]; got ${s.lossBeta}`);
  if (s.lossBeta !== undefined && s.loss !== "jsd" && s.loss !== "topk-jsd")
    throw new BakingError(
      "E_INPUT",
      `bake.lossBeta is the β of "jsd" and "topk-jsd"; the loss is ${JSON.stringify(s.loss)}`,
    );
  if (
    s.lossTemperature !== undefined &&
    !(Number.isFinite(s.lossTemperature) && s.lossTemperature > 0)
  )
    throw new BakingError(
      "E_INPUT",
      `bake.lossTemperature must be a positive number; got ${s.lossTemperature}`,
    );
  if (s.lossTemperature !== undefined && s.loss !== "distillation")
    throw new BakingError(
      "E_INPUT",
      `bake.lossTemperature is the temperature of "distillation"; the loss is ${JSON.stringify(s.loss)}`,
    );
  if (s.progressive !== undefined) {
    const { from, fraction } = s.progressive;
    if (!(from >= 0 && from <= 1) || !(fraction > 0 && fraction <= 1))
      throw new BakingError(
        "E_INPUT",
        `bake.progressive needs from in [0, 1] and fraction in (0, 1]; got ${JSON.stringify(s.progressive)}`,
      );
    if (s.mode !== "lora")
      throw new BakingError(
        "E_INPUT",
        "bake.progressive ramps a LoRA adapter's strength: mode must be lora",
      );
  }
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
  if (
    s.earlyStopping &&
    !(
      Number.isInteger(s.earlyStopping.patience) &&
      s.earlyStopping.patience >= 0 &&
      s.earlyStopping.minDelta >= 0
    )
  )
    throw new BakingError(
      "E_INPUT",
      `bake.earlyStopping needs patience, an integer ≥ 0 (0: off), and minDelta ≥ 0; got ${JSON.stringify(s.earlyStopping)}`,
    );
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
  /**
   * Packing: positions inside `studentPrompt` whose next token is trained too — the
   * teacher-written earlier turns of a multiturn stimulus (each reply's tokens and its end of
   * turn). Their targets come first in `teacherLogits`.
   */
  earlier?: number[];
  /** Teacher logits [(earlier + R) · V] at the trained positions (full-distribution losses). */
  teacherLogits?: Float32Array;
  /** Teacher top-K per response position (the `topk…` losses). */
  teacherTopK?: { ids: number[][]; logprobs: number[][] };
}

/**
 * Input positions that predict the assistant turns of a stimulus's own messages (not the
 * prompt's), in a rendering of `prefix` + messages: for each assistant message, the positions
 * of its role token through its last content token (they predict its content and end of turn).
 */
function assistantPositions(
  tokenizer: Tokenizer,
  prefix: BakePrompt["teacher"],
  stimulus: Stimulus,
): { ids: number[]; positions: number[]; targets: number[] } {
  const rendered = tokenizer.renderChat(inContext(prefix, stimulus.messages), {
    addGenerationPrompt: true,
  });
  const own = rendered.spans.slice(rendered.spans.length - stimulus.messages.length);
  const positions: number[] = [];
  for (const span of own) {
    if (span.role !== "assistant") continue;
    for (let p = span.start; p < span.end - 1; p++) positions.push(p);
  }
  return { ids: rendered.ids, positions, targets: positions.map((p) => rendered.ids[p + 1]!) };
}

/**
 * Build the examples: the student's view (prompt.student + stimulus) of each trajectory, and
 * the teacher's distributions on it — computed here from `teacher` (the model before any
 * adapter is attached), or taken from the rollout's cached top-K. With `packTurns`, the first
 * sample of a stimulus the teacher wrote earlier turns for (`teacherWritten`) is trained on
 * those turns as well (full-distribution losses only: a cached top-K covers the response).
 */
export function prepareExamples(
  teacher: GPT,
  tokenizer: Tokenizer,
  prompt: BakePrompt,
  stimuli: readonly Stimulus[],
  trajectories: readonly Trajectory[],
  loss: BakeSettings["loss"],
  onProgress?: (done: number, total: number) => void,
  options: { packTurns?: boolean } = {},
): BakeExample[] {
  const byId = new Map(stimuli.map((s) => [s.id, s]));
  const topK = loss !== "full" && usesTopK(loss);
  const pack = (options.packTurns ?? true) && !topK;
  const earlierOf = new Map<string, { student: number[]; teacher: number[] }>();
  const examples: BakeExample[] = trajectories.map((t) => {
    const stimulus = byId.get(t.stimulusId);
    if (!stimulus)
      throw new BakingError(
        "E_INPUT",
        `trajectory ${t.id} names stimulus ${t.stimulusId}, which is not among the stimuli`,
      );
    const example: BakeExample = {
      id: t.id,
      studentPrompt: tokenizer.promptIds(inContext(prompt.student, stimulus.messages)),
      response: t.tokenIds,
    };
    if (pack && stimulus.teacherWritten && !earlierOf.has(stimulus.id)) {
      const student = assistantPositions(tokenizer, prompt.student, stimulus);
      const teacherSide = assistantPositions(tokenizer, prompt.teacher, stimulus);
      if (
        student.positions.length > 0 &&
        student.targets.length === teacherSide.targets.length &&
        student.targets.every((id, i) => id === teacherSide.targets[i])
      ) {
        earlierOf.set(stimulus.id, { student: student.positions, teacher: teacherSide.positions });
        example.earlier = student.positions;
      }
    }
    return example;
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
  if (topK) {
    trajectories.forEach((t, i) => {
      if (!t.topK)
        throw new BakingError(
          "E_INPUT",
          `bake.loss ${JSON.stringify(loss)} needs cached teacher top-K; trajectory ${t.id} has none (rollout.cacheTopK)`,
        );
      examples[i]!.teacherTopK = t.topK;
    });
    return examples;
  }
  const logits = positionLogits(
    teacher,
    trajectories.map((t, i) => {
      const stimulus = byId.get(t.stimulusId)!;
      const promptIds = tokenizer.promptIds(inContext(prompt.teacher, stimulus.messages));
      const earlier = examples[i]!.earlier ? earlierOf.get(stimulus.id)!.teacher : [];
      return {
        ids: [...promptIds, ...t.tokenIds.slice(0, -1)],
        positions: [...earlier, ...t.tokenIds.map((_, r) => promptIds.length - 1 + r)],
      };
    }),
    { onProgress: (done) => onProgress?.(done, trajectories.length) },
    (i, width) =>
      `trajectory ${trajectories[i]!.id} needs ${width} positions with the prompt; the context window is ${blockSize}`,
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
    const earlier = e.earlier ?? [];
    earlier.forEach((p, r) => {
      mask[base + p] = 1;
      teacher!.set(
        e.teacherLogits!.subarray(r * vocabSize, (r + 1) * vocabSize),
        (base + p) * vocabSize,
      );
    });
    for (let r = 0; r < e.response.length; r++) {
      mask[first + r] = 1;
      if (teacher) {
        const at = (earlier.length + r) * vocabSize;
        teacher.set(e.teacherLogits!.subarray(at, at + vocabSize), (first + r) * vocabSize);
      } else {
        topIds!.set(e.teacherTopK!.ids[r]!, (first + r) * k);
        topLogprobs!.set(e.teacherTopK!.logprobs[r]!, (first + r) * k);
      }
    }
    tokens += earlier.length + e.response.length;
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

/** Batches drawn together when grouping by length: a window of this many batches. */
const LENGTH_WINDOW = 8;

/**
 * Epochs of shuffled examples, position saved and restored for resume. Each epoch's shuffled
 * order is grouped by length: every window of 8 batches is sorted by sequence length, cut into
 * batches, and the batches are shuffled again — so a short single-turn example is not padded to
 * the width of a long conversation (padding costs as much as real tokens).
 */
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
    const rng = new Rng(this.seed * 31 + this.epoch);
    const shuffled = rng.shuffle([...this.examples.keys()]);
    const length = (i: number) =>
      this.examples[i]!.studentPrompt.length + this.examples[i]!.response.length;
    const size = Math.min(this.batchSize, this.examples.length);
    const batches: number[][] = [];
    const window = size * LENGTH_WINDOW;
    for (let start = 0; start < shuffled.length; start += window) {
      const sorted = shuffled.slice(start, start + window).sort((a, b) => length(a) - length(b));
      for (let b = 0; b < sorted.length; b += size) batches.push(sorted.slice(b, b + size));
    }
    this.order = rng.shuffle(batches).flat();
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

/** The loss a bake trains on: its kind and parameters (from `BakeSettings`). */
export interface BakeLossSpec {
  loss: LossKind | "full";
  lossBeta?: number;
  lossTemperature?: number;
}

/**
 * The bake's loss of a batch, averaged over the trained tokens: the divergence `spec` names
 * (default forward KL, over the full vocabulary or the cached top-K + tail — whichever the
 * batch carries).
 */
export function bakeLoss(
  model: GPT,
  batch: BakeBatch,
  context: { training: boolean; seed: number },
  spec: BakeLossSpec = { loss: "forward-kl" },
): tf.Scalar {
  return tf.tidy(() => {
    const { logits } = model.run(batch.ids, { training: context.training, seed: context.seed });
    const options = { mask: batch.mask, reduction: "mean" as const };
    const kind = spec.loss === "full" ? "forward-kl" : spec.loss;
    if (batch.teacherTopK) {
      const divergence =
        kind === "topk-reverse-kl"
          ? "reverse-kl"
          : kind === "topk-js" || kind === "topk-jsd"
            ? "jsd"
            : "forward-kl";
      if (divergence === "forward-kl")
        return topKForwardKL(batch.teacherTopK, logits, options) as tf.Scalar;
      return topKDivergence(batch.teacherTopK, logits, {
        ...options,
        divergence,
        beta: kind === "topk-jsd" ? (spec.lossBeta ?? 0.5) : 0.5,
      }) as tf.Scalar;
    }
    const teacher = batch.teacherLogits!;
    switch (kind) {
      case "reverse-kl":
        return reverseKL(teacher, logits, options) as tf.Scalar;
      case "js":
        return generalizedJSD(teacher, logits, { ...options, beta: 0.5 }) as tf.Scalar;
      case "jsd":
        return generalizedJSD(teacher, logits, {
          ...options,
          beta: spec.lossBeta ?? 0.5,
        }) as tf.Scalar;
      case "distillation":
        return distillation(teacher, logits, {
          ...options,
          temperature: spec.lossTemperature ?? 2,
        }) as tf.Scalar;
      default:
        return forwardKL(teacher, logits, options) as tf.Scalar;
    }
  });
}

/**
 * Mean forward KL(teacher ‖ student) over examples (no dropout), in batches: whatever loss the
 * bake trains on, validation measures the KL (over the full vocabulary, or the cached top-K).
 */
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
  if (settings.mode === "lora") attachLora(model, settings.lora, { seed: settings.seed });
  const steps =
    settings.steps ?? Math.max(1, Math.ceil(train.length / settings.batchSize) * settings.epochs);
  const validationBefore = validation.length
    ? validationKL(model, validation, settings.batchSize)
    : undefined;
  const progressive = settings.progressive;
  /** The adapter's strength at a step of progressive baking. */
  const strengthAt = (step: number) =>
    progressive
      ? Math.min(
          1,
          progressive.from +
            ((1 - progressive.from) * step) / Math.max(1, Math.round(progressive.fraction * steps)),
        )
      : 1;
  const atFullStrength = <T>(fn: () => T): T => {
    const adapter = model.lora;
    if (!progressive || !adapter) return fn();
    const current = adapter.strength;
    adapter.strength = 1;
    try {
      return fn();
    } finally {
      adapter.strength = current;
    }
  };
  const snapshots = new Map(
    settings.snapshotFractions.map((f) => [Math.max(1, Math.round(f * steps)), f]),
  );
  const pendingSnapshots: Promise<void>[] = [];
  const result = await trainModel(
    {
      model,
      train: new BakeSampler(train, settings.batchSize, model.config.vocabSize, settings.seed),
      loss: (batch, context) => {
        if (progressive && model.lora && context.step !== undefined)
          model.lora.strength = strengthAt(context.step);
        return bakeLoss(model, batch, context, settings);
      },
      tokens: (batch) => batch.tokens,
      dispose: disposeBakeBatch,
      ...(validation.length
        ? {
            evaluate: () =>
              atFullStrength(() => validationKL(model, validation, settings.batchSize)),
          }
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
      // half-baking's snapshots sit at fractions of the planned steps: train them all
      ...(settings.earlyStopping && settings.snapshotFractions.length === 0
        ? { earlyStopping: settings.earlyStopping }
        : {}),
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
  if (progressive && model.lora) model.lora.strength = 1;
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
