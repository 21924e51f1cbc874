/**
 * A byte-level BPE tokenizer: pre-tokenize, merge, look up special tokens, decode.
 */
import { BytePairEncoder, byteIdsOf, MAX_VOCAB } from "./bpe.js";
import { bytesToToken, utf8Encode } from "./bytes.js";
import {
  applyChatTemplate,
  bannedIds,
  CHAT_TOKENS,
  type ChatMessage,
  hasForgeChatTokens,
  type RenderChatOptions,
  type RenderedChat,
  renderChat,
  renderTemplateChat,
  templatePromptIds,
  templateStopIds,
} from "./chat.js";
import { TokenizerError } from "./errors.js";
import { makeSplitter, type PatternName, resolvePattern, type Splitter } from "./pretokenize.js";

/** Which special tokens in the text are encoded as special ids, and which are an error. */
export type SpecialTokenPolicy = "all" | "none" | Iterable<string>;

export interface EncodeOptions {
  /**
   * Special tokens that, appearing in the text, encode as their special id.
   * `"all"`, `"none"` (default) or a set of token strings. As in tiktoken.
   */
  allowedSpecial?: SpecialTokenPolicy;
  /**
   * Special tokens that, appearing in the text and not allowed, raise an error.
   * `"all"` (default: every special token not allowed), `"none"` (encode them as plain text)
   * or a set of token strings. As in tiktoken.
   */
  disallowedSpecial?: SpecialTokenPolicy;
}

/** A Unicode normal form applied to text before encoding. */
export type NormalForm = "NFC" | "NFD" | "NFKC" | "NFKD";

export interface TokenizerSpec {
  /** Bytes of each ordinary token, by id; leave special ids undefined. */
  tokens: ReadonlyArray<Uint8Array | undefined>;
  /** Merges in rank order, as pairs of token ids; each pair's concatenation must be a token. */
  merges: ReadonlyArray<readonly [number, number]>;
  /** Special tokens: content → id. */
  specialTokens?: ReadonlyMap<string, number> | Record<string, number>;
  /** Pre-tokenizer pattern: "gpt2" (default), "gpt4" or a regex source (compiled with `gu`). */
  pattern?: PatternName | string;
  /**
   * Look a whole piece up in the vocabulary before merging (Hugging Face's `ignore_merges`,
   * tiktoken's behaviour). Default false: pure merges.
   */
  ignoreMerges?: boolean;
  /** Unicode normalisation applied to text before encoding (default none). */
  normalizer?: NormalForm;
  /** A Jinja chat template (Hugging Face's `chat_template`). */
  chatTemplate?: string;
  /** Variables the chat template sees besides messages (`bos_token`, `eos_token`, …). */
  templateVariables?: Record<string, unknown>;
  /** Where the data came from, for error messages. */
  source?: string;
}

