/**
 * Weight baking of thought traces (STaR's step): the model's own successful traces — correct
 * answer, quality at or above the bar — become supervised examples, question → thought →
 * answer, and the model is fine-tuned on them (cross-entropy on the reply's tokens, thoughts and
 * their markers included, the prompt not). A LoRA adapter (merged into the saved weights) or
 * every weight; a validation split by item; checkpoints for resume.
 */
import { Rng } from "@forge/core";
import { attachLora, type GPT, type TrainEvent, type TrainResult, trainModel } from "@forge/model";
import { loadCheckpointWeights } from "@forge/model/internal";
import type { Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { BakingError } from "../errors.js";
import type { ScoredTrace } from "./ab.js";
import type { QuietStarConfig } from "./config.js";

/** One supervised example: the prompt and the reply, with a mask on the reply's tokens. */
export interface TraceExample {
  item: string;
  /** Prompt ids followed by the reply's ids and the end of turn. */
  ids: number[];
  /** Where the reply starts in `ids`. */
  promptLength: number;
}

/** Traces that may be baked: correct and of quality ≥ `minQuality` (duplicates once). */
export function successfulTraces(
  scored: readonly ScoredTrace[],
  minQuality: number,
): ScoredTrace[] {
  const seen = new Set<string>();
  const out: ScoredTrace[] = [];
  for (const s of scored) {
    if (s.score < 1 || s.quality.thoughts === 0 || s.quality.quality < minQuality) continue;
    const key = `${s.item}|${s.trace.ids.join(",")}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(s);
  }
  return out;
}

/**
 * The examples of `traces` (prompt ids per item from `promptOf`); one longer than the model's
 * context (plus one for the shifted target) is left out and counted.
 */
export function traceExamples(
  traces: readonly ScoredTrace[],
  tokenizer: Tokenizer,
  promptOf: (item: string) => number[],
  blockSize: number,
): { examples: TraceExample[]; tooLong: number } {
  const eot = tokenizer.stopIds()[0];
  if (eot === undefined) throw new BakingError("E_INPUT", "the tokenizer has no end-of-turn token");
  const examples: TraceExample[] = [];
  let tooLong = 0;
  for (const s of traces) {
    const prompt = promptOf(s.item);
    const ids = [...prompt, ...s.trace.ids, eot];
    if (ids.length > blockSize + 1) tooLong++;
    else examples.push({ item: s.item, ids, promptLength: prompt.length });
  }
  return { examples, tooLong };
}

/** Split examples by item (an item's traces all on one side): `fraction` of items validate. */
export function splitByItem(
  examples: readonly TraceExample[],
  fraction: number,
  seed: number,
): { train: TraceExample[]; validation: TraceExample[] } {
  const items = [...new Set(examples.map((e) => e.item))];
  const order = new Rng(seed * 13 + 5).shuffle(items);
  const count =
    fraction > 0 && items.length > 1 ? Math.max(1, Math.round(items.length * fraction)) : 0;
  const held = new Set(order.slice(0, count));
  return {
    train: examples.filter((e) => !held.has(e.item)),
    validation: examples.filter((e) => held.has(e.item)),
  };
}

interface Batch {
  ids: tf.Tensor2D;
  targets: tf.Tensor2D;
  mask: tf.Tensor2D;
  tokens: number;
}

function packBatch(examples: readonly TraceExample[]): Batch {
  const b = examples.length;
  const longest = Math.max(...examples.map((e) => e.ids.length - 1));
  const t = Math.max(1, Math.ceil(longest / 8) * 8);
  const ids = new Int32Array(b * t);
  const targets = new Int32Array(b * t);
  const mask = new Float32Array(b * t);
  let tokens = 0;
  examples.forEach((e, row) => {
    for (let j = 0; j + 1 < e.ids.length; j++) {
      ids[row * t + j] = e.ids[j]!;
      targets[row * t + j] = e.ids[j + 1]!;
      if (j + 1 >= e.promptLength) {
        mask[row * t + j] = 1;
        tokens++;
      }
    }
  });
  return {
    ids: tf.tensor2d(ids, [b, t], "int32"),
    targets: tf.tensor2d(targets, [b, t], "int32"),
    mask: tf.tensor2d(mask, [b, t]),
    tokens,
  };
}

const disposeBatch = (batch: Batch) => tf.dispose([batch.ids, batch.targets, batch.mask]);

/** Shuffled epochs of examples; its position is saved and restored for resume. */
class TraceSampler {
  private order: number[] = [];
  private epoch = 0;
  private position = 0;

  constructor(
    private readonly examples: readonly TraceExample[],
    private readonly batchSize: number,
    private readonly seed: number,
  ) {
    this.shuffle();
  }

  private shuffle(): void {
    this.order = new Rng(this.seed * 31 + this.epoch).shuffle([...this.examples.keys()]);
  }

  next(): Batch {
    const picked: TraceExample[] = [];
    while (picked.length < Math.min(this.batchSize, this.examples.length)) {
      if (this.position >= this.order.length) {
        this.epoch++;
        this.position = 0;
        this.shuffle();
      }
      picked.push(this.examples[this.order[this.position++]!]!);
    }
    return packBatch(picked);
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

/** Mean cross-entropy of the reply tokens of `examples` (batched; no tensors left behind). */
export function traceLoss(
  model: GPT,
  examples: readonly TraceExample[],
  batchSize: number,
): number {
  let total = 0;
  let tokens = 0;
  for (let start = 0; start < examples.length; start += batchSize) {
    const batch = packBatch(examples.slice(start, start + batchSize));
    const loss = tf.tidy(() => model.lossUnchecked(batch.ids, batch.targets, batch.mask));
    total += loss.dataSync()[0]! * batch.tokens;
    tokens += batch.tokens;
    loss.dispose();
    disposeBatch(batch);
  }
  return tokens ? total / tokens : Number.NaN;
}

export interface TraceTraining {
  result: TrainResult;
  steps: number;
  trainExamples: number;
  validationExamples: number;
  /** Validation loss before training and at the best step (absent without validation). */
  validationBefore?: number;
  validationBest?: number;
}

/**
 * Fine-tune `model` on `train` (a LoRA adapter is attached in "lora" mode: merge or save it
 * afterwards). With a validation set, the best step's weights are restored at the end.
 */
export async function trainOnTraces(
  model: GPT,
  train: readonly TraceExample[],
  validation: readonly TraceExample[],
  config: Pick<
    QuietStarConfig,
    | "bakeMode"
    | "loraRank"
    | "loraAlpha"
    | "loraTargets"
    | "learningRate"
    | "numEpochs"
    | "batchSize"
    | "seed"
  >,
  options: {
    checkpointDir?: string;
    resume?: boolean;
    signal?: AbortSignal;
    onEvent?: (event: TrainEvent) => void;
  } = {},
): Promise<TraceTraining> {
  if (train.length === 0) throw new BakingError("E_INPUT", "no successful traces to bake");
  if (config.bakeMode === "lora")
    attachLora(
      model,
      { r: config.loraRank, alpha: config.loraAlpha, targetModules: config.loraTargets },
      { seed: config.seed },
    );
  const perEpoch = Math.ceil(train.length / config.batchSize);
  const steps = Math.max(1, perEpoch * config.numEpochs);
  const validationBefore = validation.length
    ? traceLoss(model, validation, config.batchSize)
    : undefined;
  const result = await trainModel<Batch>(
    {
      model,
      train: new TraceSampler(train, config.batchSize, config.seed),
      loss: (batch, context) =>
        tf.tidy(() => model.lossUnchecked(batch.ids, batch.targets, batch.mask, context)),
      tokens: (batch) => batch.tokens,
      dispose: disposeBatch,
      ...(validation.length
        ? { evaluate: () => traceLoss(model, validation, config.batchSize) }
        : {}),
    },
    {
      steps,
      learningRate: config.learningRate,
      minLearningRate: config.learningRate / 10,
      warmupSteps: Math.min(Math.ceil(steps / 10), steps - 1),
      weightDecay: 0,
      gradClip: 1,
      evalEvery: Math.max(1, Math.min(perEpoch, Math.ceil(steps / 4))),
      checkpointEvery: Math.max(1, Math.ceil(steps / 10)),
      seed: config.seed,
    },
    {
      ...(options.checkpointDir ? { checkpointDir: options.checkpointDir } : {}),
      resume: options.resume ?? false,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    },
  );
  if (options.checkpointDir && result.bestStep !== undefined && result.reason !== "aborted")
    await loadCheckpointWeights(`${options.checkpointDir}/best`, model.trainableParameters());
  return {
    result,
    steps,
    trainExamples: train.length,
    validationExamples: validation.length,
    ...(validationBefore !== undefined ? { validationBefore } : {}),
    ...(result.bestLoss !== undefined ? { validationBest: result.bestLoss } : {}),
  };
}
