/**
 * The demo: bake a persona into forge-tiny and show, with numbers, that the baked model without
 * the prompt behaves like the original model with it — and that nothing else broke.
 *
 * `runDemo` evaluates the base model with and without the prompt, bakes, evaluates the baked
 * model, measures the half-baking strength curve, runs the paired forgetting and persona
 * comparisons, checks the bars, and writes the report files into a directory the caller owns.
 * It records nothing itself: phases and bake steps arrive as events.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import {
  type BakeEvent,
  type BakeRunResult,
  bakePrompt,
  type DriftResult,
  type KLMeasurement,
  measureDrift,
  type RemoteTeacherSpec,
  type StimSpec,
  type StrengthPoint,
  strengthCurve,
  systemPrompt,
} from "@forge/baking";
import { ForgeError } from "@forge/core";
import { type EvalResults, loadTask, runTasks, type Task } from "@forge/eval";
import {
  compareResults,
  type ForgettingResult,
  forgettingFromResults,
  type ReportInput,
  strengthSvg,
  toHtml,
  toMarkdown,
} from "@forge/eval/stats";
import { evalModel, type GPT } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import { TASK_NAMES } from "./corpus.js";
import { personaDrift, personaDriftOptions } from "./drift.js";
import { PERSONA_NAMES, PERSONAS, type PersonaName } from "./personas.js";
import { trainingQuestions } from "./quality.js";

export type DemoPhase =
  | "evaluate-base"
  | "drift-prompted"
  | "bake"
  | "evaluate-baked"
  | "drift-baked"
  | "strength-curve";

export type DemoEvent =
  | { type: "phase-start"; phase: DemoPhase }
  | { type: "phase-end"; phase: DemoPhase }
  | { type: "bake"; event: BakeEvent }
  | { type: "progress"; phase: DemoPhase; done: number; total: number };

export interface DemoOptions {
  /** The base model (forge-tiny) and its tokenizer; the bake attaches an adapter to it. */
  model: GPT;
  tokenizer: Tokenizer;
  /** Its directory (the bake's lineage records it). */
  modelDir: string;
  /** forge-tiny's task files (the held-out tasks and the persona checks). */
  tasksDir: string;
  persona?: PersonaName;
  seed?: number;
  /** Where the report files are written (a directory the caller owns). */
  work: string;
  /** Where they will be once the caller moves them into place (recorded in the report). */
  reportDir: string;
  /** The time bar, in seconds (default 180). */
  maxSeconds?: number;
  /**
   * A remote teacher (an OpenAI-compatible endpoint serving this model, e.g. `forge serve`):
   * the rollout and the teacher's top-K come from it, and the bake trains on the top-K + tail KL.
   */
  remoteTeacher?: RemoteTeacherSpec;
  onEvent?: (event: DemoEvent) => void;
}

export interface DemoBar {
  name: string;
  value: number;
  pass: boolean;
}

export interface DemoEvaluation {
  /** Share of replies with the persona's signature. */
  signatureRate: number;
  /** Mean accuracy over the held-out task files. */
  accuracy: number;
  /** Items over the task files. */
  n: number;
  results: EvalResults;
}

export interface DemoReport {
  model: string;
  persona: PersonaName;
  prompt: string;
  kl: {
    before: { token: number; tokenSE: number; sequence: number; sequenceSE: number };
    after: { token: number; tokenSE: number; sequence: number; sequenceSE: number };
    reduction: number;
    n: number;
  };
  personaRate: { baseUnprompted: number; basePrompted: number; bakedUnprompted: number };
  accuracy: {
    baseUnprompted: number;
    basePrompted: number;
    bakedUnprompted: number;
    items: number;
  };
  strength: StrengthPoint[];
  forgetting: {
    task: string;
    base: number;
    baked: number;
    delta: number;
    ci: { low: number; high: number };
    nonInferior: boolean;
    p: number;
  }[];
  personaVsPrompted:
    | {
        task: string;
        prompted: number;
        baked: number;
        delta: number;
        ci: unknown;
        p: number;
      }
    | undefined;
  bars: DemoBar[];
  /** Every bar passed. */
  pass: boolean;
  timings: Record<string, number>;
  /** The baked adapter's directory (under reportDir). */
  bake: string;
  /**
   * Persona drift over a long chat (as `forge drift --persona <p> --baked <bake>` measures it):
   * the signature rate per turn, prompted base and baked, means with 95% intervals over the
   * conversations.
   */
  drift?: {
    turns: number;
    curves: { name: string; points: { turn: number; mean: number; low: number; high: number }[] }[];
  };
}

