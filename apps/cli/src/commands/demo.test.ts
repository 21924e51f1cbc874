/**
 * `forge demo` end to end on the shipped forge-tiny: the report is written and its bars are
 * checked; a bar that fails makes the command exit 1 (here the time bar, forced with
 * --max-seconds 1, while the bake's own bars must still pass).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";

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
    for (const file of ["report.json", "report.md", "strength.svg", "eval.html", "manifest.json"])
      expect(existsSync(path.join(report, file)), file).toBe(true);
    expect(existsSync(path.join(report, "bake", "adapter_model.safetensors"))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(report, "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.outputs.metrics.report.pass).toBe(false);
  });
});
