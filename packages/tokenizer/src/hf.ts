/**
 * Hugging Face formats: `tokenizer.json` (in and out) and GPT-2's `vocab.json` + `merges.txt`
 * (in). Functions here take parsed data; `io.ts` does the file work.
 *
 * Supported `tokenizer.json` components — what byte-level BPE tokenizers (GPT-2, RoBERTa,
 * GPT-NeoX, Llama 3, Qwen) use: model `BPE` (merges as "a b" strings or ["a", "b"] pairs,
 * `ignore_merges`), pre-tokenizer `ByteLevel`, `Split` (regex, isolated) or a `Sequence` of
 * them, decoder `ByteLevel`, normalizer none or a Unicode normal form, `added_tokens`.
 * Anything else is refused with an error naming the field.
 */
import { bytesToToken, tokenToBytes } from "./bytes.js";
import { TokenizerError } from "./errors.js";
import { GPT2_PATTERN, GPT4_PATTERN } from "./pretokenize.js";
import { type NormalForm, Tokenizer } from "./tokenizer.js";

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(source: string, field: string, problem: string): never {
  throw new TokenizerError("E_FORMAT", `${source}: ${field} ${problem}`);
}

/**
 * Rust-regex spellings that JavaScript lacks, rewritten: the case-insensitive contraction group
 * `(?i:'s|'t|…)` becomes explicit classes, and possessive quantifiers (`?+`, `++`, `*+`, `}+`)
 * become greedy ones. Escapes and character classes are respected.
 */
export function toJavaScriptRegex(source: string): string {
  const text = source.replace(
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)",
    "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])",
  );
  let out = "";
  let inClass = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "\\") {
      // an escape, including a whole \p{…} / \P{…} property
      const property = /^\\[pP]\{[^}]*\}/.exec(text.slice(i));
      const escaped = property ? property[0] : text.slice(i, i + 2);
      out += escaped;
      i += escaped.length - 1;
      continue;
    }
    if (inClass) {
      if (ch === "]") inClass = false;
      out += ch;
      continue;
    }
    if (ch === "[") {
      inClass = true;
      out += ch;
      continue;
    }
    const counted = ch === "{" ? /^\{\d+(,\d*)?\}/.exec(text.slice(i)) : null;
    const quantifier = counted
      ? counted[0]
      : ch === "?" || ch === "+" || ch === "*"
        ? ch
        : undefined;
    if (quantifier === undefined) {
      out += ch;
      continue;
    }
    out += quantifier;
    i += quantifier.length - 1;
    if (text[i + 1] === "+") i++; // possessive → greedy
  }
  return out;
}

function splitPattern(pre: Json, source: string, field: string): string {
  const pattern = pre.pattern;
  if (!isObject(pattern))
    fail(source, `${field}.pattern`, 'must be {"Regex": "…"} or {"String": "…"}');
  const behavior = pre.behavior ?? "Isolated";
  if (behavior !== "Isolated")
    fail(
      source,
      `${field}.behavior`,
      `is ${JSON.stringify(behavior)}; only "Isolated" is supported`,
    );
  if (pre.invert === true) fail(source, `${field}.invert`, "is true; only false is supported");
  if (typeof pattern.String === "string")
    return pattern.String.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  if (typeof pattern.Regex !== "string")
    fail(source, `${field}.pattern`, 'must be {"Regex": "…"} or {"String": "…"}');
  const js = toJavaScriptRegex(pattern.Regex);
  try {
    new RegExp(js, "gu");
  } catch (error) {
    fail(
      source,
      `${field}.pattern.Regex`,
      `cannot be compiled as a JavaScript regex: ${(error as Error).message}`,
    );
  }
  return js;
}

/** The split pattern a pre-tokenizer section describes. */
function patternOf(pre: unknown, source: string, field = "pre_tokenizer"): string {
  if (pre === null || pre === undefined)
    fail(source, field, "is missing; a byte-level BPE needs ByteLevel (or Split + ByteLevel)");
  if (!isObject(pre)) fail(source, field, "must be an object");
  switch (pre.type) {
    case "ByteLevel":
      if (pre.add_prefix_space === true)
        fail(source, `${field}.add_prefix_space`, "is true; only false is supported");
      return pre.use_regex === false ? "" : GPT2_PATTERN;
    case "Split":
      return splitPattern(pre, source, field);
    case "Sequence": {
      if (!Array.isArray(pre.pretokenizers))
        fail(source, `${field}.pretokenizers`, "must be an array");
      const patterns = pre.pretokenizers.map((p, i) =>
        patternOf(p, source, `${field}.pretokenizers[${i}]`),
      );
      const splits = patterns.filter((p) => p !== "");
      if (splits.length > 1)
        fail(
          source,
          `${field}.pretokenizers`,
          "has more than one splitting step; one is supported",
        );
      return splits[0] ?? "";
    }
    default:
      fail(
        source,
        `${field}.type`,
        `is ${JSON.stringify(pre.type)}; accepted: "ByteLevel", "Split", "Sequence" (byte-level BPE pre-tokenizers)`,
      );
  }
}

