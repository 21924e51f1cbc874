/**
 * The HTTP server: OpenAI's `POST /v1/chat/completions`, `POST /v1/completions` and
 * `GET /v1/models` (plus `GET /health` and `GET /stats`) over one model, on node:http.
 *
 *   limits      a body over `maxBodyBytes` → 413; `max_tokens` over `maxTokens` or past the
 *               context window → 400; more than `maxQueue` sequences waiting → 429 with
 *               Retry-After
 *   errors      OpenAI's shape, `{error: {message, type, param, code}}`, naming the field
 *   streaming   `stream: true` → server-sent events, one chunk per produced token (text held
 *               back while it may still become a stop string), then `data: [DONE]`
 *   shutdown    `close()` stops accepting connections, lets every admitted request finish,
 *               then resolves
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { GPT } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import { Engine, type EngineStats, type Sequence, type SequenceSpec } from "./engine.js";
import { ServeError } from "./errors.js";

export interface ServeOptions {
  /** The name `GET /v1/models` lists and replies carry (default "forge"). */
  name?: string;
  /** Default 127.0.0.1: only this machine can connect unless told otherwise. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** The most sequences in one forward pass (default 16). */
  maxBatch?: number;
  /** The most sequences waiting to join the batch; more → 429 (default 64). */
  maxQueue?: number;
  /** The largest request body in bytes; larger → 413 (default 1 MiB). */
  maxBodyBytes?: number;
  /** The largest `max_tokens` a request may ask for (default 512). */
  maxTokens?: number;
  /** The largest `n` (default 8). */
  maxN?: number;
  /** Seconds a 429 tells the client to wait (default 1). */
  retryAfterSeconds?: number;
}

export interface RunningServer {
  /** `http://host:port`, the port the one bound. */
  readonly url: string;
  readonly port: number;
  readonly engine: Engine;
  readonly http: Server;
  /** The engine's counters and the server's own. */
  stats(): ServeStats;
  /** Stop accepting; resolves once every admitted request has been answered. */
  close(): Promise<void>;
}

export interface ServeStats extends EngineStats {
  requests: number;
  /** Requests answered 429. */
  rejected: number;
  /** Requests being answered. */
  inFlight: number;
}

/** An OpenAI-style refusal. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly type = "invalid_request_error",
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, error: HttpError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendJson(
    res,
    error.status,
    {
      error: {
        message: error.message,
        type: error.type,
        param: error.param,
        code: error.status === 429 ? "rate_limit_exceeded" : null,
      },
    },
    error.headers,
  );
}

/** The request body, refused past `limit` bytes (413) and when it is not a JSON object (400). */
function readBody(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const tooLarge = () =>
      new HttpError(413, `the request body is larger than the server's limit of ${limit} bytes`);
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > limit) {
        refused = true;
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", reject);
    req.on("end", () => {
      if (refused) return;
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (error) {
        reject(new HttpError(400, `the request body is not JSON: ${(error as Error).message}`));
        return;
      }
      if (typeof body !== "object" || body === null || Array.isArray(body))
        reject(new HttpError(400, "the request body must be a JSON object"));
      else resolve(body as Record<string, unknown>);
    });
  });
}

/** The checked settings of a chat or text completion request. */
interface Generation {
  promptIds: number[];
  maxTokens: number;
  temperature: number;
  topP?: number;
  seed: number;
  stop: string[];
  n: number;
  stream: boolean;
  includeUsage: boolean;
  /** undefined: no log-probabilities. */
  topLogprobs?: number;
}

function optionalNumber(
  body: Record<string, unknown>,
  field: string,
  check: (n: number) => boolean,
  expected: string,
): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || !check(value))
    throw new HttpError(400, `${field} must be ${expected}; got ${JSON.stringify(value)}`, field);
  return value;
}

function optionalBoolean(body: Record<string, unknown>, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean")
    throw new HttpError(400, `${field} must be true or false; got ${JSON.stringify(value)}`, field);
  return value;
}

const ROLES = new Set(["system", "user", "assistant"]);

