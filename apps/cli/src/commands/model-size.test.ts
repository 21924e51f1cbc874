/**
 * What a command says about the model it loads, before loading it: a model larger than
 * forge-tiny announces its parameters and memory on stderr (stdout stays clean for --json), and
 * one that cannot fit the wasm backend's 4 GiB memory is refused with exit 2 — from its headers,
 * before a byte is allocated — naming the model, its float32 size and the limit.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeSparseCheckpoint } from "@forge/model/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";
import { writeTinyLlama } from "../testing/llama.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-model-size-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const huge = path.join(dir, "llama-3.2-1b-shaped");
let wide: string;

beforeAll(async () => {
  // Llama-3.2-1B's shapes, stored BF16 in a sparse file: 2.5 GB on paper, no disk behind it
  writeSparseCheckpoint(huge, {
    architecture: "llama",
    vocabSize: 128_256,
    blockSize: 2048,
    nLayer: 16,
    nHead: 32,
    nEmbd: 2048,
    dropout: 0,
    bias: false,
    layerNormEpsilon: 1e-5,
    llama: {
      nKvHead: 8,
      headDim: 64,
      intermediateSize: 8192,
      ropeTheta: 500_000,
      ropeScaling: null,
      tieWordEmbeddings: true,
      qkvBias: false,
      oBias: false,
      mlpBias: false,
    },
  });
  // larger than forge-tiny (2.4 M parameters), small enough to run here
  ({ modelDir: wide } = await writeTinyLlama(dir, { name: "wide", nEmbd: 256, nLayer: 4 }));
});

describe("a model's size, before it is loaded", () => {
  it("a model larger than forge-tiny is announced on stderr; --json stdout stays clean", async () => {
    const run = await forge(
      ["generate", wide, "--user", "What is 2 plus 3?", "--max-new-tokens", "2", "--json"],
      { FORGE_BACKEND: "wasm" },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(typeof JSON.parse(run.stdout).reply).toBe("string");
    expect(run.stderr).toMatch(
      new RegExp(
        `^loading ${wide.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: 2\\.4 M parameters, 9\\.\\d MB as float32 \\(stored: 9\\.\\d MB F32 in 1 file\\)\\n$`,
      ),
    );
  });

  it("forge-tiny loads silently", async () => {
    const run = await forge(
      ["generate", "forge-tiny", "--user", "hi", "--max-new-tokens", "2", "--json"],
      {
        FORGE_BACKEND: "wasm",
      },
    );
    expect(run.code).toBe(0);
    expect(run.stderr).toBe("");
  });

  it("a model too large for wasm is refused with exit 2 by every kind of command, before its weights are read", async () => {
    const commands = [
      ["generate", huge, "--user", "hi"],
      ["bake", "--model", huge, "--prompt", "You are a pirate.", "--out", path.join(dir, "bake")],
      ["eval", "run", huge, "--tasks", "forge-tiny", "--out", path.join(dir, "eval.json")],
    ];
    for (const args of commands) {
      const run = await forge(args, { FORGE_BACKEND: "wasm" });
      expect(run.code, `${args[0]}: ${run.stderr}`).toBe(2);
      const lines = run.stderr.trim().split("\n");
      expect(lines[0]).toBe(
        `loading ${huge}: 1.24 B parameters, 4.94 GB as float32 (stored: 2.47 GB BF16 in 1 file)`,
      );
      expect(lines.at(-1)).toContain(
        `${huge}: the model has 1.24 B parameters, 4.94 GB as float32; the wasm backend's memory is limited to 4 GiB`,
      );
      expect(lines.at(-1)).toContain("Install @tensorflow/tfjs-node");
      expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });
});
