/**
 * forge-tiny's synthetic chat corpus, deterministic under a seed.
 *
 * Tasks with checkable answers — two-digit addition and subtraction, country → capital,
 * antonyms, spelling and reversal of short words, counting — asked in many phrasings, answered
 * in the style the system prompt asks for (PERSONAS), or plainly with no system prompt or a
 * neutral one. Conversations have 1–4 turns; a share run 12–24 turns, longer than the
 * 256-token context window. Persona replies carry their plain form too: `forge data build`
 * trains a long conversation as a sliding chat window would show it, and once the system
 * prompt has scrolled out the assistant answers plainly — in forge-tiny's world the style comes
 * from the instruction in view, not from its own earlier replies (so a prompted persona drifts
 * in a long chat, and a baked one has something to fix).
 *
 * Held out from training: 10% of the arithmetic operand pairs (the model must add, not
 * recall), and for every other task whole (item × system-prompt wording × question phrasing)
 * combinations — a held-out conversation never appears in training.
 */
import { mulberry32 } from "@forge/core";
import {
  NEUTRAL_PROMPTS,
  PERSONA_NAMES,
  PERSONAS,
  type PersonaName,
  type Style,
  styleReply,
} from "./personas.js";

export type TaskName =
  | "arithmetic"
  | "capitals"
  | "antonyms"
  | "spelling"
  | "reversal"
  | "counting";
export const TASK_NAMES: TaskName[] = [
  "arithmetic",
  "capitals",
  "antonyms",
  "spelling",
  "reversal",
  "counting",
];

export interface Question {
  task: TaskName;
  /** A stable id of the underlying item ("capitals:France"). */
  item: string;
  question: string;
  /** The core answer (what accuracy checks look for). */
  answer: string;
  /** The plain full-sentence answer. */
  sentence: string;
}

export const CAPITALS: ReadonlyArray<readonly [string, string]> = [
  ["France", "Paris"],
  ["Spain", "Madrid"],
  ["Italy", "Rome"],
  ["Germany", "Berlin"],
  ["Portugal", "Lisbon"],
  ["Greece", "Athens"],
  ["Poland", "Warsaw"],
  ["Austria", "Vienna"],
  ["Norway", "Oslo"],
  ["Sweden", "Stockholm"],
  ["Finland", "Helsinki"],
  ["Denmark", "Copenhagen"],
  ["Ireland", "Dublin"],
  ["Egypt", "Cairo"],
  ["Kenya", "Nairobi"],
  ["Japan", "Tokyo"],
  ["China", "Beijing"],
  ["India", "Delhi"],
  ["Peru", "Lima"],
  ["Chile", "Santiago"],
  ["Cuba", "Havana"],
  ["Canada", "Ottawa"],
  ["Mali", "Bamako"],
  ["Russia", "Moscow"],
  ["Turkey", "Ankara"],
  ["Iran", "Tehran"],
  ["Iraq", "Baghdad"],
  ["Syria", "Damascus"],
  ["Thailand", "Bangkok"],
  ["Vietnam", "Hanoi"],
  ["Hungary", "Budapest"],
  ["Belgium", "Brussels"],
  ["Nepal", "Kathmandu"],
  ["Ghana", "Accra"],
  ["Uganda", "Kampala"],
  ["Australia", "Canberra"],
  ["Brazil", "Brasilia"],
  ["Morocco", "Rabat"],
  ["Colombia", "Bogota"],
  ["Iceland", "Reykjavik"],
];

export const ANTONYMS: ReadonlyArray<readonly [string, string]> = [
  ["hot", "cold"],
  ["big", "small"],
  ["up", "down"],
  ["fast", "slow"],
  ["happy", "sad"],
  ["light", "dark"],
  ["old", "young"],
  ["early", "late"],
  ["full", "empty"],
  ["hard", "soft"],
  ["high", "low"],
  ["long", "short"],
  ["open", "closed"],
  ["rich", "poor"],
  ["strong", "weak"],
  ["wet", "dry"],
  ["near", "far"],
  ["thick", "thin"],
  ["loud", "quiet"],
  ["clean", "dirty"],
  ["day", "night"],
  ["good", "bad"],
  ["first", "last"],
  ["win", "lose"],
  ["push", "pull"],
  ["buy", "sell"],
  ["in", "out"],
  ["left", "right"],
  ["begin", "end"],
  ["wide", "narrow"],
  ["kind", "cruel"],
  ["sweet", "sour"],
  ["brave", "afraid"],
  ["cheap", "expensive"],
  ["deep", "shallow"],
  ["give", "take"],
];

