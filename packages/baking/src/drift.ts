/**
 * The persona drift meter. A prompted model loses its persona as a conversation grows — with a
 * small context window the system prompt literally scrolls out — while a baked model has no
 * prompt to lose. `measureDrift` holds a conversation of N user turns (persona probes mixed
 * with distractor questions, chosen by a seeded generator), scores every assistant reply, and
 * repeats it over several seeds, all seeds batched into one generation.
 *
 * Context policies, applied before every reply exactly as a chat front end would. The history
 * is cut in whole units — the system message is one unit, each earlier (user, assistant) pair is
 * one — oldest first, until the rendered prompt (with the reply's role token) fits the budget
 * (default: the context window minus `maxNewTokens`):
 *
 * - `sliding`: the system message is the oldest unit, so it goes first;
 * - `keep-system`: the system message is pinned; only pairs are dropped.
 *
 * The current user turn is never dropped; if it cannot fit (with the system message under
 * `keep-system`) the measurement stops with an error naming the turn.
 */
import { Rng } from "@forge/core";
import { type GPT, generateReplies } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";

export const CONTEXT_POLICIES = ["sliding", "keep-system"] as const;
export type ContextPolicy = (typeof CONTEXT_POLICIES)[number];

export interface FittedContext {
  messages: ChatMessage[];
  /** Rendered length of `messages` with the assistant role token that opens the reply. */
  tokens: number;
  /** Earlier (user, assistant) pairs dropped. */
  droppedPairs: number;
  /** Whether the system message (if there was one) is still in the context. */
  systemKept: boolean;
}

/** Rendered length of one message in forge's chat format: role token, content, end of turn. */
function messageTokens(tokenizer: Tokenizer, message: ChatMessage): number {
  return tokenizer.encode(message.content, { disallowedSpecial: "none" }).length + 2;
}

/**
 * Cut `messages` (optional system message, then alternating user/assistant, ending with the
 * user turn to answer) to at most `budget` rendered tokens under `policy`.
 */
export function fitContext(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  budget: number,
  policy: ContextPolicy,
  lengths: readonly number[] = messages.map((m) => messageTokens(tokenizer, m)),
): FittedContext {
  if (!CONTEXT_POLICIES.includes(policy))
    throw new BakingError(
      "E_INPUT",
      `context policy ${JSON.stringify(policy)} is not one of ${CONTEXT_POLICIES.join(", ")}`,
    );
  const hasSystem = messages[0]?.role === "system";
  const first = hasSystem ? 1 : 0;
  const last = messages.length - 1;
  if (messages.length === first || messages[last]!.role !== "user")
    throw new BakingError("E_INPUT", "the conversation must end with a user turn");
  for (let i = first; i < last; i++) {
    const expected = (i - first) % 2 === 0 ? "user" : "assistant";
    if (messages[i]!.role !== expected)
      throw new BakingError(
        "E_INPUT",
        `message ${i} is ${messages[i]!.role}; after the system message, turns alternate user, assistant`,
      );
  }
  const pairs = (last - first) / 2;
  let systemKept = hasSystem;
  let droppedPairs = 0;
  const kept = () => [
    ...(systemKept ? [messages[0]!] : []),
    ...messages.slice(first + 2 * droppedPairs),
  ];
  // forge's own format costs each message its content + 2 tokens, + the role token that opens
  // the reply; a model's chat template adds its own headers (and a default system prompt when
  // none is kept), so that context is measured by rendering it
  const measure = tokenizer.usesTemplate
    ? () => tokenizer.promptIds(kept()).length
    : () =>
        1 +
        lengths.reduce(
          (sum, n, i) =>
            (i === 0 && hasSystem && !systemKept) || (i >= first && i < first + 2 * droppedPairs)
              ? sum
              : sum + n,
          0,
        );
  let total = measure();
  while (total > budget) {
    if (systemKept && policy === "sliding") {
      systemKept = false; // under `sliding` the system message is the oldest unit
    } else if (droppedPairs < pairs) {
      droppedPairs++;
    } else break;
    total = measure();
  }
  if (total > budget) {
    throw new BakingError(
      "E_CONTEXT",
      `the user turn does not fit the context budget of ${budget} tokens${policy === "keep-system" && hasSystem ? " with the pinned system message" : ""} (${total} tokens)`,
    );
  }
  return { messages: kept(), tokens: total, droppedPairs, systemKept };
}

export interface DriftTurnContext {
  /** 1-based turn number. */
  turn: number;
  user: string;
  /** Whether this turn is a persona probe (else a distractor). */
  probe: boolean;
}