export interface DemoResult {
  report: DemoReport;
  bake: BakeRunResult;
  forgetting: ForgettingResult;
  /** The console table (plain text; the caller colours it). */
  table: string;
}

/**
 * The demo's bake: @forge/baking's rollout and training defaults, on forge-tiny's training
 * questions without the system-prompt stimuli of the default mix (the demo's bars do not
 * measure following another prompt, and those stimuli cost persona strength at this size), the
 * persona probes, and conversations whose earlier turns the teacher writes, so that the baked
 * persona holds over a long chat (the drift bar).
 */
export const DEMO_BAKE = {
  questions: 160,
  personaProbes: 20,
  multiturn: { count: 32, turns: 2 },
  /** Conversations of the drift measurement (`forge drift` runs 16; 8 keep the demo short). */
  driftSeeds: 8,
} as const;

/** The drift bar: the baked signature rate at the last turn within this of turn 1's. */
export const DRIFT_BAR_POINTS = 0.1;

const TASK_FILES = TASK_NAMES.map((t) => `${t}.yaml`);

/** forge-tiny's held-out task files and the persona's signature check. */
export async function demoTasks(dir: string, persona: PersonaName): Promise<Task[]> {
  const files = [...TASK_FILES, `persona-${persona}.yaml`].map((f) => path.join(dir, f));
  const { existsSync } = await import("node:fs");
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length)
    throw new ForgeError(
      "E_INPUT",
      `the demo's task files are missing: ${missing.join(", ")}; give the directory of forge-tiny's task files`,
    );
  return Promise.all(files.map((f) => loadTask(f)));
}

