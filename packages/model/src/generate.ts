/**
 * Text generation with a KV cache: the prompt is run once (prefill), then each step feeds one
 * new token per sequence and attends over the cached keys and values of everything before it.
 *
 * - Batches may be ragged: prompts are left-padded; pad positions are masked out of attention
 *   and position ids start at 0 at each prompt's first real token.
 * - Context longer than `blockSize` is cropped from the left, in blocks: a prompt longer than
 *   the window keeps its last `blockSize` tokens; when a sequence's context (prompt + output so
 *   far) outgrows the window, every context in the batch keeps only its last
 *   `windowKeep(blockSize)` = ⌈blockSize / 2⌉ tokens, and decoding goes on from there. So each
 *   token is predicted from a suffix of at least ⌈blockSize / 2⌉ and at most `blockSize` tokens
 *   of its sequence (fewer only while the sequence itself is shorter), and the window is
 *   re-encoded once per ⌊blockSize / 2⌋ tokens instead of once per token: with the cache, the
 *   cropped contexts are prefilled again and cached decoding continues. Generation without the
 *   cache crops at the same steps and recomputes the cropped context every token, so the two
 *   produce the same tokens (the reference the tests hold the cache to).
 * - Rotary models (the Llama family) decoding with the cache shift it instead, as llama.cpp's
 *   context shift does: when the cache holds `blockSize` positions, its oldest positions leave
 *   it until ⌈blockSize / 2⌉ remain (with the new token), positions keep counting (rotary
 *   attention depends only on the distance between a query and a key), and nothing is
 *   re-encoded: the kept keys and values are the ones computed when their tokens were decoded.
 *   Each token attends to the last ⌈blockSize / 2⌉ to `blockSize` positions — a sliding window
 *   whose start moves in blocks; the tests hold it to a full forward pass with that banded
 *   causal mask. (Learned positions stop at the window, so GPT-2 re-encodes.)
 * - Sampling runs on the CPU in float64 from the step's logits: greedy at temperature 0,
 *   otherwise temperature, top-k, then top-p (nucleus), with banned ids removed first.
 *   Deterministic for a seed.
 */
import { Rng } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import { isLlamaFamily } from "./config.js";
import { ModelError } from "./errors.js";
import { type DecoderChoice, decoderChoice, JsDecoder, jsDecodePays } from "./fast-decode.js";
import type { GPT, LayerCache } from "./gpt.js";

export interface GenerateOptions {
  /** New tokens per sequence at most. */
  maxNewTokens: number;
  /** 0 = greedy; default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens (after banning). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p. */
  topP?: number;
  /** Seed for sampling (default 0). */
  seed?: number;
  /** A sequence stops after producing one of these (the stop token is included in its output). */
  stopIds?: readonly number[];
  /** Ids never produced (role tokens, …). */
  bannedIds?: readonly number[];
  /** Use the KV cache (default true). Without it every step recomputes the whole context. */
  useCache?: boolean;
  /** Called after every step with the token each unfinished sequence produced (null: finished). */
  onStep?: (step: number, tokens: ReadonlyArray<number | null>) => void;
  /**
   * Also return each new token's log-probability under the model (the softmax of its logits at
   * temperature 1, before banning, top-k or top-p): how likely the model finds what it wrote.
   */
  logprobs?: boolean;
  /**
   * Which cached decode step runs after the (tfjs) prefill: "js" — plain loops over arrays
   * (fast-decode.ts), "tfjs" — the model's kernels, "auto" (default) — "js" where it pays
   * (batch · width² ≤ 2²¹, e.g. batch ≤ 128 at width 128, ≤ 8 at width 512; models up
   * to 32 M parameters; not on native TensorFlow). Default from FORGE_DECODE, else "auto".
   */
  decoder?: DecoderChoice;
  /**
   * Called before every step's sampling with its logits [B·V] (row b at b·V; rows of finished
   * sequences are unspecified). The array is reused: copy what you keep.
   */
  onLogits?: (step: number, logits: Float32Array) => void;
}

export type FinishReason = "stop" | "length";

export interface Generation {
  /** The new tokens of each sequence (prompt excluded, stop token included). */
  tokens: number[][];
  finishReasons: FinishReason[];
  /** With `logprobs`: log P(token | context) of each new token, aligned with `tokens`. */
  logprobs?: number[][];
}

/** log softmax(row)[index], in float64. */
function logprobOf(row: ArrayLike<number>, index: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return row[index]! - max - Math.log(sum);
}

