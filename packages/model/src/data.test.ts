import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import {
  disposeBatch,
  openTokenCache,
  PretrainSampler,
  SftSampler,
  TokenCacheWriter,
} from "./data.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-data-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

describe("token caches", () => {
  it("write → open round-trips pretrain shards (uint16, several shards)", async () => {
    const writer = new TokenCacheWriter(path.join(dir, "pre"), {
      kind: "pretrain",
      vocabSize: 1000,
      shardTokens: 100,
    });
    const docs = Array.from({ length: 7 }, (_, d) =>
      Array.from({ length: 40 }, (_, i) => (d * 40 + i) % 1000),
    );
    for (const doc of docs) writer.append(doc);
    const meta = writer.close();
    expect(meta).toMatchObject({
      format: "forge-tokens",
      kind: "pretrain",
      dtype: "uint16",
      tokens: 280,
    });
    expect(meta.shards.map((s) => s.tokens)).toEqual([120, 120, 40]);
    const cache = await openTokenCache(path.join(dir, "pre"));
    expect(cache.shards.flatMap((s) => [...s.ids])).toEqual(docs.flat());
  });

  it("write → open round-trips sft examples with masks and offsets", async () => {
    const writer = new TokenCacheWriter(path.join(dir, "sft"), { kind: "sft", vocabSize: 70000 });
    writer.append([1, 2, 3, 4], [0, 0, 1, 1]);
    writer.append([5, 6, 69999], [0, 1, 1]);
    const meta = writer.close();
    expect(meta).toMatchObject({ kind: "sft", dtype: "uint32", examples: 2, tokens: 7 });
    const cache = await openTokenCache(path.join(dir, "sft"));
    expect([...cache.shards[0]!.offsets!]).toEqual([0, 4, 7]);
    expect([...cache.shards[0]!.mask!]).toEqual([0, 0, 1, 1, 0, 1, 1]);
  });

  it("refuses a token outside the vocabulary when writing, and corrupt caches when opening", async () => {
    const writer = new TokenCacheWriter(path.join(dir, "bad"), { kind: "pretrain", vocabSize: 10 });
    expect(() => writer.append([1, 10])).toThrow(
      "token 10 at position 1 is outside the vocabulary (0..9)",
    );
    writer.abort();
    const target = path.join(dir, "corrupt");
    const w = new TokenCacheWriter(target, { kind: "pretrain", vocabSize: 10 });
    w.append([1, 2, 3, 4]);
    w.close();
    writeFileSync(path.join(target, "shard_000.bin"), new Uint8Array(6));
    await expect(openTokenCache(target)).rejects.toThrow(
      /shard_000.bin has 6 bytes; meta.json implies 8/,
    );
    const meta = JSON.parse(readFileSync(path.join(target, "meta.json"), "utf8"));
    writeFileSync(path.join(target, "meta.json"), JSON.stringify({ ...meta, format: "other" }));
    await expect(openTokenCache(target)).rejects.toThrow(
      /format is "other"; expected "forge-tokens"/,
    );
    await expect(openTokenCache(path.join(dir, "none"))).rejects.toThrow(
      /is not a token cache: meta.json cannot be read \(ENOENT\)/,
    );
  });
});

describe("samplers", () => {
  it("pretrain windows are consecutive tokens, targets shifted by one, mixed by weight, restorable", async () => {
    const a = new TokenCacheWriter(path.join(dir, "mixA"), { kind: "pretrain", vocabSize: 1000 });
    a.append(Array.from({ length: 300 }, (_, i) => i));
    a.close();
    const b = new TokenCacheWriter(path.join(dir, "mixB"), { kind: "pretrain", vocabSize: 1000 });
    b.append(Array.from({ length: 300 }, (_, i) => 500 + i));
    b.close();
    const sources = [
      { cache: await openTokenCache(path.join(dir, "mixA")), weight: 3 },
      { cache: await openTokenCache(path.join(dir, "mixB")), weight: 1 },
    ];
    const sampler = new PretrainSampler(sources, { batchSize: 64, blockSize: 8, seed: 1 });
    const batch = sampler.next();
    const ids = batch.ids.arraySync();
    const targets = batch.targets.arraySync();
    let fromA = 0;
    ids.forEach((row, r) => {
      for (let j = 1; j < 8; j++) expect(row[j]).toBe(row[0]! + j);
      expect(targets[r]![7]).toBe(row[7]! + 1);
      if (row[0]! < 500) fromA++;
    });
    expect(fromA / 64).toBeGreaterThan(0.55);
    disposeBatch(batch);
    const state = sampler.state();
    const next = sampler.next().ids.arraySync();
    sampler.restore(state);
    expect(sampler.next().ids.arraySync()).toEqual(next);
  });

  it("sft batches mask the loss to assistant tokens and split long examples into windows", async () => {
    const writer = new TokenCacheWriter(path.join(dir, "chat"), { kind: "sft", vocabSize: 100 });
    writer.append([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]);
    writer.append(
      Array.from({ length: 12 }, (_, i) => 10 + i),
      Array.from({ length: 12 }, (_, i) => (i >= 2 ? 1 : 0)),
    );
    writer.close();
    const sampler = new SftSampler(await openTokenCache(path.join(dir, "chat")), {
      batchSize: 4,
      blockSize: 6,
      seed: 2,
    });
    expect(sampler.size).toBe(3); // 5 tokens → 1 window; 12 tokens → windows at 0 and 6
    const batch = sampler.next();
    const rows = batch.ids.arraySync();
    const masks = batch.mask!.arraySync();
    const targets = batch.targets.arraySync();
    const short = rows.findIndex((r) => r[0] === 1);
    expect(rows[0]).toHaveLength(6); // longest window (6 tokens) rounded up to 8, capped at blockSize 6
    expect(rows[short]).toEqual([1, 2, 3, 4, 0, 0]);
    expect(targets[short]).toEqual([2, 3, 4, 5, 0, 0]);
    expect(masks[short]).toEqual([0, 1, 1, 1, 0, 0]); // predicting 3, 4, 5 (assistant)
    expect(batch.tokens).toBe(masks.flat().reduce((x, y) => x + y, 0));
    disposeBatch(batch);
    expect(tf.memory().numTensors).toBeGreaterThanOrEqual(0);
  });
});
