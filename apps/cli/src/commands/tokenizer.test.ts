import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-cli-tok-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const prose = Array.from(
  { length: 400 },
  (_, i) => `The pirate counted ${i} coins and said arr, matey, it's mine.`,
).join("\n");

beforeAll(() => {
  writeFileSync(path.join(dir, "a.txt"), prose);
  writeFileSync(
    path.join(dir, "chats.jsonl"),
    `${JSON.stringify({
      messages: [
        { role: "user", content: "What is 2+2?" },
        { role: "assistant", content: "4" },
      ],
    })}\n${JSON.stringify({ text: "plain text line" })}\n`,
  );
  writeFileSync(path.join(dir, "bad.jsonl"), '{"text": "ok"}\n{"nope": 1}\n');
});

describe("forge tokenizer", () => {
  it("train reads globs and .jsonl, writes tokenizer.json, and prints a JSON summary", async () => {
    const run = await forge([
      "tokenizer",
      "train",
      "--input",
      path.join(dir, "*.txt"),
      "--input",
      path.join(dir, "chats.jsonl"),
      "--vocab-size",
      "400",
      "--out",
      path.join(dir, "tok"),
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ inputs: 2, texts: 3 });
    const merges = summary.merges as number;
    expect(merges).toBeGreaterThan(50);
    expect(merges).toBeLessThanOrEqual(140);
    expect(summary.vocabSize).toBe(256 + merges + 4);
    expect(summary.specialTokens).toEqual({
      "<|sys|>": 256 + merges,
      "<|usr|>": 257 + merges,
      "<|asst|>": 258 + merges,
      "<|eot|>": 259 + merges,
    });
    const json = JSON.parse(readFileSync(path.join(dir, "tok", "tokenizer.json"), "utf8"));
    expect(json.model.merges.length).toBe(merges);
  });

  it("encode and decode round-trip through stdin", async () => {
    const tokenizer = path.join(dir, "tok");
    const encoded = await forge(
      ["tokenizer", "encode", "--tokenizer", tokenizer],
      {},
      "Arr, matey! 42 coins.",
    );
    expect(encoded.code).toBe(0);
    expect(encoded.stdout.trim()).toMatch(/^\d+( \d+)+$/);
    const decoded = await forge(
      ["tokenizer", "decode", "--tokenizer", tokenizer],
      {},
      encoded.stdout,
    );
    expect(decoded.stdout).toBe("Arr, matey! 42 coins.\n");
  });

  it("encode --json lists ids and printable tokens", async () => {
    const run = await forge([
      "tokenizer",
      "encode",
      "--tokenizer",
      path.join(dir, "tok"),
      "--json",
      "the",
      "pirate",
    ]);
    const out = JSON.parse(run.stdout);
    expect(out.count).toBe(out.ids.length);
    expect(out.tokens.join("")).toBe("theĠpirate");
  });

  it("special-token text is refused unless --allow-special", async () => {
    const tokenizer = path.join(dir, "tok");
    const refused = await forge(["tokenizer", "encode", "--tokenizer", tokenizer, "hi<|eot|>"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('text contains the special token "<|eot|>" at offset 2');
    const allowed = await forge([
      "tokenizer",
      "encode",
      "--tokenizer",
      tokenizer,
      "--allow-special",
      "hi<|eot|>",
    ]);
    const eot = JSON.parse(
      readFileSync(path.join(tokenizer, "tokenizer.json"), "utf8"),
    ).added_tokens.at(-1).id;
    expect(allowed.stdout.trim().split(" ").at(-1)).toBe(String(eot));
  });

  const bad: Array<[string, string[], string]> = [
    [
      "no vocab size",
      ["train", "--input", "x", "--out", "y"],
      "--vocab-size must be an integer ≥ 1; got undefined",
    ],
    [
      "a glob matching nothing",
      ["train", "--input", "/nonexistent/*.txt", "--vocab-size", "300", "--out", "y"],
      "matches no files",
    ],
    [
      "a vocab too small",
      ["train", "__A__", "--vocab-size", "100", "--out", "__OUT__"],
      "vocabSize 100 is too small",
    ],
    [
      "a bad .jsonl line",
      ["train", "__BAD__", "--vocab-size", "300", "--out", "__OUT__"],
      'bad.jsonl:2: expected {"text": "…"}',
    ],
    [
      "a missing tokenizer",
      ["encode", "--tokenizer", "/nonexistent", "x"],
      "cannot read /nonexistent: no such file or directory (ENOENT)",
    ],
    [
      "a non-integer id",
      ["decode", "--tokenizer", "__TOK__", "12", "x1"],
      '"x1" is not a token id',
    ],
    [
      "an unknown id",
      ["decode", "--tokenizer", "__TOK__", "99999"],
      "id 99999 at position 0 is not in the vocabulary",
    ],
  ];
  for (const [name, args, message] of bad) {
    it(`${name} exits 2 with a clear message`, async () => {
      const resolved = args.map((a) =>
        a
          .replace("__A__", path.join(dir, "a.txt"))
          .replace("__BAD__", path.join(dir, "bad.jsonl"))
          .replace("__OUT__", path.join(dir, "out"))
          .replace("__TOK__", path.join(dir, "tok")),
      );
      const run = await forge(["tokenizer", ...resolved]);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(message);
    });
  }
});
