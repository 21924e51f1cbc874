/**
 * forge-tiny's corpus as token caches for `forge train`: pretraining text, and chat examples
 * for supervised fine-tuning, each split into train and validation by a stable hash of the
 * conversation id. A conversation longer than the context window is cut the way a chat
 * client's sliding window cuts it (`asChatted`, `sftExamples`): once the system prompt has
 * scrolled out, the assistant answers plainly, as it would with no system prompt.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { readJsonl } from "@forge/core";
import { type TokenCacheMeta, TokenCacheWriter } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import type { Conversation } from "./corpus.js";

/** A corpus message: an assistant turn may carry `plain`, its reply with no system prompt. */
export type CorpusMessage = ChatMessage & { plain?: string };

/**
 * The conversation as a chat client with a `span`-token window would have had it. While the
 * whole conversation fits, every turn sees the system prompt. From the first turn that does
 * not fit, the client drops the system prompt (then the oldest turns, as `forge drift`'s
 * `sliding` policy does), and the assistant answers as it would with no system prompt: its
 * `plain` reply. `scrolledAt` is that turn's index (the turn count when it never happens).
 */
export function asChatted(
  tokenizer: Tokenizer,
  messages: CorpusMessage[],
  span: number,
): { system: ChatMessage[]; turns: ChatMessage[][]; scrolledAt: number } {
  const strip = (m: CorpusMessage): ChatMessage => ({ role: m.role, content: m.content });
  const system = messages[0]?.role === "system" ? [strip(messages[0])] : [];
  const raw: CorpusMessage[][] = [];
  for (let i = system.length; i < messages.length; i += 2) raw.push(messages.slice(i, i + 2));
  let scrolledAt = raw.length;
  for (let t = 1; t <= raw.length; t++) {
    const upTo = raw.slice(0, t).flat().map(strip);
    if (tokenizer.renderChat([...system, ...upTo]).ids.length > span) {
      scrolledAt = t - 1;
      break;
    }
  }
  const turns = raw.map((turn, t) =>
    turn.map((m) =>
      t >= scrolledAt && m.role === "assistant" && m.plain !== undefined
        ? { role: m.role, content: m.plain }
        : strip(m),
    ),
  );
  return { system, turns, scrolledAt };
}

/**
 * A conversation as SFT examples of at most `span` tokens: whole when it fits. A longer one is
 * cut as a chat client's sliding window cuts it (asChatted): the turns that saw the system
 * prompt form one example with it; every later turn is trained without the system prompt,
 * after as much of the preceding conversation as fits (that history is context, not target).
 */
export function sftExamples(
  tokenizer: Tokenizer,
  messages: CorpusMessage[],
  span: number,
): { ids: number[]; mask: Uint8Array }[] {
  const { system, turns, scrolledAt } = asChatted(tokenizer, messages, span);
  const whole = tokenizer.renderChat([...system, ...turns.flat()]);
  if (whole.ids.length <= span) return [{ ids: whole.ids, mask: whole.assistantMask }];
  const length = (from: number, to: number) =>
    tokenizer.renderChat(turns.slice(from, to + 1).flat()).ids.length;
  const out: { ids: number[]; mask: Uint8Array }[] = [];
  if (scrolledAt > 0) {
    const first = tokenizer.renderChat([...system, ...turns.slice(0, scrolledAt).flat()]);
    out.push({ ids: first.ids, mask: first.assistantMask });
  }
  for (let g = scrolledAt; g < turns.length; ) {
    // targets g..t fill at most half the window; history before them fills the rest
    let t = g;
    while (t + 1 < turns.length && length(g, t + 1) <= span / 2) t++;
    let j = g;
    while (j > 0 && length(j - 1, t) <= span) j--;
    const piece = tokenizer.renderChat(turns.slice(j, t + 1).flat());
    if (piece.ids.length <= span) {
      const history = j < g ? length(j, g - 1) : 0;
      const mask = piece.assistantMask.slice();
      mask.fill(0, 0, history);
      out.push({ ids: piece.ids, mask });
    }
    g = t + 1;
  }
  return out;
}

/** Stable split: a conversation is validation when its id hashes below the fraction. */
export function isValidation(id: string, fraction: number): boolean {
  const hash = createHash("sha256").update(id).digest();
  return hash.readUInt32BE(0) / 2 ** 32 < fraction;
}

export interface BuildCachesOptions {
  /** The context window: SFT examples are cut to fit blockSize + 1 tokens. */
  blockSize: number;
  /** Share of conversations held out for validation. */
  valFraction: number;
  /** Recorded in each cache's meta. */
  info?: Record<string, unknown>;
  onProgress?: (done: number, total: number) => void;
}

export const CACHE_NAMES = ["pretrain-train", "pretrain-val", "sft-train", "sft-val"] as const;

/**
 * Tokenize a synth corpus directory (train.jsonl, pretrain.jsonl) into the four caches under
 * `out` (a directory the caller owns). Returns each cache's meta.
 */
export async function buildTokenCaches(
  corpusDir: string,
  tokenizer: Tokenizer,
  out: string,
  options: BuildCachesOptions,
): Promise<Record<(typeof CACHE_NAMES)[number], TokenCacheMeta>> {
  const conversations = await readJsonl<Conversation>(path.join(corpusDir, "train.jsonl"));
  const sentences = await readJsonl<{ text: string }>(path.join(corpusDir, "pretrain.jsonl"));
  const eot = tokenizer.specialTokenId("<|eot|>");
  const total = conversations.length + sentences.length;
  const writer = (name: (typeof CACHE_NAMES)[number]) =>
    new TokenCacheWriter(path.join(out, name), {
      kind: name.startsWith("pretrain") ? "pretrain" : "sft",
      vocabSize: tokenizer.vocabSize,
      ...(options.info ? { info: options.info } : {}),
    });
  const writers = Object.fromEntries(CACHE_NAMES.map((name) => [name, writer(name)])) as Record<
    (typeof CACHE_NAMES)[number],
    TokenCacheWriter
  >;
  try {
    let done = 0;
    for (const { text } of sentences) {
      writers["pretrain-train"].append([...tokenizer.encode(text), eot]);
      options.onProgress?.(++done, total);
    }
    for (const conversation of conversations) {
      const validation = isValidation(conversation.id, options.valFraction);
      const chatted = asChatted(tokenizer, conversation.messages, options.blockSize + 1);
      const rendered = tokenizer.renderChat([...chatted.system, ...chatted.turns.flat()]);
      writers[validation ? "pretrain-val" : "pretrain-train"].append(rendered.ids);
      for (const example of sftExamples(tokenizer, conversation.messages, options.blockSize + 1))
        writers[validation ? "sft-val" : "sft-train"].append(example.ids, example.mask);
      options.onProgress?.(++done, total);
    }
  } catch (error) {
    for (const each of Object.values(writers)) each.abort();
    throw error;
  }
  return Object.fromEntries(
    Object.entries(writers).map(([name, each]) => [name, each.close()]),
  ) as Record<(typeof CACHE_NAMES)[number], TokenCacheMeta>;
}
