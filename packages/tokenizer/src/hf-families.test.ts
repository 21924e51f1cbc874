/**
 * The loader on tokenizer.json files shaped exactly like Llama-3's (Split regex + ByteLevel with
 * use_regex false, ignore_merges, <|begin_of_text|> and friends) and Qwen2's (NFC, its own
 * Split regex), held to the ids Hugging Face's `tokenizers` library gives for the same files —
 * fixtures and reference written by testing/hf/generate.py (small vocabularies, the real
 * structure). And the tokenizer types forge does not support — SentencePiece Unigram,
 * WordPiece, WordLevel, SentencePiece-style BPE, an unknown type — refused by name.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { fromTokenizerJson } from "./hf.js";
import { loadTokenizer } from "./io.js";

const FIXTURES = fileURLToPath(new URL("./testing/hf/", import.meta.url));
const read = (...parts: string[]) =>
  JSON.parse(readFileSync(path.join(FIXTURES, ...parts), "utf8"));

interface Case {
  text: string;
  ids: number[];
  withSpecial: number[];
  decoded: string;
}

describe.each([
  ["llama3", "<|begin_of_text|>"],
  ["qwen2", undefined],
])("a %s-shaped tokenizer.json", (family, bos) => {
  const reference = read(family, "reference.json") as { cases: Case[] };

  it("encodes every reference text to the ids Hugging Face's tokenizers gives", async () => {
    const tokenizer = await loadTokenizer(path.join(FIXTURES, family));
    expect(reference.cases.length).toBeGreaterThan(15);
    for (const c of reference.cases)
      expect(tokenizer.encode(c.text, { allowedSpecial: "all" }), JSON.stringify(c.text)).toEqual(
        c.ids,
      );
  });

  it("decodes the reference ids back to the library's text", async () => {
    const tokenizer = await loadTokenizer(path.join(FIXTURES, family));
    for (const c of reference.cases)
      expect(tokenizer.decode(c.ids), JSON.stringify(c.text)).toBe(c.decoded);
  });

  it("has the family's special tokens at their ids, and its post-processor's BOS is the chat template's job", async () => {
    const tokenizer = await loadTokenizer(path.join(FIXTURES, family));
    const json = read(family, "tokenizer.json") as {
      added_tokens: { content: string; id: number }[];
    };
    for (const token of json.added_tokens)
      expect(tokenizer.specialTokenId(token.content)).toBe(token.id);
    // the library's encode(add_special_tokens=True) prepends Llama-3's <|begin_of_text|>
    // (TemplateProcessing); forge's plain encode does not — chats get it from the model's
    // chat template ({{ bos_token }}), which is how the hub's own apply_chat_template works
    const withBos = reference.cases.filter((c) => c.withSpecial.length !== c.ids.length);
    if (bos) {
      expect(withBos.length).toBe(reference.cases.length);
      for (const c of withBos)
        expect(c.withSpecial).toEqual([tokenizer.specialTokenId(bos), ...c.ids]);
    } else expect(withBos).toEqual([]);
  });
});

describe("tokenizer types forge does not support are refused by name", () => {
  const accepted = /accepted: "BPE" \(byte-level BPE/;
  it.each([
    ["unigram", /model\.type is "Unigram" \(SentencePiece Unigram/],
    ["wordpiece", /model\.type is "WordPiece"/],
    ["wordlevel", /model\.type is "WordLevel"/],
  ])("%s", (name, message) => {
    const json = read("unsupported", `${name}.json`);
    expect(() => fromTokenizerJson(json, `${name}.json`)).toThrow(message);
    expect(() => fromTokenizerJson(json, `${name}.json`)).toThrow(accepted);
  });

  it("a model.type it does not know", () => {
    const json = read("unsupported", "wordlevel.json");
    json.model.type = "Morpheme";
    expect(() => fromTokenizerJson(json, "t.json")).toThrow(
      /t\.json: model\.type is "Morpheme"; accepted: "BPE" \(byte-level BPE/,
    );
  });

  it("SentencePiece-style BPE (Llama 2, TinyLlama, Mistral: byte fallback, Metaspace)", () => {
    const json = read("unsupported", "sentencepiece-bpe.json");
    expect(() => fromTokenizerJson(json, "sp.json")).toThrow(
      /sp\.json: model\.byte_fallback is true: a SentencePiece-style BPE .*only byte-level BPE/,
    );
  });
});
