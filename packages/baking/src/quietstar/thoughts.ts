/**
 * Thinking while answering. A reply is written in segments: answer text until an end of turn or
 * an injection point — the start of the reply, the end of a sentence (`.`, `!`, `?`, a new
 * line) or of a clause (`,`, `;`, `:`) — where, with the configured probability, a thought is
 * opened (`<|startofthought|>`), sampled up to its own end token or the length limit (then
 * closed by force), and the answer continues after it. With several samples per point, the
 * thought the model finds most likely (mean log-probability of its tokens) is kept.
 *
 * Without injection ("natural mode") the model may still open a thought by itself; it is then
 * written with the answer's own sampling settings. Either way the thoughts are part of the
 * trace and left out of the answer that is scored and shown, unless asked for.
 */
import { Rng } from "@forge/core";
import type { EvalModel } from "@forge/eval";
import { type GPT, generate, modelHash } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import type { InjectionPoint } from "./config.js";
import type { ThoughtTokens } from "./tokens.js";

/** How a reply is written: injection settings, thought and answer sampling. */
export interface ThinkingSettings {
  tokens: ThoughtTokens;
  /** Inject thoughts at the points below (false: natural mode). */
  inject: boolean;
  /** May the model open thoughts by itself? (false: thought tokens are banned — no thoughts at all) */
  allowThoughts: boolean;
  points: readonly InjectionPoint[];
  probability: number;
  maxThoughtLength: number;
  samplesPerPoint: number;
  thoughtTemperature: number;
  maxThoughts: number;
  /** The most answer tokens (thoughts not counted). */
  maxNewTokens: number;
  /** Answer sampling; 0 = greedy. */
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
  /** Conversations written together (default 32). */
  batchSize?: number;
}

/** One thought of a trace. */
export interface Thought {
  /** The thought's ids, without its markers. */
  ids: number[];
  text: string;
  /** Closed by the model's own end token (false: the length limit closed it). */
  closed: boolean;
  /** Where it was opened: an injection point, or "self" when the model opened it. */
  point: InjectionPoint | "self";
  /** Mean log-probability of its tokens under the model. */
  meanLogprob: number;
}

/** A reply written with thoughts. */
export interface Trace {
  /** The reply's ids: answer and thoughts with their markers; end of turn dropped. */
  ids: number[];
  thoughts: Thought[];
  /** The reply without its thoughts (what is scored and shown), trimmed. */
  answer: string;
  finishReason: "stop" | "length";
}

type Boundary = "sentence" | "clause";

const boundaryCache = new WeakMap<Tokenizer, Map<number, Boundary>>();

/**
 * The tokens after which a sentence or a clause ends: an ordinary token whose text, trailing
 * spaces aside, ends in `.`, `!`, `?` or a new line (sentence), or `,`, `;`, `:` (clause).
 */
export function boundaryTokens(tokenizer: Tokenizer): Map<number, Boundary> {
  const cached = boundaryCache.get(tokenizer);
  if (cached) return cached;
  const out = new Map<number, Boundary>();
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    if (tokenizer.isSpecial(id)) continue;
    let text: string;
    try {
      text = tokenizer.decode([id]);
    } catch {
      continue; // a hole in the id space
    }
    if (/\n[ \t]*$/.test(text)) out.set(id, "sentence");
    else {
      const last = text.trimEnd().at(-1);
      if (last === "." || last === "!" || last === "?") out.set(id, "sentence");
      else if (last === "," || last === ";" || last === ":") out.set(id, "clause");
    }
  }
  boundaryCache.set(tokenizer, out);
  return out;
}

/** Where each injection point falls in a reply's ids: "start" at 0, then after each boundary token. */
export function injectionPoints(
  tokenizer: Tokenizer,
  ids: readonly number[],
): { index: number; point: InjectionPoint }[] {
  const boundaries = boundaryTokens(tokenizer);
  const points: { index: number; point: InjectionPoint }[] = [{ index: 0, point: "start" }];
  ids.forEach((id, i) => {
    const kind = boundaries.get(id);
    if (kind) points.push({ index: i + 1, point: kind });
  });
  return points;
}

