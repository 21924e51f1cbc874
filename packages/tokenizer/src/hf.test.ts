import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TokenizerError } from "./errors.js";
import { fromTokenizerJson, toJavaScriptRegex, toTokenizerJson } from "./hf.js";
import { loadTokenizer, saveTokenizer } from "./io.js";
import { mixedText } from "./mixed-text.js";
import { GPT4_PATTERN } from "./pretokenize.js";
import { train } from "./train.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-hf-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const text = mixedText(100_000, 21);
const trained = train([text], { vocabSize: 1000, specialTokens: ["<|pad|>"] });
interface TokenizerJsonData {
  model: { type?: unknown; vocab: Record<string, unknown>; merges: unknown[] };
  pre_tokenizer?: unknown;
  decoder?: unknown;
  normalizer?: unknown;
  added_tokens?: unknown[];
}
const json = () => structuredClone(toTokenizerJson(trained)) as unknown as TokenizerJsonData;

describe("tokenizer.json", () => {
  it("save → load round-trips a trained tokenizer: same ids, specials, template", async () => {
    const dir = path.join(scratch, "trained");
    const { files } = await saveTokenizer(trained, dir);
    expect(files.map((f) => path.basename(f))).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    const loaded = await loadTokenizer(dir);
    expect(loaded.encode(text)).toEqual(trained.encode(text));
    expect([...loaded.specialTokens]).toEqual([...trained.specialTokens]);
    expect(loaded.chatTemplate).toBe(trained.chatTemplate);
    const written = JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
    expect(written.model.type).toBe("BPE");
    expect(written.pre_tokenizer.type).toBe("ByteLevel");
    expect(written.added_tokens.map((t: { content: string }) => t.content)).toEqual([
      "<|sys|>",
      "<|usr|>",
      "<|asst|>",
      "<|eot|>",
      "<|pad|>",
    ]);
  });

  it("loads a tokenizer.json file path as well as its directory", async () => {
    const loaded = await loadTokenizer(path.join(scratch, "trained", "tokenizer.json"));
    expect(loaded.vocabSize).toBe(1000);
  });

  it("round-trips the GPT-4 pattern as Split + ByteLevel", () => {
    const gpt4 = train([text], { vocabSize: 600, pattern: "gpt4" });
    const data = toTokenizerJson(gpt4) as { pre_tokenizer: { type: string } };
    expect(data.pre_tokenizer.type).toBe("Sequence");
    expect(fromTokenizerJson(data).encode(text)).toEqual(gpt4.encode(text));
  });

  it("reads Rust-regex spellings: (?i:…) contractions and possessive quantifiers", () => {
    const llama3 = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
    expect(() => new RegExp(toJavaScriptRegex(llama3), "gu")).not.toThrow();
    expect(toJavaScriptRegex(String.raw`a?+b++c*+\++[+]+x{2,3}+\p{L}+`)).toBe(
      String.raw`a?b+c*\++[+]+x{2,3}\p{L}+`,
    );
    expect(toJavaScriptRegex(GPT4_PATTERN)).toBe(GPT4_PATTERN);
  });

  it("applies a Unicode normalizer", () => {
    const data = json();
    data.normalizer = { type: "NFC" };
    const nfc = fromTokenizerJson(data);
    expect(nfc.encode("e\u0301")).toEqual(nfc.encode("\u00e9"));
  });

  const malformed: Array<[string, (data: TokenizerJsonData) => void, RegExp]> = [
    [
      "a missing model",
      (d) => delete (d as { model?: unknown }).model,
      /tokenizer.json: model is missing/,
    ],
    [
      "a WordPiece model",
      (d) => (d.model.type = "WordPiece"),
      /model.type is "WordPiece" \(as BERT uses\); accepted: "BPE"/,
    ],
    [
      "an unknown pre-tokenizer",
      (d) => (d.pre_tokenizer = { type: "Metaspace" }),
      /pre_tokenizer.type is "Metaspace"; accepted: "ByteLevel", "Split", "Sequence"/,
    ],
    [
      "a merge naming an unknown token",
      (d) => d.model.merges.push(["Ġzzz", "qqq"]),
      /model.merges\[\d+\] names "Ġzzz", which is not in model.vocab/,
    ],
    [
      "a malformed merge",
      (d) => (d.model.merges[0] = "nospace"),
      /model.merges\[0\] is "nospace"; expected "left right"/,
    ],
    [
      "a non-integer id",
      (d) => {
        d.model.vocab.a = "x";
      },
      /model.vocab\["a"\] is "x"; ids are non-negative integers/,
    ],
    [
      "an unknown decoder",
      (d) => (d.decoder = { type: "WordPiece" }),
      /decoder.type is "WordPiece"; accepted: "ByteLevel"/,
    ],
    [
      "a bad added token",
      (d) => (d.added_tokens = [{ content: 1 }]),
      /added_tokens\[0\] must have a string "content"/,
    ],
    [
      "a vocabulary missing a byte",
      (d) => delete d.model.vocab.Ā,
      /needs a token for each of the 256 bytes; missing 1 \(first: 0x00\)/,
    ],
  ];
  for (const [name, corrupt, message] of malformed) {
    it(`${name} is an error naming the field`, () => {
      const data = json();
      corrupt(data);
      const error = (() => {
        try {
          fromTokenizerJson(data);
        } catch (e) {
          return e;
        }
      })();
      expect(TokenizerError.isInstance(error), String(error)).toBe(true);
      expect((error as TokenizerError).code).toBe("E_FORMAT");
      expect((error as Error).message).toMatch(message);
    });
  }

  it("invalid JSON and missing files are errors naming the file", async () => {
    const dir = path.join(scratch, "broken");
    (await import("node:fs")).mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "tokenizer.json"), "{ not json");
    await expect(loadTokenizer(dir)).rejects.toThrow(
      /broken\/tokenizer.json: invalid JSON at character 3/,
    );
    await expect(loadTokenizer(path.join(scratch, "nope"))).rejects.toThrow(
      /cannot read .*nope: no such file or directory \(ENOENT\)/,
    );
    const empty = path.join(scratch, "empty");
    (await import("node:fs")).mkdirSync(empty);
    await expect(loadTokenizer(empty)).rejects.toThrow(
      /has neither tokenizer.json nor vocab.json \+ merges.txt/,
    );
  });
});

