/**
 * `forge demo`: bake a persona into the shipped forge-tiny and show, with numbers, that the
 * baked model without the prompt behaves like the original model with it.
 */
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  type BakeRunResult,
  bakePrompt,
  type StimSpec,
  strengthCurve,
  systemPrompt,
} from "@forge/baking";
import { claimOutput } from "@forge/core";
import { type EvalResults, loadTask, runTasks, type Task } from "@forge/eval";
import { compareResults, forgettingFromResults, toHtml, toMarkdown } from "@forge/eval/stats";
import { ManifestWriter, svgLineChart } from "@forge/manifest";
import { describeBackend, evalModel, type GPT, initBackend } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import { UsageError } from "../errors.js";
import { TASK_NAMES } from "../tiny/corpus.js";
import { PERSONA_NAMES, PERSONAS, type PersonaName } from "../tiny/personas.js";
import { trainingQuestions } from "../tiny/quality.js";
import { bakeEventSink, finishBakeManifest, klText, loadBase } from "./bake.js";

/** models/forge-tiny: from the working directory, else next to this installation. */
export function defaultModelDir(): string {
  const local = path.resolve("models/forge-tiny");
  if (existsSync(path.join(local, "config.json"))) return local;
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../models/forge-tiny");
}

interface DemoOptions {
  model?: string;
  tasks?: string;
  persona?: string;
  report?: string;
  force?: boolean;
  seed?: string;
  json?: boolean;
}

export interface Evaluation {
  /** Share of replies with the persona's signature (the persona-<name> task). */
  signatureRate: number;
  /** Mean over the held-out task files. */
  accuracy: number;
  /** Items per task file, summed. */
  n: number;
  results: EvalResults;
}

const TASK_FILES = TASK_NAMES.map((t) => `${t}.yaml`);

/** forge-tiny's held-out task files and the persona's signature check, from `dir`. */
async function demoTasks(dir: string, persona: PersonaName): Promise<Task[]> {
  const files = [...TASK_FILES, `persona-${persona}.yaml`].map((f) => path.join(dir, f));
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length)
    throw new UsageError(
      `the demo's task files are missing: ${missing.join(", ")}; pass --tasks <dir> with forge-tiny's task files (models/forge-tiny/tasks)`,
    );
  return Promise.all(files.map((f) => loadTask(f)));
}

/** Run the task files; accuracy is the mean over the task files, the signature rate the persona task's. */
async function evaluate(
  name: string,
  model: GPT,
  tokenizer: Tokenizer,
  tasks: Task[],
  system: string | undefined,
): Promise<Evaluation> {
  const results = await runTasks(evalModel(model, tokenizer, { name }), tasks, {
    ...(system !== undefined ? { system } : {}),
  });
  const taskResults = results.tasks.filter((t) => !t.name.startsWith("persona-"));
  const persona = results.tasks.find((t) => t.name.startsWith("persona-"))!;
  return {
    signatureRate: persona.mean,
    accuracy: taskResults.reduce((a, t) => a + t.mean, 0) / taskResults.length,
    n: taskResults.reduce((a, t) => a + t.n, 0),
    results,
  };
}

/** The task files' results without the persona check (for the forgetting analysis). */
const withoutPersona = (r: EvalResults): EvalResults => ({
  ...r,
  tasks: r.tasks.filter((t) => !t.name.startsWith("persona-")),
});

/** Stimuli for the bake: task questions in the training distribution (not the held-out ones), plus persona probes. */
function demoStimuli(seed: number, count: number): StimSpec[] {
  return [
    { type: "list", items: trainingQuestions(seed, count) },
    { type: "persona", count: 20 },
  ];
}