/** OpenAI messages → forge's: content a string or an array of text parts. */
function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new HttpError(400, "messages must be a non-empty array of {role, content}", "messages");
  return value.map((message, i) => {
    const param = `messages[${i}]`;
    if (typeof message !== "object" || message === null)
      throw new HttpError(400, `${param} must be an object {role, content}`, param);
    const { role, content } = message as { role?: unknown; content?: unknown };
    if (typeof role !== "string" || !ROLES.has(role))
      throw new HttpError(
        400,
        `${param}.role must be "system", "user" or "assistant"; got ${JSON.stringify(role)}`,
        `${param}.role`,
      );
    let text: string;
    if (typeof content === "string") text = content;
    else if (
      Array.isArray(content) &&
      content.every(
        (part) =>
          typeof part === "object" &&
          part !== null &&
          (part as { type?: unknown }).type === "text" &&
          typeof (part as { text?: unknown }).text === "string",
      )
    )
      text = content.map((part) => (part as { text: string }).text).join("");
    else
      throw new HttpError(
        400,
        `${param}.content must be a string or an array of {type: "text", text} parts`,
        `${param}.content`,
      );
    return { role: role as ChatMessage["role"], content: text };
  });
}

function parseStop(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const stops = typeof value === "string" ? [value] : value;
  if (
    !Array.isArray(stops) ||
    stops.length > 4 ||
    !stops.every((s) => typeof s === "string" && s.length > 0)
  )
    throw new HttpError(
      400,
      `stop must be a non-empty string or an array of at most 4 of them; got ${JSON.stringify(value)}`,
      "stop",
    );
  return stops as string[];
}

/** The model's tokens as OpenAI names them: the text of the token, and its bytes. */
function tokenEntry(tokenizer: Tokenizer, id: number, logprob: number) {
  return {
    token: tokenizer.decode([id]),
    logprob,
    bytes: Array.from(tokenizer.tokenBytesOf(id)),
  };
}

/** The text a stream may send so far: never a partial character, never a possible stop string. */
function safeText(sequence: Sequence): string {
  if (sequence.finishReason !== null) return sequence.text;
  let text = sequence.text;
  while (text.endsWith("\uFFFD")) text = text.slice(0, -1);
  const stops = sequence.spec.stop;
  if (stops.length > 0) {
    // hold back any suffix that begins a stop string
    let hold = 0;
    for (const stop of stops)
      for (let len = Math.min(stop.length - 1, text.length); len > hold; len--)
        if (text.endsWith(stop.slice(0, len))) {
          hold = len;
          break;
        }
    text = text.slice(0, text.length - hold);
  }
  return text;
}