describe("chat_template from tokenizer_config.json", () => {
  it("renders a ChatML template with @huggingface/jinja", async () => {
    const dir = path.join(scratch, "chatml");
    await saveTokenizer(trained, dir);
    const chatml =
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    writeFileSync(
      path.join(dir, "tokenizer_config.json"),
      JSON.stringify({ chat_template: chatml, eos_token: { content: "<|im_end|>" } }),
    );
    const loaded = await loadTokenizer(dir);
    expect(loaded.templateVariables.eos_token).toBe("<|im_end|>");
    const rendered = loaded.applyChatTemplate(
      [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
      ],
      { addGenerationPrompt: true },
    );
    expect(rendered).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("forge's own template renders exactly what renderChat encodes", () => {
    const messages = [
      { role: "system" as const, content: "You are a pirate." },
      { role: "user" as const, content: "What is 2+2?" },
      { role: "assistant" as const, content: "Arr, 4, matey." },
      { role: "user" as const, content: "And 3+3?" },
    ];
    const viaTemplate = trained.encode(
      trained.applyChatTemplate(messages, { addGenerationPrompt: true }),
      {
        allowedSpecial: "all",
      },
    );
    expect(viaTemplate).toEqual(trained.renderChat(messages, { addGenerationPrompt: true }).ids);
  });

  it("a template that does not parse is an error", () => {
    expect(() => trained.applyChatTemplate([], { template: "{% for %}" })).toThrow(
      /chat_template does not parse/,
    );
  });
});
