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
  const { blockSize, vocabSize } = model.config;
  const batchSize = options.batchSize ?? 16;
  const order = [...sequences.keys()].sort(
    (a, b) => lengthOf(sequences[a]!) - lengthOf(sequences[b]!),
  );
  const out = new Array<Float32Array>(sequences.length);
  let done = 0;
  for (let start = 0; start < order.length; start += batchSize) {
    const indices = order.slice(start, start + batchSize);
    const width = Math.max(...indices.map((i) => lengthOf(sequences[i]!)));
    if (width > blockSize) {
      const worst = indices.find((i) => lengthOf(sequences[i]!) === width)!;
      throw new BakingError(
        "E_CONTEXT",
        `sequence ${worst} needs ${width} positions (prompt ${sequences[worst]!.prompt.length} + response ${sequences[worst]!.response.length} − 1); the context window is ${blockSize}`,
      );
    }
    const ids = new Int32Array(indices.length * width);
    indices.forEach((i, row) => {
      const { prompt, response } = sequences[i]!;
      ids.set(prompt, row * width);
      ids.set(response.slice(0, -1), row * width + prompt.length);
    });
    const logits = tf.tidy(
      () => model.run(tf.tensor2d(ids, [indices.length, width], "int32")).logits,
    );
    const values = logits.dataSync() as Float32Array;
    logits.dispose();
    indices.forEach((i, row) => {
      const { prompt, response } = sequences[i]!;
      const from = (row * width + prompt.length - 1) * vocabSize;
      out[i] = values.slice(from, from + response.length * vocabSize);
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
