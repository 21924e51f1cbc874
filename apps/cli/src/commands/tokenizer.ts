/**
 * `forge tokenizer train|encode|decode`.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { claimOutput, parseJson } from "@forge/core";
import { loadTokenizer, saveTokenizer, type Tokenizer, train } from "@forge/tokenizer";
import type { CAC } from "cac";
import { UsageError } from "../errors.js";
import { expandInputs } from "../files.js";
import { resolveModelLocation } from "../models.js";
import { numberOption } from "../options.js";
import { ProgressBar } from "../progress.js";
import { readStdin } from "../stdin.js";

function asList(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/**
 * The texts in a file: a `.jsonl` file gives one text per line (its "text" field, or its
 * "messages" contents joined by newlines); any other file is one text.
 */
export function* textsOf(file: string): Generator<string> {
  const content = readFileSync(file, "utf8");
  if (!file.endsWith(".jsonl")) {
    yield content;
    return;
  }
  const lines = content.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const record = parseJson(line, file, i + 1);
    const { text, messages } = (record ?? {}) as { text?: unknown; messages?: unknown };
    if (typeof text === "string") yield text;
    else if (Array.isArray(messages) && messages.every((m) => typeof m?.content === "string")) {
      yield messages.map((m: { content: string }) => m.content).join("\n");
    } else {
      throw new UsageError(
        `${file}:${i + 1}: expected {"text": "…"} or {"messages": [{"role": …, "content": "…"}]}`,
      );
    }
  }
}

interface TrainCommandOptions {
  input?: string | string[];
  vocabSize?: string | number;
  out?: string;
  force?: boolean;
  pattern?: string;
  minFrequency?: string | number;
  special?: string | string[];
  json?: boolean;
}

const requiredInteger = (value: unknown, name: string, minimum: number): number => {
  const n = numberOption(
    value,
    name,
    (x) => Number.isInteger(x) && x >= minimum,
    `an integer ≥ ${minimum}`,
  );
  if (n === undefined)
    throw new UsageError(`--${name} must be an integer ≥ ${minimum}; got undefined`);
  return n;
};

