/**
 * `forge drift --model <dir> --persona pirate [--baked <dir>] --turns 30`: the persona drift
 * meter. The model holds 30-turn conversations with the persona as its system prompt; a baked
 * model (if given) holds the same conversations with no system prompt. Prints a terminal chart
 * and writes drift.json, drift.svg and manifest.json to --out.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  CONTEXT_POLICIES,
  type ContextPolicy,
  compareDrift,
  type DriftOptions,
  type DriftResult,
  type Estimate,
  measureDrift,
} from "@forge/baking";
import { claimOutput } from "@forge/core";
import { ManifestWriter, svgLineChart } from "@forge/manifest";
import { describeBackend, type GPT, initBackend } from "@forge/model";
import { DRIFT_DEFAULTS, PERSONA_NAMES, type PersonaName, personaDrift } from "@forge/tiny";
import type { Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import { terminalChart } from "../chart.js";
import { UsageError } from "../errors.js";
import { loadEvalModel, resolveModelLocation } from "../models.js";
import { integerOption } from "../options.js";
import { ProgressBar } from "../progress.js";

interface DriftCommandOptions {
  model?: string;
  baked?: string;
  persona?: string;
  prompt?: string;
  signature?: string;
  probes?: string;
  distractors?: string;
  turns?: string;
  policy?: string;
  seeds?: string;
  maxNewTokens?: string;
  temperature?: string;
  out?: string;
  force?: boolean;
  json?: boolean;
}

function readLines(file: string, flag: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(
      `cannot read ${flag} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (lines.length === 0) throw new UsageError(`${flag} ${file} has no questions (one per line)`);
  return lines;
}

/** What to measure: a forge-tiny persona by name, or any prompt with a signature regex. */
export function resolvePersona(options: {
  persona?: string;
  prompt?: string;
  signature?: string;
  probes?: string;
  distractors?: string;
}): {
  name: string;
  system: string;
  score: (reply: string) => number;
  probes: string[];
  distractors?: string[];
} {
  const probes = options.probes ? readLines(options.probes, "--probes") : undefined;
  const distractors = options.distractors
    ? readLines(options.distractors, "--distractors")
    : undefined;
  if (options.persona !== undefined) {
    if (!PERSONA_NAMES.includes(options.persona as PersonaName))
      throw new UsageError(
        `--persona ${JSON.stringify(options.persona)} is not a forge-tiny persona; accepted: ${PERSONA_NAMES.join(", ")} (or give --prompt and --signature)`,
      );
    const setup = personaDrift(options.persona as PersonaName, options.prompt);
    return {
      ...setup,
      probes: probes ?? setup.probes,
      distractors: distractors ?? setup.distractors,
    };
  }
  if (options.prompt === undefined || options.signature === undefined)
    throw new UsageError(
      `give --persona <${PERSONA_NAMES.join("|")}>, or --prompt "…" with --signature <regex> (a reply scores 1 when the regex matches)`,
    );
  let regex: RegExp;
  try {
    regex = new RegExp(options.signature);
  } catch (error) {
    throw new UsageError(`--signature is not a valid regex: ${(error as Error).message}`);
  }
  if (!probes)
    throw new UsageError("--probes <file> is required with --prompt: questions, one per line");
  return {
    name: "custom",
    system: options.prompt,
    score: (reply) => (regex.test(reply) ? 1 : 0),
    probes,
    ...(distractors ? { distractors } : {}),
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}`;
const interval = (e: Estimate) => `${pct(e.mean)} [${pct(e.low)}, ${pct(e.high)}]`;

function summaryRows(label: string, r: DriftResult): string[] {
  return [
    `${label.padEnd(10)} turn 1 ${pct(r.first).padStart(5)}%   turn ${r.turns} ${pct(r.last).padStart(5)}%   average drift ${interval(r.averageDrift)} pts   drift at turn ${r.turns} ${interval(r.finalDrift)} pts`,
  ];
}

async function driftCommand(options: DriftCommandOptions): Promise<number> {
  const persona = resolvePersona(options);
  const policy = (options.policy ?? "sliding") as ContextPolicy;
  if (!CONTEXT_POLICIES.includes(policy))
    throw new UsageError(
      `--policy ${JSON.stringify(options.policy)} is not one of ${CONTEXT_POLICIES.join(", ")}`,
    );
  const turns = integerOption(options.turns, "turns", {
    minimum: 1,
    fallback: DRIFT_DEFAULTS.turns,
  });
  const seedCount = integerOption(options.seeds, "seeds", {
    minimum: 1,
    fallback: DRIFT_DEFAULTS.seeds,
  });
  const maxNewTokens = integerOption(options.maxNewTokens, "max-new-tokens", {
    minimum: 1,
    fallback: DRIFT_DEFAULTS.maxNewTokens,
  });
  const temperature =
    options.temperature === undefined ? DRIFT_DEFAULTS.temperature : Number(options.temperature);
  if (!(temperature >= 0))
    throw new UsageError(`--temperature must be ≥ 0; got ${JSON.stringify(options.temperature)}`);
  const modelDir = await resolveModelLocation(options.model);
  const out = path.resolve(options.out ?? `forge-drift-${persona.name}`);
  const claim = await claimOutput(out, {
    kind: "drift",
    ...(options.force ? { force: true } : {}),
    inputs: [modelDir, options.baked, options.probes, options.distractors],
    flag: "--out",
  });
  const work = claim.work;
  let prompted: Awaited<ReturnType<typeof loadEvalModel>>;
  let baked: Awaited<ReturnType<typeof loadEvalModel>> | undefined;
  let backend: Awaited<ReturnType<typeof initBackend>>;
  try {
    backend = await initBackend();
    if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
    prompted = await loadEvalModel(modelDir);
    baked = options.baked ? await loadEvalModel(options.baked) : undefined;
  } catch (error) {
    await claim.release();
    throw error;
  }
  const manifest = await ManifestWriter.create(path.join(work, "manifest.json"), {
    kind: "drift",
    forgeVersion: pkg.version,
    backend: backend.name,
    parameters: {
      model: modelDir,
      baked: options.baked ?? null,
      persona: persona.name,
      system: persona.system,
      turns,
      policy,
      seeds: seedCount,
      maxNewTokens,
      temperature,
    },
  });
  const seeds = Array.from({ length: seedCount }, (_, i) => i + 1);
  const base: Omit<DriftOptions, "system"> = {
    score: persona.score,
    probes: persona.probes,
    ...(persona.distractors ? { distractors: persona.distractors } : {}),
    turns,
    contextPolicy: policy,
    seeds,
    maxNewTokens,
    temperature,
  };
  const run = async (label: string, model: GPT, tokenizer: Tokenizer, system?: string) => {
    await manifest.phaseStart(label);
    const bar = options.json ? undefined : new ProgressBar(label, { unit: "turns" });
    const result = measureDrift(model, tokenizer, {
      ...base,
      ...(system ? { system } : {}),
      onTurn: (turn, total) => bar?.update(turn, total),
    });
    bar?.stop();
    await manifest.phaseEnd(label);
    return result;
  };
  try {
    const promptedResult = await run(
      "prompted",
      prompted.model,
      prompted.tokenizer,
      persona.system,
    );
    const bakedResult = baked ? await run("baked", baked.model, baked.tokenizer) : undefined;
    const comparison = bakedResult ? compareDrift(promptedResult, bakedResult) : undefined;
    const series = [
      { name: "prompted", result: promptedResult, marker: "p" },
      ...(bakedResult ? [{ name: "baked", result: bakedResult, marker: "b" }] : []),
    ];
    const report = {
      persona: persona.name,
      system: persona.system,
      policy,
      turns,
      seeds,
      contextTokens: promptedResult.contextTokens,
      prompted: promptedResult,
      ...(bakedResult ? { baked: bakedResult } : {}),
      relativeReduction: comparison?.relativeReduction ?? null,
    };
    writeFileSync(path.join(work, "drift.json"), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(
      path.join(work, "drift.svg"),
      svgLineChart(
        series.flatMap((s, i) => [
          {
            name: `${s.name} (mean of ${seedCount} seeds)`,
            points: s.result.curve.map((p) => [p.turn, p.mean] as const),
            color: ["#dc2626", "#2563eb"][i]!,
          },
          {
            name: `${s.name} 95% CI`,
            points: s.result.curve.map((p) => [p.turn, p.low] as const),
            color: ["#dc2626", "#2563eb"][i]!,
            dashed: true,
          },
          {
            name: "",
            points: s.result.curve.map((p) => [p.turn, p.high] as const),
            color: ["#dc2626", "#2563eb"][i]!,
            dashed: true,
          },
        ]),
        {
          title: `Persona drift (${persona.name}, ${policy} context of ${promptedResult.contextTokens} tokens)`,
          xLabel: "turn",
          yLabel: "persona score",
          yMin: 0,
          yMax: 1,
        },
      ),
    );
    for (const s of series) {
      manifest.setMetric(`${s.name}.first`, s.result.first);
      manifest.setMetric(`${s.name}.last`, s.result.last);
      manifest.setMetric(`${s.name}.averageDrift`, s.result.averageDrift.mean);
    }
    if (comparison) manifest.setMetric("relativeReduction", comparison.relativeReduction);
    for (const file of ["drift.json", "drift.svg"])
      await manifest.addArtifact(path.join(work, file), undefined, path.join(out, file));
    await manifest.succeed();
    await claim.commit();
    if (options.json) {
      const brief = (r: DriftResult) => ({
        first: r.first,
        last: r.last,
        averageDrift: r.averageDrift,
        finalDrift: r.finalDrift,
        systemLostAt: r.systemLostAt,
        curve: r.curve.map((p) => p.mean),
      });
      process.stdout.write(
        `${JSON.stringify(
          {
            out,
            persona: persona.name,
            policy,
            turns,
            seeds: seedCount,
            prompted: brief(promptedResult),
            ...(bakedResult ? { baked: brief(bakedResult) } : {}),
            relativeReduction: report.relativeReduction,
          },
          null,
          2,
        )}\n`,
      );
    } else {
      const chart = terminalChart(
        series.map((s) => ({
          name: `${s.name}${s.name === "prompted" ? " (system prompt at turn 1)" : " (no prompt)"}`,
          values: s.result.curve.map((p) => p.mean),
          marker: s.marker,
        })),
        { xLabel: "turn" },
      );
      const lost =
        promptedResult.systemLostAt === null
          ? "the system prompt stayed in the context"
          : `the system prompt had left every conversation's context by turn ${promptedResult.systemLostAt}`;
      process.stdout.write(
        [
          `${pc.bold("persona drift")}: ${persona.name} (${JSON.stringify(persona.system)}), ${policy} context, ${seedCount} seeds; ${lost}`,
          "",
          chart,
          "",
          ...series.flatMap((s) => summaryRows(s.name, s.result)),
          ...(comparison
            ? [
                `relative reduction of average drift: ${comparison.relativeReduction === null ? "– (the prompted model does not drift)" : `${pct(comparison.relativeReduction)}%`}`,
              ]
            : []),
          `written: ${path.join(out, "drift.json")}, ${path.join(out, "drift.svg")}, ${path.join(out, "manifest.json")}`,
          "",
        ].join("\n"),
      );
    }
    return 0;
  } catch (error) {
    await manifest.fail(error);
    await claim.release();
    throw error;
  } finally {
    prompted.model.dispose();
    baked?.model.dispose();
  }
}

