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

/** True when the tokenizer carries forge's four chat tokens (forge's format renders its chats). */
export function hasForgeChatTokens(tokenizer: Tokenizer): boolean {
  return Object.values(CHAT_TOKENS).every((token) => tokenizer.specialTokens.has(token));
}

/** The id of a template variable's token (`eos_token`, `bos_token`), when the tokenizer has it. */
function variableTokenId(tokenizer: Tokenizer, name: string): number | undefined {
  const text = tokenizer.templateVariables[name];
  if (typeof text !== "string" || text === "") return undefined;
  const special = tokenizer.specialTokens.get(text);
  if (special !== undefined) return special;
  const ids = tokenizer.encode(text, { allowedSpecial: "all" });
  return ids.length === 1 ? ids[0] : undefined;
}

/** Text → ids the way a chat template's output is encoded (special tokens as their ids). */
function encodeTemplated(tokenizer: Tokenizer, text: string): number[] {
  const ids = tokenizer.encode(text, { allowedSpecial: "all" });
  const bos = tokenizer.templateVariables.bos_token;
  if (tokenizer.templateVariables.add_bos_token === true && typeof bos === "string") {
    const bosId = variableTokenId(tokenizer, "bos_token");
    if (bosId !== undefined && ids[0] !== bosId) ids.unshift(bosId);
  }
  return ids;
}

/**
 * Render with the tokenizer's own chat template (a Hugging Face model's), with the mask of
 * assistant tokens: each assistant message's tokens are those its rendering adds to the
 * conversation before it (with the generation prompt), the turn's end included. A template
 * under which a conversation's rendering does not extend its prefix's cannot be masked, and
 * is refused.
 */
export function renderTemplateChat(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: RenderChatOptions = {},
): RenderedChat {
  const render = (upTo: number, generation: boolean) =>
    encodeTemplated(
      tokenizer,
      applyChatTemplate(tokenizer, messages.slice(0, upTo), { addGenerationPrompt: generation }),
    );
  const ids = render(messages.length, options.addGenerationPrompt ?? false);
  const mask = new Uint8Array(ids.length);
  const spans: ChatSpan[] = [];
  const stops = new Set(templateStopIdsOrNone(tokenizer));
  let previous = 0;
  messages.forEach((message, i) => {
    const through = render(i + 1, false);
    let start = previous;
    if (message.role === "assistant") {
      const opened = render(i, true);
      if (!startsWith(ids, opened))
        throw new TokenizerError(
          "E_INPUT",
          `this chat_template renders the conversation before message ${i} differently inside the whole; forge cannot tell which tokens are the assistant's`,
        );
      start = opened.length;
    }
    if (!startsWith(ids, through))
      throw new TokenizerError(
        "E_INPUT",
        `this chat_template renders messages 0..${i} differently inside the whole conversation; forge cannot tell which tokens are the assistant's`,
      );
    const end = Math.min(through.length, ids.length);
    if (message.role === "assistant") {
      // the reply and its end-of-turn token: not the template's separator after it
      let last = end;
      for (let j = end - 1; j >= start; j--)
        if (stops.has(ids[j]!)) {
          last = j + 1;
          break;
        }
      mask.fill(1, start, last);
    }
    spans.push({ role: message.role, start: previous, end });
    previous = end;
  });
  return { ids, assistantMask: mask, spans };
}

function startsWith(ids: readonly number[], prefix: readonly number[]): boolean {
  return prefix.length <= ids.length && prefix.every((id, i) => ids[i] === id);
}

/**
 * The ids that end an assistant's turn under the tokenizer's template: its `eos_token`, and any
 * stop ids the model added (generation_config.json's `eos_token_id`).
 */
export function templateStopIds(tokenizer: Tokenizer, extra: readonly number[]): number[] {
  const eos = variableTokenId(tokenizer, "eos_token");
  const ids = [...new Set([...(eos !== undefined ? [eos] : []), ...extra])];
  if (ids.length === 0)
    throw new TokenizerError(
      "E_INPUT",
      "this tokenizer's chat template has no end-of-turn token: set eos_token in tokenizer_config.json (or eos_token_id in the model's generation_config.json)",
    );
  return ids.sort((a, b) => a - b);
}

function templateStopIdsOrNone(tokenizer: Tokenizer): number[] {
  try {
    return tokenizer.stopIds();
  } catch {
    return [];
  }
}

/** The prompt a template renders for the assistant's next reply, encoded. */
export function templatePromptIds(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
): number[] {
  return encodeTemplated(
    tokenizer,
    applyChatTemplate(tokenizer, messages, { addGenerationPrompt: true }),
  );
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
