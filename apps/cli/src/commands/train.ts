/**
 * `forge train --phase pretrain|sft|pipeline --profile smoke|dev|tiny [--config f.json] [--resume]`
 *
 * A run lives in runs/<run-id>/: resolved_settings.json (every setting, after the profile and
 * the config file), checkpoints/<phase>/{last,best}, <phase>-model/ after each phase, and
 * model/ — the final model directory (weights, tokenizer, generation_config.json, forge.json).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import {
  acquireLock,
  claimOutput,
  interruptOnSignals,
  type Lock,
  type OutputClaim,
  writeFileAtomic,
} from "@forge/core";
import { ManifestWriter } from "@forge/manifest";
import {
  describeBackend,
  disposeBatch,
  fixedBatches,
  GPT,
  initBackend,
  lmTask,
  loadModel,
  openTokenCache,
  PretrainSampler,
  parameterCount,
  resolveConfig,
  SftSampler,
  saveModel,
  type TrainEvent,
  trainModel,
  writeModelFiles,
} from "@forge/model";
import { loadTokenizer, type Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import { UsageError } from "../errors.js";
import { ProgressBar } from "../progress.js";

export interface ModelSettings {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  blockSize: number;
  dropout: number;
  bias: boolean;
}

export interface PhaseSettings {
  steps: number;
  batchSize: number;
  gradAccumulation: number;
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  weightDecay: number;
  gradClip: number;
  evalEvery: number;
  evalBatches: number;
  checkpointEvery: number;
  earlyStoppingPatience: number;
  earlyStoppingMinDelta: number;
}

export interface RunSettings {
  seed: number;
  /** Token caches from `forge data build`. */
  data: string;
  /** The tokenizer the caches were built with. */
  tokenizer: string;
  model: ModelSettings;
  pretrain: PhaseSettings;
  sft: PhaseSettings;
}

const phase = (overrides: Partial<PhaseSettings>): PhaseSettings => ({
  steps: 100,
  batchSize: 8,
  gradAccumulation: 1,
  learningRate: 1e-3,
  minLearningRate: 1e-4,
  warmupSteps: 20,
  weightDecay: 0.1,
  gradClip: 1,
  evalEvery: 50,
  evalBatches: 4,
  checkpointEvery: 50,
  earlyStoppingPatience: 0,
  earlyStoppingMinDelta: 0,
  ...overrides,
});

/** The smoke profile trains both phases alike. */
const SMOKE_PHASE = phase({
  steps: 20,
  batchSize: 4,
  learningRate: 3e-3,
  warmupSteps: 2,
  evalEvery: 10,
  evalBatches: 2,
  checkpointEvery: 10,
});

/** Named profiles: `forge train --list-profiles`. */
export const PROFILES: Record<string, { description: string; settings: RunSettings }> = {
  smoke: {
    description: "seconds: a 1-layer, 32-wide model, 20 steps per phase (tests and CI)",
    settings: {
      seed: 1337,
      data: "data/cache",
      tokenizer: "data/tokenizer",
      model: { nLayer: 1, nHead: 2, nEmbd: 32, blockSize: 64, dropout: 0, bias: true },
      pretrain: { ...SMOKE_PHASE },
      sft: { ...SMOKE_PHASE },
    },
  },
  dev: {
    description: "minutes: a 2-layer, 64-wide model, 300 + 600 steps (trying corpus changes)",
    settings: {
      seed: 1337,
      data: "data/cache",
      tokenizer: "data/tokenizer",
      model: { nLayer: 2, nHead: 2, nEmbd: 64, blockSize: 128, dropout: 0, bias: true },
      pretrain: phase({
        steps: 300,
        batchSize: 8,
        learningRate: 3e-3,
        minLearningRate: 3e-4,
        warmupSteps: 30,
        evalEvery: 100,
      }),
      sft: phase({
        steps: 600,
        batchSize: 8,
        learningRate: 2e-3,
        minLearningRate: 2e-4,
        warmupSteps: 30,
        evalEvery: 100,
      }),
    },
  },
  tiny: {
    description:
      "forge-tiny: 4 layers, 128 wide, 256-token context, ~1M parameters (the shipped model)",
    settings: {
      seed: 1337,
      data: "data/cache",
      tokenizer: "data/tokenizer",
      model: { nLayer: 4, nHead: 4, nEmbd: 128, blockSize: 256, dropout: 0, bias: true },
      pretrain: phase({
        steps: 400,
        batchSize: 8,
        learningRate: 3e-3,
        minLearningRate: 3e-4,
        warmupSteps: 40,
        evalEvery: 100,
        evalBatches: 8,
        checkpointEvery: 100,
      }),
      sft: phase({
        steps: 2400,
        batchSize: 8,
        learningRate: 2e-3,
        minLearningRate: 1e-4,
        warmupSteps: 60,
        evalEvery: 200,
        evalBatches: 8,
        checkpointEvery: 100,
      }),
    },
  },
};

