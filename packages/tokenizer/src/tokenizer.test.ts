import { describe, expect, it } from "vitest";
import { TokenizerError } from "./errors.js";
import { mixedText } from "./mixed-text.js";
import { train } from "./train.js";

const corpus = mixedText(300_000, 3);
const tokenizer = train([corpus], { vocabSize: 2000 });

describe("minbpe cases", () => {
  it("the Wikipedia example aaabdaaabac: three merges give XdXac", () => {
    const small = train(["aaabdaaabac"], { vocabSize: 256 + 3 + 4 });
    expect(small.encode("aaabdaaabac")).toEqual([258, 100, 258, 97, 99]);
    expect(small.decode([258, 100, 258, 97, 99])).toBe("aaabdaaabac");
  });
});

describe("round trips", () => {
  const cases: Record<string, string> = {
    empty: "",
    "single characters": "a",
    "single multibyte character": "é",
    "whitespace runs": " \t\t  \n\n\n   \r\n \u00a0\u3000 ",
    emoji: "😀👍🏽👨‍👩‍👧‍👦🇫🇷❤️",
    CJK: "日本語のテキスト中文文本한국어",
    "combining marks": "e\u0301a\u0308\u0041\u030A\u0301\u0301\u0301",
    "very long word": "a".repeat(20_000),
    "very long mixed word": "xyz".repeat(5000),
    "mixed text": mixedText(50_000, 11),
    "special-looking text treated as text": "<|eot|> <|usr|>",
  };
  for (const [name, text] of Object.entries(cases)) {
    it(name, () => {
      const ids = tokenizer.encode(text, { disallowedSpecial: "none" });
      expect(tokenizer.decode(ids)).toBe(text);
    });
  }

  it("lone surrogates encode as U+FFFD (as TextEncoder does) and decode to it", () => {
    const ids = tokenizer.encode("a\ud800b\udfffc");
    expect(tokenizer.decode(ids)).toBe("a\ufffdb\ufffdc");
  });
});

describe("decode", () => {
  it("invalid UTF-8 sequences decode to U+FFFD and never throw", () => {
    const byteIds = tokenizer.byteIds;
    expect(tokenizer.decode([byteIds[0xe6]!, byteIds[0x97]!])).toBe("\ufffd"); // truncated 3-byte char
    expect(tokenizer.decode([byteIds[0xff]!])).toBe("\ufffd");
    expect(tokenizer.decode([byteIds[0x61]!, byteIds[0x80]!, byteIds[0x62]!])).toBe("a\ufffdb");
  });

  it("an unknown id is an error naming it and its position", () => {
    expect(() => tokenizer.decode([1, 2, 99_999])).toThrow(
      "id 99999 at position 2 is not in the vocabulary (0..1999)",
    );
    expect(() => tokenizer.decode([-1])).toThrow(TokenizerError);
    expect(() => tokenizer.decode([1.5])).toThrow(/id 1.5 at position 0/);
  });
});

describe("special tokens in text (tiktoken's rules)", () => {
  const text = "hi<|eot|>there<|usr|>";
  const eot = tokenizer.specialTokenId("<|eot|>");
  const usr = tokenizer.specialTokenId("<|usr|>");

  it("by default a special token in text is an error naming it and its offset", () => {
    expect(() => tokenizer.encode(text)).toThrow(
      'text contains the special token "<|eot|>" at offset 2; pass allowedSpecial (to encode it as a special id) or disallowedSpecial: "none" (to encode it as text)',
    );
  });

  it('allowedSpecial "all" encodes every special token as its id', () => {
    const ids = tokenizer.encode(text, { allowedSpecial: "all" });
    expect(ids.filter((id) => id === eot || id === usr)).toEqual([eot, usr]);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it("a set allows some; the rest still raise", () => {
    expect(() => tokenizer.encode(text, { allowedSpecial: new Set(["<|eot|>"]) })).toThrow(
      /"<\|usr\|>" at offset 14/,
    );
  });

  it('disallowedSpecial "none" encodes special-looking text as ordinary text', () => {
    const ids = tokenizer.encode(text, { disallowedSpecial: "none" });
    expect(ids).not.toContain(eot);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it('allowedSpecial "none" with disallowedSpecial "none" is plain text too; unknown names are errors', () => {
    expect(
      tokenizer.encode(text, { allowedSpecial: "none", disallowedSpecial: "none" }),
    ).not.toContain(eot);
    expect(() => tokenizer.encode(text, { allowedSpecial: ["<|nope|>"] })).toThrow(
      /"<\|nope\|>", which is not a special token/,
    );
  });

  it("encodeBatch encodes each text", () => {
    expect(tokenizer.encodeBatch(["a b", "c"])).toEqual([
      tokenizer.encode("a b"),
      tokenizer.encode("c"),
    ]);
  });
});