function checkOptions(
  model: GPT,
  prompts: readonly (readonly number[])[],
  options: GenerateOptions,
): void {
  const { vocabSize } = model.config;
  if (!Array.isArray(prompts) || prompts.length === 0)
    throw new ModelError("E_INPUT", "generate needs at least one prompt");
  prompts.forEach((prompt, b) => {
    if (!Array.isArray(prompt) || prompt.length === 0)
      throw new ModelError("E_INPUT", `prompt ${b} is empty; give at least one token`);
    prompt.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new ModelError(
          "E_INPUT",
          `prompt ${b} token ${i} is ${id}; ids must be integers in [0, ${vocabSize})`,
        );
      }
    });
  });
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) {
    throw new ModelError(
      "E_INPUT",
      `maxNewTokens must be an integer ≥ 0; got ${options.maxNewTokens}`,
    );
  }
  const temperature = options.temperature ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new ModelError("E_INPUT", `temperature must be ≥ 0; got ${options.temperature}`);
  }
  if (options.topK !== undefined && (!Number.isInteger(options.topK) || options.topK < 1)) {
    throw new ModelError("E_INPUT", `topK must be an integer ≥ 1; got ${options.topK}`);
  }
  if (options.topP !== undefined && !(options.topP > 0 && options.topP <= 1)) {
    throw new ModelError("E_INPUT", `topP must be in (0, 1]; got ${options.topP}`);
  }
  for (const [name, ids] of [
    ["stopIds", options.stopIds],
    ["bannedIds", options.bannedIds],
  ] as const) {
    for (const id of ids ?? []) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new ModelError(
          "E_INPUT",
          `${name} contains ${id}; ids must be integers in [0, ${vocabSize})`,
        );
      }
    }
  }
  if (options.bannedIds && new Set(options.bannedIds).size >= vocabSize) {
    throw new ModelError("E_INPUT", "bannedIds bans the whole vocabulary");
  }
}

/**
 * Pick a token from one row of logits: the arg-max at temperature 0, else a draw from the
 * softmax at `temperature`, restricted to the `topK` most likely and then to the smallest
 * prefix holding `topP` of the mass (candidates in descending order of logit, ties to the lower
 * id; one `rng.next()` per draw).
 */
export function sampleToken(
  logits: ArrayLike<number>,
  options: { temperature: number; topK?: number; topP?: number; banned: ReadonlySet<number> },
  rng: Rng,
): number {
  const n = logits.length;
  if (options.temperature === 0) {
    let best = -1;
    let bestValue = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      if (options.banned.has(i)) continue;
      if (best < 0 || logits[i]! > bestValue) {
        best = i;
        bestValue = logits[i]!;
      }
    }
    return best;
  }
  // The candidates in descending order of logit (ties: lower id first), drawn lazily from a
  // max-heap: a reply's token is nearly always among the first few, so the vocabulary is
  // never sorted. Building the heap is O(n); each draw O(log n).
  const heap = new Int32Array(n);
  let size = 0;
  for (let i = 0; i < n; i++)
    if (!options.banned.has(i) && logits[i]! > Number.NEGATIVE_INFINITY) heap[size++] = i;
  if (size === 0) {
    throw new ModelError(
      "E_INPUT",
      "no token can be sampled: every token is banned or has probability 0",
    );
  }
  const before = (a: number, b: number) =>
    logits[a]! > logits[b]! || (logits[a] === logits[b] && a < b);
  const siftDown = (from: number) => {
    let i = from;
    const item = heap[i]!;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && before(heap[child + 1]!, heap[child]!)) child++;
      if (!before(heap[child]!, item)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = item;
  };
  for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(i);
  const pop = (): number => {
    const top = heap[0]!;
    heap[0] = heap[--size]!;
    if (size > 0) siftDown(0);
    return top;
  };
  const inverse = 1 / options.temperature;
  const max = logits[heap[0]!]! * inverse;
  const weight = (i: number) => Math.exp(logits[i]! * inverse - max);
  const limit = options.topK !== undefined ? Math.min(options.topK, size) : size;
  if (options.topP !== undefined && options.topP < 1) {
    // Nucleus: the smallest prefix whose share of the (top-K) mass reaches topP.
    const order: number[] = [];
    const weights: number[] = [];
    const everyCandidate = limit === size;
    let total = 0;
    if (everyCandidate) for (let h = 0; h < size; h++) total += weight(heap[h]!);
    while (order.length < limit) {
      const i = pop();
      order.push(i);
      weights.push(weight(i));
      if (!everyCandidate) total += weights.at(-1)!;
    }
    let cumulative = 0;
    let keep = 0;
    while (keep < weights.length) {
      cumulative += weights[keep]! / total;
      keep++;
      if (cumulative >= options.topP) break;
    }
    let kept = 0;
    for (let j = 0; j < keep; j++) kept += weights[j]!;
    let u = rng.next() * kept;
    for (let j = 0; j < keep; j++) {
      u -= weights[j]!;
      if (u < 0) return order[j]!;
    }
    return order[keep - 1]!;
  }
  let total = 0;
  if (limit === size) {
    for (let h = 0; h < size; h++) total += weight(heap[h]!);
  } else {
    // The top K's mass: the K largest, found by copying the heap's first K pops.
    const saved = heap.slice(0, size);
    const savedSize = size;
    for (let j = 0; j < limit; j++) total += weight(pop());
    heap.set(saved);
    size = savedSize;
  }
  let u = rng.next() * total;
  let last = heap[0]!;
  for (let j = 0; j < limit; j++) {
    last = pop();
    u -= weight(last);
    if (u < 0) return last;
  }
  return last;
}

