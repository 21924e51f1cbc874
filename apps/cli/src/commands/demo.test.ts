/**
 * `forge demo` end to end on the shipped forge-tiny: the report is written and its bars are
 * checked; a bar that fails makes the command exit 1 (here the time bar, forced with
 * --max-seconds 1, while the bake's own bars must still pass). report.html and eval.html
 * render in headless Chromium with nothing clipped or covered (skipped, with a note, where
 * /usr/bin/chromium is absent).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { layoutProblems, renderReport } from "../../scripts/render-report.js";
import { forge } from "../run-cli.js";

const CHROMIUM = process.env.FORGE_CHROMIUM ?? "/usr/bin/chromium";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-demo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("forge demo", () => {
  it("writes the report and exits 1 when a bar fails (the others pass on the defaults)", async () => {
    const report = path.join(dir, "report");
    const run = await forge(["demo", "--report", report, "--max-seconds", "1", "--json"]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/a demo bar failed: demo ≤ 1 s \(the report is in .*report\)/);
    const printed = JSON.parse(run.stdout);
    const bars = Object.fromEntries(
      (printed.bars as { name: string; pass: boolean }[]).map((b) => [b.name, b.pass]),
    );
    expect(bars).toEqual({
      "KL reduction ≥ 80%": true,
      "baked persona rate ≥ 0.9 × prompted": true,
      "task accuracy drop ≤ 2 points": true,
      "baked persona at turn 30 within 10 points of turn 1": true,
      "demo ≤ 1 s": false,
    });
    expect(printed.pass).toBe(false);
    // the drift curves: prompted base and baked, 30 turns each
    expect(printed.drift.turns).toBe(30);
    expect(printed.drift.curves.map((c: { name: string }) => c.name)).toEqual([
      "base + prompt",
      "baked",
    ]);
    for (const curve of printed.drift.curves) expect(curve.points).toHaveLength(30);
    for (const file of [
      "report.json",
      "report.md",
      "report.html",
      "strength.svg",
      "eval.html",
      "manifest.json",
    ])
      expect(existsSync(path.join(report, file)), file).toBe(true);
    expect(existsSync(path.join(report, "bake", "adapter_model.safetensors"))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(report, "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.outputs.metrics.report.pass).toBe(false);

    const html = readFileSync(path.join(report, "report.html"), "utf8");
    expect(html).not.toMatch(/<script|src=|href=|<pre/);
    expect(html).toContain(
      `<td style="text-align:right">${printed.kl.before.token.toFixed(4)} ± ${printed.kl.before.tokenSE.toFixed(4)}</td>`,
    );
    expect(readFileSync(path.join(report, "eval.html"), "utf8")).toContain("Half-baking strength");
    if (!existsSync(CHROMIUM)) {
      console.log(`demo.test: ${CHROMIUM} not found; report.html is not rendered`);
      return;
    }
    const rendered = await renderReport(
      path.join(report, "report.html"),
      path.join(dir, "report.png"),
    );
    expect(rendered.consoleErrors).toEqual([]);
    expect(layoutProblems(rendered.layout)).toEqual([]);
    // strength, A/B forest plot, forgetting heatmap — and drift when the demo measured it
    expect(rendered.svgCount).toBe(printed.drift ? 4 : 3);
    const headings = rendered.layout.headings;
    for (const heading of ["Before and after", "Bars", "Half-baking strength", "A/B", "Forgetting"])
      expect(headings).toContain(heading);
    expect(headings.includes(`Drift over ${printed.drift?.turns} turns`)).toBe(
      Boolean(printed.drift),
    );
    const [beforeAfter] = rendered.layout.tables;
    expect(beforeAfter!.map((row) => row[0])).toEqual([
      "",
      "KL to the prompted model, token (± SE)",
      "KL to the prompted model, sequence (± SE)",
      "pirate signature rate",
      `task accuracy (held out, ${printed.accuracy.items} items)`,
    ]);
    const strength = rendered.layout.tables.find((t) => t[0]![0] === "α")!;
    expect(strength.slice(1).map((row) => Number(row[0]))).toEqual(
      printed.strength.map((p: { alpha: number }) => p.alpha),
    );
    const evalPage = await renderReport(path.join(report, "eval.html"), path.join(dir, "eval.png"));
    expect(evalPage.consoleErrors).toEqual([]);
    expect(layoutProblems(evalPage.layout)).toEqual([]);
    expect(evalPage.layout.tables.length).toBeGreaterThanOrEqual(4);
  }, 600_000); // the demo runs ~90 s alone; on a shared machine, several times that
});
