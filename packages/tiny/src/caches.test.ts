/**
 * How the token caches (`forge data build`) cut conversations longer than the context window: as a chat client's
 * sliding window cuts them (asChatted, sftExamples), on the shipped tokenizer.
 */
import { fileURLToPath } from "node:url";
import { loadTokenizer } from "@forge/tokenizer";
import { beforeAll, describe, expect, it } from "vitest";
import { asChatted, type CorpusMessage, sftExamples } from "./caches.js";
import { styleReply } from "./personas.js";

const TINY = fileURLToPath(new URL("../model", import.meta.url));
let tokenizer: Awaited<ReturnType<typeof loadTokenizer>>;
beforeAll(async () => {
  tokenizer = await loadTokenizer(TINY);
});

function conversation(turns: number, system?: string): CorpusMessage[] {
  const messages: CorpusMessage[] = system ? [{ role: "system", content: system }] : [];
  for (let i = 0; i < turns; i++) {
    const sentence = `${10 + i} plus ${20 + i} is ${30 + 2 * i}.`;
    messages.push({ role: "user", content: `What is ${10 + i} plus ${20 + i}?` });
    messages.push(
      system
        ? { role: "assistant", content: styleReply("pirate", sentence), plain: sentence }
        : { role: "assistant", content: sentence },
    );
  }
  return messages;
}

/** The decoded runs of masked-in tokens: the replies an example trains on. */
function targets(example: { ids: number[]; mask: Uint8Array }): string[] {
  const runs: number[][] = [];
  example.ids.forEach((id, i) => {
    if (!example.mask[i]) return;
    if (i === 0 || !example.mask[i - 1]) runs.push([]);
    runs.at(-1)!.push(id);
  });
  const eot = tokenizer.specialTokenId("<|eot|>");
  return runs.map((ids) => tokenizer.decode(ids.filter((id) => id !== eot)).trim());
}

describe("conversations longer than the context window", () => {
  it("a conversation that fits is one example, as rendered", () => {
    const messages = conversation(2, "You are a pirate.");
    const [only, ...rest] = sftExamples(tokenizer, messages, 257);
    expect(rest).toEqual([]);
    expect(only!.ids).toEqual(
      tokenizer.renderChat(messages.map(({ role, content }) => ({ role, content }))).ids,
    );
  });

  it("once the system prompt scrolls out, replies are plain and trained without it, each once", () => {
    const messages = conversation(20, "You are a pirate.");
    const chatted = asChatted(tokenizer, messages, 257);
    expect(chatted.scrolledAt).toBeGreaterThan(2);
    expect(chatted.scrolledAt).toBeLessThan(20);
    chatted.turns.forEach((turn, t) => {
      expect(turn[1]!.content.startsWith("Arr")).toBe(t < chatted.scrolledAt);
    });
    // everything up to the turn before the scroll fits with the system prompt; one more does not
    const upTo = (n: number) =>
      tokenizer.renderChat([...chatted.system, ...chatted.turns.slice(0, n).flat()]).ids.length;
    expect(upTo(chatted.scrolledAt)).toBeLessThanOrEqual(257);
    expect(upTo(chatted.scrolledAt + 1)).toBeGreaterThan(257);

    const [first, ...later] = sftExamples(tokenizer, messages, 257);
    const sys = tokenizer.specialTokenId("<|sys|>");
    expect(first!.ids[0]).toBe(sys);
    expect(targets(first!)).toHaveLength(chatted.scrolledAt);
    expect(targets(first!).every((r) => r.startsWith("Arr"))).toBe(true);
    const trained = later.flatMap(targets);
    expect(trained).toEqual(chatted.turns.slice(chatted.scrolledAt).map((t) => t[1]!.content));
    for (const example of later) {
      expect(example.ids.length).toBeLessThanOrEqual(257);
      expect(example.ids).not.toContain(sys);
    }
    // the later examples carry history before their targets, pirate replies included
    expect(later.some((e) => e.mask[0] === 0 && tokenizer.decode(e.ids).includes("Arr"))).toBe(
      true,
    );
  });

  it("a long conversation with no system prompt trains every reply exactly once", () => {
    const messages = conversation(24);
    const examples = sftExamples(tokenizer, messages, 257);
    expect(examples.length).toBeGreaterThan(1);
    expect(examples.flatMap(targets)).toEqual(
      messages.filter((m) => m.role === "assistant").map((m) => m.content),
    );
    for (const example of examples) expect(example.ids.length).toBeLessThanOrEqual(257);
  });
});
