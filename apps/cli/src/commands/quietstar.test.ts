/**
 * `forge bake-quietstar` through the real CLI on forge-tiny and the thinking corpus's held-out
 * sums (smoke-sized): the summary, the report and manifest, baking only on a win
 * (--require-win turns "nothing baked" into exit 1), and bad input → exit 2 naming the problem.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-quietstar-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
const small = [
  "--eval-samples",
  "8",
  "--held-out",
  "6",
  "--rounds",
  "2",
  "--max-thought-length",
  "12",
];

describe("forge bake-quietstar", () => {
  it("runs the A/B test on forge-tiny, reports, and bakes only when thoughts win", async () => {
    const out = at("run");
    const run = await forge(["bake-quietstar", "--out", out, ...small, "--json"]);
    expect(run.stderr).not.toMatch(/forge:/);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary.tokens).toMatchObject({
      start: "<|startofthought|>",
      end: "<|endofthought|>",
      startId: 1024,
      endId: 1025,
    });
    expect(summary.rounds).toHaveLength(2);
    for (const r of summary.rounds) {
      expect(r.baseline).toBeGreaterThanOrEqual(0);
      expect(r.thoughts).toBeLessThanOrEqual(1);
    }
    expect(["thoughts", "baseline", "none"]).toContain(summary.winner);
    expect(summary.baked).toBe(summary.winner === "thoughts" && summary.model !== null);
    expect(existsSync(path.join(out, "model"))).toBe(summary.baked);
    for (const file of ["report.json", "report.md", "accuracy.svg", "manifest.json"])
      expect(existsSync(path.join(out, file))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.outputs.metrics["ab.winner"]).toBe(summary.winner);
    expect(manifest.outputs.metrics["reasoning_accuracy.base"]).toBe(summary.heldOut.base);
    expect(readFileSync(path.join(out, "report.md"), "utf8")).toContain(summary.decision);

    // The same run, printed for people, and with --require-win: exit 1 exactly when nothing is baked.
    const again = await forge([
      "bake-quietstar",
      "--out",
      out,
      ...small,
      "--force",
      "--require-win",
    ]);
    expect(again.stdout).toContain("A/B Test Results:");
    expect(again.stdout).toContain("Round 2/2 - Thoughts Accuracy:");
    expect(again.stdout).toContain("QUIET-STAR BAKING RESULTS");
    expect(again.code).toBe(summary.baked ? 0 : 1);
    if (!summary.baked) expect(again.stderr).toMatch(/--require-win: nothing baked/);
  }, 600_000);

  it("--tokens-only writes the model with thought tokens (HF added_tokens); generate hides thoughts unless asked", async () => {
    const out = at("tokens");
    const run = await forge(["bake-quietstar", "--tokens-only", "--out", out, "--json"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ added: true, tokens: { startId: 1024 } });
    const tokenizer = JSON.parse(readFileSync(path.join(out, "tokenizer.json"), "utf8"));
    expect(
      tokenizer.added_tokens
        .filter((t: { content: string }) => t.content.includes("thought"))
        .map((t: { id: number; content: string }) => [t.id, t.content]),
    ).toEqual([
      [1024, "<|startofthought|>"],
      [1025, "<|endofthought|>"],
    ]);
    const config = JSON.parse(readFileSync(path.join(out, "config.json"), "utf8"));
    expect(config.vocab_size).toBe(1026);
    const record = JSON.parse(readFileSync(path.join(out, "forge.json"), "utf8"));
    expect(record.thoughtTokens).toMatchObject({ start: "<|startofthought|>", endId: 1025 });
    for (const flags of [[], ["--show-thoughts"]]) {
      const reply = await forge([
        "generate",
        out,
        "--user",
        "What is 12 + 7?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
        ...flags,
      ]);
      expect(reply.code).toBe(0);
      expect(reply.stdout).not.toContain("<|startofthought|>");
      expect(reply.stdout.trim().length).toBeGreaterThan(0);
    }
    // Again into the same directory: forge's own model, replaced only with --force.
    const again = await forge(["bake-quietstar", "--tokens-only", "--out", out]);
    expect(again.code).toBe(2);
  }, 300_000);

  it("refuses bad input with exit 2, naming the file, line or field", async () => {
    const noAnswer = at("no-answer.jsonl");
    writeFileSync(
      noAnswer,
      `${JSON.stringify({ question: "1 + 1?", answer: "2\n#### 2" })}\n${JSON.stringify({ question: "2 + 2?" })}\n`,
    );
    const missing = await forge(["bake-quietstar", "--out", at("x1"), "--eval-dataset", noAnswer]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no-answer\.jsonl:2: "answer" is missing/);

    const zero = await forge(["bake-quietstar", "--out", at("x2"), "--max-thought-length", "0"]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toMatch(/--max-thought-length must be an integer ≥ 1; got "0"/);

    const config = at("quietstar.json");
    writeFileSync(config, JSON.stringify({ maxThoughtLength: -3 }));
    const badConfig = await forge(["bake-quietstar", "--out", at("x3"), "--config", config]);
    expect(badConfig.code).toBe(2);
    expect(badConfig.stderr).toMatch(
      /quietstar\.json: maxThoughtLength must be an integer ≥ 1; got -3/,
    );

    // A model that already thinks with other tokens.
    const other = at("other-thoughts");
    cpSync(FORGE_TINY_DIR, other, { recursive: true });
    const record = JSON.parse(readFileSync(path.join(other, "forge.json"), "utf8"));
    writeFileSync(
      path.join(other, "forge.json"),
      JSON.stringify({ ...record, thoughtTokens: { start: "<think>", end: "</think>" } }),
    );
    const clash = await forge(["bake-quietstar", "--model", other, "--out", at("x4"), ...small]);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toMatch(/already has the thought tokens <think> and <\/think>/);
    for (const out of ["x1", "x2", "x3", "x4"]) expect(existsSync(at(out))).toBe(false);
  }, 300_000);
});
