/**
 * Tokenizer training time: forge's BPE trainer vs SentencePiece's (`spm_train
 * --model_type=bpe`, Debian package `sentencepiece`) on the same corpus at the same vocabulary
 * size (8k and 32k), run one after the other in this process's session.
 *
 *   pnpm --filter @forge/tokenizer bench        (this file runs after tokenizer.bench.ts)
 *
 * The corpus (FORGE_BENCH_SPM_MB megabytes, default 12) is generated deterministically: a
 * lexicon of 120,000 pseudo-words built from 400 syllables (1–4 each), drawn with Zipf
 * frequencies (exponent 1.07, like natural language), in sentences of 4–24 words with commas,
 * capitals, digits and periods, one sentence per line. It has natural text's long tail, so
 * 32k merges exist at frequency ≥ 2 — unlike a small fixed word list.
 *
 * What each side does: forge pre-tokenizes with the GPT-2 pattern and learns byte-level merges
 * (vocabulary = 256 bytes + merges + 4 chat tokens); spm_train normalizes (NFKC), treats
 * whitespace as ▁, learns merges over characters (vocabulary = its 3 meta pieces + characters
 * + merges) with its default thread count. Times are wall-clock, including reading the corpus.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mulberry32 } from "@forge/core";
import { train } from "../src/train.js";

export function zipfCorpus(megabytes: number, seed = 20): string {
  const random = mulberry32(seed);
  const consonants = "bcdfghjklmnprstvwxz";
  const vowels = "aeiouy";
  const syllables: string[] = [];
  while (syllables.length < 400) {
    const c = consonants[Math.floor(random() * consonants.length)]!;
    const v = vowels[Math.floor(random() * vowels.length)]!;
    const tail = random() < 0.3 ? consonants[Math.floor(random() * consonants.length)]! : "";
    const s = c + v + tail;
    if (!syllables.includes(s)) syllables.push(s);
  }
  const lexicon: string[] = [];
  const seen = new Set<string>();
  while (lexicon.length < 120_000) {
    const n = 1 + Math.floor(random() * random() * 4);
    let word = "";
    for (let i = 0; i < n; i++) word += syllables[Math.floor(random() * syllables.length)]!;
    if (!seen.has(word)) {
      seen.add(word);
      lexicon.push(word);
    }
  }
  // cumulative Zipf weights over ranks
  const cumulative = new Float64Array(lexicon.length);
  let total = 0;
  for (let r = 0; r < lexicon.length; r++) {
    total += 1 / (r + 1) ** 1.07;
    cumulative[r] = total;
  }
  const draw = () => {
    const u = random() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lexicon[lo]!;
  };
  const lines: string[] = [];
  let size = 0;
  const target = megabytes * 1e6;
  while (size < target) {
    const n = 4 + Math.floor(random() * 21);
    const words: string[] = [];
    for (let i = 0; i < n; i++) {
      let w = draw();
      if (i === 0) w = w[0]!.toUpperCase() + w.slice(1);
      if (random() < 0.03) w = String(Math.floor(random() * 2000));
      words.push(w);
      if (i < n - 1 && random() < 0.08) words[words.length - 1] += ",";
    }
    const line = `${words.join(" ")}.`;
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join("\n")}\n`;
}

function spmAvailable(): string | undefined {
  try {
    execFileSync("spm_train", ["--help"], { stdio: "ignore" });
    return undefined;
  } catch (error) {
    const code = (error as { code?: string }).code;
    // spm_train --help exits non-zero but runs; only a missing binary is "unavailable"
    return code === "ENOENT" ? "spm_train not found (apt-get install -y sentencepiece)" : undefined;
  }
}

const megabytes = Number(process.env.FORGE_BENCH_SPM_MB ?? 12);
const corpus = zipfCorpus(megabytes);
const bytes = Buffer.byteLength(corpus);
console.log(
  `\ntokenizer training vs SentencePiece: ${(bytes / 1e6).toFixed(1)} MB generated Zipf text (120k pseudo-words, seed 20); load average ${os.loadavg()[0]!.toFixed(2)}`,
);
const missing = spmAvailable();
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-spm-bench-"));
try {
  const input = path.join(dir, "corpus.txt");
  writeFileSync(input, corpus);
  for (const vocab of [8000, 32000]) {
    let start = performance.now();
    const trained = train([corpus], { vocabSize: vocab });
    const forgeSeconds = (performance.now() - start) / 1000;
    let line = `  vocab ${String(vocab).padStart(5)}: forge ${forgeSeconds.toFixed(1)} s (${trained.merges.length} merges)`;
    if (missing) {
      line += `; SentencePiece: ${missing}`;
    } else {
      start = performance.now();
      execFileSync(
        "spm_train",
        [
          `--input=${input}`,
          `--model_prefix=${path.join(dir, `spm${vocab}`)}`,
          `--vocab_size=${vocab}`,
          "--model_type=bpe",
          "--max_sentence_length=100000",
          "--minloglevel=2",
        ],
        { stdio: "ignore" },
      );
      const spmSeconds = (performance.now() - start) / 1000;
      line += `, spm_train --model_type=bpe ${spmSeconds.toFixed(1)} s; forge is ${(spmSeconds / forgeSeconds).toFixed(2)}× SentencePiece's speed`;
    }
    console.log(line);
  }
} finally {
  rmSync(dir, { recursive: true, force: true }); // this run's own temp directory
}
