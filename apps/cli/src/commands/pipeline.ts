/**
 * `forge pipeline --repo <path> [--out <dir>] [--profile tiny] [--target-tokens N] [--resume]`:
 * a model trained on a git repository's history in one command (@forge/pipeline's
 * runPipeline: analyse, scrape, tokenize, train, report). Prints each phase with a progress
 * bar, then where the model, MANIFEST_DYNAMIC.json, loss.svg and summary.md are, the wall time
 * and the peak resident memory.
 */
import path from "node:path";
import { interruptOnSignals, readJsonFile } from "@forge/core";
import { describeBackend, initBackend } from "@forge/model";
import {
  PIPELINE_PROFILES,
  type PipelineEvent,
  type PipelineResult,
  runPipeline,
} from "@forge/pipeline";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import { UsageError } from "../errors.js";
import { numberOption, positiveInt } from "../options.js";
import { ProgressBar } from "../progress.js";

interface PipelineCommandOptions {
  repo?: string;
  out?: string;
  profile?: string;
  config?: string;
  targetTokens?: string;
  batchSize?: string;
  sequenceLength?: string;
  overlap?: string;
  tokenizer?: string;
  sampleInterval?: string;
  resume?: boolean;
  force?: boolean;
  json?: boolean;
  listProfiles?: boolean;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

function progress(quiet: boolean) {
  let bar: ProgressBar | undefined;
  const say = (line: string) => {
    if (!quiet) process.stderr.write(`${line}\n`);
  };
  return (event: PipelineEvent) => {
    if (event.type === "phase-start") {
      bar = quiet
        ? undefined
        : new ProgressBar(event.phase, {
            ...(event.total !== undefined ? { total: event.total } : {}),
            ...(event.unit ? { unit: event.unit } : {}),
          });
    } else if (event.type === "progress") bar?.update(event.done, undefined, event.note);
    else if (event.type === "phase-end") {
      bar?.stop();
      bar = undefined;
      const counts = Object.entries(event.counts ?? {})
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      say(`${event.phase}: ${event.seconds.toFixed(1)} s${counts ? ` (${counts})` : ""}`);
    } else if (event.type === "phase-skipped") say(`${event.phase}: done in the stopped run`);
    else if (event.type === "plan") {
      const p = event.plan;
      say(
        `plan: ${p.epochs} epochs × ${p.stepsPerEpoch} steps, batch ${p.batchSize} (${p.parameters.batch_size?.source}), lr ${p.learningRate.toPrecision(3)}, warmup ${p.warmupSteps}`,
      );
    }
  };
}

async function pipelineCommand(options: PipelineCommandOptions): Promise<number> {
  if (options.listProfiles) {
    for (const [name, profile] of Object.entries(PIPELINE_PROFILES))
      process.stdout.write(`${name.padEnd(6)} ${profile.description}\n`);
    return 0;
  }
  if (!options.repo)
    throw new UsageError("--repo <path> is required: the git repository to train on");
  const repository = path.resolve(options.repo);
  const out = options.out ?? `${path.basename(repository).replace(/\.git$/, "")}-pipeline`;
  const overrides = options.config
    ? await readJsonFile(options.config).then((value) => {
        if (typeof value !== "object" || value === null || Array.isArray(value))
          throw new UsageError(`${options.config}: must be a JSON object of profile settings`);
        return value as Record<string, unknown>;
      })
    : undefined;
  const samplingIntervalSeconds = numberOption(
    options.sampleInterval,
    "sample-interval",
    (n) => n > 0 && n <= 3600,
    "seconds in (0, 3600]",
  );
  const targetTokens = positiveInt(options.targetTokens, "target-tokens");
  const batchSize = positiveInt(options.batchSize, "batch-size");
  const sequenceLength = positiveInt(options.sequenceLength, "sequence-length");
  const overlap = numberOption(
    options.overlap,
    "overlap",
    (n) => Number.isInteger(n) && n >= 0,
    "an integer ≥ 0",
  );
  const backend = await initBackend({ wasmThreads: "auto" });
  const quiet = Boolean(options.json);
  if (!quiet)
    process.stderr.write(`forge pipeline on ${repository}: ${describeBackend(backend)}\n`);
  const interrupt = interruptOnSignals();
  let result: PipelineResult;
  try {
    result = await runPipeline({
      repository,
      out,
      ...(options.profile ? { profile: options.profile } : {}),
      ...(overrides ? { overrides } : {}),
      ...(targetTokens !== undefined ? { targetTokens } : {}),
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(sequenceLength !== undefined ? { sequenceLength } : {}),
      ...(overlap !== undefined ? { overlap } : {}),
      ...(options.tokenizer ? { tokenizer: options.tokenizer } : {}),
      ...(samplingIntervalSeconds !== undefined ? { samplingIntervalSeconds } : {}),
      ...(options.resume ? { resume: true } : {}),
      ...(options.force ? { force: true } : {}),
      forgeVersion: pkg.version,
      backend: backend.name,
      command: ["forge", ...process.argv.slice(2)],
      signal: interrupt.signal,
      onEvent: progress(quiet),
    });
  } finally {
    interrupt.dispose();
  }
  const peakRss = process.resourceUsage().maxRSS * 1024;
  if (options.json)
    process.stdout.write(`${JSON.stringify({ ...result, peakRssBytes: peakRss }, null, 2)}\n`);
  else if (result.aborted)
    process.stdout.write(
      `stopped; the finished phases are kept in ${result.out}: continue with forge pipeline --repo ${options.repo} --out ${out} --resume\n`,
    );
  else {
    const t = result.train!;
    const loss = (n: number | null) => (n === null ? "—" : n.toFixed(4));
    process.stdout.write(
      [
        `model       ${result.model}`,
        `report      ${path.join(result.out, "summary.md")}, ${path.join(result.out, "loss.svg")}`,
        `manifest    ${result.dynamicManifest} (and manifest.json)`,
        `validation  ${loss(t.firstValidationLoss)} → ${loss(t.bestValidationLoss)} (best at step ${t.bestStep ?? "—"}; ${t.steps} steps, ${t.reason})`,
        `wall        ${result.wallSeconds.toFixed(1)} s; peak RSS ${mib(peakRss)}`,
        "",
      ].join("\n"),
    );
  }
  return result.aborted ? 130 : 0;
}

export function register(cli: CAC): void {
  cli
    .command("", "Train a model on a git repository's history, in one command")
    .option("--repo <path>", "The git repository (a work tree or a bare repository)")
    .option("--out <dir>", "Where the run goes (default <repository name>-pipeline)")
    .option("--profile <name>", "smoke, tiny (default) or prod (--list-profiles)")
    .option("--config <file.json>", 'Profile settings to replace, e.g. {"maxEpochs": 20}')
    .option("--target-tokens <n>", "Tokens to train on: epochs = clamp(floor(n / tokens), 3, 10)")
    .option("--batch-size <n>", "Fixed batch size (default: measured against free memory)")
    .option("--sequence-length <n>", "Tokens per training window (the model's context)")
    .option("--overlap <n>", "Tokens shared by consecutive windows")
    .option("--tokenizer <dir>", "Reuse this tokenizer instead of training one on the commits")
    .option("--sample-interval <s>", "Seconds between hardware samples (default 5)")
    .option("--resume", "Continue a stopped run in <out>.partial")
    .option("--force", "Replace an earlier pipeline output at --out")
    .option("--json", "Print the result as JSON (no progress)")
    .option("--list-profiles", "List the profiles")
    .example("forge pipeline --repo . --out runs/self")
    .example("forge pipeline --repo ../project --profile smoke --batch-size 4")
    .action((options: PipelineCommandOptions) => pipelineCommand(options));
}
