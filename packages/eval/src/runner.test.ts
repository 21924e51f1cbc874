import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { GPT, initBackend } from "@forge/model";
import { type Tokenizer, train } from "@forge/tokenizer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareResults, evaluateGates, forgettingFromResults } from "./compare.js";
import { heatmapSvg, toHtml, toJUnit, toMarkdown } from "./report.js";
import { type EvalResults, runTasks } from "./runner.js";
import { parseTask, type Task } from "./tasks.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-runner-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
let tasks: Task[];

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  tokenizer = train(["What is one plus one? Two. What colour is the sky? Blue."], {
    vocabSize: 300,
  });
  const items = Array.from({ length: 12 }, (_, i) => `  - { id: q${i}, n: "${i}" }`).join("\n");
  tasks = await Promise.all([
    parseTask(
      `name: echo\nitems:\n${items}\nmessages: [{ role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 4, temperature: 1 }\nscorer: { type: regex, pattern: "\\\\S" }\n`,
      path.join(dir, "echo.yaml"),
    ),
    parseTask(
      `name: likelihood\nitems:\n${items}\nmessages: [{ role: user, content: "Say {{n}}" }]\nscorer: { type: logprob, target: "{{n}}" }\n`,
      path.join(dir, "lp.yaml"),
    ),
  ]);
});

function model(seed: number) {
  return {
    name: `m${seed}`,
    model: GPT.create(
      { vocabSize: tokenizer.vocabSize, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 16 },
      { seed },
    ),
    tokenizer,
  };
}

describe("runTasks", () => {
  it("records every item × round, caches the results, and re-runs are free", async () => {
    const m = model(1);
    const cacheDir = path.join(dir, "cache");
    const first = await runTasks(m, tasks, { rounds: 2, seed: 3, cacheDir });
    expect(first.tasks[0]!.records).toHaveLength(24);
    expect(first.tasks[0]!.records[13]).toMatchObject({ id: "q1", round: 1, seed: 4 });
    expect(first.tasks[1]!.records[0]!.score).toBeLessThan(0); // a log-probability
    const cached: boolean[] = [];
    const again = await runTasks(m, tasks, {
      rounds: 2,
      seed: 3,
      cacheDir,
      onProgress: (e) => cached.push(Boolean(e.cached)),
    });
    expect(cached.every(Boolean)).toBe(true);
    expect(again.tasks).toEqual(first.tasks);
    const fresh = await runTasks(m, tasks, { rounds: 2, seed: 4, cacheDir });
    expect(fresh.tasks[0]!.records.map((r) => r.output)).not.toEqual(
      first.tasks[0]!.records.map((r) => r.output),
    );
    m.model.dispose();
  });
});

describe("runTasks with a system prompt and greedy decoding", () => {
  it("puts the system prompt first unless the task has one; identical greedy prompts agree", async () => {
    const m = model(2);
    const greedy = await Promise.all(
      ["a", "b"].map((name) =>
        parseTask(
          `name: ${name}\nitems: [{ id: x, n: "1" }, { id: y, n: "2" }]\nmessages: [{ role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 6, temperature: 0 }\nscorer: { type: regex, pattern: "." }\n`,
          path.join(dir, `${name}.yaml`),
        ),
      ),
    );
    const own = await parseTask(
      `name: own\nitems: [{ id: x, n: "1" }]\nmessages: [{ role: system, content: "Mine." }, { role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 6, temperature: 0 }\nscorer: { type: regex, pattern: "." }\n`,
      path.join(dir, "own.yaml"),
    );
    const prompted = await runTasks(m, [...greedy, own], { system: "Be brief." });
    expect(prompted.settings.system).toBe("Be brief.");
    expect(prompted.tasks[0]!.records[0]!.input[0]).toEqual({
      role: "system",
      content: "Be brief.",
    });
    expect(prompted.tasks[2]!.records[0]!.input[0]).toEqual({ role: "system", content: "Mine." });
    // the same prompt in two tasks: generated once, and equal to a run of that task alone
    const alone = await runTasks(m, [greedy[1]!], { system: "Be brief." });
    expect(prompted.tasks[0]!.records.map((r) => r.output)).toEqual(
      prompted.tasks[1]!.records.map((r) => r.output),
    );
    expect(alone.tasks[0]!.records.map((r) => r.output)).toEqual(
      prompted.tasks[1]!.records.map((r) => r.output),
    );
    const plain = await runTasks(m, [greedy[0]!]);
    expect(plain.tasks[0]!.records[0]!.input[0]!.role).toBe("user");
    m.model.dispose();
  });
});