async function evaluate(
  name: string,
  model: GPT,
  tokenizer: Tokenizer,
  tasks: Task[],
  system: string | undefined,
): Promise<DemoEvaluation> {
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

const withoutPersona = (r: EvalResults): EvalResults => ({
  ...r,
  tasks: r.tasks.filter((t) => !t.name.startsWith("persona-")),
});
const onlyPersona = (r: EvalResults): EvalResults => ({
  ...r,
  tasks: r.tasks.filter((t) => t.name.startsWith("persona-")),
});

/** Stimuli: training questions, persona probes, and multi-turn conversations the teacher writes. */
function demoStimuli(seed: number): StimSpec[] {
  return [
    { type: "list", items: trainingQuestions(seed, DEMO_BAKE.questions) },
    { type: "persona", count: DEMO_BAKE.personaProbes },
    { type: "multiturn", ...DEMO_BAKE.multiturn },
  ];
}

const driftSummary = (name: string, r: DriftResult) => ({
  name,
  points: r.curve.map((p) => ({ turn: p.turn, mean: p.mean, low: p.low, high: p.high })),
});

const klSummary = (m: KLMeasurement) => ({
  token: m.token.estimate,
  tokenSE: m.token.standardError,
  sequence: m.sequence.estimate,
  sequenceSE: m.sequence.standardError,
});

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const pm = (m: KLMeasurement) =>
  `${m.token.estimate.toFixed(4)} ± ${m.token.standardError.toFixed(4)}`;

/** Run the demo; the report files land in `options.work`. */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const personaName = options.persona ?? "pirate";
  if (!PERSONA_NAMES.includes(personaName))
    throw new ForgeError(
      "E_INPUT",
      `persona ${JSON.stringify(personaName)} is not one of ${PERSONA_NAMES.join(", ")}`,
    );
  const systemText = PERSONAS[personaName].prompts[0]!;
  const seed = options.seed ?? 1;
  const maxSeconds = options.maxSeconds ?? 180;
  const { model, tokenizer, work } = options;
  const emit = options.onEvent ?? (() => undefined);
  const started = performance.now();
  const tasks = await demoTasks(options.tasksDir, personaName);
  const timings: Record<string, number> = {};
  const time = async <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const value = await fn();
    timings[name] = (performance.now() - t0) / 1000;
    return value;
  };
  const phase = async <T>(name: DemoPhase, fn: () => Promise<T>): Promise<T> => {
    emit({ type: "phase-start", phase: name });
    const value = await fn();
    emit({ type: "phase-end", phase: name });
    return value;
  };

  const { baseUnprompted, basePrompted } = await phase("evaluate-base", async () => ({
    baseUnprompted: await time("evaluate base", () =>
      evaluate("base", model, tokenizer, tasks, undefined),
    ),
    basePrompted: await time("evaluate base + prompt", () =>
      evaluate("base+prompt", model, tokenizer, tasks, systemText),
    ),
  }));
  const driftSetup = personaDrift(personaName, systemText);
  const driftOptions = (label: DemoPhase) => ({
    ...personaDriftOptions(driftSetup, { seeds: DEMO_BAKE.driftSeeds }),
    onTurn: (done: number, total: number) => emit({ type: "progress", phase: label, done, total }),
  });
  const promptedDrift = await phase("drift-prompted", () =>
    time("drift: base + prompt", () =>
      measureDrift(model, tokenizer, { ...driftOptions("drift-prompted"), system: systemText }),
    ),
  );
  const bakeDir = path.join(work, "bake");
  const bake = await time("bake (stim, rollout, teacher, KL, train, save)", () =>
    bakePrompt(model, tokenizer, {
      prompt: systemPrompt(systemText),
      // a remote teacher writes no multi-turn conversations (it would be asked mid-conversation)
      stim: options.remoteTeacher
        ? demoStimuli(seed).filter((spec) => spec.type !== "multiturn")
        : demoStimuli(seed),
      rollout: { seed },
      bake: { seed },
      measure: { seed: seed + 100 },
      out: bakeDir,
      baseModel: path.resolve(options.modelDir),
      ...(options.remoteTeacher ? { remoteTeacher: options.remoteTeacher } : {}),
      onEvent: (event) => emit({ type: "bake", event }),
    }),
  );
  const baked = await phase("evaluate-baked", () =>
    time("evaluate baked", () => evaluate("baked", model, tokenizer, tasks, undefined)),
  );
  const bakedDrift = await phase("drift-baked", () =>
    time("drift: baked", () => measureDrift(model, tokenizer, driftOptions("drift-baked"))),
  );
  const personaTask = tasks.filter((t) => t.name.startsWith("persona-"));
  const curve = await phase("strength-curve", () =>
    time("strength curve", () =>
      strengthCurve(model, [0, 0.25, 0.5, 0.75, 1, 1.5], async (m) => {
        const r = await runTasks(evalModel(m, tokenizer, { name: "alpha" }), personaTask);
        return r.tasks[0]!.mean;
      }),
    ),
  );

  // Paired statistics: did the bake break anything (non-inferiority on every task, margin 3.4
  // points), and does the baked model match the prompted one on the persona check?
  const forgetting = forgettingFromResults(withoutPersona(baseUnprompted.results), [
    withoutPersona(baked.results),
  ]);
  const personaComparison = compareResults(
    onlyPersona(basePrompted.results),
    onlyPersona(baked.results),
  );
  const klBefore = bake.before!;
  const klAfter = bake.after!;
  const reduction = 1 - klAfter.token.estimate / klBefore.token.estimate;
  const wall = (performance.now() - started) / 1000;
  const bars: DemoBar[] = [
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
    {
      name: `baked persona at turn ${bakedDrift.turns} within ${100 * DRIFT_BAR_POINTS} points of turn 1`,
      value: bakedDrift.first - bakedDrift.last,
      pass: bakedDrift.first - bakedDrift.last <= DRIFT_BAR_POINTS + 1e-9,
    },
    {
      name: `demo ≤ ${maxSeconds >= 60 && maxSeconds % 60 === 0 ? `${maxSeconds / 60} minutes` : `${maxSeconds} s`}`,
      value: wall,
      pass: wall <= maxSeconds,
    },
  ];
  const report: DemoReport = {
    model: options.modelDir,
    persona: personaName,
    prompt: systemText,
    kl: { before: klSummary(klBefore), after: klSummary(klAfter), reduction, n: klAfter.n },
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
    pass: bars.every((b) => b.pass),
    timings: {
      ...timings,
      ...Object.fromEntries(Object.entries(bake.phaseSeconds).map(([k, v]) => [`bake: ${k}`, v])),
      total: wall,
    },
    bake: path.join(options.reportDir, "bake"),
    drift: {
      turns: bakedDrift.turns,
      curves: [driftSummary("base + prompt", promptedDrift), driftSummary("baked", bakedDrift)],
    },
  };

  const table = [
    ["", "base", "base + prompt", "baked (no prompt)"],
    ["KL to prompted model (token)", pm(klBefore), "0", pm(klAfter)],
    [
      `${personaName} signature rate`,
      pct(baseUnprompted.signatureRate),
      pct(basePrompted.signatureRate),
      pct(baked.signatureRate),
    ],
    [
      `${personaName} rate, chat turn 1 → ${bakedDrift.turns}`,
      "–",
      `${pct(promptedDrift.first)} → ${pct(promptedDrift.last)}`,
      `${pct(bakedDrift.first)} → ${pct(bakedDrift.last)}`,
    ],
    [
      "task accuracy (held out)",
      pct(baseUnprompted.accuracy),
      pct(basePrompted.accuracy),
      pct(baked.accuracy),
    ],
  ];
  const widths = [34, 22, 18, 22];
  writeReportFiles(work, {
    report,
    results: [baseUnprompted.results, basePrompted.results, baked.results],
    evalReport: {
      title: `forge demo — ${personaName}: base vs baked (forgetting) and base + prompt vs baked (persona)`,
      comparison: personaComparison,
      forgetting,
    },
    table,
    systemText,
  });
  return {
    report,
    bake,
    forgetting,
    table: table.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("")).join("\n"),
  };
}

