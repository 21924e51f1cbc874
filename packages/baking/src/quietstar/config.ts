/**
 * Quiet-STaR settings: one flat record (what a `--config file.json` holds, in camelCase), its
 * defaults, and the checks that name the field at fault.
 */
import { LORA_TARGETS, type LoraTarget } from "@forge/model";
import { THOUGHT_TOKENS } from "@forge/tokenizer";
import { BakingError } from "../errors.js";

/** Where a thought may be injected: before the reply, after a sentence, after a clause. */
export type InjectionPoint = "start" | "sentence" | "clause";
export const INJECTION_POINTS: readonly InjectionPoint[] = ["start", "sentence", "clause"];

export interface QuietStarConfig {
  /** The token that opens a thought. */
  startThoughtToken: string;
  /** The token that closes a thought. */
  endThoughtToken: string;
  /**
   * Text whose tokens' mean embedding starts both thought tokens' rows when they are added
   * (Quiet-STaR starts them from the em dash's embedding).
   */
  thoughtInit: string;
  /** The most tokens one thought may hold; a longer one is closed there. */
  maxThoughtLength: number;
  /** The chance of a thought at each injection point. */
  thoughtProbability: number;
  /** Which injection points are used. */
  injectAt: InjectionPoint[];
  /** Thoughts sampled at a point; the one the model finds most likely (mean log-probability) is kept. */
  samplesPerPoint: number;
  /** Sampling temperature of injected thoughts. */
  thoughtTemperature: number;
  /** The most thoughts one reply may hold. */
  maxThoughts: number;
  /** The most answer tokens of a reply (thoughts not counted). */
  maxNewTokens: number;
  /** Answer sampling temperature (0 = greedy; rounds then differ only by their thoughts). */
  temperature: number;
  /** The dataset: a GSM8K-format JSONL file or a forge task file (the CLI resolves names). */
  evalDataset?: string;
  /** Items in the A/B test (their successful thought traces are what gets baked). */
  evalSamples: number;
  /** Items held out from the A/B and the bake, on which base and baked models are compared. */
  heldOutSamples: number;
  /** A/B rounds (sampling seeds) over the same items. */
  abTestRounds: number;
  /** Significance level of the A/B tests. */
  alpha: number;
  /** The smallest gain in accuracy (thoughts − baseline, a fraction) that counts as a win. */
  improvementThreshold: number;
  /** Traces below this quality (0–1, see traceQuality) are not baked. */
  minTraceQuality: number;
  /** "lora" (an adapter, merged into the saved model) or "full" (every weight trains). */
  bakeMode: "lora" | "full";
  loraRank: number;
  loraAlpha: number;
  loraTargets: LoraTarget[];
  learningRate: number;
  numEpochs: number;
  batchSize: number;
  /** Share of the baked items held out as the bake's validation set (by item). */
  validationFraction: number;
  seed: number;
}

export const DEFAULT_QUIETSTAR: QuietStarConfig = {
  startThoughtToken: THOUGHT_TOKENS.start,
  endThoughtToken: THOUGHT_TOKENS.end,
  thoughtInit: "—",
  maxThoughtLength: 64,
  thoughtProbability: 0.5,
  injectAt: ["start", "sentence", "clause"],
  samplesPerPoint: 1,
  thoughtTemperature: 0.7,
  maxThoughts: 4,
  maxNewTokens: 32,
  temperature: 0.7,
  evalSamples: 100,
  heldOutSamples: 100,
  abTestRounds: 3,
  alpha: 0.05,
  improvementThreshold: 0.01,
  minTraceQuality: 0.5,
  bakeMode: "lora",
  loraRank: 8,
  loraAlpha: 16,
  loraTargets: ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
  learningRate: 1e-3,
  numEpochs: 3,
  batchSize: 8,
  validationFraction: 0.1,
  seed: 1,
};

type Check = (value: unknown) => string | undefined;

