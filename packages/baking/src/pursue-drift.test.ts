import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GPT, initBackend } from "@forge/model";
import {
  type ChatMessage,
  fromTokenizerJson,
  type Tokenizer,
  toTokenizerJson,
  train as trainTokenizer,
} from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareDrift, fitContext, meanInterval, measureDrift, summariseDrift } from "./drift.js";
import { pursue, pursueAll, readLineage, repromptTable } from "./pursue.js";
import { systemPrompt } from "./records.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-pursue-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tokenizer: Tokenizer;
const newModel = (seed = 1, blockSize = 96) =>
  GPT.create(
    { nLayer: 1, nHead: 2, nEmbd: 16, blockSize, vocabSize: tokenizer.vocabSize },
    { seed },
  );
const questions = ["What is 2 + 3?", "Name a colour.", "Say hello.", "Who are you?"];

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const corpus = Array.from(
    { length: 100 },
    (_, i) => `${questions[i % questions.length]} Arr matey, the answer is ${i}.`,
  );
  tokenizer = trainTokenizer(corpus, { vocabSize: 300 });
});

describe("prompt pursuit", () => {
  const bake = {
    stim: [{ type: "list" as const, items: questions }],
    rollout: { samples: 2, maxNewTokens: 6, seed: 1 },
    bake: { epochs: 1, batchSize: 8, seed: 2, validationFraction: 0 },
    measure: false as const,
  };

  it("stops after one round on a flat evaluator, keeping the round's model and lineage", async () => {
    const model = newModel(2);
    const rounds: number[] = [];
    const result = await pursue(model, tokenizer, systemPrompt("You are a pirate."), {
      rounds: 5,
      minImprovement: 0.01,
      evaluator: (_, round) => {
        rounds.push(round);
        return 0.5;
      },
      bake,
      out: path.join(dir, "flat"),
      baseModel: "base-dir",
    });
    expect(result.stopReason).toBe("converged");
    expect(result.rounds.map((r) => r.round)).toEqual([1]);
    expect(rounds).toEqual([0, 1]);
    expect(model.lora).toBeUndefined(); // merged after the round
    const roundDir = path.join(dir, "flat", "round-1", "model");
    expect(existsSync(path.join(roundDir, "model.safetensors"))).toBe(true);
    const lineage = await readLineage(roundDir);
    expect(lineage).toHaveLength(1);
    expect(lineage[0]).toMatchObject({ round: 1, score: 0.5 });
    const summary = JSON.parse(readFileSync(path.join(dir, "flat", "pursuit.json"), "utf8"));
    expect(summary).toMatchObject({ stopReason: "converged", best: 1 });
    model.dispose();
  });

  it("runs to the round cap while the evaluator keeps improving; pursueAll chains prompts", async () => {
    const model = newModel(3);
    let calls = 0;
    const improving = () => calls++ * 0.1;
    const results = await pursueAll(
      model,
      tokenizer,
      [systemPrompt("You are a pirate."), systemPrompt("Answer in one word.")],
      { rounds: 2, minImprovement: 0.05, evaluator: improving, bake, out: path.join(dir, "all") },
    );
    expect(results.map((r) => r.stopReason)).toEqual(["round-cap", "round-cap"]);
    expect(results.map((r) => r.rounds.length)).toEqual([2, 2]);
    const lineage = await readLineage(path.join(dir, "all", "prompt-2", "round-2", "model"));
    // the first prompt's final model, then the second prompt's two rounds
    expect(lineage.map((l) => l.round ?? `prompt-${l.prompt}`)).toEqual(["prompt-1", 1, 2]);
    expect(results[1]!.rounds[0]!.parent).toBe(
      path.join(dir, "all", "prompt-1", "round-2", "model"),
    );
    model.dispose();
  });

  it("refuses a zero round cap and a model with an adapter attached", async () => {
    const model = newModel(4);
    const options = { rounds: 0, minImprovement: 0, evaluator: () => 0, bake, out: dir };
    await expect(pursue(model, tokenizer, systemPrompt("x"), options)).rejects.toThrow(
      /rounds must be a positive integer; got 0/,
    );
    model.dispose();
  });

  it("re-prompting table: {base, baked} × {unprompted, prompted}", async () => {
    const base = newModel(5);
    const baked = newModel(6);
    const table = await repromptTable(
      { base, baked },
      (m, prompted) => (m === base ? 0 : 2) + (prompted ? 1 : 0),
    );
    expect(table).toEqual({
      base: { unprompted: 0, prompted: 1 },
      baked: { unprompted: 2, prompted: 3 },
    });
    base.dispose();
    baked.dispose();
  });
});