/**
 * Split a reply's ids into its answer and its thoughts. A thought runs from a start token to
 * the next end token (an unclosed one to the end); a stray end token belongs to neither.
 */
export function extractThoughts(
  ids: readonly number[],
  tokens: Pick<ThoughtTokens, "startId" | "endId">,
): { answerIds: number[]; thoughts: { ids: number[]; closed: boolean }[] } {
  const answerIds: number[] = [];
  const thoughts: { ids: number[]; closed: boolean }[] = [];
  let current: number[] | undefined;
  for (const id of ids) {
    if (id === tokens.startId) {
      if (current) thoughts.push({ ids: current, closed: false });
      current = [];
    } else if (id === tokens.endId) {
      if (current) thoughts.push({ ids: current, closed: true });
      current = undefined;
    } else if (current) current.push(id);
    else answerIds.push(id);
  }
  if (current) thoughts.push({ ids: current, closed: false });
  return { answerIds, thoughts };
}

/** The same split on text: the answer without the thoughts, and each thought's text. */
export function splitThoughts(
  text: string,
  tokens: Pick<ThoughtTokens, "start" | "end">,
): { answer: string; thoughts: string[] } {
  const thoughts: string[] = [];
  let answer = "";
  let rest = text;
  for (;;) {
    const open = rest.indexOf(tokens.start);
    const strayEnd = rest.indexOf(tokens.end);
    if (strayEnd >= 0 && (open < 0 || strayEnd < open)) {
      answer += rest.slice(0, strayEnd);
      rest = rest.slice(strayEnd + tokens.end.length);
      continue;
    }
    if (open < 0) {
      answer += rest;
      break;
    }
    answer += rest.slice(0, open);
    rest = rest.slice(open + tokens.start.length);
    const close = rest.indexOf(tokens.end);
    const next = rest.indexOf(tokens.start);
    const stop =
      close < 0 ? (next < 0 ? rest.length : next) : next >= 0 && next < close ? next : close;
    thoughts.push(rest.slice(0, stop));
    rest = rest.slice(stop === close ? close + tokens.end.length : stop);
  }
  return { answer: answer.replace(/[ \t]{2,}/g, " ").trim(), thoughts };
}

/** A trace as text to show: the answer alone, or with its thoughts in place (wrapped by `wrap`). */
export function formatTrace(
  trace: Trace,
  tokenizer: Tokenizer,
  tokens: Pick<ThoughtTokens, "startId" | "endId">,
  options: { showThoughts?: boolean; wrap?: (thought: string) => string } = {},
): string {
  if (!options.showThoughts) return trace.answer;
  const wrap = options.wrap ?? ((thought: string) => `[thought: ${thought.trim()}]`);
  const parts: string[] = [];
  let thought: number[] | undefined;
  let answer: number[] = [];
  const flushAnswer = () => {
    if (answer.length) parts.push(tokenizer.decode(answer, { skipSpecial: true }));
    answer = [];
  };
  for (const id of trace.ids) {
    if (id === tokens.startId) {
      flushAnswer();
      thought = [];
    } else if (id === tokens.endId && thought) {
      parts.push(wrap(tokenizer.decode(thought, { skipSpecial: true })));
      thought = undefined;
    } else if (thought) thought.push(id);
    else answer.push(id);
  }
  if (thought) parts.push(wrap(tokenizer.decode(thought, { skipSpecial: true })));
  flushAnswer();
  return parts.join("").trim();
}

interface State {
  context: number[];
  response: number[];
  phase: "decide" | "answer" | "thought" | "done";
  pending: InjectionPoint;
  /** How the current thought was opened. */
  opened: InjectionPoint | "self";
  answerTokens: number;
  thoughts: Thought[];
  finishReason: "stop" | "length";
}

const mean = (xs: readonly number[]) =>
  xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NEGATIVE_INFINITY;

/**
 * Write one reply per prompt (prompt ids as `tokenizer.promptIds` renders them), with thoughts
 * as `settings` say. Deterministic for a seed and a set of prompts.
 */
