/**
 * Reports for people and CI: JUnit XML (one test case per task or gate), Markdown (for
 * $GITHUB_STEP_SUMMARY), a terminal heatmap, and one self-contained HTML page with SVG plots
 * (per-task Δ with confidence intervals; the forgetting heatmap).
 */
import { svgLineChart } from "@forge/core";
import type { Comparison, GateResult } from "./compare.js";
import { escapeXml, markdownToHtml } from "./markdown.js";
import type { EvalResults } from "./runner.js";
import type { ForgettingResult } from "./stats/forgetting.js";

const pct = (x: number) => `${(100 * x).toFixed(1)}`;

/** A KL estimate with its standard errors (token level and per sequence). */
export interface KLEstimateSummary {
  token: number;
  tokenSE: number;
  sequence: number;
  sequenceSE: number;
}

/** KL to the prompted model before (the base) and after (the baked model) a bake. */
export interface KLSummary {
  before: KLEstimateSummary;
  after: KLEstimateSummary;
  /** 1 − after / before, token level. */
  reduction: number;
  /** Trajectories measured. */
  n: number;
}

/** A rate (in [0, 1]) of the base, the prompted base and the baked model. */
export interface BeforeAfterRow {
  label: string;
  base: number;
  prompted: number;
  baked: number;
}

/** The half-baking curve: a score at each adapter strength α. */
export interface StrengthCurve {
  /** What is scored, e.g. "pirate signature rate". */
  label: string;
  points: readonly { alpha: number; value: number }[];
}

/** Persona score by turn over a long chat, one curve per model (e.g. "prompted", "baked"). */
export interface DriftCurves {
  turns: number;
  curves: readonly {
    name: string;
    points: readonly { turn: number; mean: number; low: number; high: number }[];
  }[];
}

/** A bake's training: loss per step, and the validation KL before training and at its best. */
export interface TrainingCurve {
  history: readonly { step: number; loss: number }[];
  validationBefore?: number;
  validationBest?: number;
}

/** A pass/fail bar with the measured value. */
export interface ReportBar {
  name: string;
  value: number;
  pass: boolean;
}

export interface ReportInput {
  title: string;
  /** Lines under the title: [label, value], e.g. ["model", "forge-tiny"]. */
  facts?: readonly (readonly [string, string])[];
  /** KL to the prompted model before and after a bake. */
  kl?: KLSummary;
  /** Rates of base, prompted base and baked model (the before/after table, with `kl`). */
  beforeAfter?: readonly BeforeAfterRow[];
  strength?: StrengthCurve;
  drift?: DriftCurves;
  training?: TrainingCurve;
  bars?: readonly ReportBar[];
  results?: EvalResults[];
  comparison?: Comparison;
  forgetting?: ForgettingResult;
  gates?: GateResult[];
  /** Seconds per phase. */
  timings?: Readonly<Record<string, number>>;
}

