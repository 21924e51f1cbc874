/**
 * forge export-bake and forge import-adapter through the real CLI on forge-tiny: the export is
 * read by a PyTorch script (/usr/bin/python3 + torch) that computes the same top-K + tail KL
 * for the base student as forge does; an adapter saved by forge and rewritten as PEFT writes it
 * imports and gives the same logits; a wrong shape or an unknown target is exit 2 naming the key.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadBaked } from "@forge/baking";
import { type BakeExample, validationKL } from "@forge/baking/internal";
import { initBackend, loadModel, readSafetensors, writeSafetensors } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge, type Run } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-scale-out-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
const PY_SCRIPT = fileURLToPath(
  new URL("../../../../packages/baking/python/forge_distill.py", import.meta.url),
);

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

/** /usr/bin/python3 with torch, or why not. */
function torchPython(): string | undefined {
  const python = "/usr/bin/python3";
  if (!existsSync(python)) return undefined;
  const probe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8" });
  return probe.status === 0 ? python : undefined;
}

interface Line {
  type: string;
  [key: string]: unknown;
}
const readLines = (file: string): Line[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Line);

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  expectOk(
    await forge([
      "bake",
      "--model",
      FORGE_TINY_DIR,
      "--prompt",
      "You are a pirate.",
      "--stim",
      "list:What is 12 plus 30?|What is the capital of France?|Spell the word cat.|What is the opposite of hot?|Name a colour.",
      "--samples",
      "2",
      "--max-new-tokens",
      "16",
      "--cache-topk",
      "8",
      "--steps",
      "4",
      "--batch-size",
      "4",
      "--lr",
      "1e-2",
      "--val-fraction",
      "0",
      "--no-measure",
      "--out",
      at("pirate"),
    ]),
  );
  // the export the tests below read
  expectOk(
    await forge(["export-bake", at("pirate"), "--format", "jsonl", "--out", at("cached.jsonl")]),
  );
}, 300_000);