export interface DriftOptions {
  /** The system prompt at the start of the conversation (a prompted model); none for a baked one. */
  system?: string;
  /** Persona score of one reply, in [0, 1] (a signature check, a keyword rate, a task score). */
  score: (reply: string, context: DriftTurnContext) => number;
  /** Questions that probe the persona. */
  probes: readonly string[];
  /** Questions that have nothing to do with it (default: a seeded generator of small tasks). */
  distractors?: readonly string[];
  /** Share of turns that are probes (default 0.5); turn 1 is always a probe. */
  probeShare?: number;
  /** User turns per conversation (default 30). */
  turns?: number;
  contextPolicy?: ContextPolicy;
  /** One conversation per seed (default 1…16), generated as one batch. */
  seeds?: readonly number[];
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  /** Prompt budget in tokens (default: context window − maxNewTokens). */
  contextTokens?: number;
  onTurn?: (turn: number, total: number) => void;
}

export interface DriftTurn {
  turn: number;
  user: string;
  probe: boolean;
  reply: string;
  score: number;
  /** Tokens in the prompt this reply was generated from. */
  promptTokens: number;
  droppedPairs: number;
  systemInContext: boolean;
}

export interface CurvePoint {
  turn: number;
  mean: number;
  /** 95% confidence interval of the mean over seeds (t distribution). */
  low: number;
  high: number;
  /** Share of seeds whose system prompt was still in the context at this turn. */
  systemInContext: number;
}

export interface Estimate {
  mean: number;
  low: number;
  high: number;
}

export interface DriftResult {
  policy: ContextPolicy;
  system: string | null;
  seeds: number[];
  turns: number;
  contextTokens: number;
  conversations: { seed: number; turns: DriftTurn[] }[];
  curve: CurvePoint[];
  /** Mean persona score at turn 1 and at the last turn. */
  first: number;
  last: number;
  /** Turn-1 score minus the mean score over all turns (per seed, then averaged, with a CI). */
  averageDrift: Estimate;
  /** Turn-1 score minus the last turn's score (per seed, then averaged, with a CI). */
  finalDrift: Estimate;
  /** First turn at which the system prompt had left the context for every seed (null: never). */
  systemLostAt: number | null;
}

// Two-sided 97.5% quantiles of Student's t for 1–30 degrees of freedom (R: qt(0.975, df)).
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145,
  2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048,
  2.045, 2.042,
];

/** Mean with a 95% t interval. One value (or no spread) gives a zero-width interval. */
export function meanInterval(values: readonly number[]): Estimate {
  const n = values.length;
  if (n === 0) throw new BakingError("E_INPUT", "an interval needs at least one value");
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, low: mean, high: mean };
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  const t = n - 1 <= T975.length ? T975[n - 2]! : 1.96;
  const half = t * Math.sqrt(variance / n);
  return { mean, low: mean - half, high: mean + half };
}

const WORDS = ["cat", "tree", "sun", "book", "fish", "star", "road", "milk", "door", "bird"];

/** Small neutral questions (arithmetic, spelling, counting) for distractor turns. */
export function defaultDistractor(rng: Rng): string {
  switch (rng.int(3)) {
    case 0:
      return `What is ${10 + rng.int(40)} plus ${10 + rng.int(40)}?`;
    case 1:
      return `How do you spell ${WORDS[rng.int(WORDS.length)]}?`;
    default:
      return `Count from 1 to ${3 + rng.int(5)}.`;
  }
}

/** The user turns of one conversation: turn 1 a probe, then probes or distractors by `probeShare`. */
export function driftScript(
  seed: number,
  turns: number,
  probes: readonly string[],
  distractors: readonly string[] | undefined,
  probeShare: number,
): { user: string; probe: boolean }[] {
  const rng = new Rng(seed * 7919 + 17);
  return Array.from({ length: turns }, (_, i) => {
    const probe = i === 0 || rng.next() < probeShare;
    if (probe) return { user: probes[rng.int(probes.length)]!, probe };
    const user =
      distractors && distractors.length > 0
        ? distractors[rng.int(distractors.length)]!
        : defaultDistractor(rng);
    return { user, probe };
  });
}