/** Cache entries beyond this many are dropped (the cache restarts empty). */
const CACHE_LIMIT = 200_000;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class Tokenizer {
  /** One past the largest id. */
  readonly vocabSize: number;
  /** The pre-tokenizer pattern source. */
  readonly pattern: string;
  readonly ignoreMerges: boolean;
  readonly normalizer: NormalForm | undefined;
  readonly chatTemplate: string | undefined;
  readonly templateVariables: Readonly<Record<string, unknown>>;
  /** Special token content → id. */
  readonly specialTokens: ReadonlyMap<string, number>;
  /** Merges in rank order as id pairs. */
  readonly merges: ReadonlyArray<readonly [number, number]>;

  private readonly tokenBytes: (Uint8Array | undefined)[];
  private readonly specialById = new Map<number, string>();
  private readonly bpe: BytePairEncoder;
  private readonly split: Splitter;
  private readonly specialRegex: RegExp | undefined;
  private readonly wholePieces = new Map<string, number>();
  private cache = new Map<string, number | number[]>();
  private scratch = new Uint8Array(1024);

  constructor(spec: TokenizerSpec) {
    const source = spec.source ?? "tokenizer";
    const specials =
      spec.specialTokens instanceof Map
        ? new Map(spec.specialTokens)
        : new Map(Object.entries(spec.specialTokens ?? {}));
    const size = Math.max(spec.tokens.length, ...[...specials.values()].map((id) => id + 1));
    if (size > MAX_VOCAB) {
      throw new TokenizerError(
        "E_INPUT",
        `${source}: ${size} ids exceed the supported ${MAX_VOCAB}`,
      );
    }
    this.tokenBytes = Array.from({ length: size }, (_, id) => spec.tokens[id]);
    const encoder = new TextEncoder();
    for (const [content, id] of specials) {
      if (!Number.isInteger(id) || id < 0) {
        throw new TokenizerError(
          "E_FORMAT",
          `${source}: special token ${JSON.stringify(content)} has invalid id ${id}`,
        );
      }
      if (content.length === 0)
        throw new TokenizerError("E_FORMAT", `${source}: a special token is empty`);
      if (spec.tokens[id] !== undefined) {
        throw new TokenizerError(
          "E_FORMAT",
          `${source}: special token ${JSON.stringify(content)} has id ${id}, which is also an ordinary token`,
        );
      }
      this.specialById.set(id, content);
      this.tokenBytes[id] = encoder.encode(content);
    }
    this.specialTokens = specials;
    this.vocabSize = size;

    const byBytes = new Map<string, number>();
    spec.tokens.forEach((bytes, id) => {
      if (bytes) {
        const key = bytesToToken(bytes);
        if (!byBytes.has(key)) byBytes.set(key, id);
      }
    });
    const merges = spec.merges.map(([left, right], rank) => {
      const a = spec.tokens[left];
      const b = spec.tokens[right];
      if (!a || !b) {
        throw new TokenizerError(
          "E_FORMAT",
          `${source}: merge ${rank} names id ${a ? right : left}, which is not an ordinary token`,
        );
      }
      const merged = byBytes.get(bytesToToken(a) + bytesToToken(b));
      if (merged === undefined) {
        throw new TokenizerError(
          "E_FORMAT",
          `${source}: merge ${rank} (${JSON.stringify(bytesToToken(a))} + ${JSON.stringify(bytesToToken(b))}) produces a token that is not in the vocabulary`,
        );
      }
      return [left, right, merged] as const;
    });
    this.merges = spec.merges.map(([l, r]) => [l, r] as const);
    this.bpe = new BytePairEncoder(merges, byteIdsOf(spec.tokens, source));

    this.pattern = resolvePattern(spec.pattern);
    try {
      this.split = makeSplitter(this.pattern);
    } catch (error) {
      throw new TokenizerError(
        "E_INPUT",
        `${source}: pattern is not a valid regular expression: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    this.ignoreMerges = spec.ignoreMerges ?? false;
    this.normalizer = spec.normalizer;
    this.chatTemplate = spec.chatTemplate;
    this.templateVariables = { ...spec.templateVariables };
    if (this.ignoreMerges) {
      const decoder = new TextDecoder("utf-8", { fatal: true });
      spec.tokens.forEach((bytes, id) => {
        if (!bytes) return;
        try {
          this.wholePieces.set(decoder.decode(bytes), id);
        } catch {
          // not valid UTF-8 on its own: a piece of text can never equal it
        }
      });
    }
    this.specialRegex =
      specials.size > 0
        ? new RegExp(
            [...specials.keys()]
              .sort((x, y) => y.length - x.length)
              .map(escapeRegExp)
              .join("|"),
            "g",
          )
        : undefined;
  }

  /** Ids of the 256 single-byte tokens, by byte value. */
  get byteIds(): Int32Array {
    return this.bpe.byteIds;
  }

  /** The id of a special token; throws if this tokenizer has no such token. */
  specialTokenId(content: string): number {
    const id = this.specialTokens.get(content);
    if (id === undefined) {
      const known = [...this.specialTokens.keys()].join(", ") || "none";
      throw new TokenizerError(
        "E_INPUT",
        `no special token ${JSON.stringify(content)}; this tokenizer has: ${known}`,
      );
    }
    return id;
  }

  /** Bytes of a token (special tokens: their UTF-8 content). */
  tokenBytesOf(id: number): Uint8Array {
    const bytes = Number.isInteger(id) ? this.tokenBytes[id] : undefined;
    if (!bytes)
      throw new TokenizerError(
        "E_UNKNOWN_ID",
        `id ${id} is not in the vocabulary (0..${this.vocabSize - 1})`,
      );
    return bytes;
  }

  /** A token's printable form: GPT-2's byte stand-ins ("Ġthe"), or a special token's content. */
  idToToken(id: number): string {
    const special = this.specialById.get(id);
    return special ?? bytesToToken(this.tokenBytesOf(id));
  }

  isSpecial(id: number): boolean {
    return this.specialById.has(id);
  }

  private policySet(
    policy: SpecialTokenPolicy | undefined,
    fallback: "all" | "none",
    name: string,
  ): Set<string> {
    const value = policy ?? fallback;
    if (value === "all") return new Set(this.specialTokens.keys());
    if (value === "none") return new Set();
    if (typeof value === "string") {
      throw new TokenizerError(
        "E_INPUT",
        `${name} must be "all", "none" or a set of special tokens; got ${JSON.stringify(value)}`,
      );
    }
    const set = new Set(value);
    for (const token of set) {
      if (!this.specialTokens.has(token)) {
        throw new TokenizerError(
          "E_INPUT",
          `${name} names ${JSON.stringify(token)}, which is not a special token of this tokenizer`,
        );
      }
    }
    return set;
  }

  /**
   * Text → ids. Special token text is handled as tiktoken does: allowed ones become their
   * special id, disallowed ones (by default: all that are not allowed) raise an error naming
   * the token and its offset, the rest are plain text.
   */
  encode(input: string, options: EncodeOptions = {}): number[] {
    const text = this.normalizer ? input.normalize(this.normalizer) : input;
    const out: number[] = [];
    if (
      this.specialRegex === undefined ||
      (options.allowedSpecial === undefined && options.disallowedSpecial === "none")
    ) {
      this.encodeOrdinary(text, 0, text.length, out);
      return out;
    }
    const allowed = this.policySet(options.allowedSpecial, "none", "allowedSpecial");
    const disallowed = this.policySet(options.disallowedSpecial, "all", "disallowedSpecial");
    for (const token of allowed) disallowed.delete(token);
    let start = 0;
    const regex = this.specialRegex;
    regex.lastIndex = 0;
    for (let match = regex.exec(text); match !== null; match = regex.exec(text)) {
      const token = match[0];
      if (allowed.has(token)) {
        this.encodeOrdinary(text, start, match.index, out);
        out.push(this.specialTokens.get(token)!);
        start = match.index + token.length;
      } else if (disallowed.has(token)) {
        throw new TokenizerError(
          "E_SPECIAL_TOKEN",
          `text contains the special token ${JSON.stringify(token)} at offset ${match.index}; ` +
            `pass allowedSpecial (to encode it as a special id) or disallowedSpecial: "none" (to encode it as text)`,
        );
      }
    }
    this.encodeOrdinary(text, start, text.length, out);
    return out;
  }

  /** Encode several texts (same options for each). */
  encodeBatch(texts: readonly string[], options: EncodeOptions = {}): number[][] {
    return texts.map((text) => this.encode(text, options));
  }

  /** Encode `text[start, end)` with no special-token handling, appending to `out`. */
  private encodeOrdinary(text: string, start: number, end: number, out: number[]): void {
    const whole = this.wholePieces;
    const useWhole = this.ignoreMerges;
    const sink = (s: number, e: number) => {
      const piece = text.slice(s, e);
      if (useWhole) {
        const id = whole.get(piece);
        if (id !== undefined) {
          out.push(id);
          return;
        }
      }
      const hit = this.cache.get(piece);
      if (hit !== undefined) {
        if (typeof hit === "number") out.push(hit);
        else for (const id of hit) out.push(id);
        return;
      }
      this.encodePiece(text, s, e, piece, out);
    };
    this.split(text, start, end, sink);
  }

  private encodePiece(
    text: string,
    start: number,
    end: number,
    piece: string,
    out: number[],
  ): void {
    const need = (end - start) * 3;
    if (this.scratch.length < need) this.scratch = new Uint8Array(need * 2);
    const length = utf8Encode(text, start, end, this.scratch);
    const ids: number[] = [];
    this.bpe.encode(this.scratch, length, ids);
    if (this.cache.size >= CACHE_LIMIT) this.cache = new Map();
    this.cache.set(piece, ids.length === 1 ? ids[0]! : ids);
    for (const id of ids) out.push(id);
  }

  /** Forget cached piece encodings (benchmarks use it to measure a cold cache). */
  clearCache(): void {
    this.cache = new Map();
  }

  /** Ids → bytes. Throws on an id outside the vocabulary, naming it and its position. */
  decodeBytes(ids: ArrayLike<number>): Uint8Array {
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const bytes = Number.isInteger(id) ? this.tokenBytes[id] : undefined;
      if (!bytes) {
        throw new TokenizerError(
          "E_UNKNOWN_ID",
          `id ${id} at position ${i} is not in the vocabulary (0..${this.vocabSize - 1})`,
        );
      }
      total += bytes.length;
    }
    const out = new Uint8Array(total);
    let offset = 0;
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.tokenBytes[ids[i]!]!;
      out.set(bytes, offset);
      offset += bytes.length;
    }
    return out;
  }

  /**
   * Ids → text. Byte sequences that are not valid UTF-8 decode to U+FFFD; never throws for them.
   * `skipSpecial` leaves special tokens (end of turn, chat markers) out of the text.
   */
  decode(ids: ArrayLike<number>, options: { skipSpecial?: boolean } = {}): string {
    if (!options.skipSpecial) return lenientDecoder.decode(this.decodeBytes(ids));
    const special = new Set(this.specialTokens.values());
    return lenientDecoder.decode(
      this.decodeBytes(Array.from(ids).filter((id) => !special.has(id))),
    );
  }

  /**
   * The ids a model reads before writing the assistant's next reply to `messages`: the
   * conversation rendered in the chat format with the assistant's turn opened. The one place a
   * conversation becomes a model's input.
   */
  promptIds(messages: readonly ChatMessage[]): number[] {
    if (this.usesTemplate) return templatePromptIds(this, messages);
    return this.renderChat(messages, { addGenerationPrompt: true }).ids;
  }

  /**
   * Whether chats render with the model's own chat template: a tokenizer without forge's chat
   * tokens that has a `chat_template` (a Hugging Face model's). forge-tiny's tokens keep
   * forge's format.
   */
  get usesTemplate(): boolean {
    return this.chatTemplate !== undefined && !hasForgeChatTokens(this);
  }

  /** The ids that end an assistant's turn: generation stops at them. */
  stopIds(): number[] {
    if (this.usesTemplate) return templateStopIds(this, this.extraStopIds);
    return [this.specialTokenId(CHAT_TOKENS.endOfTurn)];
  }

  /** Messages → ids (forge's format, or the model's template), with the assistant-token mask. */
  renderChat(messages: readonly ChatMessage[], options: RenderChatOptions = {}): RenderedChat {
    if (this.usesTemplate) return renderTemplateChat(this, messages, options);
    return renderChat(this, messages, options);
  }

  /** Special ids a sampler should never produce (all but the end of a turn). */
  bannedIds(): number[] {
    if (!this.usesTemplate) return bannedIds(this);
    const stops = new Set(this.stopIds());
    return [...this.specialTokens.values()].filter((id) => !stops.has(id)).sort((a, b) => a - b);
  }

  /** Stop ids beyond the template's eos_token (a model's generation_config.json eos_token_id). */
  readonly extraStopIds: readonly number[] = [];

  /** This tokenizer, also stopping at `ids` (shares everything else). */
  withStopIds(ids: readonly number[]): Tokenizer {
    const copy = Object.create(Tokenizer.prototype) as Tokenizer;
    Object.assign(copy, this, { extraStopIds: [...new Set([...this.extraStopIds, ...ids])] });
    return copy;
  }

  /** Render with the Jinja chat template (the tokenizer's own unless one is given). */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: RenderChatOptions & { template?: string; variables?: Record<string, unknown> } = {},
  ): string {
    return applyChatTemplate(this, messages, options);
  }

  /** This tokenizer with another chat template and template variables (shares everything else). */
  withChatTemplate(
    template: string | undefined,
    variables: Record<string, unknown> = {},
  ): Tokenizer {
    const copy = Object.create(Tokenizer.prototype) as Tokenizer;
    Object.assign(copy, this, { chatTemplate: template, templateVariables: { ...variables } });
    return copy;
  }

  /**
   * This tokenizer with more special tokens, given ids from `firstId` (default `vocabSize`) up
   * in order — the way a model grows its vocabulary: new rows after the last (a model with
   * more rows than the tokenizer has ids passes its own size). Everything else is shared:
   * ordinary text encodes to the same ids as before. A token it already has, an empty one or
   * one listed twice is an error naming it.
   */
  withSpecialTokens(contents: readonly string[], firstId = this.vocabSize): Tokenizer {
    if (!Number.isInteger(firstId) || firstId < this.vocabSize)
      throw new TokenizerError(
        "E_INPUT",
        `new special tokens start at id ${firstId}; ids below ${this.vocabSize} are taken`,
      );
    const seen = new Set<string>();
    for (const content of contents) {
      if (typeof content !== "string" || content.length === 0)
        throw new TokenizerError("E_INPUT", "a special token to add is empty");
      if (this.specialTokens.has(content) || seen.has(content))
        throw new TokenizerError(
          "E_INPUT",
          `the special token ${JSON.stringify(content)} is ${seen.has(content) ? "listed twice" : `already in this tokenizer (id ${this.specialTokens.get(content)})`}`,
        );
      seen.add(content);
    }
    const specials = new Map(this.specialTokens);
    for (const [i, content] of contents.entries()) specials.set(content, firstId + i);
    return new Tokenizer({
      tokens: Array.from({ length: this.vocabSize }, (_, id) =>
        this.specialById.has(id) ? undefined : this.tokenBytes[id],
      ),
      merges: this.merges,
      specialTokens: specials,
      pattern: this.pattern,
      ignoreMerges: this.ignoreMerges,
      ...(this.normalizer ? { normalizer: this.normalizer } : {}),
      ...(this.chatTemplate !== undefined ? { chatTemplate: this.chatTemplate } : {}),
      templateVariables: { ...this.templateVariables },
    });
  }

  /** How many ids `text` encodes to (special tokens allowed). */
  countTokens(text: string): number {
    return this.encode(text, { allowedSpecial: "all" }).length;
  }
}

const lenientDecoder = new TextDecoder("utf-8", { fatal: false });
