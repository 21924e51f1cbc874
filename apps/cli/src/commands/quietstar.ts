/**
 * `forge bake-quietstar --model <dir> --out <dir> [--eval-dataset <file|task>] …`: Quiet-STaR.
 * Thought tokens are added to the model, an A/B test asks whether thinking helps (baseline vs
 * injected thoughts over R rounds), and only if it does are the successful thought traces baked
 * into the weights; base, base + thoughts and the baked model are compared on held-out items.
 * The pipeline is @forge/baking's `bakeQuietStar`; this command resolves the options, the
 * dataset and the model, records the run manifest and prints the summary.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  addThoughtTokens,
  bakeQuietStar,
  type QuietStarConfig,
  type QuietStarEvent,
  type QuietStarResult,
  quietStarSummary,
  resolveQuietStar,
} from "@forge/baking";
import { claimOutput, interruptOnSignals } from "@forge/core";
import { loadGsm8k, parseGsm8k, type Task, taskInputs } from "@forge/eval";
import { ManifestWriter } from "@forge/manifest";
import { describeBackend, type GPT, initBackend, saveModel } from "@forge/model";
import { synthesizeThinking } from "@forge/tiny";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import { endStoppedRun, resumeCommandLine } from "../bake-run.js";
import { UsageError } from "../errors.js";
import { loadTasks } from "../files.js";
import { loadBase, resolveModelLocation } from "../models.js";
import { integerOption, numberOption } from "../options.js";
import { ProgressBar } from "../progress.js";

interface QuietStarCommandOptions {
  model?: string;
  out?: string;
  evalDataset?: string;
  evalSamples?: string;
  heldOut?: string;
  rounds?: string;
  thoughtProbability?: string;
  maxThoughtLength?: string;
  config?: string;
  seed?: string;
  requireWin?: boolean;
  tokensOnly?: boolean;
  resume?: boolean;
  force?: boolean;
  json?: boolean;
}

/** The settings: --config's JSON, then the flags over it, every field checked. */
export function quietStarSettings(options: QuietStarCommandOptions): QuietStarConfig {
  let fromFile: Record<string, unknown> = {};
  if (options.config !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.config, "utf8");
    } catch (error) {
      throw new UsageError(
        `cannot read --config ${options.config}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
    try {
      fromFile = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`${options.config}: not valid JSON (${(error as Error).message})`);
    }
  }
  const config = resolveQuietStar(fromFile, options.config ?? "configuration");
  const flags: Partial<QuietStarConfig> = {};
  const samples = options.evalSamples;
  if (samples !== undefined)
    flags.evalSamples = integerOption(samples, "eval-samples", { minimum: 2, fallback: 0 });
  if (options.heldOut !== undefined)
    flags.heldOutSamples = integerOption(options.heldOut, "held-out", { minimum: 2, fallback: 0 });
  if (options.rounds !== undefined)
    flags.abTestRounds = integerOption(options.rounds, "rounds", { minimum: 2, fallback: 0 });
  const p = numberOption(
    options.thoughtProbability,
    "thought-probability",
    (n) => n >= 0 && n <= 1,
    "a probability in [0, 1]",
  );
  if (p !== undefined) flags.thoughtProbability = p;
  if (options.maxThoughtLength !== undefined)
    flags.maxThoughtLength = integerOption(options.maxThoughtLength, "max-thought-length", {
      minimum: 1,
      fallback: 0,
    });
  if (options.seed !== undefined)
    flags.seed = integerOption(options.seed, "seed", { minimum: 0, fallback: 0 });
  if (options.evalDataset !== undefined) flags.evalDataset = options.evalDataset;
  return resolveQuietStar({ ...config, ...flags }, options.config ?? "configuration");
}

/**
 * The dataset: `thinking` (the default: the thinking corpus's held-out sums, in GSM8K format),
 * a GSM8K-format `.jsonl` file, or a forge task (a YAML file, `forge-tiny:<task>`).
 */
export async function loadDataset(spec: string | undefined): Promise<Task> {
  if (spec === undefined || spec === "thinking") {
    const { heldOut } = synthesizeThinking({ seed: 1, conversations: 1, thoughtShare: 0 });
    return parseGsm8k(heldOut.map((item) => JSON.stringify(item)).join("\n"), "thinking.jsonl");
  }
  if (spec.endsWith(".jsonl")) {
    if (!existsSync(spec))
      throw new UsageError(`--eval-dataset ${spec}: no such file (a GSM8K-format JSONL file)`);
    return loadGsm8k(spec);
  }
  const tasks = await loadTasks([spec]);
  if (tasks.length !== 1)
    throw new UsageError(`--eval-dataset ${spec} names ${tasks.length} tasks; give one`);
  return tasks[0]!;
}

const PHASE_LABEL: Record<string, string> = {
  tokens: "thought tokens",
  ab: "A/B test",
  "held-out": "held-out: base, base + thoughts",
  bake: "bake",
  "baked-eval": "held-out: baked",
  save: "save",
};

/** The thought tokens recorded in a model directory's forge.json, if any. */
function recordedThoughtTokens(modelDir: string): { start?: unknown; end?: unknown } | undefined {
  const file = path.join(modelDir, "forge.json");
  if (!existsSync(file)) return undefined;
  let record: unknown;
  try {
    record = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UsageError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  const tokens = (record as Record<string, unknown> | null)?.thoughtTokens;
  return tokens && typeof tokens === "object"
    ? (tokens as { start?: unknown; end?: unknown })
    : undefined;
}

/**
 * --tokens-only: the model with thought tokens added, written to --out as a model directory
 * (to fine-tune on a thinking corpus before the A/B test).
 */
async function tokensOnly(
  options: QuietStarCommandOptions,
  config: QuietStarConfig,
): Promise<number> {
  const modelDir = await resolveModelLocation(options.model);
  const backend = await initBackend({ wasmThreads: "auto" });
  if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
  const base = await loadBase(modelDir);
  const recorded = recordedThoughtTokens(modelDir);
  let added: ReturnType<typeof addThoughtTokens> | undefined;
  try {
    added = addThoughtTokens(base.model, base.tokenizer, {
      start: config.startThoughtToken,
      end: config.endThoughtToken,
      init: config.thoughtInit,
      source: modelDir,
      ...(recorded ? { recorded } : {}),
    });
    await saveModel(added.model, options.out!, {
      tokenizer: added.tokenizer,
      forge: {
        kind: "thought-tokens",
        parentModel: path.resolve(modelDir),
        thoughtTokens: {
          start: added.tokens.start,
          end: added.tokens.end,
          startId: added.tokens.startId,
          endId: added.tokens.endId,
        },
        thoughtInit: config.thoughtInit,
        createdAt: new Date().toISOString(),
      },
      inputs: [modelDir],
      flag: "--out",
      ...(options.force ? { force: true } : {}),
    });
  } finally {
    if (added && added.model !== base.model) added.model.dispose();
    base.model.dispose();
  }
  const summary = { out: path.resolve(options.out!), added: added.added, tokens: added.tokens };
  process.stdout.write(
    options.json
      ? `${JSON.stringify(summary, null, 2)}\n`
      : `thought tokens ${added.added ? "added" : "present"}: ${added.tokens.start} (${added.tokens.startId}), ${added.tokens.end} (${added.tokens.endId}); model written to ${summary.out}\n`,
  );
  return 0;
}

async function quietStarCommand(options: QuietStarCommandOptions): Promise<number> {
  if (!options.out)
    throw new UsageError("--out <dir> is required: where the report and the baked model go");
  const config = quietStarSettings(options);
  if (options.tokensOnly) return tokensOnly(options, config);
  const task = await loadDataset(config.evalDataset);
  const modelDir = await resolveModelLocation(options.model);
  const claim = await claimOutput(options.out, {
    kind: "quietstar",
    resumable: true,
    ...(options.resume ? { resume: true } : {}),
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, options.config, ...taskInputs(task)],
    flag: "--out",
  });
  if (options.resume && !claim.resumed && !options.json)
    process.stderr.write(`forge: nothing to resume at ${claim.work}; starting over\n`);
  const interrupt = interruptOnSignals();
  let loaded: { model: GPT; recorded?: Record<string, unknown> } | undefined;
  let manifest: ManifestWriter | undefined;
  try {
    const backend = await initBackend({ wasmThreads: "auto" });
    if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
    const base = await loadBase(modelDir);
    loaded = { model: base.model };
    const recorded = recordedThoughtTokens(modelDir);
    const manifestFile = path.join(claim.work, "manifest.json");
    manifest = await ManifestWriter.open(manifestFile, {
      resume: claim.resumed,
      kind: "quietstar",
      forgeVersion: pkg.version,
      backend: backend.name,
      parameters: { model: modelDir, dataset: task.file ?? task.name, ...config },
    });
    const run = manifest;
    let bar: ProgressBar | undefined;
    const onEvent = (event: QuietStarEvent) => {
      if (event.type === "phase-start") {
        void run.phaseStart(event.phase);
        if (!options.json && (event.phase === "ab" || event.phase === "bake"))
          bar = new ProgressBar(PHASE_LABEL[event.phase]!, {
            unit: event.phase === "ab" ? "arms" : "steps",
          });
        else if (!options.json) process.stderr.write(`${PHASE_LABEL[event.phase]}…\n`);
      } else if (event.type === "phase-end") {
        bar?.stop();
        bar = undefined;
        void run.phaseEnd(event.phase);
      } else if (event.type === "ab-progress") {
        bar?.update(
          event.done,
          event.total,
          `round ${event.round + 1} ${event.arm} ${(event.accuracy * 100).toFixed(1)}%`,
        );
      } else if (event.type === "train") {
        const e = event.event;
        if (e.type === "step-end") {
          run.recordStep({
            phase: "bake",
            step: e.step,
            loss: e.loss,
            learningRate: e.lr,
            gradNorm: e.gradNorm,
            tokensPerSecond: e.tokensPerSecond,
            elapsedSeconds: e.elapsedSeconds,
          });
          bar?.update(e.step, event.steps, `loss ${e.loss.toFixed(3)}`);
        } else if (e.type === "eval-end") run.recordEval({ step: e.step, loss: e.loss });
      }
    };
    const result: QuietStarResult = await bakeQuietStar(base.model, base.tokenizer, {
      config,
      task,
      out: options.out,
      output: claim,
      baseModel: path.resolve(modelDir),
      ...(recorded ? { recordedThoughtTokens: recorded } : {}),
      signal: interrupt.signal,
      onEvent,
    });
    bar?.stop();
    manifest.setMetric("ab.baseline", result.ab.baseline.mean);
    manifest.setMetric("ab.thoughts", result.ab.thoughts.mean);
    manifest.setMetric("ab.improvement", result.ab.improvement);
    manifest.setMetric("ab.pRounds", result.ab.roundTest.p);
    manifest.setMetric("ab.pItems", result.ab.itemTest.mcnemar?.p ?? result.ab.itemTest.tTest.p);
    manifest.setMetric("ab.winner", result.ab.winner);
    manifest.setMetric("reasoning_accuracy.base", result.heldOut.base.accuracy);
    manifest.setMetric("reasoning_accuracy.thoughts", result.heldOut.thoughts.accuracy);
    if (result.heldOut.baked)
      manifest.setMetric("reasoning_accuracy.baked", result.heldOut.baked.accuracy);
    if (result.bakedImprovement) manifest.setMetric("baked_improvement", result.bakedImprovement);
    manifest.setMetric("trace_quality", result.quality);
    manifest.setMetric("baked", result.baked);
    manifest.setMetric("decision", result.decision);
    for (const file of ["report.json", "report.md", "accuracy.svg", "traces.jsonl"])
      if (existsSync(path.join(claim.work, file)))
        await manifest.addArtifact(
          path.join(claim.work, file),
          undefined,
          path.join(result.out, file),
        );
    if (result.model) manifest.link("model", result.model);
    await manifest.succeed();
    await claim.commit();
    if (options.json)
      process.stdout.write(
        `${JSON.stringify(
          {
            out: result.out,
            tokens: result.tokens,
            added: result.added,
            rounds: result.ab.rounds,
            baseline: result.ab.baseline,
            thoughts: result.ab.thoughts,
            improvement: result.ab.improvement,
            pRounds: result.ab.roundTest.p,
            pItems: result.ab.itemTest.mcnemar?.p ?? result.ab.itemTest.tTest.p,
            winner: result.ab.winner,
            reason: result.ab.reason,
            baked: result.baked,
            decision: result.decision,
            heldOut: {
              base: result.heldOut.base.accuracy,
              thoughts: result.heldOut.thoughts.accuracy,
              baked: result.heldOut.baked?.accuracy ?? null,
            },
            bakedImprovement: result.bakedImprovement ?? null,
            training: result.training
              ? { ...result.training, history: result.training.history.length }
              : null,
            model: result.model ?? null,
            phaseSeconds: result.phaseSeconds,
          },
          null,
          2,
        )}\n`,
      );
    else
      process.stdout.write(
        `${quietStarSummary(result)}\nreport: ${path.join(result.out, "report.md")}\n`,
      );
    if (!result.baked && options.requireWin) {
      process.stderr.write(`forge: --require-win: ${result.decision}\n`);
      return 1;
    }
    return 0;
  } catch (error) {
    if (manifest)
      await endStoppedRun(
        error,
        manifest,
        claim,
        resumeCommandLine(),
        existsSync(path.join(claim.work, "ab.json")),
      );
    else await claim.release();
    throw error;
  } finally {
    interrupt.dispose();
    loaded?.model.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command(
      "",
      "Quiet-STaR: add thought tokens, A/B-test thinking, and bake successful thoughts into the weights if it wins",
    )
    .option("--model <dir>", "The model: a directory, a store id, or forge-tiny (default)")
    .option("--out <dir>", "Where the report, the manifest and (if baked) model/ go")
    .option(
      "--eval-dataset <file|task>",
      "thinking (default: held-out two-digit sums), a GSM8K-format .jsonl file, or a forge task (file or forge-tiny:<task>)",
    )
    .option("--eval-samples <n>", "Items in the A/B test (default 100)")
    .option("--held-out <n>", "Items held out for base vs baked (default 100)")
    .option("--rounds <r>", "A/B rounds, one seed each (default 3)")
    .option(
      "--thought-probability <p>",
      "Chance of a thought at each injection point (default 0.5)",
    )
    .option("--max-thought-length <n>", "Most tokens in one thought (default 64)")
    .option("--config <file.json>", "Settings (QuietStarConfig fields, camelCase); flags override")
    .option("--seed <n>", "Seed of item split, sampling and training (default 1)")
    .option("--require-win", "Exit 1 when thoughts do not win (nothing baked)")
    .option(
      "--tokens-only",
      "Only add the thought tokens and write the model to --out (to fine-tune it on a thinking corpus first)",
    )
    .option("--resume", "Continue a stopped run from <out>.partial")
    .option("--force", "Replace a previous run's output in --out")
    .option("--json", "Print a JSON summary")
    .example(
      "forge bake-quietstar --model forge-tiny --out quietstar --eval-samples 100 --rounds 3",
    )
    .action((options: QuietStarCommandOptions) => quietStarCommand(options));
}