/** JUnit XML: a test case per task result, per comparison and per gate. */
export function toJUnit(input: ReportInput): string {
  const cases: string[] = [];
  let failures = 0;
  for (const results of input.results ?? []) {
    for (const task of results.tasks) {
      cases.push(
        `    <testcase classname="forge.eval.${escapeXml(results.model.name)}" name="${escapeXml(task.name)}" time="0"><system-out>${escapeXml(`mean ${task.mean.toFixed(4)} over ${task.n} items × ${task.rounds} rounds`)}</system-out></testcase>`,
      );
    }
  }
  for (const t of input.comparison?.tasks ?? []) {
    cases.push(
      `    <testcase classname="forge.eval.ab" name="${escapeXml(t.task)}" time="0"><system-out>${escapeXml(`Δ ${pct(t.result.delta)} points, p ${t.result.tTest.p.toPrecision(3)}, adjusted ${t.pAdjusted.toPrecision(3)}, winner ${t.winner}`)}</system-out></testcase>`,
    );
  }
  for (const gate of input.gates ?? []) {
    const name = `${gate.gate}${gate.task ? `: ${gate.task}` : ""}`;
    if (gate.passed)
      cases.push(`    <testcase classname="forge.eval.gate" name="${escapeXml(name)}" time="0"/>`);
    else {
      failures++;
      cases.push(
        `    <testcase classname="forge.eval.gate" name="${escapeXml(name)}" time="0"><failure message="${escapeXml(gate.message)}"/></testcase>`,
      );
    }
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="${escapeXml(input.title)}" tests="${cases.length}" failures="${failures}">\n  <testsuite name="${escapeXml(input.title)}" tests="${cases.length}" failures="${failures}">\n${cases.join("\n")}\n  </testsuite>\n</testsuites>\n`;
}

/** A rate as a percentage; a value that is not a number shows as "–". */
const percent = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "–");
const klText = (estimate: number, se: number) =>
  Number.isFinite(estimate)
    ? `${estimate.toFixed(4)} ± ${Number.isFinite(se) ? se.toFixed(4) : "–"}`
    : "–";
/** A cell of a Markdown table: pipes escaped, line breaks folded. */
const oneLine = (text: string) => text.replace(/\s*[\r\n]+\s*/g, " ");
const cell = (text: string) => oneLine(text).replace(/\|/g, "\\|");

/** Each part of the report, as Markdown with the figure that goes with it (for the HTML). */
interface Section {
  markdown: string[];
  figure?: { svg: string; caption: string };
}

function sections(input: ReportInput): Section[] {
  const out: Section[] = [];
  if (input.facts?.length)
    out.push({
      markdown: [...input.facts.map(([k, v]) => `- **${oneLine(k)}**: ${oneLine(v)}`), ""],
    });
  if (input.kl || input.beforeAfter?.length) {
    const lines = [
      "### Before and after",
      "",
      "| | base | base + prompt | baked (no prompt) |",
      "|---|---:|---:|---:|",
    ];
    const kl = input.kl;
    if (kl)
      lines.push(
        `| KL to the prompted model, token (± SE) | ${klText(kl.before.token, kl.before.tokenSE)} | 0 | ${klText(kl.after.token, kl.after.tokenSE)} |`,
        `| KL to the prompted model, sequence (± SE) | ${klText(kl.before.sequence, kl.before.sequenceSE)} | 0 | ${klText(kl.after.sequence, kl.after.sequenceSE)} |`,
      );
    for (const r of input.beforeAfter ?? [])
      lines.push(
        `| ${cell(r.label)} | ${percent(r.base)} | ${percent(r.prompted)} | ${percent(r.baked)} |`,
      );
    lines.push("");
    if (kl)
      lines.push(
        `KL reduction ${percent(kl.reduction)} (token level), n = ${kl.n} trajectories sampled from the prompted model.`,
        "",
      );
    out.push({ markdown: lines });
  }
  if (input.bars?.length)
    out.push({
      markdown: [
        "### Bars",
        "",
        ...input.bars.map(
          (b) =>
            `- ${b.pass ? "pass" : "**FAIL**"} — ${oneLine(b.name)} (measured ${Number(b.value.toPrecision(3))})`,
        ),
        "",
      ],
    });
  if (input.strength) {
    const s = input.strength;
    out.push({
      markdown: [
        "### Half-baking strength",
        "",
        `| α | ${cell(s.label)} |`,
        "|---:|---:|",
        ...s.points.map((p) => `| ${p.alpha} | ${percent(p.value)} |`),
        "",
      ],
      figure: { svg: strengthSvg(s), caption: `${s.label} at adapter strength α.` },
    });
  }
  if (input.drift?.curves.length) {
    const d = input.drift;
    const turns = [...new Set(d.curves.flatMap((c) => c.points.map((p) => p.turn)))].sort(
      (a, b) => a - b,
    );
    out.push({
      markdown: [
        `### Drift over ${d.turns} turns`,
        "",
        `| turn | ${d.curves.map((c) => `${cell(c.name)} (95% CI)`).join(" | ")} |`,
        `|---:|${d.curves.map(() => "---:").join("|")}|`,
        ...turns.map((turn) => {
          const values = d.curves.map((c) => {
            const p = c.points.find((q) => q.turn === turn);
            return p ? `${percent(p.mean)} (${percent(p.low)} … ${percent(p.high)})` : "–";
          });
          return `| ${turn} | ${values.join(" | ")} |`;
        }),
        "",
      ],
      figure: {
        svg: driftSvg(d),
        caption: "Persona score by turn (mean over conversations, shaded: 95% interval).",
      },
    });
  }
  const training = input.training;
  if (training?.history.length) {
    const last = training.history.at(-1)!;
    const validation =
      training.validationBefore !== undefined && training.validationBest !== undefined
        ? `; validation KL ${training.validationBefore.toFixed(4)} before training, ${training.validationBest.toFixed(4)} at its best step`
        : "";
    out.push({
      markdown: [
        "### Training",
        "",
        `${last.step} steps, final loss ${last.loss.toFixed(4)}${validation}.`,
        "",
      ],
      figure: {
        svg: svgLineChart(
          [
            {
              name: "training loss",
              points: training.history.map((h) => [h.step, h.loss] as const),
            },
          ],
          { title: "Training loss", xLabel: "step", yLabel: "loss" },
        ),
        caption: "The bake's loss (KL to the prompted model's distribution) at each step.",
      },
    });
  }
  for (const results of input.results ?? []) {
    const lines = [
      `**${cell(results.model.name)}** (\`${results.model.hash.slice(0, 12)}\`)`,
      "",
      "| task | items | rounds | mean |",
      "|---|---:|---:|---:|",
    ];
    for (const t of results.tasks)
      lines.push(`| ${cell(t.name)} | ${t.n} | ${t.rounds} | ${t.mean.toFixed(4)} |`);
    lines.push("");
    out.push({ markdown: lines });
  }
  const c = input.comparison;
  if (c) {
    const lines = [
      "### A/B",
      "",
      `A = ${oneLine(c.a.name)}, B = ${oneLine(c.b.name)} (α = ${c.alpha}, Holm–Bonferroni across tasks)`,
      "",
      "| task | A | B | Δ (points) | 95% CI | p | adjusted p | d_z | MDE | winner |",
      "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ];
    for (const t of c.tasks) {
      const r = t.result;
      lines.push(
        `| ${cell(t.task)} | ${pct(r.meanA)} | ${pct(r.meanB)} | ${pct(r.delta)} | ${pct(r.bootstrap.low)} … ${pct(r.bootstrap.high)} | ${(r.mcnemar?.p ?? r.tTest.p).toPrecision(3)} | ${t.pAdjusted.toPrecision(3)} | ${Number.isFinite(r.effectSize) ? r.effectSize.toFixed(2) : "∞"} | ${pct(r.minimumDetectableEffect)} | ${t.winner} |`,
      );
    }
    lines.push("");
    out.push({
      markdown: lines,
      figure: {
        svg: deltaSvg(c),
        caption: "Per-task difference with its paired bootstrap interval.",
      },
    });
  }
  const f = input.forgetting;
  if (f) {
    const lines = [
      "### Forgetting",
      "",
      `Mean score per task; non-inferiority margin ${pct(f.margin)} points.`,
      "",
      `| model | ${f.tasks.map(cell).join(" | ")} |`,
      `|---|${f.tasks.map(() => "---:").join("|")}|`,
    ];
    for (const [i, m] of f.models.entries())
      lines.push(`| ${cell(m)} | ${f.matrix[i]!.map((v) => pct(v)).join(" | ")} |`);
    lines.push("");
    lines.push(
      `**Relative degradation** (base − baked) / base; a task passes below ${percent(f.degradationThreshold)}`,
      "",
      `| model | ${f.tasks.map(cell).join(" | ")} | max degradation | tasks passed |`,
      `|---|${f.tasks.map(() => "---:").join("|")}|---:|---:|`,
    );
    for (const d of f.degradation) {
      const own = f.tasks.map(
        (task) => f.cells.find((k) => k.model === d.model && k.task === task)!,
      );
      lines.push(
        `| ${cell(d.model)} | ${own.map((k) => `${percent(k.relativeDegradation)}${k.passed ? "" : " ❌"}`).join(" | ")} | ${percent(d.maxDegradation)} (${cell(d.maxTask)})${d.passed ? "" : " ❌"} | ${d.tasksPassed}/${d.tasks} |`,
      );
    }
    lines.push("");
    if (f.backwardTransfer !== undefined)
      lines.push(`Backward transfer: ${pct(f.backwardTransfer)} points`, "");
    out.push({
      markdown: lines,
      figure: {
        svg: heatmapSvg(f),
        caption:
          "Mean score of every model on every task, and each baked model's relative degradation (base − baked) / base.",
      },
    });
  }
  if (input.gates?.length)
    out.push({
      markdown: [
        "### Gates",
        "",
        ...input.gates.map(
          (g) => `- ${g.passed ? "✅" : "❌"} ${oneLine(g.gate)}: ${oneLine(g.message)}`,
        ),
        "",
      ],
    });
  const timings = Object.entries(input.timings ?? {});
  if (timings.length)
    out.push({
      markdown: [
        "### Timings",
        "",
        "| phase | seconds |",
        "|---|---:|",
        ...timings.map(([k, v]) => `| ${cell(k)} | ${v.toFixed(1)} |`),
        "",
      ],
    });
  return out;
}

