/**
 * Derived training parameters, each returned with the rule that produced it so the manifest
 * records how, not just what (the seed pipeline's rules).
 */
import { ManifestError } from "./errors.js";
import type { Derived } from "./types.js";

function check(
  value: number,
  name: string,
  predicate: (n: number) => boolean,
  expected: string,
): void {
  if (!Number.isFinite(value) || !predicate(value))
    throw new ManifestError("E_INPUT", `${name} must be ${expected}; got ${value}`);
}

/**
 * Epochs to reach a token budget: clamp(floor(targetTokens / totalTokens), minEpochs, maxEpochs).
 * 78 sequences of 2,048 tokens with a 20M target → 10 epochs (at the cap); 10,000 sequences → 3.
 */
export function epochsFor(inputs: {
  targetTokens: number;
  totalTokens: number;
  minEpochs: number;
  maxEpochs: number;
}): Derived {
  const { targetTokens, totalTokens, minEpochs, maxEpochs } = inputs;
  check(targetTokens, "targetTokens", (n) => n > 0, "positive");
  check(totalTokens, "totalTokens", (n) => n > 0, "positive");
  check(minEpochs, "minEpochs", (n) => Number.isInteger(n) && n >= 1, "an integer ≥ 1");
  check(
    maxEpochs,
    "maxEpochs",
    (n) => Number.isInteger(n) && n >= minEpochs,
    "an integer ≥ minEpochs",
  );
  const value = Math.min(maxEpochs, Math.max(minEpochs, Math.floor(targetTokens / totalTokens)));
  return {
    name: "epochs",
    value,
    rule: "clamp(floor(targetTokens / totalTokens), minEpochs, maxEpochs)",
    inputs: { ...inputs },
  };
}

/** Learning rate scaled with batch size from a reference: linear (Goyal et al.) or square root. */
export function scaledLearningRate(inputs: {
  baseLearningRate: number;
  baseBatchSize: number;
  batchSize: number;
  rule?: "linear" | "sqrt";
}): Derived {
  const { baseLearningRate, baseBatchSize, batchSize } = inputs;
  const rule = inputs.rule ?? "linear";
  check(baseLearningRate, "baseLearningRate", (n) => n > 0, "positive");
  check(baseBatchSize, "baseBatchSize", (n) => n > 0, "positive");
  check(batchSize, "batchSize", (n) => n > 0, "positive");
  const ratio = batchSize / baseBatchSize;
  const value = baseLearningRate * (rule === "sqrt" ? Math.sqrt(ratio) : ratio);
  return {
    name: "learningRate",
    value,
    rule:
      rule === "sqrt"
        ? "baseLearningRate · sqrt(batchSize / baseBatchSize)"
        : "baseLearningRate · batchSize / baseBatchSize",
    inputs: { baseLearningRate, baseBatchSize, batchSize, rule },
  };
}

/** Warmup steps as a fraction of the run, bounded: clamp(round(fraction · totalSteps), min, max). */
export function warmupSteps(inputs: {
  fraction: number;
  totalSteps: number;
  min: number;
  max: number;
}): Derived {
  const { fraction, totalSteps, min, max } = inputs;
  check(fraction, "fraction", (n) => n >= 0 && n <= 1, "in [0, 1]");
  check(totalSteps, "totalSteps", (n) => Number.isInteger(n) && n >= 0, "an integer ≥ 0");
  check(min, "min", (n) => Number.isInteger(n) && n >= 0, "an integer ≥ 0");
  check(max, "max", (n) => Number.isInteger(n) && n >= min, "an integer ≥ min");
  const value = Math.min(max, Math.max(min, Math.round(fraction * totalSteps)));
  return {
    name: "warmupSteps",
    value,
    rule: "clamp(round(fraction · totalSteps), min, max)",
    inputs: { ...inputs },
  };
}
