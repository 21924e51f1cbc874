/**
 * GPT-2 parity: forge's tokenizer, built from the r50k_base ranks that gpt-tokenizer bundles
 * (offline), must produce gpt-tokenizer's ids on a multi-megabyte corpus; and survive
 * tokenizer.json and vocab.json + merges.txt round trips with identical ids.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import ranks from "gpt-tokenizer/bpeRanks/r50k_base";
import { decode as gptDecode, encode as gptEncode } from "gpt-tokenizer/encoding/r50k_base";
import { getEncoding } from "js-tiktoken";
import { afterAll, describe, expect, it } from "vitest";
import { bytesToToken } from "./bytes.js";
import { fromTokenizerJson, toTokenizerJson } from "./hf.js";
import { loadTokenizer, saveTokenizer } from "./io.js";
import { mixedText } from "./mixed-text.js";
import { fromTiktokenRanks } from "./tiktoken.js";

const gpt2 = fromTiktokenRanks(ranks, {
  specialTokens: { "<|endoftext|>": 50256 },
  source: "r50k_base",
});

/** tinyshakespeare when this checkout sits beside ../shared, plus generated mixed text. */
function corpus(): string {
  const shakespeare = path.resolve(
    import.meta.dirname,
    "../../../../shared/data/tinyshakespeare.txt",
  );
  const parts = [mixedText(2_000_000, 42)];
  if (existsSync(shakespeare)) parts.push(readFileSync(shakespeare, "utf8"));
  return parts.join("\n");
}

const text = corpus();
const reference = gptEncode(text, { disallowedSpecial: new Set() });
const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-tokenizer-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function firstDifference(a: number[], b: number[]): string {
  const i = a.findIndex((x, k) => x !== b[k]);
  const at = i < 0 ? Math.min(a.length, b.length) : i;
  return `first difference at id ${at}: ${JSON.stringify(gptDecode(b.slice(Math.max(0, at - 5), at + 5)))}`;
}

describe("GPT-2 (r50k_base) parity with gpt-tokenizer", () => {
  it(`has GPT-2's 50,000 merges and 50,257 ids`, () => {
    expect(gpt2.merges.length).toBe(50_000);
    expect(gpt2.vocabSize).toBe(50_257);
    expect(Buffer.byteLength(text)).toBeGreaterThan(2_000_000);
  });

  it("encodes the corpus to exactly gpt-tokenizer's ids", () => {
    const ids = gpt2.encode(text);
    expect(ids.length, firstDifference(ids, reference)).toBe(reference.length);
    expect(
      ids.every((id, i) => id === reference[i]),
      firstDifference(ids, reference),
    ).toBe(true);
    expect(gpt2.decode(ids)).toBe(text);
  });

  it("encodes <|endoftext|> as 50256 when allowed, as js-tiktoken does", () => {
    // (gpt-tokenizer 4.0's r50k_base module encodes it as text even with allowedSpecial.)
    const sample = "end<|endoftext|>start";
    expect(gpt2.encode(sample, { allowedSpecial: "all" })).toEqual(
      getEncoding("gpt2").encode(sample, "all"),
    );
    expect(gpt2.encode(sample, { allowedSpecial: "all" })).toContain(50256);
  });

  it("tokenizer.json save → load gives identical ids", async () => {
    const dir = path.join(scratch, "gpt2-json");
    await saveTokenizer(gpt2, dir);
    const loaded = await loadTokenizer(dir);
    expect(loaded.vocabSize).toBe(gpt2.vocabSize);
    const ids = loaded.encode(text);
    expect(ids.length).toBe(reference.length);
    expect(ids.every((id, i) => id === reference[i])).toBe(true);
  });

  it("GPT-2's own files, vocab.json + merges.txt, load to the same ids", async () => {
    const dir = path.join(scratch, "gpt2-files");
    const json = toTokenizerJson(gpt2) as {
      model: { vocab: Record<string, number>; merges: string[][] };
    };
    const vocab = { ...json.model.vocab, "<|endoftext|>": 50256 };
    const merges = json.model.merges.map(([a, b]) => `${a} ${b}`);
    rmSync(dir, { recursive: true, force: true });
    (await import("node:fs")).mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "vocab.json"), JSON.stringify(vocab));
    writeFileSync(path.join(dir, "merges.txt"), `#version: 0.2\n${merges.join("\n")}\n`);
    const loaded = await loadTokenizer(dir);
    expect(loaded.specialTokenId("<|endoftext|>")).toBe(50256);
    // GPT-2's merges.txt carries no ignore_merges flag: pure merges give the same ids here.
    const sample = text.slice(0, 300_000);
    expect(loaded.encode(sample)).toEqual(gptEncode(sample, { disallowedSpecial: new Set() }));
    expect(bytesToToken(loaded.tokenBytesOf(loaded.encode(" the")[0]!))).toBe("Ġthe");
  });

  it("merges in the [a, b] spelling and the 'a b' spelling load identically", () => {
    const json = toTokenizerJson(gpt2) as { model: { merges: unknown[] } };
    const asStrings = structuredClone(json);
    asStrings.model.merges = (json.model.merges as string[][]).map(([a, b]) => `${a} ${b}`);
    const sample = text.slice(0, 100_000);
    expect(fromTokenizerJson(asStrings).encode(sample)).toEqual(
      fromTokenizerJson(json).encode(sample),
    );
  });
});
