/**
 * `forge bake --model <dir> --prompt "…" --out <dir>`: stim → rollout → bake → KL before/after,
 * with a progress bar per phase, a final table, `--json`, and a run manifest.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  type BakePhase,
  type BakeRunResult,
  bakePrompt,
  bakeReportInput,
  DEFAULT_BAKE,
  DEFAULT_MEASURE,
  DEFAULT_ROLLOUT,
  DEFAULT_STIM_COUNTS,
  defaultStimuli,
  systemPrompt,
} from "@forge/baking";
import { claimOutput, interruptOnSignals, writeFileAtomic } from "@forge/core";
import { toHtml } from "@forge/eval";
import { ManifestWriter } from "@forge/manifest";
import { describeBackend, type GPT, initBackend } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import {
  type BakeCommandOptions,
  bakeEventSink,
  bakeSettingsFrom,
  endStoppedRun,
  finishBakeManifest,
  klText,
  PHASE_LABEL,
  parseStimOption,
  remoteTeacherFrom,
  resumeCommandLine,
} from "../bake-run.js";
import { UsageError } from "../errors.js";
import { loadBase, resolveModelLocation } from "../models.js";

async function bakeCommand(options: BakeCommandOptions): Promise<number> {
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
  const givenStim = parseStimOption(options.stim);
  const settings = bakeSettingsFrom(options);
  const remoteTeacher = remoteTeacherFrom(options);
  // a remote teacher gives its top-K: the bake's default loss is the top-K + tail KL
  if (remoteTeacher && options.loss === undefined) settings.bake.loss = "topk";
  const modelDir = await resolveModelLocation(options.model);
  const stim = givenStim ?? defaultStimuli(path.resolve(modelDir));
  const claim = await claimOutput(options.out, {
    kind: "bake",
    resumable: true,
    ...(options.resume ? { resume: true } : {}),
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, options.promptFile],
    flag: "--out",
  });
  if (options.resume && !claim.resumed && !options.json)
    process.stderr.write(`forge: nothing to resume at ${claim.work}; starting the bake\n`);
  let loaded: { model: GPT; tokenizer: Tokenizer } | undefined;
  const interrupt = interruptOnSignals();
  let manifest: ManifestWriter | undefined;
  try {
    const backend = await initBackend({ wasmThreads: "auto" });
    loaded = await loadBase(modelDir);
    const { model, tokenizer } = loaded;
    if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
    const manifestFile = path.join(claim.work, "manifest.json");
    manifest = await ManifestWriter.open(manifestFile, {
      resume: claim.resumed,
      kind: "bake",
      forgeVersion: pkg.version,
      backend: backend.name,
      parameters: {
        model: options.model,
        prompt: prompt.teacher[0]!.content,
        stim,
        ...settings,
        ...(remoteTeacher
          ? { teacher: { url: remoteTeacher.url, model: remoteTeacher.model ?? null } }
          : {}),
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
        baseModel: path.resolve(modelDir),
        ...(options.merged ? { merged: true } : {}),
        ...(remoteTeacher ? { remoteTeacher } : {}),
        ...(remoteTeacher && process.env.FORGE_TEACHER_API_KEY
          ? { remoteApiKey: process.env.FORGE_TEACHER_API_KEY }
          : {}),
        ...(remoteTeacher && !options.json
          ? {
              onRetry: ({
                attempt,
                delayMs,
                reason,
              }: {
                attempt: number;
                delayMs: number;
                reason: string;
              }) =>
                process.stderr.write(
                  `forge: teacher request failed (${reason}); retry ${attempt} in ${Math.round(delayMs)} ms\n`,
                ),
            }
          : {}),
        signal: interrupt.signal,
        onEvent: sink,
      });
    } finally {
      await sink.settled();
    }
    if (options.report)
      await writeFileAtomic(
        path.join(claim.work, "report.html"),
        toHtml(
          bakeReportInput(result, {
            model: options.model ?? "forge-tiny",
            prompt: prompt.teacher[0]!.content,
            out: result.out,
          }),
        ),
      );
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
      ...(options.report ? { report: path.join(result.out, "report.html") } : {}),
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
        `${rows.map(([k, v]) => `${k!.padEnd(22)} ${v}`).join("\n")}\nbaked adapter in ${result.out}${options.report ? `\nreport in ${path.join(result.out, "report.html")}` : ""}\n`,
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
        existsSync(path.join(claim.work, "rollout.jsonl")) ||
          existsSync(path.join(claim.work, "rollout.partial.jsonl")),
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
    .option(
      "--model <dir>",
      "The model to bake into: a directory, a store id, or forge-tiny (default)",
    )
    .option("--prompt <text>", "The system prompt to bake")
    .option("--prompt-file <file>", "Read the prompt from a file")
    .option(
      "--stim <spec>",
      `Stimuli (repeatable): list:Q1|Q2, file:<path>, template:<spec.json>, self:N, persona:N, multiturn:N[:T] (default: ${DEFAULT_STIM_COUNTS.questions} questions from the model's stimuli.jsonl, or self:${DEFAULT_STIM_COUNTS.questions} without one, and persona:${DEFAULT_STIM_COUNTS.persona})`,
    )
    .option("--samples <k>", `Teacher samples per stimulus (default ${DEFAULT_ROLLOUT.samples})`)
    .option("--temperature <t>", `Rollout temperature (default ${DEFAULT_ROLLOUT.temperature})`)
    .option(
      "--max-new-tokens <n>",
      `Longest teacher reply (default ${DEFAULT_ROLLOUT.maxNewTokens})`,
    )
    .option("--cache-topk <K>", "Cache the teacher's top-K log-probabilities with each trajectory")
    .option(
      "--teacher-url <base>",
      "A remote teacher: an OpenAI-compatible endpoint (forge serve, vLLM, llama.cpp, Ollama, TGI) for self stimuli, rollouts and top-K log-probabilities; key from FORGE_TEACHER_API_KEY",
    )
    .option("--teacher-model <name>", "The served model's name (default: the first it lists)")
    .option("--teacher-concurrency <n>", "Requests to the teacher in flight at once (default 8)")
    .option("--epochs <n>", `Passes over the trajectories (default ${DEFAULT_BAKE.epochs})`)
    .option("--steps <n>", "Train for exactly this many steps instead")
    .option("--batch-size <n>", `Trajectories per step (default ${DEFAULT_BAKE.batchSize})`)
    .option(
      "--lr <x>",
      `Peak learning rate (default ${DEFAULT_BAKE.learningRate}, decaying to ${DEFAULT_BAKE.minLearningRate})`,
    )
    .option("--rank <r>", `LoRA rank (default ${DEFAULT_BAKE.lora.r})`)
    .option("--alpha <a>", `LoRA alpha (default ${DEFAULT_BAKE.lora.alpha})`)
    .option(
      "--targets <list>",
      "LoRA targets, comma-separated: attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj",
    )
    .option("--full", "Fine-tune every weight instead of a LoRA adapter")
    .option(
      "--loss <kind>",
      "forward-kl (default), reverse-kl, js, jsd, distillation; topk, topk-reverse-kl, topk-js, topk-jsd (over the cached top-K + tail: needs --cache-topk)",
    )
    .option("--loss-beta <b>", "β of --loss jsd / topk-jsd, the teacher's weight (default 0.5)")
    .option("--loss-temperature <t>", "Temperature of --loss distillation (default 2)")
    .option(
      "--progressive <from:fraction>",
      "Progressive baking: the adapter strength ramps from <from> to 1 over that fraction of training (default 0.5)",
    )
    .option("--layers <list>", "Layer-wise baking: adapters on these blocks only, e.g. 0-1")
    .option("--val-fraction <f>", "Trajectories held out for validation KL (default 0.1)")
    .option(
      "--patience <n>",
      `Stop after n epochs without a better validation KL (default ${DEFAULT_BAKE.earlyStopping!.patience}, 0 with --steps; 0: train every epoch)`,
    )
    .option(
      "--snapshots <list>",
      "Half-baking: save adapters at these fractions of training, e.g. 0.25,0.5,0.75,1",
    )
    .option(
      "--measure <n>",
      `Trajectories for the KL before/after (default ${DEFAULT_MEASURE.n}); --no-measure skips it`,
    )
    .option("--no-measure", "Skip the KL measurements")
    .option("--merged", "Also write base + adapter merged into <out>/merged")
    .option("--resume", "Continue a stopped bake from <out>.partial")
    .option("--force", "Replace a previous bake in --out, or start over from a stopped one")
    .option("--seed <n>", "Seed for stimuli, rollout and training (default 1)")
    .option("--out <dir>", "Where the baked adapter goes")
    .option(
      "--report",
      "Also write <out>/report.html: KL before/after with standard errors and the training curve, one self-contained page",
    )
    .option("--json", "Print a JSON summary")
    .example("forge bake --model forge-tiny --prompt 'You are a pirate.' --out bakes/pirate")
    .action((options: BakeCommandOptions) => bakeCommand(options));
}
