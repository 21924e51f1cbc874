/**
 * Chat rendering: messages → ids with role tokens, plus the mask of assistant tokens that SFT
 * and baking losses are computed on.
 *
 * forge's format, per message: a role token (`<|sys|>`, `<|usr|>`, `<|asst|>`), the content,
 * and `<|eot|>`. With `addGenerationPrompt`, a final `<|asst|>` opens the reply. The
 * assistant mask covers each assistant message's content and its `<|eot|>` (the model learns
 * to stop), not the role token (it is given, not predicted).
 */
import { Template } from "@huggingface/jinja";
import { TokenizerError } from "./errors.js";
import type { Tokenizer } from "./tokenizer.js";

/** The chat role tokens every forge-trained tokenizer carries, in id order. */
export const CHAT_TOKENS = {
  system: "<|sys|>",
  user: "<|usr|>",
  assistant: "<|asst|>",
  endOfTurn: "<|eot|>",
} as const;

/**
 * Quiet-STaR's thought markers. A tokenizer that carries them (as special tokens) lets an
 * assistant turn hold thoughts: `renderChat` encodes these two in assistant content as their
 * ids (the model learns to think), and nothing else.
 */
export const THOUGHT_TOKENS = {
  start: "<|startofthought|>",
  end: "<|endofthought|>",
} as const;

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface RenderChatOptions {
  /** Append the assistant role token so the model writes the next reply (default false). */
  addGenerationPrompt?: boolean;
}

export interface ChatSpan {
  role: ChatRole;
  /** First id of the message (its role token). */
  start: number;
  /** One past its last id (its `<|eot|>`). */
  end: number;
}

export interface RenderedChat {
  ids: number[];
  /** 1 where the id is assistant output the model should learn to produce, else 0. */
  assistantMask: Uint8Array;
  /** Where each message sits in `ids`. */
  spans: ChatSpan[];
}

/** The same format as a Jinja chat template, written to `tokenizer_config.json`. */
export const FORGE_CHAT_TEMPLATE =
  "{% for message in messages %}" +
  "{% if message['role'] == 'system' %}<|sys|>{% elif message['role'] == 'user' %}<|usr|>" +
  "{% elif message['role'] == 'assistant' %}<|asst|>" +
  "{% else %}{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}" +
  "{{ message['content'] }}<|eot|>{% endfor %}" +
  "{% if add_generation_prompt %}<|asst|>{% endif %}";

const ROLES: readonly ChatRole[] = ["system", "user", "assistant"];

function roleIds(tokenizer: Tokenizer): Record<ChatRole | "endOfTurn", number> {
  const missing = Object.values(CHAT_TOKENS).filter((token) => !tokenizer.specialTokens.has(token));
  if (missing.length > 0) {
    throw new TokenizerError(
      "E_INPUT",
      `this tokenizer lacks the chat tokens ${missing.join(", ")}; train one with @forge/tokenizer, or use applyChatTemplate with the model's own template`,
    );
  }
  return {
    system: tokenizer.specialTokenId(CHAT_TOKENS.system),
    user: tokenizer.specialTokenId(CHAT_TOKENS.user),
    assistant: tokenizer.specialTokenId(CHAT_TOKENS.assistant),
    endOfTurn: tokenizer.specialTokenId(CHAT_TOKENS.endOfTurn),
  };
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new TokenizerError("E_INPUT", "messages must be an array");
  messages.forEach((message, i) => {
    if (typeof message !== "object" || message === null) {
      throw new TokenizerError("E_INPUT", `messages[${i}] must be an object with role and content`);
    }
    if (!ROLES.includes(message.role)) {
      throw new TokenizerError(
        "E_INPUT",
        `messages[${i}].role is ${JSON.stringify(message.role)}; accepted: ${ROLES.join(", ")}`,
      );
    }
    if (typeof message.content !== "string") {
      throw new TokenizerError("E_INPUT", `messages[${i}].content must be a string`);
    }
  });
}

/** The thought markers this tokenizer carries (both, or none). */
function thoughtMarkers(tokenizer: Tokenizer): string[] {
  const markers = [THOUGHT_TOKENS.start, THOUGHT_TOKENS.end];
  return markers.every((token) => tokenizer.specialTokens.has(token)) ? markers : [];
}

/**
 * Render messages with forge's chat format. Special-token text inside a message's content is
 * encoded as plain text: content can never inject a role token. The one exception is an
 * assistant's thoughts: when the tokenizer carries both THOUGHT_TOKENS, their text in
 * assistant content encodes as their ids (a trained thought is `<|startofthought|>…<|endofthought|>`).
 */
export function renderChat(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: RenderChatOptions = {},
): RenderedChat {
  checkMessages(messages);
  const roles = roleIds(tokenizer);
  const ids: number[] = [];
  const mask: number[] = [];
  const spans: ChatSpan[] = [];
  const thoughts = thoughtMarkers(tokenizer);
  for (const message of messages) {
    const start = ids.length;
    ids.push(roles[message.role]);
    mask.push(0);
    const content =
      message.role === "assistant" && thoughts.length > 0
        ? tokenizer.encode(message.content, {
            allowedSpecial: thoughts,
            disallowedSpecial: "none",
          })
        : tokenizer.encode(message.content, { disallowedSpecial: "none" });
    const learn = message.role === "assistant" ? 1 : 0;
    for (const id of content) {
      ids.push(id);
      mask.push(learn);
    }
    ids.push(roles.endOfTurn);
    mask.push(learn);
    spans.push({ role: message.role, start, end: ids.length });
  }
  if (options.addGenerationPrompt) {
    ids.push(roles.assistant);
    mask.push(0);
  }
  return { ids, assistantMask: Uint8Array.from(mask), spans };
}

/**
 * Ids a sampler should never produce: every special token except end-of-turn (role tokens
 * would let the model write the user's turn).
 */
export function bannedIds(tokenizer: Tokenizer): number[] {
  return [...tokenizer.specialTokens]
    .filter(([content]) => content !== CHAT_TOKENS.endOfTurn)
    .map(([, id]) => id)
    .sort((a, b) => a - b);
}

const templates = new Map<string, Template>();

/**
 * Render messages with a Jinja chat template (Hugging Face's `chat_template`), by default the
 * tokenizer's own. Returns the text; encode it with `allowedSpecial: "all"`.
 */
export function applyChatTemplate(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: RenderChatOptions & { template?: string; variables?: Record<string, unknown> } = {},
): string {
  checkMessages(messages);
  const source = options.template ?? tokenizer.chatTemplate;
  if (source === undefined) {
    throw new TokenizerError(
      "E_INPUT",
      "this tokenizer has no chat_template; pass options.template",
    );
  }
  let template = templates.get(source);
  if (!template) {
    try {
      template = new Template(source);
    } catch (error) {
      throw new TokenizerError(
        "E_FORMAT",
        `chat_template does not parse: ${(error as Error).message}`,
        { cause: error },
      );
    }
    templates.set(source, template);
  }
  try {
    return template.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? false,
      ...tokenizer.templateVariables,
      ...options.variables,
    });
  } catch (error) {
    throw new TokenizerError(
      "E_INPUT",
      `chat_template failed to render: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
