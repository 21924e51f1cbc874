/**
 * Pre-tokenization: split text into pieces that BPE never merges across.
 *
 * GPT-2's pattern is implemented twice: as the regular expression (the definition) and as a
 * hand-written scanner over char codes (3–4× faster, no match objects). Tests hold the scanner
 * to the regex on every Unicode category. Other patterns run through the regex.
 */

/** GPT-2's split pattern (r50k, p50k), as published. */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/**
 * GPT-4's split pattern (cl100k), rewritten for JavaScript: the case-insensitive group
 * `(?i:…)` becomes explicit character classes and the possessive quantifiers `?+`/`++` become
 * greedy ones (JavaScript has neither; on this pattern the rewrite splits identically).
 */
export const GPT4_PATTERN = String.raw`'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`;

/**
 * GPT-2's pattern with every digit its own piece (` ?\p{N}` instead of ` ?\p{N}+`): numbers
 * tokenize digit by digit, so a small model can learn arithmetic rather than memorise it.
 */
export const GPT2_DIGITS_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/** A named pattern, or any regular expression source (compiled with the `gu` flags). */
export type PatternName = "gpt2" | "gpt4" | "gpt2-digits";

export function resolvePattern(pattern: PatternName | string | undefined): string {
  if (pattern === undefined || pattern === "gpt2") return GPT2_PATTERN;
  if (pattern === "gpt4") return GPT4_PATTERN;
  if (pattern === "gpt2-digits") return GPT2_DIGITS_PATTERN;
  return pattern;
}

/** Called with each piece as a half-open range of UTF-16 code units. */
export type PieceSink = (start: number, end: number) => void;

const OTHER = 0;
const LETTER = 1;
const NUMBER = 2;
const SPACE = 3;
const UNKNOWN = 255;

const letterRe = /^\p{L}$/u;
const numberRe = /^\p{N}$/u;
const spaceRe = /^\s$/u;

function classifyCodePoint(cp: number): number {
  const ch = String.fromCodePoint(cp);
  if (letterRe.test(ch)) return LETTER;
  if (numberRe.test(ch)) return NUMBER;
  if (spaceRe.test(ch)) return SPACE;
  return OTHER;
}

/** Class of every BMP code point, filled on first sight. Surrogates stay OTHER. */
const bmpClass = new Uint8Array(0x10000).fill(UNKNOWN);
for (let c = 0xd800; c <= 0xdfff; c++) bmpClass[c] = OTHER;
for (let c = 0; c < 0x80; c++) bmpClass[c] = classifyCodePoint(c);
const astralClass = new Map<number, number>();

function classAt(text: string, i: number, n: number): number {
  const c = text.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
    const d = text.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) {
      const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      let cls = astralClass.get(cp);
      if (cls === undefined) {
        cls = classifyCodePoint(cp);
        astralClass.set(cp, cls);
      }
      return cls;
    }
  }
  let cls = bmpClass[c]!;
  if (cls === UNKNOWN) {
    cls = classifyCodePoint(c);
    bmpClass[c] = cls;
  }
  return cls;
}

/** Width in code units of the code point at i (2 for a valid surrogate pair). */
function widthAt(text: string, i: number, n: number): number {
  const c = text.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
    const d = text.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return 2;
  }
  return 1;
}

/** End of the run of code points of class `cls` starting at i. */
function runEnd(text: string, i: number, n: number, cls: number): number {
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (bmpClass[c] !== cls) return i;
      i++;
    } else {
      if (classAt(text, i, n) !== cls) return i;
      i += widthAt(text, i, n);
    }
  }
  return i;
}

const APOSTROPHE = 39;
const SPACE_CHAR = 32;

/** Length of a GPT-2 contraction ('s 't 're 've 'm 'll 'd) at i, or 0. Case-sensitive. */
function contractionAt(text: string, i: number, n: number): number {
  if (i + 1 >= n) return 0;
  const a = text.charCodeAt(i + 1);
  if (a === 115 || a === 116 || a === 109 || a === 100) return 2; // s t m d
  if (i + 2 >= n) return 0;
  const b = text.charCodeAt(i + 2);
  if ((a === 108 && b === 108) || (a === 118 && b === 101) || (a === 114 && b === 101)) return 3; // ll ve re
  return 0;
}

/**
 * GPT-2's pattern as a scanner: `text[start, end)` is split exactly as
 * `GPT2_PATTERN` with the `gu` flags would split it.
 */
export function splitGpt2(text: string, start: number, end: number, sink: PieceSink): void {
  const n = end;
  let i = start;
  while (i < n) {
    const c = text.charCodeAt(i);
    let j: number;
    if (c === APOSTROPHE && contractionAt(text, i, n) > 0) {
      j = i + contractionAt(text, i, n);
    } else {
      const cls = c < 0x80 ? bmpClass[c]! : classAt(text, i, n);
      if (c === SPACE_CHAR && i + 1 < n) {
        const next = classAt(text, i + 1, n);
        if (next !== SPACE) {
          j = runEnd(text, i + 1 + widthAt(text, i + 1, n), n, next);
          sink(i, j);
          i = j;
          continue;
        }
      }
      if (cls !== SPACE) {
        j = runEnd(text, i + widthAt(text, i, n), n, cls);
      } else {
        // \s+(?!\S) then \s+: a whitespace run gives up its last character to a following
        // non-space, unless that would leave nothing.
        const runStop = runEnd(text, i + 1, n, SPACE);
        j = runStop === n || runStop - i < 2 ? runStop : runStop - 1;
      }
    }
    sink(i, j);
    i = j;
  }
}

/** Split with a regular expression: every match is a piece, unmatched text is dropped. */
export function splitRegex(
  regex: RegExp,
  text: string,
  start: number,
  end: number,
  sink: PieceSink,
): void {
  const segment = start === 0 && end === text.length ? text : text.slice(start, end);
  regex.lastIndex = 0;
  for (let m = regex.exec(segment); m !== null; m = regex.exec(segment)) {
    if (m[0].length === 0) {
      regex.lastIndex++;
      continue;
    }
    sink(start + m.index, start + m.index + m[0].length);
  }
}

/** A splitter bound to a pattern. */
export type Splitter = (text: string, start: number, end: number, sink: PieceSink) => void;

/** An empty pattern means no splitting: the whole text is one piece. */
export function makeSplitter(pattern: string): Splitter {
  if (pattern === GPT2_PATTERN) return splitGpt2;
  if (pattern === "") {
    return (_text, start, end, sink) => {
      if (end > start) sink(start, end);
    };
  }
  const regex = new RegExp(pattern, "gu");
  return (text, start, end, sink) => splitRegex(regex, text, start, end, sink);
}

/** The pieces of `text` as strings (for inspection and tests). */
export function pretokenize(text: string, pattern: PatternName | string = "gpt2"): string[] {
  const pieces: string[] = [];
  makeSplitter(resolvePattern(pattern))(text, 0, text.length, (s, e) =>
    pieces.push(text.slice(s, e)),
  );
  return pieces;
}
