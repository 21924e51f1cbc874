/**
 * The server in-process over forge-tiny, spoken to over real HTTP on 127.0.0.1 (port 0):
 * replies, streaming, log-probabilities against the model's own, batching across clients
 * (from the engine's counters), the queue, the limits, the refusals, closing, and the client
 * surviving a restart.
 */
import { OpenAIClient } from "@forge/eval";
import { type GPT, generate, initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import type { Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, serve } from "./server.js";

let model: GPT;
let tokenizer: Tokenizer;
const running: RunningServer[] = [];

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const loaded = await loadModel(FORGE_TINY_DIR);
  model = loaded.model;
  tokenizer = loaded.tokenizer!;
});

afterAll(async () => {
  await Promise.all(running.map((s) => s.close()));
  model.dispose();
});

async function start(options: Parameters<typeof serve>[2] = {}): Promise<RunningServer> {
  const server = await serve(model, tokenizer, { port: 0, name: "forge-tiny", ...options });
  running.push(server);
  return server;
}

/** What the tests read from replies, chunks and errors. */
interface Body {
  choices: {
    index: number;
    text: string;
    message: { content: string };
    delta: { role?: string; content?: string };
    finish_reason: string | null;
    logprobs: {
      content: {
        token: string;
        logprob: number;
        bytes: number[];
        top_logprobs: { token: string; logprob: number; bytes: number[] }[];
      }[];
      tokens: string[];
      token_logprobs: number[];
      top_logprobs: Record<string, number>[];
    };
  }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  error: { message: string; type: string; param: string | null };
}

async function post(
  url: string,
  body: unknown,
): Promise<{ status: number; json: Body; headers: Headers }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return {
    status: response.status,
    json: (await response.json()) as Body,
    headers: response.headers,
  };
}

/** The `data:` payloads of an SSE response, [DONE] included. */
async function events(url: string, body: unknown): Promise<string[]> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(response.headers.get("content-type")).toBe("text/event-stream");
  const text = await response.text();
  return text
    .split("\n\n")
    .filter((block) => block.startsWith("data: "))
    .map((block) => block.slice("data: ".length));
}

const chat = (content: string) => [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content },
];

