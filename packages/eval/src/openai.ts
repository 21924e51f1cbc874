/**
 * A client for OpenAI-compatible servers (forge serve, vLLM, llama.cpp's server, Ollama, TGI):
 * `POST /v1/chat/completions`, `POST /v1/completions` and `GET /v1/models` over the global
 * `fetch`, with what a long job against a remote model needs —
 *
 *   retries      connection errors, 408, 429 and 5xx are retried with exponential backoff and
 *                jitter; a `Retry-After` header (seconds or an HTTP date) is honoured
 *   concurrency  at most `concurrency` requests in flight per client; the rest wait their turn
 *   timeouts     each attempt is aborted after `timeoutMs` (AbortController)
 *   errors       EvaluationError("E_MODEL") naming the URL, the status and the server's message
 *
 * `remoteEvalModel` wraps it as @forge/eval's `EvalModel`, so `runTasks` evaluates a served
 * model exactly as it evaluates a local one.
 */
import { EvaluationError } from "./errors.js";
import type { ChatMessage, EvalModel, GenerateOptions } from "./model.js";

/** One alternative token at a position, as OpenAI returns it. */
export interface TopLogprob {
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes (null when the server does not say). */
  bytes: number[] | null;
}

/** A generated token with its log-probability and the most likely alternatives. */
export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

export interface ChatCompletionRequest {
  /** The served model's name (`GET /v1/models`); servers of one model may ignore it. */
  model?: string;
  messages: ChatMessage[];
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  stop?: string | string[];
  seed?: number;
  n?: number;
  /** Return each generated token's log-probability. */
  logprobs?: boolean;
  /** With `logprobs`: the most likely alternatives per position (0–20). */
  top_logprobs?: number;
}

export interface ChatCompletionChoice {
  index: number;
  message: { role: "assistant"; content: string };
  finish_reason: "stop" | "length" | null;
  logprobs?: { content: TokenLogprob[] } | null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage?: Usage;
}

export interface CompletionRequest {
  model?: string;
  prompt: string;
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  stop?: string | string[];
  seed?: number;
  n?: number;
  /** The number of most likely alternatives per position (0–20); set → logprobs returned. */
  logprobs?: number;
}

export interface CompletionChoice {
  index: number;
  text: string;
  finish_reason: "stop" | "length" | null;
  logprobs?: {
    tokens: string[];
    token_logprobs: number[];
    top_logprobs: Record<string, number>[];
    text_offset: number[];
  } | null;
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage?: Usage;
}

export interface ModelList {
  object: "list";
  data: { id: string; object: "model"; created?: number; owned_by?: string }[];
}

export interface OpenAIClientOptions {
  /** Sent as `Authorization: Bearer …` when given. */
  apiKey?: string;
  /** Attempts per request, the first included (default 5). */
  maxAttempts?: number;
  /** The first retry's delay; each further retry doubles it (default 250 ms). */
  backoffMs?: number;
  /** The longest wait between attempts, Retry-After included (default 30 s). */
  maxBackoffMs?: number;
  /** Each attempt is aborted after this long (default 120 s). */
  timeoutMs?: number;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** Told about each retry (for a progress line or a log). */
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
  /** The fetch to use (default the global one). */
  fetch?: typeof fetch;
}

const RETRY_STATUSES = new Set([408, 409, 425, 429, 500, 502, 503, 504]);

/** A `Retry-After` header in milliseconds: seconds or an HTTP date; undefined when absent/bad. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1)
    throw new EvaluationError("E_INPUT", `${name} must be an integer ≥ 1; got ${value}`);
  return value;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0)
    throw new EvaluationError("E_INPUT", `${name} must be a number ≥ 0; got ${value}`);
  return value;
}

/** A counting semaphore: at most `limit` holders at once, the rest queue in order. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The server's own message from an error body (OpenAI's `{error: {message}}`), else the text. */
function serverMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof body.error === "string") return body.error;
    if (body.error && typeof body.error.message === "string") return body.error.message;
    if (typeof body.message === "string") return body.message;
  } catch {
    // not JSON: the text itself
  }
  const line = text.trim().split("\n")[0] ?? "";
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** A client for one OpenAI-compatible base URL (e.g. `http://127.0.0.1:8000` or `…/v1`). */
export class OpenAIClient {
  /** The base URL without a trailing slash or `/v1`. */
  readonly baseUrl: string;
  private readonly options: Required<Omit<OpenAIClientOptions, "apiKey" | "onRetry" | "fetch">> & {
    apiKey?: string;
    onRetry?: OpenAIClientOptions["onRetry"];
    fetch: typeof fetch;
  };
  private readonly limiter: Limiter;

