/**
 * Trace quality: how good a reply's thinking looks, on its own terms, in [0, 1]. Three factors
 * multiply:
 *
 * - closure: 1 when every thought was closed by the model's own end token, 0.5 when the length
 *   limit had to close one (it rambled);
 * - non-repetition: 1 − the share of the thoughts' token trigrams that repeat an earlier one;
 * - grounding: 1 when the expected answer appears in a thought (for a number: one of the
 *   thoughts' numbers equals it), 0.5 when it does not (the answer did not come from the
 *   thinking).
 *
 * A trace without thoughts has quality 0: there is nothing to bake.
 */
import { extractNumber } from "@forge/eval";
import type { Trace } from "./thoughts.js";

export interface TraceQuality {
  quality: number;
  thoughts: number;
  /** Thought tokens, all thoughts together. */
  length: number;
  /** Share of repeated trigrams in the thoughts (0: none). */
  repetition: number;
  /** Every thought closed by the model itself. */
  closed: boolean;
  /** The expected answer appears in a thought. */
  grounded: boolean;
}

/** Share of token trigrams in `ids` that repeat an earlier trigram. */
export function repetition(ids: readonly number[]): number {
  if (ids.length < 4) return 0;
  const seen = new Set<string>();
  let repeated = 0;
  for (let i = 0; i + 3 <= ids.length; i++) {
    const key = `${ids[i]},${ids[i + 1]},${ids[i + 2]}`;
    if (seen.has(key)) repeated++;
    else seen.add(key);
  }
  return repeated / (ids.length - 2);
}

/** Numbers in a text, in order. */
function numbersIn(text: string): number[] {
  const out: number[] = [];
  for (const match of text.matchAll(/-?\d[\d,]*(?:\.\d+)?/g)) {
    const value = extractNumber(match[0]);
    if (value !== undefined) out.push(value);
  }
  return out;
}

/** The quality of `trace`, given the answer it should reach (a number or a text). */
export function traceQuality(trace: Trace, expected: string): TraceQuality {
  const thoughtIds = trace.thoughts.flatMap((t) => t.ids);
  if (trace.thoughts.length === 0)
    return { quality: 0, thoughts: 0, length: 0, repetition: 0, closed: true, grounded: false };
  const text = trace.thoughts.map((t) => t.text).join("\n");
  const target = Number(expected.trim());
  const grounded =
    expected.trim() !== "" && Number.isFinite(target)
      ? numbersIn(text).includes(target)
      : text.toLowerCase().includes(expected.trim().toLowerCase());
  const closed = trace.thoughts.every((t) => t.closed);
  const repeated = repetition(thoughtIds);
  return {
    quality: (closed ? 1 : 0.5) * (1 - repeated) * (grounded ? 1 : 0.5),
    thoughts: trace.thoughts.length,
    length: thoughtIds.length,
    repetition: repeated,
    closed,
    grounded,
  };
}

export interface QualityDistribution {
  traces: number;
  /** Traces with at least one thought. */
  withThoughts: number;
  /** Share of traces with thoughts whose answer was correct. */
  correctShare: number;
  /** Histogram of quality over traces with thoughts: 10 bins of width 0.1 ([0, 0.1), …, [0.9, 1]). */
  histogram: number[];
  meanQuality: number;
  meanLength: number;
  meanRepetition: number;
  closedShare: number;
  groundedShare: number;
  /** Traces that pass: correct and quality ≥ the threshold. */
  usable: number;
}

/** The distribution of quality over traces (`correct` per trace, `minQuality` the bake's bar). */
export function qualityDistribution(
  scored: readonly { quality: TraceQuality; correct: boolean }[],
  minQuality: number,
): QualityDistribution {
  const thinking = scored.filter((s) => s.quality.thoughts > 0);
  const n = thinking.length;
  const average = (f: (s: (typeof scored)[number]) => number) =>
    n ? thinking.reduce((sum, s) => sum + f(s), 0) / n : 0;
  const histogram = new Array<number>(10).fill(0);
  for (const s of thinking) histogram[Math.min(9, Math.floor(s.quality.quality * 10))]!++;
  return {
    traces: scored.length,
    withThoughts: n,
    correctShare: average((s) => (s.correct ? 1 : 0)),
    histogram,
    meanQuality: average((s) => s.quality.quality),
    meanLength: average((s) => s.quality.length),
    meanRepetition: average((s) => s.quality.repetition),
    closedShare: average((s) => (s.quality.closed ? 1 : 0)),
    groundedShare: average((s) => (s.quality.grounded ? 1 : 0)),
    usable: thinking.filter((s) => s.correct && s.quality.quality >= minQuality).length,
  };
}
