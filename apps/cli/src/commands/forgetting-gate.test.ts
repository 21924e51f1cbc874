/**
 * forge eval forgetting as the Prompt Baking paper states it: relative degradation per task,
 * the maximum, "tasks passed N/M", and the max-degradation gate (exit 1 when it fails).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GPT, initBackend, loadModel, saveModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-forgetting-gate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);

beforeAll(async () => {
  // a short capitals task, and a "baked" model that has forgotten everything: random weights
  mkdirSync(at("tasks", "data"), { recursive: true });
  const lines = readFileSync(path.join(TINY, "tasks", "data", "capitals.jsonl"), "utf8")
    .trim()
    .split("\n")
    .slice(0, 10);
  writeFileSync(at("tasks", "data", "capitals.jsonl"), `${lines.join("\n")}\n`);
  writeFileSync(
    at("tasks", "capitals.yaml"),
    `name: capitals
data: data/capitals.jsonl
messages:
  - role: user
    content: "{{question}}"
generation: { maxNewTokens: 16, temperature: 0 }
scorer: { type: contains, target: "{{answer}}" }
`,
  );
  await initBackend({ backend: "wasm" });
  const { model, tokenizer } = await loadModel(TINY);
  const broken = GPT.create(model.config, { seed: 99 });
  await saveModel(broken, at("forgot"), { ...(tokenizer ? { tokenizer } : {}) });
  model.dispose();
  broken.dispose();
}, 120_000);

const forgetting = (baked: string, out: string, ...extra: string[]) =>
  forge([
    "eval",
    "forgetting",
    "--base",
    TINY,
    "--baked",
    baked,
    "--tasks",
    at("tasks", "capitals.yaml"),
    "--cache-dir",
    at("cache"),
    "--fail-on",
    "max-degradation",
    "--out",
    out,
    ...extra,
  ]);

describe("forge eval forgetting --fail-on max-degradation", () => {
  it("a model that forgot fails the gate (exit 1) with its degradation and tasks passed 0/1; the base itself passes 1/1", async () => {
    const failed = await forgetting(at("forgot"), at("out-forgot"), "--json");
    expect(failed.code, failed.stderr).toBe(1);
    const summary = JSON.parse(failed.stdout);
    const [d] = summary.forgetting.degradation;
    expect(d.model).toBe("forgot");
    expect(d.maxDegradation).toBeGreaterThan(0.034);
    expect(d).toMatchObject({ tasksPassed: 0, tasks: 1, passed: false, maxTask: "capitals" });
    expect(summary.forgetting.cells[0].relativeDegradation).toBeCloseTo(
      (summary.forgetting.matrix[0][0] - summary.forgetting.matrix[1][0]) /
        summary.forgetting.matrix[0][0],
      12,
    );
    expect(summary.gates[0]).toMatchObject({ gate: "max-degradation", passed: false });
    const markdown = readFileSync(at("out-forgot", "report.md"), "utf8");
    expect(markdown).toMatch(/\*\*Relative degradation\*\*/);
    expect(markdown).toMatch(/\| forgot \| .*❌ \| 0\/1 \|/);
    expect(readFileSync(at("out-forgot", "report.html"), "utf8")).toMatch(/0\/1 passed/);

    const passed = await forgetting(TINY, at("out-same"));
    expect(passed.code, passed.stderr).toBe(0);
    expect(passed.stdout).toMatch(
      /max degradation 0\.0% on capitals \(threshold 3\.4%\), tasks passed 1\/1/,
    );

    const bad = await forgetting(TINY, at("out-bad"), "--max-degradation", "2");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-degradation must be in \[0, 1\)/);
  }, 600_000);
});