/**
 * A Markdown summary: the before/after table with KL, bars, the strength curve, drift, task
 * scores, the comparison, forgetting, gates and timings — each where the input has it.
 */
export function toMarkdown(input: ReportInput): string {
  return [`## ${oneLine(input.title)}`, "", ...sections(input).flatMap((s) => s.markdown)].join(
    "\n",
  );
}

/** The half-baking curve as an SVG line chart. */
export function strengthSvg(s: StrengthCurve): string {
  return svgLineChart(
    [{ name: s.label, points: s.points.map((p) => [p.alpha, p.value] as const), markers: true }],
    {
      title: `Half-baking: ${s.label} vs adapter strength α`,
      xLabel: "adapter strength α",
      yLabel: s.label,
      yMin: 0,
      yMax: 1,
    },
  );
}

/** Drift curves as an SVG line chart: the mean per turn and its 95% interval as a band. */
export function driftSvg(d: DriftCurves): string {
  const colors = ["#dc2626", "#2563eb", "#16a34a", "#9333ea"];
  return svgLineChart(
    d.curves.map((c, i) => ({
      name: c.name,
      color: colors[i % colors.length]!,
      points: c.points.map((p) => [p.turn, p.mean] as const),
      band: c.points.map((p) => [p.turn, p.low, p.high] as const),
    })),
    {
      title: `Persona score over ${d.turns} turns`,
      xLabel: "turn",
      yLabel: "persona score",
      yMin: 0,
      yMax: 1,
    },
  );
}