async function trainCommand(positional: string[], options: TrainCommandOptions): Promise<number> {
  const vocabSize = requiredInteger(options.vocabSize, "vocab-size", 1);
  if (!options.out) throw new UsageError("--out <dir> is required: where to write tokenizer.json");
  const minFrequency =
    options.minFrequency === undefined
      ? 2
      : requiredInteger(options.minFrequency, "min-frequency", 1);
  const files = await expandInputs([...asList(options.input), ...positional]);
  const claim = await claimOutput(options.out, {
    kind: "tokenizer",
    ...(options.force ? { force: true } : {}),
    inputs: files,
    flag: "--out",
  });
  const bar = new ProgressBar("train", { unit: "merges" });
  let textsRead = 0;
  function* texts() {
    for (const file of files) {
      for (const text of textsOf(file)) {
        textsRead++;
        yield text;
      }
    }
  }
  let tokenizer: ReturnType<typeof train>;
  let written: string[];
  try {
    tokenizer = train(texts(), {
      vocabSize,
      minFrequency,
      specialTokens: asList(options.special),
      ...(options.pattern ? { pattern: options.pattern } : {}),
      onProgress: (p) =>
        p.phase === "count"
          ? bar.update(p.done, undefined, `reading: ${p.done} texts`)
          : bar.update(p.done, p.total, "merging"),
    });
    bar.stop();
    const saved = await saveTokenizer(tokenizer, claim.work);
    await claim.commit();
    written = saved.files.map((file) => path.join(claim.target, path.basename(file)));
  } catch (error) {
    bar.stop();
    await claim.release();
    throw error;
  }
  const summary = {
    inputs: files.length,
    texts: textsRead,
    vocabSize: tokenizer.vocabSize,
    merges: tokenizer.merges.length,
    specialTokens: Object.fromEntries(tokenizer.specialTokens),
    seconds: Number(bar.seconds.toFixed(3)),
    files: written,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else {
    const requested = vocabSize - 256 - tokenizer.specialTokens.size;
    process.stdout.write(
      `trained ${summary.merges} merges${summary.merges < requested ? ` (of ${requested}: no pair left with count ≥ ${minFrequency})` : ""} ` +
        `from ${summary.texts} texts in ${summary.inputs} file${summary.inputs === 1 ? "" : "s"} in ${summary.seconds.toFixed(2)} s\n` +
        `vocabulary ${summary.vocabSize} ids; special tokens ${[...tokenizer.specialTokens].map(([t, id]) => `${t}=${id}`).join(" ")}\n` +
        `wrote ${written.join(", ")}\n`,
    );
  }
  return 0;
}

async function load(location: string | undefined): Promise<Tokenizer> {
  if (!location)
    throw new UsageError(
      "--tokenizer <path> is required (a tokenizer.json, a directory holding one, or forge-tiny)",
    );
  return loadTokenizer(location === "forge-tiny" ? await resolveModelLocation(location) : location);
}

interface EncodeCommandOptions {
  tokenizer?: string;
  file?: string;
  json?: boolean;
  tokens?: boolean;
  allowSpecial?: boolean;
}

async function encodeCommand(words: string[], options: EncodeCommandOptions): Promise<number> {
  const tokenizer = await load(options.tokenizer);
  const text = options.file
    ? readFileSync(options.file, "utf8")
    : words.length > 0
      ? words.join(" ")
      : await readStdin();
  const ids = tokenizer.encode(text, options.allowSpecial ? { allowedSpecial: "all" } : {});
  const tokens = ids.map((id) => tokenizer.idToToken(id));
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ count: ids.length, ids, tokens })}\n`);
  } else if (options.tokens) {
    process.stdout.write(
      `${ids.map((id, i) => `${id}\t${JSON.stringify(tokens[i])}`).join("\n")}\n`,
    );
  } else {
    process.stdout.write(`${ids.join(" ")}\n`);
  }
  return 0;
}

function parseIds(values: string[]): number[] {
  return values
    .flatMap((v) => v.split(/[\s,]+/))
    .filter((v) => v !== "")
    .map((v) => {
      const id = Number(v);
      if (!Number.isInteger(id) || id < 0)
        throw new UsageError(`${JSON.stringify(v)} is not a token id (a non-negative integer)`);
      return id;
    });
}

async function decodeCommand(
  values: string[],
  options: { tokenizer?: string; json?: boolean },
): Promise<number> {
  const tokenizer = await load(options.tokenizer);
  const ids = parseIds(values.length > 0 ? values.map(String) : [await readStdin()]);
  const text = tokenizer.decode(ids);
  process.stdout.write(options.json ? `${JSON.stringify({ text })}\n` : `${text}\n`);
  return 0;
}

export function register(cli: CAC): void {
  cli
    .command(
      "train [...inputs]",
      "Learn a byte-level BPE tokenizer from text files (.txt, or .jsonl with text/messages)",
    )
    .option("--input <glob>", "Input files or globs (repeatable; positional paths work too)")
    .option("--vocab-size <n>", "Total ids: 256 bytes + merges + special tokens")
    .option("--out <dir>", "Directory to write tokenizer.json and tokenizer_config.json")
    .option("--force", "Replace a tokenizer forge wrote in --out before")
    .option("--pattern <name>", "Pre-tokenizer: gpt2 (default), gpt4, or a regular expression")
    .option("--min-frequency <n>", "Stop when the best pair occurs fewer times (default 2)")
    .option("--special <token>", "Extra special token after the chat set (repeatable)")
    .option("--json", "Print a JSON summary")
    .example("forge tokenizer train --input 'data/**/*.txt' --vocab-size 4096 --out models/tok")
    .action((inputs: string[], options: TrainCommandOptions) => trainCommand(inputs, options));

  cli
    .command("encode [...text]", "Encode text (arguments, --file, or stdin) to ids")
    .option(
      "--tokenizer <path>",
      "tokenizer.json, or a directory with tokenizer.json or vocab.json + merges.txt",
    )
    .option("--file <file>", "Read the text from a file")
    .option("--tokens", "Print one id and its token per line")
    .option("--allow-special", "Encode special-token text (<|eot|>, …) as special ids")
    .option("--json", "Print {count, ids, tokens}")
    .example("forge tokenizer encode --tokenizer forge-tiny 'Hello there'")
    .action((text: string[], options: EncodeCommandOptions) => encodeCommand(text, options));

  cli
    .command("decode [...ids]", "Decode ids (arguments or stdin; spaces or commas) to text")
    .option(
      "--tokenizer <path>",
      "tokenizer.json, or a directory with tokenizer.json or vocab.json + merges.txt",
    )
    .option("--json", "Print {text}")
    .example("forge tokenizer decode --tokenizer forge-tiny 15496 612")
    .action((ids: string[], options: { tokenizer?: string; json?: boolean }) =>
      decodeCommand(ids, options),
    );
}
