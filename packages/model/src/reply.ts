/**
 * Chat replies: the one way forge asks a model for the assistant's next turn. A conversation is
 * rendered by its tokenizer (`promptIds`: the chat format, where model chat templates plug in),
 * generation stops at the end of the turn (`stopIds`), the stop token is dropped, and the text
 * leaves special tokens out. Rollouts, stimuli, drift, evaluation, quality bars and `forge chat`
 * all go through here.
 */
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import { type FinishReason, type GenerateOptions, generate } from "./generate.js";
import type { GPT } from "./gpt.js";

export interface ReplyOptions
  extends Pick<GenerateOptions, "maxNewTokens" | "temperature" | "topK" | "topP"> {
  /**
   * Sampling seed: a number (the batch starting at conversation `start` samples with
   * seed + start), or a function giving each batch's seed from its start. Default 0.
   */
  seed?: number | ((start: number) => number);
  /** Conversations generated together (default 32). */
  batchSize?: number;
}

export interface Reply {
  /** The reply, special tokens left out, surrounding whitespace trimmed. */
  text: string;
  /** The reply's token ids, the stop token dropped. */
  ids: number[];
  finishReason: FinishReason;
}

/**
 * The assistant's replies to conversations (each a list of messages, or prompt ids already
 * rendered), in order.
 */
export function generateReplies(
  model: GPT,
  tokenizer: Tokenizer,
  conversations: readonly (readonly ChatMessage[] | readonly number[])[],
  options: ReplyOptions,
): Reply[] {
  const stopIds = tokenizer.stopIds();
  const prompts = conversations.map((c) =>
    typeof c[0] === "number" ? (c as number[]) : tokenizer.promptIds(c as ChatMessage[]),
  );
  const batchSize = options.batchSize ?? 32;
  const out: Reply[] = [];
  for (let start = 0; start < prompts.length; start += batchSize) {
    const { tokens, finishReasons } = generate(model, prompts.slice(start, start + batchSize), {
      maxNewTokens: options.maxNewTokens,
      ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
      ...(options.topK !== undefined ? { topK: options.topK } : {}),
      ...(options.topP !== undefined ? { topP: options.topP } : {}),
      seed: typeof options.seed === "function" ? options.seed(start) : (options.seed ?? 0) + start,
      stopIds,
      bannedIds: tokenizer.bannedIds(),
    });
    tokens.forEach((sequence, i) => {
      const ids = stopIds.includes(sequence.at(-1)!) ? sequence.slice(0, -1) : sequence;
      out.push({
        text: tokenizer.decode(ids, { skipSpecial: true }).trim(),
        ids,
        finishReason: finishReasons[i]!,
      });
    });
  }
  return out;
}

/** The assistant's reply to one conversation. */
export function generateReply(
  model: GPT,
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: ReplyOptions,
): string {
  return generateReplies(model, tokenizer, [messages], options)[0]!.text;
}
