/**
 * `forge cycle --model <dir> --task-evals <files> --persona-eval <file> --out <dir>`: the A/B
 * cycle engine. A-cycles bake task prompts and are scored on the task files; B-cycles discover a
 * persona (the model proposes traits, candidates are scored prompted, the best is baked) and are
 * scored on the persona file; a plateau detector switches between them and stops the run.
 * Writes cycles.json, history.svg, every cycle's model, and manifest.json; `--resume` continues
 * a stopped run from its last finished cycle.
 */
import path from "node:path";
import { type CycleEvaluator, type CycleRecord, defaultStimuli, runCycles } from "@forge/baking";
import { claimOutput, interruptOnSignals, writeFileAtomic } from "@forge/core";
import { type EvalResults, runTasks, type Task } from "@forge/eval";
import { ManifestWriter, svgLineChart } from "@forge/manifest";
import { describeBackend, evalModel, initBackend } from "@forge/model";
import type { CAC } from "cac";
import pkg from "../../package.json" with { type: "json" };
import {
  type BakeCommandOptions,
  bakeSettingsFrom,
  endStoppedRun,
  parseStimOption,
  resumeCommandLine,
} from "../bake-run.js";
import { UsageError } from "../errors.js";
import { loadTasks } from "../files.js";
import { resolveModelLocation } from "../models.js";
import { asList, integerOption, numberOption } from "../options.js";

