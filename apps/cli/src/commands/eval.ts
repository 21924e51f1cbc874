/**
 * `forge eval run|ab|forgetting|compare`: evaluate models on task files, compare them with
 * paired statistics, check forgetting, and gate CI (exit 1 when a gate fails).
 */
import { appendFileSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadBaked } from "@forge/baking";
import { type EvalModel, type EvalResults, loadTask, runTasks, type Task } from "@forge/eval";
import {
  type Comparison,
  compareResults,
  evaluateGates,
  type ForgettingResult,
  forgettingFromResults,
  GATE_KINDS,
  type GateKind,
  type GateResult,
  heatmapTerminal,
  type ReportInput,
  readResults,
  toHtml,
  toJUnit,
  toMarkdown,
} from "@forge/eval/stats";
import { ManifestWriter } from "@forge/manifest";
import { initBackend, loadModel } from "@forge/model";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import { GateError, UsageError } from "../errors.js";
import { expandInputs } from "../files.js";
import { ProgressBar } from "../progress.js";

const asList = (value: unknown): string[] =>
  value === undefined
    ? []
    : (Array.isArray(value) ? value : [value])
        .flatMap((v) => String(v).split(","))
        .filter((v) => v !== "");

function parseGates(value: unknown): GateKind[] {
  const kinds = asList(value);
  for (const kind of kinds) {
    if (!(GATE_KINDS as string[]).includes(kind))
      throw new UsageError(
        `--fail-on ${JSON.stringify(kind)} is not one of ${GATE_KINDS.join(", ")}`,
      );
  }
  return kinds as GateKind[];
}

function number(
  value: unknown,
  name: string,
  fallback: number,
  check: (n: number) => boolean,
  expected: string,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || !check(n))
    throw new UsageError(`--${name} must be ${expected}; got ${JSON.stringify(value)}`);
  return n;
}

/** A model directory, or a bake output (its base with the adapter attached). */
export async function loadEvalModel(location: string): Promise<EvalModel> {
  if (!existsSync(location) || !statSync(location).isDirectory())
    throw new UsageError(`${location} is not a directory: give a model directory or a bake output`);
  const baked =
    existsSync(path.join(location, "forge.json")) &&
    existsSync(path.join(location, "adapter_config.json"));
  const loaded = baked ? await loadBaked(location) : await loadModel(location);
  if (!loaded.tokenizer) throw new UsageError(`${location} has no tokenizer.json`);
  return {
    name: path.basename(path.resolve(location)),
    model: loaded.model,
    tokenizer: loaded.tokenizer,
  };
}

export async function loadTasks(patterns: string[]): Promise<Task[]> {
  return Promise.all((await expandInputs(patterns, "--tasks")).map((file) => loadTask(file)));
}

interface CommonOptions {
  tasks?: string | string[];
  rounds?: string;
  seed?: string;
  cacheDir?: string;
  out?: string;
  junit?: string;
  markdown?: string;
  html?: string;
  failOn?: string | string[];
  alpha?: string;
  threshold?: string;
  margin?: string;
  json?: boolean;
  system?: string;
  systemA?: string;
  systemB?: string;
}

async function evaluate(
  model: EvalModel,
  tasks: Task[],
  options: CommonOptions,
  quiet: boolean,
  system: string | undefined = options.system,
): Promise<EvalResults> {
  const bar = quiet ? undefined : new ProgressBar(`eval ${model.name}`, { unit: "items" });
  const rounds =
    options.rounds === undefined
      ? undefined
      : number(
          options.rounds,
          "rounds",
          1,
          (n) => Number.isInteger(n) && n >= 1,
          "a positive integer",
        );
  const results = await runTasks(model, tasks, {
    ...(rounds !== undefined ? { rounds } : {}),
    seed: number(options.seed, "seed", 0, Number.isInteger, "an integer"),
    cacheDir: options.cacheDir ?? ".forge-cache/eval",
    ...(system !== undefined ? { system } : {}),
    onProgress: (e) => bar?.update(e.done, e.total, e.task),
  });
  bar?.stop();
  return results;
}

/** Write the reports asked for; Markdown also goes to $GITHUB_STEP_SUMMARY when set. */
function writeReports(input: ReportInput, options: CommonOptions, outDir?: string): string[] {
  const written: string[] = [];
  const write = (file: string | undefined, content: string) => {
    if (!file) return;
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    writeFileSync(file, content);
    written.push(file);
  };
  write(options.junit ?? (outDir ? path.join(outDir, "junit.xml") : undefined), toJUnit(input));
  const markdown = toMarkdown(input);
  write(options.markdown ?? (outDir ? path.join(outDir, "report.md") : undefined), markdown);
  write(options.html ?? (outDir ? path.join(outDir, "report.html") : undefined), toHtml(input));
  if (process.env.GITHUB_STEP_SUMMARY)
    appendFileSync(process.env.GITHUB_STEP_SUMMARY, `${markdown}\n`);
  return written;
}

