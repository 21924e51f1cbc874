/**
 * `forge eval run|ab|forgetting|compare`: evaluate models on task files, compare them with
 * paired statistics, check forgetting, and gate CI (exit 1 when a gate fails).
 *
 * What it writes it owns: `ab`, `forgetting` and `compare` build their `--out` directory in a
 * work directory claimed through @forge/core (`claimOutput`) and rename it into place at the
 * end, manifest included; an existing directory is replaced only when it is forge's previous
 * output of the same command and `--force` is given. Single files (`run --out`, `--junit`,
 * `--markdown`, `--html`) are written atomically and are never a directory or one of the
 * files the command reads. Task files reach no file outside their directory and run no code
 * unless `--allow-outside` / `--allow-code` say so.
 */
import { appendFileSync, statSync } from "node:fs";
import path from "node:path";
import {
  claimOutput,
  ForgeError,
  ioError,
  isInside,
  type OutputClaim,
  realPath,
  writeFileAtomic,
} from "@forge/core";
import {
  type EvalModel,
  type EvalResults,
  MAX_ROUNDS,
  remoteEvalModel,
  runTasks,
  type Task,
  type TaskOptions,
  taskInputs,
} from "@forge/eval";
import {
  type Comparison,
  compareResults,
  DEFAULT_DEGRADATION_THRESHOLD,
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
import { initBackend } from "@forge/model";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import { GateError, UsageError } from "../errors.js";
import { loadTasks } from "../files.js";
import { loadEvalModel } from "../models.js";
import { numberOption } from "../options.js";
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
  force?: boolean;
  modelUrl?: string;
  modelName?: string;
  allowOutside?: boolean;
  allowCode?: boolean;
}

const taskOptions = (options: CommonOptions): TaskOptions => ({
  allowOutside: Boolean(options.allowOutside),
  allowCode: Boolean(options.allowCode),
});

/** The run settings, checked before anything is loaded or written. */
interface RunSettings {
  rounds?: number;
  seed: number;
  cacheDir: string;
}

function runSettings(options: CommonOptions): RunSettings {
  const rounds = numberOption(
    options.rounds,
    "rounds",
    (n) => Number.isInteger(n) && n >= 1 && n <= MAX_ROUNDS,
    `an integer from 1 to ${MAX_ROUNDS}`,
  );
  return {
    ...(rounds !== undefined ? { rounds } : {}),
    seed: numberOption(options.seed, "seed", Number.isInteger, "an integer") ?? 0,
    cacheDir: options.cacheDir ?? ".forge-cache/eval",
  };
}

async function evaluate(
  model: EvalModel,
  tasks: Task[],
  settings: RunSettings,
  options: CommonOptions,
  system: string | undefined = options.system,
): Promise<EvalResults> {
  const bar = options.json ? undefined : new ProgressBar(`eval ${model.name}`, { unit: "items" });
  try {
    return await runTasks(model, tasks, {
      ...settings,
      ...taskOptions(options),
      ...(system !== undefined ? { system } : {}),
      onProgress: (e) => bar?.update(e.done, e.total, e.task),
    });
  } finally {
    bar?.stop();
  }
}

/**
 * Single files an eval command writes (`run --out`, its manifest, `--junit`, `--markdown`,
 * `--html`): refused (exit 2) when one is a directory, is one of the files the command reads,
 * would replace a file inside one of the directories it reads, or names the same file as
 * another output (or as the command's output directory, `outDir`).
 */
function checkFileOutputs(
  outputs: readonly [flag: string, file: string | undefined][],
  inputs: readonly string[],
  outDir?: string,
): void {
  const realInputs = inputs.map((input) => [input, realPath(input)] as const);
  const seen = new Map<string, string>();
  if (outDir !== undefined) seen.set(realPath(outDir), "--out");
  for (const [flag, file] of outputs) {
    if (file === undefined) continue;
    const real = realPath(file);
    const info = statSync(file, { throwIfNoEntry: false });
    if (info?.isDirectory())
      throw new ForgeError(
        "E_OUTPUT",
        `${flag} ${file} is a directory; a file path is needed there (forge never replaces a directory with a file)`,
      );
    for (const [input, realInput] of realInputs) {
      if (real === realInput)
        throw new ForgeError(
          "E_OUTPUT",
          `${flag} ${file} is the input ${input}: an output never replaces what the run reads`,
        );
      if (info && isInside(realInput, real))
        throw new ForgeError(
          "E_OUTPUT",
          `${flag} ${file} is a file of the input ${input}: an output never replaces what the run reads`,
        );
    }
    const other = seen.get(real);
    if (other !== undefined)
      throw new ForgeError(
        "E_OUTPUT",
        `${flag} ${file} is also the ${other} output: give each output its own path`,
      );
    seen.set(real, flag);
  }
}

