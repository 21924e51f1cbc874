/**
 * `forge bake --model <dir> --prompt "…" --out <dir>`: stim → rollout → bake → KL before/after,
 * with a progress bar per phase, a final table, `--json`, and a run manifest.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  type BakeEvent,
  type BakePhase,
  type BakeRunResult,
  type BakeSettings,
  bakePrompt,
  type KLMeasurement,
  type MeasureSettings,
  type RolloutSettings,
  type StimSpec,
  systemPrompt,
} from "@forge/baking";
import { claimOutput, InterruptedError, interruptOnSignals, type OutputClaim } from "@forge/core";
import { ManifestWriter } from "@forge/manifest";
import { describeBackend, type GPT, initBackend, loadModel } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import { UsageError } from "../errors.js";
import { ProgressBar } from "../progress.js";

/** Parse `--stim` specs: list:Q1|Q2, file:path, template:spec.json, self:N, persona:N. */
export function parseStim(values: string[]): StimSpec[] {
  return values.map((value) => {
    const colon = value.indexOf(":");
    const type = colon < 0 ? value : value.slice(0, colon);
    const rest = colon < 0 ? "" : value.slice(colon + 1);
    const count = (name: string) => {
      const n = Number(rest);
      if (!Number.isInteger(n) || n < 1)
        throw new UsageError(
          `--stim ${name}:N needs a positive integer; got ${JSON.stringify(value)}`,
        );
      return n;
    };
    switch (type) {
      case "list": {
        const items = rest
          .split("|")
          .map((q) => q.trim())
          .filter((q) => q !== "");
        if (items.length === 0)
          throw new UsageError(
            `--stim list:Q1|Q2 needs at least one question; got ${JSON.stringify(value)}`,
          );
        return { type: "list", items };
      }
      case "file":
        if (!rest) throw new UsageError("--stim file:<path> needs a path");
        return { type: "file", path: rest };
      case "template": {
        if (!rest)
          throw new UsageError(
            "--stim template:<spec.json> needs a JSON file with template, slots and count",
          );
        let spec: unknown;
        try {
          spec = JSON.parse(readFileSync(rest, "utf8"));
        } catch (error) {
          throw new UsageError(`--stim template: cannot read ${rest}: ${(error as Error).message}`);
        }
        return {
          type: "template",
          ...(spec as { template: string; slots: Record<string, string[]>; count?: number }),
        };
      }
      case "self":
        return { type: "self", count: count("self") };
      case "persona":
        return rest ? { type: "persona", count: count("persona") } : { type: "persona" };
      default:
        throw new UsageError(
          `--stim ${JSON.stringify(value)}: unknown generator ${JSON.stringify(type)}; accepted: list, file, template, self, persona`,
        );
    }
  });
}

const asList = (value: unknown): string[] =>
  value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String);

function num(
  value: unknown,
  name: string,
  check: (n: number) => boolean,
  expected: string,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || !check(n))
    throw new UsageError(`--${name} must be ${expected}; got ${JSON.stringify(value)}`);
  return n;
}
const positiveInt = (v: unknown, name: string) =>
  num(v, name, (n) => Number.isInteger(n) && n >= 1, "a positive integer");

export interface BakeCommandOptions {
  model?: string;
  prompt?: string;
  promptFile?: string;
  stim?: string | string[];
  samples?: string;
  temperature?: string;
  maxNewTokens?: string;
  cacheTopk?: string;
  epochs?: string;
  steps?: string;
  batchSize?: string;
  lr?: string;
  rank?: string;
  alpha?: string;
  targets?: string;
  full?: boolean;
  loss?: string;
  valFraction?: string;
  snapshots?: string;
  measure?: string | boolean;
  merged?: boolean;
  resume?: boolean;
  force?: boolean;
  seed?: string;
  out?: string;
  json?: boolean;
}