/** Left-pad ragged contexts: ids, position ids and the additive attention bias (causal + pads). */
export function raggedInputs(contexts: number[][]): {
  ids: tf.Tensor2D;
  positions: tf.Tensor2D;
  bias: tf.Tensor4D;
  pads: number[];
} {
  const width = Math.max(...contexts.map((c) => c.length));
  const batch = contexts.length;
  const pads = contexts.map((c) => width - c.length);
  const ids = new Int32Array(batch * width);
  const positions = new Int32Array(batch * width);
  const bias = new Float32Array(batch * width * width);
  contexts.forEach((context, b) => {
    const pad = pads[b]!;
    for (let j = 0; j < width; j++) {
      ids[b * width + j] = j < pad ? 0 : context[j - pad]!;
      positions[b * width + j] = Math.max(0, j - pad);
      for (let k = 0; k < width; k++) {
        if (k > j || k < pad) bias[(b * width + j) * width + k] = -1e9;
      }
    }
  });
  return {
    ids: tf.tensor2d(ids, [batch, width], "int32"),
    positions: tf.tensor2d(positions, [batch, width], "int32"),
    bias: tf.tensor4d(bias, [batch, 1, width, width]),
    pads,
  };
}

interface StepResult {
  logits: tf.Tensor3D;
  cache: LayerCache[];
}

/** tf.tidy for a step's result (logits and the new cache survive; everything else is freed). */
function tidyStep(fn: () => StepResult): StepResult {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as StepResult;
}

/** Last-position logits [B, V] of ragged contexts, computed in full (no cache). */
function fullStep(model: GPT, contexts: number[][]): Float32Array {
  const logits = tf.tidy(() => {
    const { ids, positions, bias } = raggedInputs(contexts);
    return model.run(ids, { positions, attentionBias: bias, lastOnly: true }).logits;
  });
  const values = logits.dataSync() as Float32Array;
  logits.dispose();
  return values;
}

/** The JS decoder "auto" picked, or none (tfjs' step) when it cannot be set up here. */
function autoDecoder(model: GPT, batch: number): JsDecoder | undefined {
  try {
    return new JsDecoder(model, batch);
  } catch {
    return undefined; // e.g. no memory for the weight copy: tfjs' step still works
  }
}

/** Tokens each context keeps when it outgrows a window of `blockSize` (see the module doc). */
export function windowKeep(blockSize: number): number {
  return Math.max(1, Math.ceil(blockSize / 2));
}

/**
 * Generate up to `maxNewTokens` tokens after each prompt. Batches may be ragged.
 */