function writeReportFiles(
  work: string,
  parts: {
    report: DemoReport;
    results: EvalResults[];
    evalReport: ReportInput;
    table: string[][];
    systemText: string;
  },
): void {
  const { report, table } = parts;
  const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  for (const results of parts.results)
    writeFileSync(path.join(work, `${results.model.name}.results.json`), json(results));
  const rates = (r: { baseUnprompted: number; basePrompted: number; bakedUnprompted: number }) => ({
    base: r.baseUnprompted,
    prompted: r.basePrompted,
    baked: r.bakedUnprompted,
  });
  const strength = { label: `${report.persona} signature rate`, points: report.strength };
  // eval.html: the paired statistics, with the KL and the strength curve they go with
  const evalInput: ReportInput = { ...parts.evalReport, kl: report.kl, strength };
  writeFileSync(path.join(work, "eval.html"), toHtml(evalInput));
  writeFileSync(path.join(work, "eval.md"), toMarkdown(evalInput));
  // report.html: every figure of the run on one page
  writeFileSync(
    path.join(work, "report.html"),
    toHtml({
      title: `forge demo — baking "${parts.systemText}" into forge-tiny`,
      facts: [
        ["model", report.model],
        ["persona", report.persona],
        ["prompt", report.prompt],
        ["baked adapter", report.bake],
        ["result", report.pass ? "every bar passed" : "a bar failed"],
      ],
      kl: report.kl,
      beforeAfter: [
        { label: `${report.persona} signature rate`, ...rates(report.personaRate) },
        {
          label: `task accuracy (held out, ${report.accuracy.items} items)`,
          ...rates(report.accuracy),
        },
      ],
      bars: report.bars,
      strength,
      ...(report.drift ? { drift: report.drift } : {}),
      ...(parts.evalReport.comparison ? { comparison: parts.evalReport.comparison } : {}),
      ...(parts.evalReport.forgetting ? { forgetting: parts.evalReport.forgetting } : {}),
      timings: report.timings,
    }),
  );
  writeFileSync(path.join(work, "report.json"), json(report));
  writeFileSync(path.join(work, "strength.svg"), strengthSvg(strength));
  const markdown = [
    `# forge demo — baking "${parts.systemText}" into forge-tiny`,
    "",
    "| | base | base + prompt | baked (no prompt) |",
    "|---|---|---|---|",
    ...table.slice(1).map((r) => `| ${r.join(" | ")} |`),
    "",
    `KL reduction: ${pct(report.kl.reduction)} of the token-level estimate, n = ${report.kl.n} trajectories`,
    "",
    `Strength curve (persona rate at adapter strength α): ${report.strength.map((p) => `α=${p.alpha}: ${pct(p.value)}`).join(", ")}`,
    "",
    "Forgetting (baked − base on each held-out task; non-inferior at a 3.4-point margin):",
    "",
    "| task | base | baked | Δ | 95% CI | non-inferior |",
    "|---|---|---|---|---|---|",
    ...report.forgetting.map(
      (c) =>
        `| ${c.task} | ${pct(c.base)} | ${pct(c.baked)} | ${(100 * c.delta).toFixed(1)} | ${(100 * c.ci.low).toFixed(1)} … ${(100 * c.ci.high).toFixed(1)} | ${c.nonInferior ? "yes" : "no"} (p = ${c.p.toPrecision(2)}) |`,
    ),
    "",
    ...report.bars.map((b) => `- ${b.pass ? "pass" : "FAIL"} — ${b.name}`),
    "",
    `Total ${report.timings.total!.toFixed(1)} s.`,
    "",
  ].join("\n");
  writeFileSync(path.join(work, "report.md"), markdown);
}
