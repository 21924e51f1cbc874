/**
 * The thinking corpus: a chat corpus for a small model that can think, but does not by habit —
 * the setting in which Quiet-STaR's question (does thinking help, and can the habit be baked
 * in?) has an honest answer on a model of forge-tiny's size.
 *
 * Every conversation asks one two-digit addition or subtraction (forge-tiny's phrasings). Most
 * answers state the result directly ("23 + 49 = 72."), which a model this small cannot compute
 * in one step: forge-tiny's first version, trained on direct answers, was right 0–12% of the
 * time. The rest think first: the worked steps forge-tiny learned (tens, units, combined) sit
 * between the thought markers, then the same short answer follows:
 *
 *   <|startofthought|>20 + 40 = 60, 3 + 9 = 12, 60 + 12 = 72<|endofthought|>23 + 49 = 72.
 *
 * With thoughts the minority (`thoughtShare`, default 30%), the trained model answers directly
 * when left alone and works the sum out when a thought is started for it. 10% of the operand
 * pairs are held out (the same split as forge-tiny's): they never appear in training, and are
 * the evaluation items, written in GSM8K's format (`question`, `answer` ending `#### <number>`).
 */
import { mulberry32 } from "@forge/core";
import { THOUGHT_TOKENS } from "@forge/tokenizer";
import { arithmeticPairs, type Conversation, drawQuestion, workedArithmetic } from "./corpus.js";

export interface ThinkingSynthOptions {
  seed: number;
  /** Training conversations (one question and its answer each). */
  conversations: number;
  /** Share of training answers that think first. */
  thoughtShare: number;
}

export const DEFAULT_THINKING_SYNTH: ThinkingSynthOptions = {
  seed: 1,
  conversations: 40_000,
  thoughtShare: 0.3,
};

/** An evaluation item in GSM8K's format: the answer's working, then `#### <number>`. */
export interface Gsm8kItem {
  question: string;
  answer: string;
}

export interface ThinkingCorpus {
  train: Conversation[];
  /** Every held-out operand pair once, in a seeded order. */
  heldOut: Gsm8kItem[];
  /** Worked sums of the training pairs, for pretraining. */
  pretrain: string[];
}

/** The worked steps of a sum, without its conclusion: "20 + 40 = 60, 3 + 9 = 12, 60 + 12 = 72". */
export function workedSteps(a: number, b: number, op: "+" | "-"): string {
  const worked = workedArithmetic(a, b, op);
  return worked.slice(0, worked.indexOf(", so "));
}

/** The short answer: "23 + 49 = 72." */
export function directAnswer(a: number, b: number, op: "+" | "-"): string {
  return `${a} ${op} ${b} = ${op === "+" ? a + b : a - b}.`;
}

/** The answer that thinks first: the worked steps in a thought, then the short answer. */
export function thinkingAnswer(a: number, b: number, op: "+" | "-"): string {
  return `${THOUGHT_TOKENS.start}${workedSteps(a, b, op)}${THOUGHT_TOKENS.end}${directAnswer(a, b, op)}`;
}

/** Generate the thinking corpus (deterministic under `seed`). */
export function synthesizeThinking(
  options: ThinkingSynthOptions = DEFAULT_THINKING_SYNTH,
): ThinkingCorpus {
  const random = mulberry32(options.seed ^ 0x7417);
  const pairs = arithmeticPairs(options.seed);
  const train: Conversation[] = [];
  for (let c = 0; c < options.conversations; c++) {
    const question = drawQuestion("arithmetic", random, pairs.train);
    const [a, op, b] = parse(question.item);
    const think = random() < options.thoughtShare;
    train.push({
      id: `t${c}`,
      style: "plain",
      messages: [
        { role: "user", content: question.question },
        { role: "assistant", content: think ? thinkingAnswer(a, b, op) : directAnswer(a, b, op) },
      ],
      turns: [{ task: "arithmetic", item: question.item, answer: question.answer }],
    });
  }
  const order = mulberry32(options.seed ^ 0x4e1d);
  const heldOut = pairs.heldOut
    .map((pair) => ({ pair, key: order() }))
    .sort((x, y) => x.key - y.key)
    .map(({ pair: [a, b, op] }) => {
      const question = drawQuestion("arithmetic", random, [[a, b, op]]);
      return {
        question: question.question,
        answer: `${workedSteps(a, b, op)}\n#### ${question.answer}`,
      };
    });
  const pretrain = pairs.train.map(([a, b, op]) => workedArithmetic(a, b, op));
  return { train, heldOut, pretrain };
}

/** "arithmetic:23+49" → [23, "+", 49]. */
function parse(item: string): [number, "+" | "-", number] {
  const match = /^arithmetic:(\d+)([+-])(\d+)$/.exec(item);
  if (!match) throw new Error(`not an arithmetic item: ${item}`);
  return [Number(match[1]), match[2] as "+" | "-", Number(match[3])];
}