export function generate(
  model: GPT,
  prompts: readonly (readonly number[])[],
  options: GenerateOptions,
): Generation {
  checkOptions(model, prompts, options);
  const { blockSize, vocabSize } = model.config;
  const batch = prompts.length;
  const rng = new Rng(options.seed ?? 0);
  const sampling = {
    temperature: options.temperature ?? 1,
    ...(options.topK !== undefined ? { topK: options.topK } : {}),
    ...(options.topP !== undefined ? { topP: options.topP } : {}),
    banned: new Set(options.bannedIds ?? []),
  };
  const stops = new Set(options.stopIds ?? []);
  const useCache = options.useCache ?? true;
  const choice = decoderChoice(options.decoder);
  // Prompts longer than the window keep their last blockSize tokens.
  const contexts = prompts.map((p) => p.slice(Math.max(0, p.length - blockSize)));
  const tokens: number[][] = prompts.map(() => []);
  const finishReasons: FinishReason[] = prompts.map(() => "length");
  const done = new Array<boolean>(batch).fill(false);
  const logprobs = options.logprobs ? prompts.map((): number[] => []) : undefined;
  const result = () => ({ tokens, finishReasons, ...(logprobs ? { logprobs } : {}) });
  if (options.maxNewTokens === 0) return result();

  let cache: LayerCache[] | undefined;
  // the JS decode step (after the tfjs prefill), where chosen or where it pays; with a single
  // new token there is no decode step
  const js =
    !useCache || options.maxNewTokens < 2
      ? undefined
      : choice === "js"
        ? new JsDecoder(model, batch)
        : choice === "auto" && jsDecodePays(model, batch)
          ? autoDecoder(model, batch)
          : undefined;
  let pads: number[] = [];
  let cachedLength = 0; // positions held by the cache (padded width)
  const disposeCache = () => {
    for (const layer of cache ?? []) tf.dispose([layer.k, layer.v]);
    cache = undefined;
  };

  /** Prefill the current contexts: the cache and the last position's logits. */
  const prefill = (): Float32Array => {
    disposeCache();
    const step = tidyStep(() => {
      const inputs = raggedInputs(contexts);
      const result = model.run(inputs.ids, {
        positions: inputs.positions,
        attentionBias: inputs.bias,
        lastOnly: true,
        returnCache: true,
      });
      pads = inputs.pads;
      return { logits: result.logits, cache: result.cache! };
    });
    cache = step.cache;
    cachedLength = cache[0]!.k.shape[2];
    if (js) {
      js.load(cache, pads);
      disposeCache();
    }
    const values = step.logits.dataSync() as Float32Array;
    step.logits.dispose();
    return values;
  };
  const keep = windowKeep(blockSize);
  // rotary positions are relative: the cache shifts (see the module doc)
  const rolling = useCache && isLlamaFamily(model.config);
  /** Drop the cache's oldest `drop` positions (and the pads among them). */
  const roll = (drop: number) => {
    if (js) {
      js.shift(drop);
      cachedLength -= drop;
      return;
    }
    const rolled = cache!.map((layer) => ({
      k: layer.k.slice([0, 0, drop, 0]),
      v: layer.v.slice([0, 0, drop, 0]),
    }));
    disposeCache();
    cache = rolled;
    cachedLength -= drop;
    pads = pads.map((pad) => Math.max(0, pad - drop));
  };

  try {
    let logits = useCache ? prefill() : fullStep(model, contexts);

    for (let step = 0; step < options.maxNewTokens; step++) {
      options.onLogits?.(step, logits);
      const produced: (number | null)[] = [];
      for (let b = 0; b < batch; b++) {
        if (done[b]) {
          produced.push(null);
          continue;
        }
        const row = logits.subarray(b * vocabSize, (b + 1) * vocabSize);
        const token = sampleToken(row, sampling, rng);
        tokens[b]!.push(token);
        if (logprobs) logprobs[b]!.push(logprobOf(row, token));
        contexts[b]!.push(token);
        produced.push(token);
        if (stops.has(token)) {
          done[b] = true;
          finishReasons[b] = "stop";
        }
      }
      options.onStep?.(step, produced);
      if (done.every(Boolean) || step === options.maxNewTokens - 1) break;

      // A context outgrew the window: every context keeps its last `keep` tokens.
      const cropped = !rolling && Math.max(...contexts.map((c) => c.length)) > blockSize;
      if (cropped) {
        for (const context of contexts) {
          if (context.length > keep) context.splice(0, context.length - keep);
        }
      }
      if (!useCache) {
        logits = fullStep(model, contexts);
        continue;
      }
      // Re-encode after a crop, or when the padded width (finished sequences' pads) is full.
      if (rolling && cachedLength + 1 > blockSize) roll(cachedLength + 1 - keep);
      else if (cropped || cachedLength + 1 > blockSize) {
        logits = prefill();
        continue;
      }
      if (js) {
        logits = js.step(
          contexts.map((c) => c[c.length - 1]!),
          contexts.map((c) => c.length - 1),
          done,
        );
        cachedLength++;
        continue;
      }
      const next = tidyStep(() => {
        const ids = tf.tensor2d(
          contexts.map((c) => c[c.length - 1]!),
          [batch, 1],
          "int32",
        );
        const positions = tf.tensor2d(
          contexts.map((c) => c.length - 1),
          [batch, 1],
          "int32",
        );
        const biasValues = new Float32Array(batch * (cachedLength + 1));
        pads.forEach((pad, b) => {
          for (let k = 0; k < pad; k++) biasValues[b * (cachedLength + 1) + k] = -1e9;
        });
        const bias = tf.tensor4d(biasValues, [batch, 1, 1, cachedLength + 1]);
        const result = model.run(ids, {
          positions,
          ...(rolling ? { positionLimit: Math.max(...contexts.map((c) => c.length)) } : {}),
          attentionBias: bias,
          past: cache!,
          returnCache: true,
          lastOnly: true,
        });
        return { logits: result.logits, cache: result.cache! };
      });
      disposeCache();
      cache = next.cache;
      cachedLength++;
      logits = next.logits.dataSync() as Float32Array;
      next.logits.dispose();
    }
  } finally {
    disposeCache();
    js?.dispose();
  }
  return result();
}