/** Wait (without a clock) until the engine has `n` sequences waiting. */
async function waitingIs(server: RunningServer, n: number): Promise<void> {
  while (server.stats().waiting < n) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe("forge serve (library)", () => {
  it("answers a chat completion with usage, and lists the model", async () => {
    const server = await start();
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const client = new OpenAIClient(server.url);
    const models = await client.models();
    expect(models.data.map((m) => m.id)).toEqual(["forge-tiny"]);
    const reply = await client.chatCompletion({
      model: "forge-tiny",
      messages: chat("What is 2 + 3?") as never,
      temperature: 0,
      max_tokens: 16,
    });
    expect(reply.object).toBe("chat.completion");
    expect(reply.choices).toHaveLength(1);
    const choice = reply.choices[0]!;
    expect(typeof choice.message.content).toBe("string");
    expect(["stop", "length"]).toContain(choice.finish_reason);
    const promptIds = tokenizer.promptIds(chat("What is 2 + 3?") as never);
    expect(reply.usage!.prompt_tokens).toBe(promptIds.length);
    expect(reply.usage!.completion_tokens).toBeGreaterThan(0);
    expect(reply.usage!.total_tokens).toBe(
      reply.usage!.prompt_tokens + reply.usage!.completion_tokens,
    );
    // greedy: the same reply as the model's own generate()
    const local = generate(model, [promptIds], {
      maxNewTokens: 16,
      temperature: 0,
      stopIds: tokenizer.stopIds(),
      bannedIds: tokenizer.bannedIds(),
    }).tokens[0]!;
    const ids = tokenizer.stopIds().includes(local.at(-1)!) ? local.slice(0, -1) : local;
    expect(choice.message.content).toBe(tokenizer.decode(ids, { skipSpecial: true }));
    expect(reply.usage!.completion_tokens).toBe(local.length);
  });

  it("streams SSE chunks that concatenate to the non-streamed reply for the same seed", async () => {
    const server = await start();
    const url = `${server.url}/v1/chat/completions`;
    for (const extra of [{}, { stop: ["e"] }, { n: 2 }]) {
      const body = {
        messages: chat("Tell me a story."),
        temperature: 1,
        seed: 11,
        max_tokens: 40,
        ...extra,
      };
      const whole = await post(url, body);
      expect(whole.status).toBe(200);
      const data = await events(url, {
        ...body,
        stream: true,
        stream_options: { include_usage: true },
      });
      expect(data.at(-1)).toBe("[DONE]");
      const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Body);
      for (const [index, choice] of whole.json.choices.entries()) {
        const mine = chunks.flatMap((c) => c.choices).filter((c) => c.index === index);
        expect(mine[0]!.delta.role).toBe("assistant");
        expect(mine.map((c) => c.delta.content ?? "").join("")).toBe(choice.message.content);
        expect(mine.at(-1)!.finish_reason).toBe(choice.finish_reason);
      }
      expect(chunks.at(-1)!.usage).toEqual(whole.json.usage);
    }
  });

  it("gives log-probabilities equal to the model's log-softmax over the whole vocabulary", async () => {
    const server = await start();
    const messages = chat("Name a colour.");
    const { json } = await post(`${server.url}/v1/chat/completions`, {
      messages,
      temperature: 0.8,
      seed: 5,
      max_tokens: 12,
      logprobs: true,
      top_logprobs: 20,
    });
    const content = json.choices[0]!.logprobs.content;
    expect(content.length).toBeGreaterThan(0);
    // the ids back from their bytes
    const byBytes = new Map<string, number>();
    for (let id = 0; id < model.config.vocabSize; id++)
      byBytes.set(Array.from(tokenizer.tokenBytesOf(id)).join(","), id);
    const ids = content.map((c) => byBytes.get(c.bytes.join(","))!);
    const promptIds = tokenizer.promptIds(messages as never);
    const full = tf.tidy(() =>
      tf.logSoftmax(model.run(tf.tensor2d([[...promptIds, ...ids]], undefined, "int32")).logits),
    );
    const values = (await full.array()) as number[][][];
    full.dispose();
    content.forEach((entry, i) => {
      const row = values[0]![promptIds.length - 1 + i]!;
      expect(Math.abs(entry.logprob - row[ids[i]!]!)).toBeLessThan(1e-4);
      expect(entry.top_logprobs).toHaveLength(20);
      const best = [...row.keys()].sort((a, b) => row[b]! - row[a]!).slice(0, 20);
      entry.top_logprobs.forEach((alt, k) => {
        expect(Math.abs(alt.logprob - row[best[k]!]!)).toBeLessThan(1e-4);
      });
      expect(entry.token).toBe(tokenizer.decode([ids[i]!]));
    });
    // /v1/completions: the same numbers in the legacy shape
    const prompt = "The cat";
    const text = await post(`${server.url}/v1/completions`, {
      prompt,
      temperature: 0,
      max_tokens: 6,
      logprobs: 3,
    });
    expect(text.status).toBe(200);
    const lp = text.json.choices[0]!.logprobs;
    expect(lp.tokens.join("")).toBe(text.json.choices[0]!.text);
    const textPrompt = tokenizer.encode(prompt);
    const textIds = lp.tokens.map(
      (t: string) => tokenizer.encode(t, { disallowedSpecial: "none" })[0]!,
    );
    const textFull = tf.tidy(() =>
      tf.logSoftmax(
        model.run(tf.tensor2d([[...textPrompt, ...textIds]], undefined, "int32")).logits,
      ),
    );
    const textValues = (await textFull.array()) as number[][][];
    textFull.dispose();
    lp.token_logprobs.forEach((value: number, i: number) => {
      expect(
        Math.abs(value - textValues[0]![textPrompt.length - 1 + i]![textIds[i]!]!),
      ).toBeLessThan(1e-4);
      expect(Object.keys(lp.top_logprobs[i]!)).toHaveLength(3);
    });
  });

  it("batches concurrent clients into shared forward passes, each reply as if served alone", async () => {
    const server = await start();
    const questions = ["What is 2 + 3?", "Hello!", "Write a haiku about the sea.", "Who are you?"];
    const body = (q: string) => ({ messages: chat(q), temperature: 0, max_tokens: 20 });
    const alone: string[] = [];
    for (const q of questions)
      alone.push(
        (await post(`${server.url}/v1/chat/completions`, body(q))).json.choices[0]!.message.content,
      );
    expect(server.stats().sharedPasses).toBe(0);

    const before = tf.memory().numTensors;
    server.engine.pause();
    const replies = questions.map((q) => post(`${server.url}/v1/chat/completions`, body(q)));
    await waitingIs(server, questions.length);
    server.engine.resume();
    const together = (await Promise.all(replies)).map((r) => r.json.choices[0]!.message.content);
    expect(together).toEqual(alone);
    const stats = server.stats();
    expect(stats.maxBatch).toBe(questions.length);
    expect(stats.sharedPasses).toBeGreaterThan(0);
    await server.engine.idle();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("answers 429 with Retry-After when the queue is full, and serves the queued requests", async () => {
    const server = await start({ maxQueue: 2, retryAfterSeconds: 3 });
    server.engine.pause();
    const queued = [0, 1].map((i) =>
      post(`${server.url}/v1/chat/completions`, {
        messages: chat(`q${i}`),
        max_tokens: 4,
        seed: i,
      }),
    );
    await waitingIs(server, 2);
    const refused = await post(`${server.url}/v1/chat/completions`, {
      messages: chat("q2"),
      max_tokens: 4,
    });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("3");
    expect(refused.json.error.type).toBe("rate_limit_error");
    expect(refused.json.error.message).toMatch(/queue is full/);
    server.engine.resume();
    for (const r of await Promise.all(queued)) expect(r.status).toBe(200);
    expect(server.stats().rejected).toBe(1);
  });

  it("refuses an oversized body with 413, and bad fields with 400 naming the field", async () => {
    const server = await start({ maxBodyBytes: 2000, maxTokens: 64 });
    const url = `${server.url}/v1/chat/completions`;
    const big = await post(url, { messages: chat("x".repeat(5000)) });
    expect(big.status).toBe(413);
    expect(big.json.error.message).toMatch(/larger than the server's limit of 2000 bytes/);

    const cases: [unknown, string | null, RegExp][] = [
      [
        { messages: chat("a"), temperature: -1 },
        "temperature",
        /temperature must be a number in \[0, 2\]; got -1/,
      ],
      [{ messages: chat("a"), top_p: 0 }, "top_p", /top_p must be a number in \(0, 1\]/],
      [
        { messages: chat("a"), max_tokens: 65 },
        "max_tokens",
        /max_tokens must be an integer in \[1, 64\]/,
      ],
      [{ messages: chat("a"), n: 0 }, "n", /n must be an integer in \[1, 8\]/],
      [{ messages: chat("a"), seed: 1.5 }, "seed", /seed must be an integer/],
      [{ messages: chat("a"), stop: [1] }, "stop", /stop must be/],
      [{ messages: chat("a"), stream: "yes" }, "stream", /stream must be true or false/],
      [{ messages: chat("a"), logprobs: true, top_logprobs: 21 }, "top_logprobs", /\[0, 20\]/],
      [{ messages: chat("a"), top_logprobs: 2 }, "top_logprobs", /needs logprobs: true/],
      [{ messages: [] }, "messages", /messages must be a non-empty array/],
      [
        { messages: [{ role: "robot", content: "a" }] },
        "messages[0].role",
        /messages\[0\]\.role must be/,
      ],
      [
        { messages: [{ role: "user", content: 3 }] },
        "messages[0].content",
        /content must be a string/,
      ],
      ["{not json", null, /the request body is not JSON/],
      ["[1]", null, /must be a JSON object/],
    ];
    for (const [body, param, message] of cases) {
      const { status, json } = await post(url, body);
      expect(status, JSON.stringify(body)).toBe(400);
      expect(json.error.type).toBe("invalid_request_error");
      expect(json.error.param).toBe(param);
      expect(json.error.message).toMatch(message);
    }
    const long = await post(url, { messages: chat("word ".repeat(300)), max_tokens: 10 });
    expect(long.status).toBe(400);
    expect(long.json.error.message).toMatch(/context window is 256 tokens/);
    const room = await post(url, { messages: chat("word ".repeat(220)), max_tokens: 64 });
    expect(room.status).toBe(400);
    expect(room.json.error.param).toBe("max_tokens");
    expect(room.json.error.message).toMatch(
      /exceed the model's context window of 256 tokens; ask for at most \d+/,
    );
    const other = await post(url, { model: "gpt-4", messages: chat("a") });
    expect(other.status).toBe(404);
    expect(other.json.error.param).toBe("model");
    const text = await post(`${server.url}/v1/completions`, { prompt: "" });
    expect(text.json.error.param).toBe("prompt");
    const missing = await fetch(`${server.url}/v1/nothing`);
    expect(missing.status).toBe(404);
    const method = await fetch(url);
    expect(method.status).toBe(405);
  });

  it("close() drains an in-flight streamed request, then refuses connections", async () => {
    const server = await start();
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: chat("Tell me a long story."),
        max_tokens: 60,
        seed: 1,
        stream: true,
      }),
    });
    const reader = response.body!.getReader();
    const first = await reader.read(); // the request is in flight
    expect(first.done).toBe(false);
    const closed = server.close();
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await closed;
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    await expect(fetch(`${server.url}/v1/models`)).rejects.toThrow();
  });

  it("drops a request whose client went away", async () => {
    const server = await start();
    server.engine.pause();
    const controller = new AbortController();
    const request = fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: chat("Go on."), max_tokens: 50 }),
      signal: controller.signal,
    }).catch((error: unknown) => error);
    await waitingIs(server, 1);
    controller.abort();
    expect(await request).toBeInstanceOf(Error);
    while (server.stats().inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    server.engine.resume();
    await server.engine.idle();
    const stats = server.stats();
    expect(stats.cancelled).toBe(1);
    expect(stats.tokens).toBe(0);
    expect(stats.running + stats.waiting).toBe(0);
  });

  it("the client retries across a server restart", async () => {
    const first = await start();
    const port = first.port;
    await first.close();
    let restarted: Promise<RunningServer> | undefined;
    const client = new OpenAIClient(`http://127.0.0.1:${port}`, {
      backoffMs: 50,
      maxAttempts: 20,
      onRetry: () => {
        restarted ??= start({ port });
      },
    });
    const reply = await client.chatCompletion({
      messages: chat("Hi") as never,
      max_tokens: 5,
      seed: 0,
    });
    expect(reply.choices[0]!.message.role).toBe("assistant");
    expect(restarted).toBeDefined();
    await (await restarted!).close();
  });
});
