/**
 * The OpenAI client against real HTTP servers on 127.0.0.1 (port 0), each scripted to answer
 * what a test needs: retries on 429/503 (Retry-After honoured), refusals not retried, a
 * server that comes up after the first attempts, timeouts, the concurrency limit.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { OpenAIClient, remoteEvalModel, retryAfterMs } from "./openai.js";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

async function serve(handler: Handler, port = 0): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on("end", () => handler(req, body, res));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

const reply = (content: string) => ({
  id: "x",
  object: "chat.completion",
  created: 0,
  model: "m",
  choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
});

describe("OpenAIClient", () => {
  it("retries 429 and 503, honouring Retry-After, then returns the reply", async () => {
    let calls = 0;
    const { url } = await serve((_req, _body, res) => {
      calls++;
      if (calls === 1) json(res, 429, { error: { message: "queue full" } }, { "retry-after": "0" });
      else if (calls === 2) json(res, 503, { error: { message: "busy" } });
      else json(res, 200, reply("hi"));
    });
    const retries: string[] = [];
    const client = new OpenAIClient(url, {
      backoffMs: 1,
      onRetry: (info) => retries.push(`${info.attempt}:${info.delayMs}:${info.reason}`),
    });
    const completion = await client.chatCompletion({ messages: [{ role: "user", content: "x" }] });
    expect(completion.choices[0]!.message.content).toBe("hi");
    expect(calls).toBe(3);
    expect(retries[0]).toBe("1:0:HTTP 429: queue full");
    expect(retries[1]).toMatch(/^2:.*HTTP 503: busy$/);
  });

  it("does not retry a refusal, and the error names the URL, the status and the message", async () => {
    let calls = 0;
    const { url } = await serve((_req, _body, res) => {
      calls++;
      json(res, 400, { error: { message: "temperature must be ≥ 0", param: "temperature" } });
    });
    const client = new OpenAIClient(url, { backoffMs: 1 });
    const error = (await client
      .chatCompletion({ messages: [], temperature: -1 })
      .catch((e: unknown) => e)) as Error & { category: string };
    expect(error.message).toBe(
      `POST ${url}/v1/chat/completions: HTTP 400: temperature must be ≥ 0`,
    );
    expect(error.category).toBe("input");
    expect(calls).toBe(1);
  });

  it("gives up after maxAttempts, saying how many", async () => {
    const { url } = await serve((_req, _body, res) => json(res, 500, { error: "boom" }));
    const client = new OpenAIClient(url, { backoffMs: 1, maxAttempts: 3 });
    await expect(client.models()).rejects.toThrow(
      `GET ${url}/v1/models: HTTP 500: boom (after 3 attempts)`,
    );
  });

  it("retries connection errors until the server comes up", async () => {
    // take a free port, close it, and open the server there only after the first failures
    const probe = await serve(() => {});
    const port = (probe.server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.server.close(() => resolve()));
    let failures = 0;
    const client = new OpenAIClient(`http://127.0.0.1:${port}/v1/`, {
      backoffMs: 20,
      maxAttempts: 10,
      onRetry: (info) => {
        failures++;
        expect(info.reason).toMatch(/^cannot connect/);
        if (failures === 2)
          void serve((_req, _body, res) => json(res, 200, { object: "list", data: [] }), port);
      },
    });
    expect(client.baseUrl).toBe(`http://127.0.0.1:${port}`);
    await expect(client.models()).resolves.toEqual({ object: "list", data: [] });
    expect(failures).toBeGreaterThanOrEqual(2);
  });

  it("aborts an attempt after timeoutMs", async () => {
    const { url } = await serve(() => {
      // never answers
    });
    const client = new OpenAIClient(url, { timeoutMs: 50, maxAttempts: 2, backoffMs: 1 });
    await expect(client.models()).rejects.toThrow(
      `GET ${url}/v1/models: no reply within 50 ms (after 2 attempts)`,
    );
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    let inFlight = 0;
    let most = 0;
    const { url } = await serve((_req, _body, res) => {
      inFlight++;
      most = Math.max(most, inFlight);
      setTimeout(() => {
        inFlight--;
        json(res, 200, reply("ok"));
      }, 20);
    });
    const client = new OpenAIClient(url, { concurrency: 3 });
    await Promise.all(
      Array.from({ length: 10 }, () =>
        client.chatCompletion({ messages: [{ role: "user", content: "x" }] }),
      ),
    );
    expect(most).toBe(3);
  });

  it("refuses a base URL that is not http(s)", () => {
    expect(() => new OpenAIClient("ftp://x")).toThrow(/must be http:\/\/ or https:\/\//);
    expect(() => new OpenAIClient("nope")).toThrow(/is not a URL/);
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    expect(retryAfterMs("2")).toBe(2000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(retryAfterMs("soon")).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });
});

describe("remoteEvalModel", () => {
  it("answers each conversation with one chat completion, trimmed, with the call's settings", async () => {
    const bodies: Record<string, unknown>[] = [];
    const { url } = await serve((req, body, res) => {
      if (req.url === "/v1/models")
        return json(res, 200, { object: "list", data: [{ id: "tiny", object: "model" }] });
      const request = JSON.parse(body) as { messages: { content: string }[] };
      bodies.push(request);
      json(res, 200, reply(`  ${request.messages.at(-1)!.content.toUpperCase()}\n`));
    });
    const model = await remoteEvalModel(url);
    expect(model.name).toBe("tiny");
    expect(model.id).toBe(`${url}#tiny`);
    const out = await model.generate(
      [[{ role: "user", content: "a" }], [{ role: "user", content: "b" }]],
      { maxNewTokens: 7, temperature: 0, seed: 3 },
    );
    expect(out).toEqual(["A", "B"]);
    expect(bodies[0]).toMatchObject({ model: "tiny", max_tokens: 7, temperature: 0, seed: 3 });
    await expect(remoteEvalModel(url, { model: "other" })).rejects.toThrow(
      `${url} does not serve "other"; it serves "tiny"`,
    );
  });
});