describe("comparing results", () => {
  const fake = (
    name: string,
    scores: number[],
    ids = scores.map((_, i) => `i${i}`),
  ): EvalResults => ({
    schemaVersion: 1,
    kind: "forge-eval-results",
    model: { name, hash: name },
    createdAt: "",
    settings: { seed: 0 },
    tasks: [
      {
        name: "t",
        hash: "h",
        tags: [],
        scorer: "contains",
        rounds: 1,
        n: ids.length,
        mean: 0,
        records: ids.map((id, i) => ({
          id,
          round: 0,
          seed: 0,
          input: [],
          output: "",
          score: scores[i]!,
        })),
      },
    ],
  });

  it("different item sets are an error naming the missing ids", () => {
    expect(() =>
      compareResults(fake("a", [1, 0, 1]), fake("b", [1, 0, 1], ["i0", "i1", "i9"])),
    ).toThrow("task t: the results have different items — missing from B: i2; missing from A: i9");
  });

  it("gates: a planted regression fails, no-improvement fails without a win, forgetting flags the drop", () => {
    const base = fake(
      "base",
      Array.from({ length: 100 }, (_, i) => (i % 10 === 0 ? 0 : 1)),
    );
    const worse = fake(
      "worse",
      Array.from({ length: 100 }, (_, i) => (i % 3 === 0 ? 0 : 1)),
    );
    const comparison = compareResults(base, worse);
    expect(comparison.tasks[0]!.winner).toBe("A");
    const gates = evaluateGates(["regression", "no-improvement"], comparison);
    expect(gates.map((g) => g.passed)).toEqual([false, false]);
    const forgetting = forgettingFromResults(base, [worse]);
    expect(evaluateGates(["forgetting"], undefined, forgetting)[0]!.passed).toBe(false);
    const same = forgettingFromResults(base, [
      fake(
        "same",
        base.tasks[0]!.records.map((r) => r.score),
      ),
    ]);
    expect(evaluateGates(["forgetting"], undefined, same)[0]!.passed).toBe(true);
    const input = { title: "t", comparison, forgetting, gates };
    expect(toJUnit(input)).toMatch(/<testsuites name="t" tests="3" failures="2">/);
    expect(toMarkdown(input)).toContain("| t | 90.0 | 66.0 | -24.0 |");
    expect(toHtml(input)).toMatch(/^<!doctype html>[\s\S]*<svg[\s\S]*<svg/);
    expect(toHtml(input)).not.toMatch(/<script|src=|href=/);
    expect(heatmapSvg(forgetting)).toContain("90.0");
  });
});

describe("@forge/eval/stats", () => {
  it("imports no tfjs: the built entry and its chunks reference no @tensorflow package", () => {
    const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist");
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(path.join(distDir, file), "utf8");
      for (const match of text.matchAll(/(?:from|import)\s*["']([^"']+)["']/g)) {
        const specifier = match[1]!;
        expect(specifier, `${file} imports ${specifier}`).not.toMatch(
          /tensorflow|@forge\/model|@forge\/tokenizer/,
        );
        if (specifier.startsWith("./")) visit(specifier.slice(2));
      }
    };
    visit("stats.js");
    expect(seen.size).toBeGreaterThan(0);
  });
});
