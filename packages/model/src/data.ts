/**
 * Token caches on disk and the batch samplers that read them.
 *
 * A cache is a directory of shards, as niels_gpt's caches:
 *
 *   meta.json        {"format": "forge-tokens", "version": 1, "kind": "pretrain" | "sft",
 *                     "dtype": "uint16" | "uint32", "vocabSize", "tokens", "examples"?, "shards": [...]}
 *   shard_000.bin    token ids, little-endian uint16 (vocabulary ≤ 65,536) or uint32
 *   mask_000.bin     (sft) one byte per token: 1 where the token is assistant output
 *   offsets_000.bin  (sft) uint32 start of each example in the shard, plus the end
 *
 * Pretraining samples random windows (per-source mix weights, shards weighted by size);
 * SFT walks whole examples in a seeded shuffled order, epoch after epoch, with the loss masked
 * to assistant tokens. Both samplers save and restore their position, so a resumed run sees
 * exactly the batches the uninterrupted one would have.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Rng } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import { ModelError } from "./errors.js";

export type TokenDtype = "uint16" | "uint32";
export type CacheKind = "pretrain" | "sft";

export interface ShardMeta {
  file: string;
  tokens: number;
  /** sft: the mask file and the offsets file, and the number of examples. */
  mask?: string;
  offsets?: string;
  examples?: number;
}

export interface TokenCacheMeta {
  format: "forge-tokens";
  version: 1;
  kind: CacheKind;
  dtype: TokenDtype;
  vocabSize: number;
  tokens: number;
  examples?: number;
  shards: ShardMeta[];
  /** Free-form provenance (source name, tokenizer hash, …). */
  info?: Record<string, unknown>;
}

export interface Shard {
  ids: Uint16Array | Uint32Array;
  mask?: Uint8Array;
  /** Example boundaries: example i is ids[offsets[i] .. offsets[i+1]). */
  offsets?: Uint32Array;
}

export interface TokenCache {
  directory: string;
  meta: TokenCacheMeta;
  shards: Shard[];
}

/** Writes a cache into a staging directory; `close()` renames it into place. */
export class TokenCacheWriter {
  private readonly staging: string;
  private readonly shards: ShardMeta[] = [];
  private ids: number[] = [];
  private mask: number[] = [];
  private offsets: number[] = [0];
  private total = 0;
  private examples = 0;
  readonly dtype: TokenDtype;

  constructor(
    readonly directory: string,
    readonly options: {
      kind: CacheKind;
      vocabSize: number;
      shardTokens?: number;
      info?: Record<string, unknown>;
    },
  ) {
    if (!Number.isInteger(options.vocabSize) || options.vocabSize < 1) {
      throw new ModelError(
        "E_INPUT",
        `vocabSize must be a positive integer; got ${options.vocabSize}`,
      );
    }
    this.dtype = options.vocabSize <= 65536 ? "uint16" : "uint32";
    this.staging = `${path.resolve(directory)}.staging.${process.pid}`;
    rmSync(this.staging, { recursive: true, force: true });
    mkdirSync(this.staging, { recursive: true });
  }

