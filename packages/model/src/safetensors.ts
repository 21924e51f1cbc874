/**
 * safetensors, read and written: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range, then the raw little-endian data.
 *
 * The reader validates everything before allocating: the header length against the file
 * size, the header JSON, every dtype, shape and offset pair (inside the data, sized exactly
 * for its shape, not overlapping another). A truncated or hostile file is a `ModelError`
 * naming the file and the tensor at fault — never a crash or a huge allocation. F32, F16 and
 * BF16 load as float32.
 */
import { open } from "node:fs/promises";
import { describeSystemError, parseJson, writeFileAtomic } from "@forge/core";
import { ModelError } from "./errors.js";

export type StoredDtype = "F32" | "F16" | "BF16";
const BYTES: Record<StoredDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** Headers above this are refused (real ones are kilobytes). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface LoadedTensor {
  /** The dtype as stored; `data` is always float32. */
  dtype: StoredDtype;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsContent {
  tensors: Map<string, LoadedTensor>;
  metadata: Record<string, string>;
}

interface Entry {
  name: string;
  dtype: StoredDtype;
  shape: number[];
  begin: number;
  end: number;
}

function fail(source: string, message: string): never {
  throw new ModelError("E_FORMAT", `${source}: ${message}`);
}

/** Validate a parsed header against the data length; returns the entries sorted by offset. */
function validateHeader(
  header: unknown,
  dataLength: number,
  source: string,
): { entries: Entry[]; metadata: Record<string, string> } {
  if (typeof header !== "object" || header === null || Array.isArray(header))
    fail(source, "the header is not a JSON object");
  const entries: Entry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (
        typeof value !== "object" ||
        value === null ||
        Object.values(value).some((v) => typeof v !== "string")
      ) {
        fail(source, "__metadata__ must map strings to strings");
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== "object" || info === null)
      fail(source, `tensor ${name}: entry is not an object`);
    if (typeof info.dtype !== "string" || !(info.dtype in BYTES)) {
      fail(
        source,
        `tensor ${name}: dtype ${JSON.stringify(info.dtype)} is not supported; accepted: F32, F16, BF16`,
      );
    }
    const dtype = info.dtype as StoredDtype;
    if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      fail(
        source,
        `tensor ${name}: shape ${JSON.stringify(info.shape)} is not a list of non-negative integers`,
      );
    }
    const shape = info.shape as number[];
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      fail(
        source,
        `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) {
      fail(
        source,
        `tensor ${name}: data_offsets [${begin}, ${end}] fall outside the ${dataLength} bytes of data (truncated file?)`,
      );
    }
    const elements = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== elements * BYTES[dtype]) {
      fail(
        source,
        `tensor ${name}: ${end - begin} bytes do not hold shape [${shape}] of ${dtype} (${elements * BYTES[dtype]} bytes)`,
      );
    }
    entries.push({ name, dtype, shape, begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]!.begin < entries[i - 1]!.end) {
      fail(source, `tensors ${entries[i - 1]!.name} and ${entries[i]!.name} overlap`);
    }
  }
  return { entries, metadata };
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

function decode(bytes: Uint8Array, dtype: StoredDtype): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / BYTES[dtype];
  const out = new Float32Array(n);
  if (dtype === "F32") {
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (dtype === "F16") {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = view.getUint16(i * 2, true) << 16;
  }
  return out;
}

function parseHeaderJson(bytes: Uint8Array, source: string): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail(source, "the header is not valid UTF-8");
  }
  try {
    return parseJson(text, `${source} header`);
  } catch (error) {
    // parseJson names the position without echoing the header's bytes
    return fail(
      source,
      `the header is not valid JSON (${(error as Error).message.split(": ").at(-1)})`,
    );
  }
}

function headerLength(prefix: Uint8Array, total: number, source: string): number {
  if (total < 8)
    fail(
      source,
      `${total} bytes is too short for a safetensors file (8-byte header length missing)`,
    );
  const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(total - 8)) {
    fail(
      source,
      `header length ${length} is larger than the ${total - 8} bytes after it (truncated or not safetensors)`,
    );
  }
  if (length > BigInt(MAX_HEADER_BYTES))
    fail(source, `header length ${length} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  return Number(length);
}

/** Parse safetensors bytes already in memory. */
export function parseSafetensors(bytes: Uint8Array, source = "safetensors"): SafetensorsContent {
  const length = headerLength(bytes.subarray(0, 8), bytes.byteLength, source);
  const header = parseHeaderJson(bytes.subarray(8, 8 + length), source);
  const dataStart = 8 + length;
  const { entries, metadata } = validateHeader(header, bytes.byteLength - dataStart, source);
  const tensors = new Map<string, LoadedTensor>();
  for (const entry of entries) {
    tensors.set(entry.name, {
      dtype: entry.dtype,
      shape: entry.shape,
      data: decode(bytes.subarray(dataStart + entry.begin, dataStart + entry.end), entry.dtype),
    });
  }
  return { tensors, metadata };
}

/**
 * A safetensors file opened for reading one tensor at a time: the header is read and validated
 * against the file's size first; `read(name)` then reads and decodes just that tensor, so a
 * caller can turn each into its own storage and let the bytes go before reading the next.
 */
export interface SafetensorsReader {
  file: string;
  /** Every tensor's dtype and shape, in the file's order. */
  entries: ReadonlyMap<string, { dtype: StoredDtype; shape: number[]; bytes: number }>;
  metadata: Record<string, string>;
  /** One tensor's values as float32 (F16/BF16 converted). */
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export async function openSafetensors(file: string): Promise<SafetensorsReader> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (error) {
    throw new ModelError("E_IO", `cannot read ${file}: ${describeSystemError(error)}`, {
      cause: error,
    });
  }
  try {
    const { size } = await handle.stat();
    const prefix = new Uint8Array(8);
    await handle.read(prefix, 0, Math.min(8, size), 0);
    const length = headerLength(prefix, size, file);
    const headerBytes = new Uint8Array(length);
    await handle.read(headerBytes, 0, length, 8);
    const header = parseHeaderJson(headerBytes, file);
    const { entries, metadata } = validateHeader(header, size - 8 - length, file);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const dataStart = 8 + length;
    return {
      file,
      entries: new Map(
        entries.map((e) => [e.name, { dtype: e.dtype, shape: e.shape, bytes: e.end - e.begin }]),
      ),
      metadata,
      async read(name: string): Promise<Float32Array> {
        const entry = byName.get(name);
        if (!entry) throw new ModelError("E_FORMAT", `${file}: no tensor ${name}`);
        const bytes = new Uint8Array(entry.end - entry.begin);
        if (bytes.byteLength > 0)
          await handle.read(bytes, 0, bytes.byteLength, dataStart + entry.begin);
        return decode(bytes, entry.dtype);
      },
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Read a safetensors file, validating its header before reading any tensor data. */
export async function readSafetensors(file: string): Promise<SafetensorsContent> {
  const reader = await openSafetensors(file);
  try {
    const tensors = new Map<string, LoadedTensor>();
    for (const [name, entry] of reader.entries)
      tensors.set(name, { dtype: entry.dtype, shape: entry.shape, data: await reader.read(name) });
    return { tensors, metadata: reader.metadata };
  } finally {
    await reader.close();
  }
}

/** Serialise float32 tensors to safetensors bytes (names sorted, header padded to 8 bytes). */
export function serializeSafetensors(
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const tensor = tensors.get(name)!;
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    if (elements !== tensor.data.length) {
      throw new ModelError(
        "E_INPUT",
        `tensor ${name}: ${tensor.data.length} values do not fill shape [${tensor.shape}]`,
      );
    }
    header[name] = {
      dtype: "F32",
      shape: [...tensor.shape],
      data_offsets: [offset, offset + elements * 4],
    };
    offset += elements * 4;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += " ";
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.byteLength;
  for (const name of names) {
    const { data } = tensors.get(name)!;
    for (let i = 0; i < data.length; i++) view.setFloat32(position + i * 4, data[i]!, true);
    position += data.length * 4;
  }
  return out;
}

/** Write float32 tensors as a safetensors file, atomically. */
export async function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}