  constructor(baseUrl: string, options: OpenAIClientOptions = {}) {
    let parsed: URL;
    try {
      parsed = new URL(baseUrl);
    } catch {
      throw new EvaluationError(
        "E_INPUT",
        `model URL "${baseUrl}" is not a URL; give one like http://127.0.0.1:8000`,
      );
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      throw new EvaluationError(
        "E_INPUT",
        `model URL "${baseUrl}" must be http:// or https://; got ${parsed.protocol}`,
      );
    this.baseUrl = baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
    this.options = {
      maxAttempts: positiveInteger("maxAttempts", options.maxAttempts, 5),
      backoffMs: nonNegative("backoffMs", options.backoffMs, 250),
      maxBackoffMs: nonNegative("maxBackoffMs", options.maxBackoffMs, 30_000),
      timeoutMs: positiveInteger("timeoutMs", options.timeoutMs, 120_000),
      concurrency: positiveInteger("concurrency", options.concurrency, 8),
      fetch: options.fetch ?? globalThis.fetch,
      ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}),
      ...(options.onRetry !== undefined ? { onRetry: options.onRetry } : {}),
    };
    this.limiter = new Limiter(this.options.concurrency);
  }

  /** `GET /v1/models`. */
  models(): Promise<ModelList> {
    return this.request<ModelList>("GET", "/v1/models");
  }

  /** `POST /v1/chat/completions` (not streamed). */
  chatCompletion(request: ChatCompletionRequest): Promise<ChatCompletion> {
    return this.request<ChatCompletion>("POST", "/v1/chat/completions", request);
  }

  /** `POST /v1/completions` (not streamed). */
  completion(request: CompletionRequest): Promise<Completion> {
    return this.request<Completion>("POST", "/v1/completions", request);
  }

  /** One JSON request, retried and limited as the options say. */
  async request<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    return this.limiter.run(async () => {
      const { maxAttempts, backoffMs, maxBackoffMs } = this.options;
      for (let attempt = 1; ; attempt++) {
        const outcome = await this.attempt(method, url, body);
        if (outcome.ok) return outcome.value as T;
        if (!outcome.retry || attempt >= maxAttempts) {
          const tries = attempt > 1 ? ` (after ${attempt} attempts)` : "";
          throw new EvaluationError("E_MODEL", `${method} ${url}: ${outcome.reason}${tries}`, {
            category: outcome.category,
            ...(outcome.cause !== undefined ? { cause: outcome.cause } : {}),
          });
        }
        const exponential = backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random() * 0.5);
        const delayMs = Math.min(maxBackoffMs, outcome.retryAfterMs ?? exponential);
        this.options.onRetry?.({ url, attempt, delayMs, reason: outcome.reason });
        await sleep(delayMs);
      }
    });
  }

  private async attempt(
    method: string,
    url: string,
    body: unknown,
  ): Promise<
    | { ok: true; value: unknown }
    | {
        ok: false;
        retry: boolean;
        reason: string;
        retryAfterMs?: number;
        category: "input" | "io";
        cause?: unknown;
      }
  > {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    try {
      const headers: Record<string, string> = { accept: "application/json" };
      if (body !== undefined) headers["content-type"] = "application/json";
      if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
      const response = await this.options.fetch(url, {
        method,
        headers,
        signal: controller.signal,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      if (!response.ok) {
        const retry = RETRY_STATUSES.has(response.status);
        const after = retryAfterMs(response.headers.get("retry-after"));
        return {
          ok: false,
          retry,
          reason: `HTTP ${response.status}: ${serverMessage(text) || response.statusText}`,
          // a refusal of the request itself (400, 404, 413) is bad input; the rest the machine's
          category: response.status >= 400 && response.status < 500 && !retry ? "input" : "io",
          ...(after !== undefined ? { retryAfterMs: after } : {}),
        };
      }
      try {
        return { ok: true, value: JSON.parse(text) };
      } catch (error) {
        return {
          ok: false,
          retry: false,
          reason: `the reply is not JSON: ${serverMessage(text)}`,
          category: "io",
          cause: error,
        };
      }
    } catch (error) {
      const timedOut = controller.signal.aborted;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const detail = cause?.code ?? cause?.message ?? (error as Error).message;
      return {
        ok: false,
        retry: true,
        reason: timedOut
          ? `no reply within ${this.options.timeoutMs} ms`
          : `cannot connect (${detail})`,
        category: "io",
        cause: error,
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface RemoteEvalModelOptions extends OpenAIClientOptions {
  /** The served model's name, sent with each request (default: the first of `GET /v1/models`). */
  model?: string;
  /** What results call it (default the served model's name). */
  name?: string;
}

/** A served model as @forge/eval's `EvalModel`, and the client it talks through. */
export interface RemoteEvalModel extends EvalModel {
  readonly client: OpenAIClient;
  /** The served model's name, as requests send it. */
  readonly model: string;
}

/**
 * A model behind an OpenAI-compatible endpoint as @forge/eval's `EvalModel`: each conversation
 * is one chat completion (all of a call's conversations in flight at once, up to the client's
 * concurrency), with the call's seed, and the reply trimmed as a local model's is. Its `id` is
 * the endpoint and the model's name. `GET /v1/models` is asked once, here: an unreachable
 * server or an unknown model name fails now, not in the middle of a run.
 *
 * Log-probabilities of a given reply are not part of the chat API, so tasks with a `logprob`
 * scorer cannot run against a remote model (the runner says so).
 */
export async function remoteEvalModel(
  baseUrl: string,
  options: RemoteEvalModelOptions = {},
): Promise<RemoteEvalModel> {
  const client = new OpenAIClient(baseUrl, options);
  const list = await client.models();
  const served = Array.isArray(list?.data) ? list.data.map((m) => m.id) : [];
  const model = options.model ?? served[0];
  if (model === undefined)
    throw new EvaluationError(
      "E_MODEL",
      `GET ${client.baseUrl}/v1/models lists no model; name one with --model-name`,
    );
  if (options.model !== undefined && served.length > 0 && !served.includes(options.model))
    throw new EvaluationError(
      "E_MODEL",
      `${client.baseUrl} does not serve "${options.model}"; it serves ${served.map((s) => `"${s}"`).join(", ")}`,
    );
  return {
    name: options.name ?? model,
    id: `${client.baseUrl}#${model}`,
    client,
    model,
    async generate(conversations: readonly ChatMessage[][], generation: GenerateOptions) {
      if (generation.topK !== undefined)
        throw new EvaluationError(
          "E_MODEL",
          `${client.baseUrl}: top-k sampling (topK ${generation.topK}) is not part of the OpenAI API; drop generation.topK from the task to evaluate a served model`,
        );
      const replies = await Promise.all(
        conversations.map((messages) =>
          client.chatCompletion({
            model,
            messages: [...messages],
            max_tokens: generation.maxNewTokens,
            temperature: generation.temperature,
            ...(generation.topP !== undefined ? { top_p: generation.topP } : {}),
            seed: generation.seed,
          }),
        ),
      );
      return replies.map((reply, i) => {
        const content = reply?.choices?.[0]?.message?.content;
        if (typeof content !== "string")
          throw new EvaluationError(
            "E_MODEL",
            `POST ${client.baseUrl}/v1/chat/completions: the reply to conversation ${i} has no choices[0].message.content`,
          );
        return content.trim();
      });
    },
  };
}
