/**
 * The thinking corpus: deterministic under its seed, the configured share of answers thinking
 * first (worked steps between the thought markers, then the same short answer), held-out
 * operand pairs never in training, and held-out items that @forge/eval reads as GSM8K.
 */
import { gsm8kFinalAnswer, parseGsm8k } from "@forge/eval";
import { THOUGHT_TOKENS } from "@forge/tokenizer";
import { describe, expect, it } from "vitest";
import { directAnswer, synthesizeThinking, thinkingAnswer, workedSteps } from "./thinking.js";

describe("the thinking corpus", () => {
  const options = { seed: 1, conversations: 2_000, thoughtShare: 0.3 };
  const corpus = synthesizeThinking(options);

  it("is deterministic and thinks first in about the configured share of answers", () => {
    expect(synthesizeThinking(options)).toEqual(corpus);
    expect(corpus.train).toHaveLength(2_000);
    const thinking = corpus.train.filter((c) =>
      c.messages[1]!.content.startsWith(THOUGHT_TOKENS.start),
    ).length;
    expect(thinking / 2_000).toBeGreaterThan(0.26);
    expect(thinking / 2_000).toBeLessThan(0.34);
  });

  it("writes a thought as the worked steps, then the same short answer", () => {
    expect(workedSteps(23, 49, "+")).toBe("20 + 40 = 60, 3 + 9 = 12, 60 + 12 = 72");
    expect(directAnswer(23, 49, "+")).toBe("23 + 49 = 72.");
    expect(thinkingAnswer(23, 49, "+")).toBe(
      `${THOUGHT_TOKENS.start}20 + 40 = 60, 3 + 9 = 12, 60 + 12 = 72${THOUGHT_TOKENS.end}23 + 49 = 72.`,
    );
    for (const c of corpus.train.slice(0, 200)) {
      const [, a, op, b] = /^arithmetic:(\d+)([+-])(\d+)$/.exec(c.turns[0]!.item)!;
      const args = [Number(a), Number(b), op as "+" | "-"] as const;
      expect([
        directAnswer(args[0], args[1], args[2]),
        thinkingAnswer(args[0], args[1], args[2]),
      ]).toContain(c.messages[1]!.content);
    }
  });

  it("holds out operand pairs, given as GSM8K items with the right final answer", () => {
    const trained = new Set(corpus.train.map((c) => c.turns[0]!.item));
    const task = parseGsm8k(
      corpus.heldOut.map((item) => JSON.stringify(item)).join("\n"),
      "heldout.jsonl",
    );
    expect(task.items.length).toBe(corpus.heldOut.length);
    for (const item of corpus.heldOut) {
      const match = /(\d+) ([+-]) (\d+)/.exec(item.question)!;
      const [a, op, b] = [Number(match[1]), match[2], Number(match[3])];
      expect(gsm8kFinalAnswer(item.answer)).toBe(op === "+" ? a + b : a - b);
      expect(trained.has(`arithmetic:${a}${op}${b}`)).toBe(false);
    }
  });
});