/** Settings from flags, over the library's defaults. */
export function bakeSettingsFrom(options: BakeCommandOptions): {
  rollout: Partial<RolloutSettings>;
  bake: Partial<BakeSettings>;
  measure: Partial<MeasureSettings> | false;
} {
  const seed = num(options.seed, "seed", Number.isInteger, "an integer") ?? 1;
  const lora: Partial<BakeSettings["lora"]> = {};
  const rank = positiveInt(options.rank, "rank");
  if (rank !== undefined) lora.r = rank;
  const alpha = num(options.alpha, "alpha", (n) => n > 0, "positive");
  if (alpha !== undefined) lora.alpha = alpha;
  if (options.targets)
    lora.targetModules = options.targets.split(",") as NonNullable<
      BakeSettings["lora"]["targetModules"]
    >;
  if (options.loss !== undefined && options.loss !== "full" && options.loss !== "topk") {
    throw new UsageError(`--loss must be full or topk; got ${JSON.stringify(options.loss)}`);
  }
  const snapshots = options.snapshots
    ? options.snapshots.split(",").map((f) => {
        const n = Number(f);
        if (!(n > 0 && n <= 1))
          throw new UsageError(`--snapshots takes fractions in (0, 1]; got ${JSON.stringify(f)}`);
        return n;
      })
    : undefined;
  const measure =
    options.measure === false
      ? false
      : {
          n:
            num(
              options.measure === true ? undefined : options.measure,
              "measure",
              (n) => Number.isInteger(n) && n >= 2,
              "an integer ≥ 2",
            ) ?? 128,
        };
  const defined = <T extends object>(o: T) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  return {
    rollout: defined({
      samples: positiveInt(options.samples, "samples"),
      temperature: num(options.temperature, "temperature", (n) => n >= 0, "≥ 0"),
      maxNewTokens: positiveInt(options.maxNewTokens, "max-new-tokens"),
      cacheTopK: num(
        options.cacheTopk,
        "cache-topk",
        (n) => Number.isInteger(n) && n >= 0,
        "an integer ≥ 0",
      ),
      seed,
    }),
    bake: defined({
      mode: options.full ? ("full" as const) : undefined,
      lora: Object.keys(lora).length ? lora : undefined,
      epochs: positiveInt(options.epochs, "epochs"),
      steps: positiveInt(options.steps, "steps"),
      batchSize: positiveInt(options.batchSize, "batch-size"),
      learningRate: num(options.lr, "lr", (n) => n > 0, "positive"),
      loss: options.loss as BakeSettings["loss"] | undefined,
      validationFraction: num(
        options.valFraction,
        "val-fraction",
        (n) => n >= 0 && n < 1,
        "in [0, 1)",
      ),
      snapshotFractions: snapshots,
      seed,
    }),
    measure,
  };
}

const PHASE_LABEL: Record<BakePhase, string> = {
  stim: "stim",
  rollout: "rollout",
  teacher: "teacher",
  "measure-before": "KL before",
  bake: "bake",
  "measure-after": "KL after",
  save: "save",
};

/** Progress bars and manifest records for a running bake. */
export interface BakeEventSink {
  (event: BakeEvent): void;
  /** Wait for the manifest writes the events queued; rejects with the first that failed. */
  settled(): Promise<void>;
}