function gateVerdict(gates: GateResult[], quiet: boolean): number {
  if (!quiet)
    for (const g of gates)
      process.stdout.write(
        `${g.passed ? pc.green("pass") : pc.red("FAIL")}  ${g.gate}: ${g.message}\n`,
      );
  const failed = gates.filter((g) => !g.passed);
  if (failed.length)
    throw new GateError(
      `${failed.length} gate${failed.length > 1 ? "s" : ""} failed: ${failed.map((g) => `${g.gate}${g.task ? ` (${g.task})` : ""}`).join(", ")}`,
    );
  return 0;
}

function comparisonTable(c: Comparison): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}`;
  const head = `${"task".padEnd(22)}${"A".padStart(8)}${"B".padStart(8)}${"Δ".padStart(8)}  ${"95% CI".padEnd(16)}${"p(adj)".padStart(10)}  winner`;
  const rows = c.tasks.map((t) => {
    const r = t.result;
    return `${t.task.padEnd(22)}${pct(r.meanA).padStart(8)}${pct(r.meanB).padStart(8)}${pct(r.delta).padStart(8)}  ${`${pct(r.bootstrap.low)} … ${pct(r.bootstrap.high)}`.padEnd(16)}${t.pAdjusted.toPrecision(3).padStart(10)}  ${t.winner}`;
  });
  return [
    `A = ${c.a.name}, B = ${c.b.name} (scores in points; Holm–Bonferroni across tasks)`,
    head,
    ...rows,
  ].join("\n");
}

async function withManifest<T>(
  file: string,
  kind: string,
  parameters: Record<string, unknown>,
  fn: (m: ManifestWriter) => Promise<T>,
): Promise<T> {
  const manifest = await ManifestWriter.create(file, {
    kind,
    forgeVersion: pkg.version,
    parameters,
    hardwareIntervalSeconds: 2,
  });
  try {
    const value = await fn(manifest);
    await manifest.succeed();
    return value;
  } catch (error) {
    if (error instanceof GateError) await manifest.succeed();
    else await manifest.fail(error);
    throw error;
  }
}

async function runCommand(location: string, options: CommonOptions): Promise<number> {
  const tasks = await loadTasks(asList(options.tasks));
  const out = options.out ?? "eval-results.json";
  return withManifest(
    `${out.replace(/\.json$/, "")}.manifest.json`,
    "eval",
    { model: location, tasks: tasks.map((t) => t.name), ...options },
    async (manifest) => {
      const backend = await initBackend();
      manifest.setBackend(backend.name);
      const model = await loadEvalModel(location);
      await manifest.phaseStart("evaluate");
      const results = await evaluate(model, tasks, options, Boolean(options.json));
      await manifest.phaseEnd("evaluate", "succeeded", { tasks: tasks.length });
      mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
      await manifest.addArtifact(out, "results");
      for (const t of results.tasks) manifest.setMetric(t.name, t.mean);
      writeReports({ title: `forge eval — ${model.name}`, results: [results] }, options);
      model.model.dispose();
      if (options.json)
        process.stdout.write(
          `${JSON.stringify({ out, model: results.model, tasks: results.tasks.map((t) => ({ name: t.name, n: t.n, rounds: t.rounds, mean: t.mean })) }, null, 2)}\n`,
        );
      else {
        for (const t of results.tasks)
          process.stdout.write(
            `${t.name.padEnd(28)} ${(100 * t.mean).toFixed(1).padStart(6)}  (${t.n} items × ${t.rounds} rounds)\n`,
          );
        process.stdout.write(`results in ${out}\n`);
      }
      return 0;
    },
  );
}

function comparisonOptions(options: CommonOptions) {
  return {
    alpha: number(options.alpha, "alpha", 0.05, (n) => n > 0 && n < 1, "in (0, 1)"),
    threshold: number(options.threshold, "threshold", 0, (n) => n >= 0, "≥ 0"),
  };
}

async function reportComparison(
  input: ReportInput,
  comparison: Comparison | undefined,
  forgetting: ForgettingResult | undefined,
  gates: GateKind[],
  options: CommonOptions,
  outDir: string,
  manifest: ManifestWriter,
): Promise<number> {
  const gateResults = gates.length ? evaluateGates(gates, comparison, forgetting) : [];
  const full = { ...input, ...(gateResults.length ? { gates: gateResults } : {}) };
  mkdirSync(outDir, { recursive: true });
  if (comparison)
    writeFileSync(path.join(outDir, "comparison.json"), `${JSON.stringify(comparison, null, 2)}\n`);
  if (forgetting)
    writeFileSync(path.join(outDir, "forgetting.json"), `${JSON.stringify(forgetting, null, 2)}\n`);
  for (const file of writeReports(full, options, outDir))
    await manifest.addArtifact(file, "report");
  manifest.setMetric(
    "gates",
    gateResults.map((g) => ({ gate: g.gate, task: g.task, passed: g.passed })),
  );
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ comparison, forgetting, gates: gateResults, out: outDir }, null, 2)}\n`,
    );
  } else {
    if (comparison) process.stdout.write(`${comparisonTable(comparison)}\n`);
    if (forgetting) {
      process.stdout.write(`${heatmapTerminal(forgetting)}\n`);
      if (forgetting.backwardTransfer !== undefined)
        process.stdout.write(
          `backward transfer ${(100 * forgetting.backwardTransfer).toFixed(1)} points\n`,
        );
    }
    process.stdout.write(`reports in ${outDir}\n`);
  }
  return gateVerdict(gateResults, Boolean(options.json));
}

