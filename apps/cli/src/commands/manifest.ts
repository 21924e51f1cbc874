/**
 * `forge manifest show <file|dir> [--section …] [--json]` and `forge manifest plot <file> --out loss.svg`.
 */
import { writeFileSync } from "node:fs";
import {
  formatManifest,
  readManifest,
  SECTIONS,
  type Section,
  svgLineChart,
} from "@forge/manifest";
import type { CAC } from "cac";
import { UsageError } from "../errors.js";

function sections(value: unknown): Section[] {
  if (value === undefined) return SECTIONS;
  const list = (Array.isArray(value) ? value : [value]).flatMap((v) => String(v).split(","));
  for (const s of list) {
    if (!(SECTIONS as string[]).includes(s))
      throw new UsageError(`--section ${JSON.stringify(s)} is not one of ${SECTIONS.join(", ")}`);
  }
  return list as Section[];
}

async function show(
  location: string,
  options: { section?: string | string[]; json?: boolean },
): Promise<number> {
  const manifest = await readManifest(location);
  const chosen = sections(options.section);
  if (options.json) {
    const keys: Record<Section, (keyof typeof manifest)[]> = {
      run: ["run", "environment", "repository"],
      parameters: ["parameters"],
      timeline: ["phases"],
      training: ["training"],
      hardware: ["hardware"],
      outputs: ["outputs"],
    };
    const picked = Object.fromEntries(
      chosen
        .flatMap((s) => keys[s])
        .filter((k) => manifest[k] !== undefined)
        .map((k) => [k, manifest[k]]),
    );
    process.stdout.write(`${JSON.stringify(options.section ? picked : manifest, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatManifest(manifest, chosen)}\n`);
  }
  return 0;
}

async function plot(location: string, options: { out?: string }): Promise<number> {
  if (!options.out) throw new UsageError("--out <file.svg> is required");
  const manifest = await readManifest(location);
  const { logHistory, evalHistory } = manifest.training;
  if (logHistory.length === 0)
    throw new UsageError(`${location}: the manifest has no training steps to plot`);
  const phases = [...new Set(logHistory.map((s) => s.phase ?? "train"))];
  // Steps restart at each phase: lay phases end to end on one axis.
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const phase of phases) {
    offsets.set(phase, offset);
    offset += Math.max(
      ...logHistory.filter((s) => (s.phase ?? "train") === phase).map((s) => s.step),
    );
  }
  const series = phases.flatMap((phase) => {
    const base = offsets.get(phase)!;
    const train = logHistory
      .filter((s) => (s.phase ?? "train") === phase)
      .map((s) => [base + s.step, s.loss] as const);
    const evals = evalHistory
      .filter((s) => (s.phase ?? "train") === phase)
      .map((s) => [base + s.step, s.loss] as const);
    return [
      { name: `${phase} loss`, points: train },
      ...(evals.length ? [{ name: `${phase} validation`, points: evals, dashed: true }] : []),
    ];
  });
  writeFileSync(
    options.out,
    svgLineChart(series, { title: `${manifest.run.id} — loss`, xLabel: "step", yLabel: "loss" }),
  );
  process.stdout.write(`wrote ${options.out}\n`);
  return 0;
}

export function register(cli: CAC): void {
  cli
    .command(
      "show <manifest>",
      "Summarise a run manifest (a manifest.json, or a run directory holding one)",
    )
    .option(
      "--section <name>",
      `Only these sections (repeatable or comma-separated): ${SECTIONS.join(", ")}`,
    )
    .option("--json", "Print JSON (the whole manifest, or the chosen sections)")
    .example("forge manifest show runs/tiny-pipeline-20261122-0400 --section training")
    .action((location: string, options: { section?: string | string[]; json?: boolean }) =>
      show(location, options),
    );
  cli
    .command("plot <manifest>", "Plot the loss curves of a run manifest as SVG")
    .option("--out <file.svg>", "Where to write the chart")
    .example("forge manifest plot runs/tiny-pipeline-20261122-0400 --out loss.svg")
    .action((location: string, options: { out?: string }) => plot(location, options));
}