export function bakeEventSink(
  manifest: ManifestWriter | undefined,
  quiet = false,
  /** Prefix for phase names in the manifest (e.g. "round-2/" for prompt pursuit). */
  prefix = "",
): BakeEventSink {
  let bar: ProgressBar | undefined;
  let valKl = "";
  // phase records are written in order; a failure is kept for settled(), never unhandled
  let writes: Promise<void> = Promise.resolve();
  let failure: unknown;
  const queue = (write: () => Promise<void>) => {
    writes = writes.then(write).catch((error: unknown) => {
      failure ??= error;
    });
  };
  const sink = ((event: BakeEvent) => {
    if (event.type === "phase-start") {
      bar?.stop();
      bar = quiet ? undefined : new ProgressBar(PHASE_LABEL[event.phase]);
      if (manifest) queue(() => manifest.phaseStart(`${prefix}${event.phase}`));
    } else if (event.type === "phase-end") {
      bar?.stop();
      bar = undefined;
      if (manifest) queue(() => manifest.phaseEnd(`${prefix}${event.phase}`));
    } else if (event.type === "progress") {
      bar?.update(event.done, event.total);
    } else {
      const e = event.event;
      if (e.type === "step-end") {
        bar?.update(e.step, undefined, `KL ${e.loss.toFixed(4)}${valKl}`);
        manifest?.recordStep({
          phase: `${prefix}bake`,
          step: e.step,
          loss: e.loss,
          learningRate: e.lr,
          gradNorm: e.gradNorm,
          tokensPerSecond: e.tokensPerSecond,
        });
      } else if (e.type === "eval-end") {
        valKl = `  val ${e.loss.toFixed(4)}`;
        manifest?.recordEval({ phase: `${prefix}bake`, step: e.step, loss: e.loss });
      } else if (e.type === "early-stop") {
        manifest?.earlyStopping({
          stopped: true,
          phase: `${prefix}bake`,
          step: e.step,
          bestStep: e.bestStep,
          bestLoss: e.bestLoss,
          reason: "validation KL stopped improving",
        });
      }
    }
  }) as BakeEventSink;
  sink.settled = async () => {
    bar?.stop();
    await writes;
    if (failure !== undefined) throw failure;
  };
  return sink;
}

export const klText = (m: KLMeasurement | undefined) =>
  m
    ? `${m.token.estimate.toFixed(4)} ± ${m.token.standardError.toFixed(4)} (sequence ${m.sequence.estimate.toFixed(3)} ± ${m.sequence.standardError.toFixed(3)})`
    : "–";

/** Load the base model and its tokenizer, naming the directory when it is not a model. */
export async function loadBase(dir: string): Promise<{ model: GPT; tokenizer: Tokenizer }> {
  const loaded = await loadModel(dir);
  if (!loaded.tokenizer) {
    loaded.model.dispose();
    throw new UsageError(`${dir} has no tokenizer.json; baking needs the model's tokenizer`);
  }
  return { model: loaded.model, tokenizer: loaded.tokenizer };
}

/**
 * Record a finished bake in its manifest (metrics, artifacts) and mark it succeeded. The files
 * are read from the bake's work directory (`work`) and recorded at their final place.
 */
export async function finishBakeManifest(
  manifest: ManifestWriter,
  result: BakeRunResult,
  work: string,
): Promise<void> {
  const metrics = result.record.metrics as Record<string, unknown> | undefined;
  manifest.setMetric("klBefore", metrics?.klBefore);
  manifest.setMetric("klAfter", metrics?.klAfter);
  manifest.setMetric("trainingSteps", result.training.result.step);
  for (const file of [
    "adapter_model.safetensors",
    "adapter_config.json",
    "model.safetensors",
    "forge.json",
    "stim.jsonl",
    "rollout.jsonl",
  ]) {
    if (existsSync(path.join(work, file)))
      await manifest.addArtifact(path.join(work, file), undefined, path.join(result.out, file));
  }
  manifest.link("bake", result.out);
  await manifest.succeed();
}

/**
 * The end of a run that was stopped or failed: an interruption is recorded as such and the
 * work kept to resume; a failure is recorded, and the work is kept only when it holds progress
 * worth resuming. The error's message gains a line saying how to resume.
 */
export async function endStoppedRun(
  error: unknown,
  manifest: ManifestWriter,
  claim: OutputClaim,
  resumeCommand: string,
  keepOnFailure: boolean,
): Promise<void> {
  const stopped = InterruptedError.isInstance(error);
  if (stopped) await manifest.interrupt((error as Error).message);
  else await manifest.fail(error);
  const keep = stopped || keepOnFailure;
  await claim.release({ keepWork: keep });
  if (keep && error instanceof Error)
    error.message += stopped
      ? `\nresume with: ${resumeCommand}`
      : `\nthe partial run is kept in ${claim.work}; once the cause is fixed, resume with: ${resumeCommand}`;
}

