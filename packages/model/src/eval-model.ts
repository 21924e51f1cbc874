/**
 * A forge model as something to evaluate: the object @forge/eval's runner takes. It matches
 * eval's `EvalModel` interface by shape (this package does not import @forge/eval, and eval
 * imports no TensorFlow):
 *
 *   name, id                        what results carry; `id` is `modelHash(model)`
 *   generate(conversations, opts)   one batched `generate()` call, stopped at `<|eot|>`
 *   logprobs(requests)              log P(each token of the reply, then `<|eot|>` | conversation)
 */
import { createHash } from "node:crypto";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { modelTensors } from "./checkpoint.js";
import { ModelError } from "./errors.js";
import { generate } from "./generate.js";
import type { GPT } from "./gpt.js";

/** How to sample one call's replies (@forge/eval's `GenerateOptions`). */
export interface EvalGenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topK?: number;
  topP?: number;
  /** One stream for the call: the replies depend on the seed and on the whole batch. */
  seed: number;
}

/** A forge model and its tokenizer, shaped as @forge/eval's `EvalModel`. */
export interface LocalEvalModel {
  readonly name: string;
  /**
   * `modelHash(model)`, or the id given. Computed each time it is read, so a change of the
   * weights (an adapter's strength set for half-baking, a merge) changes it.
   */
  readonly id: string;
  readonly model: GPT;
  readonly tokenizer: Tokenizer;
  /** One reply per conversation, in one batch: end of turn removed, decoded, trimmed. */
  generate(
    conversations: readonly ChatMessage[][],
    options: EvalGenerateOptions,
  ): Promise<string[]>;
  /**
   * Per request, the log-probability of each token of `target` as the assistant's reply, then
   * of the `<|eot|>` that ends it. A conversation and reply longer than the context window is
   * an error (exit 2): nothing is cropped.
   */
  logprobs(requests: readonly { messages: ChatMessage[]; target: string }[]): Promise<number[][]>;
}

/**
 * sha256 of the model's configuration and its effective weights (an attached adapter merged at
 * its current strength), in parameter-name order: two models with the same hash compute the
 * same function.
 */
export function modelHash(model: GPT): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify(model.config));
  for (const [name, t] of [...modelTensors(model, { mergeAdapter: true })].sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    hash.update(name);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hash.digest("hex");
}

/** The model's replies, as forge's chat format gives them to a user. */
function replies(
  model: GPT,
  tokenizer: Tokenizer,
  conversations: readonly ChatMessage[][],
  options: EvalGenerateOptions,
): string[] {
  if (conversations.length === 0) return [];
  const stops = tokenizer.stopIds();
  const prompts = conversations.map((messages) => tokenizer.promptIds(messages));
  const { tokens } = generate(model, prompts, {
    maxNewTokens: options.maxNewTokens,
    temperature: options.temperature,
    ...(options.topK !== undefined ? { topK: options.topK } : {}),
    ...(options.topP !== undefined ? { topP: options.topP } : {}),
    seed: options.seed,
    stopIds: stops,
    bannedIds: tokenizer.bannedIds(),
  });
  return tokens.map((ids) =>
    tokenizer.decode(stops.includes(ids.at(-1)!) ? ids.slice(0, -1) : ids).trim(),
  );
}

/** log P(token | everything before it) for each token of the target (one forward pass each). */
function targetLogprobs(
  model: GPT,
  tokenizer: Tokenizer,
  requests: readonly { messages: ChatMessage[]; target: string }[],
): number[][] {
  const vocab = model.config.vocabSize;
  const eot = tokenizer.stopIds()[0]!; // the turn's end: forge's <|eot|>, or the template's eos
  return requests.map(({ messages, target }, r) => {
    const prompt = tokenizer.promptIds(messages);
    const reply = [...tokenizer.encode(target, { disallowedSpecial: "none" }), eot];
    const ids = [...prompt, ...reply.slice(0, -1)];
    if (ids.length > model.config.blockSize)
      throw new ModelError(
        "E_INPUT",
        `logprobs request ${r}: the conversation and its reply (${prompt.length} + ${reply.length} tokens, the last only predicted) do not fit the model's context window of ${model.config.blockSize} tokens`,
      );
    const logits = tf.tidy(() =>
      tf.logSoftmax(model.run(tf.tensor2d([ids], undefined, "int32")).logits),
    );
    const values = logits.dataSync();
    logits.dispose();
    return reply.map((token, i) => values[(prompt.length - 1 + i) * vocab + token]!);
  });
}

/**
 * `model` and `tokenizer` as @forge/eval's `EvalModel`: pass the result to `runTasks`. The
 * model is not copied: dispose of it as before (`evaluated.model.dispose()`).
 */
export function evalModel(
  model: GPT,
  tokenizer: Tokenizer,
  options: { name: string; id?: string },
): LocalEvalModel {
  const fixedId = options.id;
  return {
    name: options.name,
    get id() {
      return fixedId ?? modelHash(model);
    },
    model,
    tokenizer,
    generate: async (conversations, generation) =>
      replies(model, tokenizer, conversations, generation),
    logprobs: async (requests) => targetLogprobs(model, tokenizer, requests),
  };
}
