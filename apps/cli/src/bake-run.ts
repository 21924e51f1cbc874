/**
 * What the commands that bake share (bake, pursue, demo): the bake flags and the settings they
 * make, and the sink that turns a bake's events into progress bars and run-manifest records.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  type BakeEvent,
  type BakePhase,
  type BakeRunResult,
  type BakeSettings,
  type KLMeasurement,
  LOSS_KINDS,
  type LossKind,
  type MeasureSettings,
  parseLayers,
  type RemoteTeacherSpec,
  type RolloutSettings,
  type StimSpec,
} from "@forge/baking";
import { ForgeError, InterruptedError, type OutputClaim } from "@forge/core";
import type { ManifestWriter } from "@forge/manifest";
import { UsageError } from "./errors.js";
import { numberOption as num, positiveInt } from "./options.js";
import { ProgressBar } from "./progress.js";

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
      case "multiturn": {
        // multiturn:N or multiturn:N:T — N conversations of up to T teacher-written turns
        const [n, turns, ...extra] = rest.split(":");
        const positive = (text: string | undefined) =>
          Number.isInteger(Number(text)) && Number(text) >= 1;
        if (!positive(n) || (turns !== undefined && !positive(turns)) || extra.length)
          throw new UsageError(
            `--stim multiturn:N[:T] needs N conversations and optionally T turns, positive integers; got ${JSON.stringify(value)}`,
          );
        return {
          type: "multiturn",
          count: Number(n),
          ...(turns !== undefined ? { turns: Number(turns) } : {}),
        };
      }
      default:
        throw new UsageError(
          `--stim ${JSON.stringify(value)}: unknown generator ${JSON.stringify(type)}; accepted: list, file, template, self, persona, multiturn`,
        );
    }
  });
}

/**
 * `--stim` as given; undefined when none is, for the library's default mix for the model
 * (`defaultStimuli`, once the model's directory is known).
 */
export function parseStimOption(values: string | string[] | undefined): StimSpec[] | undefined {
  const given = values === undefined ? [] : Array.isArray(values) ? values : [values];
  return given.length ? parseStim(given) : undefined;
}

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
  lossBeta?: string;
  lossTemperature?: string;
  progressive?: string;
  layers?: string;
  valFraction?: string;
  patience?: string;
  snapshots?: string;
  measure?: string | boolean;
  merged?: boolean;
  resume?: boolean;
  force?: boolean;
  seed?: string;
  out?: string;
  report?: boolean;
  json?: boolean;
  teacherUrl?: string;
  teacherModel?: string;
  teacherConcurrency?: string;
}

/**
 * `--teacher-url`, `--teacher-model`, `--teacher-concurrency`: a remote teacher, or none. The
 * endpoint's key, when it needs one, is read from FORGE_TEACHER_API_KEY (never recorded).
 */
export function remoteTeacherFrom(
  options: Pick<BakeCommandOptions, "teacherUrl" | "teacherModel" | "teacherConcurrency">,
): RemoteTeacherSpec | undefined {
  if (options.teacherUrl === undefined) {
    for (const flag of ["teacherModel", "teacherConcurrency"] as const)
      if (options[flag] !== undefined)
        throw new UsageError(
          `--${flag === "teacherModel" ? "teacher-model" : "teacher-concurrency"} goes with --teacher-url <base>`,
        );
    return undefined;
  }
  const url = String(options.teacherUrl);
  if (!/^https?:\/\/[^\s]+$/.test(url))
    throw new UsageError(
      `--teacher-url must be an http:// or https:// base URL, such as http://127.0.0.1:8000; got ${JSON.stringify(url)}`,
    );
  const concurrency = positiveInt(options.teacherConcurrency, "teacher-concurrency");
  return {
    url,
    ...(options.teacherModel !== undefined ? { model: String(options.teacherModel) } : {}),
    ...(concurrency !== undefined ? { concurrency } : {}),
  };
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
  const loss = lossOption(options.loss);
  const lossBeta = num(options.lossBeta, "loss-beta", (n) => n >= 0 && n <= 1, "in [0, 1]");
  if (lossBeta !== undefined && loss !== "jsd" && loss !== "topk-jsd")
    throw new UsageError(`--loss-beta is the β of --loss jsd or topk-jsd; the loss is ${loss}`);
  const lossTemperature = num(
    options.lossTemperature,
    "loss-temperature",
    (n) => n > 0,
    "positive",
  );
  if (lossTemperature !== undefined && loss !== "distillation")
    throw new UsageError(
      `--loss-temperature is the temperature of --loss distillation; the loss is ${loss}`,
    );
  if (options.layers !== undefined) lora.layers = layersOption(options.layers, "layers");
  const progressive = progressiveOption(options.progressive);
  const patience = num(
    options.patience,
    "patience",
    (n) => Number.isInteger(n) && n >= 0,
    "an integer ≥ 0 (0: train every epoch)",
  );
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
      loss,
      lossBeta,
      lossTemperature,
      progressive,
      validationFraction: num(
        options.valFraction,
        "val-fraction",
        (n) => n >= 0 && n < 1,
        "in [0, 1)",
      ),
      earlyStopping: patience === undefined ? undefined : { patience, minDelta: 0 },
      snapshotFractions: snapshots,
      seed,
    }),
    measure,
  };
}

/** `--loss`: one of the bake's losses (default forward-kl; "full" is its older name). */
export function lossOption(value: string | undefined): LossKind {
  if (value === undefined) return "forward-kl";
  if (value === "full") return "forward-kl";
  if (!(LOSS_KINDS as readonly string[]).includes(value))
    throw new UsageError(
      `--loss must be one of ${LOSS_KINDS.join(", ")}; got ${JSON.stringify(value)}`,
    );
  return value as LossKind;
}

/** A block list flag (`--layers 0-1,3`), its error naming the flag. */
export function layersOption(value: unknown, flag: string): number[] {
  try {
    return parseLayers(String(value), `--${flag}`);
  } catch (error) {
    if (ForgeError.isInstance(error)) throw new UsageError((error as Error).message);
    throw error;
  }
}

/** `--progressive <from>[:<fraction>]`: α ramps from `from` to 1 over that fraction of training (default 0.5). */
export function progressiveOption(
  value: string | undefined,
): { from: number; fraction: number } | undefined {
  if (value === undefined) return undefined;
  const [fromText, fractionText = "0.5", ...rest] = String(value).split(":");
  const from = Number(fromText);
  const fraction = Number(fractionText);
  if (
    rest.length ||
    fromText?.trim() === "" ||
    !(from >= 0 && from <= 1) ||
    !(fraction > 0 && fraction <= 1)
  )
    throw new UsageError(
      `--progressive must be <from>[:<fraction>] with from in [0, 1] and fraction in (0, 1], e.g. 0.2:0.5; got ${JSON.stringify(value)}`,
    );
  return { from, fraction };
}

export const PHASE_LABEL: Record<BakePhase, string> = {
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
    "report.html",
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