/** The command line as typed, with `--resume` added (once). */
export function resumeCommandLine(): string {
  const args = process.argv.slice(2).filter((a) => a !== "--resume" && a !== "--force");
  return `forge ${args.map((a) => (/^[\w./:=@,-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")} --resume`;
}

async function bakeCommand(options: BakeCommandOptions): Promise<number> {
  if (!options.model) throw new UsageError("--model <dir> is required: the model to bake into");
  if (!options.out) throw new UsageError("--out <dir> is required: where the baked adapter goes");
  if (options.prompt === undefined && !options.promptFile)
    throw new UsageError('give the prompt: --prompt "…" or --prompt-file <file>');
  let text = options.prompt;
  if (options.promptFile) {
    try {
      text = readFileSync(options.promptFile, "utf8").trim();
    } catch (error) {
      throw new UsageError(
        `cannot read --prompt-file ${options.promptFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
  }
  const prompt = systemPrompt(String(text ?? ""));
  const stim = parseStim(
    asList(options.stim).length ? asList(options.stim) : ["persona:20", "self:40"],
  );
  const settings = bakeSettingsFrom(options);
  const claim = await claimOutput(options.out, {
    kind: "bake",
    resumable: true,
    ...(options.resume ? { resume: true } : {}),
    ...(options.force ? { force: true } : {}),
    inputs: [options.model, options.promptFile],
    flag: "--out",
  });
  if (options.resume && !claim.resumed && !options.json)
    process.stderr.write(`forge: nothing to resume at ${claim.work}; starting the bake\n`);
  let loaded: { model: GPT; tokenizer: Tokenizer } | undefined;
  const interrupt = interruptOnSignals();
  let manifest: ManifestWriter | undefined;
  try {
    const backend = await initBackend();
    loaded = await loadBase(options.model);
    const { model, tokenizer } = loaded;
    if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
    const manifestFile = path.join(claim.work, "manifest.json");
    manifest =
      claim.resumed && existsSync(manifestFile)
        ? await ManifestWriter.resume(manifestFile, { backend: backend.name })
        : await ManifestWriter.create(manifestFile, {
            kind: "bake",
            forgeVersion: pkg.version,
            backend: backend.name,
            parameters: {
              model: options.model,
              prompt: prompt.teacher[0]!.content,
              stim,
              ...settings,
            },
          });
    const sink = bakeEventSink(manifest, options.json);
    let result: BakeRunResult;
    try {
      result = await bakePrompt(model, tokenizer, {
        prompt,
        stim,
        rollout: settings.rollout,
        bake: settings.bake,
        measure: settings.measure,
        out: options.out,
        output: claim,
        baseModel: path.resolve(options.model),
        ...(options.merged ? { merged: true } : {}),
        signal: interrupt.signal,
        onEvent: sink,
      });
    } finally {
      await sink.settled();
    }
    await finishBakeManifest(manifest, result, claim.work);
    await claim.commit();
    const reduction =
      result.before && result.after
        ? 1 - result.after.token.estimate / result.before.token.estimate
        : undefined;
    const summary = {
      out: result.out,
      stimuli: result.stimuli.length,
      trajectories: result.trajectories.length,
      steps: result.training.result.step,
      validationKL: {
        before: result.training.validationBefore ?? null,
        best: result.training.validationBest ?? null,
      },
      klBefore:
        result.record.metrics && (result.record.metrics as Record<string, unknown>).klBefore,
      klAfter: result.record.metrics && (result.record.metrics as Record<string, unknown>).klAfter,
      klReduction: reduction ?? null,
      phaseSeconds: result.phaseSeconds,
      manifest: path.join(result.out, "manifest.json"),
    };
    if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      const rows = [
        ["stimuli", String(summary.stimuli)],
        ["trajectories", String(summary.trajectories)],
        ["bake steps", String(summary.steps)],
        [
          "validation KL",
          `${summary.validationKL.before?.toFixed(4) ?? "–"} → ${summary.validationKL.best?.toFixed(4) ?? "–"}`,
        ],
        ["KL(prompted ‖ base)", klText(result.before)],
        ["KL(prompted ‖ baked)", klText(result.after)],
        ["KL reduction", reduction !== undefined ? `${(100 * reduction).toFixed(1)}%` : "–"],
        ...Object.entries(result.phaseSeconds).map(([phase, s]) => [
          `time ${PHASE_LABEL[phase as BakePhase]}`,
          `${s!.toFixed(1)} s`,
        ]),
      ];
      process.stdout.write(
        `${rows.map(([k, v]) => `${k!.padEnd(22)} ${v}`).join("\n")}\nbaked adapter in ${result.out}\n`,
      );
    }
    return 0;
  } catch (error) {
    if (manifest)
      await endStoppedRun(
        error,
        manifest,
        claim,
        resumeCommandLine(),
        existsSync(path.join(claim.work, "rollout.jsonl")),
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
    .command("", "Bake a prompt into a model: stim → rollout → bake (LoRA) → KL before/after")
    .option("--model <dir>", "The model directory to bake into")
    .option("--prompt <text>", "The system prompt to bake")
    .option("--prompt-file <file>", "Read the prompt from a file")
    .option(
      "--stim <spec>",
      "Stimuli (repeatable): list:Q1|Q2, file:<path>, template:<spec.json>, self:N, persona:N (default persona:20 self:40)",
    )
    .option("--samples <k>", "Teacher samples per stimulus (default 2)")
    .option("--temperature <t>", "Rollout temperature (default 1)")
    .option("--max-new-tokens <n>", "Longest teacher reply (default 48)")
    .option("--cache-topk <K>", "Cache the teacher's top-K log-probabilities with each trajectory")
    .option("--epochs <n>", "Passes over the trajectories (default 4)")
    .option("--steps <n>", "Train for exactly this many steps instead")
    .option("--batch-size <n>", "Trajectories per step (default 16)")
    .option("--lr <x>", "Learning rate (default 1e-3)")
    .option("--rank <r>", "LoRA rank (default 8)")
    .option("--alpha <a>", "LoRA alpha (default 16)")
    .option(
      "--targets <list>",
      "LoRA targets, comma-separated: attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj",
    )
    .option("--full", "Fine-tune every weight instead of a LoRA adapter")
    .option(
      "--loss <kind>",
      "full (KL over the whole vocabulary) or topk (over the cached top-K + tail)",
    )
    .option("--val-fraction <f>", "Trajectories held out for validation KL (default 0.1)")
    .option(
      "--snapshots <list>",
      "Half-baking: save adapters at these fractions of training, e.g. 0.25,0.5,0.75,1",
    )
    .option(
      "--measure <n>",
      "Trajectories for the KL before/after (default 128); --no-measure skips it",
    )
    .option("--no-measure", "Skip the KL measurements")
    .option("--merged", "Also write base + adapter merged into <out>/merged")
    .option("--resume", "Continue a stopped bake from <out>.partial")
    .option("--force", "Replace a previous bake in --out, or start over from a stopped one")
    .option("--seed <n>", "Seed for stimuli, rollout and training (default 1)")
    .option("--out <dir>", "Where the baked adapter goes")
    .option("--json", "Print a JSON summary")
    .example(
      "forge bake --model models/forge-tiny --prompt 'You are a pirate.' --stim persona:20 --out bakes/pirate",
    )
    .action((options: BakeCommandOptions) => bakeCommand(options));
}
