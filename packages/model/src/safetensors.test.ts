import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelError } from "./errors.js";
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from "./safetensors.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** Build a file by hand: header object + raw data bytes. */
function handMade(header: unknown, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

async function failure(p: string): Promise<ModelError> {
  const error = await readSafetensors(p).catch((e: unknown) => e);
  expect(ModelError.isInstance(error), String(error)).toBe(true);
  return error as ModelError;
}

describe("safetensors", () => {
  it("round-trips float32 tensors and metadata; the header is 8-byte aligned", async () => {
    const tensors = new Map([
      ["b.weight", { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) }],
      ["a.bias", { shape: [3], data: Float32Array.from([0.25, 1e-30, 3e30]) }],
      ["scalar", { shape: [], data: Float32Array.from([7]) }],
    ]);
    const p = path.join(dir, "round.safetensors");
    await writeSafetensors(p, tensors, { format: "pt" });
    const bytes = serializeSafetensors(tensors, { format: "pt" });
    expect(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8).toBe(0);
    const loaded = await readSafetensors(p);
    expect(loaded.metadata).toEqual({ format: "pt" });
    for (const [name, t] of tensors) {
      expect(loaded.tensors.get(name)!.shape).toEqual(t.shape);
      expect([...loaded.tensors.get(name)!.data]).toEqual([...t.data]);
    }
  });

  it("reads F16 and BF16 as float32", () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00]); // 1, -2, ~0.3333, smallest subnormal, +inf
    const bf16 = new Uint16Array([0x3f80, 0xc040]); // 1, -3
    const data = new Uint8Array([...new Uint8Array(f16.buffer), ...new Uint8Array(bf16.buffer)]);
    const content = parseSafetensors(
      handMade(
        {
          half: { dtype: "F16", shape: [5], data_offsets: [0, 10] },
          brain: { dtype: "BF16", shape: [2], data_offsets: [10, 14] },
        },
        data,
      ),
    );
    const half = [...content.tensors.get("half")!.data];
    expect(half[0]).toBe(1);
    expect(half[1]).toBe(-2);
    expect(half[2]).toBeCloseTo(0.33325, 5);
    expect(half[3]).toBeCloseTo(5.96e-8, 9);
    expect(half[4]).toBe(Number.POSITIVE_INFINITY);
    expect([...content.tensors.get("brain")!.data]).toEqual([1, -3]);
  });

  it("a truncated file is an error naming the tensor", async () => {
    const good = serializeSafetensors(
      new Map([["w", { shape: [4, 4], data: new Float32Array(16) }]]),
    );
    const error = await failure(file("truncated.safetensors", good.subarray(0, good.length - 10)));
    expect(error.message).toMatch(
      /tensor w: data_offsets \[0, 64\] fall outside the 54 bytes of data \(truncated file\?\)/,
    );
  });

  it("a header length larger than the file is refused before allocating", async () => {
    const error = await failure(
      file("huge.safetensors", handMade({}, new Uint8Array(0), 2n ** 40n)),
    );
    expect(error.message).toMatch(
      /header length 1099511627776 is larger than the \d+ bytes after it/,
    );
    const tiny = await failure(file("tiny.safetensors", new Uint8Array([1, 2, 3])));
    expect(tiny.message).toMatch(/3 bytes is too short/);
  });

  it("a tensor whose bytes do not match its shape, an unknown dtype, overlaps and bad JSON are errors", async () => {
    const data = new Uint8Array(32);
    const cases: Array<[unknown, RegExp]> = [
      [
        { w: { dtype: "F32", shape: [3, 3], data_offsets: [0, 32] } },
        /tensor w: 32 bytes do not hold shape \[3,3\] of F32 \(36 bytes\)/,
      ],
      [
        { w: { dtype: "I64", shape: [4], data_offsets: [0, 32] } },
        /tensor w: dtype "I64" is not supported; accepted: F32, F16, BF16/,
      ],
      [
        {
          a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
          b: { dtype: "F32", shape: [4], data_offsets: [8, 24] },
        },
        /tensors a and b overlap/,
      ],
      [
        { w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } },
        /shape \[-1\] is not a list of non-negative integers/,
      ],
      [
        { w: { dtype: "F32", shape: [1], data_offsets: [8, 4] } },
        /data_offsets \[8, 4\] fall outside/,
      ],
    ];
    for (const [i, [header, message]] of cases.entries()) {
      const error = await failure(file(`bad${i}.safetensors`, handMade(header, data)));
      expect(error.message).toMatch(message);
    }
    const garbage = new Uint8Array(20);
    new DataView(garbage.buffer).setBigUint64(0, 4n, true);
    garbage.set([123, 34, 120, 125], 8); // {"x}
    expect((await failure(file("json.safetensors", garbage))).message).toMatch(
      /the header is not valid JSON/,
    );
  });

  it("a missing file is an I/O error naming it", async () => {
    const error = await failure(path.join(dir, "nope.safetensors"));
    expect(error.code).toBe("E_IO");
    expect(error.message).toMatch(
      /cannot read .*nope.safetensors: no such file or directory \(ENOENT\)/,
    );
  });
});
