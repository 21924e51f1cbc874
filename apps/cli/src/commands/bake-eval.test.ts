/**
 * forge bake, eval, pursue and drift through the real CLI, on the shipped forge-tiny with
 * small settings.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge, type Run } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const TASKS = path.join(TINY, "tasks");
const CHROMIUM = process.env.FORGE_CHROMIUM ?? "/usr/bin/chromium";
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-bake-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

const smallBake = [
  "--stim",
  "list:What is 12 plus 30?|What is the capital of France?|Spell the word cat.|What is the opposite of hot?",
  "--samples",
  "2",
  "--max-new-tokens",
  "24",
  "--steps",
  "4",
  "--batch-size",
  "4",
  "--val-fraction",
  "0",
];

let baked: Run;
beforeAll(async () => {
  baked = await forge([
    "bake",
    "--model",
    TINY,
    "--prompt",
    "You are a pirate.",
    ...smallBake,
    "--measure",
    "8",
    "--report",
    "--out",
    at("pirate"),
    "--json",
  ]);
});

describe("forge bake", () => {
  it("bakes into an adapter directory with forge.json and a finished manifest", () => {
    expectOk(baked);
    const summary = JSON.parse(baked.stdout);
    expect(summary.steps).toBe(4);
    expect(summary.klBefore.token).toBeGreaterThan(0);
    expect(summary.klAfter.token).toBeGreaterThanOrEqual(0);
    for (const file of ["adapter_model.safetensors", "adapter_config.json", "forge.json"])
      expect(existsSync(at("pirate", file))).toBe(true);
    const manifest = json(at("pirate", "manifest.json"));
    expect(manifest.run.status).toBe("succeeded");
    expect(
      manifest.training.logHistory.filter((r: { phase: string }) => r.phase === "bake"),
    ).toHaveLength(4);
    expect(manifest.phases.map((p: { name: string }) => p.name)).toContain("rollout");
    expect(
      manifest.outputs.artifacts.map((a: { path: string }) => path.basename(a.path)),
    ).toContain("adapter_model.safetensors");
    expect(json(at("pirate", "forge.json")).prompt.teacher[0].content).toBe("You are a pirate.");
  });

  it("--report writes report.html: KL before/after with standard errors and the training curve", async () => {
    const summary = JSON.parse(baked.stdout);
    expect(summary.report).toBe(at("pirate", "report.html"));
    const html = readFileSync(at("pirate", "report.html"), "utf8");
    expect(html).not.toMatch(/<script|src=|href=/);
    expect(html).toContain(
      `<td style="text-align:right">${summary.klBefore.token.toFixed(4)} ± ${summary.klBefore.tokenStandardError.toFixed(4)}</td>`,
    );
    expect(html).toContain("<h3>Training</h3>");
    expect(html).toContain("4 steps, final loss");
    const manifest = json(at("pirate", "manifest.json"));
    expect(
      manifest.outputs.artifacts.map((a: { path: string }) => path.basename(a.path)),
    ).toContain("report.html");
    if (!existsSync(CHROMIUM)) {
      console.log(`bake-eval.test: ${CHROMIUM} not found; report.html is not rendered`);
      return;
    }
    const { renderReport, layoutProblems } = await import("../../scripts/render-report.js");
    const rendered = await renderReport(at("pirate", "report.html"), at("bake-report.png"));
    expect(rendered.consoleErrors).toEqual([]);
    expect(layoutProblems(rendered.layout)).toEqual([]);
    expect(rendered.layout.tables[0]!.map((row) => row[0])).toEqual([
      "",
      "KL to the prompted model, token (± SE)",
      "KL to the prompted model, sequence (± SE)",
    ]);
    expect(rendered.layout.tables[0]![1]![1]).toMatch(/^\d+\.\d{4} ± \d+\.\d{4}$/);
    expect(rendered.svgCount).toBe(1); // the training loss
  });

  it("bad input exits 2 with a clear message and writes nothing to --out", async () => {
    const cases: [string[], RegExp][] = [
      [["--prompt", ""], /prompt is empty/],
      [["--prompt", "arr ".repeat(400)], /context window is 256/],
      [["--prompt", "x", "--model", at("no-model")], /config\.json/],
    ];
    const stim = at("bad-stim.jsonl");
    writeFileSync(stim, '{"id":"a","messages":[{"role":"user","content":"Hi"}]}\n{"id": oops}\n');
    cases.push([["--prompt", "x", "--stim", `file:${stim}`], /bad-stim\.jsonl:2/]);
    for (const [i, [args, message]] of cases.entries()) {
      const out = at(`bad-${i}`);
      const model = args.includes("--model") ? [] : ["--model", TINY];
      const run = await forge(["bake", ...model, ...smallBake, "--out", out, ...args]);
      expect(run.code, `${args.join(" ")}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe("forge eval", () => {
  it("run → compare offline; a regression gate fails with exit 1; JUnit and Markdown written", async () => {
    const task = path.join(TASKS, "arithmetic.yaml");
    for (const [name, model] of [
      ["base", TINY],
      ["baked", at("pirate")],
    ] as const) {
      expectOk(
        await forge(["eval", "run", model, "--tasks", task, "--out", at(`${name}.json`), "--json"]),
      );
      expect(json(at(`${name}.manifest.json`)).run.status).toBe("succeeded");
    }
    const base = json(at("base.json"));
    expect(base.tasks[0].n).toBe(25);
    expect(base.tasks[0].mean).toBeGreaterThanOrEqual(0.9);
    const compared = await forge([
      "eval",
      "compare",
      at("base.json"),
      at("base.json"),
      "--out",
      at("same"),
      "--fail-on",
      "regression",
      "--json",
    ]);
    expectOk(compared);
    expect(readFileSync(at("same", "junit.xml"), "utf8")).toMatch(/<testsuite/);
    expect(readFileSync(at("same", "report.md"), "utf8")).toMatch(/arithmetic/);
    // a planted regression: every answer of B wrong
    const broken = structuredClone(base);
    for (const r of broken.tasks[0].records) r.score = 0;
    broken.tasks[0].mean = 0;
    writeFileSync(at("broken.json"), JSON.stringify(broken));
    const gated = await forge([
      "eval",
      "compare",
      at("base.json"),
      at("broken.json"),
      "--out",
      at("gated"),
      "--fail-on",
      "regression",
    ]);
    expect(gated.code, gated.stderr).toBe(1);
    expect(gated.stdout).toMatch(/FAIL\s+regression/);
  });

  it("compare on result files with different items names the missing ids (exit 2)", async () => {
    const base = json(at("base.json"));
    const fewer = structuredClone(base);
    const dropped = fewer.tasks[0].records.splice(0, 2).map((r: { id: string }) => r.id);
    writeFileSync(at("fewer.json"), JSON.stringify(fewer));
    const run = await forge([
      "eval",
      "compare",
      at("base.json"),
      at("fewer.json"),
      "--out",
      at("x"),
    ]);
    expect(run.code).toBe(2);
    for (const id of dropped) expect(run.stderr).toContain(id);
  });
});

describe("forge eval forgetting and the HTML report", () => {
  it("writes the matrix, non-inferiority per task, and a report that renders in Chromium", async () => {
    const out = at("forgetting");
    const run = await forge([
      "eval",
      "forgetting",
      "--base",
      TINY,
      "--baked",
      at("pirate"),
      "--tasks",
      path.join(TASKS, "capitals.yaml"),
      "--tasks",
      path.join(TASKS, "antonyms.yaml"),
      "--out",
      out,
      "--json",
    ]);
    expectOk(run);
    const forgetting = JSON.parse(run.stdout).forgetting;
    expect(forgetting.tasks).toEqual(["capitals", "antonyms"]);
    expect(forgetting.cells).toHaveLength(2);
    expect(forgetting.cells[0].nonInferiority).toHaveProperty("nonInferior");
    const html = readFileSync(path.join(out, "report.html"), "utf8");
    expect(html).toMatch(/<svg[^>]*aria-label="forgetting heatmap"/);
    expect(json(path.join(out, "manifest.json")).run.status).toBe("succeeded");
    if (!existsSync(CHROMIUM)) return; // .ci/run installs Debian's chromium; without it the render is skipped
    const { renderReport, layoutProblems } = await import("../../scripts/render-report.js");
    const shot = path.join(out, "report.png");
    const rendered = await renderReport(path.join(out, "report.html"), shot);
    expect(rendered.consoleErrors).toEqual([]);
    expect(layoutProblems(rendered.layout)).toEqual([]);
    // the summary is real tables now, not a code block of pipes
    expect(rendered.layout.tables.map((t) => t[0]![0])).toContain("model");
    expect(html).not.toContain("<pre>");
    expect(rendered.svgCount).toBeGreaterThanOrEqual(1);
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe("PNG");
  });
});

describe("forge drift and forge pursue", () => {
  it("drift: prompted vs baked curves in drift.json, drift.svg and a manifest", async () => {
    const out = at("drift");
    const run = await forge([
      "drift",
      "--model",
      TINY,
      "--baked",
      at("pirate"),
      "--persona",
      "pirate",
      "--turns",
      "4",
      "--seeds",
      "3",
      "--out",
      out,
      "--json",
    ]);
    expectOk(run);
    const summary = JSON.parse(run.stdout);
    expect(summary.prompted.curve).toHaveLength(4);
    expect(summary.baked.curve).toHaveLength(4);
    const report = json(path.join(out, "drift.json"));
    expect(report.prompted.conversations).toHaveLength(3);
    expect(report.prompted.conversations[0].turns[0].systemInContext).toBe(true);
    const driftSvg = readFileSync(path.join(out, "drift.svg"), "utf8");
    expect(driftSvg).toMatch(/^<svg/);
    expect(driftSvg.match(/<polygon class="band"/g)).toHaveLength(2); // prompted and baked 95% CIs
    expect(json(path.join(out, "manifest.json")).run.status).toBe("succeeded");
    const again = await forge([
      "drift",
      "--model",
      TINY,
      "--persona",
      "pirate",
      "--turns",
      "4",
      "--seeds",
      "3",
      "--out",
      at("drift-again"),
      "--json",
    ]);
    expect(JSON.parse(again.stdout).prompted.curve).toEqual(summary.prompted.curve);
    const bad = await forge(["drift", "--persona", "ninja", "--out", at("drift-bad")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a forge-tiny persona; accepted: pirate, robot, poet, cheerful/);
  });

  it("pursue: stops when a round does not improve enough, with every round's model and a manifest", async () => {
    const out = at("pursuit");
    mkdirSync(out, { recursive: true });
    const run = await forge([
      "pursue",
      "--model",
      TINY,
      "--prompt",
      "You are a pirate.",
      "--rounds",
      "3",
      "--min-improvement",
      "2", // no score can rise by 2: the first round must stop it
      "--eval",
      path.join(TASKS, "persona-pirate.yaml"),
      ...smallBake,
      "--no-measure",
      "--out",
      out,
      "--json",
    ]);
    expectOk(run);
    const summary = JSON.parse(run.stdout);
    expect(summary.results[0].stopReason).toBe("converged");
    expect(summary.results[0].rounds).toHaveLength(1);
    const { reprompt } = summary.results[0];
    for (const who of ["base", "baked"])
      for (const how of ["unprompted", "prompted"]) {
        expect(reprompt[who][how]).toBeGreaterThanOrEqual(0);
        expect(reprompt[who][how]).toBeLessThanOrEqual(1);
      }
    expect(reprompt.base.prompted).toBeGreaterThan(reprompt.base.unprompted); // the prompt works
    expect(existsSync(path.join(out, "prompt-1", "round-1", "model", "model.safetensors"))).toBe(
      true,
    );
    const manifest = json(path.join(out, "manifest.json"));
    expect(manifest.run.status).toBe("succeeded");
    expect(Object.keys(manifest.outputs.metrics)).toContain("prompt-1.round-1.score");
    expect(Object.keys(manifest.outputs.metrics)).toContain("prompt-1.reprompt.baked.prompted");
  });
});