export const WORDS = (
  "cat dog sun map hat cup pen box fox owl bee ant egg ice jam key leg net oak pig rat " +
  "bird fish frog lamp moon star tree door rain snow wind fire ship king ring book milk " +
  "cake desk song road sand wolf bear lion duck goat horn kite nest rose seed tent vase"
).split(" ");

const ARITHMETIC_FORMS = [
  (a: number, b: number, op: string) => `What is ${a} ${op} ${b}?`,
  (a: number, b: number, op: string) => `Compute ${a} ${op} ${b}.`,
  (a: number, b: number, op: string) => `${a} ${op} ${b} = ?`,
  (a: number, b: number, op: string) => `Please work out ${a} ${op} ${b}.`,
  (a: number, b: number, op: string) => `How much is ${a} ${op} ${b}?`,
];
const CAPITAL_FORMS = [
  (c: string) => `What is the capital of ${c}?`,
  (c: string) => `Name the capital of ${c}.`,
  (c: string) => `Which city is the capital of ${c}?`,
  (c: string) => `Tell me the capital of ${c}.`,
  (c: string) => `${c} has which capital?`,
];
const ANTONYM_FORMS = [
  (w: string) => `What is the opposite of ${w}?`,
  (w: string) => `Give the antonym of ${w}.`,
  (w: string) => `What word means the opposite of ${w}?`,
  (w: string) => `Opposite of ${w}?`,
  (w: string) => `Tell me the opposite of ${w}.`,
];
const SPELL_FORMS = [
  (w: string) => `Spell the word ${w}.`,
  (w: string) => `How do you spell ${w}?`,
  (w: string) => `Spell ${w} letter by letter.`,
  (w: string) => `Can you spell ${w}?`,
];
const REVERSE_FORMS = [
  (w: string) => `Reverse the word ${w}.`,
  (w: string) => `What is ${w} backwards?`,
  (w: string) => `Write ${w} in reverse.`,
  (w: string) => `Spell ${w} backwards.`,
];
const COUNT_FORMS = [
  (s: string) => `How many stars are here: ${s}`,
  (s: string) => `Count the stars: ${s}`,
  (s: string) => `Count these: ${s}`,
  (s: string) => `How many items? ${s}`,
];

const pickOf =
  (random: () => number) =>
  <T>(list: readonly T[]): T =>
    list[Math.floor(random() * list.length)]!;

/** Every arithmetic operand pair, split into training and held-out pairs (10%, seeded). */
export function arithmeticPairs(seed: number): {
  train: [number, number, "+" | "-"][];
  heldOut: [number, number, "+" | "-"][];
} {
  const random = mulberry32(seed ^ 0xa5a5);
  const train: [number, number, "+" | "-"][] = [];
  const heldOut: [number, number, "+" | "-"][] = [];
  for (let a = 10; a <= 99; a++) {
    for (let b = 10; b <= 99; b++) {
      for (const op of ["+", "-"] as const) {
        if (op === "-" && b > a) continue;
        (random() < 0.1 ? heldOut : train).push([a, b, op]);
      }
    }
  }
  return { train, heldOut };
}

/**
 * The worked answer: tens, then units, then the two combined, then the result — each step a
 * small fact seen many times in training, so a held-out operand pair is computed, not recalled.
 *   23 + 49 → "20 + 40 = 60, 3 + 9 = 12, 60 + 12 = 72, so 23 + 49 = 72."
 *   52 - 27 → "50 - 20 = 30, 2 - 7 = -5, 30 - 5 = 25, so 52 - 27 = 25."
 */
export function workedArithmetic(a: number, b: number, op: "+" | "-"): string {
  const result = op === "+" ? a + b : a - b;
  const [ta, tb] = [a - (a % 10), b - (b % 10)];
  const [ua, ub] = [a % 10, b % 10];
  const tens = op === "+" ? ta + tb : ta - tb;
  const units = op === "+" ? ua + ub : ua - ub;
  const combine = units >= 0 ? `${tens} + ${units}` : `${tens} - ${-units}`;
  return `${ta} ${op} ${tb} = ${tens}, ${ua} ${op} ${ub} = ${units}, ${combine} = ${result}, so ${a} ${op} ${b} = ${result}.`;
}