const NORMAL_FORMS = new Set(["NFC", "NFD", "NFKC", "NFKD"]);

function checkNormalizer(normalizer: unknown, source: string): NormalForm | undefined {
  if (normalizer === null || normalizer === undefined) return undefined;
  if (!isObject(normalizer)) fail(source, "normalizer", "must be an object or null");
  if (typeof normalizer.type === "string" && NORMAL_FORMS.has(normalizer.type))
    return normalizer.type as NormalForm;
  fail(
    source,
    "normalizer.type",
    `is ${JSON.stringify(normalizer.type)}; accepted: null, "NFC", "NFD", "NFKC", "NFKD"`,
  );
}

function mergePair(entry: unknown, index: number, source: string): [string, string] {
  if (typeof entry === "string") {
    const space = entry.indexOf(" ");
    if (space <= 0 || space === entry.length - 1 || entry.indexOf(" ", space + 1) !== -1) {
      fail(source, `model.merges[${index}]`, `is ${JSON.stringify(entry)}; expected "left right"`);
    }
    return [entry.slice(0, space), entry.slice(space + 1)];
  }
  if (
    Array.isArray(entry) &&
    entry.length === 2 &&
    typeof entry[0] === "string" &&
    typeof entry[1] === "string"
  ) {
    return [entry[0], entry[1]];
  }
  fail(
    source,
    `model.merges[${index}]`,
    `is ${JSON.stringify(entry)}; expected "left right" or ["left", "right"]`,
  );
}

export interface VocabAndMerges {
  vocab: Record<string, unknown>;
  normalizer?: NormalForm;
  merges: unknown[];
  specialTokens: Map<string, number>;
  pattern: string;
  ignoreMerges: boolean;
  source: string;
}

/** Vocabulary (printable token → id) + merges → Tokenizer, validating both. */
export function fromVocabAndMerges(input: VocabAndMerges): Tokenizer {
  const { vocab, merges, specialTokens, source } = input;
  const specialIds = new Set(specialTokens.values());
  const tokens: (Uint8Array | undefined)[] = [];
  const idOf = new Map<string, number>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) {
      fail(
        source,
        `model.vocab[${JSON.stringify(token)}]`,
        `is ${JSON.stringify(id)}; ids are non-negative integers`,
      );
    }
    const index = id as number;
    if (specialIds.has(index)) continue; // the added token owns this id
    const bytes = tokenToBytes(token);
    if (!bytes) {
      fail(
        source,
        `model.vocab[${JSON.stringify(token)}]`,
        "contains characters outside the byte-level alphabet",
      );
    }
    if (tokens[index] !== undefined) fail(source, "model.vocab", `uses id ${index} twice`);
    tokens[index] = bytes;
    idOf.set(token, index);
  }
  const pairs = merges.map((entry, i) => {
    const [left, right] = mergePair(entry, i, source);
    const a = idOf.get(left);
    const b = idOf.get(right);
    if (a === undefined)
      fail(
        source,
        `model.merges[${i}]`,
        `names ${JSON.stringify(left)}, which is not in model.vocab`,
      );
    if (b === undefined)
      fail(
        source,
        `model.merges[${i}]`,
        `names ${JSON.stringify(right)}, which is not in model.vocab`,
      );
    return [a, b] as const;
  });
  return new Tokenizer({
    tokens,
    merges: pairs,
    specialTokens,
    pattern: input.pattern,
    ignoreMerges: input.ignoreMerges,
    source,
    ...(input.normalizer ? { normalizer: input.normalizer } : {}),
  });
}

/** Tokenizer types Hugging Face's library has and forge does not read, with what uses them. */
const KNOWN_UNSUPPORTED: Record<string, string> = {
  Unigram: "SentencePiece Unigram, as T5, ALBERT and XLNet use",
  WordPiece: "as BERT uses",
  WordLevel: "a word-level vocabulary",
};

