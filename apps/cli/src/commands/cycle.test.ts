/**
 * forge cycle through the real CLI on the shipped forge-tiny, with small task files and small
 * bakes: a per-cycle table, at least one automatic switch, a stop on plateau, history.svg,
 * cycles.json, every cycle's model, and a finished manifest.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";

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