/** Start serving `model` (with its tokenizer). Resolves once it listens. */
export async function serve(
  model: GPT,
  tokenizer: Tokenizer,
  options: ServeOptions = {},
): Promise<RunningServer> {
  const name = options.name ?? "forge";
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 8000;
  const integer = (value: number | undefined, fallback: number, field: string, min: number) => {
    const v = value ?? fallback;
    if (!Number.isInteger(v) || v < min)
      throw new ServeError("E_INPUT", `${field} must be an integer ≥ ${min}; got ${value}`);
    return v;
  };
  integer(port, 8000, "port", 0);
  if (port > 65535) throw new ServeError("E_INPUT", `port must be at most 65535; got ${port}`);
  const maxQueue = integer(options.maxQueue, 64, "maxQueue", 1);
  const maxBodyBytes = integer(options.maxBodyBytes, 1 << 20, "maxBodyBytes", 1);
  const maxTokens = integer(options.maxTokens, 512, "maxTokens", 1);
  const maxN = integer(options.maxN, 8, "maxN", 1);
  const retryAfter = integer(options.retryAfterSeconds, 1, "retryAfterSeconds", 0);
  const engine = new Engine(model, tokenizer, {
    maxBatch: integer(options.maxBatch, 16, "maxBatch", 1),
  });
  const created = Math.floor(Date.now() / 1000);
  const { blockSize } = model.config;
  const counters = { requests: 0, rejected: 0, inFlight: 0 };
  const stopIds = tokenizer.stopIds();
  const bannedIds = tokenizer.bannedIds();

  const checkModel = (body: Record<string, unknown>) => {
    if (body.model !== undefined && body.model !== null && body.model !== name)
      throw new HttpError(
        404,
        `model ${JSON.stringify(body.model)} is not served here; this server serves "${name}"`,
        "model",
        "not_found_error",
      );
  };

  /** Sampling fields shared by both endpoints. */
  const generation = (
    body: Record<string, unknown>,
    promptIds: number[],
    topLogprobs: number | undefined,
  ): Generation => {
    const temperature =
      optionalNumber(body, "temperature", (n) => n >= 0 && n <= 2, "a number in [0, 2]") ?? 1;
    const topP = optionalNumber(body, "top_p", (n) => n > 0 && n <= 1, "a number in (0, 1]");
    const room = blockSize - promptIds.length;
    if (room < 1)
      throw new HttpError(
        400,
        `the prompt is ${promptIds.length} tokens; the model's context window is ${blockSize} tokens, with room for at least one more`,
        "messages" in body ? "messages" : "prompt",
      );
    const requested = optionalNumber(
      body,
      "max_tokens",
      (n) => Number.isInteger(n) && n >= 1 && n <= maxTokens,
      `an integer in [1, ${maxTokens}]`,
    );
    if (requested !== undefined && requested > room)
      throw new HttpError(
        400,
        `max_tokens ${requested} and the prompt's ${promptIds.length} tokens exceed the model's context window of ${blockSize} tokens; ask for at most ${room}`,
        "max_tokens",
      );
    const seed =
      optionalNumber(
        body,
        "seed",
        (n) => Number.isInteger(n) && Math.abs(n) <= Number.MAX_SAFE_INTEGER,
        "an integer",
      ) ?? randomBytes(4).readUInt32LE(0);
    const n =
      optionalNumber(
        body,
        "n",
        (v) => Number.isInteger(v) && v >= 1 && v <= maxN,
        `an integer in [1, ${maxN}]`,
      ) ?? 1;
    const streamOptions = body.stream_options;
    if (
      streamOptions !== undefined &&
      streamOptions !== null &&
      (typeof streamOptions !== "object" || Array.isArray(streamOptions))
    )
      throw new HttpError(400, "stream_options must be an object", "stream_options");
    const includeUsage =
      optionalBoolean((streamOptions ?? {}) as Record<string, unknown>, "include_usage") ?? false;
    return {
      promptIds,
      maxTokens: requested ?? Math.min(maxTokens, room),
      temperature,
      ...(topP !== undefined ? { topP } : {}),
      seed,
      stop: parseStop(body.stop),
      n,
      stream: optionalBoolean(body, "stream") ?? false,
      includeUsage,
      ...(topLogprobs !== undefined ? { topLogprobs } : {}),
    };
  };

  const specs = (
    g: Generation,
    signal: AbortSignal,
    onToken?: (index: number, s: Sequence) => void,
  ): SequenceSpec[] =>
    Array.from({ length: g.n }, (_, i) => ({
      promptIds: g.promptIds,
      maxTokens: g.maxTokens,
      temperature: g.temperature,
      ...(g.topP !== undefined ? { topP: g.topP } : {}),
      // choice i samples its own stream: seed + i
      seed: g.seed + i,
      stopIds,
      bannedIds,
      stop: g.stop,
      ...(g.topLogprobs !== undefined ? { topLogprobs: g.topLogprobs } : {}),
      ...(onToken ? { onToken: (s: Sequence) => onToken(i, s) } : {}),
      signal,
    }));

  const admit = (g: Generation) => {
    if (engine.stats.waiting + g.n > maxQueue) {
      counters.rejected++;
      throw new HttpError(
        429,
        `the server's queue is full (${maxQueue} sequences waiting); retry after ${retryAfter} s`,
        null,
        "rate_limit_error",
        { "retry-after": String(retryAfter) },
      );
    }
  };

  const usage = (g: Generation, sequences: readonly Sequence[]) => {
    const completion = sequences.reduce((sum, s) => sum + s.tokens.length, 0);
    return {
      prompt_tokens: g.promptIds.length,
      completion_tokens: completion,
      total_tokens: g.promptIds.length + completion,
    };
  };

  /** The produced tokens that carry text (the stop id left out). */
  const textTokens = (s: Sequence) =>
    s.finishReason === "stop" && stopIds.includes(s.tokens.at(-1)!)
      ? s.logprobs.slice(0, s.tokens.length - 1)
      : s.logprobs;

  const chatLogprobs = (entries: Sequence["logprobs"]) => ({
    content: entries.map((e) => ({
      ...tokenEntry(tokenizer, e.id, e.logprob),
      top_logprobs: e.top.map((t) => tokenEntry(tokenizer, t.id, t.logprob)),
    })),
  });

  const completionLogprobs = (entries: Sequence["logprobs"], offset: number) => {
    const tokens = entries.map((e) => tokenizer.decode([e.id]));
    const offsets: number[] = [];
    let at = offset;
    for (const t of tokens) {
      offsets.push(at);
      at += t.length;
    }
    return {
      tokens,
      token_logprobs: entries.map((e) => e.logprob),
      top_logprobs: entries.map((e) =>
        Object.fromEntries(e.top.map((t) => [tokenizer.decode([t.id]), t.logprob])),
      ),
      text_offset: offsets,
    };
  };

  /** Run a request: whole, or streamed as SSE; `kind` decides the shapes. */
  const complete = async (kind: "chat" | "text", g: Generation, res: ServerResponse) => {
    admit(g);
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomBytes(12).toString("hex")}`;
    const object = kind === "chat" ? "chat.completion" : "text_completion";
    const owner = {};
    // a client that goes away before its reply is complete: its sequences are dropped
    const gone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    let sequences: Sequence[];
    if (!g.stream) {
      const promises = engine.submit(specs(g, gone.signal), owner);
      sequences = await Promise.all(promises);
      const choices = sequences.map((s, index) => {
        const entries = textTokens(s);
        return kind === "chat"
          ? {
              index,
              message: { role: "assistant", content: s.text },
              finish_reason: s.finishReason,
              logprobs: g.topLogprobs !== undefined ? chatLogprobs(entries) : null,
            }
          : {
              index,
              text: s.text,
              finish_reason: s.finishReason,
              logprobs: g.topLogprobs !== undefined ? completionLogprobs(entries, 0) : null,
            };
      });
      sendJson(res, 200, {
        id,
        object,
        created: now(),
        model: name,
        choices,
        usage: usage(g, sequences),
      });
      return;
    }

    // streamed: one chunk per token that changes what may be sent
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    const chunkObject = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const send = (data: unknown) => {
      if (!res.writableEnded) res.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    const sent = Array.from({ length: g.n }, () => ({ text: "", logprobs: 0 }));
    const chunk = (choice: Record<string, unknown>) =>
      send({ id, object: chunkObject, created: now(), model: name, choices: [choice] });
    if (kind === "chat")
      for (let index = 0; index < g.n; index++)
        chunk({
          index,
          delta: { role: "assistant", content: "" },
          logprobs: null,
          finish_reason: null,
        });
    const flush = (index: number, s: Sequence) => {
      const text = safeText(s);
      const mine = sent[index]!;
      const delta = text.startsWith(mine.text) ? text.slice(mine.text.length) : "";
      const entries = textTokens(s);
      const newEntries = g.topLogprobs !== undefined ? entries.slice(mine.logprobs) : [];
      const finish = s.finishReason;
      if (delta === "" && newEntries.length === 0 && finish === null) return;
      mine.text += delta;
      mine.logprobs += newEntries.length;
      const logprobs =
        g.topLogprobs === undefined
          ? null
          : kind === "chat"
            ? chatLogprobs(newEntries)
            : completionLogprobs(newEntries, mine.text.length - delta.length);
      if (kind === "chat") {
        if (delta !== "" || newEntries.length > 0)
          chunk({ index, delta: { content: delta }, logprobs, finish_reason: null });
        if (finish !== null) chunk({ index, delta: {}, logprobs: null, finish_reason: finish });
      } else chunk({ index, text: delta, logprobs, finish_reason: finish });
    };
    const promises = engine.submit(specs(g, gone.signal, flush), owner);
    sequences = await Promise.all(promises);
    if (g.includeUsage)
      send({
        id,
        object: chunkObject,
        created: now(),
        model: name,
        choices: [],
        usage: usage(g, sequences),
      });
    if (!res.writableEnded) res.end("data: [DONE]\n\n");
  };

  const chatCompletions = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req, maxBodyBytes);
    checkModel(body);
    const messages = parseMessages(body.messages);
    const logprobs = optionalBoolean(body, "logprobs") ?? false;
    const top = optionalNumber(
      body,
      "top_logprobs",
      (n) => Number.isInteger(n) && n >= 0 && n <= 20,
      "an integer in [0, 20]",
    );
    if (top !== undefined && !logprobs)
      throw new HttpError(400, "top_logprobs needs logprobs: true", "top_logprobs");
    let promptIds: number[];
    try {
      promptIds = tokenizer.promptIds(messages);
    } catch (error) {
      throw new HttpError(
        400,
        `messages cannot be rendered: ${(error as Error).message}`,
        "messages",
      );
    }
    await complete("chat", generation(body, promptIds, logprobs ? (top ?? 0) : undefined), res);
  };

  const completions = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req, maxBodyBytes);
    checkModel(body);
    let prompt = body.prompt;
    if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string")
      prompt = prompt[0];
    if (typeof prompt !== "string" || prompt.length === 0)
      throw new HttpError(400, "prompt must be a non-empty string", "prompt");
    if (optionalBoolean(body, "echo"))
      throw new HttpError(400, "echo is not supported by forge serve", "echo");
    const top = optionalNumber(
      body,
      "logprobs",
      (n) => Number.isInteger(n) && n >= 0 && n <= 20,
      "an integer in [0, 20]",
    );
    const promptIds = tokenizer.encode(prompt, {
      disallowedSpecial: "none",
      allowedSpecial: "none",
    });
    await complete("text", generation(body, promptIds, top), res);
  };

  const route = async (req: IncomingMessage, res: ServerResponse) => {
    const url = (req.url ?? "/").split("?")[0]!.replace(/\/+$/, "") || "/";
    const routes: Record<string, Record<string, () => Promise<void> | void>> = {
      "/v1/chat/completions": { POST: () => chatCompletions(req, res) },
      "/v1/completions": { POST: () => completions(req, res) },
      "/v1/models": {
        GET: () =>
          sendJson(res, 200, {
            object: "list",
            data: [
              { id: name, object: "model", created, owned_by: "forge", max_model_len: blockSize },
            ],
          }),
      },
      "/health": { GET: () => sendJson(res, 200, { status: "ok" }) },
      "/stats": { GET: () => sendJson(res, 200, stats()) },
    };
    const methods = routes[url];
    if (!methods)
      throw new HttpError(
        404,
        `no route ${req.method} ${url}; this server answers POST /v1/chat/completions, POST /v1/completions, GET /v1/models`,
        null,
        "not_found_error",
      );
    const handler = methods[req.method ?? ""];
    if (!handler)
      throw new HttpError(
        405,
        `${url} takes ${Object.keys(methods).join(", ")}; got ${req.method}`,
      );
    await handler();
  };

  const stats = (): ServeStats => ({ ...engine.stats, ...counters });

  const http = createServer((req, res) => {
    counters.requests++;
    counters.inFlight++;
    res.on("close", () => {
      counters.inFlight--;
    });
    route(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        if (error.status === 413) res.setHeader("connection", "close");
        sendError(res, error);
      } else if (ServeError.isInstance(error) && error.category === "input")
        sendError(res, new HttpError(400, error.message));
      else
        sendError(
          res,
          new HttpError(500, `internal error: ${(error as Error).message}`, null, "server_error"),
        );
    });
  });
  // no request may hold a connection open without sending (slow clients)
  http.requestTimeout = 5 * 60_000;

  await new Promise<void>((resolve, reject) => {
    http.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        new ServeError(
          "E_IO",
          `cannot listen on ${host}:${port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`,
          { cause: error },
        ),
      ),
    );
    http.listen(port, host, () => resolve());
  });
  const bound = (http.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${bound}`,
    port: bound,
    engine,
    http,
    stats,
    close() {
      closing ??= new Promise<void>((resolve) => {
        http.close(() => resolve());
        // idle keep-alive connections would hold close() open; busy ones end after their reply
        http.closeIdleConnections();
        const sweep = setInterval(() => http.closeIdleConnections(), 100);
        http.once("close", () => clearInterval(sweep));
      }).then(() => engine.idle());
      return closing;
    },
  };
}

const now = () => Math.floor(Date.now() / 1000);