/** Parse a `tokenizer.json` object. `source` names the file in error messages. */
export function fromTokenizerJson(json: unknown, source = "tokenizer.json"): Tokenizer {
  if (!isObject(json)) fail(source, "(root)", "must be a JSON object");
  const model = json.model;
  if (model === undefined || model === null) fail(source, "model", "is missing");
  if (!isObject(model)) fail(source, "model", "must be an object");
  if (model.type !== "BPE") {
    const known = KNOWN_UNSUPPORTED[String(model.type)];
    fail(
      source,
      "model.type",
      `is ${JSON.stringify(model.type)}${known ? ` (${known})` : ""}; accepted: "BPE" (byte-level BPE, as GPT-2, SmolLM, Qwen2 and Llama 3 use) — forge does not support this tokenizer type, so it will not tokenize with it`,
    );
  }
  if (!isObject(model.vocab))
    fail(source, "model.vocab", "must be an object mapping tokens to ids");
  if (!Array.isArray(model.merges)) fail(source, "model.merges", "must be an array");
  if (model.byte_fallback === true)
    fail(
      source,
      "model.byte_fallback",
      "is true: a SentencePiece-style BPE (Llama 2, TinyLlama, Mistral), which forge does not support; only byte-level BPE is (GPT-2, SmolLM, Qwen2, Llama 3)",
    );
  if (
    typeof model.continuing_subword_prefix === "string" &&
    model.continuing_subword_prefix !== ""
  ) {
    fail(source, "model.continuing_subword_prefix", "must be empty for byte-level BPE");
  }
  if (typeof model.end_of_word_suffix === "string" && model.end_of_word_suffix !== "") {
    fail(source, "model.end_of_word_suffix", "must be empty for byte-level BPE");
  }
  const normalizer = checkNormalizer(json.normalizer, source);
  const decoder = json.decoder;
  if (
    decoder !== null &&
    decoder !== undefined &&
    !(isObject(decoder) && decoder.type === "ByteLevel")
  ) {
    fail(
      source,
      "decoder.type",
      `is ${JSON.stringify(isObject(decoder) ? decoder.type : decoder)}; accepted: "ByteLevel"`,
    );
  }
  const specialTokens = new Map<string, number>();
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) fail(source, "added_tokens", "must be an array");
  added.forEach((token, i) => {
    if (!isObject(token) || typeof token.content !== "string" || !Number.isInteger(token.id)) {
      fail(source, `added_tokens[${i}]`, 'must have a string "content" and an integer "id"');
    }
    specialTokens.set(token.content, token.id as number);
  });
  return fromVocabAndMerges({
    vocab: model.vocab,
    merges: model.merges,
    specialTokens,
    pattern: patternOf(json.pre_tokenizer, source),
    ignoreMerges: model.ignore_merges === true,
    source,
    ...(normalizer ? { normalizer } : {}),
  });
}

/** Parse GPT-2's `merges.txt` (a `#version` header line, then "left right" per line). */
export function parseMergesTxt(text: string, source = "merges.txt"): string[] {
  const lines = text.split(/\r?\n/);
  const merges: string[] = [];
  lines.forEach((line, i) => {
    if (line === "" || (i === 0 && line.startsWith("#version"))) return;
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw new TokenizerError(
        "E_FORMAT",
        `${source}:${i + 1}: ${JSON.stringify(line)} is not "left right"`,
      );
    }
    merges.push(line);
  });
  return merges;
}

/** GPT-2's `vocab.json` + `merges.txt`; special tokens default to any `<|…|>` entries. */
export function fromVocabJson(
  vocab: unknown,
  mergesTxt: string,
  options: { specialTokens?: readonly string[]; source?: string } = {},
): Tokenizer {
  const source = options.source ?? "vocab.json";
  if (!isObject(vocab)) fail(source, "(root)", "must be an object mapping tokens to ids");
  const specials =
    options.specialTokens ?? Object.keys(vocab).filter((t) => /^<\|[^|]+\|>$/.test(t));
  const specialTokens = new Map<string, number>();
  for (const token of specials) {
    const id = vocab[token];
    if (!Number.isInteger(id))
      fail(
        source,
        JSON.stringify(token),
        "is named as a special token but is not in the vocabulary",
      );
    specialTokens.set(token, id as number);
  }
  return fromVocabAndMerges({
    vocab,
    merges: parseMergesTxt(mergesTxt, source.replace(/vocab\.json$/, "merges.txt")),
    specialTokens,
    pattern: GPT2_PATTERN,
    ignoreMerges: false,
    source,
  });
}

function preTokenizerJson(pattern: string): Json {
  if (pattern === GPT2_PATTERN) {
    return { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  }
  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: false,
  };
  if (pattern === "") return byteLevel;
  const regex = pattern === GPT4_PATTERN ? GPT4_PATTERN : pattern;
  return {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
      byteLevel,
    ],
  };
}

/** Serialise to Hugging Face's `tokenizer.json` layout. */
export function toTokenizerJson(tokenizer: Tokenizer): Json {
  const vocab: Record<string, number> = {};
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    if (!tokenizer.isSpecial(id)) {
      try {
        vocab[tokenizer.idToToken(id)] = id;
      } catch {
        // a hole in the id space
      }
    }
  }
  const merges = tokenizer.merges.map(([left, right]) => [
    bytesToToken(tokenizer.tokenBytesOf(left)),
    bytesToToken(tokenizer.tokenBytesOf(right)),
  ]);
  const added = [...tokenizer.specialTokens].map(([content, id]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added.sort((a, b) => a.id - b.id),
    normalizer: tokenizer.normalizer ? { type: tokenizer.normalizer } : null,
    pre_tokenizer: preTokenizerJson(tokenizer.pattern),
    post_processor: {
      type: "ByteLevel",
      add_prefix_space: true,
      trim_offsets: false,
      use_regex: true,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: tokenizer.ignoreMerges,
      vocab,
      merges,
    },
  };
}
