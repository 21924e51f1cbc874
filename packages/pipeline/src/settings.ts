/**
 * The pipeline's settings: a named profile (the model's shape, the window, the tokenizer's
 * vocabulary, the learning rate at the reference batch of 8, the token target and the epoch
 * and warmup bounds), and the training parameters derived from the data the run actually
 * produced — each with the rule and the inputs that made it, as MANIFEST_DYNAMIC.json states.
 */
import type { DynamicParameter } from "@forge/manifest";
import { epochsFor, scaledLearningRate, warmupSteps } from "@forge/manifest";
import type { ModelSettings } from "@forge/model";
import { PipelineError } from "./errors.js";

export interface PipelineProfile {
  description: string;
  model: ModelSettings;
  /** Tokens per training sequence (the model's context) and tokens shared by neighbours. */
  sequenceLength: number;
  overlap: number;
  /** The BPE vocabulary trained on the commits (when no tokenizer is given). */
  vocabSize: number;
  /** Tokens the run aims to train on: epochs = clamp(floor(target / tokens), min, max). */
  targetTokens: number;
  minEpochs: number;
  maxEpochs: number;
  /** The learning rate at the reference batch size (scaled linearly to the chosen batch). */
  baseLearningRate: number;
  baseBatchSize: number;
  /** Fraction of the steps spent warming up, clamped to [min, max] steps. */
  warmupFraction: number;
  warmupMin: number;
  warmupMax: number;
  /** Batch sizes the memory probe may choose from (when no batch size is given). */
  batchCandidates: number[];
  weightDecay: number;
  gradClip: number;
  /** Evaluations without an improvement above minDelta before stopping (validation each epoch). */
  patience: number;
  minDelta: number;
  /** Validation batches per evaluation (at most the validation set). */
  evalBatches: number;
  seed: number;
}

const base = {
  minEpochs: 3,
  maxEpochs: 10,
  baseBatchSize: 8,
  warmupFraction: 0.1,
  weightDecay: 0.1,
  gradClip: 1,
  patience: 3,
  minDelta: 1e-4,
  seed: 1337,
};

/**
 * `prod` is the git-history document's run (2,048-token windows overlapping by 256, a 20M-token
 * target, warmup clamped to [100, 1000]); the smaller ones keep its rules and scale its
 * numbers to what a laptop CPU trains in minutes (their warmup floor is 10 steps: 100 would be
 * most of a run that short).
 */
export const PIPELINE_PROFILES: Record<string, PipelineProfile> = {
  smoke: {
    ...base,
    description: "seconds: a 1-layer, 32-wide model on 64-token windows (tests and CI)",
    model: { nLayer: 1, nHead: 2, nEmbd: 32, blockSize: 64, dropout: 0, bias: true },
    sequenceLength: 64,
    overlap: 8,
    vocabSize: 384,
    targetTokens: 200_000,
    baseLearningRate: 3e-3,
    warmupMin: 10,
    warmupMax: 1000,
    batchCandidates: [2, 4, 8],
    evalBatches: 4,
  },
  tiny: {
    ...base,
    description:
      "minutes: forge-tiny's shape (4 layers, 128 wide) on 256-token windows overlapping by 32",
    model: { nLayer: 4, nHead: 4, nEmbd: 128, blockSize: 256, dropout: 0, bias: true },
    sequenceLength: 256,
    overlap: 32,
    vocabSize: 2048,
    targetTokens: 2_000_000,
    baseLearningRate: 2e-3,
    warmupMin: 10,
    warmupMax: 1000,
    batchCandidates: [4, 8, 16, 32],
    evalBatches: 8,
  },
  prod: {
    ...base,
    description:
      "the document's run: GPT-2 small's shape on 2,048-token windows overlapping by 256, a 20M-token target — for native TensorFlow or a GPU",
    model: { nLayer: 12, nHead: 12, nEmbd: 768, blockSize: 2048, dropout: 0.1, bias: true },
    sequenceLength: 2048,
    overlap: 256,
    vocabSize: 16_384,
    targetTokens: 20_000_000,
    baseLearningRate: 5e-5,
    warmupMin: 100,
    warmupMax: 1000,
    batchCandidates: [1, 2, 4, 8, 16],
    evalBatches: 16,
  },
};

