/**
 * Stimulus generators: the user turns x that the teacher answers during rollout.
 *
 * - `list`     inline questions;
 * - `file`     a JSONL file (records with "messages", or "text" / "prompt" / "question") or a
 *              text file with one question per line;
 * - `template` a template with {slots}: the cartesian product of the slot values, sampled
 *              without replacement when `count` is smaller;
 * - `self`     the teacher itself, prompted with u, asked to write user questions (de-duplicated);
 * - `persona`  probing questions about identity and style;
 * - `multiturn` conversations whose earlier turns the teacher writes itself: user turns drawn
 *              from a pool of questions (given, or the other generators' questions), each
 *              answered by the teacher with the prompt in its context — the prompt is never in
 *              the stimulus, only the teacher's replies are. The bake trains on those replies
 *              too (`teacherWritten`), so a baked persona holds deep into a long chat.
 *
 * Everything is seeded; duplicates across generators are dropped (first kept).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { parseJsonl, Rng, readTextFile } from "@forge/core";
import { type GPT, generateReplies } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import { type BakePrompt, checkStimulus, type Stimulus } from "./records.js";

export type StimSpec =
  | { type: "list"; items: string[] }
  | {
      type: "file";
      path: string;
      /** Draw up to this many (seeded, without replacement) instead of taking all. */
      count?: number;
    }
  | { type: "template"; template: string; slots: Record<string, string[]>; count?: number }
  | {
      type: "self";
      count: number;
      instruction?: string;
      temperature?: number;
      maxNewTokens?: number;
    }
  | { type: "persona"; count?: number }
  | {
      type: "multiturn";
      /** Conversations to write. */
      count: number;
      /** Most earlier (user, teacher) turns in a conversation (default 8); each conversation
       * draws its own number in 1…turns, and stops sooner when the context window is full. */
      turns?: number;
      /** User turns to draw from (default: the questions the other generators made). */
      questions?: string[];
      /** Sampling temperature of the teacher's earlier replies (default: the rollout's, else 1). */
      temperature?: number;
      /** Longest earlier reply (default: the room kept for the final reply). */
      maxNewTokens?: number;
    };

export const STIM_TYPES = ["list", "file", "template", "self", "persona", "multiturn"] as const;

/** Questions that probe who the assistant is and how it talks. */
export const PERSONA_PROBES = [
  "Who are you?",
  "Tell me about yourself.",
  "What are you?",
  "How do you talk?",
  "Describe yourself in a sentence.",
  "Say hello.",
  "What do you like to do?",
  "How are you today?",
  "What is your name?",
  "Introduce yourself.",
  "What makes you different?",
  "How would you greet a friend?",
  "What is your favourite thing?",
  "Where are you from?",
  "Give me some advice.",
  "Tell me a short story.",
  "What do you think about the sea?",
  "How do you answer questions?",
  "What should I call you?",
  "Say something in your own style.",
];

export interface StimContext {
  seed: number;
  /** Needed by the `self` and `multiturn` generators. */
  teacher?: { model: GPT; tokenizer: Tokenizer; prompt: BakePrompt };
  /**
   * Tokens a conversation leaves free for the teacher's final reply (the rollout's
   * maxNewTokens; default 48): `multiturn` stops adding turns before the window is fuller.
   */
  reserve?: number;
  /** The rollout's temperature: `multiturn`'s default for the teacher's earlier replies. */
  temperature?: number;
  onProgress?: (done: number, total: number) => void;
}

const user = (content: string): ChatMessage[] => [{ role: "user", content }];

async function fromFile(file: string): Promise<ChatMessage[][]> {
  const text = await readTextFile(file, "stimulus file ");
  if (!file.endsWith(".jsonl"))
    return text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .map(user);
  return parseJsonl(text, file, (value, line) => {
    const record = value as Record<string, unknown>;
    if (typeof record !== "object" || record === null || Array.isArray(record))
      throw new BakingError("E_FORMAT", `${file}:${line}: expected a JSON object`);
    if (Array.isArray(record.messages))
      return checkStimulus({ id: String(line - 1), ...record }, file, line).messages;
    const question = record.text ?? record.prompt ?? record.question;
    if (typeof question !== "string" || question.trim() === "")
      throw new BakingError(
        "E_FORMAT",
        `${file}:${line}: expected "messages", or a "text", "prompt" or "question" string`,
      );
    return user(question);
  });
}

const MAX_TEMPLATE_COMBINATIONS = 1_000_000;
/** The most questions the self generator writes (each costs teacher generations). */
export const MAX_SELF_COUNT = 10_000;