/** Where a file the command writes goes: inside the claimed work directory when it belongs to the output. */
function placed(file: string, claim: OutputClaim | undefined): string {
  if (!claim) return file;
  const resolved = path.resolve(file);
  return isInside(claim.target, resolved)
    ? path.join(claim.work, path.relative(claim.target, resolved))
    : file;
}

/** Write the reports asked for; Markdown also goes to $GITHUB_STEP_SUMMARY when set. */
async function writeReports(
  input: ReportInput,
  options: CommonOptions,
  claim?: OutputClaim,
): Promise<string[]> {
  const written: string[] = [];
  const write = async (file: string | undefined, content: string) => {
    if (!file) return;
    const target = placed(file, claim);
    await writeFileAtomic(target, content);
    written.push(target);
  };
  const inOut = (name: string) => (claim ? path.join(claim.target, name) : undefined);
  await write(options.junit ?? inOut("junit.xml"), toJUnit(input));
  const markdown = toMarkdown(input);
  await write(options.markdown ?? inOut("report.md"), markdown);
  await write(options.html ?? inOut("report.html"), toHtml(input));
  const summary = process.env.GITHUB_STEP_SUMMARY;
  if (summary) {
    try {
      appendFileSync(summary, `${markdown}\n`);
    } catch (error) {
      throw ioError(error, `$GITHUB_STEP_SUMMARY (${summary})`);
    }
  }
  return written;
}