export function pipelineProfile(name: string): PipelineProfile {
  const profile = PIPELINE_PROFILES[name];
  if (!profile)
    throw new PipelineError(
      "E_INPUT",
      `profile ${JSON.stringify(name)} does not exist; profiles: ${Object.keys(PIPELINE_PROFILES).join(", ")}`,
    );
  return structuredClone(profile);
}

export interface TrainingPlan {
  epochs: number;
  batchSize: number;
  learningRate: number;
  stepsPerEpoch: number;
  steps: number;
  warmupSteps: number;
  /** Every value with how it was derived (MANIFEST_DYNAMIC.json's training_parameters). */
  parameters: Record<string, DynamicParameter>;
}

/**
 * The training parameters from the real data: epochs from the training tokens
 * (sequences × sequence length, as the document counts them), the learning rate scaled to the
 * batch, steps from the epochs, and warmup as a clamped fraction of the steps.
 */
export function planTraining(inputs: {
  profile: PipelineProfile;
  trainSequences: number;
  batchSize: number;
  batchSource: DynamicParameter["source"];
  targetTokens?: number;
  batchProbe?: Record<string, unknown>;
}): TrainingPlan {
  const { profile, trainSequences, batchSize } = inputs;
  if (!Number.isInteger(trainSequences) || trainSequences < 1)
    throw new PipelineError(
      "E_INPUT",
      `the repository gave ${trainSequences} training sequences; at least 1 is needed`,
    );
  const targetTokens = inputs.targetTokens ?? profile.targetTokens;
  const totalTokens = trainSequences * profile.sequenceLength;
  const epochs = epochsFor({
    targetTokens,
    totalTokens,
    minEpochs: profile.minEpochs,
    maxEpochs: profile.maxEpochs,
  });
  const learningRate = scaledLearningRate({
    baseLearningRate: profile.baseLearningRate,
    baseBatchSize: profile.baseBatchSize,
    batchSize,
  });
  const epochCount = epochs.value as number;
  const stepsPerEpoch = Math.ceil(trainSequences / batchSize);
  const steps = epochCount * stepsPerEpoch;
  const warmup = warmupSteps({
    fraction: profile.warmupFraction,
    totalSteps: steps,
    min: profile.warmupMin,
    max: profile.warmupMax,
  });
  const derived = (d: { value: unknown; rule: string; inputs: Record<string, unknown> }) => ({
    value: d.value,
    source: "derived" as const,
    rule: d.rule,
    inputs: d.inputs,
  });
  return {
    epochs: epochCount,
    batchSize,
    learningRate: learningRate.value as number,
    stepsPerEpoch,
    steps,
    warmupSteps: warmup.value as number,
    parameters: {
      total_tokens: {
        value: totalTokens,
        source: "derived",
        rule: "trainSequences · sequenceLength",
        inputs: { trainSequences, sequenceLength: profile.sequenceLength },
      },
      target_tokens: {
        value: targetTokens,
        source: inputs.targetTokens === undefined ? "default" : "given",
      },
      epochs: derived(epochs),
      batch_size: {
        value: batchSize,
        source: inputs.batchSource,
        ...(inputs.batchProbe
          ? {
              rule: "largest measured batch that fits the memory budget and still raises throughput",
              inputs: inputs.batchProbe,
            }
          : {}),
      },
      learning_rate: derived(learningRate),
      steps_per_epoch: {
        value: stepsPerEpoch,
        source: "derived",
        rule: "ceil(trainSequences / batchSize)",
        inputs: { trainSequences, batchSize },
      },
      total_steps: {
        value: steps,
        source: "derived",
        rule: "epochs · stepsPerEpoch",
        inputs: { epochs: epochCount, stepsPerEpoch },
      },
      warmup_steps: derived(warmup),
      sequence_length: { value: profile.sequenceLength, source: "default" },
      overlap: { value: profile.overlap, source: "default" },
      early_stopping_patience: { value: profile.patience, source: "default" },
      early_stopping_min_delta: { value: profile.minDelta, source: "default" },
      gradient_clip: { value: profile.gradClip, source: "default" },
      weight_decay: { value: profile.weightDecay, source: "default" },
    },
  };
}