/**
 * Overlay `overrides` (a config file's JSON) on `base`, checking every key exists and every
 * value has the base's type. Errors name the file and the key path.
 */
export function overlaySettings<T extends object>(
  base: T,
  overrides: unknown,
  source: string,
  prefix = "",
): T {
  if (typeof overrides !== "object" || overrides === null || Array.isArray(overrides)) {
    throw new UsageError(`${source}: ${prefix || "the file"} must be a JSON object`);
  }
  const out = { ...base } as Record<string, unknown>;
  for (const [key, value] of Object.entries(overrides)) {
    const keyPath = prefix ? `${prefix}.${key}` : key;
    if (!(key in out)) {
      throw new UsageError(
        `${source}: unknown key "${keyPath}"; known keys${prefix ? ` in ${prefix}` : ""}: ${Object.keys(out).join(", ")}`,
      );
    }
    const current = out[key];
    if (typeof current === "object" && current !== null) {
      out[key] = overlaySettings(current, value, source, keyPath);
    } else if (typeof value !== typeof current) {
      throw new UsageError(
        `${source}: "${keyPath}" must be a ${typeof current}; got ${JSON.stringify(value)}`,
      );
    } else {
      out[key] = value;
    }
  }
  return out as T;
}

function listProfiles(): string {
  return Object.entries(PROFILES)
    .map(([name, { description, settings }]) => {
      const m = settings.model;
      return `${name.padEnd(6)} ${description}\n       model L=${m.nLayer} H=${m.nHead} C=${m.nEmbd} T=${m.blockSize}; pretrain ${settings.pretrain.steps} steps × ${settings.pretrain.batchSize}; sft ${settings.sft.steps} steps × ${settings.sft.batchSize}`;
    })
    .join("\n");
}

type Phase = "pretrain" | "sft" | "pipeline";