const integer =
  (minimum: number): Check =>
  (v) =>
    Number.isInteger(v) && (v as number) >= minimum ? undefined : `an integer ≥ ${minimum}`;
const number =
  (ok: (n: number) => boolean, expected: string): Check =>
  (v) =>
    typeof v === "number" && Number.isFinite(v) && ok(v) ? undefined : expected;
const text: Check = (v) =>
  typeof v === "string" && v.length > 0 ? undefined : "a non-empty string";

const CHECKS: Record<keyof QuietStarConfig, Check> = {
  startThoughtToken: text,
  endThoughtToken: text,
  thoughtInit: text,
  maxThoughtLength: integer(1),
  thoughtProbability: number((n) => n >= 0 && n <= 1, "a probability in [0, 1]"),
  injectAt: (v) =>
    Array.isArray(v) &&
    v.length > 0 &&
    v.every((p) => INJECTION_POINTS.includes(p)) &&
    new Set(v).size === v.length
      ? undefined
      : `a non-empty list of ${INJECTION_POINTS.join(", ")}`,
  samplesPerPoint: integer(1),
  thoughtTemperature: number((n) => n >= 0, "a number ≥ 0"),
  maxThoughts: integer(1),
  maxNewTokens: integer(1),
  temperature: number((n) => n >= 0, "a number ≥ 0"),
  evalDataset: text,
  evalSamples: integer(2),
  heldOutSamples: integer(2),
  abTestRounds: integer(2),
  alpha: number((n) => n > 0 && n < 1, "a level in (0, 1)"),
  improvementThreshold: number((n) => n >= 0 && n <= 1, "a fraction in [0, 1]"),
  minTraceQuality: number((n) => n >= 0 && n <= 1, "a quality in [0, 1]"),
  bakeMode: (v) => (v === "lora" || v === "full" ? undefined : '"lora" or "full"'),
  loraRank: integer(1),
  loraAlpha: number((n) => n > 0, "a positive number"),
  loraTargets: (v) =>
    Array.isArray(v) && v.length > 0 && v.every((t) => LORA_TARGETS.includes(t))
      ? undefined
      : `a non-empty list of ${LORA_TARGETS.join(", ")}`,
  learningRate: number((n) => n > 0, "a positive number"),
  numEpochs: integer(1),
  batchSize: integer(1),
  validationFraction: number((n) => n >= 0 && n < 1, "a fraction in [0, 1)"),
  seed: integer(0),
};

/**
 * Defaults with `overrides` laid over them, every field checked. `source` names where the
 * overrides came from ("quietstar.json", "--max-thought-length"); an unknown field or a bad
 * value is an error naming it and what it accepts.
 */
export function resolveQuietStar(
  overrides: Partial<QuietStarConfig> | Record<string, unknown> = {},
  source = "configuration",
): QuietStarConfig {
  if (typeof overrides !== "object" || overrides === null || Array.isArray(overrides))
    throw new BakingError("E_INPUT", `${source}: must be a JSON object of settings`);
  const known = Object.keys(CHECKS);
  for (const [key, value] of Object.entries(overrides)) {
    if (!known.includes(key))
      throw new BakingError(
        "E_INPUT",
        `${source}: unknown setting "${key}"; known settings: ${known.join(", ")}`,
      );
    const problem = value === undefined ? undefined : CHECKS[key as keyof QuietStarConfig](value);
    if (problem)
      throw new BakingError(
        "E_INPUT",
        `${source}: ${key} must be ${problem}; got ${JSON.stringify(value)}`,
      );
  }
  const config = { ...DEFAULT_QUIETSTAR } as QuietStarConfig;
  for (const [key, value] of Object.entries(overrides))
    if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value;
  if (config.startThoughtToken === config.endThoughtToken)
    throw new BakingError(
      "E_INPUT",
      `${source}: startThoughtToken and endThoughtToken are both ${JSON.stringify(config.startThoughtToken)}; a thought needs two different tokens`,
    );
  return config;
}
