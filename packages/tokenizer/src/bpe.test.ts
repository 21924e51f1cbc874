import { mulberry32 as seededRandom } from "@forge/core";
import { describe, expect, it } from "vitest";
import { BytePairEncoder } from "./bpe.js";
import { train } from "./train.js";

describe("BytePairEncoder", () => {
  it("the heap merge (long pieces) equals the quadratic scan on 200 random byte strings", () => {
    const random = seededRandom(5);
    const alphabet = "abcab aab abc";
    const corpus = Array.from({ length: 2000 }, () =>
      Array.from({ length: 40 }, () => alphabet[Math.floor(random() * alphabet.length)]).join(""),
    );
    const tokenizer = train(corpus, { vocabSize: 400, pattern: "" });
    const merges = tokenizer.merges.map(([l, r], rank) => [l, r, 256 + rank] as const);
    const heap = new BytePairEncoder(merges, tokenizer.byteIds, 0);
    const scan = new BytePairEncoder(merges, tokenizer.byteIds, Number.POSITIVE_INFINITY);
    for (let i = 0; i < 200; i++) {
      const length = 1 + Math.floor(random() * 300);
      const bytes = Uint8Array.from({ length }, () =>
        alphabet.charCodeAt(Math.floor(random() * alphabet.length)),
      );
      const a: number[] = [];
      const b: number[] = [];
      heap.encode(bytes, length, a);
      scan.encode(bytes, length, b);
      expect(a).toEqual(b);
      expect(a.length).toBeLessThanOrEqual(length);
    }
  });
});