describe("context policies", () => {
  const conversation = (turns: number): ChatMessage[] => {
    const messages: ChatMessage[] = [{ role: "system", content: "You are a pirate, matey." }];
    for (let i = 0; i < turns; i++) {
      messages.push({ role: "user", content: `Question number ${i}: what is ${i} + ${i}?` });
      if (i < turns - 1) messages.push({ role: "assistant", content: `Arr, it be ${2 * i}.` });
    }
    return messages;
  };
  const rendered = (messages: ChatMessage[]) =>
    tokenizer.renderChat(messages, { addGenerationPrompt: true }).ids.length;

  it("sliding drops the system message first, then the oldest pairs, to the exact budget", () => {
    const messages = conversation(6);
    const full = rendered(messages);
    const fits = fitContext(tokenizer, messages, full, "sliding");
    expect(fits).toMatchObject({ droppedPairs: 0, systemKept: true, tokens: full });
    const cut = fitContext(tokenizer, messages, full - 1, "sliding");
    expect(cut.systemKept).toBe(false);
    expect(cut.droppedPairs).toBe(0);
    expect(cut.messages[0]!.role).toBe("user");
    const alone = rendered(messages.slice(-1));
    for (const budget of [full - 1, alone + 60, alone + 20, alone]) {
      const f = fitContext(tokenizer, messages, budget, "sliding");
      expect(rendered(f.messages)).toBe(f.tokens);
      expect(f.tokens).toBeLessThanOrEqual(budget);
      // minimal: one more unit (the last pair dropped) would not have fitted
      if (f.droppedPairs > 0) {
        const back = messages.slice(1 + 2 * (f.droppedPairs - 1));
        expect(rendered(back)).toBeGreaterThan(budget);
      }
      expect(f.messages.at(-1)).toEqual(messages.at(-1));
    }
  });

  it("keep-system pins the system message and drops pairs only", () => {
    const messages = conversation(6);
    const pinned = rendered([messages[0]!, messages.at(-1)!]);
    for (const budget of [rendered(messages) - 1, pinned + 40, pinned]) {
      const f = fitContext(tokenizer, messages, budget, "keep-system");
      expect(f.systemKept).toBe(true);
      expect(f.messages[0]).toEqual(messages[0]);
      expect(rendered(f.messages)).toBe(f.tokens);
      expect(f.tokens).toBeLessThanOrEqual(budget);
      const back = [messages[0]!, ...messages.slice(1 + 2 * (f.droppedPairs - 1))];
      expect(rendered(back)).toBeGreaterThan(budget);
    }
    expect(() => fitContext(tokenizer, messages, pinned - 1, "keep-system")).toThrow(
      `does not fit the context budget of ${pinned - 1} tokens with the pinned system message`,
    );
    expect(fitContext(tokenizer, messages, pinned - 1, "sliding").systemKept).toBe(false);
    expect(() => fitContext(tokenizer, messages, 80, "fifo" as never)).toThrow(
      /context policy "fifo" is not one of sliding, keep-system/,
    );
  });
});