interface TrainCommandOptions {
  phase?: string;
  profile?: string;
  config?: string;
  resume?: boolean;
  runId?: string;
  runsDir?: string;
  data?: string;
  tokenizer?: string;
  init?: string;
  out?: string;
  force?: boolean;
  json?: boolean;
  listProfiles?: boolean;
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

/** The latest run of this profile and phase under runsDir, for --resume without --run-id. */
function latestRun(runsDir: string, profile: string, phaseName: Phase): string | undefined {
  if (!existsSync(runsDir)) return undefined;
  return readdirSync(runsDir)
    .filter(
      (name) =>
        name.startsWith(`${profile}-${phaseName}-`) &&
        existsSync(path.join(runsDir, name, "resolved_settings.json")),
    )
    .sort()
    .at(-1);
}

interface PhaseSummary {
  phase: "pretrain" | "sft";
  steps: number;
  /** Training loss of the first step (of this process, after a resume). */
  firstLoss: number;
  finalLoss: number;
  bestValidationLoss?: number;
  bestStep?: number;
  reason: string;
  seconds: number;
  tokensPerSecond: number;
  resumedFrom?: number;
}

async function runPhase(
  which: "pretrain" | "sft",
  model: GPT,
  settings: RunSettings,
  runDir: string,
  resume: boolean,
  signal: AbortSignal,
  record: (event: TrainEvent) => void,
): Promise<PhaseSummary> {
  const p = settings[which];
  const t = settings.model.blockSize;
  const train = await openTokenCache(path.join(settings.data, `${which}-train`));
  const val = await openTokenCache(path.join(settings.data, `${which}-val`));
  const samplerOptions = { batchSize: p.batchSize, blockSize: t };
  const trainSource =
    which === "pretrain"
      ? new PretrainSampler([{ cache: train }], { ...samplerOptions, seed: settings.seed })
      : new SftSampler(train, { ...samplerOptions, seed: settings.seed });
  const valSource =
    which === "pretrain"
      ? new PretrainSampler([{ cache: val }], { ...samplerOptions, seed: 4242 })
      : new SftSampler(val, { ...samplerOptions, seed: 4242 });
  const validation = fixedBatches(valSource, p.evalBatches);
  const bar = new ProgressBar(which, { total: p.steps, unit: "steps" });
  let tokens = 0;
  let firstLoss = Number.NaN;
  let lastValidation = "";
  const started = performance.now();
  try {
    const result = await trainModel(
      lmTask(model, trainSource, { batches: validation }),
      {
        steps: p.steps,
        gradAccumulation: p.gradAccumulation,
        learningRate: p.learningRate,
        minLearningRate: p.minLearningRate,
        warmupSteps: p.warmupSteps,
        weightDecay: p.weightDecay,
        gradClip: p.gradClip,
        evalEvery: p.evalEvery,
        checkpointEvery: p.checkpointEvery,
        seed: settings.seed,
        ...(p.earlyStoppingPatience > 0
          ? {
              earlyStopping: {
                patience: p.earlyStoppingPatience,
                minDelta: p.earlyStoppingMinDelta,
              },
            }
          : {}),
      },
      {
        checkpointDir: path.join(runDir, "checkpoints", which),
        resume,
        signal,
        onEvent: (event: TrainEvent) => {
          record(event);
          if (event.type === "step-end") {
            tokens += event.tokens;
            if (Number.isNaN(firstLoss)) firstLoss = event.loss;
            bar.update(event.step, undefined, `loss ${event.loss.toFixed(3)}${lastValidation}`);
          } else if (event.type === "eval-end") {
            lastValidation = `  val ${event.loss.toFixed(3)}`;
          }
        },
      },
    );
    const seconds = (performance.now() - started) / 1000;
    return {
      phase: which,
      steps: result.step,
      firstLoss,
      finalLoss: result.finalLoss,
      ...(result.bestLoss !== undefined
        ? { bestValidationLoss: result.bestLoss, bestStep: result.bestStep! }
        : {}),
      reason: result.reason,
      seconds,
      tokensPerSecond: tokens / seconds,
      ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
    };
  } finally {
    bar.stop();
    for (const batch of validation) disposeBatch(batch);
  }
}

async function trainCommand(options: TrainCommandOptions): Promise<number> {
  if (options.listProfiles) {
    process.stdout.write(`${listProfiles()}\n`);
    return 0;
  }
  const phaseName = (options.phase ?? "pipeline") as Phase;
  if (!["pretrain", "sft", "pipeline"].includes(phaseName)) {
    throw new UsageError(
      `--phase ${JSON.stringify(options.phase)} is not one of pretrain, sft, pipeline`,
    );
  }
  const profileName = options.profile ?? "tiny";
  const profile = PROFILES[profileName];
  if (!profile) {
    throw new UsageError(
      `profile ${JSON.stringify(profileName)} does not exist; profiles:\n${listProfiles()}`,
    );
  }
  let settings = structuredClone(profile.settings);
  if (options.config) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(options.config, "utf8"));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new UsageError(
        code
          ? `cannot read ${options.config}: ${code}`
          : `${options.config}: not valid JSON (${(error as Error).message})`,
      );
    }
    settings = overlaySettings(settings, parsed, options.config);
  }
  if (options.data) settings.data = options.data;
  if (options.tokenizer) settings.tokenizer = options.tokenizer;

  const runsDir = options.runsDir ?? "runs";
  const runId =
    options.runId ??
    (options.resume ? latestRun(runsDir, profileName, phaseName) : undefined) ??
    `${profileName}-${phaseName}-${timestamp()}`;
  const runDir = path.join(runsDir, runId);
  const settingsFile = path.join(runDir, "resolved_settings.json");
  if (options.resume && existsSync(settingsFile)) {
    const saved = JSON.parse(readFileSync(settingsFile, "utf8")) as { settings: RunSettings };
    settings = saved.settings; // a resumed run keeps its settings
  } else if (options.resume) {
    throw new UsageError(
      `--resume: no run to resume (${options.runId ? runDir : `no ${profileName}-${phaseName}-* run in ${runsDir}`})`,
    );
  }

  if (!options.resume && existsSync(runDir))
    throw new UsageError(
      `the run ${runDir} already exists: continue it with --resume --run-id ${runId}, or choose another --run-id`,
    );
  const tokenizer: Tokenizer = await loadTokenizer(settings.tokenizer);
  const config = resolveConfig(
    { ...settings.model, vocabSize: tokenizer.vocabSize, layerNormEpsilon: 1e-5 },
    options.config ?? `profile ${profileName}`,
  );
  // --out is claimed before any work: refused now, not after an hour of training
  const outClaim: OutputClaim | undefined = options.out
    ? await claimOutput(options.out, {
        kind: "model",
        ...(options.force ? { force: true } : {}),
        inputs: [settings.data, settings.tokenizer, options.init, runDir],
        flag: "--out",
      })
    : undefined;
  let runLock: Lock | undefined;
  try {
    await mkdir(runDir, { recursive: true });
    runLock = acquireLock(
      path.join(runDir, "run.lock"),
      `forge ${process.argv.slice(2).join(" ")}`,
      {
        what: `the run ${runDir}`,
      },
    );
  } catch (error) {
    await outClaim?.release();
    throw error;
  }
  try {
    return await trainRun(options, {
      settings,
      profileName,
      phaseName,
      runId,
      runDir,
      settingsFile,
      tokenizer,
      config,
      outClaim,
    });
  } finally {
    runLock.release();
  }
}