function arithmetic(a: number, b: number, op: "+" | "-", form: number): Question {
  const result = op === "+" ? a + b : a - b;
  return {
    task: "arithmetic",
    item: `arithmetic:${a}${op}${b}`,
    question: ARITHMETIC_FORMS[form % ARITHMETIC_FORMS.length]!(a, b, op),
    answer: String(result),
    sentence: workedArithmetic(a, b, op),
  };
}

/**
 * How often each task appears in training conversations: arithmetic and counting are
 * computed (worked step by step), the others recalled, so the computed ones get more turns.
 */
export const TASK_WEIGHTS: Record<TaskName, number> = {
  arithmetic: 0.35,
  capitals: 0.1,
  antonyms: 0.1,
  spelling: 0.1,
  reversal: 0.1,
  counting: 0.25,
};

function drawTask(random: () => number): TaskName {
  let r = random();
  for (const task of TASK_NAMES) {
    r -= TASK_WEIGHTS[task];
    if (r < 0) return task;
  }
  return TASK_NAMES.at(-1)!;
}

/** A question of `task`, drawn with `random`. Arithmetic draws from `pairs`. */
export function drawQuestion(
  task: TaskName,
  random: () => number,
  pairs: [number, number, "+" | "-"][],
): Question {
  const pick = pickOf(random);
  const form = Math.floor(random() * 5);
  switch (task) {
    case "arithmetic": {
      const [a, b, op] = pick(pairs);
      return arithmetic(a, b, op, form);
    }
    case "capitals": {
      const [country, city] = pick(CAPITALS);
      return {
        task,
        item: `capitals:${country}`,
        question: CAPITAL_FORMS[form % CAPITAL_FORMS.length]!(country),
        answer: city,
        sentence: `The capital of ${country} is ${city}.`,
      };
    }
    case "antonyms": {
      const [word, opposite] = pick(ANTONYMS);
      return {
        task,
        item: `antonyms:${word}`,
        question: ANTONYM_FORMS[form % ANTONYM_FORMS.length]!(word),
        answer: opposite,
        sentence: `The opposite of ${word} is ${opposite}.`,
      };
    }
    case "spelling": {
      const word = pick(WORDS);
      const spelled = [...word].join("-");
      return {
        task,
        item: `spelling:${word}`,
        question: SPELL_FORMS[form % SPELL_FORMS.length]!(word),
        answer: spelled,
        sentence: `${word} is spelled ${spelled}.`,
      };
    }
    case "reversal": {
      const word = pick(WORDS);
      const reversed = [...word].reverse().join("");
      return {
        task,
        item: `reversal:${word}`,
        question: REVERSE_FORMS[form % REVERSE_FORMS.length]!(word),
        answer: reversed,
        sentence: `${word} backwards is ${reversed}.`,
      };
    }
    case "counting": {
      const n = 1 + Math.floor(random() * 9);
      const stars = Array.from({ length: n }, () => "*").join(" ");
      return {
        task,
        item: `counting:${n}`,
        question: COUNT_FORMS[form % COUNT_FORMS.length]!(stars),
        answer: String(n),
        // counted one by one, then the total
        sentence: `Counting: ${Array.from({ length: n }, (_, i) => i + 1).join(", ")}. There ${n === 1 ? "is 1 star" : `are ${n} stars`}.`,
      };
    }
  }
}

export interface ChatMessageRecord {
  role: "system" | "user" | "assistant";
  content: string;
  /** An assistant reply in a persona's style carries its plain form too (see asChatted). */
  plain?: string;
}

export interface Conversation {
  id: string;
  /** The style every assistant turn uses. */
  style: Style;
  /** The system prompt, when there is one. */
  system?: string;
  messages: ChatMessageRecord[];
  /** Per user turn: the task, item and core answer (for evaluation). */
  turns: { task: TaskName; item: string; answer: string }[];
}

