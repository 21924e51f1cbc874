/**
 * Encode throughput on GPT-2's vocabulary — forge vs gpt-tokenizer vs js-tiktoken vs tiktoken
 * (wasm) — on the same ≥ 2 MB of mixed text, in the same process; and training time for 8,000
 * merges on 1 MB.
 *
 *   pnpm --filter @forge/tokenizer bench
 *
 * "cold": each encoder's piece cache is emptied before the run (the first encode of new text);
 * "warm": the same text again, caches full. Each figure is the median of 5 runs.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";
import { clearMergeCache, encode as gptTokenizerEncode } from "gpt-tokenizer/encoding/r50k_base";
import { getEncoding } from "js-tiktoken";
import { get_encoding } from "tiktoken";
import { fromTiktokenRanks } from "../src/index.js";
import { mixedText } from "../src/mixed-text.js";
import { train } from "../src/train.js";

const shakespeareFile = path.resolve(
  import.meta.dirname,
  "../../../../shared/data/tinyshakespeare.txt",
);
const shakespeare = existsSync(shakespeareFile) ? readFileSync(shakespeareFile, "utf8") : undefined;
const text = [shakespeare ?? "", mixedText(shakespeare ? 1_200_000 : 2_200_000, 99)].join("\n");
const megabytes = Buffer.byteLength(text) / 1e6;
console.log(
  `corpus: ${megabytes.toFixed(2)} MB (${shakespeare ? "tinyshakespeare + " : ""}generated mixed text: prose, code, numbers, 12 scripts, emoji)`,
);

const forge = fromTiktokenRanks(ranks, { specialTokens: { "<|endoftext|>": 50256 } });
const jsTiktoken = getEncoding("gpt2");
const wasmTiktoken = get_encoding("gpt2");

interface Encoder {
  name: string;
  encode: (text: string) => ArrayLike<number>;
  clear: () => void;
}

const encoders: Encoder[] = [
  { name: "forge", encode: (t) => forge.encode(t), clear: () => forge.clearCache() },
  {
    name: "gpt-tokenizer",
    encode: (t) => gptTokenizerEncode(t, { disallowedSpecial: new Set() }),
    clear: () => clearMergeCache(),
  },
  { name: "js-tiktoken", encode: (t) => jsTiktoken.encode(t), clear: () => undefined },
  { name: "tiktoken (wasm)", encode: (t) => wasmTiktoken.encode(t), clear: () => undefined },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

// Same ids from everyone, or the comparison means nothing.
const reference = Array.from(encoders[0]!.encode(text));
for (const encoder of encoders.slice(1)) {
  const ids = encoder.encode(text);
  const same = ids.length === reference.length && reference.every((id, i) => id === ids[i]);
  if (!same)
    throw new Error(
      `${encoder.name} disagrees with forge on the corpus; the benchmark would be meaningless`,
    );
}

const warmup = mixedText(300_000, 5);
const results = new Map<string, { cold: number; warm: number }>();
for (const encoder of encoders) {
  encoder.encode(warmup); // JIT warm-up on different text
  const cold: number[] = [];
  const warm: number[] = [];
  for (let run = 0; run < 5; run++) {
    encoder.clear();
    let start = performance.now();
    encoder.encode(text);
    cold.push(megabytes / ((performance.now() - start) / 1000));
    start = performance.now();
    encoder.encode(text);
    warm.push(megabytes / ((performance.now() - start) / 1000));
  }
  results.set(encoder.name, { cold: median(cold), warm: median(warm) });
}

const peer = results.get("gpt-tokenizer")!;
console.log(
  "\nencode, GPT-2 vocabulary        cold MB/s   warm MB/s   cold vs gpt-tokenizer   warm vs gpt-tokenizer",
);
for (const [name, { cold, warm }] of results) {
  console.log(
    `${name.padEnd(30)} ${cold.toFixed(2).padStart(9)}   ${warm.toFixed(2).padStart(9)}   ${`${(cold / peer.cold).toFixed(2)}×`.padStart(21)}   ${`${(warm / peer.warm).toFixed(2)}×`.padStart(21)}`,
  );
}
wasmTiktoken.free();

const trainText = shakespeare ?? mixedText(1_115_394, 7);
const trainStart = performance.now();
const trained = train([trainText], { vocabSize: 256 + 8000 + 4 });
const trainSeconds = (performance.now() - trainStart) / 1000;
console.log(
  `\ntrain: ${trained.merges.length} merges on ${(Buffer.byteLength(trainText) / 1e6).toFixed(2)} MB (${shakespeare ? "tinyshakespeare" : "generated text"}) in ${trainSeconds.toFixed(2)} s (target ≤ 5 s)`,
);
