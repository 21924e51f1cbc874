/**
 * Learning merges from text.
 *
 * 1. Split every text into pieces (never across special tokens) and count distinct pieces.
 * 2. Hold each distinct piece once, as ids, with its count; count every adjacent pair, and
 *    index which pieces contain which pair.
 * 3. Repeatedly merge the most frequent pair (ties: smaller left id, then smaller right id),
 *    updating only the pieces that contain it. A max-heap holds candidate pairs; entries whose
 *    count changed are refreshed lazily when they reach the top.
 *
 * Memory is linear in the number of distinct pieces and their lengths, never in the square
 * of the vocabulary: tens of megabytes of text train in a few hundred megabytes.
 */

import { CHAT_TOKENS, FORGE_CHAT_TEMPLATE } from "./chat.js";
import { TokenizerError } from "./errors.js";
import { makeSplitter, type PatternName, resolvePattern } from "./pretokenize.js";
import { Tokenizer } from "./tokenizer.js";

export interface TrainProgress {
  phase: "count" | "merge";
  /** Texts read (count) or merges learned (merge). */
  done: number;
  /** Merges to learn (merge phase); undefined while counting an iterable of unknown length. */
  total?: number;
}

export interface TrainOptions {
  /** Total ids: 256 bytes + merges + special tokens. */
  vocabSize: number;
  /**
   * Special tokens beyond the chat set. Ids: the chat set `<|sys|>`, `<|usr|>`, `<|asst|>`,
   * `<|eot|>` first, then these in order, immediately after the last merge.
   */
  specialTokens?: readonly string[];
  /** Pre-tokenizer pattern: "gpt2" (default), "gpt4" or a regex source. */
  pattern?: PatternName | string;
  /** Stop when the most frequent pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  /** Called as counting and merging advance (at most every 1% of merges). */
  onProgress?: (progress: TrainProgress) => void;
}

interface Word {
  ids: Int32Array;
  length: number;
  count: number;
}