export function thinkingReplies(
  model: GPT,
  tokenizer: Tokenizer,
  prompts: readonly (readonly number[])[],
  settings: ThinkingSettings,
): Trace[] {
  const batchSize = settings.batchSize ?? 32;
  const out: Trace[] = [];
  const rng = new Rng(settings.seed);
  for (let start = 0; start < prompts.length; start += batchSize)
    out.push(
      ...thinkBatch(model, tokenizer, prompts.slice(start, start + batchSize), settings, rng),
    );
  return out;
}

function thinkBatch(
  model: GPT,
  tokenizer: Tokenizer,
  prompts: readonly (readonly number[])[],
  settings: ThinkingSettings,
  rng: Rng,
): Trace[] {
  const { startId, endId } = settings.tokens;
  const eot = tokenizer.stopIds();
  const boundaries = boundaryTokens(tokenizer);
  const canInjectLater =
    settings.inject && settings.points.some((p) => p === "sentence" || p === "clause");
  const banned = new Set(tokenizer.bannedIds());
  if (settings.allowThoughts) banned.delete(startId);
  else banned.add(startId);
  banned.add(endId);
  const thoughtBanned = [...new Set([...tokenizer.bannedIds(), ...eot, startId])].filter(
    (id) => id !== endId,
  );
  const states: State[] = prompts.map((prompt) => ({
    context: [...prompt],
    response: [],
    phase: settings.inject ? "decide" : "answer",
    pending: "start",
    opened: "start",
    answerTokens: 0,
    thoughts: [],
    finishReason: "stop",
  }));
  const openThought = (state: State, opened: InjectionPoint | "self", push: boolean) => {
    if (push) {
      state.context.push(startId);
      state.response.push(startId);
    }
    state.phase = "thought";
    state.opened = opened;
  };

  while (states.some((s) => s.phase !== "done")) {
    for (const state of states) {
      if (state.phase !== "decide") continue;
      const draw = rng.next();
      if (
        settings.points.includes(state.pending) &&
        state.thoughts.length < settings.maxThoughts &&
        draw < settings.probability
      )
        openThought(state, state.pending, true);
      else state.phase = "answer";
    }

    // Thoughts: sampled (k per point), the most likely kept, closed by force at the limit.
    const thinking = states.filter((s) => s.phase === "thought");
    for (const self of [false, true]) {
      const group = thinking.filter((s) => (s.opened === "self") === self);
      if (group.length === 0) continue;
      const k = settings.samplesPerPoint;
      const { tokens, logprobs } = generate(
        model,
        group.flatMap((s) => Array.from({ length: k }, () => s.context)),
        {
          maxNewTokens: settings.maxThoughtLength + 1,
          temperature: self ? settings.temperature : settings.thoughtTemperature,
          ...(self && settings.topK !== undefined ? { topK: settings.topK } : {}),
          ...(self && settings.topP !== undefined ? { topP: settings.topP } : {}),
          seed: rng.seed(),
          stopIds: [endId],
          bannedIds: thoughtBanned,
          logprobs: true,
        },
      );
      group.forEach((state, g) => {
        let best = g * k;
        for (let j = g * k + 1; j < (g + 1) * k; j++)
          if (mean(logprobs![j]!) > mean(logprobs![best]!)) best = j;
        const written = tokens[best]!;
        const closed = written.at(-1) === endId;
        const ids = closed ? written.slice(0, -1) : written.slice(0, settings.maxThoughtLength);
        state.thoughts.push({
          ids,
          text: tokenizer.decode(ids, { skipSpecial: true }),
          closed,
          point: state.opened,
          meanLogprob: mean(logprobs![best]!.slice(0, ids.length + (closed ? 1 : 0))),
        });
        state.context.push(...ids, endId);
        state.response.push(...ids, endId);
        state.phase = "answer";
      });
    }

    // Answers: until the end of the turn, an injection point, or a thought the model opens.
    const answering = states.filter((s) => s.phase === "answer");
    if (answering.length === 0) continue;
    const injectable =
      canInjectLater && answering.some((s) => s.thoughts.length < settings.maxThoughts);
    const stops = [
      ...eot,
      ...(settings.allowThoughts ? [startId] : []),
      ...(injectable ? boundaries.keys() : []),
    ];
    const budget = Math.max(...answering.map((s) => settings.maxNewTokens - s.answerTokens));
    const { tokens } = generate(
      model,
      answering.map((s) => s.context),
      {
        maxNewTokens: Math.max(1, budget),
        temperature: settings.temperature,
        ...(settings.topK !== undefined ? { topK: settings.topK } : {}),
        ...(settings.topP !== undefined ? { topP: settings.topP } : {}),
        seed: rng.seed(),
        stopIds: stops,
        bannedIds: [...banned],
      },
    );
    answering.forEach((state, i) => {
      const remaining = settings.maxNewTokens - state.answerTokens;
      let written = tokens[i]!;
      const last = written.at(-1);
      const stopped = last !== undefined && stops.includes(last);
      if (written.length > remaining || (!stopped && written.length >= remaining)) {
        written = written.slice(0, remaining).filter((id) => id !== startId);
        state.context.push(...written);
        state.response.push(...written);
        state.answerTokens += written.length;
        state.phase = "done";
        state.finishReason = "length";
        return;
      }
      if (last !== undefined && eot.includes(last)) {
        const body = written.slice(0, -1);
        state.response.push(...body);
        state.answerTokens += body.length;
        state.phase = "done";
        state.finishReason = "stop";
        return;
      }
      if (last === startId) {
        const body = written.slice(0, -1);
        state.context.push(...written);
        state.response.push(...written);
        state.answerTokens += body.length;
        if (state.thoughts.length < settings.maxThoughts) openThought(state, "self", false);
        else {
          // no room for another thought: close it at once, empty
          state.context.push(endId);
          state.response.push(endId);
          state.thoughts.push({
            ids: [],
            text: "",
            closed: false,
            point: "self",
            meanLogprob: Number.NEGATIVE_INFINITY,
          });
        }
        return;
      }
      state.context.push(...written);
      state.response.push(...written);
      state.answerTokens += written.length;
      const kind = last === undefined ? undefined : boundaries.get(last);
      if (kind && injectable && state.thoughts.length < settings.maxThoughts) {
        state.phase = "decide";
        state.pending = kind;
      } else if (!stopped) {
        state.phase = "done";
        state.finishReason = "length";
      }
    });
  }

  return states.map((state) => {
    const { answerIds } = extractThoughts(state.response, settings.tokens);
    return {
      ids: state.response,
      thoughts: state.thoughts,
      answer: tokenizer.decode(answerIds, { skipSpecial: true }).trim(),
      finishReason: state.finishReason,
    };
  });
}

