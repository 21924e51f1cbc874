import { mkdir } from "node:fs/promises";
import path from "node:path";
import {
  acquireLock,
  claimOutput,
  interruptOnSignals,
  type Lock,
  type OutputClaim,
} from "@forge/core";
import { ManifestWriter } from "@forge/manifest";
import {
  describeBackend,
  describeProfiles,
  initBackend,
  openRunDirectory,
  type PipelineEvent,
  parameterCount,
  RUN_KINDS,
  type RunKind,
  resolveRunSettings,
  runModelConfig,
  saveModel,
  trainRun,
  writeRunSettings,
} from "@forge/model";
import { writeModelFiles } from "@forge/model/internal";
import { loadTokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import { UsageError } from "../errors.js";
import "../load-plan.js";
import { ProgressBar } from "../progress.js";

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

/** Progress bars and manifest records for a run's events. */
function recordEvents(manifest: ManifestWriter, quiet: boolean) {
  let bar: ProgressBar | undefined;
  let validation = "";
  const writes: Promise<void>[] = [];
  const onEvent = (event: PipelineEvent) => {
    if (event.type === "phase-start") {
      bar = quiet ? undefined : new ProgressBar(event.phase, { total: event.steps, unit: "steps" });
      validation = "";
      writes.push(manifest.phaseStart(event.phase));
    } else if (event.type === "phase-end") {
      bar?.stop();
      const s = event.summary;
      writes.push(
        manifest.phaseEnd(event.phase, s.reason === "aborted" ? "interrupted" : "succeeded", {
          steps: s.steps,
        }),
      );
      manifest.setMetric(`${event.phase}.finalLoss`, s.finalLoss);
      if (s.bestValidationLoss !== undefined)
        manifest.setMetric(`${event.phase}.bestValidationLoss`, s.bestValidationLoss);
    } else {
      const e = event.event;
      manifest.recordTrainEvent(event.phase, e);
      if (e.type === "step-end")
        bar?.update(e.step, undefined, `loss ${e.loss.toFixed(3)}${validation}`);
      else if (e.type === "eval-end") validation = `  val ${e.loss.toFixed(3)}`;
    }
  };
  return {
    onEvent,
    settled: async () => {
      bar?.stop();
      await Promise.all(writes);
    },
  };
}

async function trainCommand(options: TrainCommandOptions): Promise<number> {
  if (options.listProfiles) {
    process.stdout.write(`${describeProfiles()}\n`);
    return 0;
  }
  const kind = (options.phase ?? "pipeline") as RunKind;
  if (!RUN_KINDS.includes(kind))
    throw new UsageError(
      `--phase ${JSON.stringify(options.phase)} is not one of ${RUN_KINDS.join(", ")}`,
    );
  const profile = options.profile ?? "tiny";
  const settings = await resolveRunSettings(profile, options.config);
  if (options.data) settings.data = options.data;
  if (options.tokenizer) settings.tokenizer = options.tokenizer;
  const run = await openRunDirectory({
    runsDir: options.runsDir ?? "runs",
    profile,
    kind,
    settings,
    ...(options.runId !== undefined ? { runId: options.runId } : {}),
    ...(options.resume ? { resume: true } : {}),
  });
  const tokenizer = await loadTokenizer(run.settings.tokenizer);
  const config = runModelConfig(run.settings, tokenizer, options.config ?? `profile ${profile}`);
  // --out is claimed before any work: refused now, not after an hour of training
  const outClaim: OutputClaim | undefined = options.out
    ? await claimOutput(options.out, {
        kind: "model",
        ...(options.force ? { force: true } : {}),
        inputs: [run.settings.data, run.settings.tokenizer, options.init, run.runDir],
        flag: "--out",
      })
    : undefined;
  let lock: Lock | undefined;
  try {
    await mkdir(run.runDir, { recursive: true });
    lock = acquireLock(
      path.join(run.runDir, "run.lock"),
      `forge ${process.argv.slice(2).join(" ")}`,
      {
        what: `the run ${run.runDir}`,
      },
    );
  } catch (error) {
    await outClaim?.release();
    throw error;
  }
  const interrupt = interruptOnSignals();
  let manifest: ManifestWriter | undefined;
  let model: Awaited<ReturnType<typeof trainRun>>["model"] | undefined;
  try {
    const backend = await initBackend({ wasmThreads: "auto" });
    await writeRunSettings(run, { profile, kind, config, backend: backend.name });
    if (!options.json)
      process.stderr.write(
        `run ${run.runId} in ${run.runDir}: ${parameterCount(config)} parameters; ${describeBackend(backend)}\n`,
      );
    const manifestFile = path.join(run.runDir, "manifest.json");
    manifest = await ManifestWriter.open(manifestFile, {
      resume: run.resumed,
      kind: "train",
      id: run.runId,
      forgeVersion: pkg.version,
      backend: backend.name,
      parameters: { profile, phase: kind, settings: run.settings, modelConfig: config },
    });
    const recorder = recordEvents(manifest, Boolean(options.json));
    const started = performance.now();
    const result = await trainRun({
      run,
      kind,
      config,
      tokenizer,
      ...(options.init ? { init: options.init } : {}),
      signal: interrupt.signal,
      onEvent: recorder.onEvent,
    }).finally(() => recorder.settled());
    model = result.model;
    const seconds = (performance.now() - started) / 1000;
    const finalDir = path.join(run.runDir, "model");
    if (!result.aborted) {
      const forge = {
        name: options.out ? path.basename(path.resolve(options.out)) : run.runId,
        createdBy: `forge ${process.argv.slice(2).join(" ")}`,
        profile,
        phase: kind,
        runId: run.runId,
        settings: run.settings,
        parameters: parameterCount(config),
        backend: backend.name,
        phases: result.phases,
        wallSeconds: seconds,
      };
      const generationConfig = {
        eos_token_id: tokenizer.stopIds()[0],
        temperature: 0.7,
        top_k: 40,
        max_new_tokens: 64,
      };
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
        `stopped by ${interrupt.received ?? "a signal"}; resume with --resume --run-id ${run.runId}`,
      );
      await outClaim?.release();
    }
    const summary = {
      runId: run.runId,
      runDir: run.runDir,
      aborted: result.aborted,
      phases: result.phases,
      seconds,
      model: result.aborted ? null : finalDir,
      out: options.out ?? null,
      manifest: manifestFile,
    };
    if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else {
      for (const p of result.phases) {
        process.stdout.write(
          `${p.phase}: ${p.steps} steps${p.resumedFrom !== undefined ? ` (resumed at ${p.resumedFrom})` : ""}, final loss ${p.finalLoss.toFixed(4)}` +
            `${p.bestValidationLoss !== undefined ? `, best validation ${p.bestValidationLoss.toFixed(4)} at step ${p.bestStep}` : ""}, ` +
            `${p.seconds.toFixed(1)} s, ${p.tokensPerSecond.toFixed(0)} tok/s${p.reason !== "completed" ? ` (${p.reason})` : ""}\n`,
        );
      }
      process.stdout.write(
        result.aborted
          ? `interrupted: resume with forge train --phase ${kind} --profile ${profile} --run-id ${run.runId} --resume\n`
          : `model written to ${finalDir}${options.out ? ` and ${options.out}` : ""} (${seconds.toFixed(1)} s); manifest ${manifestFile}\n`,
      );
    }
    return result.aborted ? 130 : 0;
  } catch (error) {
    await manifest?.fail(error);
    await outClaim?.release();
    throw error;
  } finally {
    model?.dispose();
    interrupt.dispose();
    lock.release();
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
    .example("forge train --profile tiny --out my-tiny")
    .example("forge train --phase sft --profile dev --init runs/dev-pretrain-…/model")
    .action((options: TrainCommandOptions) => trainCommand(options));
}
