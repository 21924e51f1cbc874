/**
 * A Llama-architecture model with its own ChatML chat template (default system prompt
 * included), through the real CLI: generate renders with the template and stops at its
 * <|im_end|>; a bake runs end to end, its loss falls and the KL to the prompted model drops.
 * The model is random and tiny (built here), so the replies are noise; the plumbing is real.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GPT, initBackend, saveModel } from "@forge/model";
import { loadTokenizer, saveTokenizer, train } from "@forge/tokenizer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-llama-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, "model");

const CHATML =
  "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}" +
  "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
  "{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

beforeAll(async () => {
  await initBackend();
  const corpus = Array.from(
    { length: 300 },
    (_, i) => `User asks ${i}: what is ${i % 17} plus ${i % 5}? It is ${(i % 17) + (i % 5)}. Ahoy!`,
  );
  const staging = path.join(dir, "tokenizer");
  await saveTokenizer(train(corpus, { vocabSize: 400 }), staging);
  // a model's own special tokens in place of forge's four chat tokens (same ids)
  const file = path.join(staging, "tokenizer.json");
  const json = JSON.parse(readFileSync(file, "utf8"));
  const rename: Record<string, string> = {
    "<|sys|>": "<|endoftext|>",
    "<|usr|>": "<|im_start|>",
    "<|asst|>": "<|im_end|>",
    "<|eot|>": "<|pad|>",
  };
  for (const token of json.added_tokens) token.content = rename[token.content] ?? token.content;
  writeFileSync(file, JSON.stringify(json));
  writeFileSync(
    path.join(staging, "tokenizer_config.json"),
    JSON.stringify({ chat_template: CHATML, eos_token: "<|im_end|>", pad_token: "<|pad|>" }),
  );
  const tokenizer = await loadTokenizer(staging);
  expect(tokenizer.usesTemplate).toBe(true);
  const model = GPT.create(
    {
      architecture: "llama",
      vocabSize: tokenizer.vocabSize,
      blockSize: 256,
      nLayer: 2,
      nHead: 4,
      nEmbd: 64,
      dropout: 0,
      bias: false,
      layerNormEpsilon: 1e-5,
      llama: {
        nKvHead: 2,
        headDim: 16,
        intermediateSize: 128,
        ropeTheta: 10_000,
        ropeScaling: null,
        tieWordEmbeddings: true,
        qkvBias: false,
        oBias: false,
        mlpBias: false,
      },
    },
    { seed: 3 },
  );
  await saveModel(model, modelDir, {
    tokenizer,
    generationConfig: { eos_token_id: tokenizer.stopIds()[0], temperature: 0.8 },
  });
  model.dispose();
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