/** A thinking model as @forge/eval's EvalModel, keeping the trace of every reply it gives. */
export interface ThinkingEvalModel extends EvalModel {
  /** The latest trace for each conversation (keyed by `conversationKey`). */
  readonly traces: Map<string, Trace>;
}

/** The key a conversation's trace is kept under. */
export const conversationKey = (messages: readonly ChatMessage[]): string =>
  JSON.stringify(messages.map((m) => [m.role, m.content]));

/**
 * `model` answering as `settings` say (seed and answer sampling come from each call, as the
 * runner gives them), shaped as @forge/eval's `EvalModel`: replies are answers without their
 * thoughts; the traces are kept.
 */
export function thinkingEvalModel(
  model: GPT,
  tokenizer: Tokenizer,
  settings: Omit<ThinkingSettings, "seed" | "maxNewTokens" | "temperature">,
  options: { name: string },
): ThinkingEvalModel {
  const traces = new Map<string, Trace>();
  let id: string | undefined;
  return {
    name: options.name,
    get id() {
      id ??= `${modelHash(model).slice(0, 32)}+${JSON.stringify({ ...settings, tokens: settings.tokens.startId })}`;
      return id;
    },
    traces,
    generate: async (conversations, generation) => {
      const prompts = conversations.map((c) => tokenizer.promptIds(c));
      const written = thinkingReplies(model, tokenizer, prompts, {
        ...settings,
        maxNewTokens: generation.maxNewTokens,
        temperature: generation.temperature,
        ...(generation.topK !== undefined ? { topK: generation.topK } : {}),
        ...(generation.topP !== undefined ? { topP: generation.topP } : {}),
        seed: generation.seed,
      });
      for (const [i, trace] of written.entries())
        traces.set(conversationKey(conversations[i]!), trace);
      return written.map((t) => t.answer);
    },
  };
}