  /** Append a document (pretrain) or one example with its assistant mask (sft). */
  append(ids: ArrayLike<number>, mask?: ArrayLike<number>): void {
    const sft = this.options.kind === "sft";
    if (sft && (!mask || mask.length !== ids.length)) {
      throw new ModelError(
        "E_INPUT",
        `sft example ${this.examples}: a mask of ${ids.length} entries is required`,
      );
    }
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.options.vocabSize) {
        throw new ModelError(
          "E_INPUT",
          `token ${id} at position ${i} is outside the vocabulary (0..${this.options.vocabSize - 1})`,
        );
      }
      this.ids.push(id);
      if (sft) this.mask.push(mask![i] ? 1 : 0);
    }
    if (sft) {
      this.offsets.push(this.ids.length);
      this.examples++;
    }
    this.total += ids.length;
    if (this.ids.length >= (this.options.shardTokens ?? 1 << 24)) this.flush();
  }

  private flush(): void {
    if (this.ids.length === 0) return;
    const index = String(this.shards.length).padStart(3, "0");
    const file = `shard_${index}.bin`;
    const array = this.dtype === "uint16" ? Uint16Array.from(this.ids) : Uint32Array.from(this.ids);
    writeFileSync(path.join(this.staging, file), new Uint8Array(array.buffer));
    const shard: ShardMeta = { file, tokens: this.ids.length };
    if (this.options.kind === "sft") {
      shard.mask = `mask_${index}.bin`;
      shard.offsets = `offsets_${index}.bin`;
      shard.examples = this.offsets.length - 1;
      writeFileSync(path.join(this.staging, shard.mask), Uint8Array.from(this.mask));
      writeFileSync(
        path.join(this.staging, shard.offsets),
        new Uint8Array(Uint32Array.from(this.offsets).buffer),
      );
    }
    this.shards.push(shard);
    this.ids = [];
    this.mask = [];
    this.offsets = [0];
  }

  /** Write meta.json and move the cache into place (replacing an older one). */
  close(): TokenCacheMeta {
    this.flush();
    const meta: TokenCacheMeta = {
      format: "forge-tokens",
      version: 1,
      kind: this.options.kind,
      dtype: this.dtype,
      vocabSize: this.options.vocabSize,
      tokens: this.total,
      ...(this.options.kind === "sft" ? { examples: this.examples } : {}),
      shards: this.shards,
      ...(this.options.info ? { info: this.options.info } : {}),
    };
    writeFileSync(path.join(this.staging, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
    const target = path.resolve(this.directory);
    rmSync(target, { recursive: true, force: true });
    renameSync(this.staging, target);
    return meta;
  }

  /** Abandon the staging directory. */
  abort(): void {
    rmSync(this.staging, { recursive: true, force: true });
  }
}

function bad(dir: string, message: string): never {
  throw new ModelError("E_FORMAT", `${dir}: ${message}`);
}

async function readBytes(file: string, expected: number, dir: string): Promise<Uint8Array> {
  const info = await stat(file).catch(() => undefined);
  if (!info) bad(dir, `${path.basename(file)} is missing`);
  if (info.size !== expected)
    bad(dir, `${path.basename(file)} has ${info.size} bytes; meta.json implies ${expected}`);
  const buffer = await readFile(file);
  const copy = new Uint8Array(expected);
  copy.set(buffer);
  return copy;
}

/** Open and validate a cache: meta.json, every file's size, every id, every offset. */
export async function openTokenCache(dir: string): Promise<TokenCache> {
  const metaFile = path.join(dir, "meta.json");
  let meta: TokenCacheMeta;
  try {
    meta = JSON.parse(await readFile(metaFile, "utf8")) as TokenCacheMeta;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ModelError(
      code ? "E_IO" : "E_FORMAT",
      code
        ? `${dir} is not a token cache: meta.json cannot be read (${code})`
        : `${metaFile}: not valid JSON`,
      { cause: error },
    );
  }
  if (meta.format !== "forge-tokens")
    bad(dir, `meta.json format is ${JSON.stringify(meta.format)}; expected "forge-tokens"`);
  if (meta.version !== 1)
    bad(dir, `meta.json version ${meta.version} is not supported (expected 1)`);
  if (meta.kind !== "pretrain" && meta.kind !== "sft")
    bad(dir, `meta.json kind must be "pretrain" or "sft"`);
  if (meta.dtype !== "uint16" && meta.dtype !== "uint32")
    bad(dir, `meta.json dtype must be "uint16" or "uint32"`);
  if (!Array.isArray(meta.shards)) bad(dir, "meta.json shards must be a list");
  const width = meta.dtype === "uint16" ? 2 : 4;
  const shards: Shard[] = [];
  let total = 0;
  for (const [i, shardMeta] of meta.shards.entries()) {
    const bytes = await readBytes(path.join(dir, shardMeta.file), shardMeta.tokens * width, dir);
    const ids =
      meta.dtype === "uint16" ? new Uint16Array(bytes.buffer) : new Uint32Array(bytes.buffer);
    for (let j = 0; j < ids.length; j++) {
      if (ids[j]! >= meta.vocabSize)
        bad(
          dir,
          `${shardMeta.file} holds token ${ids[j]} at ${j}, outside the vocabulary of ${meta.vocabSize}`,
        );
    }
    const shard: Shard = { ids };
    if (meta.kind === "sft") {
      if (!shardMeta.mask || !shardMeta.offsets || !Number.isInteger(shardMeta.examples)) {
        bad(dir, `shard ${i} of an sft cache needs mask, offsets and examples`);
      }
      shard.mask = await readBytes(path.join(dir, shardMeta.mask), shardMeta.tokens, dir);
      const offsets = new Uint32Array(
        (await readBytes(path.join(dir, shardMeta.offsets), (shardMeta.examples! + 1) * 4, dir))
          .buffer,
      );
      for (let j = 1; j < offsets.length; j++) {
        if (offsets[j]! < offsets[j - 1]!)
          bad(dir, `${shardMeta.offsets} is not increasing at ${j}`);
      }
      if (offsets[0] !== 0 || offsets[offsets.length - 1] !== shardMeta.tokens)
        bad(dir, `${shardMeta.offsets} does not span the shard`);
      shard.offsets = offsets;
    }
    total += shardMeta.tokens;
    shards.push(shard);
  }
  if (total !== meta.tokens) bad(dir, `shards hold ${total} tokens; meta.json says ${meta.tokens}`);
  return { directory: dir, meta, shards };
}

/** One training batch for a language model: predict `targets` from `ids`, where `mask` is 1. */
export interface LmBatch {
  ids: tf.Tensor2D;
  targets: tf.Tensor2D;
  mask?: tf.Tensor2D;
  /** Tokens that count towards the loss (throughput figures use it). */
  tokens: number;
}

/** A source of batches that can save and restore its position. */
export interface BatchSource<T> {
  next(): T;
  state(): unknown;
  restore(state: unknown): void;
}

export function disposeBatch(batch: LmBatch): void {
  tf.dispose([batch.ids, batch.targets, ...(batch.mask ? [batch.mask] : [])]);
}

/** Random windows of blockSize + 1 tokens from pretrain caches, mixed by weight. */
export class PretrainSampler implements BatchSource<LmBatch> {
  private rng: Rng;
  private readonly sources: { cache: TokenCache; weight: number; shardWeights: number[] }[];

  constructor(
    sources: ReadonlyArray<{ cache: TokenCache; weight?: number }>,
    private readonly options: { batchSize: number; blockSize: number; seed?: number },
  ) {
    if (sources.length === 0)
      throw new ModelError("E_INPUT", "PretrainSampler needs at least one cache");
    this.rng = new Rng(options.seed ?? 1);
    this.sources = sources.map(({ cache, weight }) => {
      if (cache.meta.kind !== "pretrain")
        throw new ModelError(
          "E_INPUT",
          `${cache.directory} is an ${cache.meta.kind} cache, not pretrain`,
        );
      const usable = cache.shards.map((s) => Math.max(0, s.ids.length - options.blockSize - 1));
      if (usable.every((u) => u === 0)) {
        throw new ModelError(
          "E_INPUT",
          `${cache.directory}: no shard is longer than blockSize + 1 (${options.blockSize + 1}) tokens`,
        );
      }
      return { cache, weight: weight ?? 1, shardWeights: usable };
    });
  }

  private pick(weights: readonly number[]): number {
    const total = weights.reduce((a, b) => a + b, 0);
    let u = this.rng.next() * total;
    for (let i = 0; i < weights.length; i++) {
      u -= weights[i]!;
      if (u < 0) return i;
    }
    return weights.length - 1;
  }

  next(): LmBatch {
    const { batchSize: b, blockSize: t } = this.options;
    const ids = new Int32Array(b * t);
    const targets = new Int32Array(b * t);
    for (let row = 0; row < b; row++) {
      const source = this.sources[this.pick(this.sources.map((s) => s.weight))]!;
      const shardIndex = this.pick(source.shardWeights);
      const tokens = source.cache.shards[shardIndex]!.ids;
      const start = this.rng.int(source.shardWeights[shardIndex]! + 1);
      for (let j = 0; j < t; j++) {
        ids[row * t + j] = tokens[start + j]!;
        targets[row * t + j] = tokens[start + j + 1]!;
      }
    }
    return {
      ids: tf.tensor2d(ids, [b, t], "int32"),
      targets: tf.tensor2d(targets, [b, t], "int32"),
      tokens: b * t,
    };
  }

  state(): unknown {
    return { rng: this.rng.snapshot };
  }

  restore(state: unknown): void {
    this.rng = Rng.restore((state as { rng: number }).rng);
  }
}

/**
 * Whole chat examples in a seeded shuffled order. An example longer than blockSize + 1 tokens
 * becomes several windows (stride blockSize); a batch is as long as its longest example
 * (rounded up to a multiple of 8), shorter ones padded with masked tokens.
 */
export class SftSampler implements BatchSource<LmBatch> {
  private readonly windows: { shard: number; start: number; end: number }[] = [];
  private order: number[] = [];
  private epoch = 0;
  private position = 0;

  constructor(
    private readonly cache: TokenCache,
    private readonly options: { batchSize: number; blockSize: number; seed?: number },
  ) {
    if (cache.meta.kind !== "sft")
      throw new ModelError("E_INPUT", `${cache.directory} is a ${cache.meta.kind} cache, not sft`);
    const span = options.blockSize + 1;
    cache.shards.forEach((shard, s) => {
      const offsets = shard.offsets!;
      for (let e = 0; e + 1 < offsets.length; e++) {
        const begin = offsets[e]!;
        const end = offsets[e + 1]!;
        if (end - begin < 2) continue;
        for (let w = begin; ; w += options.blockSize) {
          this.windows.push({ shard: s, start: w, end: Math.min(end, w + span) });
          if (w + span >= end) break;
        }
      }
    });
    if (this.windows.length === 0)
      throw new ModelError("E_INPUT", `${cache.directory} has no example of 2 or more tokens`);
    this.shuffle();
  }

  /** Examples (windows) per epoch. */
  get size(): number {
    return this.windows.length;
  }

  private shuffle(): void {
    this.order = new Rng((this.options.seed ?? 1) * 7919 + this.epoch).shuffle([
      ...this.windows.keys(),
    ]);
  }

  next(): LmBatch {
    const { batchSize: b, blockSize } = this.options;
    const rows: { shard: number; start: number; end: number }[] = [];
    for (let row = 0; row < b; row++) {
      if (this.position >= this.order.length) {
        this.epoch++;
        this.position = 0;
        this.shuffle();
      }
      rows.push(this.windows[this.order[this.position++]!]!);
    }
    // Pad to the longest example in the batch (rounded up to 8), not to the context window:
    // short chats would otherwise be mostly padding.
    const longest = Math.max(...rows.map((w) => w.end - w.start - 1));
    const t = Math.min(blockSize, Math.ceil(longest / 8) * 8);
    const ids = new Int32Array(b * t);
    const targets = new Int32Array(b * t);
    const mask = new Float32Array(b * t);
    let counted = 0;
    for (let row = 0; row < b; row++) {
      const window = rows[row]!;
      const shard = this.cache.shards[window.shard]!;
      const length = window.end - window.start - 1;
      for (let j = 0; j < length; j++) {
        ids[row * t + j] = shard.ids[window.start + j]!;
        targets[row * t + j] = shard.ids[window.start + j + 1]!;
        const learn = shard.mask![window.start + j + 1]!;
        mask[row * t + j] = learn;
        counted += learn;
      }
    }
    return {
      ids: tf.tensor2d(ids, [b, t], "int32"),
      targets: tf.tensor2d(targets, [b, t], "int32"),
      mask: tf.tensor2d(mask, [b, t]),
      tokens: counted,
    };
  }

  state(): unknown {
    return { epoch: this.epoch, position: this.position };
  }

  restore(state: unknown): void {
    const { epoch, position } = state as { epoch: number; position: number };
    this.epoch = epoch;
    this.position = position;
    this.shuffle();
  }
}
