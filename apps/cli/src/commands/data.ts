import { writeFileSync } from "node:fs";
import path from "node:path";
import { claimOutput, writeOutputDirectory } from "@forge/core";
import {
  buildTokenCaches,
  DEFAULT_SYNTH,
  DEFAULT_THINKING_SYNTH,
  synthesize,
  synthesizeThinking,
} from "@forge/tiny";
import { loadTokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import { UsageError } from "../errors.js";
import { integerOption, numberOption } from "../options.js";
import { ProgressBar } from "../progress.js";

/** `--out` is claimed as forge's output of `kind` (see @forge/core claimOutput). */
const outputOptions = (kind: string, options: { force?: boolean }, inputs: string[] = []) => ({
  kind,
  flag: "--out",
  inputs,
  ...(options.force ? { force: true } : {}),
});

const jsonl = (records: readonly unknown[]) =>
  `${records.map((r) => JSON.stringify(r)).join("\n")}\n`;

interface SynthCommandOptions {
  force?: boolean;
  out?: string;
  corpus?: string;
  seed?: string | number;
  conversations?: string | number;
  heldOut?: string | number;
  thoughtShare?: string | number;
  json?: boolean;
}

/** The thinking corpus (@forge/tiny synthesizeThinking): its held-out items in GSM8K's format. */
async function thinkingCommand(options: SynthCommandOptions): Promise<number> {
  if (options.heldOut !== undefined)
    throw new UsageError(
      "--held-out is for the tiny corpus; the thinking corpus holds out 10% of the operand pairs",
    );
  const share =
    numberOption(options.thoughtShare, "thought-share", (n) => n >= 0 && n <= 1, "in [0, 1]") ??
    DEFAULT_THINKING_SYNTH.thoughtShare;
  const settings = {
    seed: integerOption(options.seed, "seed", {
      minimum: 0,
      fallback: DEFAULT_THINKING_SYNTH.seed,
    }),
    conversations: integerOption(options.conversations, "conversations", {
      minimum: 1,
      fallback: DEFAULT_THINKING_SYNTH.conversations,
    }),
    thoughtShare: share,
  };
  const started = performance.now();
  const corpus = synthesizeThinking(settings);
  const meta = {
    generator: "forge thinking corpus (two-digit sums, some answers thinking first)",
    version: 1,
    settings,
    files: corpusFiles(corpus),
  };
  await writeCorpus(options, corpus, meta);
  const seconds = (performance.now() - started) / 1000;
  if (options.json)
    process.stdout.write(`${JSON.stringify({ ...meta, out: options.out, seconds }, null, 2)}\n`);
  else
    process.stdout.write(
      `wrote ${corpus.train.length} training conversations (${Math.round(100 * settings.thoughtShare)}% thinking first), ` +
        `${corpus.heldOut.length} held-out items (GSM8K format) and ${corpus.pretrain.length} pretraining sentences ` +
        `to ${options.out} in ${seconds.toFixed(1)} s (seed ${settings.seed})\n`,
    );
  return 0;
}

interface CorpusParts {
  train: unknown[];
  heldOut: unknown[];
  pretrain: string[];
}

const corpusFiles = (corpus: CorpusParts) => ({
  "train.jsonl": corpus.train.length,
  "heldout.jsonl": corpus.heldOut.length,
  "pretrain.jsonl": corpus.pretrain.length,
});

/** A corpus directory: train.jsonl, heldout.jsonl, pretrain.jsonl ({text}) and meta.json. */
function writeCorpus(options: SynthCommandOptions, corpus: CorpusParts, meta: unknown) {
  return writeOutputDirectory(options.out!, outputOptions("corpus", options), async (staging) => {
    writeFileSync(path.join(staging, "train.jsonl"), jsonl(corpus.train));
    writeFileSync(path.join(staging, "heldout.jsonl"), jsonl(corpus.heldOut));
    writeFileSync(
      path.join(staging, "pretrain.jsonl"),
      jsonl(corpus.pretrain.map((text) => ({ text }))),
    );
    writeFileSync(path.join(staging, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
  });
}

async function synthCommand(options: SynthCommandOptions): Promise<number> {
  if (!options.out) throw new UsageError("--out <dir> is required");
  const kind = options.corpus ?? "tiny";
  if (kind === "thinking") return thinkingCommand(options);
  if (kind !== "tiny")
    throw new UsageError(`--corpus must be tiny or thinking; got ${JSON.stringify(kind)}`);
  if (options.thoughtShare !== undefined)
    throw new UsageError("--thought-share is for --corpus thinking");
  const settings = {
    ...DEFAULT_SYNTH,
    seed: integerOption(options.seed, "seed", { minimum: 0, fallback: DEFAULT_SYNTH.seed }),
    conversations: integerOption(options.conversations, "conversations", {
      minimum: 1,
      fallback: DEFAULT_SYNTH.conversations,
    }),
    heldOutPerCell: integerOption(options.heldOut, "held-out", {
      minimum: 1,
      fallback: DEFAULT_SYNTH.heldOutPerCell,
    }),
  };
  const started = performance.now();
  const corpus = synthesize(settings);
  const meta = {
    generator: "forge-tiny synthetic chat corpus",
    version: 1,
    settings,
    files: corpusFiles(corpus),
  };
  await writeCorpus(options, corpus, meta);
  const seconds = (performance.now() - started) / 1000;
  if (options.json)
    process.stdout.write(`${JSON.stringify({ ...meta, out: options.out, seconds }, null, 2)}\n`);
  else {
    process.stdout.write(
      `wrote ${corpus.train.length} training conversations, ${corpus.heldOut.length} held-out items and ${corpus.pretrain.length} ` +
        `pretraining sentences to ${options.out} in ${seconds.toFixed(1)} s (seed ${settings.seed})\n`,
    );
  }
  return 0;
}

interface BuildCommandOptions {
  force?: boolean;
  input?: string;
  tokenizer?: string;
  out?: string;
  blockSize?: string | number;
  valFraction?: string | number;
  json?: boolean;
}

async function buildCommand(options: BuildCommandOptions): Promise<number> {
  if (!options.input)
    throw new UsageError("--input <dir> is required: the output of forge data synth");
  if (!options.tokenizer) throw new UsageError("--tokenizer <path> is required");
  if (!options.out) throw new UsageError("--out <dir> is required");
  const blockSize = integerOption(options.blockSize, "block-size", { minimum: 8, fallback: 256 });
  const valFraction = Number(options.valFraction ?? 0.02);
  if (!(valFraction > 0 && valFraction < 0.5))
    throw new UsageError(`--val-fraction must be in (0, 0.5); got ${options.valFraction}`);
  const tokenizer = await loadTokenizer(options.tokenizer);
  const started = performance.now();
  const claim = await claimOutput(
    options.out,
    outputOptions("token-caches", options, [options.input, options.tokenizer]),
  );
  const bar = new ProgressBar("build", { unit: "records" });
  let metas: Awaited<ReturnType<typeof buildTokenCaches>>;
  try {
    metas = await buildTokenCaches(options.input, tokenizer, claim.work, {
      blockSize,
      valFraction,
      info: {
        source: path.resolve(options.input),
        tokenizer: path.resolve(options.tokenizer),
        blockSize,
      },
      onProgress: (done, total) => bar.update(done, total),
    });
    await claim.commit();
  } catch (error) {
    await claim.release();
    throw error;
  } finally {
    bar.stop();
  }
  const summary = {
    out: options.out,
    blockSize,
    caches: Object.fromEntries(
      Object.entries(metas).map(([name, meta]) => [
        name,
        { tokens: meta.tokens, examples: meta.examples },
      ]),
    ),
    seconds: (performance.now() - started) / 1000,
  };
  if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    const lines = Object.entries(metas).map(
      ([name, meta]) =>
        `${name}: ${meta.tokens} tokens${meta.examples !== undefined ? `, ${meta.examples} examples` : ""}`,
    );
    process.stdout.write(
      `built token caches in ${options.out} (${summary.seconds.toFixed(1)} s)\n  ${lines.join("\n  ")}\n`,
    );
  }
  return 0;
}

export function register(cli: CAC): void {
  cli
    .command("synth", "Generate forge-tiny's synthetic chat corpus (deterministic under --seed)")
    .option(
      "--out <dir>",
      "Where to write train.jsonl, heldout.jsonl, pretrain.jsonl and meta.json",
    )
    .option(
      "--corpus <name>",
      "tiny (default: forge-tiny's corpus) or thinking (two-digit sums, some answers thinking first; held-out items in GSM8K format)",
    )
    .option("--seed <n>", "Random seed (default 1)")
    .option(
      "--conversations <n>",
      `Training conversations (default ${DEFAULT_SYNTH.conversations}; thinking ${DEFAULT_THINKING_SYNTH.conversations})`,
    )
    .option(
      "--held-out <n>",
      `Held-out items per task × setting (default ${DEFAULT_SYNTH.heldOutPerCell})`,
    )
    .option(
      "--thought-share <f>",
      `thinking: share of answers that think first (default ${DEFAULT_THINKING_SYNTH.thoughtShare})`,
    )
    .option("--force", "Replace a corpus forge wrote in --out before")
    .option("--json", "Print a JSON summary")
    .example("forge data synth --out data/synth")
    .example("forge data synth --corpus thinking --out data/thinking")
    .action((options: SynthCommandOptions) => synthCommand(options));

  cli
    .command(
      "build",
      "Tokenize a synth corpus into token caches: pretrain and SFT, train and validation splits",
    )
    .option("--input <dir>", "The output directory of forge data synth")
    .option("--tokenizer <path>", "tokenizer.json or a directory holding one")
    .option("--out <dir>", "Where to write the caches")
    .option(
      "--block-size <n>",
      "The model's context window; SFT examples are cut to fit it (default 256)",
    )
    .option("--val-fraction <f>", "Share of conversations held for validation (default 0.02)")
    .option("--force", "Replace token caches forge wrote in --out before")
    .option("--json", "Print a JSON summary")
    .example("forge data build --input data/synth --tokenizer data/tokenizer --out data/cache")
    .action((options: BuildCommandOptions) => buildCommand(options));
}