describe("forge export-bake", () => {
  it("writes a header and one record per trajectory, from the rollout's cached top-K", async () => {
    const [header, ...records] = readLines(at("cached.jsonl"));
    const rollout = readLines(at("pirate", "rollout.jsonl"));
    const forgeJson = JSON.parse(readFileSync(at("pirate", "forge.json"), "utf8"));
    expect(header).toMatchObject({
      type: "header",
      schema: "forge.bake-export/1",
      model: path.resolve(FORGE_TINY_DIR),
      k: 8,
      topKSource: "rollout-cache",
      prompt: { hash: forgeJson.prompt.hash },
      trajectories: rollout.length,
    });
    expect((header!.tokenizer as { sha256: string }).sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(records).toHaveLength(rollout.length);
    const first = records[0] as unknown as {
      input: { messages: { content: string }[]; text: string; ids: number[] };
      trajectory: { ids: number[]; tokens: string[] };
      teacher: { ids: number[][]; logprobs: number[][]; tokens: string[][]; tail: number[] };
    };
    // the student's input carries no system prompt
    expect(first.input.text).not.toContain("pirate.");
    expect(first.input.messages.every((m) => !m.content.includes("You are a pirate."))).toBe(true);
    expect(first.trajectory.ids).toEqual(rollout[0]!.tokenIds);
    expect(first.trajectory.tokens).toHaveLength(first.trajectory.ids.length);
    expect(first.teacher.ids).toHaveLength(first.trajectory.ids.length);
    expect(first.teacher.tokens[0]).toHaveLength(8);
    for (const [r, row] of first.teacher.logprobs.entries()) {
      const mass = row.reduce((s, lp) => s + Math.exp(lp), 0);
      expect(first.teacher.tail[r]! + mass).toBeCloseTo(1, 5);
    }
  });

  it("recomputes the teacher's top-K when asked for more than the cache, agreeing with it", async () => {
    expectOk(await forge(["export-bake", at("pirate"), "--top-k", "16", "--out", at("k16.jsonl")]));
    const [header, ...records] = readLines(at("k16.jsonl"));
    expect(header).toMatchObject({ k: 16, topKSource: "recomputed" });
    const cached = readLines(at("cached.jsonl")).slice(1);
    const a = records[0]!.teacher as { logprobs: number[][]; ids: number[][] };
    const b = cached[0]!.teacher as { logprobs: number[][]; ids: number[][] };
    for (const [r, row] of b.logprobs.entries())
      for (const [j, lp] of row.entries()) expect(a.logprobs[r]![j]!).toBeCloseTo(lp, 3);
  });

  it("a PyTorch script reads the export and computes forge's top-K + tail KL for the base student", async (context) => {
    const python = torchPython();
    if (!python) {
      context.skip("/usr/bin/python3 with torch is not installed: the PyTorch reader is not run");
      return;
    }
    const out = execFileSync(python, [PY_SCRIPT, at("cached.jsonl"), "--steps", "2"], {
      encoding: "utf8",
      env: { ...process.env, OMP_NUM_THREADS: "1" },
    });
    const result = JSON.parse(out.trim().split("\n").at(-1)!) as {
      kl: number;
      tokens: number;
      klAfter: number;
    };
    // forge's own measure: the bake's validation KL over the same top-K, for the base student
    const records = readLines(at("cached.jsonl")).slice(1) as unknown as {
      id: string;
      input: { ids: number[] };
      trajectory: { ids: number[] };
      teacher: { ids: number[][]; logprobs: number[][] };
    }[];
    const examples: BakeExample[] = records.map((r) => ({
      id: r.id,
      studentPrompt: r.input.ids,
      response: r.trajectory.ids,
      teacherTopK: { ids: r.teacher.ids, logprobs: r.teacher.logprobs },
    }));
    const { model } = await loadModel(FORGE_TINY_DIR);
    const forgeKL = validationKL(model, examples, 8);
    model.dispose();
    console.log(
      `top-K + tail KL of the base student: forge ${forgeKL.toFixed(6)}, PyTorch ${result.kl.toFixed(6)}; after two PyTorch steps ${result.klAfter.toFixed(6)}`,
    );
    expect(result.tokens).toBe(records.reduce((s, r) => s + r.trajectory.ids.length, 0));
    expect(forgeKL).toBeGreaterThan(0.05);
    expect(Math.abs(result.kl - forgeKL) / forgeKL).toBeLessThan(1e-3);
    // the loss trains: two steps on the student lower it
    expect(result.klAfter).toBeLessThan(result.kl);
  });

  it("refuses bad input with exit 2 and a one-line message", async () => {
    const missing = await forge(["export-bake", at("nowhere")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("forge.json is missing");
    const format = await forge(["export-bake", at("pirate"), "--format", "parquet"]);
    expect(format.code).toBe(2);
    expect(format.stderr).toContain("accepted: jsonl");
    const again = await forge(["export-bake", at("pirate"), "--out", at("cached.jsonl")]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("--force");
    writeFileSync(at("mine.txt"), "my notes\n");
    const foreign = await forge(["export-bake", at("pirate"), "--out", at("mine.txt"), "--force"]);
    expect(foreign.code).toBe(2);
    expect(readFileSync(at("mine.txt"), "utf8")).toBe("my notes\n");
  });
});

/** forge-tiny + an adapter dir's logits on a fixed sequence. */
async function logitsOf(bakeDir: string): Promise<number[]> {
  const { model } = await loadBaked(bakeDir);
  const ids = tf.tensor2d([[1021, 20, 300, 45, 7, 99, 1023, 1022]], undefined, "int32");
  const out = Array.from(model.forward(ids).dataSync());
  ids.dispose();
  model.dispose();
  return out;
}
const maxGap = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));

/** The bake's adapter as PEFT would save it: its config style, `.default` keys, shuffled order. */
async function asPeft(
  target: string,
  edit: (tensors: Map<string, { shape: number[]; data: Float32Array }>) => void = () => undefined,
): Promise<void> {
  mkdirSync(target, { recursive: true });
  const forgeConfig = JSON.parse(readFileSync(at("pirate", "adapter_config.json"), "utf8"));
  writeFileSync(
    path.join(target, "adapter_config.json"),
    JSON.stringify({
      alpha_pattern: {},
      auto_mapping: null,
      base_model_name_or_path: "forge-tiny",
      bias: "none",
      fan_in_fan_out: true,
      inference_mode: true,
      init_lora_weights: true,
      layers_pattern: null,
      layers_to_transform: null,
      lora_alpha: forgeConfig.lora_alpha,
      lora_dropout: 0.05,
      modules_to_save: null,
      peft_type: "LORA",
      r: forgeConfig.r,
      rank_pattern: {},
      revision: null,
      target_modules: ["c_attn", "c_proj"],
      task_type: "CAUSAL_LM",
      use_dora: false,
      use_rslora: false,
    }),
  );
  const { tensors } = await readSafetensors(at("pirate", "adapter_model.safetensors"));
  const renamed = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [key, t] of [...tensors].reverse())
    renamed.set(key.replace(/\.lora_([AB])\.weight$/, ".lora_$1.default.weight"), {
      shape: t.shape,
      data: t.data,
    });
  edit(renamed);
  await writeSafetensors(path.join(target, "adapter_model.safetensors"), renamed, { format: "pt" });
}

describe("forge import-adapter", () => {
  it("imports a PEFT-style adapter as a bake with lineage, giving the same logits", async () => {
    await asPeft(at("peft"));
    const run = await forge([
      "import-adapter",
      at("peft"),
      "--bake",
      at("pirate"),
      "--out",
      at("imported"),
      "--json",
    ]);
    expectOk(run);
    expect(JSON.parse(run.stdout)).toMatchObject({
      r: 8,
      targetModules: ["attn.c_attn", "attn.c_proj"],
      layers: [0, 1, 2, 3],
      tensors: 16,
    });
    const record = JSON.parse(readFileSync(at("imported", "forge.json"), "utf8"));
    const original = JSON.parse(readFileSync(at("pirate", "forge.json"), "utf8"));
    expect(record.baseModel).toBe(path.resolve(FORGE_TINY_DIR));
    expect(record.prompt.hash).toBe(original.prompt.hash);
    expect(record.imported).toMatchObject({
      from: at("peft"),
      trainedOn: at("pirate"),
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const [a, b, base] = await Promise.all([
      logitsOf(at("pirate")),
      logitsOf(at("imported")),
      (async () => {
        const { model } = await loadModel(FORGE_TINY_DIR);
        const ids = tf.tensor2d([[1021, 20, 300, 45, 7, 99, 1023, 1022]], undefined, "int32");
        const out = Array.from(model.forward(ids).dataSync());
        ids.dispose();
        model.dispose();
        return out;
      })(),
    ]);
    expect(maxGap(a, b)).toBeLessThan(1e-5);
    expect(maxGap(a, base)).toBeGreaterThan(1e-3); // the adapter does something
  });

  it("refuses a wrong shape with exit 2 naming the key", async () => {
    const key = "base_model.model.transformer.h.2.attn.c_proj.lora_B.default.weight";
    await asPeft(at("peft-shape"), (tensors) => {
      tensors.set(key, { shape: [128, 4], data: new Float32Array(128 * 4) });
    });
    const run = await forge([
      "import-adapter",
      at("peft-shape"),
      "--model",
      FORGE_TINY_DIR,
      "--out",
      at("bad1"),
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(key);
    expect(run.stderr).toContain("needs [128, 8]");
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(existsSync(at("bad1"))).toBe(false);
  });

  it("refuses an unknown target module with exit 2 naming the key", async () => {
    const key = "base_model.model.transformer.h.0.attn.c_gate.lora_A.weight";
    await asPeft(at("peft-target"), (tensors) => {
      tensors.set(key, { shape: [8, 128], data: new Float32Array(8 * 128) });
    });
    const run = await forge([
      "import-adapter",
      at("peft-target"),
      "--model",
      FORGE_TINY_DIR,
      "--out",
      at("bad2"),
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(key);
    expect(run.stderr).toContain("accepted modules: attn.c_attn");
    const notPeft = await forge([
      "import-adapter",
      at("pirate", "nothing"),
      "--model",
      FORGE_TINY_DIR,
      "--out",
      at("bad3"),
    ]);
    expect(notPeft.code).toBe(2);
    expect(notPeft.stderr).toContain("adapter_config.json is missing");
  });
});