async function abCommand(a: string, b: string, options: CommonOptions): Promise<number> {
  const tasks = await loadTasks(asList(options.tasks));
  const gates = parseGates(options.failOn);
  const settings = comparisonOptions(options);
  const outDir = options.out ?? "eval-ab";
  return withManifest(
    path.join(outDir, "manifest.json"),
    "eval-ab",
    { a, b, tasks: tasks.map((t) => t.name), ...options },
    async (manifest) => {
      manifest.setBackend((await initBackend()).name);
      const results: EvalResults[] = [];
      for (const [i, location] of [a, b].entries()) {
        const model = await loadEvalModel(location);
        await manifest.phaseStart(`evaluate ${model.name}`);
        const system = i === 0 ? options.systemA : options.systemB;
        results.push(await evaluate(model, tasks, options, Boolean(options.json), system));
        await manifest.phaseEnd(`evaluate ${model.name}`);
        model.model.dispose();
      }
      mkdirSync(outDir, { recursive: true });
      writeFileSync(path.join(outDir, "a.json"), `${JSON.stringify(results[0], null, 2)}\n`);
      writeFileSync(path.join(outDir, "b.json"), `${JSON.stringify(results[1], null, 2)}\n`);
      const comparison = compareResults(results[0]!, results[1]!, settings);
      return reportComparison(
        {
          title: `forge eval ab — ${results[0]!.model.name} vs ${results[1]!.model.name}`,
          results,
          comparison,
        },
        comparison,
        undefined,
        gates,
        options,
        outDir,
        manifest,
      );
    },
  );
}

async function forgettingCommand(
  options: CommonOptions & { base?: string; baked?: string | string[] },
): Promise<number> {
  if (!options.base) throw new UsageError("--base <model> is required");
  const bakedList = asList(options.baked);
  if (bakedList.length === 0)
    throw new UsageError("--baked <model> is required (repeatable, in bake order)");
  const tasks = await loadTasks(asList(options.tasks));
  const gates = parseGates(options.failOn);
  const margin = number(
    options.margin,
    "margin",
    0.034,
    (n) => n >= 0 && n < 1,
    "in [0, 1) (score units; 0.034 = 3.4 points)",
  );
  const outDir = options.out ?? "eval-forgetting";
  return withManifest(
    path.join(outDir, "manifest.json"),
    "eval-forgetting",
    { base: options.base, baked: bakedList, tasks: tasks.map((t) => t.name), margin },
    async (manifest) => {
      manifest.setBackend((await initBackend()).name);
      const results: EvalResults[] = [];
      for (const location of [options.base!, ...bakedList]) {
        const model = await loadEvalModel(location);
        await manifest.phaseStart(`evaluate ${model.name}`);
        results.push(await evaluate(model, tasks, options, Boolean(options.json)));
        await manifest.phaseEnd(`evaluate ${model.name}`);
        model.model.dispose();
      }
      const forgetting = forgettingFromResults(results[0]!, results.slice(1), {
        margin,
        alpha: comparisonOptions(options).alpha,
      });
      mkdirSync(outDir, { recursive: true });
      for (const [i, r] of results.entries()) {
        writeFileSync(
          path.join(outDir, `${i === 0 ? "base" : `baked-${i}`}.json`),
          `${JSON.stringify(r, null, 2)}\n`,
        );
      }
      return reportComparison(
        { title: `forge eval forgetting — ${results[0]!.model.name}`, results, forgetting },
        undefined,
        forgetting,
        gates,
        options,
        outDir,
        manifest,
      );
    },
  );
}

