import { describe, expect, it } from "vitest";
import { arithmeticPairs, DEFAULT_SYNTH, synthesize, workedArithmetic } from "./corpus.js";
import { PERSONA_NAMES, PERSONAS, styleReply } from "./personas.js";
import { isCorrect } from "./quality.js";

const small = { ...DEFAULT_SYNTH, conversations: 3000, heldOutPerCell: 10 };

describe("forge-tiny corpus", () => {
  it("is deterministic under a seed and changes with it", () => {
    expect(JSON.stringify(synthesize(small))).toBe(JSON.stringify(synthesize(small)));
    expect(JSON.stringify(synthesize({ ...small, seed: 2 }).train.slice(0, 5))).not.toBe(
      JSON.stringify(synthesize(small).train.slice(0, 5)),
    );
  });

  it("never trains on a held-out conversation or a held-out arithmetic pair", () => {
    const corpus = synthesize(small);
    const heldOut = new Set(corpus.heldOut.map((item) => `${item.system ?? "-"}|${item.question}`));
    const pairs = arithmeticPairs(small.seed);
    const heldPairs = new Set(pairs.heldOut.map(([a, b, op]) => `arithmetic:${a}${op}${b}`));
    for (const conversation of corpus.train) {
      const users = conversation.messages.filter((m) => m.role === "user");
      for (const [i, user] of users.entries()) {
        expect(heldOut.has(`${conversation.system ?? "-"}|${user.content}`)).toBe(false);
        expect(heldPairs.has(conversation.turns[i]!.item)).toBe(false);
      }
    }
    expect(pairs.heldOut.length / (pairs.heldOut.length + pairs.train.length)).toBeCloseTo(0.1, 1);
  });

  it("every assistant reply carries its persona's signature, and plain replies carry none", () => {
    const corpus = synthesize(small);
    for (const conversation of corpus.train) {
      for (const message of conversation.messages.filter((m) => m.role === "assistant")) {
        for (const persona of PERSONA_NAMES) {
          expect(PERSONAS[persona].check(message.content), `${persona}: ${message.content}`).toBe(
            conversation.style === persona,
          );
        }
      }
    }
  });

  it("covers every task, persona and the no-system setting, with long conversations", () => {
    const corpus = synthesize(small);
    expect(new Set(corpus.heldOut.map((i) => i.setting))).toEqual(
      new Set(["none", ...PERSONA_NAMES]),
    );
    expect(new Set(corpus.train.flatMap((c) => c.turns.map((t) => t.task))).size).toBe(6);
    expect(corpus.train.some((c) => c.turns.length >= 12)).toBe(true);
    expect(styleReply("pirate", "The capital of France is Paris.")).toBe(
      "Arr, the capital of France be Paris, matey!",
    );
    expect(styleReply("robot", "The capital of France is Paris.")).toBe(
      "BEEP BOOP. The capital of France is Paris. END OF LINE.",
    );
  });

  it("worked arithmetic: every step holds and the last number is the result, in every style", () => {
    const { train, heldOut } = arithmeticPairs(small.seed);
    for (const [a, b, op] of [...train, ...heldOut]) {
      const worked = workedArithmetic(a, b, op);
      for (const step of worked.matchAll(/(-?\d+) ([+-]) (\d+) = (-?\d+)/g)) {
        const [x, o, y, z] = [Number(step[1]), step[2], Number(step[3]), Number(step[4])];
        expect(o === "+" ? x + y : x - y, worked).toBe(z);
      }
      const answer = String(op === "+" ? a + b : a - b);
      for (const style of ["plain", ...PERSONA_NAMES] as const)
        expect(isCorrect("arithmetic", styleReply(style, worked), answer)).toBe(true);
      expect(isCorrect("arithmetic", worked.replace(/= -?\d+\.$/, "= 1000."), answer)).toBe(false);
    }
    expect(workedArithmetic(52, 27, "-")).toBe(
      "50 - 20 = 30, 2 - 7 = -5, 30 - 5 = 25, so 52 - 27 = 25.",
    );
  });
});