/** Print the gates' verdicts; the failure to throw once the outputs are in place, if any. */
function gateVerdict(gates: GateResult[], quiet: boolean): GateError | undefined {
  if (!quiet)
    for (const g of gates)
      process.stdout.write(
        `${g.passed ? pc.green("pass") : pc.red("FAIL")}  ${g.gate}: ${g.message}\n`,
      );
  const failed = gates.filter((g) => !g.passed);
  if (failed.length)
    return new GateError(
      `${failed.length} gate${failed.length > 1 ? "s" : ""} failed: ${failed.map((g) => `${g.gate}${g.task ? ` (${g.task})` : ""}`).join(", ")}`,
    );
  return undefined;
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

function createManifest(
  file: string,
  kind: string,
  parameters: Record<string, unknown>,
  id?: string,
): Promise<ManifestWriter> {
  return ManifestWriter.create(file, {
    kind,
    forgeVersion: pkg.version,
    parameters,
    hardwareIntervalSeconds: 2,
    ...(id ? { id } : {}),
  });
}

/**
 * Run `fn` with a manifest at `file`, finishing it (awaited) either way. A failure to record
 * the failure never hides the error that caused it.
 */
async function withManifest<T>(
  file: string,
  kind: string,
  parameters: Record<string, unknown>,
  fn: (m: ManifestWriter) => Promise<T>,
): Promise<T> {
  const manifest = await createManifest(file, kind, parameters);
  let value: T;
  try {
    value = await fn(manifest);
  } catch (error) {
    await manifest.fail(error).catch(() => undefined);
    throw error;
  }
  await manifest.succeed();
  return value;
}

/** Where a file written in the claim's work directory will stay once the work is in place. */
function finalPath(file: string, claim: OutputClaim): string {
  const resolved = path.resolve(file);
  return isInside(claim.work, resolved)
    ? path.join(claim.target, path.relative(claim.work, resolved))
    : file;
}

/**
 * A failed read or write in the (now removed) work directory, told as the output it was for:
 * `cannot write <out>/report.html: no space left on the device (ENOSPC); --out <out> is as it
 * was`.
 */
function inOutput(error: unknown, claim: OutputClaim, outDir: string): unknown {
  if (!ForgeError.isInstance(error) || error.category !== "io") return error;
  if (!error.message.includes(claim.work)) return error;
  return new ForgeError(
    error.code,
    `${error.message.replaceAll(claim.work, claim.target)}; --out ${outDir} is as it was`,
    { cause: error, category: "io" },
  );
}

/** What a command's work leaves to do once its output is in place: print, then the verdict. */
type Finish = () => GateError | undefined;

/**
 * Run `fn` in a claimed output directory (`--out`, of `kind`): its files and its manifest are
 * written into the claim's work directory, which is renamed into place when everything is
 * written; a failure removes the work and leaves whatever was at `--out` as it was. A failed
 * gate (exit 1) still commits the output: the reports say what failed.
 */
async function withOutputDir(
  outDir: string,
  kind: string,
  inputs: readonly string[],
  options: CommonOptions,
  parameters: Record<string, unknown>,
  fn: (claim: OutputClaim, manifest: ManifestWriter) => Promise<Finish>,
): Promise<number> {
  const claim = await claimOutput(outDir, {
    kind,
    inputs,
    force: Boolean(options.force),
    flag: "--out",
  });
  let manifest: ManifestWriter | undefined;
  let finish: Finish;
  let committing = false;
  try {
    manifest = await createManifest(
      path.join(claim.work, "manifest.json"),
      kind,
      parameters,
      `${path.basename(claim.target)}-${new Date().toISOString()}`,
    );
    finish = await fn(claim, manifest);
    await manifest.succeed();
    committing = true;
    await claim.commit();
  } catch (error) {
    if (!committing) await manifest?.fail(error).catch(() => undefined);
    // A commit that failed says where the finished work was kept; anything earlier is removed.
    await claim.release({ keepWork: committing });
    throw committing ? error : inOutput(error, claim, outDir);
  }
  const gate = finish();
  if (gate) throw gate;
  return 0;
}

async function runCommand(given: string | undefined, options: CommonOptions): Promise<number> {
  const url = options.modelUrl !== undefined ? String(options.modelUrl) : undefined;
  if (url !== undefined && given !== undefined)
    throw new UsageError(
      `give a model or --model-url, not both (got ${given} and --model-url ${url})`,
    );
  if (url === undefined && options.modelName !== undefined)
    throw new UsageError("--model-name names a served model: it needs --model-url");
  if (url === undefined && given === undefined)
    throw new UsageError("give the model to evaluate (a directory, forge-tiny, …) or --model-url");
  const location = url ?? given!;
  const settings = runSettings(options);
  const tasks = await loadTasks(asList(options.tasks), taskOptions(options));
  const out = options.out ?? "eval-results.json";
  const manifestFile = `${out.replace(/\.json$/, "")}.manifest.json`;
  checkFileOutputs(
    [
      ["--out", out],
      ["the run manifest", manifestFile],
      ["--junit", options.junit],
      ["--markdown", options.markdown],
      ["--html", options.html],
    ],
    [location, ...tasks.flatMap(taskInputs)],
  );
  return withManifest(
    manifestFile,
    "eval",
    { model: location, tasks: tasks.map((t) => t.name), ...options },
    async (manifest) => {
      // a served model is evaluated through its OpenAI-compatible API: no backend here
      let model: EvalModel;
      let dispose = () => {};
      if (url !== undefined) {
        manifest.setBackend("remote");
        model = await remoteEvalModel(url, {
          ...(options.modelName !== undefined ? { model: String(options.modelName) } : {}),
        });
      } else {
        const backend = await initBackend();
        manifest.setBackend(backend.name);
        const local = await loadEvalModel(location);
        dispose = () => local.model.dispose();
        model = local;
      }
      let results: EvalResults;
      try {
        await manifest.phaseStart("evaluate");
        results = await evaluate(model, tasks, settings, options);
        await manifest.phaseEnd("evaluate", "succeeded", { tasks: tasks.length });
      } finally {
        dispose();
      }
      await writeFileAtomic(out, `${JSON.stringify(results, null, 2)}\n`);
      await manifest.addArtifact(out, "results");
      for (const t of results.tasks) manifest.setMetric(t.name, t.mean);
      await writeReports({ title: `forge eval — ${model.name}`, results: [results] }, options);
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
    alpha: numberOption(options.alpha, "alpha", (n) => n > 0 && n < 1, "in (0, 1)") ?? 0.05,
    threshold: numberOption(options.threshold, "threshold", (n) => n >= 0, "≥ 0") ?? 0,
  };
}

/** The single-file report flags of a command whose other outputs go into `outDir`. */
const reportOutputs = (options: CommonOptions): [string, string | undefined][] => [
  ["--junit", options.junit],
  ["--markdown", options.markdown],
  ["--html", options.html],
];

/** Write a JSON file into the claimed output. */
const writeJson = (claim: OutputClaim, name: string, value: unknown) =>
  writeFileAtomic(path.join(claim.work, name), `${JSON.stringify(value, null, 2)}\n`);

/** Write the comparison's files and reports into the claim; printing waits for the commit. */
async function reportComparison(
  input: ReportInput,
  comparison: Comparison | undefined,
  forgetting: ForgettingResult | undefined,
  gates: GateKind[],
  options: CommonOptions,
  claim: OutputClaim,
  manifest: ManifestWriter,
): Promise<Finish> {
  const gateResults = gates.length ? evaluateGates(gates, comparison, forgetting) : [];
  const full = { ...input, ...(gateResults.length ? { gates: gateResults } : {}) };
  if (comparison) await writeJson(claim, "comparison.json", comparison);
  if (forgetting) await writeJson(claim, "forgetting.json", forgetting);
  for (const file of await writeReports(full, options, claim))
    await manifest.addArtifact(file, "report", finalPath(file, claim));
  manifest.setMetric(
    "gates",
    gateResults.map((g) => ({ gate: g.gate, task: g.task, passed: g.passed })),
  );
  const outDir = options.out ?? path.basename(claim.target);
  return () => {
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
  };
}

async function abCommand(a: string, b: string, options: CommonOptions): Promise<number> {
  const settings = runSettings(options);
  const gates = parseGates(options.failOn);
  if (gates.includes("forgetting") || gates.includes("max-degradation"))
    throw new UsageError(
      "ab checks regression and no-improvement; use forge eval forgetting for the forgetting and max-degradation gates",
    );
  const comparisonSettings = comparisonOptions(options);
  const tasks = await loadTasks(asList(options.tasks), taskOptions(options));
  const outDir = options.out ?? "eval-ab";
  const inputs = [a, b, ...tasks.flatMap(taskInputs)];
  checkFileOutputs(reportOutputs(options), inputs, outDir);
  return withOutputDir(
    outDir,
    "eval-ab",
    inputs,
    options,
    { a, b, tasks: tasks.map((t) => t.name), ...options },
    async (claim, manifest) => {
      manifest.setBackend((await initBackend()).name);
      const results: EvalResults[] = [];
      for (const [i, location] of [a, b].entries()) {
        const model = await loadEvalModel(location);
        try {
          await manifest.phaseStart(`evaluate ${model.name}`);
          const system = i === 0 ? options.systemA : options.systemB;
          results.push(await evaluate(model, tasks, settings, options, system));
          await manifest.phaseEnd(`evaluate ${model.name}`);
        } finally {
          model.model.dispose();
        }
      }
      await writeJson(claim, "a.json", results[0]);
      await writeJson(claim, "b.json", results[1]);
      const comparison = compareResults(results[0]!, results[1]!, comparisonSettings);
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
        claim,
        manifest,
      );
    },
  );
}

async function forgettingCommand(
  options: CommonOptions & { base?: string; baked?: string | string[]; maxDegradation?: string },
): Promise<number> {
  if (!options.base) throw new UsageError("--base <model> is required");
  const bakedList = asList(options.baked);
  if (bakedList.length === 0)
    throw new UsageError("--baked <model> is required (repeatable, in bake order)");
  const settings = runSettings(options);
  const gates = parseGates(options.failOn);
  const margin =
    numberOption(
      options.margin,
      "margin",
      (n) => n >= 0 && n < 1,
      "in [0, 1) (score units; 0.034 = 3.4 points)",
    ) ?? 0.034;
  const degradationThreshold =
    numberOption(
      options.maxDegradation,
      "max-degradation",
      (n) => n >= 0 && n < 1,
      "in [0, 1) (a fraction of the base score; 0.034 = 3.4%)",
    ) ?? DEFAULT_DEGRADATION_THRESHOLD;
  const alpha = comparisonOptions(options).alpha;
  const tasks = await loadTasks(asList(options.tasks), taskOptions(options));
  const outDir = options.out ?? "eval-forgetting";
  const inputs = [options.base, ...bakedList, ...tasks.flatMap(taskInputs)];
  checkFileOutputs(reportOutputs(options), inputs, outDir);
  return withOutputDir(
    outDir,
    "eval-forgetting",
    inputs,
    options,
    {
      base: options.base,
      baked: bakedList,
      tasks: tasks.map((t) => t.name),
      margin,
      degradationThreshold,
    },
    async (claim, manifest) => {
      manifest.setBackend((await initBackend()).name);
      const results: EvalResults[] = [];
      for (const location of [options.base!, ...bakedList]) {
        const model = await loadEvalModel(location);
        try {
          await manifest.phaseStart(`evaluate ${model.name}`);
          results.push(await evaluate(model, tasks, settings, options));
          await manifest.phaseEnd(`evaluate ${model.name}`);
        } finally {
          model.model.dispose();
        }
      }
      const forgetting = forgettingFromResults(results[0]!, results.slice(1), {
        margin,
        alpha,
        degradationThreshold,
      });
      for (const [i, r] of results.entries())
        await writeJson(claim, `${i === 0 ? "base" : `baked-${i}`}.json`, r);
      return reportComparison(
        { title: `forge eval forgetting — ${results[0]!.model.name}`, results, forgetting },
        undefined,
        forgetting,
        gates,
        options,
        claim,
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
  if (gates.includes("forgetting") || gates.includes("max-degradation"))
    throw new UsageError(
      "compare checks regression and no-improvement; use forge eval forgetting for the forgetting and max-degradation gates",
    );
  const settings = comparisonOptions(options);
  const outDir = options.out ?? "eval-compare";
  const inputs = [fileA, fileB];
  checkFileOutputs(reportOutputs(options), inputs, outDir);
  const a = await readResults(fileA);
  const b = await readResults(fileB);
  const comparison = compareResults(a, b, settings);
  return withOutputDir(
    outDir,
    "eval-compare",
    inputs,
    options,
    { a: fileA, b: fileB, ...options },
    (claim, manifest) =>
      reportComparison(
        { title: `forge eval compare — ${a.model.name} vs ${b.model.name}`, comparison },
        comparison,
        undefined,
        gates,
        options,
        claim,
        manifest,
      ),
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
    .option("--cache-dir <dir>", "Results cache (default .forge-cache/eval)")
    .option(
      "--allow-outside",
      "Let a task's data: and scorer module be files outside the task file's directory",
    )
    .option(
      "--allow-code",
      "Let js scorers run: a task's scorer module is JavaScript run with your rights",
    ) as T;
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

const forceFlag = <T extends ReturnType<CAC["command"]>>(command: T): T =>
  command.option(
    "--force",
    "Replace --out when it holds a previous output of this command (nothing else is replaced)",
  ) as T;

export function register(cli: CAC): void {
  reportFlags(
    runFlags(
      cli.command(
        "run [model]",
        "Evaluate a model (directory or bake output, or a served one with --model-url) on task files",
      ),
    ),
  )
    .option(
      "--model-url <url>",
      "Evaluate a model served over the OpenAI API (forge serve, vLLM, …) at this base URL instead",
    )
    .option("--model-name <name>", "With --model-url: the served model (default the first listed)")
    .option("--system <prompt>", "Evaluate prompted: a system prompt for tasks without one")
    .option("--out <file>", "Results JSON (default eval-results.json)")
    .example("forge eval run forge-tiny --tasks forge-tiny")
    .example("forge eval run --model-url http://127.0.0.1:8000 --tasks forge-tiny")
    .action((model: string, options: CommonOptions) => runCommand(model, options));
  forceFlag(
    reportFlags(
      gateFlags(
        runFlags(
          cli.command("ab <modelA> <modelB>", "Paired A/B test of two models on the same items"),
        ),
      ),
    ),
  )
    .option("--system-a <prompt>", "Evaluate A prompted (e.g. the base model with the prompt)")
    .option("--system-b <prompt>", "Evaluate B prompted")
    .option("--out <dir>", "Where results and reports go (default eval-ab)")
    .example(
      "forge eval ab forge-tiny bakes/pirate --system-a 'You are a pirate.' --tasks forge-tiny --fail-on regression",
    )
    .action((a: string, b: string, options: CommonOptions) => abCommand(a, b, options));
  forceFlag(
    reportFlags(
      gateFlags(
        runFlags(
          cli.command(
            "forgetting",
            "Base vs baked models on every task: matrix, deltas, non-inferiority, BWT",
          ),
        ),
      ),
    ),
  )
    .option("--base <model>", "The model before baking")
    .option("--baked <model>", "A baked model (repeatable, in bake order)")
    .option("--margin <m>", "Non-inferiority margin in score units (default 0.034 = 3.4 points)")
    .option(
      "--max-degradation <d>",
      "Threshold of the max-degradation gate: (base − baked) / base below it passes (default 0.034 = 3.4%)",
    )
    .option("--out <dir>", "Where results and reports go (default eval-forgetting)")
    .example(
      "forge eval forgetting --base forge-tiny --baked bakes/pirate --tasks forge-tiny --fail-on forgetting",
    )
    .action(
      (
        options: CommonOptions & {
          base?: string;
          baked?: string | string[];
          maxDegradation?: string;
        },
      ) => forgettingCommand(options),
    );
  forceFlag(
    reportFlags(
      gateFlags(
        cli.command(
          "compare <resultsA> <resultsB>",
          "Compare two results files offline (no model needed)",
        ),
      ),
    ),
  )
    .option("--out <dir>", "Where reports go (default eval-compare)")
    .example("forge eval compare main.json pr.json --fail-on regression")
    .action((a: string, b: string, options: CommonOptions) => compareCommand(a, b, options));
}
