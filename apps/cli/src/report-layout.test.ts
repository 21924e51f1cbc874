/**
 * The reports as a person sees them, rendered in headless Chromium (Debian's chromium; .ci/run
 * installs it — without it the browser checks are skipped with a note): report.html and
 * eval.html from @forge/eval's composer, fed by real evaluations of forge-tiny (task scores,
 * the paired A/B comparison, forgetting and a KL measurement; the strength and drift curves
 * are synthetic here — the demo's own run in demo.test.ts renders real ones), and every chart
 * that uses the shared line chart (strength, drift, cycle history, loss). Checked in the page:
 * nothing overflows its box, every SVG text/line/marker/legend lies inside its viewBox, no
 * legend covers a plotted point or segment, the tables are real <table>s with the expected
 * rows, no console errors, nothing loaded from outside. Screenshots go to the test's temp dir.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { measureKL, systemPrompt } from "@forge/baking";
import { svgLineChart } from "@forge/core";
import {
  compareResults,
  driftSvg,
  type EvalResults,
  forgettingFromResults,
  loadTask,
  type ReportInput,
  runTasks,
  strengthSvg,
  toHtml,
} from "@forge/eval";
import { evalModel, initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR, FORGE_TINY_TASKS, PERSONAS } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { layoutProblems, type RenderedReport, renderReport } from "../scripts/render-report.js";
import { historySvg } from "./commands/cycle.js";

const CHROMIUM = process.env.FORGE_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.log(`report-layout.test: ${CHROMIUM} not found; the browser checks are skipped`);

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-report-layout-"));
afterAll(() => {
  if (!process.env.FORGE_KEEP_SCREENSHOTS) rmSync(dir, { recursive: true, force: true });
  else console.log(`screenshots kept in ${dir}`);
});

async function render(name: string, html: string): Promise<RenderedReport> {
  const file = path.join(dir, `${name}.html`);
  writeFileSync(file, html);
  const shot = path.join(dir, `${name}.png`);
  const rendered = await renderReport(file, shot);
  expect(readFileSync(shot).subarray(1, 4).toString()).toBe("PNG");
  return rendered;
}

function expectClean(rendered: RenderedReport): void {
  expect(rendered.consoleErrors).toEqual([]);
  expect(layoutProblems(rendered.layout)).toEqual([]);
  expect(rendered.layout.chartsWithoutLegend).toEqual([]);
}

const page = (title: string, svgs: string[]) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body>${svgs.join("\n")}</body></html>`;

// Synthetic curves (the demo's run supplies real ones): a strength curve that ends at the top
// right — where the old legend sat — and drift that decays for the prompted model only.
const strength = {
  label: "pirate signature rate",
  points: [
    { alpha: 0, value: 0 },
    { alpha: 0.25, value: 0 },
    { alpha: 0.5, value: 0.047 },
    { alpha: 0.75, value: 0.867 },
    { alpha: 1, value: 0.993 },
    { alpha: 1.5, value: 0.993 },
  ],
};
const drift = {
  turns: 30,
  curves: [
    { name: "prompted", fall: 12 },
    { name: "baked", fall: 300 },
  ].map(({ name, fall }) => ({
    name,
    points: Array.from({ length: 30 }, (_, t) => {
      const mean = Math.max(0, 1 - t / fall);
      return { turn: t + 1, mean, low: Math.max(0, mean - 0.12), high: Math.min(1, mean + 0.08) };
    }),
  })),
};

let input: ReportInput;
let base: EvalResults;
let prompted: EvalResults;
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const { model, tokenizer } = await loadModel(FORGE_TINY_DIR);
  try {
    const tasks = await Promise.all(
      ["capitals", "antonyms", "persona-pirate"].map((t) =>
        loadTask(path.join(FORGE_TINY_TASKS, `${t}.yaml`)),
      ),
    );
    const system = PERSONAS.pirate.prompts[0]!;
    base = await runTasks(evalModel(model, tokenizer!, { name: "base" }), tasks);
    prompted = await runTasks(evalModel(model, tokenizer!, { name: "base+prompt" }), tasks, {
      system,
    });
    const only = (r: EvalResults, persona: boolean) => ({
      ...r,
      tasks: r.tasks.filter((t) => t.name.startsWith("persona-") === persona),
    });
    // KL to the prompted model: "before" is the base; "after" stands in with the persona's
    // other wording (no bake here: the demo's test measures a real one)
    const stimuli = [
      "What is the capital of France?",
      "What is the opposite of hot?",
      "Spell the word cat.",
      "What is 12 plus 30?",
    ].map((content, i) => ({ id: `s${i}`, messages: [{ role: "user" as const, content }] }));
    const teacher = { model, prefix: systemPrompt(system).teacher };
    const settings = { n: 8, maxNewTokens: 16, seed: 3 };
    const before = measureKL(teacher, { model, prefix: [] }, tokenizer!, stimuli, settings);
    const after = measureKL(
      teacher,
      { model, prefix: systemPrompt(PERSONAS.pirate.prompts[1] ?? system).teacher },
      tokenizer!,
      stimuli,
      settings,
    );
    const kl = (m: typeof before) => ({
      token: m.token.estimate,
      tokenSE: m.token.standardError,
      sequence: m.sequence.estimate,
      sequenceSE: m.sequence.standardError,
    });
    const rate = (r: EvalResults) => r.tasks.find((t) => t.name === "persona-pirate")!.mean;
    input = {
      title: `forge demo — baking "${system}" into forge-tiny`,
      facts: [
        ["model", FORGE_TINY_DIR],
        ["prompt", system],
      ],
      kl: {
        before: kl(before),
        after: kl(after),
        reduction: 1 - after.token.estimate / before.token.estimate,
        n: after.n,
      },
      beforeAfter: [
        {
          label: "pirate signature rate",
          base: rate(base),
          prompted: rate(prompted),
          baked: rate(prompted),
        },
      ],
      bars: [{ name: "KL reduction ≥ 80%", value: 0.99, pass: true }],
      strength,
      drift,
      comparison: compareResults(only(base, true), only(prompted, true)),
      forgetting: forgettingFromResults(only(base, false), [only(prompted, false)]),
      timings: { "evaluate base": 1.1, total: 84.3 },
    };
  } finally {
    model.dispose();
  }
}, 600_000);

describe.skipIf(!haveChromium)("reports in headless Chromium", () => {
  it("report.html: every section renders as tables and figures, nothing clipped or covered", async () => {
    const rendered = await render("report", toHtml(input));
    expectClean(rendered);
    expect(rendered.svgCount).toBe(4); // strength, drift, A/B forest plot, forgetting heatmap
    expect(rendered.layout.headings).toEqual([
      input.title,
      "Before and after",
      "Bars",
      "Half-baking strength",
      "Drift over 30 turns",
      "A/B",
      "Forgetting",
      "Timings",
    ]);
    const [beforeAfter, strengthTable, driftTable, ab, scores, degradation] =
      rendered.layout.tables;
    expect(beforeAfter!.map((row) => row[0])).toEqual([
      "",
      "KL to the prompted model, token (± SE)",
      "KL to the prompted model, sequence (± SE)",
      "pirate signature rate",
    ]);
    expect(beforeAfter![1]![1]).toMatch(/^\d+\.\d{4} ± \d+\.\d{4}$/);
    expect(strengthTable).toHaveLength(1 + strength.points.length);
    expect(driftTable).toHaveLength(1 + 30);
    expect(ab!.map((row) => row[0])).toEqual(["task", "persona-pirate"]);
    expect(scores!.map((row) => row[0])).toEqual(["model", "base", "base+prompt"]);
    expect(degradation![0]).toEqual([
      "model",
      "capitals",
      "antonyms",
      "max degradation",
      "tasks passed",
    ]);
    expect(degradation![1]![4]).toMatch(/^\d\/2$/);
  }, 120_000);

  it("eval.html (the eval report with KL and the strength curve, no drift) renders too", async () => {
    const { drift: _drift, facts: _facts, bars: _bars, beforeAfter: _rows, ...evalInput } = input;
    const rendered = await render("eval", toHtml({ ...evalInput, results: [base, prompted] }));
    expectClean(rendered);
    expect(rendered.layout.headings).not.toContain("Drift over 30 turns");
    expect(rendered.layout.headings).toContain("Half-baking strength");
    expect(rendered.layout.tables[0]![1]![0]).toBe("KL to the prompted model, token (± SE)");
    // the per-model score tables: a row per task
    expect(
      rendered.layout.tables.filter((t) => t[0]!.join() === "task,items,rounds,mean"),
    ).toHaveLength(2);
  }, 120_000);

  it("every chart on the shared line chart: strength, drift, cycle history, loss, many series", async () => {
    const loss = Array.from(
      { length: 300 },
      (_, i) => [i + 1, 3 * Math.exp(-i / 60) + 0.2] as const,
    );
    const rendered = await render(
      "charts",
      page("charts", [
        strengthSvg(strength),
        driftSvg(drift),
        historySvg(
          { taskScore: 0.4, personaScore: 0.1 },
          [1, 2, 3, 4].map((cycle) => ({
            cycle,
            taskScore: 0.4 + 0.15 * cycle,
            personaScore: Math.min(1, 0.25 * cycle),
          })) as unknown as Parameters<typeof historySvg>[1],
          [2],
        ),
        svgLineChart(
          [
            { name: "training loss", points: loss },
            { name: "validation loss", points: loss.filter((_, i) => i % 50 === 0) },
          ],
          { title: "loss: a repository with a rather long name", xLabel: "step", yLabel: "loss" },
        ),
        svgLineChart(
          Array.from({ length: 6 }, (_, k) => ({
            name: `series ${k} with a long descriptive name`,
            points: [0, 1, 2, 3].map((x) => [x, k + x] as const),
          })),
          { title: "six series", width: 420 },
        ),
      ]),
    );
    expectClean(rendered);
    expect(rendered.svgCount).toBe(5);
  }, 120_000);

  it("the checks can fail: a legend drawn over the curve, clipped text and a too-wide table are caught", async () => {
    const bad = `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100" aria-label="bad">
<polyline class="series" points="10,90 190,10" fill="none" stroke="red"/>
<g class="legend"><text x="150" y="20">legend</text></g>
<text x="190" y="50">clipped at the right edge</text></svg>`;
    const rendered = await render(
      "bad",
      page("bad", [
        bad,
        `<div style="width:300px"><table><tr><td>${"x".repeat(400)}</td></tr></table></div>`,
      ]),
    );
    const problems = layoutProblems(rendered.layout);
    expect(problems.some((p) => p.startsWith("legend over plotted data: polyline.series"))).toBe(
      true,
    );
    expect(problems.some((p) => /outside its SVG's viewBox: text .*clipped/.test(p))).toBe(true);
    expect(problems.some((p) => p.startsWith("overflows its box: div"))).toBe(true);
  }, 120_000);
});
