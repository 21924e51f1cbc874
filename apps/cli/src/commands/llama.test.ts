/**
 * A Llama-architecture model with its own ChatML chat template (default system prompt
 * included), through the real CLI: generate renders with the template and stops at its
 * <|im_end|>; a bake runs end to end, its loss falls and the KL to the prompted model drops.
 * The model is random and tiny (built here), so the replies are noise; the plumbing is real.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";
import { writeTinyLlama } from "../testing/llama.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-llama-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, "model");

beforeAll(async () => {
  await writeTinyLlama(dir);
});

describe("a Llama model with its own chat template", () => {
  it("forge generate renders the conversation with the template and replies", async () => {
    const run = await forge([
      "generate",
      modelDir,
      "--user",
      "What is 2 plus 3?",
      "--temperature",
      "0",
      "--max-new-tokens",
      "6",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(typeof result.reply).toBe("string");
  });

  it("forge bake runs end to end: the loss falls and the KL to the prompted model drops", async () => {
    const out = path.join(dir, "bake");
    const run = await forge([
      "bake",
      "--model",
      modelDir,
      "--prompt",
      "You are a pirate.",
      "--stim",
      "persona:8",
      "--steps",
      "40",
      "--lr",
      "1e-2",
      "--out",
      out,
    ]);
    expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
    expect(run.code).toBe(0);
    const manifest = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    const losses = manifest.training.logHistory.map((s: { loss: number }) => s.loss);
    expect(losses).toHaveLength(40);
    expect(losses.at(-1)).toBeLessThan(losses[0] * 0.9);
    const reduction = Number(/KL reduction\s+(-?[\d.]+)%/.exec(run.stdout)?.[1]);
    expect(reduction).toBeGreaterThan(5);
    const config = JSON.parse(readFileSync(path.join(out, "adapter_config.json"), "utf8"));
    expect(config.target_modules).toEqual(["q_proj", "v_proj"]);
  }, 300_000);
});