/** A generous estimate of a text's width in px at `size` px (system-ui). */
const textWidth = (text: string, size: number) => Math.ceil([...text].length * size * 0.62) + 2;

/** Colour for a score in [0, 1] (red → yellow → green). */
function heat(value: number): string {
  const v = Math.max(0, Math.min(1, value));
  const r = v < 0.5 ? 220 : Math.round(220 - (v - 0.5) * 2 * 180);
  const g = v < 0.5 ? Math.round(60 + v * 2 * 160) : 200;
  return `rgb(${r},${g},70)`;
}

const FOOTNOTE = [
  "Top: mean score. Below: relative degradation (base − baked) / base;",
  "a task passes below",
] as const;

/** The forgetting matrix as an SVG heatmap. */
export function heatmapSvg(f: ForgettingResult): string {
  const cell = 64;
  const longest = (names: readonly string[], size: number) =>
    Math.max(0, ...names.map((n) => textWidth(n, size)));
  const left = Math.max(160, longest(f.models, 12) + 16);
  // task names are rotated by −35°: their height and reach set the top margin and width
  const taskReach = longest(f.tasks, 11);
  const top = Math.max(96, Math.ceil(taskReach * Math.sin((35 * Math.PI) / 180)) + 44);
  const width = Math.max(
    left + f.tasks.length * cell + 190,
    left +
      (f.tasks.length - 0.5) * cell +
      Math.ceil(taskReach * Math.cos((35 * Math.PI) / 180)) +
      8,
    620,
  );
  const height = top + f.models.length * cell + 50;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="forgetting heatmap">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">Scores by model and task</text>`,
  ];
  f.tasks.forEach((task, j) => {
    parts.push(
      `<text transform="translate(${left + j * cell + cell / 2} ${top - 8}) rotate(-35)" font-size="11">${escapeXml(task)}</text>`,
    );
  });
  f.models.forEach((model, i) => {
    parts.push(
      `<text x="${left - 8}" y="${top + i * cell + cell / 2 + 4}" text-anchor="end">${escapeXml(model)}</text>`,
    );
    f.matrix[i]!.forEach((v, j) => {
      const x = left + j * cell;
      const y = top + i * cell;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell - 2}" height="${cell - 2}" fill="${heat(v)}"><title>${escapeXml(`${model} · ${f.tasks[j]}: ${pct(v)}`)}</title></rect>`,
      );
      const c =
        i === 0 ? undefined : f.cells.find((k) => k.model === model && k.task === f.tasks[j]);
      parts.push(
        `<text x="${x + cell / 2 - 1}" y="${y + cell / 2 + (c ? -2 : 4)}" text-anchor="middle" font-weight="600">${pct(v)}</text>`,
      );
      if (c) {
        parts.push(
          `<text x="${x + cell / 2 - 1}" y="${y + cell / 2 + 14}" text-anchor="middle" font-size="10"${c.passed ? "" : ' fill="#7f1d1d" font-weight="600"'}><title>${escapeXml(`relative degradation (base − baked) / base on ${c.task}`)}</title>${escapeXml(degradationText(c.relativeDegradation))}</text>`,
        );
        if (!c.passed)
          parts.push(
            `<rect x="${x + 1}" y="${y + 1}" width="${cell - 4}" height="${cell - 4}" fill="none" stroke="#7f1d1d" stroke-width="2"/>`,
          );
      }
    });
    const d = f.degradation.find((k) => k.model === model);
    if (d)
      parts.push(
        `<text x="${left + f.tasks.length * cell + 8}" y="${top + i * cell + cell / 2 + 4}" font-size="11"${d.passed ? "" : ' fill="#7f1d1d"'}>${escapeXml(`max ${degradationText(d.maxDegradation)} · ${d.tasksPassed}/${d.tasks} passed`)}</text>`,
      );
  });
  parts.push(
    `<text x="8" y="${height - 22}" font-size="11">${escapeXml(FOOTNOTE[0])}</text>`,
    `<text x="8" y="${height - 8}" font-size="11">${escapeXml(`${FOOTNOTE[1]} ${degradationText(f.degradationThreshold)}.`)}</text>`,
  );
  parts.push("</svg>");
  return parts.join("\n");
}

