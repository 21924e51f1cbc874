/**
 * `forge demo`: bake a persona into the shipped forge-tiny and show, with numbers, that the
 * baked model without the prompt behaves like the original model with it (@forge/tiny's
 * `runDemo`). Exits 1 when a bar fails.
 */
import path from "node:path";
import { claimOutput, GateError } from "@forge/core";
import { ManifestWriter } from "@forge/manifest";
import { describeBackend, initBackend } from "@forge/model";
import { FORGE_TINY_TASKS, PERSONA_NAMES, type PersonaName, runDemo } from "@forge/tiny";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import { bakeEventSink, finishBakeManifest, remoteTeacherFrom } from "../bake-run.js";
import { UsageError } from "../errors.js";
import { loadBase, resolveModelLocation } from "../models.js";
import { numberOption } from "../options.js";
import { ProgressBar } from "../progress.js";

interface DemoOptions {
  model?: string;
  tasks?: string;
  persona?: string;
  report?: string;
  force?: boolean;
  seed?: string;
  maxSeconds?: string;
  json?: boolean;
  teacherUrl?: string;
  teacherModel?: string;
  teacherConcurrency?: string;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

async function demoCommand(options: DemoOptions): Promise<number> {
  const persona = (options.persona ?? "pirate") as PersonaName;
  if (!PERSONA_NAMES.includes(persona))
    throw new UsageError(
      `--persona ${JSON.stringify(options.persona)} is not one of ${PERSONA_NAMES.join(", ")}`,
    );
  const seed = numberOption(options.seed, "seed", Number.isInteger, "an integer") ?? 1;
  const maxSeconds =
    numberOption(options.maxSeconds, "max-seconds", (n) => n > 0, "a positive number of seconds") ??
    180;
  const remoteTeacher = remoteTeacherFrom(options);
  const modelDir = await resolveModelLocation(options.model);
  const tasksDir =
    options.tasks ?? (options.model ? path.join(modelDir, "tasks") : FORGE_TINY_TASKS);
  const reportDir = path.resolve(options.report ?? `forge-demo-${persona}`);
  const log = (text: string) => {
    if (!options.json) process.stderr.write(`${text}\n`);
  };
  // everything is written into the claim's work directory and renamed to reportDir at the end
  const claim = await claimOutput(reportDir, {
    kind: "demo",
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, tasksDir],
    flag: "--report",
  });
  let loaded: Awaited<ReturnType<typeof loadBase>> | undefined;
  let manifest: ManifestWriter | undefined;
  try {
    const backend = await initBackend({ wasmThreads: "auto" });
    loaded = await loadBase(modelDir);
    log(
      `${pc.bold("forge demo")}: baking a ${persona} into ${modelDir}\n${describeBackend(backend)}`,
    );
    manifest = await ManifestWriter.create(path.join(claim.work, "manifest.json"), {
      kind: "demo",
      forgeVersion: pkg.version,
      backend: backend.name,
      parameters: {
        model: modelDir,
        persona,
        seed,
        maxSeconds,
        ...(remoteTeacher
          ? { teacher: { url: remoteTeacher.url, model: remoteTeacher.model ?? null } }
          : {}),
      },
    });
    const bakeSink = bakeEventSink(manifest, options.json);
    const phases: Promise<void>[] = [];
    let bar: ProgressBar | undefined;
    const result = await runDemo({
      model: loaded.model,
      tokenizer: loaded.tokenizer,
      modelDir,
      tasksDir,
      persona,
      seed,
      maxSeconds,
      work: claim.work,
      reportDir,
      ...(remoteTeacher ? { remoteTeacher } : {}),
      onEvent: (event) => {
        if (event.type === "bake") bakeSink(event.event);
        else if (event.type === "progress") {
          if (options.json) return;
          bar ??= new ProgressBar(event.phase.replace("-", ": "), { unit: "turns" });
          bar.update(event.done, event.total);
        } else if (event.type === "phase-start") phases.push(manifest!.phaseStart(event.phase));
        else {
          bar?.stop();
          bar = undefined;
          phases.push(manifest!.phaseEnd(event.phase));
        }
      },
    });
    await bakeSink.settled();
    await Promise.all(phases);
    const { report } = result;
    manifest.setMetric("report", { ...report, backend: backend.name });
    await finishBakeManifest(
      manifest,
      { ...result.bake, out: path.join(reportDir, "bake") },
      path.join(claim.work, "bake"),
    );
    await claim.commit();
    if (options.json)
      process.stdout.write(`${JSON.stringify({ ...report, backend: backend.name }, null, 2)}\n`);
    else {
      const inferior = report.forgetting.filter((c) => !c.nonInferior);
      const mean = report.forgetting.reduce((a, c) => a + c.delta, 0) / report.forgetting.length;
      process.stdout.write(
        [
          "",
          result.table,
          "",
          `KL reduction ${pct(report.kl.reduction)}; strength curve ${report.strength.map((p) => `α=${p.alpha} ${pct(p.value)}`).join(", ")}`,
          `forgetting: ${report.forgetting.length - inferior.length}/${report.forgetting.length} tasks non-inferior at a 3.4-point margin${inferior.length ? ` (not shown for: ${inferior.map((c) => c.task).join(", ")})` : ""}; mean change ${(100 * mean).toFixed(1)} points`,
          ...report.bars.map((b) => `${b.pass ? pc.green("pass") : pc.red("FAIL")}  ${b.name}`),
          `timings: ${Object.entries(report.timings)
            .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
            .join(", ")}`,
          `report: ${path.join(reportDir, "report.html")} (beside it report.md, report.json, strength.svg, eval.html, *.results.json, manifest.json, bake/)`,
          "",
        ].join("\n"),
      );
    }
    if (!report.pass)
      throw new GateError(
        `a demo bar failed: ${report.bars
          .filter((b) => !b.pass)
          .map((b) => b.name)
          .join(", ")} (the report is in ${reportDir})`,
      );
    return 0;
  } catch (error) {
    if (!GateError.isInstance(error)) {
      await manifest?.fail(error);
      await claim.release();
    }
    throw error;
  } finally {
    loaded?.model.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command("", "Bake a persona into the shipped forge-tiny and print before/after numbers")
    .option("--model <dir>", "Model to bake into (default forge-tiny)")
    .option("--persona <name>", `Persona to bake: ${PERSONA_NAMES.join(", ")} (default pirate)`)
    .option("--tasks <dir>", "forge-tiny's task files (default: the shipped model's tasks)")
    .option("--report <dir>", "Where the report goes (default ./forge-demo-<persona>)")
    .option("--force", "Replace a previous demo report in --report")
    .option("--seed <n>", "Seed (default 1)")
    .option("--max-seconds <s>", "The time bar: the demo must finish within it (default 180)")
    .option(
      "--teacher-url <base>",
      "A remote teacher: an OpenAI-compatible endpoint serving the model (e.g. forge serve forge-tiny) for the rollout and top-K",
    )
    .option("--teacher-model <name>", "The served model's name (default: the first it lists)")
    .option("--teacher-concurrency <n>", "Requests to the teacher in flight at once (default 8)")
    .option("--json", "Print the report as JSON")
    .example("forge demo")
    .action((options: DemoOptions) => demoCommand(options));
}