/** Which system prompt (if any) a conversation has and the style it asks for. */
function drawSetting(random: () => number): { style: Style; system?: string } {
  const r = random();
  if (r < 0.3) return { style: "plain" };
  if (r < 0.4) return { style: "plain", system: pickOf(random)(NEUTRAL_PROMPTS) };
  const persona: PersonaName = pickOf(random)(PERSONA_NAMES);
  return { style: persona, system: pickOf(random)(PERSONAS[persona].prompts) };
}

function conversationKey(system: string | undefined, question: Question): string {
  return `${system ?? "-"}|${question.question}`;
}

export interface SynthOptions {
  seed: number;
  /** Training conversations. */
  conversations: number;
  /** Held-out evaluation conversations per (task, setting) cell. */
  heldOutPerCell: number;
  /** Share of long (12–24 turn) conversations. */
  longShare: number;
}

export const DEFAULT_SYNTH: SynthOptions = {
  seed: 1,
  conversations: 60_000,
  heldOutPerCell: 25,
  longShare: 0.04,
};

export interface HeldOutItem {
  id: string;
  task: TaskName;
  /** "none" for no system prompt. */
  setting: Style | "none";
  system?: string;
  question: string;
  answer: string;
}

export interface Corpus {
  train: Conversation[];
  heldOut: HeldOutItem[];
  /** Knowledge sentences for pretraining. */
  pretrain: string[];
}

/**
 * Generate the corpus. Held-out single-turn items are drawn first; training conversations
 * never contain a held-out (system prompt, question) pair or a held-out arithmetic pair.
 */
export function synthesize(options: SynthOptions = DEFAULT_SYNTH): Corpus {
  const random = mulberry32(options.seed);
  const pick = pickOf(random);
  const pairs = arithmeticPairs(options.seed);
  const heldOut: HeldOutItem[] = [];
  const reserved = new Set<string>();

  const settings: Array<{ setting: Style | "none"; prompts: readonly (string | undefined)[] }> = [
    { setting: "none", prompts: [undefined] },
    ...PERSONA_NAMES.map((p) => ({ setting: p, prompts: PERSONAS[p].prompts })),
  ];
  for (const task of TASK_NAMES) {
    for (const { setting, prompts } of settings) {
      let made = 0;
      for (
        let attempt = 0;
        made < options.heldOutPerCell && attempt < options.heldOutPerCell * 50;
        attempt++
      ) {
        const question = drawQuestion(
          task,
          random,
          task === "arithmetic" ? pairs.heldOut : pairs.train,
        );
        const system = pick(prompts);
        const key = conversationKey(system, question);
        if (reserved.has(key)) continue;
        reserved.add(key);
        heldOut.push({
          id: `${task}-${setting}-${made}`,
          task,
          setting,
          ...(system !== undefined ? { system } : {}),
          question: question.question,
          answer: question.answer,
        });
        made++;
      }
    }
  }

  const train: Conversation[] = [];
  for (let c = 0; c < options.conversations; c++) {
    const { style, system } = drawSetting(random);
    const long = random() < options.longShare;
    const turnCount = long ? 12 + Math.floor(random() * 13) : 1 + Math.floor(random() * 4);
    const messages: ChatMessageRecord[] = system ? [{ role: "system", content: system }] : [];
    const turns: Conversation["turns"] = [];
    while (turns.length < turnCount) {
      const question = drawQuestion(drawTask(random), random, pairs.train);
      if (reserved.has(conversationKey(system, question))) continue;
      messages.push({ role: "user", content: question.question });
      messages.push({
        role: "assistant",
        content: styleReply(style, question.sentence),
        // the reply without the system prompt: what a long chat gets once it scrolls out
        ...(style !== "plain" ? { plain: question.sentence } : {}),
      });
      turns.push({ task: question.task, item: question.item, answer: question.answer });
    }
    train.push({
      id: `c${c}`,
      style,
      ...(system !== undefined ? { system } : {}),
      messages,
      turns,
    });
  }

  const pretrain: string[] = [
    ...CAPITALS.map(([country, city]) => `The capital of ${country} is ${city}.`),
    ...ANTONYMS.map(([a, b]) => `The opposite of ${a} is ${b}.`),
    ...WORDS.map(
      (w) => `${w} is spelled ${[...w].join("-")}. ${w} backwards is ${[...w].reverse().join("")}.`,
    ),
    ...pairs.train.map(([a, b, op]) => workedArithmetic(a, b, op)),
  ];
  return { train, heldOut, pretrain };
}
