import { describe, expect, it } from "vitest";
import { CHAT_TOKENS } from "./chat.js";
import { TokenizerError } from "./errors.js";
import { mixedText } from "./mixed-text.js";
import { pretokenize } from "./pretokenize.js";
import { type TrainProgress, train } from "./train.js";

/** The textbook algorithm: recount every pair after every merge. Slow, obviously right. */
function referenceMerges(texts: string[], merges: number, minFrequency = 2): [number, number][] {
  const words = texts
    .flatMap((t) => pretokenize(t))
    .map((piece) => [...new TextEncoder().encode(piece)]);
  const result: [number, number][] = [];
  for (let m = 0; m < merges; m++) {
    const counts = new Map<string, number>();
    for (const word of words) {
      for (let i = 0; i < word.length - 1; i++) {
        const key = `${word[i]},${word[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    let best: [number, number] | undefined;
    let bestCount = 0;
    for (const [key, count] of counts) {
      const [a, b] = key.split(",").map(Number) as [number, number];
      if (
        count > bestCount ||
        (count === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))
      ) {
        best = [a, b];
        bestCount = count;
      }
    }
    if (!best || bestCount < minFrequency) break;
    const id = 256 + result.length;
    result.push(best);
    for (const word of words) {
      for (let i = 0; i < word.length - 1; i++) {
        if (word[i] === best[0] && word[i + 1] === best[1]) word.splice(i, 2, id);
      }
    }
  }
  return result;
}

describe("train", () => {
  it("learns exactly the merges of the textbook algorithm (counts, ties by smaller pair)", () => {
    const texts = [mixedText(20_000, 9), "aaaa aaaa abab abab ab ab", "the the the then there"];
    const tokenizer = train(texts, { vocabSize: 256 + 150 + 4 });
    expect(tokenizer.merges.map(([a, b]) => [a, b])).toEqual(referenceMerges(texts, 150));
  });

  it("gives the chat tokens, then the caller's, fixed ids right after the last merge", () => {
    const tokenizer = train([mixedText(20_000, 2)], { vocabSize: 300, specialTokens: ["<|pad|>"] });
    const merges = 300 - 256 - 5;
    expect(tokenizer.merges.length).toBe(merges);
    expect([...tokenizer.specialTokens]).toEqual([
      [CHAT_TOKENS.system, 256 + merges],
      [CHAT_TOKENS.user, 257 + merges],
      [CHAT_TOKENS.assistant, 258 + merges],
      [CHAT_TOKENS.endOfTurn, 259 + merges],
      ["<|pad|>", 260 + merges],
    ]);
    expect(tokenizer.vocabSize).toBe(300);
  });

  it("never merges across special tokens in the training text", () => {
    const tokenizer = train(["ab<|eot|>ab<|eot|>ab<|eot|>"], { vocabSize: 270 });
    for (let id = 256; id < 256 + tokenizer.merges.length; id++) {
      expect(tokenizer.decode([id])).not.toMatch(/[<|>]/);
    }
  });

  it("stops early at minFrequency", () => {
    const tokenizer = train(["abcd abcd xyz"], { vocabSize: 1000, minFrequency: 2 });
    expect(tokenizer.merges.length).toBe(referenceMerges(["abcd abcd xyz"], 1000).length);
    expect(tokenizer.merges.length).toBeLessThan(10);
  });

  it("reports progress for counting and merging", () => {
    const events: TrainProgress[] = [];
    train([mixedText(50_000, 4)], { vocabSize: 556, onProgress: (p) => events.push(p) });
    expect(events[0]).toMatchObject({ phase: "count", done: 1 });
    expect(events.at(-1)).toEqual({ phase: "merge", done: 296, total: 296 });
    expect(events.filter((e) => e.phase === "merge").length).toBeGreaterThan(50);
  });

  it("accepts any iterable of strings, consumed once", () => {
    function* texts() {
      yield "hello world";
      yield "hello there";
    }
    expect(train(texts(), { vocabSize: 262 }).merges.length).toBe(2);
  });

  it("refuses a vocabulary smaller than 256 bytes + special tokens", () => {
    expect(() => train(["abc"], { vocabSize: 259 })).toThrow(
      "vocabSize 259 is too small: it must be an integer ≥ 260 (256 bytes + 4 special tokens)",
    );
    expect(() => train(["abc"], { vocabSize: 261, specialTokens: ["<|a|>", "<|b|>"] })).toThrow(
      /≥ 262/,
    );
  });

  it("refuses an empty corpus, non-string texts, duplicate specials and a bad pattern", () => {
    expect(() => train([], { vocabSize: 300 })).toThrow(
      "the training corpus is empty: give at least one non-empty text",
    );
    expect(() => train(["", ""], { vocabSize: 300 })).toThrow(TokenizerError);
    expect(() => train(["a", 5 as unknown as string], { vocabSize: 300 })).toThrow(
      "texts[1] is number; every text must be a string",
    );
    expect(() => train(["a"], { vocabSize: 300, specialTokens: ["<|eot|>"] })).toThrow(
      /listed twice/,
    );
    expect(() => train(["a"], { vocabSize: 300, pattern: "([" })).toThrow(
      /pattern is not a valid regular expression/,
    );
  });
});
