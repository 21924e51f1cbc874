/**
 * Scoring trajectories: the model's next-token logits at every response position, for
 * sequences of prompt ids followed by response ids. Position i of the result predicts
 * response token i. Batched by length; tensors are freed as it goes.
 */

import type { GPT } from "@forge/model";
import * as tf from "@tensorflow/tfjs";
import { BakingError } from "./errors.js";

export interface ScoredSequence {
  prompt: readonly number[];
  response: readonly number[];
}

/** Logits [R · V] (row-major) for each sequence, in input order. */
export function responseLogits(
  model: GPT,
  sequences: readonly ScoredSequence[],
  options: { batchSize?: number; onProgress?: (done: number) => void } = {},
): Float32Array[] {
  return positionLogits(
    model,
    sequences.map((s) => {
      lengthOf(s); // a non-empty prompt and response
      return {
        ids: [...s.prompt, ...s.response.slice(0, -1)],
        positions: Array.from({ length: s.response.length }, (_, r) => s.prompt.length - 1 + r),
      };
    }),
    options,
    (i, width) =>
      `sequence ${i} needs ${width} positions (prompt ${sequences[i]!.prompt.length} + response ${sequences[i]!.response.length} − 1); the context window is ${model.config.blockSize}`,
  );
}

/** A sequence of input ids and the positions whose next-token logits are wanted. */
export interface PositionedSequence {
  ids: readonly number[];
  /** Indexes into `ids`, each < ids.length. */
  positions: readonly number[];
}

/**
 * Logits [P · V] (row-major, in `positions` order) for each sequence, in input order: the
 * model's next-token distribution after ids[0…p] for each position p. Batched by length.
 */
export function positionLogits(
  model: GPT,
  sequences: readonly PositionedSequence[],
  options: { batchSize?: number; onProgress?: (done: number) => void } = {},
  tooLong: (index: number, width: number) => string = (i, width) =>
    `sequence ${i} is ${width} tokens; the context window is ${model.config.blockSize}`,
): Float32Array[] {
  const { blockSize, vocabSize } = model.config;
  const batchSize = options.batchSize ?? 16;
  for (const [i, s] of sequences.entries()) {
    if (s.ids.length === 0) throw new BakingError("E_INPUT", `sequence ${i} has no ids`);
    if (s.positions.some((p) => !Number.isInteger(p) || p < 0 || p >= s.ids.length))
      throw new BakingError("E_INPUT", `sequence ${i}: a position lies outside its ids`);
  }
  const order = [...sequences.keys()].sort(
    (a, b) => sequences[a]!.ids.length - sequences[b]!.ids.length,
  );
  const out = new Array<Float32Array>(sequences.length);
  let done = 0;
  for (let start = 0; start < order.length; start += batchSize) {
    const indices = order.slice(start, start + batchSize);
    const width = Math.max(...indices.map((i) => sequences[i]!.ids.length));
    if (width > blockSize) {
      const worst = indices.find((i) => sequences[i]!.ids.length === width)!;
      throw new BakingError("E_CONTEXT", tooLong(worst, width));
    }
    const ids = new Int32Array(indices.length * width);
    indices.forEach((i, row) => {
      ids.set(sequences[i]!.ids, row * width);
    });
    const logits = tf.tidy(
      () => model.run(tf.tensor2d(ids, [indices.length, width], "int32")).logits,
    );
    const values = logits.dataSync() as Float32Array;
    logits.dispose();
    indices.forEach((i, row) => {
      const { positions } = sequences[i]!;
      const rows = new Float32Array(positions.length * vocabSize);
      positions.forEach((p, k) => {
        const from = (row * width + p) * vocabSize;
        rows.set(values.subarray(from, from + vocabSize), k * vocabSize);
      });
      out[i] = rows;
    });
    done += indices.length;
    options.onProgress?.(done);
  }
  return out;
}

function lengthOf(s: ScoredSequence): number {
  if (s.prompt.length === 0)
    throw new BakingError("E_INPUT", "a scored sequence needs a non-empty prompt");
  if (s.response.length === 0)
    throw new BakingError("E_INPUT", "a scored sequence needs a non-empty response");
  return s.prompt.length + s.response.length - 1;
}

/** log-softmax of one row (float64). */
export function logSoftmaxRow(
  logits: Float32Array,
  offset: number,
  vocab: number,
  out: Float64Array,
): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < vocab; j++) max = Math.max(max, logits[offset + j]!);
  let sum = 0;
  for (let j = 0; j < vocab; j++) sum += Math.exp(logits[offset + j]! - max);
  const lse = max + Math.log(sum);
  for (let j = 0; j < vocab; j++) out[j] = logits[offset + j]! - lse;
}

/** The top-K log-probabilities and ids at each response position. */
export function topKOf(
  logits: Float32Array,
  vocab: number,
  k: number,
): { ids: number[][]; logprobs: number[][] } {
  const rows = logits.length / vocab;
  const ids: number[][] = [];
  const logprobs: number[][] = [];
  const row = new Float64Array(vocab);
  for (let r = 0; r < rows; r++) {
    logSoftmaxRow(logits, r * vocab, vocab, row);
    const best = [...row.keys()].sort((a, b) => row[b]! - row[a]! || a - b).slice(0, k);
    ids.push(best);
    logprobs.push(best.map((j) => row[j]!));
  }
  return { ids, logprobs };
}
