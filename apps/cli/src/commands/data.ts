/**
 * `forge data synth` (forge-tiny's corpus) and `forge data build` (token caches).
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { claimOutput, writeOutputDirectory } from "@forge/core";
import { TokenCacheWriter } from "@forge/model";
import { type ChatMessage, loadTokenizer, type Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import { UsageError } from "../errors.js";
import { ProgressBar } from "../progress.js";
import { type Conversation, DEFAULT_SYNTH, synthesize } from "../tiny/corpus.js";

function integer(value: unknown, name: string, minimum: number, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < minimum)
    throw new UsageError(`--${name} must be an integer ≥ ${minimum}; got ${JSON.stringify(value)}`);
  return n;
}

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
  seed?: string | number;
  conversations?: string | number;
  heldOut?: string | number;
  json?: boolean;
}

async function synthCommand(options: SynthCommandOptions): Promise<number> {
  if (!options.out) throw new UsageError("--out <dir> is required");
  const settings = {
    ...DEFAULT_SYNTH,
    seed: integer(options.seed, "seed", 0, DEFAULT_SYNTH.seed),
    conversations: integer(options.conversations, "conversations", 1, DEFAULT_SYNTH.conversations),
    heldOutPerCell: integer(options.heldOut, "held-out", 1, DEFAULT_SYNTH.heldOutPerCell),
  };
  const started = performance.now();
  const corpus = synthesize(settings);
  const meta = {
    generator: "forge-tiny synthetic chat corpus",
    version: 1,
    settings,
    files: {
      "train.jsonl": corpus.train.length,
      "heldout.jsonl": corpus.heldOut.length,
      "pretrain.jsonl": corpus.pretrain.length,
    },
  };
  await writeOutputDirectory(options.out, outputOptions("corpus", options), async (staging) => {
    writeFileSync(path.join(staging, "train.jsonl"), jsonl(corpus.train));
    writeFileSync(path.join(staging, "heldout.jsonl"), jsonl(corpus.heldOut));
    writeFileSync(
      path.join(staging, "pretrain.jsonl"),
      jsonl(corpus.pretrain.map((text) => ({ text }))),
    );
    writeFileSync(path.join(staging, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
  });
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

function readJsonl<T>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line, i) => {
      try {
        return JSON.parse(line) as T;
      } catch (error) {
        throw new UsageError(`${file}:${i + 1}: not valid JSON (${(error as Error).message})`);
      }
    });
}

/** A corpus message: an assistant turn may carry `plain`, its reply with no system prompt. */
export type CorpusMessage = ChatMessage & { plain?: string };

/**
 * The conversation as a chat client with a `span`-token window would have had it. While the
 * whole conversation fits, every turn sees the system prompt. From the first turn that does
 * not fit, the client drops the system prompt (then the oldest turns, as `forge drift`'s
 * `sliding` policy does), and the assistant answers as it would with no system prompt: its
 * `plain` reply. `scrolledAt` is that turn's index (the turn count when it never happens).
 */
export function asChatted(
  tokenizer: Tokenizer,
  messages: CorpusMessage[],
  span: number,
): { system: ChatMessage[]; turns: ChatMessage[][]; scrolledAt: number } {
  const strip = (m: CorpusMessage): ChatMessage => ({ role: m.role, content: m.content });
  const system = messages[0]?.role === "system" ? [strip(messages[0])] : [];
  const raw: CorpusMessage[][] = [];
  for (let i = system.length; i < messages.length; i += 2) raw.push(messages.slice(i, i + 2));
  let scrolledAt = raw.length;
  for (let t = 1; t <= raw.length; t++) {
    const upTo = raw.slice(0, t).flat().map(strip);
    if (tokenizer.renderChat([...system, ...upTo]).ids.length > span) {
      scrolledAt = t - 1;
      break;
    }
  }
  const turns = raw.map((turn, t) =>
    turn.map((m) =>
      t >= scrolledAt && m.role === "assistant" && m.plain !== undefined
        ? { role: m.role, content: m.plain }
        : strip(m),
    ),
  );
  return { system, turns, scrolledAt };
}

/**
 * A conversation as SFT examples of at most `span` tokens: whole when it fits. A longer one is
 * cut as a chat client's sliding window cuts it (asChatted): the turns that saw the system
 * prompt form one example with it; every later turn is trained without the system prompt,
 * after as much of the preceding conversation as fits (that history is context, not target).
 */