async function trainRun(
  options: TrainCommandOptions,
  run: {
    settings: RunSettings;
    profileName: string;
    phaseName: Phase;
    runId: string;
    runDir: string;
    settingsFile: string;
    tokenizer: Tokenizer;
    config: ReturnType<typeof resolveConfig>;
    outClaim: OutputClaim | undefined;
  },
): Promise<number> {
  const {
    settings,
    profileName,
    phaseName,
    runId,
    runDir,
    settingsFile,
    tokenizer,
    config,
    outClaim,
  } = run;
  const backend = await initBackend();
  await writeFileAtomic(
    settingsFile,
    `${JSON.stringify({ runId, profile: profileName, phase: phaseName, command: process.argv.slice(2), settings, modelConfig: config, parameters: parameterCount(config), backend: backend.name }, null, 2)}\n`,
  );
  if (!options.json) {
    process.stderr.write(
      `run ${runId} in ${runDir}: ${parameterCount(config)} parameters; ${describeBackend(backend)}\n`,
    );
  }

  const manifestFile = path.join(runDir, "manifest.json");
  const manifest =
    options.resume && existsSync(manifestFile)
      ? await ManifestWriter.resume(manifestFile, { backend: backend.name })
      : await ManifestWriter.create(manifestFile, {
          kind: "train",
          id: runId,
          forgeVersion: pkg.version,
          backend: backend.name,
          parameters: { profile: profileName, phase: phaseName, settings, modelConfig: config },
        });
  const record = (which: string) => (event: TrainEvent) => {
    if (event.type === "step-end") {
      manifest.recordStep({
        phase: which,
        step: event.step,
        loss: event.loss,
        learningRate: event.lr,
        gradNorm: event.gradNorm,
        tokensPerSecond: event.tokensPerSecond,
        elapsedSeconds: event.elapsedSeconds,
      });
    } else if (event.type === "eval-end") {
      manifest.recordEval({
        phase: which,
        step: event.step,
        loss: event.loss,
        perplexity: event.perplexity,
      });
    } else if (event.type === "early-stop") {
      manifest.earlyStopping({
        stopped: true,
        phase: which,
        step: event.step,
        bestStep: event.bestStep,
        bestLoss: event.bestLoss,
        reason: "validation loss stopped improving",
      });
    }
  };

  const interrupt = interruptOnSignals();
  const controller = { signal: interrupt.signal };
  const started = performance.now();
  const phases: PhaseSummary[] = [];
  let model: GPT | undefined;
  const pretrainModelDir = path.join(runDir, "pretrain-model");
  const phaseRun = async (which: "pretrain" | "sft") => {
    await manifest.phaseStart(which);
    const summary = await runPhase(
      which,
      model!,
      settings,
      runDir,
      options.resume ?? false,
      controller.signal,
      record(which),
    );
    await manifest.phaseEnd(which, summary.reason === "aborted" ? "interrupted" : "succeeded", {
      steps: summary.steps,
    });
    manifest.setMetric(`${which}.finalLoss`, summary.finalLoss);
    if (summary.bestValidationLoss !== undefined)
      manifest.setMetric(`${which}.bestValidationLoss`, summary.bestValidationLoss);
    phases.push(summary);
    return summary;
  };
  try {
    if (phaseName === "sft" && options.init) model = (await loadModel(options.init)).model;
    else if (phaseName === "pipeline" && existsSync(path.join(pretrainModelDir, "config.json")))
      model = (await loadModel(pretrainModelDir)).model;
    else model = GPT.create(config, { seed: settings.seed });

    if (
      phaseName === "pretrain" ||
      (phaseName === "pipeline" && !existsSync(path.join(pretrainModelDir, "config.json")))
    ) {
      const summary = await phaseRun("pretrain");
      if (summary.reason !== "aborted")
        await saveModel(model, pretrainModelDir, { tokenizer, force: true });
    }
    if ((phaseName === "sft" || phaseName === "pipeline") && !controller.signal.aborted)
      await phaseRun("sft");
    const aborted = controller.signal.aborted || phases.some((p) => p.reason === "aborted");
    const seconds = (performance.now() - started) / 1000;
    const finalDir = path.join(runDir, "model");
    const forge = {
      name: options.out ? path.basename(path.resolve(options.out)) : runId,
      createdBy: `forge ${process.argv.slice(2).join(" ")}`,
      profile: profileName,
      phase: phaseName,
      runId,
      settings,
      parameters: parameterCount(config),
      backend: backend.name,
      phases,
      wallSeconds: seconds,
    };
    const generationConfig = {
      eos_token_id: tokenizer.specialTokenId("<|eot|>"),
      temperature: 0.7,
      top_k: 40,
      max_new_tokens: 64,
    };
    if (!aborted) {
      await manifest.phaseStart("save");
      await saveModel(model, finalDir, { tokenizer, generationConfig, forge, force: true });
      if (outClaim) {
        await writeModelFiles(model, outClaim.work, { tokenizer, generationConfig, forge });
        await outClaim.commit();
      }
      for (const file of ["model.safetensors", "config.json", "tokenizer.json"])
        await manifest.addArtifact(path.join(finalDir, file));
      manifest.link("model", finalDir);
      if (options.out) manifest.link("model", options.out);
      await manifest.phaseEnd("save");
      await manifest.succeed();
    } else {
      await manifest.interrupt(
        `stopped by ${interrupt.received ?? "a signal"}; resume with --resume --run-id ${runId}`,
      );
      await outClaim?.release();
    }
    const summary = {
      runId,
      runDir,
      aborted,
      phases,
      seconds,
      model: aborted ? null : finalDir,
      out: options.out ?? null,
      manifest: manifestFile,
    };
    if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      for (const p of phases) {
        process.stdout.write(
          `${p.phase}: ${p.steps} steps${p.resumedFrom !== undefined ? ` (resumed at ${p.resumedFrom})` : ""}, final loss ${p.finalLoss.toFixed(4)}` +
            `${p.bestValidationLoss !== undefined ? `, best validation ${p.bestValidationLoss.toFixed(4)} at step ${p.bestStep}` : ""}, ` +
            `${p.seconds.toFixed(1)} s, ${p.tokensPerSecond.toFixed(0)} tok/s${p.reason !== "completed" ? ` (${p.reason})` : ""}\n`,
        );
      }
      process.stdout.write(
        aborted
          ? `interrupted: resume with forge train --phase ${phaseName} --profile ${profileName} --run-id ${runId} --resume\n`
          : `model written to ${finalDir}${options.out ? ` and ${options.out}` : ""} (${seconds.toFixed(1)} s); manifest ${manifestFile}\n`,
      );
    }
    return aborted ? 130 : 0;
  } catch (error) {
    await manifest.fail(error);
    await outClaim?.release();
    throw error;
  } finally {
    model?.dispose();
    interrupt.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command("", "Pretrain and/or fine-tune a model on token caches from forge data build")
    .option("--phase <phase>", "pretrain, sft or pipeline (pretrain then sft; default)")
    .option("--profile <name>", "smoke, dev or tiny (default tiny); see --list-profiles")
    .option(
      "--config <file.json>",
      "Override profile settings (same keys as resolved_settings.json's settings)",
    )
    .option(
      "--resume",
      "Continue the run given by --run-id (default: the latest of this profile and phase)",
    )
    .option("--run-id <id>", "Name of the run directory under --runs-dir")
    .option("--runs-dir <dir>", "Where runs live (default runs)")
    .option("--data <dir>", "Token caches (default from the profile: data/cache)")
    .option("--tokenizer <path>", "Tokenizer the caches were built with (default data/tokenizer)")
    .option("--init <model-dir>", "Start the sft phase from this model")
    .option("--out <dir>", "Also write the final model directory here")
    .option("--force", "Replace a model forge wrote in --out before")
    .option("--list-profiles", "List the profiles and exit")
    .option("--json", "Print a JSON summary")
    .example("forge train --profile tiny --out models/forge-tiny")
    .example("forge train --phase sft --profile dev --init runs/dev-pretrain-…/model")
    .action((options: TrainCommandOptions) => trainCommand(options));
}