async function demoCommand(options: DemoOptions): Promise<number> {
  const personaName = (options.persona ?? "pirate") as PersonaName;
  if (!PERSONA_NAMES.includes(personaName)) {
    throw new UsageError(
      `--persona ${JSON.stringify(options.persona)} is not one of ${PERSONA_NAMES.join(", ")}`,
    );
  }
  const persona = PERSONAS[personaName];
  const systemText = persona.prompts[0]!;
  const seed = Number(options.seed ?? 1);
  if (!Number.isInteger(seed))
    throw new UsageError(`--seed must be an integer; got ${JSON.stringify(options.seed)}`);
  const modelDir = options.model ?? defaultModelDir();
  const reportDir = path.resolve(options.report ?? `forge-demo-${personaName}`);
  const started = performance.now();
  const tasksDir = options.tasks ?? path.join(modelDir, "tasks");
  const tasks = await demoTasks(tasksDir, personaName);
  // everything is written into the claim's work directory and renamed to reportDir at the end
  const claim = await claimOutput(reportDir, {
    kind: "demo",
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, tasksDir],
    flag: "--report",
  });
  const work = claim.work;
  let loaded: Awaited<ReturnType<typeof loadBase>>;
  let backend: Awaited<ReturnType<typeof initBackend>>;
  try {
    backend = await initBackend();
    loaded = await loadBase(modelDir);
  } catch (error) {
    await claim.release();
    throw error;
  }
  const { model, tokenizer } = loaded;
  const log = (text: string) => {
    if (!options.json) process.stderr.write(`${text}\n`);
  };
  log(
    `${pc.bold("forge demo")}: baking ${JSON.stringify(systemText)} into ${modelDir}\n${describeBackend(backend)}`,
  );
  const manifestFile = path.join(work, "manifest.json");
  const manifest = await ManifestWriter.create(manifestFile, {
    kind: "demo",
    forgeVersion: pkg.version,
    backend: backend.name,
    parameters: { model: modelDir, persona: personaName, prompt: systemText, seed },
  });
  const timings: Record<string, number> = {};
  const time = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const value = await fn();
    timings[name] = (performance.now() - t0) / 1000;
    return value;
  };
  const sink = bakeEventSink(manifest, options.json);
  try {
    await manifest.phaseStart("evaluate-base");
    const baseUnprompted = await time("evaluate base", () =>
      evaluate("base", model, tokenizer, tasks, undefined),
    );
    const basePrompted = await time("evaluate base + prompt", () =>
      evaluate("base+prompt", model, tokenizer, tasks, systemText),
    );
    await manifest.phaseEnd("evaluate-base");

    const result: BakeRunResult = await time("bake (stim, rollout, teacher, KL, train, save)", () =>
      bakePrompt(model, tokenizer, {
        prompt: systemPrompt(systemText),
        stim: demoStimuli(seed, 160),
        rollout: { samples: 2, temperature: 0.7, maxNewTokens: 64, seed },
        bake: {
          epochs: 8,
          batchSize: 16,
          learningRate: 2e-3,
          minLearningRate: 2e-4,
          warmupSteps: 5,
          validationFraction: 0.1,
          seed,
        },
        measure: { n: 128, maxNewTokens: 64, seed: seed + 100 },
        out: path.join(work, "bake"),
        baseModel: path.resolve(modelDir),
        onEvent: sink,
      }),
    );
    await sink.settled();

    await manifest.phaseStart("evaluate-baked");
    const baked = await time("evaluate baked", () =>
      evaluate("baked", model, tokenizer, tasks, undefined),
    );
    await manifest.phaseEnd("evaluate-baked");
    await manifest.phaseStart("strength-curve");
    const alphas = [0, 0.25, 0.5, 0.75, 1, 1.5];
    const personaTask = tasks.filter((t) => t.name.startsWith("persona-"));
    const curve = await time("strength curve", () =>
      strengthCurve(model, alphas, async (m) => {
        const r = await runTasks(evalModel(m, tokenizer, { name: "alpha" }), personaTask);
        return r.tasks[0]!.mean;
      }),
    );
    // Paired statistics: did the bake break anything (non-inferiority on every task, margin
    // 3.4 points), and does the baked model match the prompted one on the persona check?
    const forgetting = forgettingFromResults(withoutPersona(baseUnprompted.results), [
      withoutPersona(baked.results),
    ]);
    const personaComparison = compareResults(
      {
        ...basePrompted.results,
        tasks: basePrompted.results.tasks.filter((t) => t.name.startsWith("persona-")),
      },
      { ...baked.results, tasks: baked.results.tasks.filter((t) => t.name.startsWith("persona-")) },
    );
    for (const r of [baseUnprompted, basePrompted, baked])
      writeFileSync(
        path.join(work, `${r.results.model.name}.results.json`),
        `${JSON.stringify(r.results, null, 2)}\n`,
      );
    const evalReport = {
      title: `forge demo — ${personaName}: base vs baked (forgetting) and base + prompt vs baked (persona)`,
      comparison: personaComparison,
      forgetting,
    };
    writeFileSync(path.join(work, "eval.html"), toHtml(evalReport));
    writeFileSync(path.join(work, "eval.md"), toMarkdown(evalReport));
    await manifest.phaseEnd("strength-curve");

    const klBefore = result.before!;
    const klAfter = result.after!;
    const reduction = 1 - klAfter.token.estimate / klBefore.token.estimate;
    const bars = [
      { name: "KL reduction ≥ 80%", value: reduction, pass: reduction >= 0.8 },
      {
        name: "baked persona rate ≥ 0.9 × prompted",
        value: baked.signatureRate / Math.max(1e-9, basePrompted.signatureRate),
        pass: baked.signatureRate >= 0.9 * basePrompted.signatureRate,
      },
      {
        name: "task accuracy drop ≤ 2 points",
        value: baseUnprompted.accuracy - baked.accuracy,
        pass: baseUnprompted.accuracy - baked.accuracy <= 0.02 + 1e-9, // 3 of 150 items is 2 points
      },
    ];
    const wall = (performance.now() - started) / 1000;
    bars.push({ name: "demo ≤ 3 minutes", value: wall, pass: wall <= 180 });
    const report = {
      model: modelDir,
      persona: personaName,
      prompt: systemText,
      backend: backend.name,
      kl: {
        before: {
          token: klBefore.token.estimate,
          tokenSE: klBefore.token.standardError,
          sequence: klBefore.sequence.estimate,
          sequenceSE: klBefore.sequence.standardError,
        },
        after: {
          token: klAfter.token.estimate,
          tokenSE: klAfter.token.standardError,
          sequence: klAfter.sequence.estimate,
          sequenceSE: klAfter.sequence.standardError,
        },
        reduction,
        n: klAfter.n,
      },
      personaRate: {
        baseUnprompted: baseUnprompted.signatureRate,
        basePrompted: basePrompted.signatureRate,
        bakedUnprompted: baked.signatureRate,
      },
      accuracy: {
        baseUnprompted: baseUnprompted.accuracy,
        basePrompted: basePrompted.accuracy,
        bakedUnprompted: baked.accuracy,
        items: baked.n,
      },
      strength: curve,
      forgetting: forgetting.cells.map((c) => ({
        task: c.task,
        base: c.base,
        baked: c.baked,
        delta: c.delta,
        ci: c.ci,
        nonInferior: c.nonInferiority.nonInferior,
        p: c.nonInferiority.p,
      })),
      personaVsPrompted: personaComparison.tasks.map((t) => ({
        task: t.task,
        prompted: t.result.meanA,
        baked: t.result.meanB,
        delta: t.result.delta,
        ci: t.result.bootstrap,
        p: t.pAdjusted,
      }))[0],
      bars,
      timings: {
        ...timings,
        ...Object.fromEntries(
          Object.entries(result.phaseSeconds).map(([k, v]) => [`bake: ${k}`, v]),
        ),
        total: wall,
      },
      bake: path.join(reportDir, "bake"),
    };
    writeFileSync(path.join(work, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      path.join(work, "strength.svg"),
      svgLineChart(
        [
          {
            name: `${personaName} signature rate`,
            points: curve.map((p) => [p.alpha, p.value] as const),
          },
        ],
        {
          title: `Half-baking: persona strength vs α (${personaName})`,
          xLabel: "adapter strength α",
          yLabel: "signature rate",
          yMin: 0,
          yMax: 1,
        },
      ),
    );
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const table = [
      ["", "base", "base + prompt", "baked (no prompt)"],
      [
        "KL to prompted model (token)",
        `${klBefore.token.estimate.toFixed(4)} ± ${klBefore.token.standardError.toFixed(4)}`,
        "0",
        `${klAfter.token.estimate.toFixed(4)} ± ${klAfter.token.standardError.toFixed(4)}`,
      ],
      [
        `${personaName} signature rate`,
        pct(baseUnprompted.signatureRate),
        pct(basePrompted.signatureRate),
        pct(baked.signatureRate),
      ],
      [
        "task accuracy (held out)",
        pct(baseUnprompted.accuracy),
        pct(basePrompted.accuracy),
        pct(baked.accuracy),
      ],
    ];
    const widths = [30, 22, 16, 22];
    const tableText = table
      .map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join(""))
      .join("\n");
    const markdown = [
      `# forge demo — baking "${systemText}" into forge-tiny`,
      "",
      "| | base | base + prompt | baked (no prompt) |",
      "|---|---|---|---|",
      ...table.slice(1).map((r) => `| ${r.join(" | ")} |`),
      "",
      `KL reduction: ${pct(reduction)} of the token-level estimate; KL(prompted ‖ model) ${klText(klBefore)} → ${klText(klAfter)}, n = ${klAfter.n} trajectories`,
      "",
      "Strength curve (persona rate at adapter strength α): " +
        curve.map((p) => `α=${p.alpha}: ${pct(p.value)}`).join(", "),
      "",
      "Forgetting (baked − base on each held-out task; non-inferior at a 3.4-point margin):",
      "",
      "| task | base | baked | Δ | 95% CI | non-inferior |",
      "|---|---|---|---|---|---|",
      ...forgetting.cells.map(
        (c) =>
          `| ${c.task} | ${pct(c.base)} | ${pct(c.baked)} | ${(100 * c.delta).toFixed(1)} | ${(100 * c.ci.low).toFixed(1)} … ${(100 * c.ci.high).toFixed(1)} | ${c.nonInferiority.nonInferior ? "yes" : "no"} (p = ${c.nonInferiority.p.toPrecision(2)}) |`,
      ),
      "",
      ...bars.map((b) => `- ${b.pass ? "pass" : "FAIL"} — ${b.name}`),
      "",
      `Total ${wall.toFixed(1)} s on ${backend.name}.`,
      "",
    ].join("\n");
    writeFileSync(path.join(work, "report.md"), markdown);
    manifest.setMetric("report", report);
    await finishBakeManifest(
      manifest,
      { ...result, out: path.join(reportDir, "bake") },
      path.join(work, "bake"),
    );
    await claim.commit();
    if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(`\n${tableText}\n\n`);
      process.stdout.write(
        `KL reduction ${pct(reduction)}; strength curve ${curve.map((p) => `α=${p.alpha} ${pct(p.value)}`).join(", ")}\n`,
      );
      const inferior = forgetting.cells.filter((c) => !c.nonInferiority.nonInferior);
      process.stdout.write(
        `forgetting: ${forgetting.cells.length - inferior.length}/${forgetting.cells.length} tasks non-inferior at a 3.4-point margin${inferior.length ? ` (not shown for: ${inferior.map((c) => c.task).join(", ")})` : ""}; mean change ${(100 * forgetting.meanChange.baked!).toFixed(1)} points\n`,
      );
      process.stdout.write(
        `${bars.map((b) => `${b.pass ? pc.green("pass") : pc.red("FAIL")}  ${b.name}`).join("\n")}\n`,
      );
      process.stdout.write(
        `timings: ${Object.entries(report.timings)
          .map(([k, v]) => `${k} ${(v as number).toFixed(1)} s`)
          .join(
            ", ",
          )}\nreport: ${reportDir} (report.md, report.json, strength.svg, eval.html, *.results.json, manifest.json, bake/)\n`,
      );
    }
    return 0;
  } catch (error) {
    await sink.settled().catch(() => undefined);
    await manifest.fail(error);
    await claim.release();
    throw error;
  } finally {
    model.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command("", "Bake a persona into the shipped forge-tiny and print before/after numbers")
    .option("--model <dir>", "Model to bake into (default models/forge-tiny)")
    .option("--persona <name>", `Persona to bake: ${PERSONA_NAMES.join(", ")} (default pirate)`)
    .option("--tasks <dir>", "forge-tiny's task files (default <model>/tasks)")
    .option("--report <dir>", "Where the report goes (default ./forge-demo-<persona>)")
    .option("--seed <n>", "Seed (default 1)")
    .option("--force", "Replace a previous demo report in --report")
    .option("--json", "Print the report as JSON")
    .example("forge demo")
    .action((options: DemoOptions) => demoCommand(options));
}