async function compareCommand(
  fileA: string,
  fileB: string,
  options: CommonOptions,
): Promise<number> {
  const gates = parseGates(options.failOn);
  if (gates.includes("forgetting"))
    throw new UsageError(
      "compare checks regression and no-improvement; use forge eval forgetting for the forgetting gate",
    );
  const outDir = options.out ?? "eval-compare";
  return withManifest(
    path.join(outDir, "manifest.json"),
    "eval-compare",
    { a: fileA, b: fileB, ...options },
    async (manifest) => {
      const a = await readResults(fileA);
      const b = await readResults(fileB);
      const comparison = compareResults(a, b, comparisonOptions(options));
      return reportComparison(
        { title: `forge eval compare — ${a.model.name} vs ${b.model.name}`, comparison },
        comparison,
        undefined,
        gates,
        options,
        outDir,
        manifest,
      );
    },
  );
}

function reportFlags<T extends ReturnType<CAC["command"]>>(command: T): T {
  return command
    .option("--junit <file>", "Also write JUnit XML here")
    .option(
      "--markdown <file>",
      "Also write the Markdown summary here (it is appended to $GITHUB_STEP_SUMMARY when set)",
    )
    .option("--html <file>", "Also write the self-contained HTML report here")
    .option("--json", "Print JSON") as T;
}

function runFlags<T extends ReturnType<CAC["command"]>>(command: T): T {
  return command
    .option("--tasks <file|glob>", "Task files (repeatable or comma-separated)")
    .option("--rounds <R>", "Rounds per item (sampling seeds); default each task's own")
    .option("--seed <n>", "Base seed (round r uses seed + r; default 0)")
    .option("--cache-dir <dir>", "Results cache (default .forge-cache/eval)") as T;
}

function gateFlags<T extends ReturnType<CAC["command"]>>(command: T): T {
  return command
    .option(
      "--fail-on <gates>",
      `Exit 1 when a gate fails: ${GATE_KINDS.join(", ")} (comma-separated)`,
    )
    .option("--alpha <a>", "Significance level (default 0.05)")
    .option(
      "--threshold <d>",
      "Smallest |Δ| (score units) that counts as a win or a regression (default 0)",
    ) as T;
}

export function register(cli: CAC): void {
  reportFlags(
    runFlags(
      cli.command("run <model>", "Evaluate a model (directory or bake output) on task files"),
    ),
  )
    .option("--system <prompt>", "Evaluate prompted: a system prompt for tasks without one")
    .option("--out <file>", "Results JSON (default eval-results.json)")
    .example("forge eval run models/forge-tiny --tasks 'models/forge-tiny/tasks/*.yaml'")
    .action((model: string, options: CommonOptions) => runCommand(model, options));
  reportFlags(
    gateFlags(
      runFlags(
        cli.command("ab <modelA> <modelB>", "Paired A/B test of two models on the same items"),
      ),
    ),
  )
    .option("--system-a <prompt>", "Evaluate A prompted (e.g. the base model with the prompt)")
    .option("--system-b <prompt>", "Evaluate B prompted")
    .option("--out <dir>", "Where results and reports go (default eval-ab)")
    .example(
      "forge eval ab models/forge-tiny bakes/pirate --system-a 'You are a pirate.' --tasks 'models/forge-tiny/tasks/*.yaml' --fail-on regression",
    )
    .action((a: string, b: string, options: CommonOptions) => abCommand(a, b, options));
  reportFlags(
    gateFlags(
      runFlags(
        cli.command(
          "forgetting",
          "Base vs baked models on every task: matrix, deltas, non-inferiority, BWT",
        ),
      ),
    ),
  )
    .option("--base <model>", "The model before baking")
    .option("--baked <model>", "A baked model (repeatable, in bake order)")
    .option("--margin <m>", "Non-inferiority margin in score units (default 0.034 = 3.4 points)")
    .option("--out <dir>", "Where results and reports go (default eval-forgetting)")
    .example(
      "forge eval forgetting --base models/forge-tiny --baked bakes/pirate --tasks 'models/forge-tiny/tasks/*.yaml' --fail-on forgetting",
    )
    .action((options: CommonOptions & { base?: string; baked?: string | string[] }) =>
      forgettingCommand(options),
    );
  reportFlags(
    gateFlags(
      cli.command(
        "compare <resultsA> <resultsB>",
        "Compare two results files offline (no model needed)",
      ),
    ),
  )
    .option("--out <dir>", "Where reports go (default eval-compare)")
    .example("forge eval compare main.json pr.json --fail-on regression")
    .action((a: string, b: string, options: CommonOptions) => compareCommand(a, b, options));
}
