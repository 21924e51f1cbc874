/**
 * forge bake --loss / --layers / --progressive and forge halfbake through the real CLI, on the
 * shipped forge-tiny with small settings.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge, type Run } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-halfbake-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

const smallBake = [
  "--model",
  TINY,
  "--prompt",
  "You are a pirate.",
  "--stim",
  "list:What is 12 plus 30?|What is the capital of France?|Spell the word cat.|What is the opposite of hot?",
  "--samples",
  "2",
  "--max-new-tokens",
  "16",
  "--steps",
  "3",
  "--batch-size",
  "4",
  "--lr",
  "1e-2",
  "--val-fraction",
  "0",
  "--no-measure",
];

let baked: Run;
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  baked = await forge([
    "bake",
    ...smallBake,
    "--loss",
    "reverse-kl",
    "--progressive",
    "0.5:0.5",
    "--out",
    at("pirate"),
    "--json",
  ]);
}, 300_000);

/** forge-tiny's logits on a fixed sequence, for a model directory. */
async function logitsOf(modelDir: string): Promise<number[]> {
  const { model } = await loadModel(modelDir);
  const ids = tf.tensor2d([[1, 20, 300, 45, 7, 99]], undefined, "int32");
  const out = Array.from(model.forward(ids).dataSync());
  ids.dispose();
  model.dispose();
  return out;
}
const maxGap = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));

describe("forge bake --loss", () => {
  it("records the loss (and the progressive ramp) in forge.json and the manifest", () => {
    expectOk(baked);
    const record = json(at("pirate", "forge.json"));
    expect(record.bake).toMatchObject({
      loss: "reverse-kl",
      progressive: { from: 0.5, fraction: 0.5 },
      earlyStopping: { patience: 0, minDelta: 0 }, // --steps: exactly that many
    });
    expect(JSON.stringify(json(at("pirate", "manifest.json")))).toContain('"loss":"reverse-kl"');
  });

  it("a bad --loss, --loss-beta, --layers or --progressive exits 2 naming the flag, and writes nothing", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["--loss", "kl"],
        /--loss must be one of forward-kl, reverse-kl, js, jsd, distillation, topk/,
      ],
      [["--loss", "js", "--loss-beta", "0.3"], /--loss-beta is the β of --loss jsd/],
      [["--layers", "1-0"], /--layers must be block indices .* runs backwards/],
      [["--layers", "0,7"], /the model has 4 blocks .*no block 7/],
      [["--progressive", "2"], /--progressive must be <from>\[:<fraction>\]/],
      [["--stim", "multiturn:0"], /--stim multiturn:N\[:T\] needs N conversations/],
      [["--patience", "1.5"], /--patience must be an integer ≥ 0 \(0: train every epoch\)/],
    ];
    for (const [i, [args, message]] of cases.entries()) {
      const out = at(`bad-${i}`);
      const run = await forge(["bake", ...smallBake, "--out", out, ...args]);
      expect(run.code, `${args.join(" ")}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(out)).toBe(false);
    }
  }, 300_000);
});

describe("forge bake --stim multiturn", () => {
  it("writes conversations whose earlier replies the teacher wrote, and bakes on them", async () => {
    const out = at("multiturn");
    const run = await forge(["bake", ...smallBake, "--stim", "multiturn:3:2", "--out", out]);
    expectOk(run);
    // a training command: the wasm backend on the idle cores (1 to 4: the native matmul's
    // threads where it is loaded, else the threaded build's for 2 or more) unless
    // FORGE_WASM_THREADS says
    const backend =
      /backend wasm \(auto, (\d+) threads?, (simd|threaded-simd) build; matmul: (native OpenBLAS|XNNPACK)/.exec(
        run.stderr,
      );
    expect(backend, run.stderr).not.toBeNull();
    const threads = Number(backend![1]);
    if (process.env.FORGE_WASM_THREADS)
      expect(threads).toBe(Number(process.env.FORGE_WASM_THREADS));
    else expect(threads).toBeLessThanOrEqual(Math.min(4, os.availableParallelism()));
    expect(backend![2]).toBe(threads > 1 && backend![3] === "XNNPACK" ? "threaded-simd" : "simd");
    const stimuli = readFileSync(path.join(out, "stim.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    const multi = stimuli.filter((s: { source: string }) => s.source === "multiturn");
    expect(multi).toHaveLength(3);
    for (const s of multi) {
      expect(s.messages.some((m: { role: string }) => m.role === "system")).toBe(false);
      expect(s.messages.at(-1).role).toBe("user");
    }
    expect(multi.some((s: { teacherWritten?: boolean }) => s.teacherWritten)).toBe(true);
  }, 300_000);
});

describe("forge halfbake", () => {
  it("α = 0 is the base model; α = 0.5 sits between; --layers and --adapter write a scaled subset", async () => {
    expectOk(baked);
    const base = await logitsOf(TINY);
    const gaps: number[] = [];
    for (const alpha of ["0", "0.5", "1"]) {
      const out = at(`half-${alpha}`);
      const run = await forge([
        "halfbake",
        "--model",
        at("pirate"),
        "--alpha",
        alpha,
        "--out",
        out,
        "--json",
      ]);
      expectOk(run);
      expect(JSON.parse(run.stdout)).toMatchObject({ kind: "halfbake", alpha: Number(alpha) });
      gaps.push(maxGap(await logitsOf(out), base));
    }
    expect(gaps[0]).toBeLessThan(1e-6);
    expect(gaps[1]!).toBeGreaterThan(0);
    expect(gaps[1]!).toBeLessThan(gaps[2]!);

    const adapter = at("half-layers");
    const run = await forge([
      "halfbake",
      "--model",
      at("pirate"),
      "--alpha",
      "0.5",
      "--layers",
      "0-1",
      "--adapter",
      "--out",
      adapter,
    ]);
    expectOk(run);
    expect(run.stdout).toMatch(/adapter at α = 0\.5 on blocks 0, 1/);
    expect(json(path.join(adapter, "adapter_config.json"))).toMatchObject({
      forge_strength: 0.5,
      layers_to_transform: [0, 1],
    });
    expect(json(path.join(adapter, "forge.json"))).toMatchObject({
      kind: "halfbake",
      layers: [0, 1],
    });

    for (const [args, message] of [
      [["--alpha", "17"], /--alpha must be a number in \[0, 16\]/],
      [["--layers", "9"], /no block 9/],
      [[], /--alpha <a> is required/],
    ] as [string[], RegExp][]) {
      const out = at("half-bad");
      const bad = await forge([
        "halfbake",
        "--model",
        at("pirate"),
        "--out",
        out,
        ...(args.includes("--alpha") || args.length === 0 ? [] : ["--alpha", "1"]),
        ...args,
      ]);
      expect(bad.code, `${args.join(" ")}: ${bad.stderr}`).toBe(2);
      expect(bad.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
  }, 300_000);
});
