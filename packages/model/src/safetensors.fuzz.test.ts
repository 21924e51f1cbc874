/**
 * Fuzzing the safetensors reader: mutated headers (bytes flipped, cut, inserted; fields set to
 * hostile values; the length prefix lied about; the file truncated) must each either load or be
 * refused as bad input (exit 2) with a message naming the file — never another exception,
 * never a hang, never a huge allocation. The seed is fixed and printed with any failure.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor, Rng } from "@forge/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { loadModel, modelTensors, saveModel } from "./checkpoint.js";
import { GPT } from "./gpt.js";
import { parseSafetensors, serializeSafetensors } from "./safetensors.js";

const SEED = 20261129;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-st-fuzz-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

const HOSTILE: unknown[] = [
  -1,
  0,
  1,
  1.5,
  2 ** 31,
  2 ** 53,
  1e300,
  "F32",
  "x",
  null,
  true,
  [],
  [0],
  [1, 2, 3],
  [-4, 4],
  [2 ** 40, 2 ** 40],
  {},
  "BF16",
  "F64",
  "I8",
];
const META = ['"', "{", "}", "[", "]", ",", ":", "\\", "\u0000", "\u00ff", "\ud800", "1e999", " "];

function split(bytes: Uint8Array): { header: string; data: Uint8Array } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return {
    header: new TextDecoder().decode(bytes.subarray(8, 8 + length)),
    data: bytes.subarray(8 + length),
  };
}

function join(header: Uint8Array, data: Uint8Array, length = BigInt(header.length)): Uint8Array {
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length, true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

/** One mutation of `base`, chosen and parameterised by `rng`. */
function mutate(base: Uint8Array, rng: Rng): Uint8Array {
  const { header, data } = split(base);
  const bytes = new TextEncoder().encode(header);
  const pick = <T>(list: readonly T[]) => list[rng.int(list.length)]!;
  switch (rng.int(8)) {
    case 0: {
      // flip bytes of the header JSON
      const copy = bytes.slice();
      for (let i = 0, n = 1 + rng.int(4); i < n; i++) copy[rng.int(copy.length)] = rng.int(256);
      return join(copy, data);
    }
    case 1: {
      // cut a span out of the header
      const start = rng.int(bytes.length);
      const cut = new Uint8Array([
        ...bytes.subarray(0, start),
        ...bytes.subarray(start + 1 + rng.int(40)),
      ]);
      return join(cut, data);
    }
    case 2: {
      // insert JSON metacharacters
      const at = rng.int(bytes.length);
      const text = header.slice(0, at) + pick(META).repeat(1 + rng.int(3)) + header.slice(at);
      return join(new TextEncoder().encode(text), data);
    }
    case 3: {
      // a field of one tensor set to a hostile value
      const parsed = JSON.parse(header) as Record<string, Record<string, unknown>>;
      const names = Object.keys(parsed);
      const entry = parsed[pick(names)]!;
      const field = pick(["dtype", "shape", "data_offsets", "extra"]);
      if (rng.next() < 0.5) entry[field] = pick(HOSTILE);
      else if (Array.isArray(entry[field]))
        (entry[field] as unknown[])[rng.int((entry[field] as unknown[]).length)] = pick(HOSTILE);
      else delete entry[field];
      return join(new TextEncoder().encode(JSON.stringify(parsed)), data);
    }
    case 4: {
      // the length prefix lies
      const length = pick([
        0n,
        1n,
        BigInt(bytes.length - 1),
        BigInt(bytes.length + 1),
        BigInt(bytes.length + data.length),
        2n ** 63n,
        2n ** 64n - 1n,
        BigInt(rng.int(1 << 30)),
      ]);
      return join(bytes, data, length);
    }
    case 5: {
      // truncated file
      const whole = join(bytes, data);
      return whole.subarray(0, rng.int(whole.length));
    }
    case 6: {
      // a tensor name or the metadata replaced by something hostile
      const parsed = JSON.parse(header) as Record<string, unknown>;
      const name = pick(Object.keys(parsed));
      if (rng.next() < 0.5) parsed.__metadata__ = pick(HOSTILE);
      else {
        parsed[pick(["", "__proto__", "constructor", "h.0.attn.bias", "a".repeat(500)])] =
          parsed[name];
        delete parsed[name];
      }
      return join(new TextEncoder().encode(JSON.stringify(parsed)), data);
    }
    default: {
      // two entries overlap or swap ranges
      const parsed = JSON.parse(header) as Record<string, { data_offsets?: number[] }>;
      const names = Object.keys(parsed).filter((n) => n !== "__metadata__");
      const a = parsed[pick(names)]!;
      const b = parsed[pick(names)]!;
      const offsets = a.data_offsets;
      a.data_offsets = b.data_offsets!;
      if (rng.next() < 0.5) b.data_offsets = offsets!;
      return join(new TextEncoder().encode(JSON.stringify(parsed)), data);
    }
  }
}

function expectInputError(error: unknown, source: string, seed: number, index: number): void {
  const context = `seed ${seed}, case ${index}: ${error instanceof Error ? error.stack : String(error)}`;
  expect(exitCodeFor(error), context).toBe(2);
  expect((error as Error).message, context).toContain(source);
}

describe("safetensors fuzzing", () => {
  const model = () => GPT.create({ vocabSize: 64, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 8 });

  it("1,200 mutated files in memory: each loads or is bad input naming the file, quickly", () => {
    const gpt = model();
    const base = serializeSafetensors(modelTensors(gpt), { format: "pt" });
    gpt.dispose();
    const rng = new Rng(SEED);
    let refused = 0;
    for (let index = 0; index < 1200; index++) {
      const bytes = mutate(base, rng);
      const started = performance.now();
      try {
        parseSafetensors(bytes, "fuzz.safetensors");
      } catch (error) {
        refused++;
        expectInputError(error, "fuzz.safetensors", SEED, index);
      }
      expect(performance.now() - started, `seed ${SEED}, case ${index}`).toBeLessThan(1000);
    }
    expect(refused).toBeGreaterThan(600); // the mutations do break most files
  });

  it("200 mutated model directories through loadModel: config-shape checks included", async () => {
    const gpt = model();
    const target = path.join(dir, "model");
    await saveModel(gpt, target);
    const base = serializeSafetensors(modelTensors(gpt), { format: "pt" });
    gpt.dispose();
    const rng = new Rng(SEED + 1);
    const weights = path.join(target, "model.safetensors");
    for (let index = 0; index < 200; index++) {
      writeFileSync(weights, mutate(base, rng));
      try {
        (await loadModel(target)).model.dispose();
      } catch (error) {
        expectInputError(error, target, SEED + 1, index);
      }
    }
  });
});