export function sftExamples(
  tokenizer: Tokenizer,
  messages: CorpusMessage[],
  span: number,
): { ids: number[]; mask: Uint8Array }[] {
  const { system, turns, scrolledAt } = asChatted(tokenizer, messages, span);
  const whole = tokenizer.renderChat([...system, ...turns.flat()]);
  if (whole.ids.length <= span) return [{ ids: whole.ids, mask: whole.assistantMask }];
  const length = (from: number, to: number) =>
    tokenizer.renderChat(turns.slice(from, to + 1).flat()).ids.length;
  const out: { ids: number[]; mask: Uint8Array }[] = [];
  if (scrolledAt > 0) {
    const first = tokenizer.renderChat([...system, ...turns.slice(0, scrolledAt).flat()]);
    out.push({ ids: first.ids, mask: first.assistantMask });
  }
  for (let g = scrolledAt; g < turns.length; ) {
    // targets g..t fill at most half the window; history before them fills the rest
    let t = g;
    while (t + 1 < turns.length && length(g, t + 1) <= span / 2) t++;
    let j = g;
    while (j > 0 && length(j - 1, t) <= span) j--;
    const piece = tokenizer.renderChat(turns.slice(j, t + 1).flat());
    if (piece.ids.length <= span) {
      const history = j < g ? length(j, g - 1) : 0;
      const mask = piece.assistantMask.slice();
      mask.fill(0, 0, history);
      out.push({ ids: piece.ids, mask });
    }
    g = t + 1;
  }
  return out;
}

/** Stable split: a conversation is validation when its id hashes below the fraction. */
function isValidation(id: string, fraction: number): boolean {
  const hash = createHash("sha256").update(id).digest();
  return hash.readUInt32BE(0) / 2 ** 32 < fraction;
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
  const blockSize = integer(options.blockSize, "block-size", 8, 256);
  const valFraction = Number(options.valFraction ?? 0.02);
  if (!(valFraction > 0 && valFraction < 0.5))
    throw new UsageError(`--val-fraction must be in (0, 0.5); got ${options.valFraction}`);
  const tokenizer = await loadTokenizer(options.tokenizer);
  const conversations = readJsonl<Conversation>(path.join(options.input, "train.jsonl"));
  const sentences = readJsonl<{ text: string }>(path.join(options.input, "pretrain.jsonl"));
  const eot = tokenizer.specialTokenId("<|eot|>");
  const started = performance.now();
  const bar = new ProgressBar("build", {
    total: conversations.length + sentences.length,
    unit: "records",
  });
  const info = {
    source: path.resolve(options.input),
    tokenizer: path.resolve(options.tokenizer),
    blockSize,
  };
  const vocabSize = tokenizer.vocabSize;
  const claim = await claimOutput(
    options.out,
    outputOptions("token-caches", options, [options.input, options.tokenizer]),
  );
  const writer = (dir: string, kind: "pretrain" | "sft") =>
    new TokenCacheWriter(path.join(claim.work, dir), { kind, vocabSize, info });
  const writers = {
    pretrainTrain: writer("pretrain-train", "pretrain"),
    pretrainVal: writer("pretrain-val", "pretrain"),
    sftTrain: writer("sft-train", "sft"),
    sftVal: writer("sft-val", "sft"),
  };
  try {
    let done = 0;
    for (const { text } of sentences) {
      writers.pretrainTrain.append([...tokenizer.encode(text), eot]);
      bar.update(++done);
    }
    for (const conversation of conversations) {
      const validation = isValidation(conversation.id, valFraction);
      const chatted = asChatted(tokenizer, conversation.messages, blockSize + 1);
      const rendered = tokenizer.renderChat([...chatted.system, ...chatted.turns.flat()]);
      (validation ? writers.pretrainVal : writers.pretrainTrain).append(rendered.ids);
      for (const example of sftExamples(tokenizer, conversation.messages, blockSize + 1)) {
        (validation ? writers.sftVal : writers.sftTrain).append(example.ids, example.mask);
      }
      bar.update(++done);
    }
  } catch (error) {
    for (const writer of Object.values(writers)) writer.abort();
    await claim.release();
    throw error;
  }
  bar.stop();
  const metas = Object.fromEntries(
    Object.entries(writers).map(([name, writer]) => [name, writer.close()]),
  );
  await claim.commit();
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
    const line = (name: string) =>
      `${name}: ${metas[name]!.tokens} tokens${metas[name]!.examples !== undefined ? `, ${metas[name]!.examples} examples` : ""}`;
    process.stdout.write(
      `built token caches in ${options.out} (${summary.seconds.toFixed(1)} s)\n  ${Object.keys(metas).map(line).join("\n  ")}\n`,
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
    .option("--seed <n>", "Random seed (default 1)")
    .option(
      "--conversations <n>",
      `Training conversations (default ${DEFAULT_SYNTH.conversations})`,
    )
    .option(
      "--held-out <n>",
      `Held-out items per task × setting (default ${DEFAULT_SYNTH.heldOutPerCell})`,
    )
    .option("--force", "Replace a corpus forge wrote in --out before")
    .option("--json", "Print a JSON summary")
    .example("forge data synth --out data/synth")
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
