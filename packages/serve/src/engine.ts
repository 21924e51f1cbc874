/**
 * The batching engine: every sequence waiting when a step begins joins the batch, and each
 * step runs the sequences in flight together, whichever client they came from.
 *
 * - A step feeds each running sequence its last token against the KV cache (left-padded,
 *   ragged: pad columns masked, positions counted from each sequence's first real token).
 * - Sequences that join are prefilled together (their prompts, left-padded) in the same step,
 *   and their cache rows are appended to the running ones (the narrower side left-padded with
 *   masked columns). When nothing is cached, or the padded width would outgrow the context
 *   window, the step is one prefill over every running context, which rebuilds the cache.
 * - A finished sequence leaves at once: its rows are gathered out of the cache, and pad
 *   columns no sequence needs any more are sliced off.
 * - Sampling runs on the CPU in float64 from the step's logits with each sequence's own
 *   settings and its own seeded stream (`sampleToken`, as `generate` samples), so a reply
 *   depends on its request only, not on what it was batched with. Log-probabilities are the
 *   log-softmax of the logits over the whole vocabulary (before banning and sampling).
 * - The loop yields to the event loop between steps, so requests arrive, stream and leave
 *   while it runs; every forward runs in tf.tidy and the cache is disposed of as it is
 *   replaced, so the tensor count is flat across requests.
 */
