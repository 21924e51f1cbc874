/**
 * Reports for people and CI: JUnit XML (one test case per task or gate), Markdown (for
 * $GITHUB_STEP_SUMMARY), a terminal heatmap, and one self-contained HTML page with SVG plots
 * (per-task Δ with confidence intervals; the forgetting heatmap).
 */
import type { Comparison, GateResult } from "./compare.js";
import type { EvalResults } from "./runner.js";
import type { ForgettingResult } from "./stats/forgetting.js";

/**
 * Characters XML 1.0 forbids even as character references: C0 controls other than tab, line
 * feed and carriage return, lone surrogates, U+FFFE and U+FFFF.
 */
const NOT_XML =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters XML cannot hold
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const XML_ESCAPES: Record<string, string> = {
  "<": "&lt;",
  ">": "&gt;",
  "&": "&amp;",
  '"': "&quot;",
  "'": "&apos;",
  // kept as references: in an attribute, a literal tab or newline would be read as a space
  "\t": "&#9;",
  "\n": "&#10;",
  "\r": "&#13;",
};

/**
 * Text for an XML attribute or element (JUnit, SVG). A character XML cannot hold at all
 * (`\u0001`, an ANSI escape's `\u001b`) is written as its code, `\u001b`, so two names that
 * differ only there stay different and the document stays well-formed.
 */
const escapeXml = (text: string) =>
  text
    .replace(NOT_XML, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    .replace(/[<>&"'\t\n\r]/g, (c) => XML_ESCAPES[c]!);
const pct = (x: number) => `${(100 * x).toFixed(1)}`;

export interface ReportInput {
  title: string;
  results?: EvalResults[];
  comparison?: Comparison;
  forgetting?: ForgettingResult;
  gates?: GateResult[];
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

/** A Markdown summary (tables of task scores, the comparison, forgetting, gates). */
export function toMarkdown(input: ReportInput): string {
  const lines = [`## ${input.title}`, ""];
  for (const results of input.results ?? []) {
    lines.push(
      `**${results.model.name}** (\`${results.model.hash.slice(0, 12)}\`)`,
      "",
      "| task | items | rounds | mean |",
      "|---|---:|---:|---:|",
    );
    for (const t of results.tasks)
      lines.push(`| ${t.name} | ${t.n} | ${t.rounds} | ${t.mean.toFixed(4)} |`);
    lines.push("");
  }
  const c = input.comparison;
  if (c) {
    lines.push(
      `**A/B**: A = ${c.a.name}, B = ${c.b.name} (α = ${c.alpha}, Holm–Bonferroni across tasks)`,
      "",
    );
    lines.push(
      "| task | A | B | Δ (points) | 95% CI | p | adjusted p | d_z | MDE | winner |",
      "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    );
    for (const t of c.tasks) {
      const r = t.result;
      lines.push(
        `| ${t.task} | ${pct(r.meanA)} | ${pct(r.meanB)} | ${pct(r.delta)} | ${pct(r.bootstrap.low)} … ${pct(r.bootstrap.high)} | ${(r.mcnemar?.p ?? r.tTest.p).toPrecision(3)} | ${t.pAdjusted.toPrecision(3)} | ${Number.isFinite(r.effectSize) ? r.effectSize.toFixed(2) : "∞"} | ${pct(r.minimumDetectableEffect)} | ${t.winner} |`,
      );
    }
    lines.push("");
  }
  const f = input.forgetting;
  if (f) {
    lines.push(
      `**Forgetting** (non-inferiority margin ${pct(f.margin)} points)`,
      "",
      `| model | ${f.tasks.join(" | ")} |`,
      `|---|${f.tasks.map(() => "---:").join("|")}|`,
    );
    for (const [i, m] of f.models.entries()) {
      lines.push(`| ${m} | ${f.matrix[i]!.map((v) => pct(v)).join(" | ")} |`);
    }
    lines.push("");
    const rel = (x: number) => `${(100 * x).toFixed(1)}%`;
    lines.push(
      `**Relative degradation** (base − baked) / base; a task passes below ${rel(f.degradationThreshold)}`,
      "",
      `| model | ${f.tasks.join(" | ")} | max degradation | tasks passed |`,
      `|---|${f.tasks.map(() => "---:").join("|")}|---:|---:|`,
    );
    for (const d of f.degradation) {
      const own = f.tasks.map(
        (task) => f.cells.find((c) => c.model === d.model && c.task === task)!,
      );
      lines.push(
        `| ${d.model} | ${own.map((c) => `${rel(c.relativeDegradation)}${c.passed ? "" : " ❌"}`).join(" | ")} | ${rel(d.maxDegradation)} (${d.maxTask})${d.passed ? "" : " ❌"} | ${d.tasksPassed}/${d.tasks} |`,
      );
    }
    lines.push("");
    if (f.backwardTransfer !== undefined)
      lines.push(`Backward transfer: ${pct(f.backwardTransfer)} points`, "");
  }
  if (input.gates?.length) {
    lines.push("**Gates**", "");
    for (const g of input.gates) lines.push(`- ${g.passed ? "✅" : "❌"} ${g.gate}: ${g.message}`);
    lines.push("");
  }
  return lines.join("\n");
}

/** Colour for a score in [0, 1] (red → yellow → green). */
function heat(value: number): string {
  const v = Math.max(0, Math.min(1, value));
  const r = v < 0.5 ? 220 : Math.round(220 - (v - 0.5) * 2 * 180);
  const g = v < 0.5 ? Math.round(60 + v * 2 * 160) : 200;
  return `rgb(${r},${g},70)`;
}

/** The forgetting matrix as an SVG heatmap. */
export function heatmapSvg(f: ForgettingResult): string {
  const cell = 64;
  const left = 160;
  const top = 96;
  const width = Math.max(left + f.tasks.length * cell + 190, 620);
  const height = top + f.models.length * cell + 36;
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
    `<text x="${left}" y="${height - 8}" font-size="11">${escapeXml(`Top: mean score. Below: relative degradation (base − baked) / base; a task passes below ${degradationText(f.degradationThreshold)}.`)}</text>`,
  );
  parts.push("</svg>");
  return parts.join("\n");
}

/** Per-task Δ (B − A) with its bootstrap CI as horizontal bars. */
export function deltaSvg(c: Comparison): string {
  const row = 28;
  const left = 170;
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

/** One self-contained HTML page: tables and inline SVG, no scripts, no external resources. */
export function toHtml(input: ReportInput): string {
  const markdownTables = toMarkdown(input)
    .split("\n")
    .map((line) => escapeXml(line))
    .join("\n");
  const figures = [
    input.comparison
      ? `<figure>${deltaSvg(input.comparison)}<figcaption>Per-task difference with its paired bootstrap interval.</figcaption></figure>`
      : "",
    input.forgetting
      ? `<figure>${heatmapSvg(input.forgetting)}<figcaption>Mean score of every model on every task, and each baked model's relative degradation (base − baked) / base.</figcaption></figure>`
      : "",
  ].join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(input.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #111827; }
pre { background: #f3f4f6; padding: 1rem; overflow-x: auto; font-size: 13px; }
figure { margin: 1.5rem 0; } figcaption { color: #4b5563; font-size: 13px; }
</style>
</head>
<body>
<h1>${escapeXml(input.title)}</h1>
${figures}
<pre>${markdownTables}</pre>
</body>
</html>
`;
}
