/**
 * forge eval run, forge drift and forge pursue on a Llama-architecture model with its own
 * ChatML template (default system prompt included): each exits 0, renders the model's chats
 * with that template and writes its files. The model is random and tiny (see
 * ../testing/llama.ts), so the scores are noise; the plumbing is real.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Tokenizer } from "@forge/tokenizer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge, type Run } from "../run-cli.js";
import { CHATML, writeTinyLlama } from "../testing/llama.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-llama-eval-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));
let modelDir: string;
let tokenizer: Tokenizer;

/** A task scoring replies that say "Ahoy" (the fixture's corpus ends every line with it). */
function ahoyTask(): string {
  const task = at("ahoy.yaml");
  writeFileSync(
    task,
    [
      "name: ahoy",
      "items:",
      "  - { question: What is 2 plus 3? }",
      "  - { question: What is 4 plus 1? }",
      "messages:",
      "  - role: user",
      '    content: "{{question}}"',
      "generation: { maxNewTokens: 8, temperature: 0 }",
      "scorer: { type: regex, pattern: Ahoy }",
      "",
    ].join("\n"),
  );
  return task;
}

function lines(name: string, text: string[]): string {
  writeFileSync(at(name), `${text.join("\n")}\n`);
  return at(name);
}

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

beforeAll(async () => {
  ({ modelDir, tokenizer } = await writeTinyLlama(dir));
});

describe("eval, drift and pursue on a Llama model with its own chat template", () => {
  it("forge eval run scores the model and writes results and a manifest", async () => {
    const out = at("eval.json");
    const run = await forge([
      "eval",
      "run",
      modelDir,
      "--tasks",
      ahoyTask(),
      "--system",
      "You are a pirate.",
      "--out",
      out,
      "--json",
    ]);
    expectOk(run);
    const result = json(out);
    expect(result.tasks[0].n).toBe(2);
    for (const record of result.tasks[0].records) {
      expect(typeof record.output).toBe("string");
      // generation stopped at the template's <|im_end|>, and no special token leaks into a reply
      expect(record.output).not.toMatch(/<\|im_(start|end)\|>/);
    }
    expect(json(at("eval.manifest.json")).run.status).toBe("succeeded");
  });

  it("forge drift runs conversations with the template", async () => {
    const out = at("drift");
    const run = await forge([
      "drift",
      "--model",
      modelDir,
      "--prompt",
      "You are a pirate.",
      "--signature",
      "Ahoy|arr",
      "--probes",
      lines("probes.txt", ["What is 2 plus 3?", "What is 4 plus 1?"]),
      "--distractors",
      lines("distractors.txt", ["User asks 7: what is 7 plus 2?"]),
      "--turns",
      "3",
      "--seeds",
      "2",
      "--out",
      out,
      "--json",
    ]);
    expectOk(run);
    const report = json(path.join(out, "drift.json"));
    expect(report.prompted.conversations).toHaveLength(2);
    // the first turn's context is the system prompt and the probe in the model's ChatML
    const chatml =
      "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nWhat is 2 plus 3?<|im_end|>\n<|im_start|>assistant\n";
    const first = report.prompted.conversations[0].turns[0];
    expect(first.systemInContext).toBe(true);
    expect(first.promptTokens).toBe(tokenizer.encode(chatml, { allowedSpecial: "all" }).length);
    expect(JSON.parse(run.stdout).prompted.curve).toHaveLength(3);
    expect(readFileSync(path.join(out, "drift.svg"), "utf8")).toMatch(/^<svg/);
    expect(json(path.join(out, "manifest.json")).run.status).toBe("succeeded");
  });

  it("forge pursue bakes rounds into the model and scores them", async () => {
    const task = ahoyTask();
    const out = at("pursuit");
    const run = await forge([
      "pursue",
      "--model",
      modelDir,
      "--prompt",
      "You are a pirate.",
      "--rounds",
      "1",
      "--eval",
      task,
      "--stim",
      "list:What is 12 plus 30?|What is 2 plus 3?",
      "--samples",
      "2",
      "--max-new-tokens",
      "8",
      "--steps",
      "2",
      "--batch-size",
      "2",
      "--val-fraction",
      "0",
      "--no-measure",
      "--out",
      out,
      "--json",
    ]);
    expectOk(run);
    const summary = JSON.parse(run.stdout);
    expect(summary.results[0].rounds).toHaveLength(1);
    const round = path.join(out, "prompt-1", "round-1", "model");
    expect(existsSync(path.join(round, "model.safetensors"))).toBe(true);
    // the baked model is still the same family with the same template, ready for the next round
    expect(json(path.join(round, "config.json")).model_type).toBe("llama");
    expect(json(path.join(round, "tokenizer_config.json")).chat_template).toBe(CHATML);
    expect(json(path.join(out, "manifest.json")).run.status).toBe("succeeded");
  });
});
