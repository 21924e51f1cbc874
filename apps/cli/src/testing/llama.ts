/**
 * Test helper: a tiny random Llama-architecture model with a tokenizer whose special tokens are
 * a model's own (<|im_start|>, <|im_end|>, …, in place of forge's four chat tokens) and a ChatML
 * chat template that inserts a default system prompt — the shape of a hub model such as
 * SmolLM2-Instruct or Qwen2.5-Instruct, small enough for CLI tests. The replies are noise; the
 * plumbing is real.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { GPT, initBackend, saveModel } from "@forge/model";
import { loadTokenizer, saveTokenizer, type Tokenizer, train } from "@forge/tokenizer";

export const CHATML =
  "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}" +
  "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
  "{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

export interface TinyLlamaOptions {
  /** Width (default 64) and depth (default 2); wider models announce their load plan. */
  nEmbd?: number;
  nLayer?: number;
  intermediateSize?: number;
}

/** Write the tokenizer and the model into `dir`/tokenizer and `dir`/`name`; returns the model's directory and tokenizer. */
export async function writeTinyLlama(
  dir: string,
  options: TinyLlamaOptions & { name?: string } = {},
): Promise<{ modelDir: string; tokenizer: Tokenizer }> {
  await initBackend();
  const corpus = Array.from(
    { length: 300 },
    (_, i) => `User asks ${i}: what is ${i % 17} plus ${i % 5}? It is ${(i % 17) + (i % 5)}. Ahoy!`,
  );
  const staging = path.join(dir, `${options.name ?? "model"}-tokenizer`);
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
  if (!tokenizer.usesTemplate) throw new Error("the fixture tokenizer lost its chat template");
  const nEmbd = options.nEmbd ?? 64;
  const model = GPT.create(
    {
      architecture: "llama",
      vocabSize: tokenizer.vocabSize,
      blockSize: 256,
      nLayer: options.nLayer ?? 2,
      nHead: 4,
      nEmbd,
      dropout: 0,
      bias: false,
      layerNormEpsilon: 1e-5,
      llama: {
        nKvHead: 2,
        headDim: nEmbd / 4,
        intermediateSize: options.intermediateSize ?? 2 * nEmbd,
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
  const modelDir = path.join(dir, options.name ?? "model");
  await saveModel(model, modelDir, {
    tokenizer,
    generationConfig: { eos_token_id: tokenizer.stopIds()[0], temperature: 0.8 },
  });
  model.dispose();
  return { modelDir, tokenizer };
}