/** A max-heap of pair keys ordered by (count desc, key asc). */
class PairHeap {
  private keys: number[] = [];
  private counts: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    [this.keys[i], this.keys[j]] = [this.keys[j]!, this.keys[i]!];
    [this.counts[i], this.counts[j]] = [this.counts[j]!, this.counts[i]!];
  }

  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): [key: number, count: number] {
    const top: [number, number] = [this.keys[0]!, this.counts[0]!];
    const lastKey = this.keys.pop()!;
    const lastCount = this.counts.pop()!;
    if (this.keys.length > 0) {
      this.keys[0] = lastKey;
      this.counts[0] = lastCount;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.keys.length && this.above(l, best)) best = l;
        if (r < this.keys.length && this.above(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

const SHIFT = 2 ** 21;

/** Learn a byte-level BPE tokenizer from texts. */
export function train(texts: Iterable<string>, options: TrainOptions): Tokenizer {
  const specials = [...Object.values(CHAT_TOKENS), ...(options.specialTokens ?? [])];
  const duplicate = specials.find((token, i) => specials.indexOf(token) !== i);
  if (duplicate !== undefined) {
    throw new TokenizerError(
      "E_INPUT",
      `specialTokens: ${JSON.stringify(duplicate)} is listed twice (the chat tokens are always included)`,
    );
  }
  if (specials.some((token) => token.length === 0)) {
    throw new TokenizerError("E_INPUT", "specialTokens: a special token is empty");
  }
  const minimum = 256 + specials.length;
  if (!Number.isInteger(options.vocabSize) || options.vocabSize < minimum) {
    throw new TokenizerError(
      "E_INPUT",
      `vocabSize ${options.vocabSize} is too small: it must be an integer ≥ ${minimum} (256 bytes + ${specials.length} special tokens)`,
    );
  }
  const minFrequency = options.minFrequency ?? 2;
  if (!Number.isInteger(minFrequency) || minFrequency < 1) {
    throw new TokenizerError("E_INPUT", `minFrequency must be an integer ≥ 1; got ${minFrequency}`);
  }
  const pattern = resolvePattern(options.pattern);
  let split: ReturnType<typeof makeSplitter>;
  try {
    split = makeSplitter(pattern);
  } catch (error) {
    throw new TokenizerError(
      "E_INPUT",
      `pattern is not a valid regular expression: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const onProgress = options.onProgress;
  const targetMerges = options.vocabSize - minimum;

  // 1. distinct pieces and their counts
  const pieceCounts = new Map<string, number>();
  const specialSplit = new RegExp(
    specials.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"),
    "g",
  );
  let textsRead = 0;
  let sawText = false;
  for (const text of texts) {
    if (typeof text !== "string") {
      throw new TokenizerError(
        "E_INPUT",
        `texts[${textsRead}] is ${typeof text}; every text must be a string`,
      );
    }
    if (text.length > 0) sawText = true;
    let start = 0;
    const count = (s: number, e: number) => {
      const piece = text.slice(s, e);
      pieceCounts.set(piece, (pieceCounts.get(piece) ?? 0) + 1);
    };
    specialSplit.lastIndex = 0;
    for (let m = specialSplit.exec(text); m !== null; m = specialSplit.exec(text)) {
      split(text, start, m.index, count);
      start = m.index + m[0].length;
    }
    split(text, start, text.length, count);
    textsRead++;
    if (onProgress && textsRead % 1000 === 0) onProgress({ phase: "count", done: textsRead });
  }
  if (!sawText) {
    throw new TokenizerError(
      "E_INPUT",
      "the training corpus is empty: give at least one non-empty text",
    );
  }
  onProgress?.({ phase: "count", done: textsRead });

  // 2. words as ids; pair counts; pair → words index
  const encoder = new TextEncoder();
  const words: Word[] = [];
  for (const [piece, count] of pieceCounts) {
    const bytes = encoder.encode(piece);
    words.push({ ids: Int32Array.from(bytes), length: bytes.length, count });
  }
  pieceCounts.clear();
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  words.forEach((word, w) => {
    const { ids, length, count } = word;
    for (let i = 0; i < length - 1; i++) {
      const key = ids[i]! * SHIFT + ids[i + 1]!;
      pairCount.set(key, (pairCount.get(key) ?? 0) + count);
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  });
  const heap = new PairHeap();
  for (const [key, count] of pairCount) heap.push(key, count);

  // 3. merges
  const tokens: Uint8Array[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
  const merges: [number, number][] = [];
  const progressEvery = Math.max(1, Math.floor(targetMerges / 100));
  const bump = (key: number, delta: number, w: number) => {
    const next = (pairCount.get(key) ?? 0) + delta;
    pairCount.set(key, next);
    if (delta > 0) {
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  };
  while (merges.length < targetMerges && heap.size > 0) {
    const [key, stale] = heap.pop();
    const count = pairCount.get(key) ?? 0;
    if (count !== stale) {
      if (count > 0) heap.push(key, count);
      continue;
    }
    if (count < minFrequency) break;
    const left = Math.floor(key / SHIFT);
    const right = key - left * SHIFT;
    const merged = 256 + merges.length;
    merges.push([left, right]);
    const a = tokens[left]!;
    const b = tokens[right]!;
    const bytes = new Uint8Array(a.length + b.length);
    bytes.set(a);
    bytes.set(b, a.length);
    tokens.push(bytes);

    const touched = new Set<number>();
    for (const w of pairWords.get(key) ?? []) {
      const word = words[w]!;
      const ids = word.ids;
      const c = word.count;
      let out = 0;
      for (let i = 0; i < word.length; ) {
        if (i < word.length - 1 && ids[i] === left && ids[i + 1] === right) {
          if (out > 0) {
            const prev = ids[out - 1]!;
            bump(prev * SHIFT + left, -c, w);
            bump(prev * SHIFT + merged, c, w);
            touched.add(prev * SHIFT + merged);
          }
          if (i + 2 < word.length) {
            // (when the next symbols start another occurrence, the next iteration takes
            // (merged, left) back out as its (prev, left))
            const nextId = ids[i + 2]!;
            bump(right * SHIFT + nextId, -c, w);
            bump(merged * SHIFT + nextId, c, w);
            touched.add(merged * SHIFT + nextId);
          }
          bump(key, -c, w);
          ids[out++] = merged;
          i += 2;
        } else {
          ids[out++] = ids[i++]!;
        }
      }
      word.length = out;
    }
    pairWords.delete(key);
    pairCount.delete(key);
    for (const t of touched) {
      const count = pairCount.get(t)!;
      if (count > 0) heap.push(t, count);
    }
    if (onProgress && merges.length % progressEvery === 0) {
      onProgress({ phase: "merge", done: merges.length, total: targetMerges });
    }
  }
  onProgress?.({ phase: "merge", done: merges.length, total: targetMerges });

  const specialTokens = new Map(specials.map((token, i) => [token, tokens.length + i]));
  return new Tokenizer({
    tokens,
    merges,
    specialTokens,
    pattern,
    chatTemplate: FORGE_CHAT_TEMPLATE,
    templateVariables: { eos_token: CHAT_TOKENS.endOfTurn },
    source: "trained tokenizer",
  });
}