/** Per-task Δ (B − A) with its bootstrap CI as horizontal bars. */
export function deltaSvg(c: Comparison): string {
  const row = 28;
  const left = Math.max(170, ...c.tasks.map((t) => textWidth(t.task, 12) + 16));
  const plot = 420;
  const width = left + plot + 30;
  const height = 50 + c.tasks.length * row + 30;
  const extent = Math.max(
    0.05,
    ...c.tasks.flatMap((t) => [
      Math.abs(t.result.bootstrap.low),
      Math.abs(t.result.bootstrap.high),
    ]),
  );
  const x = (v: number) => left + ((v + extent) / (2 * extent)) * plot;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="per-task differences">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${escapeXml(`Δ = ${c.b.name} − ${c.a.name} (points, 95% CI)`)}</text>`,
    `<line x1="${x(0)}" x2="${x(0)}" y1="36" y2="${height - 24}" stroke="#6b7280"/>`,
  ];
  c.tasks.forEach((t, i) => {
    const y = 50 + i * row;
    const color = t.winner === "B" ? "#16a34a" : t.winner === "A" ? "#dc2626" : "#2563eb";
    parts.push(`<text x="${left - 8}" y="${y + 4}" text-anchor="end">${escapeXml(t.task)}</text>`);
    parts.push(
      `<line x1="${x(t.result.bootstrap.low)}" x2="${x(t.result.bootstrap.high)}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="3"/>`,
    );
    parts.push(
      `<circle cx="${x(t.result.delta)}" cy="${y}" r="5" fill="${color}"><title>${escapeXml(`${t.task}: ${pct(t.result.delta)} points`)}</title></circle>`,
    );
  });
  parts.push(
    `<text x="${x(-extent)}" y="${height - 8}">${pct(-extent)}</text><text x="${x(extent)}" y="${height - 8}" text-anchor="end">+${pct(extent)}</text>`,
  );
  parts.push("</svg>");
  return parts.join("\n");
}

