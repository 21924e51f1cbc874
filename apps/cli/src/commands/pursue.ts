/**
 * `forge pursue --model <dir> --prompt "…" --rounds N --eval <task.yaml> --out <dir>`: prompt
 * pursuit (Prompt Baking, Eq. 4). Each round bakes the prompt into the previous round's model,
 * prompted again as the teacher, merges the adapter, and scores the result on the eval tasks
 * (unprompted); pursuit stops when a round improves the score by less than --min-improvement.
 * Several --prompt flags pursue each prompt in turn, from the previous prompt's final model.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  defaultStimuli,
  type PursuitEvent,
  type PursuitResult,
  pursueAll,
  repromptTable,
  systemPrompt,
} from "@forge/baking";
import { claimOutput } from "@forge/core";
import { runTasks } from "@forge/eval";
import { ManifestWriter } from "@forge/manifest";
import { describeBackend, evalModel, type GPT, initBackend, loadModel } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import {
  type BakeCommandOptions,
  bakeEventSink,
  bakeSettingsFrom,
  parseStimOption,
} from "../bake-run.js";
import { UsageError } from "../errors.js";
import { loadTasks } from "../files.js";
import { loadBase, resolveModelLocation } from "../models.js";
import { ProgressBar } from "../progress.js";

interface PursueCommandOptions extends Omit<BakeCommandOptions, "prompt"> {
  prompt?: string | string[];
  rounds?: string;
  eval?: string | string[];
  allowOutside?: boolean;
  allowCode?: boolean;
  minImprovement?: string;
}

const asList = (value: unknown): string[] =>
  value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String);

async function pursueCommand(options: PursueCommandOptions): Promise<number> {
  if (!options.out) throw new UsageError("--out <dir> is required: where every round's model goes");
  const texts = asList(options.prompt);
  if (options.promptFile) texts.push(readFileSync(options.promptFile, "utf8").trim());
  if (texts.length === 0)
    throw new UsageError('give the prompt: --prompt "…" (repeatable) or --prompt-file <file>');
  const evalFiles = asList(options.eval)
    .flatMap((v) => v.split(","))
    .filter((v) => v !== "");
  if (evalFiles.length === 0)
    throw new UsageError("--eval <task.yaml> is required: the task whose score pursuit follows");
  const rounds = Number(options.rounds ?? 3);
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new UsageError(
      `--rounds must be a positive integer; got ${JSON.stringify(options.rounds)}`,
    );
  const minImprovement = Number(options.minImprovement ?? 0.01);
  if (!Number.isFinite(minImprovement))
    throw new UsageError(
      `--min-improvement must be a number; got ${JSON.stringify(options.minImprovement)}`,
    );
  const prompts = texts.map((t) => systemPrompt(t));
  const taskOptions = {
    allowOutside: Boolean(options.allowOutside),
    allowCode: Boolean(options.allowCode),
  };
  const tasks = await loadTasks(evalFiles, taskOptions);
  const givenStim = parseStimOption(options.stim);
  const settings = bakeSettingsFrom({ ...options, prompt: undefined });
  const out = path.resolve(options.out);
  const modelDir = await resolveModelLocation(options.model);
  const stim = givenStim ?? defaultStimuli(path.resolve(modelDir));
  const claim = await claimOutput(options.out, {
    kind: "pursue",
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, options.promptFile, ...evalFiles],
    flag: "--out",
  });
  // files are written in the claim's work directory and recorded at their final place
  const inWork = (file: string) => path.join(claim.work, path.relative(out, file));
  let loaded: Awaited<ReturnType<typeof loadBase>>;
  let backend: Awaited<ReturnType<typeof initBackend>>;
  try {
    backend = await initBackend({ wasmThreads: "auto" });
    loaded = await loadBase(modelDir);
  } catch (error) {
    await claim.release();
    throw error;
  }
  const { model, tokenizer } = loaded;
  const log = (text: string) => {
    if (!options.json) process.stderr.write(`${text}\n`);
  };
  log(describeBackend(backend));
  const manifest = await ManifestWriter.create(path.join(claim.work, "manifest.json"), {
    kind: "pursue",
    forgeVersion: pkg.version,
    backend: backend.name,
    parameters: {
      model: modelDir,
      prompts: texts,
      rounds,
      minImprovement,
      eval: evalFiles,
      stim,
      ...settings,
    },
  });
  let promptNumber = 1;
  const evaluator = async (m: GPT, round: number, t: Tokenizer = tokenizer) => {
    const bar = options.json
      ? undefined
      : new ProgressBar(`eval round ${round}`, { unit: "items" });
    const results = await runTasks(evalModel(m, t, { name: `round-${round}` }), tasks, {
      ...taskOptions,
      onProgress: (e) => bar?.update(e.done, e.total, e.task),
    });
    bar?.stop();
    const score = results.tasks.reduce((a, r) => a + r.mean, 0) / results.tasks.length;
    manifest.setMetric(`prompt-${promptNumber}.round-${round}.score`, score);
    log(`prompt ${promptNumber}, round ${round}: score ${(100 * score).toFixed(1)}`);
    return score;
  };
  let sink = bakeEventSink(manifest, options.json);
  const sinks = [sink];
  const settled = async () => {
    for (const each of sinks) await each.settled();
  };
  const onEvent = (event: PursuitEvent) => {
    promptNumber = event.prompt ?? 1;
    if (event.type === "round-start") {
      log(pc.bold(`prompt ${promptNumber}, round ${event.round}: bake`));
      sink = bakeEventSink(manifest, options.json, `prompt-${promptNumber}/round-${event.round}/`);
      sinks.push(sink);
    } else if (event.type === "bake") sink(event.event);
    else manifest.link(`prompt-${promptNumber}/round-${event.round.round}`, event.round.model);
  };
  try {
    const results: PursuitResult[] = await pursueAll(model, tokenizer, prompts, {
      rounds,
      minImprovement,
      evaluator: (m, round) => evaluator(m, round),
      bake: {
        stim,
        rollout: settings.rollout,
        bake: settings.bake,
        measure: settings.measure,
      },
      out,
      work: claim.work,
      baseModel: path.resolve(modelDir),
      onEvent,
    });
    await settled();
    for (const [i, r] of results.entries()) {
      const pursuit = path.join(out, `prompt-${i + 1}`, "pursuit.json");
      await manifest.addArtifact(inWork(pursuit), undefined, pursuit);
      for (const round of r.rounds) {
        const weights = path.join(round.model, "model.safetensors");
        await manifest.addArtifact(inWork(weights), undefined, weights);
      }
    }
    // Re-prompting (the paper's "re-prompting amplifies"): the model each prompt started from and
    // its best round, each scored unprompted and prompted with the prompt again.
    const reprompt: Awaited<ReturnType<typeof repromptTable>>[] = [];
    for (const [i, r] of results.entries()) {
      const start = i === 0 ? modelDir : inWork(results[i - 1]!.rounds.at(-1)!.model);
      const base = (await loadModel(start)).model;
      const baked = (await loadModel(inWork(r.best.model))).model;
      try {
        const table = await repromptTable({ base, baked }, async (m, prompted) => {
          const scored = await runTasks(
            evalModel(m, tokenizer, { name: prompted ? "prompted" : "unprompted" }),
            tasks,
            prompted ? { ...taskOptions, system: texts[i]! } : taskOptions,
          );
          return scored.tasks.reduce((a, t) => a + t.mean, 0) / scored.tasks.length;
        });
        for (const who of ["base", "baked"] as const)
          for (const how of ["unprompted", "prompted"] as const)
            manifest.setMetric(`prompt-${i + 1}.reprompt.${who}.${how}`, table[who][how]);
        reprompt.push(table);
      } finally {
        base.dispose();
        baked.dispose();
      }
    }
    await manifest.succeed();
    await claim.commit();
    const summary = results.map((r, i) => ({
      prompt: texts[i],
      initialScore: r.initialScore,
      rounds: r.rounds.map((x) => ({
        round: x.round,
        score: x.score,
        improvement: x.improvement,
        model: x.model,
      })),
      stopReason: r.stopReason,
      best: r.best.round,
      reprompt: reprompt[i],
    }));
    if (options.json)
      process.stdout.write(`${JSON.stringify({ out, results: summary }, null, 2)}\n`);
    else {
      const lines: string[] = [];
      for (const [i, r] of results.entries()) {
        lines.push(pc.bold(`prompt ${i + 1}: ${JSON.stringify(texts[i])}`));
        lines.push(`  round 0 (start)  score ${(100 * r.initialScore).toFixed(1)}`);
        for (const x of r.rounds)
          lines.push(
            `  round ${x.round}          score ${(100 * x.score).toFixed(1)}  (${x.improvement >= 0 ? "+" : ""}${(100 * x.improvement).toFixed(1)})  ${x.model}`,
          );
        lines.push(
          `  stopped: ${r.stopReason === "converged" ? `improvement below ${(100 * minImprovement).toFixed(2)} points` : `round cap (${rounds})`}; best round ${r.best.round}`,
        );
        const t = reprompt[i]!;
        const pct = (x: number) => `${(100 * x).toFixed(1)}`.padStart(10);
        lines.push(
          `  re-prompting     ${"unprompted".padStart(10)} ${"prompted".padStart(10)}`,
          `  start model      ${pct(t.base.unprompted)} ${pct(t.base.prompted)}`,
          `  round ${String(r.best.round).padEnd(10)} ${pct(t.baked.unprompted)} ${pct(t.baked.prompted)}`,
        );
      }
      lines.push(`manifest: ${path.join(out, "manifest.json")}`);
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return 0;
  } catch (error) {
    await settled().catch(() => undefined);
    await manifest.fail(error);
    await claim.release();
    throw error;
  } finally {
    model.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command("", "Prompt pursuit: bake a prompt again and again into its own baked model (Eq. 4)")
    .option("--model <dir>", "The model to start from (default forge-tiny)")
    .option("--prompt <text>", "The system prompt (repeatable: pursued in turn)")
    .option("--prompt-file <file>", "Read a prompt from a file")
    .option("--rounds <n>", "Round cap per prompt (default 3)")
    .option("--eval <task>", "Task file(s) scoring each round, unprompted (repeatable)")
    .option("--min-improvement <x>", "Stop when a round gains less than this score (default 0.01)")
    .option("--stim <spec>", "Stimuli, as for forge bake (default: as forge bake)")
    .option("--samples <k>", "Teacher samples per stimulus")
    .option("--temperature <t>", "Rollout temperature")
    .option("--max-new-tokens <n>", "Longest teacher reply")
    .option("--epochs <n>", "Passes over the trajectories per round")
    .option("--steps <n>", "Train for exactly this many steps per round")
    .option("--batch-size <n>", "Trajectories per step")
    .option("--lr <x>", "Learning rate")
    .option("--rank <r>", "LoRA rank")
    .option("--val-fraction <f>", "Trajectories held out for validation KL (default 0.1)")
    .option(
      "--measure <n>",
      "Trajectories for the KL before/after each round; --no-measure skips it",
    )
    .option("--no-measure", "Skip the KL measurements")
    .option("--seed <n>", "Seed (default 1)")
    .option("--out <dir>", "Where prompt-<i>/round-<j>/ go")
    .option("--force", "Replace a previous pursuit in --out")
    .option("--allow-outside", "Let --eval task files read data outside their directory")
    .option("--allow-code", "Let --eval task files run their js scorer modules")
    .option("--json", "Print a JSON summary")
    .example(
      "forge pursue --model forge-tiny --prompt 'You are a pirate.' --rounds 3 --eval forge-tiny:persona-pirate --out pursuit/pirate",
    )
    .action((options: PursueCommandOptions) => pursueCommand(options));
}