interface CycleCommandOptions extends BakeCommandOptions {
  taskEvals?: string | string[];
  personaEval?: string;
  personaPrompt?: string;
  taskPrompt?: string | string[];
  maxCycles?: string;
  window?: string;
  minDelta?: string;
  traits?: string;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The mean task score of a model on task files (prompted with `system` when given). */
function taskScore(tasks: Task[]): CycleEvaluator {
  return async (model, tokenizer, system) => {
    const results: EvalResults = await runTasks(
      evalModel(model, tokenizer, { name: "cycle" }),
      tasks,
      system !== undefined ? { system } : {},
    );
    return mean(results.tasks.map((t) => t.mean));
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The per-cycle table. */
export function cycleTable(
  start: { taskScore: number; personaScore: number },
  cycles: readonly CycleRecord[],
): string {
  const rows = [
    [
      "cycle",
      "kind",
      "task",
      "persona",
      "KL after",
      "improvement",
      "threshold",
      "plateau",
      "prompt",
    ],
    ["start", "", pct(start.taskScore), pct(start.personaScore), "", "", "", "", ""],
    ...cycles.map((c) => [
      String(c.cycle),
      c.kind,
      pct(c.taskScore),
      pct(c.personaScore),
      c.klAfter === null ? "–" : c.klAfter.toFixed(3),
      c.plateau.enough ? (100 * c.plateau.improvement).toFixed(1) : "–",
      (100 * c.plateau.threshold).toFixed(1),
      c.plateau.plateau ? "yes" : "no",
      c.prompt.length > 48 ? `${c.prompt.slice(0, 47)}…` : c.prompt,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((v, i) => v.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** The score history: task and persona scores after every cycle, switches marked in the title. */
export function historySvg(
  start: { taskScore: number; personaScore: number },
  cycles: readonly CycleRecord[],
  switches: readonly number[],
): string {
  const series = (
    name: string,
    pick: (c: { taskScore: number; personaScore: number }) => number,
  ) => ({
    name,
    points: [[0, pick(start)] as const, ...cycles.map((c) => [c.cycle, pick(c)] as const)],
  });
  return svgLineChart(
    [series("task score", (c) => c.taskScore), series("persona score", (c) => c.personaScore)],
    {
      title: `Scores by cycle (switches after cycle ${switches.join(", ") || "none"})`,
      xLabel: "cycle",
      yLabel: "score",
      yMin: 0,
      yMax: 1,
    },
  );
}

async function cycleCommand(options: CycleCommandOptions): Promise<number> {
  if (!options.out) throw new UsageError("--out <dir> is required: where the cycle run goes");
  const taskFiles = asList(options.taskEvals).flatMap((v) => v.split(",").filter(Boolean));
  if (taskFiles.length === 0)
    throw new UsageError("--task-evals <files> is required: the task files A-cycles are scored on");
  if (!options.personaEval)
    throw new UsageError("--persona-eval <file> is required: the task file B-cycles are scored on");
  if (!options.personaPrompt?.trim())
    throw new UsageError('--persona-prompt "…" is required: the persona discovery starts from');
  const taskPrompts = asList(options.taskPrompt);
  const prompts = taskPrompts.length
    ? taskPrompts
    : ["Answer every question correctly and briefly."];
  const maxCycles = integerOption(options.maxCycles, "max-cycles", { minimum: 1, fallback: 8 });
  const window = integerOption(options.window, "window", { minimum: 1, fallback: 2 });
  const minDelta =
    numberOption(options.minDelta, "min-delta", (n) => n >= 0 && n < 1, "in [0, 1)") ?? 0.01;
  const traits = integerOption(options.traits, "traits", { minimum: 0, fallback: 4 });
  if (traits > 64) throw new UsageError(`--traits must be at most 64; got ${traits}`);
  const settings = bakeSettingsFrom(options);
  const givenStim = parseStimOption(options.stim);
  const tasks = await loadTasks(taskFiles, {}, "--task-evals");
  const [personaTask] = await loadTasks([options.personaEval], {}, "--persona-eval");
  const modelDir = await resolveModelLocation(options.model);
  const stim = givenStim ?? defaultStimuli(path.resolve(modelDir));
  const claim = await claimOutput(options.out, {
    kind: "cycle",
    resumable: true,
    ...(options.resume ? { resume: true } : {}),
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, ...taskFiles, options.personaEval],
    flag: "--out",
  });
  let manifest: ManifestWriter | undefined;
  const interrupt = interruptOnSignals();
  try {
    const backend = await initBackend({ wasmThreads: "auto" });
    if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
    const manifestFile = path.join(claim.work, "manifest.json");
    manifest = claim.resumed
      ? await ManifestWriter.resume(manifestFile, { backend: backend.name }).catch(() =>
          ManifestWriter.create(manifestFile, {
            kind: "cycle",
            forgeVersion: pkg.version,
            backend: backend.name,
          }),
        )
      : await ManifestWriter.create(manifestFile, {
          kind: "cycle",
          forgeVersion: pkg.version,
          backend: backend.name,
          parameters: {
            model: options.model,
            taskEvals: taskFiles,
            personaEval: options.personaEval,
            personaPrompt: options.personaPrompt,
            taskPrompts: prompts,
            maxCycles,
            plateau: { window, minDelta },
            traits,
            stim,
            ...settings,
          },
        });
    const result = await runCycles({
      modelDir,
      tasks: prompts.map((prompt, i) => ({ name: `task-prompt-${i + 1}`, prompt })),
      taskEvaluator: taskScore(tasks),
      personaEvaluator: taskScore([personaTask!]),
      personaPrompt: options.personaPrompt,
      discovery: { traits },
      maxCycles,
      plateau: { window, minDelta },
      bake: { stim, rollout: settings.rollout, bake: settings.bake, measure: settings.measure },
      out: claim.target,
      work: claim.work,
      resume: claim.resumed,
      signal: interrupt.signal,
      seed: settings.bake.seed ?? 1,
      onEvent: (event) => {
        if (options.json) return;
        if (event.type === "cycle-start")
          process.stderr.write(`cycle ${event.cycle} (${event.kind})…\n`);
        else if (event.type === "switch")
          process.stderr.write(`plateau: switching ${event.from} → ${event.to}\n`);
        else if (event.type === "cycle-end") {
          const c = event.record;
          manifest?.recordEval({ phase: `cycle-${c.kind}`, step: c.cycle, loss: c.score });
        }
      },
    });
    await writeFileAtomic(
      path.join(claim.work, "history.svg"),
      historySvg(result.start, result.cycles, result.switches),
    );
    manifest.setMetric("cycles", result.cycles.length);
    manifest.setMetric("switches", result.switches);
    manifest.setMetric("stopReason", result.stopReason);
    manifest.setMetric("start", result.start);
    manifest.setMetric("final", {
      taskScore: result.cycles.at(-1)?.taskScore ?? result.start.taskScore,
      personaScore: result.cycles.at(-1)?.personaScore ?? result.start.personaScore,
    });
    manifest.link("model", result.model);
    await manifest.succeed();
    await claim.commit();
    if (options.json)
      process.stdout.write(`${JSON.stringify({ out: claim.target, ...result }, null, 2)}\n`);
    else
      process.stdout.write(
        `${cycleTable(result.start, result.cycles)}\nstopped: ${result.stopReason}; switches after cycle ${result.switches.join(", ") || "–"}\nhistory in ${path.join(claim.target, "history.svg")}, final model ${result.model}\n`,
      );
    return 0;
  } catch (error) {
    if (manifest) await endStoppedRun(error, manifest, claim, resumeCommandLine(), true);
    else await claim.release();
    throw error;
  } finally {
    interrupt.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command(
      "",
      "A/B cycles: bake task prompts (A) and a discovered persona (B) until both plateau",
    )
    .option("--model <dir>", "The model to start from (default forge-tiny)")
    .option(
      "--task-evals <files>",
      "Task files that score A-cycles (repeatable or comma-separated)",
    )
    .option("--persona-eval <file>", "The task file that scores B-cycles (the persona)")
    .option("--persona-prompt <text>", "The persona discovery starts from")
    .option("--task-prompt <text>", "A task prompt A-cycles bake (repeatable; taken in turn)")
    .option("--max-cycles <n>", "Cycle cap (default 8)")
    .option("--window <n>", "Plateau window: cycles the improvement is measured over (default 2)")
    .option(
      "--min-delta <d>",
      "Smallest improvement that counts, whatever the noise (default 0.01)",
    )
    .option("--traits <n>", "Persona traits the model proposes per B-cycle (default 4)")
    .option("--stim <spec>", "Stimuli of every bake (as forge bake, and its default)")
    .option("--samples <k>", "Teacher samples per stimulus")
    .option("--temperature <t>", "Rollout temperature")
    .option("--max-new-tokens <n>", "Longest teacher reply")
    .option("--cache-topk <K>", "Cache the teacher's top-K (for the topk losses)")
    .option("--epochs <n>", "Passes over the trajectories per bake")
    .option("--steps <n>", "Train every bake for exactly this many steps")
    .option("--batch-size <n>", "Trajectories per step")
    .option("--lr <x>", "Learning rate")
    .option("--loss <kind>", "The bake loss (as forge bake --loss)")
    .option("--loss-beta <b>", "β of --loss jsd / topk-jsd")
    .option("--loss-temperature <t>", "Temperature of --loss distillation")
    .option("--val-fraction <f>", "Trajectories held out for validation")
    .option("--measure <n>", "Trajectories for each bake's KL after; --no-measure skips it")
    .option("--no-measure", "Skip the KL measurements")
    .option("--seed <n>", "Seed (default 1)")
    .option("--out <dir>", "Where the run goes")
    .option("--resume", "Continue a stopped run from its last finished cycle")
    .option("--force", "Replace a previous cycle run in --out")
    .option("--json", "Print a JSON summary")
    .example(
      "forge cycle --model forge-tiny --task-evals forge-tiny:arithmetic --persona-eval forge-tiny:persona-pirate --persona-prompt 'You are a pirate.' --out cycles/pirate",
    )
    .action((options: CycleCommandOptions) => cycleCommand(options));
}