/** A relative degradation as text: "−1.2%" is a loss of 1.2%, "+0.5%" a gain. */
function degradationText(x: number): string {
  if (x === 0) return "0.0%";
  return `${x > 0 ? "−" : "+"}${(100 * Math.abs(x)).toFixed(1)}%`;
}

/** The forgetting matrix for a terminal: coloured blocks unless NO_COLOR. */
export function heatmapTerminal(f: ForgettingResult, color = !process.env.NO_COLOR): string {
  const width = Math.max(8, ...f.tasks.map((t) => t.length + 1));
  const nameWidth = Math.max(...f.models.map((m) => m.length)) + 2;
  const lines = [" ".repeat(nameWidth) + f.tasks.map((t) => t.padStart(width)).join("")];
  f.models.forEach((m, i) => {
    const cells = f.matrix[i]!.map((v) => {
      const text = `${pct(v)}`.padStart(width);
      if (!color) return text;
      const [r, g, b] = heat(v).match(/\d+/g)!.map(Number);
      return `\x1b[48;2;${r};${g};${b}m\x1b[30m${text}\x1b[0m`;
    });
    lines.push(m.padEnd(nameWidth) + cells.join(""));
  });
  for (const d of f.degradation)
    lines.push(
      `${d.model}: max degradation ${(100 * d.maxDegradation).toFixed(1)}% on ${d.maxTask} (threshold ${(100 * f.degradationThreshold).toFixed(1)}%), tasks passed ${d.tasksPassed}/${d.tasks}${d.passed ? "" : " — above the threshold"}`,
    );
  return lines.join("\n");
}

/**
 * One self-contained HTML page: the summary's tables as HTML tables, each figure (inline SVG)
 * beside its table. No scripts, no external resources.
 */
export function toHtml(input: ReportInput): string {
  const body = sections(input)
    .map((s) =>
      [
        "<section>",
        markdownToHtml(s.markdown.join("\n")),
        s.figure
          ? `<figure>${s.figure.svg}<figcaption>${escapeXml(s.figure.caption)}</figcaption></figure>`
          : "",
        "</section>",
      ]
        .filter(Boolean)
        .join("\n"),
    )
    .join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(input.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; padding: 0 1rem; color: #111827; line-height: 1.45; }
h1 { font-size: 1.5rem; } h3 { margin-top: 2rem; border-bottom: 1px solid #e5e7eb; padding-bottom: .25rem; }
section { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: .75rem 0; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d1d5db; padding: .3rem .6rem; vertical-align: top; }
th { background: #f3f4f6; } tbody tr:nth-child(even) { background: #f9fafb; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; } pre { background: #f3f4f6; padding: 1rem; overflow-x: auto; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; } figcaption { color: #4b5563; font-size: 13px; }
</style>
</head>
<body>
<h1>${escapeXml(input.title)}</h1>
${body}
</body>
</html>
`;
}