export function register(cli: CAC): void {
  cli
    .command("", "Persona drift: does the persona survive a long conversation?")
    .option("--model <dir>", "The prompted model (default: forge-tiny)")
    .option("--baked <dir>", "A baked model or bake output to compare, run with no system prompt")
    .option("--persona <name>", `A forge-tiny persona: ${PERSONA_NAMES.join(", ")}`)
    .option("--prompt <text>", "The system prompt (with --signature, for any model)")
    .option("--signature <regex>", "A reply scores 1 when this regex matches")
    .option("--probes <file>", "Probe questions, one per line")
    .option("--distractors <file>", "Distractor questions, one per line")
    .option("--turns <n>", `User turns per conversation (default ${DRIFT_DEFAULTS.turns})`)
    .option("--policy <policy>", "Context policy: sliding (default) or keep-system")
    .option("--seeds <n>", `Conversations, one per seed, batched (default ${DRIFT_DEFAULTS.seeds})`)
    .option(
      "--max-new-tokens <n>",
      `Longest reply (default ${DRIFT_DEFAULTS.maxNewTokens}: forge-tiny's worked answers run long)`,
    )
    .option("--temperature <t>", `Sampling temperature (default ${DRIFT_DEFAULTS.temperature})`)
    .option("--out <dir>", "Where drift.json, drift.svg and manifest.json go")
    .option("--force", "Replace a previous drift output in --out")
    .option("--json", "Print a JSON summary")
    .example("forge drift --persona pirate --baked forge-demo-pirate/bake --turns 30")
    .action((options: DriftCommandOptions) => driftCommand(options));
}