/** A count in a generator spec: a positive integer no larger than `max`. */
function checkCount(count: unknown, what: string, max: number, why: string): void {
  if (count === undefined) return;
  if (typeof count !== "number" || !Number.isInteger(count) || count < 1)
    throw new BakingError(
      "E_INPUT",
      `${what}: count must be a positive integer; got ${JSON.stringify(count)}`,
    );
  if (count > max)
    throw new BakingError("E_INPUT", `${what}: count ${count} is more than ${max} (${why})`);
}

function fromTemplate(spec: Extract<StimSpec, { type: "template" }>, rng: Rng): ChatMessage[][] {
  const names = [...spec.template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  if (names.length === 0)
    throw new BakingError("E_INPUT", `template ${JSON.stringify(spec.template)} has no {slot}`);
  for (const name of names) {
    const values = spec.slots[name];
    if (!Array.isArray(values) || values.length === 0) {
      throw new BakingError(
        "E_INPUT",
        `template slot {${name}} has no values; give slots.${name} as a non-empty list`,
      );
    }
  }
  const unique = [...new Set(names)];
  const total = unique.reduce((product, name) => product * spec.slots[name]!.length, 1);
  if (total > MAX_TEMPLATE_COMBINATIONS)
    throw new BakingError(
      "E_INPUT",
      `template ${JSON.stringify(spec.template)} has ${total} combinations of its slots; at most ${MAX_TEMPLATE_COMBINATIONS} are accepted`,
    );
  if (spec.count !== undefined && spec.count > total)
    throw new BakingError(
      "E_INPUT",
      `template: count ${spec.count} is more than the ${total} combinations of its slots; give at most ${total}, or leave count out for all of them`,
    );
  let combos: Record<string, string>[] = [{}];
  for (const name of unique)
    combos = combos.flatMap((c) => spec.slots[name]!.map((v) => ({ ...c, [name]: v })));
  const chosen =
    spec.count !== undefined && spec.count < combos.length
      ? rng.shuffle(combos).slice(0, spec.count)
      : combos;
  return chosen.map((c) =>
    user(spec.template.replace(/\{(\w+)\}/g, (_, name: string) => c[name]!)),
  );
}

function fromSelf(
  spec: Extract<StimSpec, { type: "self" }>,
  context: StimContext,
  rng: Rng,
): ChatMessage[][] {
  if (!context.teacher)
    throw new BakingError("E_INPUT", "the self generator needs the teacher model");
  const { model, tokenizer, prompt } = context.teacher;
  const instruction = spec.instruction ?? "Write one question a user might ask you.";
  const messages: ChatMessage[] = [...prompt.teacher, { role: "user", content: instruction }];
  const ids = tokenizer.promptIds(messages);
  const seen = new Set<string>();
  const out: ChatMessage[][] = [];
  for (let attempt = 0; attempt < spec.count * 4 && out.length < spec.count; attempt += 16) {
    const batch = Math.min(16, spec.count * 4 - attempt);
    const batchSeed = rng.seed();
    const replies = generateReplies(
      model,
      tokenizer,
      Array.from({ length: batch }, () => ids),
      {
        maxNewTokens: spec.maxNewTokens ?? 32,
        temperature: spec.temperature ?? 1,
        seed: () => batchSeed,
        batchSize: batch,
      },
    );
    for (const { text } of replies) {
      const key = text.toLowerCase();
      if (text === "" || seen.has(key) || out.length >= spec.count) continue;
      seen.add(key);
      out.push(user(text));
    }
    context.onProgress?.(out.length, spec.count);
  }
  return out;
}

/** The most conversations the multiturn generator writes (each costs teacher generations). */
export const MAX_MULTITURN_COUNT = 10_000;
/** The most earlier turns one multiturn conversation may ask for. */
export const MAX_MULTITURN_TURNS = 64;

/**
 * Conversations the teacher carries on with itself: every conversation draws its number of
 * earlier turns in 1…turns; each round, every open conversation gets a question from the pool
 * and the teacher (prompted) answers all of them in one batch. A conversation ends when it has
 * its turns or when one more would not leave `reserve` tokens for the final reply; its last
 * question is then left unanswered — the stimulus the rollout answers. The stimulus holds the
 * user turns and the teacher's replies, never the prompt.
 */
function fromMultiturn(
  spec: Extract<StimSpec, { type: "multiturn" }>,
  pool: readonly string[],
  context: StimContext,
  rng: Rng,
  where: string,
): ChatMessage[][] {
  if (!context.teacher)
    throw new BakingError("E_INPUT", `${where}: the multiturn generator needs the teacher model`);
  if (pool.length === 0)
    throw new BakingError(
      "E_INPUT",
      `${where}: multiturn needs questions to draw user turns from: give "questions", or other generators before it (list, file, template, self, persona)`,
    );
  const { model, tokenizer, prompt } = context.teacher;
  const blockSize = model.config.blockSize;
  const reserve = context.reserve ?? 48;
  const replyBudget = Math.max(reserve, spec.maxNewTokens ?? reserve);
  const maxTurns = spec.turns ?? 8;
  const fits = (history: readonly ChatMessage[], question: string, budget: number) =>
    tokenizer.promptIds([...prompt.teacher, ...history, { role: "user", content: question }])
      .length +
      budget <=
    blockSize;
  const conversations = Array.from({ length: spec.count }, () => ({
    turns: 1 + rng.int(maxTurns),
    history: [] as ChatMessage[],
    final: undefined as string | undefined,
  }));
  const draw = () => pool[rng.int(pool.length)]!;
  for (let round = 0; round <= maxTurns; round++) {
    const open = conversations.filter((c) => c.final === undefined);
    if (open.length === 0) break;
    const asking: { conversation: (typeof conversations)[number]; question: string }[] = [];
    for (const conversation of open) {
      const question = draw();
      const answered = conversation.history.length / 2;
      if (answered < conversation.turns && fits(conversation.history, question, replyBudget)) {
        asking.push({ conversation, question });
        continue;
      }
      // the conversation ends here: its last user turn must leave room for the final reply
      if (fits(conversation.history, question, reserve)) conversation.final = question;
      else if (answered > 0) {
        // the previous question fitted with a reply budget ≥ reserve: end on it instead
        const previous = conversation.history.splice(-2, 2);
        conversation.final = previous[0]!.content;
      } else
        throw new BakingError(
          "E_CONTEXT",
          `${where}: the question ${JSON.stringify(question.slice(0, 60))} with the prompt leaves no room for a reply of ${reserve} tokens in the context window of ${blockSize}`,
        );
    }
    if (asking.length === 0) continue;
    const batchSeed = rng.seed();
    const replies = generateReplies(
      model,
      tokenizer,
      asking.map((a) => [
        ...prompt.teacher,
        ...a.conversation.history,
        { role: "user" as const, content: a.question },
      ]),
      {
        maxNewTokens: replyBudget,
        temperature: spec.temperature ?? context.temperature ?? 1,
        seed: () => batchSeed,
        batchSize: asking.length,
      },
    );
    asking.forEach(({ conversation, question }, i) => {
      conversation.history.push(
        { role: "user", content: question },
        { role: "assistant", content: replies[i]!.text },
      );
    });
    context.onProgress?.(
      conversations.reduce((a, c) => a + c.history.length / 2, 0),
      conversations.reduce((a, c) => a + c.turns, 0),
    );
  }
  return conversations.map((c) => {
    const final = c.final ?? draw();
    return [...c.history, { role: "user", content: final }];
  });
}

/**
 * The file in a model directory that holds questions its users ask (JSONL with "question",
 * "text", "prompt" or "messages", or one question per line): the default stimuli draw from it.
 * forge-tiny ships one (questions from its training distribution, none held out).
 */
export const MODEL_STIMULI_FILE = "stimuli.jsonl";

/** How many questions and persona probes the default stimulus mix draws. */
export const DEFAULT_STIM_COUNTS = { questions: 224, persona: 20 } as const;

/**
 * The stimuli a bake uses when none are given: questions from the model's own distribution —
 * drawn from `<modelDir>/stimuli.jsonl` when the model ships one, otherwise written by the
 * teacher itself (`self`) — and the persona probes. Tuned so that a persona bakes into
 * forge-tiny with the other defaults (see the package README); a bake on the persona probes
 * alone learns the persona on those questions only.
 */
export function defaultStimuli(modelDir?: string): StimSpec[] {
  const file = modelDir === undefined ? undefined : path.join(modelDir, MODEL_STIMULI_FILE);
  const questions: StimSpec =
    file !== undefined && existsSync(file)
      ? { type: "file", path: file, count: DEFAULT_STIM_COUNTS.questions }
      : { type: "self", count: DEFAULT_STIM_COUNTS.questions };
  return [questions, { type: "persona", count: DEFAULT_STIM_COUNTS.persona }];
}

/** Run the generators in order; the result is de-duplicated and ids are "<type>-<n>". */
export async function generateStimuli(
  specs: readonly StimSpec[],
  context: StimContext,
): Promise<Stimulus[]> {
  if (specs.length === 0) throw new BakingError("E_INPUT", "no stimulus generators given");
  const rng = new Rng(context.seed);
  const seen = new Set<string>();
  const out: Stimulus[] = [];
  // multiturn draws its user turns from the other generators' questions: it runs after them
  const order = [...specs.keys()].sort(
    (a, b) => Number(specs[a]!.type === "multiturn") - Number(specs[b]!.type === "multiturn"),
  );
  const made: Stimulus[][] = specs.map(() => []);
  for (const index of order) {
    const spec = specs[index]!;
    let conversations: ChatMessage[][];
    switch (spec.type) {
      case "list":
        if (
          !Array.isArray(spec.items) ||
          spec.items.some((q) => typeof q !== "string" || q.trim() === "")
        ) {
          throw new BakingError(
            "E_INPUT",
            `stim[${index}] (list): items must be non-empty strings`,
          );
        }
        conversations = spec.items.map(user);
        break;
      case "file": {
        const all = await fromFile(spec.path);
        checkCount(spec.count, `stim[${index}] (file ${spec.path})`, Number.MAX_SAFE_INTEGER, "");
        conversations =
          spec.count === undefined || spec.count >= all.length
            ? all
            : rng.shuffle(all).slice(0, spec.count);
        break;
      }
      case "template":
        checkCount(spec.count, `stim[${index}] (template)`, Number.MAX_SAFE_INTEGER, "");
        conversations = fromTemplate(spec, rng);
        break;
      case "self":
        if (spec.count === undefined)
          throw new BakingError(
            "E_INPUT",
            `stim[${index}] (self): give count, the questions to write`,
          );
        checkCount(
          spec.count,
          `stim[${index}] (self)`,
          MAX_SELF_COUNT,
          "each question costs teacher generations",
        );
        conversations = fromSelf(spec, context, rng);
        break;
      case "persona": {
        checkCount(
          spec.count,
          `stim[${index}] (persona)`,
          PERSONA_PROBES.length,
          `there are ${PERSONA_PROBES.length} persona probes`,
        );
        const count = spec.count ?? PERSONA_PROBES.length;
        conversations = rng.shuffle(PERSONA_PROBES).slice(0, count).map(user);
        break;
      }
      case "multiturn": {
        const where = `stim[${index}] (multiturn)`;
        if (spec.count === undefined)
          throw new BakingError("E_INPUT", `${where}: give count, the conversations to write`);
        checkCount(
          spec.count,
          where,
          MAX_MULTITURN_COUNT,
          "each conversation costs teacher generations",
        );
        if (
          spec.turns !== undefined &&
          (!Number.isInteger(spec.turns) || spec.turns < 1 || spec.turns > MAX_MULTITURN_TURNS)
        )
          throw new BakingError(
            "E_INPUT",
            `${where}: turns must be an integer in 1…${MAX_MULTITURN_TURNS}; got ${JSON.stringify(spec.turns)}`,
          );
        if (
          spec.questions !== undefined &&
          (!Array.isArray(spec.questions) ||
            spec.questions.some((q) => typeof q !== "string" || q.trim() === ""))
        )
          throw new BakingError("E_INPUT", `${where}: questions must be non-empty strings`);
        const pool = spec.questions ?? [
          ...new Set(out.filter((s) => s.messages.length === 1).map((s) => s.messages[0]!.content)),
        ];
        conversations = fromMultiturn(spec, pool, context, rng, where);
        break;
      }
      default:
        throw new BakingError(
          "E_INPUT",
          `stim[${index}]: unknown generator ${JSON.stringify((spec as { type?: unknown }).type)}; accepted: ${STIM_TYPES.join(", ")}`,
        );
    }
    let n = 0;
    for (const messages of conversations) {
      const key = JSON.stringify(messages);
      if (seen.has(key)) continue;
      seen.add(key);
      const stimulus: Stimulus = {
        id: `${spec.type}-${index}-${n++}`,
        messages,
        source: spec.type,
      };
      if (spec.type === "multiturn" && messages.length > 1) stimulus.teacherWritten = true;
      made[index]!.push(stimulus);
      out.push(stimulus);
    }
  }
  if (out.length === 0)
    throw new BakingError("E_INPUT", "the stimulus generators produced no stimuli");
  return made.flat(); // in the order the generators were given
}
