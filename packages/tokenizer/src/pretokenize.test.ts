import { mulberry32 as seededRandom } from "@forge/core";
import { describe, expect, it } from "vitest";
import { mixedText } from "./mixed-text.js";
import { GPT2_PATTERN, GPT4_PATTERN, pretokenize, splitGpt2, splitRegex } from "./pretokenize.js";

function scanner(text: string): string[] {
  const pieces: string[] = [];
  splitGpt2(text, 0, text.length, (s, e) => pieces.push(text.slice(s, e)));
  return pieces;
}

function regex(text: string): string[] {
  const pieces: string[] = [];
  splitRegex(new RegExp(GPT2_PATTERN, "gu"), text, 0, text.length, (s, e) =>
    pieces.push(text.slice(s, e)),
  );
  return pieces;
}

/** Random strings over an alphabet chosen to hit every branch of the GPT-2 pattern. */
function fuzz(seed: number, length: number): string {
  const random = seededRandom(seed);
  const alphabet = [
    ..."aZé漢ßΩж",
    ..."09٣४Ⅻ½",
    ..." \t\n\r\u00a0\u2003\u3000\ufeff\u200b",
    ..."'\"!?.,-_@#",
    "'s",
    "'ll",
    "'ve",
    "'re",
    "'d",
    "'m",
    "'t",
    "'S",
    "\u0301",
    "😀",
    "👍🏽",
    "\ud800",
    "\udfff",
    "  ",
    "   ",
  ];
  let out = "";
  while (out.length < length) out += alphabet[Math.floor(random() * alphabet.length)];
  return out;
}

describe("GPT-2 pre-tokenizer", () => {
  it("splits the classic examples as GPT-2 does", () => {
    expect(pretokenize("Hello world")).toEqual(["Hello", " world"]);
    expect(pretokenize("I'm here, aren't you?")).toEqual([
      "I",
      "'m",
      " here",
      ",",
      " aren",
      "'t",
      " you",
      "?",
    ]);
    expect(pretokenize("a   b\n\nc")).toEqual(["a", "  ", " b", "\n", "\n", "c"]);
    expect(pretokenize("x = 42;  ")).toEqual(["x", " =", " 42", ";", "  "]);
  });

  it("the scanner equals the regex on mixed Unicode text", () => {
    const text = mixedText(200_000, 7);
    expect(scanner(text)).toEqual(regex(text));
  });

  it("the scanner equals the regex on 300 random strings over every character class", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const text = fuzz(seed, 1 + (seed % 60));
      expect(scanner(text), JSON.stringify(text)).toEqual(regex(text));
    }
  });

  it("handles empty text, lone surrogates and text ending in whitespace", () => {
    expect(scanner("")).toEqual([]);
    for (const text of ["\ud800", "a\udc00b", " \ud83d", "end   ", "\n", " "]) {
      expect(scanner(text), JSON.stringify(text)).toEqual(regex(text));
    }
  });
});

describe("GPT-2 pattern with single digits", () => {
  it("splits numbers digit by digit and keeps the leading space on the first", () => {
    expect(pretokenize("x = 1234 and 56", "gpt2-digits")).toEqual([
      "x",
      " =",
      " 1",
      "2",
      "3",
      "4",
      " and",
      " 5",
      "6",
    ]);
  });
});

describe("GPT-4 pattern (rewritten for JavaScript)", () => {
  it("compiles and splits numbers in groups of three and contractions case-insensitively", () => {
    expect(pretokenize("1234567", GPT4_PATTERN)).toEqual(["123", "456", "7"]);
    expect(pretokenize("I'M DON'T", "gpt4")).toEqual(["I", "'M", " DON", "'T"]);
    expect(pretokenize("hello\n\nworld", "gpt4")).toEqual(["hello", "\n\n", "world"]);
  });
});
