/**
 * forge cycle through the real CLI on the shipped forge-tiny, with small task files and small
 * bakes: a per-cycle table, at least one automatic switch, a stop on plateau, history.svg,
 * cycles.json, every cycle's model, and a finished manifest.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-cycle-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);

beforeAll(() => {
  mkdirSync(at("tasks", "data"), { recursive: true });
  const take = (file: string, n: number) =>
    readFileSync(path.join(TINY, "tasks", "data", file), "utf8")
      .trim()
      .split("\n")
      .slice(0, n);
  writeFileSync(at("tasks", "data", "capitals.jsonl"), `${take("capitals.jsonl", 6).join("\n")}\n`);
  writeFileSync(at("tasks", "data", "all.jsonl"), `${take("all.jsonl", 6).join("\n")}\n`);
  writeFileSync(
    at("tasks", "capitals.yaml"),
    `name: capitals
data: data/capitals.jsonl
messages:
  - { role: user, content: "{{question}}" }
generation: { maxNewTokens: 12, temperature: 0 }
scorer: { type: contains, target: "{{answer}}" }
`,
  );
  writeFileSync(
    at("tasks", "pirate.yaml"),
    `name: persona-pirate
data: data/all.jsonl
messages:
  - { role: user, content: "{{question}}" }
generation: { maxNewTokens: 12, temperature: 0 }
scorer: { type: regex, pattern: "^\\\\s*Arr\\\\b" }
`,
  );
});

const args = (out: string) => [
  "cycle",
  "--model",
  TINY,
  "--task-evals",
  at("tasks", "capitals.yaml"),
  "--persona-eval",
  at("tasks", "pirate.yaml"),
  "--persona-prompt",
  "You are a pirate.",
  "--task-prompt",
  "Answer with the capital city.",
  "--stim",
  "list:Name the capital of Greece.|Who are you?|Say hello.",
  "--samples",
  "1",
  "--max-new-tokens",
  "12",
  "--steps",
  "2",
  "--batch-size",
  "4",
  "--val-fraction",
  "0",
  "--no-measure",
  "--traits",
  "2",
  "--window",
  "1",
  "--min-delta",
  "0.05",
  "--max-cycles",
  "6",
  "--out",
  out,
];

describe("forge cycle", () => {
  it("switches on plateau, stops when both kinds plateau, and writes the history, models and manifest", async () => {
    const out = at("run");
    const run = await forge(args(out));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^cycle\s+kind\s+task\s+persona/m);
    expect(run.stdout).toMatch(/stopped: plateau; switches after cycle \d/);
    const state = JSON.parse(readFileSync(path.join(out, "cycles.json"), "utf8"));
    expect(state.switches.length).toBeGreaterThanOrEqual(1);
    expect(state.plateaued).toEqual({ A: true, B: true });
    expect(state.cycles[0].kind).toBe("A");
    expect(state.cycles.some((c: { kind: string }) => c.kind === "B")).toBe(true);
    for (const c of state.cycles)
      expect(existsSync(path.join(out, `cycle-${c.cycle}`, "model", "model.safetensors"))).toBe(
        true,
      );
    expect(readFileSync(path.join(out, "history.svg"), "utf8")).toMatch(
      /^<svg[\s\S]*switches after cycle/,
    );
    const manifest = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(existsSync(`${out}.partial`)).toBe(false);
  }, 900_000);

  it("SIGINT stops the run (exit 130, manifest interrupted); --resume keeps the finished cycles and completes", async () => {
    const out = at("stopped");
    const child = spawn(process.execPath, [FORGE, ...args(out)], {
      env: { ...process.env, NO_COLOR: "1", FORGE_PROGRESS: "0" },
    });
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number>((resolve) =>
      child.once("exit", (code) => resolve(code ?? -1)),
    );
    const stateFile = path.join(`${out}.partial`, "cycles.json");
    const cyclesDone = () => {
      try {
        return JSON.parse(readFileSync(stateFile, "utf8")).cycles.length as number;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 600_000;
    while (cyclesDone() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(cyclesDone(), stderr).toBeGreaterThanOrEqual(1);
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    expect(stderr).toMatch(/resume with: forge cycle .* --resume/);
    expect(existsSync(out)).toBe(false);
    const stopped = JSON.parse(readFileSync(stateFile, "utf8"));
    const manifestFile = path.join(`${out}.partial`, "manifest.json");
    expect(JSON.parse(readFileSync(manifestFile, "utf8")).run.status).toBe("interrupted");

    const resumed = await forge([...args(out), "--resume"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = JSON.parse(readFileSync(path.join(out, "cycles.json"), "utf8"));
    expect(done.start).toEqual(stopped.start);
    // the cycles finished before the stop are kept as they were, not run again
    expect(done.cycles.slice(0, stopped.cycles.length)).toEqual(stopped.cycles);
    expect(done.cycles.length).toBeGreaterThan(stopped.cycles.length);
    const manifest = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.run.resumes).toHaveLength(1);
  }, 1_200_000);

  it("bad input exits 2 naming the flag, and writes nothing", async () => {
    const out = at("bad");
    const missing = await forge(
      args(out).filter((a, i, all) => a !== "--persona-eval" && all[i - 1] !== "--persona-eval"),
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--persona-eval <file> is required/);
    const window = await forge([...args(out), "--window", "0"]);
    expect(window.code).toBe(2);
    expect(window.stderr).toMatch(/--window must be an integer ≥ 1/);
    const tasks = await forge([
      ...args(out),
      "--task-evals",
      `${at("tasks", "capitals.yaml")},${at("tasks", "nope.yaml")}`,
    ]);
    expect(tasks.code).toBe(2);
    expect(tasks.stderr).toMatch(/--task-evals .*nope\.yaml/);
    expect(existsSync(out)).toBe(false);
  }, 300_000);
});