import { Rng } from "@forge/core";
import type { GPT, LayerCache } from "@forge/model";
import { raggedInputs, sampleToken } from "@forge/model/internal";
import type { Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { ServeError } from "./errors.js";

/** What one sequence (one choice of one request) asks for. */
export interface SequenceSpec {
  /** The prompt's token ids (the context window must hold them and maxTokens more). */
  promptIds: number[];
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP?: number;
  seed: number;
  /** Generation stops after one of these ids (it counts, but is not in the text). */
  stopIds: readonly number[];
  /** Ids never sampled. */
  bannedIds: readonly number[];
  /** Generation stops where the text first contains one of these; the text ends before it. */
  stop: readonly string[];
  /** Keep each token's log-probability and this many alternatives (undefined: none). */
  topLogprobs?: number;
  /** Called after each token this sequence produces (streaming). */
  onToken?: (sequence: Sequence) => void;
  /** Aborted: the sequence is dropped before the next step (its client went away). */
  signal?: AbortSignal;
}

/** An alternative at one position. */
export interface TokenChoice {
  id: number;
  logprob: number;
}

/** A produced token's log-probability and the most likely alternatives at its position. */
export interface TokenLogprobs extends TokenChoice {
  top: TokenChoice[];
}

export type FinishReason = "stop" | "length";

/** A sequence in the engine: its spec and what it has produced so far. */
export interface Sequence {
  readonly spec: SequenceSpec;
  /** Produced ids, a stop id included. */
  readonly tokens: number[];
  /** With `topLogprobs`: one entry per produced token. */
  readonly logprobs: TokenLogprobs[];
  /** The text so far (special tokens left out, cut before a stop string once one is found). */
  text: string;
  finishReason: FinishReason | null;
  /** Set to drop the sequence before the next step (as an aborted `spec.signal` does). */
  cancelled: boolean;
}

/** What the engine has done, for the server's `/stats` and tests. */
export interface EngineStats {
  /** Forward passes run (prefills and incremental steps). */
  forwardPasses: number;
  /** Forward passes that were prefills (sequences joining, or a rebuilt cache). */
  prefills: number;
  /** Forward passes over sequences of more than one request. */
  sharedPasses: number;
  /** The most sequences one forward pass has carried. */
  maxBatch: number;
  /** Sum over forward passes of the sequences each carried. */
  sequenceSteps: number;
  /** Tokens produced. */
  tokens: number;
  /** Sequences finished. */
  sequences: number;
  /** Sequences dropped unfinished (cancelled: their client went away). */
  cancelled: number;
  /** Sequences waiting to join. */
  waiting: number;
  /** Sequences running. */
  running: number;
}

interface Running {
  sequence: Sequence;
  /** The request it belongs to (for `sharedPasses`). */
  owner: object;
  rng: Rng;
  /** Prompt + produced tokens: what the model has read or will read next. */
  context: number[];
  banned: Set<number>;
  stops: Set<number>;
  resolve: (sequence: Sequence) => void;
  reject: (error: unknown) => void;
}

export interface EngineOptions {
  /** The most sequences in one forward pass (default 16). */
  maxBatch?: number;
}

/** log-softmax of a row in float64, and its `k` most likely ids. */
function rowLogprobs(row: Float32Array, token: number, k: number): TokenLogprobs {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const lse = max + Math.log(sum);
  const top: TokenChoice[] = [];
  if (k > 0) {
    // a partial selection: keep the k best seen so far, sorted (k ≤ 20)
    for (let i = 0; i < row.length; i++) {
      const value = row[i]!;
      if (top.length === k && value <= top[k - 1]!.logprob) continue;
      let at = top.length;
      while (at > 0 && top[at - 1]!.logprob < value) at--;
      top.splice(at, 0, { id: i, logprob: value });
      if (top.length > k) top.pop();
    }
    for (const choice of top) choice.logprob -= lse;
  }
  return { id: token, logprob: row[token]! - lse, top };
}

/**
 * The engine over one model. `submit` queues sequences; the loop runs while any wait or run.
 * Not thread-safe and needs none: one event loop drives it.
 */
export class Engine {
  readonly maxBatch: number;
  private readonly waiting: Running[] = [];
  private running: Running[] = [];
  private cache: LayerCache[] | undefined;
  /** Pad columns at the start of each running row of the cache. */
  private pads: number[] = [];
  private cachedLength = 0;
  private looping = false;
  private paused = false;
  private resumeWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly counters = {
    forwardPasses: 0,
    prefills: 0,
    sharedPasses: 0,
    maxBatch: 0,
    sequenceSteps: 0,
    tokens: 0,
    sequences: 0,
    cancelled: 0,
  };

  constructor(
    readonly model: GPT,
    readonly tokenizer: Tokenizer,
    options: EngineOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 16;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1)
      throw new ServeError("E_INPUT", `maxBatch must be an integer ≥ 1; got ${options.maxBatch}`);
  }

  get stats(): EngineStats {
    return { ...this.counters, waiting: this.waiting.length, running: this.running.length };
  }

  /** Sequences waiting or running. */
  get load(): number {
    return this.waiting.length + this.running.length;
  }

  /**
   * Queue a request's sequences; each promise resolves when its sequence finishes. Sequences
   * of one `owner` (a request) that share a forward pass do not count as shared.
   */
  submit(specs: readonly SequenceSpec[], owner: object = {}): Promise<Sequence>[] {
    const { blockSize, vocabSize } = this.model.config;
    const promises = specs.map((spec) => {
      if (spec.promptIds.length === 0)
        throw new ServeError("E_INPUT", "the prompt is empty; give at least one token");
      if (spec.promptIds.length + spec.maxTokens > blockSize)
        throw new ServeError(
          "E_INPUT",
          `the prompt (${spec.promptIds.length} tokens) and max_tokens (${spec.maxTokens}) exceed the model's context window of ${blockSize} tokens`,
        );
      if (spec.promptIds.some((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize))
        throw new ServeError("E_INPUT", `prompt ids must be integers in [0, ${vocabSize})`);
      const sequence: Sequence = {
        spec,
        tokens: [],
        logprobs: [],
        text: "",
        finishReason: null,
        cancelled: false,
      };
      return new Promise<Sequence>((resolve, reject) => {
        this.waiting.push({
          sequence,
          owner,
          rng: new Rng(spec.seed),
          context: [...spec.promptIds],
          banned: new Set(spec.bannedIds),
          stops: new Set(spec.stopIds),
          resolve,
          reject,
        });
      });
    });
    this.kick();
    return promises;
  }

  /** Hold the loop before its next step (waiting sequences stay queued) until `resume`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    for (const wake of this.resumeWaiters.splice(0)) wake();
  }

  /** Resolves when nothing waits or runs. */
  idle(): Promise<void> {
    if (!this.looping && this.load === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.waiting.length > 0 || this.running.length > 0) {
        if (this.paused) await new Promise<void>((resolve) => this.resumeWaiters.push(resolve));
        try {
          this.step();
        } catch (error) {
          // a failed forward fails every sequence in it; the engine itself carries on
          this.disposeCache();
          for (const r of this.running.splice(0)) r.reject(error);
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.looping = false;
      this.disposeCache();
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private disposeCache(): void {
    for (const layer of this.cache ?? []) tf.dispose([layer.k, layer.v]);
    this.cache = undefined;
    this.pads = [];
    this.cachedLength = 0;
  }

  /** The counters for one forward pass over `rows`. */
  private counted(rows: readonly Running[]): void {
    this.counters.forwardPasses++;
    this.counters.sequenceSteps += rows.length;
    this.counters.maxBatch = Math.max(this.counters.maxBatch, rows.length);
    if (new Set(rows.map((r) => r.owner)).size > 1) this.counters.sharedPasses++;
  }

  /**
   * One step: a forward pass over the running sequences (one token each, against the cache)
   * and a prefill of the sequences joining (their prompts), their caches merged into one;
   * then one token for each.
   */
  private step(): void {
    this.dropCancelled();
    const joining = this.waiting.splice(0, this.maxBatch - this.running.length);
    const existing = this.running.length;
    this.running.push(...joining);
    if (this.running.length === 0) return;
    const { blockSize, vocabSize } = this.model.config;
    let logits: Float32Array;
    if (existing === 0 || !this.cache || this.cachedLength + 1 > blockSize) {
      // nothing cached, or the padded cache would outgrow the window: one prefill of all
      this.disposeCache();
      const all = this.prefill(this.running);
      this.cache = all.cache;
      this.pads = all.pads;
      this.cachedLength = all.width;
      logits = all.logits;
    } else {
      logits = this.incremental(existing);
      if (joining.length > 0) {
        const joined = this.prefill(joining);
        this.merge(joined);
        const both = new Float32Array(logits.length + joined.logits.length);
        both.set(logits);
        both.set(joined.logits, logits.length);
        logits = both;
      }
    }

    const keep: number[] = [];
    this.running.forEach((r, b) => {
      const row = logits.subarray(b * vocabSize, (b + 1) * vocabSize);
      const { spec } = r.sequence;
      const token = sampleToken(
        row,
        {
          temperature: spec.temperature,
          ...(spec.topP !== undefined ? { topP: spec.topP } : {}),
          banned: r.banned,
        },
        r.rng,
      );
      const sequence = r.sequence;
      sequence.tokens.push(token);
      if (spec.topLogprobs !== undefined)
        sequence.logprobs.push(rowLogprobs(row, token, spec.topLogprobs));
      r.context.push(token);
      this.counters.tokens++;
      if (r.stops.has(token)) sequence.finishReason = "stop";
      else {
        sequence.text = this.tokenizer.decode(sequence.tokens, { skipSpecial: true });
        const cut = firstStop(sequence.text, spec.stop);
        if (cut !== undefined) {
          sequence.text = sequence.text.slice(0, cut);
          sequence.finishReason = "stop";
        } else if (sequence.tokens.length >= spec.maxTokens) sequence.finishReason = "length";
      }
      spec.onToken?.(sequence);
      if (sequence.finishReason === null) keep.push(b);
      else {
        this.counters.sequences++;
        r.resolve(sequence);
      }
    });
    this.retain(keep);
  }

  /** Cancelled sequences leave before the step (their promises resolve as they stand). */
  private dropCancelled(): void {
    for (const r of [...this.waiting, ...this.running])
      if (r.sequence.spec.signal?.aborted) r.sequence.cancelled = true;
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const r = this.waiting[i]!;
      if (r.sequence.cancelled) {
        this.waiting.splice(i, 1);
        this.counters.cancelled++;
        r.resolve(r.sequence);
      }
    }
    const keep: number[] = [];
    this.running.forEach((r, b) => {
      if (r.sequence.cancelled) {
        this.counters.cancelled++;
        r.resolve(r.sequence);
      } else keep.push(b);
    });
    this.retain(keep);
  }

  /** Keep only rows `keep` of the running sequences and of the cache. */
  private retain(keep: number[]): void {
    if (keep.length === this.running.length) return;
    this.running = keep.map((b) => this.running[b]!);
    if (keep.length === 0 || !this.cache) {
      this.disposeCache();
      return;
    }
    const pads = keep.map((b) => this.pads[b]!);
    const drop = Math.min(...pads); // pad columns every remaining row has
    const old = this.cache;
    this.cache = tf.tidy(() => {
      const index = tf.tensor1d(keep, "int32");
      return old.map((layer) => {
        const pick = (t: tf.Tensor4D) => {
          const rows = tf.gather(t, index, 0) as tf.Tensor4D;
          return drop > 0 ? (rows.slice([0, 0, drop, 0]) as tf.Tensor4D) : rows;
        };
        return { k: pick(layer.k), v: pick(layer.v) };
      });
    });
    for (const layer of old) tf.dispose([layer.k, layer.v]);
    this.pads = pads.map((p) => p - drop);
    this.cachedLength -= drop;
  }

  /** A prefill of `rows`' contexts: their cache (left-padded), its width, and last-position logits [B·V]. */
  private prefill(rows: readonly Running[]): {
    logits: Float32Array;
    cache: LayerCache[];
    pads: number[];
    width: number;
  } {
    this.counters.prefills++;
    this.counted(rows);
    const contexts = rows.map((r) => r.context);
    const width = Math.max(...contexts.map((c) => c.length));
    let pads: number[] = [];
    const result = tf.tidy(() => {
      const inputs = raggedInputs(contexts);
      pads = inputs.pads;
      const out = this.model.run(inputs.ids, {
        positions: inputs.positions,
        attentionBias: inputs.bias,
        lastOnly: true,
        returnCache: true,
      });
      return { logits: out.logits, cache: out.cache! } as unknown as tf.TensorContainer;
    }) as unknown as { logits: tf.Tensor3D; cache: LayerCache[] };
    const logits = result.logits.dataSync() as Float32Array;
    result.logits.dispose();
    return { logits, cache: result.cache, pads, width };
  }

  /** Append a prefill's rows to the cache, left-padding whichever is narrower. */
  private merge(joined: { cache: LayerCache[]; pads: number[]; width: number }): void {
    const width = Math.max(this.cachedLength, joined.width);
    const grow = width - this.cachedLength;
    const growJoined = width - joined.width;
    const old = this.cache!;
    this.cache = tf.tidy(() => {
      const widen = (t: tf.Tensor4D, by: number) =>
        by > 0
          ? (tf.pad(t, [
              [0, 0],
              [0, 0],
              [by, 0],
              [0, 0],
            ]) as tf.Tensor4D)
          : t;
      return old.map((layer, i) => ({
        k: tf.concat([widen(layer.k, grow), widen(joined.cache[i]!.k, growJoined)], 0),
        v: tf.concat([widen(layer.v, grow), widen(joined.cache[i]!.v, growJoined)], 0),
      }));
    });
    for (const layer of [...old, ...joined.cache]) tf.dispose([layer.k, layer.v]);
    this.pads = [...this.pads.map((p) => p + grow), ...joined.pads.map((p) => p + growJoined)];
    this.cachedLength = width;
  }

  /**
   * One token for each of the first `count` running sequences against the cache (which holds
   * exactly their rows); last-position logits [count·V].
   */
  private incremental(count: number): Float32Array {
    const rows = this.running.slice(0, count);
    this.counted(rows);
    const width = this.cachedLength + 1;
    const biasValues = new Float32Array(count * width);
    this.pads.forEach((pad, b) => {
      for (let k = 0; k < pad; k++) biasValues[b * width + k] = -1e9;
    });
    const past = this.cache!;
    const result = tf.tidy(() => {
      const out = this.model.run(
        tf.tensor2d(
          rows.map((r) => r.context.at(-1)!),
          [count, 1],
          "int32",
        ),
        {
          positions: tf.tensor2d(
            rows.map((r) => r.context.length - 1),
            [count, 1],
            "int32",
          ),
          attentionBias: tf.tensor4d(biasValues, [count, 1, 1, width]),
          past,
          returnCache: true,
          lastOnly: true,
        },
      );
      return { logits: out.logits, cache: out.cache! } as unknown as tf.TensorContainer;
    }) as unknown as { logits: tf.Tensor3D; cache: LayerCache[] };
    for (const layer of past) tf.dispose([layer.k, layer.v]);
    this.cache = result.cache;
    this.cachedLength = width;
    const values = result.logits.dataSync() as Float32Array;
    result.logits.dispose();
    return values;
  }
}

/** Where the first stop string begins in `text`, if one occurs. */
function firstStop(text: string, stops: readonly string[]): number | undefined {
  let first: number | undefined;
  for (const stop of stops) {
    const at = text.indexOf(stop);
    if (at >= 0 && (first === undefined || at < first)) first = at;
  }
  return first;
}