describe("context policies with a model's own chat template", () => {
  // ChatML with a default system prompt: a message costs more than forge's content + 2, and a
  // conversation whose system message was dropped gains the template's default one
  const CHATML =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}" +
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
    "{%- for message in messages %}{%- if message.role != 'system' %}" +
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}" +
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  it("measures each candidate context by rendering it: exact, within budget, minimal", () => {
    // a model's own special tokens in place of forge's chat tokens
    const json = toTokenizerJson(tokenizer) as { added_tokens: { content: string }[] };
    const names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"];
    json.added_tokens.forEach((token, i) => {
      token.content = names[i] ?? token.content;
    });
    const chatml = fromTokenizerJson(json).withChatTemplate(CHATML, { eos_token: "<|im_end|>" });
    expect(chatml.usesTemplate).toBe(true);
    const messages: ChatMessage[] = [{ role: "system", content: "You are a pirate, matey." }];
    for (let i = 0; i < 6; i++) {
      messages.push({ role: "user", content: `Question number ${i}: what is ${i} + ${i}?` });
      if (i < 5) messages.push({ role: "assistant", content: `Arr, it be ${2 * i}.` });
    }
    const rendered = (m: readonly ChatMessage[]) => chatml.promptIds(m).length;
    const full = rendered(messages);
    expect(fitContext(chatml, messages, full, "sliding")).toMatchObject({
      tokens: full,
      droppedPairs: 0,
      systemKept: true,
    });
    for (const policy of ["sliding", "keep-system"] as const)
      for (const budget of [full - 1, full - 30, rendered(messages.slice(-1)) + 20]) {
        const f = fitContext(chatml, messages, budget, policy);
        expect(f.tokens).toBe(rendered(f.messages));
        expect(f.tokens).toBeLessThanOrEqual(budget);
        expect(f.messages.at(-1)).toEqual(messages.at(-1));
      }
  });
});

describe("persona drift", () => {
  const signature = (reply: string) => (/a/.test(reply) ? 1 : 0);
  const options = {
    system: "You are a pirate.",
    score: signature,
    probes: questions,
    turns: 6,
    seeds: [1, 2, 3],
    maxNewTokens: 8,
    contextTokens: 40,
  };

  it("is deterministic under its seeds; the system prompt scrolls out under sliding only", () => {
    const model = newModel(7, 64);
    const before = tf.memory().numTensors;
    const a = measureDrift(model, tokenizer, options);
    expect(tf.memory().numTensors).toBe(before);
    const b = measureDrift(model, tokenizer, options);
    expect(b.conversations).toEqual(a.conversations);
    expect(a.curve).toHaveLength(6);
    expect(a.curve[0]!.systemInContext).toBe(1);
    expect(a.systemLostAt).not.toBeNull();
    for (const c of a.conversations)
      for (const t of c.turns) expect(t.promptTokens).toBeLessThanOrEqual(40);
    const pinned = measureDrift(model, tokenizer, { ...options, contextPolicy: "keep-system" });
    expect(pinned.curve.every((p) => p.systemInContext === 1)).toBe(true);
    expect(pinned.systemLostAt).toBeNull();
    const other = measureDrift(model, tokenizer, { ...options, seeds: [4, 5, 6] });
    expect(other.conversations.map((c) => c.turns.map((t) => t.user))).not.toEqual(
      a.conversations.map((c) => c.turns.map((t) => t.user)),
    );
    model.dispose();
  });

  it("summaries: drift estimates with intervals, and the relative reduction", () => {
    const turn = (n: number, score: number) => ({
      turn: n,
      user: "q",
      probe: true,
      reply: "r",
      score,
      promptTokens: 10,
      droppedPairs: 0,
      systemInContext: n < 3,
    });
    const meta = { policy: "sliding" as const, system: "p", contextTokens: 40 };
    const prompted = summariseDrift(
      [
        { seed: 1, turns: [turn(1, 1), turn(2, 1), turn(3, 0), turn(4, 0)] },
        { seed: 2, turns: [turn(1, 1), turn(2, 0), turn(3, 0), turn(4, 0)] },
      ],
      meta,
    );
    expect(prompted.first).toBe(1);
    expect(prompted.last).toBe(0);
    expect(prompted.averageDrift.mean).toBeCloseTo((0.5 + 0.75) / 2, 12);
    expect(prompted.finalDrift).toEqual({ mean: 1, low: 1, high: 1 });
    expect(prompted.systemLostAt).toBe(3);
    const baked = summariseDrift(
      [
        { seed: 1, turns: [turn(1, 1), turn(2, 1), turn(3, 1), turn(4, 0)] },
        { seed: 2, turns: [turn(1, 1), turn(2, 1), turn(3, 1), turn(4, 1)] },
      ],
      { ...meta, system: null },
    );
    expect(compareDrift(prompted, baked).relativeReduction).toBeCloseTo(1 - 0.125 / 0.625, 12);
    // R: t.test(c(1, 2, 3, 4))$conf.int = 0.4457397 4.5542603
    const ci = meanInterval([1, 2, 3, 4]);
    expect(ci.low).toBeCloseTo(0.4457397, 3);
    expect(ci.high).toBeCloseTo(4.5542603, 3);
  });
});
