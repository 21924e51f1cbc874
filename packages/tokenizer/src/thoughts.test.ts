/**
 * Thought tokens in a tokenizer: added after the last id with ordinary text unchanged, written
 * to tokenizer.json's added_tokens and read back, and encoded as ids only inside assistant turns.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CHAT_TOKENS, THOUGHT_TOKENS } from "./chat.js";
import { TokenizerError } from "./errors.js";
import { loadTokenizer, saveTokenizer } from "./io.js";
import { mixedText } from "./mixed-text.js";
import { train } from "./train.js";

const base = train([mixedText(40_000, 7)], { vocabSize: 500 });
const markers = [THOUGHT_TOKENS.start, THOUGHT_TOKENS.end];
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-thought-tokens-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("withSpecialTokens", () => {
  it("appends the tokens after the last id and leaves ordinary text's ids as they were", () => {
    const grown = base.withSpecialTokens(markers);
    expect(grown.vocabSize).toBe(base.vocabSize + 2);
    expect(grown.specialTokenId(THOUGHT_TOKENS.start)).toBe(500);
    expect(grown.specialTokenId(THOUGHT_TOKENS.end)).toBe(501);
    expect(grown.specialTokenId(CHAT_TOKENS.endOfTurn)).toBe(
      base.specialTokenId(CHAT_TOKENS.endOfTurn),
    );
    const text = mixedText(5_000, 3);
    expect(grown.encode(text)).toEqual(base.encode(text));
    expect(grown.chatTemplate).toBe(base.chatTemplate);
    expect(base.specialTokens.has(THOUGHT_TOKENS.start)).toBe(false); // the original is untouched
  });

  it("can start after ids a model has beyond the tokenizer's (holes stay unknown)", () => {
    const grown = base.withSpecialTokens(markers, 512);
    expect(grown.vocabSize).toBe(514);
    expect(grown.specialTokenId(THOUGHT_TOKENS.start)).toBe(512);
    expect(() => grown.decode([505])).toThrow(/not in the vocabulary/);
    expect(() => base.withSpecialTokens(markers, 499)).toThrow(/ids below 500 are taken/);
  });

  it("refuses a token the tokenizer has, an empty one, or one listed twice", () => {
    expect(() => base.withSpecialTokens([CHAT_TOKENS.user])).toThrow(/already in this tokenizer/);
    expect(() => base.withSpecialTokens([""])).toThrow(TokenizerError);
    expect(() => base.withSpecialTokens(["<|x|>", "<|x|>"])).toThrow(/listed twice/);
  });

  it("round-trips through tokenizer.json with the tokens in added_tokens", async () => {
    const grown = base.withSpecialTokens(markers);
    await saveTokenizer(grown, dir);
    const json = JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
    const added = json.added_tokens as { id: number; content: string; special: boolean }[];
    expect(added.slice(-2)).toMatchObject([
      { id: 500, content: THOUGHT_TOKENS.start, special: true },
      { id: 501, content: THOUGHT_TOKENS.end, special: true },
    ]);
    const loaded = await loadTokenizer(dir);
    expect([...loaded.specialTokens]).toEqual([...grown.specialTokens]);
    expect(loaded.encode(mixedText(2_000, 5))).toEqual(grown.encode(mixedText(2_000, 5)));
  });
});

describe("thoughts in chat", () => {
  const grown = base.withSpecialTokens(markers);
  const start = grown.specialTokenId(THOUGHT_TOKENS.start);
  const end = grown.specialTokenId(THOUGHT_TOKENS.end);
  const thought = `${THOUGHT_TOKENS.start}2 + 3 = 5${THOUGHT_TOKENS.end}It is 5.`;

  it("an assistant's thought markers become their ids, so a model can learn to think", () => {
    const { ids } = grown.renderChat([
      { role: "user", content: "What is 2 + 3?" },
      { role: "assistant", content: thought },
    ]);
    const reply = ids.slice(ids.indexOf(grown.specialTokenId(CHAT_TOKENS.assistant)) + 1);
    expect(reply).toEqual([
      start,
      ...grown.encode("2 + 3 = 5"),
      end,
      ...grown.encode("It is 5."),
      grown.specialTokenId(CHAT_TOKENS.endOfTurn),
    ]);
  });

  it("a user's text never becomes a thought token, nor does any role token in an assistant turn", () => {
    const { ids } = grown.renderChat([
      { role: "user", content: thought },
      { role: "assistant", content: `${CHAT_TOKENS.user} hi` },
    ]);
    const specials = ids.filter((id) => grown.isSpecial(id));
    expect(specials).toEqual([
      grown.specialTokenId(CHAT_TOKENS.user),
      grown.specialTokenId(CHAT_TOKENS.endOfTurn),
      grown.specialTokenId(CHAT_TOKENS.assistant),
      grown.specialTokenId(CHAT_TOKENS.endOfTurn),
    ]);
  });

  it("a tokenizer without thought tokens encodes the marker text as text", () => {
    const { ids } = base.renderChat([{ role: "assistant", content: thought }]);
    expect(base.decode(ids.slice(1, -1))).toBe(thought);
  });
});
