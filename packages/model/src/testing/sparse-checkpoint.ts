/**
 * A checkpoint whose weights are a hole: config.json and a model.safetensors with a real header
 * and a sparse data section (the file claims gigabytes but takes no disk), for testing what
 * forge decides from headers alone — a load plan, a model too large for the backend — without
 * writing or allocating the weights.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { type GPTConfig, isLlamaFamily, resolveConfig, toHfConfig } from "../config.js";
import { parameterShapes } from "../gpt.js";

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

/** Write `dir`/config.json and a sparse `dir`/model.safetensors in the hub's tensor layout. */
export function writeSparseCheckpoint(
  dir: string,
  input: Parameters<typeof resolveConfig>[0],
  dtype: "F32" | "F16" | "BF16" = "BF16",
): GPTConfig {
  const config = resolveConfig(input);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(toHfConfig(config), null, 2));
  const llama = isLlamaFamily(config);
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, shape] of parameterShapes(config)) {
    const projection = llama && /_proj\.weight$/.test(name);
    const stored = projection ? [shape[1]!, shape[0]!] : shape; // torch's [out, in]
    const bytes = stored.reduce((a, b) => a * b, 1) * BYTES[dtype]!;
    const key = !llama || name === "lm_head.weight" ? name : `model.${name}`;
    header[key] = { dtype, shape: stored, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(path.join(dir, "model.safetensors"), "w");
  try {
    writeSync(fd, prefix);
    writeSync(fd, Buffer.from(json, "utf8"));
    ftruncateSync(fd, 8 + json.length + offset);
  } finally {
    closeSync(fd);
  }
  return config;
}