/** Hold the conversations and score every reply. The model's weights are not changed. */
export function measureDrift(model: GPT, tokenizer: Tokenizer, options: DriftOptions): DriftResult {
  const turns = options.turns ?? 30;
  const policy = options.contextPolicy ?? "sliding";
  const seeds = [...(options.seeds ?? Array.from({ length: 16 }, (_, i) => i + 1))];
  const maxNewTokens = options.maxNewTokens ?? 32;
  const probeShare = options.probeShare ?? 0.5;
  if (!Number.isInteger(turns) || turns < 1)
    throw new BakingError("E_INPUT", `turns must be a positive integer; got ${turns}`);
  if (seeds.length === 0 || seeds.some((s) => !Number.isInteger(s)))
    throw new BakingError("E_INPUT", "seeds must be a non-empty list of integers");
  if (options.probes.length === 0)
    throw new BakingError("E_INPUT", "drift needs at least one probe question");
  if (!(probeShare >= 0 && probeShare <= 1))
    throw new BakingError("E_INPUT", `probeShare must be in [0, 1]; got ${probeShare}`);
  if (options.system !== undefined && options.system.trim() === "")
    throw new BakingError("E_INPUT", "the system prompt is empty; leave it out for a baked model");
  const budget = options.contextTokens ?? model.config.blockSize - maxNewTokens;
  if (!Number.isInteger(budget) || budget < 8 || budget + maxNewTokens > model.config.blockSize)
    throw new BakingError(
      "E_INPUT",
      `the context budget (${budget}) plus maxNewTokens (${maxNewTokens}) must fit the context window of ${model.config.blockSize}`,
    );
  const scripts = seeds.map((seed) =>
    driftScript(seed, turns, options.probes, options.distractors, probeShare),
  );
  const histories: ChatMessage[][] = seeds.map(() =>
    options.system ? [{ role: "system", content: options.system }] : [],
  );
  const lengths: number[][] = histories.map((h) => h.map((m) => messageTokens(tokenizer, m)));
  const conversations = seeds.map((seed) => ({ seed, turns: [] as DriftTurn[] }));
  const rng = new Rng(seeds.reduce((a, s) => (a * 31 + s) >>> 0, 7));
  for (let t = 0; t < turns; t++) {
    const fitted = seeds.map((_, b) => {
      const user: ChatMessage = { role: "user", content: scripts[b]![t]!.user };
      histories[b]!.push(user);
      lengths[b]!.push(messageTokens(tokenizer, user));
      try {
        return fitContext(tokenizer, histories[b]!, budget, policy, lengths[b]!);
      } catch (error) {
        if (error instanceof BakingError && error.code === "E_CONTEXT")
          throw new BakingError("E_CONTEXT", `turn ${t + 1}: ${error.message}`);
        throw error;
      }
    });
    const batchSeed = rng.seed();
    const replies = generateReplies(
      model,
      tokenizer,
      fitted.map((f) => f.messages),
      {
        maxNewTokens,
        temperature: options.temperature ?? 0.7,
        ...(options.topK !== undefined ? { topK: options.topK } : {}),
        seed: () => batchSeed,
        batchSize: fitted.length,
      },
    );
    for (const [b, { text: reply }] of replies.entries()) {
      const step = scripts[b]![t]!;
      const assistant: ChatMessage = { role: "assistant", content: reply };
      histories[b]!.push(assistant);
      lengths[b]!.push(messageTokens(tokenizer, assistant));
      const score = options.score(reply, { turn: t + 1, user: step.user, probe: step.probe });
      if (!(score >= 0 && score <= 1))
        throw new BakingError("E_INPUT", `the persona score must be in [0, 1]; got ${score}`);
      conversations[b]!.turns.push({
        turn: t + 1,
        user: step.user,
        probe: step.probe,
        reply,
        score,
        promptTokens: fitted[b]!.tokens,
        droppedPairs: fitted[b]!.droppedPairs,
        systemInContext: fitted[b]!.systemKept,
      });
    }
    options.onTurn?.(t + 1, turns);
  }
  return summariseDrift(conversations, {
    policy,
    system: options.system ?? null,
    contextTokens: budget,
  });
}

/** Curves and drift estimates from scored conversations (all the same length). */
export function summariseDrift(
  conversations: { seed: number; turns: DriftTurn[] }[],
  meta: { policy: ContextPolicy; system: string | null; contextTokens: number },
): DriftResult {
  const turns = conversations[0]?.turns.length ?? 0;
  if (turns === 0 || conversations.some((c) => c.turns.length !== turns))
    throw new BakingError("E_INPUT", "every conversation needs the same, non-zero number of turns");
  const curve: CurvePoint[] = Array.from({ length: turns }, (_, t) => {
    const estimate = meanInterval(conversations.map((c) => c.turns[t]!.score));
    return {
      turn: t + 1,
      ...estimate,
      systemInContext:
        conversations.filter((c) => c.turns[t]!.systemInContext).length / conversations.length,
    };
  });
  const perSeedMean = (c: { turns: DriftTurn[] }) =>
    c.turns.reduce((a, x) => a + x.score, 0) / c.turns.length;
  const lost = meta.system === null ? -1 : curve.findIndex((p) => p.systemInContext === 0);
  return {
    ...meta,
    seeds: conversations.map((c) => c.seed),
    turns,
    conversations,
    curve,
    first: curve[0]!.mean,
    last: curve.at(-1)!.mean,
    averageDrift: meanInterval(conversations.map((c) => c.turns[0]!.score - perSeedMean(c))),
    finalDrift: meanInterval(conversations.map((c) => c.turns[0]!.score - c.turns.at(-1)!.score)),
    systemLostAt: lost < 0 ? null : lost + 1,
  };
}

export interface DriftComparison {
  prompted: DriftResult;
  baked: DriftResult;
  /** 1 − baked average drift / prompted average drift (null when the prompted model does not drift). */
  relativeReduction: number | null;
}

/** A prompted model (system prompt at the start) against a baked one (no system prompt). */
export function compareDrift(prompted: DriftResult, baked: DriftResult): DriftComparison {
  const p = prompted.averageDrift.mean;
  return {
    prompted,
    baked,
    relativeReduction: p > 0 ? 1 - baked.averageDrift.mean / p : null,
  };
}
