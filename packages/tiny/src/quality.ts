/**
 * forge-tiny's quality bars, measured on the held-out items of the corpus (greedy decoding):
 * - task accuracy ≥ 90% with and without a system prompt (see `isCorrect`);
 * - a persona's signature in ≥ 90% of replies when that persona is the system prompt;
 * - every persona's signature in ≤ 5% of replies with no system prompt.
 */
import { mulberry32 } from "@forge/core";
import { type GPT, generateReplies } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import {
  arithmeticPairs,
  DEFAULT_SYNTH,
  drawQuestion,
  type HeldOutItem,
  synthesize,
  TASK_NAMES,
  type TaskName,
} from "./corpus.js";
import { NEUTRAL_PROMPTS, PERSONA_NAMES, PERSONAS, type PersonaName } from "./personas.js";

export interface QualityRow {
  setting: string;
  items: number;
  accuracy: number;
  /** For a persona setting: its own signature rate. For "none": the highest persona rate. */
  signatureRate: number;
  byTask: Record<string, number>;
}

export interface QualityReport {
  rows: QualityRow[];
  bars: { name: string; value: number; threshold: number; direction: ">=" | "<="; pass: boolean }[];
  pass: boolean;
}

export function heldOutItems(seed = DEFAULT_SYNTH.seed): HeldOutItem[] {
  return synthesize({ ...DEFAULT_SYNTH, seed, conversations: 0 }).heldOut;
}

/**
 * Whether a reply answers correctly: for arithmetic and counting, whose worked replies hold
 * other numbers, the last number in the reply must be the answer; otherwise the answer must
 * appear in the reply (case-insensitive).
 */
export function isCorrect(task: TaskName, reply: string, answer: string): boolean {
  if (task === "arithmetic" || task === "counting") {
    const numbers = reply.match(/-?\d+/g);
    return numbers !== null && numbers.at(-1) === answer;
  }
  return reply.toLowerCase().includes(answer.toLowerCase());
}

/**
 * `count` distinct task questions from the training distribution, none of them among the
 * held-out items the task files score (setting "none"). Counting has only 36 distinct questions
 * (4 phrasings × 1–9 stars), so excluding the persona settings' held-out items as well would
 * leave none.
 */
export function trainingQuestions(seed: number, count: number): string[] {
  const random = mulberry32(seed * 7919 + 11);
  const questions = new Set<string>();
  const pairs = arithmeticPairs(DEFAULT_SYNTH.seed).train;
  const heldOut = new Set(
    heldOutItems()
      .filter((i) => i.setting === "none")
      .map((i) => i.question),
  );
  while (questions.size < count) {
    const task = TASK_NAMES[Math.floor(random() * TASK_NAMES.length)]!;
    const q = drawQuestion(task, random, pairs).question;
    if (!heldOut.has(q)) questions.add(q);
  }
  return [...questions];
}

/**
 * What forge-tiny's stimuli.jsonl holds: `count` training-distribution questions, and
 * `withSystem` more, each under one of the system prompts the model was trained on (a persona's
 * or a neutral one) — a bake's teacher answers those with that prompt instead of the baked one,
 * so the baked model keeps following a system prompt its user gives.
 */
export const STIMULI_FILE_QUESTIONS = { count: 512, withSystem: 256, seed: 1 } as const;

/** forge-tiny's `model/stimuli.jsonl`, one JSON record a line. */
export function stimuliJsonl(): string {
  const { count, withSystem, seed } = STIMULI_FILE_QUESTIONS;
  const plain = trainingQuestions(seed, count).map((question) => ({ question }));
  const prompts = [...PERSONA_NAMES.flatMap((p) => PERSONAS[p].prompts), ...NEUTRAL_PROMPTS];
  const random = mulberry32(seed * 104729 + 7);
  const prompted = trainingQuestions(seed + 1, withSystem).map((question) => ({
    messages: [
      { role: "system", content: prompts[Math.floor(random() * prompts.length)]! },
      { role: "user", content: question },
    ],
  }));
  return [...plain, ...prompted].map((record) => `${JSON.stringify(record)}\n`).join("");
}

export function measureQuality(
  model: GPT,
  tokenizer: Tokenizer,
  items: HeldOutItem[] = heldOutItems(),
): QualityReport {
  const conversations = items.map((item): ChatMessage[] => [
    ...(item.system ? [{ role: "system" as const, content: item.system }] : []),
    { role: "user", content: item.question },
  ]);
  const answers = generateReplies(model, tokenizer, conversations, {
    maxNewTokens: 64,
    temperature: 0,
  }).map((r) => r.text);
  const settings = ["none", ...PERSONA_NAMES] as const;
  const rows: QualityRow[] = settings.map((setting) => {
    const indices = items
      .map((item, i) => (item.setting === setting ? i : -1))
      .filter((i) => i >= 0);
    const correct = (i: number) => isCorrect(items[i]!.task, answers[i]!, items[i]!.answer);
    const byTask = Object.fromEntries(
      TASK_NAMES.map((task: TaskName) => {
        const taskItems = indices.filter((i) => items[i]!.task === task);
        return [task, taskItems.filter(correct).length / Math.max(1, taskItems.length)];
      }),
    );
    const signatureRate =
      setting === "none"
        ? Math.max(
            ...PERSONA_NAMES.map(
              (p) => indices.filter((i) => PERSONAS[p].check(answers[i]!)).length / indices.length,
            ),
          )
        : indices.filter((i) => PERSONAS[setting as PersonaName].check(answers[i]!)).length /
          indices.length;
    return {
      setting,
      items: indices.length,
      accuracy: indices.filter(correct).length / indices.length,
      signatureRate,
      byTask,
    };
  });
  const none = rows[0]!;
  const personaRows = rows.slice(1);
  const prompted =
    personaRows.reduce((a, r) => a + r.accuracy * r.items, 0) /
    personaRows.reduce((a, r) => a + r.items, 0);
  const bars: QualityReport["bars"] = [
    {
      name: "task accuracy, no system prompt",
      value: none.accuracy,
      threshold: 0.9,
      direction: ">=",
      pass: none.accuracy >= 0.9,
    },
    {
      name: "task accuracy, with a system prompt",
      value: prompted,
      threshold: 0.9,
      direction: ">=",
      pass: prompted >= 0.9,
    },
    ...personaRows.map((r) => ({
      name: `${r.setting} signature with its system prompt`,
      value: r.signatureRate,
      threshold: 0.9,
      direction: ">=" as const,
      pass: r.signatureRate >= 0.9,
    })),
    {
      name: "any persona signature with no system prompt",
      value: none.signatureRate,
      threshold: 0.05,
      direction: "<=",
      pass: none.signatureRate <= 0.05,
    },
  ];
  return { rows, bars, pass: bars.every((b) => b.pass) };
}

export function formatQuality(report: QualityReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(6);
  const lines = [
    `setting   items  accuracy  signature  ${TASK_NAMES.map((t) => t.slice(0, 9).padStart(9)).join(" ")}`,
    ...report.rows.map(
      (r) =>
        `${r.setting.padEnd(8)} ${String(r.items).padStart(6)}  ${pct(r.accuracy)}    ${pct(r.signatureRate)}   ${TASK_NAMES.map((t) => pct(r.byTask[t]!).padStart(9)).join(" ")}`,
    ),
    "",
    ...report.bars.map(
      (b) =>
        `${b.pass ? "pass" : "FAIL"}  ${b.name}: ${pct(b.value)} (${b.direction} ${pct(b.threshold).trim()})`,
    ),
  ];
  return lines.join("\n");
}
