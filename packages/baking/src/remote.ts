/**
 * A remote teacher: the prompted model behind an OpenAI-compatible endpoint (forge serve, vLLM,
 * llama.cpp's server, Ollama, TGI). Stimuli of type `self`, the rollouts and the teacher's top-K
 * log-probabilities come from `POST /v1/chat/completions` with the bake's system prompt in
 * front (`logprobs: true, top_logprobs: K`); the bake then trains the student on the top-K +
 * tail divergence. The client's retries, backoff, concurrency limit and timeouts are
 * @forge/eval's `OpenAIClient`.
 *
 * Tokens: the endpoint names tokens by their text (and, as OpenAI does, their UTF-8 bytes);
 * each is mapped to the student's id by its bytes. A token that is not exactly one student
 * token, or a reply whose mapped ids do not decode to the reply's text, means the teacher's
 * tokenizer is not the student's: the bake is refused, naming an example token.
 *
 * The stop position: the API reports no distribution for the end-of-turn token a teacher stops
 * with. When a reply stopped, the student's stop token is appended to the trajectory and its
 * target there is the sampled token itself (probability 1) — at temperature 1, an unbiased
 * single-sample estimate of the teacher's distribution at that position.
 *
 * Resumable: each finished trajectory is appended to `rollout.partial.jsonl` as it arrives; a
 * rerun reads it back (a torn last line is ignored) and asks only for the rest.
 */
import { existsSync } from "node:fs";
import { appendFile, readFile, rm } from "node:fs/promises";
import { Rng, writeFileAtomic } from "@forge/core";
import { type ChatCompletion, OpenAIClient, type OpenAIClientOptions } from "@forge/eval";
import { sequenceKL, tokenLevelKL } from "@forge/losses";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import type { KLMeasurement, MeasureTarget } from "./measure.js";
import {
  type BakePrompt,
  checkTrajectory,
  inContext,
  RECORD_SCHEMA,
  type Stimulus,
  type Trajectory,
  toJsonl,
} from "./records.js";
import type { RolloutSettings } from "./rollout.js";
import { logSoftmaxRow, responseLogits } from "./score.js";
import { generateStimuli, type StimSpec } from "./stim.js";

/** The OpenAI API's largest `top_logprobs`. */
export const MAX_REMOTE_TOPK = 20;

/** Where the teacher is: recorded in forge.json and the manifest (never a key). */
export interface RemoteTeacherSpec {
  /** The endpoint's base URL, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted). */
  url: string;
  /** The served model's name (default: the first `GET /v1/models` lists). */
  model?: string;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** Each request is abandoned after this long (default 120 s). */
  timeoutMs?: number;
  /** Attempts per request (default 5). */
  maxAttempts?: number;
  /** The first retry's delay (default 250 ms; each retry doubles it). */
  backoffMs?: number;
}

/** A connected remote teacher. */
export interface RemoteTeacher {
  client: OpenAIClient;
  /** The served model's name, as requests send it. */
  model: string;
  url: string;
  tokens: TokenMap;
  /** Requests in flight at once. */
  concurrency: number;
}

/** A record of a remote teacher for forge.json and manifests: where and which, nothing secret. */
export function describeTeacher(teacher: RemoteTeacher): { url: string; model: string } {
  const url = new URL(teacher.url);
  url.username = "";
  url.password = "";
  url.search = "";
  return { url: url.toString().replace(/\/+$/, ""), model: teacher.model };
}

/** The bytes of a token as a map key. */
const keyOf = (bytes: ArrayLike<number>): string =>
  Buffer.from(Array.from(bytes)).toString("latin1");

/** A teacher's token (text and bytes, as the API names it) → the student's id. */
export class TokenMap {
  private readonly byBytes = new Map<string, number[]>();
  private readonly byForm = new Map<string, number>();

  constructor(readonly tokenizer: Tokenizer) {
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      const key = keyOf(tokenizer.tokenBytesOf(id));
      const ids = this.byBytes.get(key);
      if (ids) ids.push(id);
      else this.byBytes.set(key, [id]);
      this.byForm.set(tokenizer.idToToken(id), id);
    }
  }

  /** The student's id of a teacher token, or a refusal naming it. */
  idOf(entry: { token: string; bytes?: number[] | null }, where: string): number {
    const bytes = entry.bytes ?? Array.from(Buffer.from(entry.token, "utf8"));
    const ids = this.byBytes.get(keyOf(bytes));
    if (ids?.length === 1) return ids[0]!;
    // a server naming tokens in their stored form (GPT-2's "Ġthe") rather than as text
    if (!entry.bytes) {
      const id = this.byForm.get(entry.token);
      if (id !== undefined) return id;
    }
    throw new BakingError(
      "E_INPUT",
      `the teacher's tokenizer is not the student's: its token ${JSON.stringify(entry.token)} (${where}) ${
        ids && ids.length > 1
          ? `matches ${ids.length} student tokens (${ids.join(", ")})`
          : "is no single token of the student's vocabulary"
      }; a remote teacher must use the student's tokenizer (the top-K targets are per token)`,
    );
  }
}

/** Connect: check the endpoint answers and serves the model. */
export async function connectTeacher(
  spec: RemoteTeacherSpec,
  tokenizer: Tokenizer,
  options: Pick<OpenAIClientOptions, "onRetry" | "apiKey"> = {},
): Promise<RemoteTeacher> {
  const client = new OpenAIClient(spec.url, {
    ...(spec.concurrency !== undefined ? { concurrency: spec.concurrency } : {}),
    ...(spec.timeoutMs !== undefined ? { timeoutMs: spec.timeoutMs } : {}),
    ...(spec.maxAttempts !== undefined ? { maxAttempts: spec.maxAttempts } : {}),
    ...(spec.backoffMs !== undefined ? { backoffMs: spec.backoffMs } : {}),
    ...options,
  });
  const list = await client.models();
  const served = Array.isArray(list?.data) ? list.data.map((m) => m.id) : [];
  const model = spec.model ?? served[0];
  if (model === undefined)
    throw new BakingError(
      "E_INPUT",
      `GET ${client.baseUrl}/v1/models lists no model; name one with --teacher-model`,
    );
  if (spec.model !== undefined && served.length > 0 && !served.includes(spec.model))
    throw new BakingError(
      "E_INPUT",
      `--teacher-model ${spec.model}: ${client.baseUrl} serves ${served.map((s) => JSON.stringify(s)).join(", ")}`,
    );
  return {
    client,
    model,
    url: client.baseUrl,
    tokens: new TokenMap(tokenizer),
    concurrency: spec.concurrency ?? 8,
  };
}

/** A reply with its tokens mapped to the student's ids and its top-K. */
export interface MappedReply {
  text: string;
  tokenIds: number[];
  logprobs: number[];
  topK: { ids: number[][]; logprobs: number[][] };
  finishReason: "stop" | "length";
}

/** Log-probability of the filler entries that pad a short top-K row (probability 0). */
const ABSENT = -1e4;

/** Pad a row of distinct ids to K with ids not in it, at probability 0. */
function padRow(ids: number[], logprobs: number[], k: number, vocab: number): void {
  const used = new Set(ids);
  for (let id = 0; ids.length < k && id < vocab; id++) {
    if (used.has(id)) continue;
    ids.push(id);
    logprobs.push(ABSENT);
  }
}

/** Map one chat-completion choice to the student's ids, checking the tokenizers agree. */
export function mapReply(
  reply: ChatCompletion,
  teacher: RemoteTeacher,
  k: number,
  where: string,
): MappedReply {
  const choice = reply?.choices?.[0];
  const content = choice?.logprobs?.content;
  if (!choice || typeof choice.message?.content !== "string" || !Array.isArray(content))
    throw new BakingError(
      "E_INPUT",
      `${teacher.url}: the reply to ${where} carries no logprobs.content; the teacher endpoint must support "logprobs": true with "top_logprobs" (vLLM: --max-logprobs ${k} or more)`,
    );
  const { tokenizer } = teacher.tokens;
  const vocab = tokenizer.vocabSize;
  const stops = new Set(tokenizer.stopIds());
  const tokenIds: number[] = [];
  const logprobs: number[] = [];
  const topIds: number[][] = [];
  const topLogprobs: number[][] = [];
  for (const [r, entry] of content.entries()) {
    const at = `${where}, position ${r}`;
    tokenIds.push(teacher.tokens.idOf(entry, at));
    logprobs.push(entry.logprob);
    const alternatives = [...(entry.top_logprobs ?? [])].sort((a, b) => b.logprob - a.logprob);
    if (alternatives.length === 0)
      throw new BakingError(
        "E_INPUT",
        `${teacher.url}: the reply to ${where} has no top_logprobs at position ${r}; the endpoint must return top_logprobs ${k}`,
      );
    const ids: number[] = [];
    const lps: number[] = [];
    for (const alternative of alternatives) {
      const id = teacher.tokens.idOf(alternative, `${at}, top_logprobs`);
      if (ids.includes(id) || ids.length >= k) continue;
      ids.push(id);
      lps.push(alternative.logprob);
    }
    padRow(ids, lps, k, vocab);
    topIds.push(ids);
    topLogprobs.push(lps);
  }
  const text = choice.message.content;
  const stoppedByToken = tokenIds.length > 0 && stops.has(tokenIds.at(-1)!);
  const visible = stoppedByToken ? tokenIds.slice(0, -1) : tokenIds;
  const decoded = tokenizer.decode(visible, { skipSpecial: true });
  if (decoded !== text) {
    const first = [...decoded].findIndex((c, i) => c !== text[i]);
    throw new BakingError(
      "E_INPUT",
      `the teacher's tokenizer is not the student's: the reply to ${where} reads ${JSON.stringify(text.slice(0, 60))}, but its tokens read as the student's ${JSON.stringify(decoded.slice(0, 60))}${first >= 0 ? ` (they part at character ${first})` : ""}`,
    );
  }
  const finishReason: "stop" | "length" = choice.finish_reason === "length" ? "length" : "stop";
  if (finishReason === "stop" && !stoppedByToken) {
    // the API reports no distribution at the stop: the sampled stop token is the target there
    const stop = tokenizer.stopIds()[0]!;
    tokenIds.push(stop);
    const ids = [stop];
    const lps = [0];
    padRow(ids, lps, k, vocab);
    topIds.push(ids);
    topLogprobs.push(lps);
  }
  return {
    text: text.trim(),
    tokenIds,
    logprobs,
    topK: { ids: topIds, logprobs: topLogprobs },
    finishReason,
  };
}

/** How a sample's request is seeded: the same stimulus and sample always get the same seed. */
function seedOf(seed: number, key: string): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (h >>> 0) % 2_147_483_647;
}

/**
 * The stimuli, with `self` questions written by the remote teacher (prompted); the other
 * generators run here as usual. `multiturn` needs the teacher's replies mid-conversation and
 * is not offered with a remote teacher.
 */
export async function remoteStimuli(
  specs: readonly StimSpec[],
  teacher: RemoteTeacher,
  prompt: BakePrompt,
  options: { seed: number; onProgress?: (done: number, total: number) => void },
): Promise<Stimulus[]> {
  const out: Stimulus[] = [];
  const seen = new Set<string>();
  const rng = new Rng(options.seed);
  for (const [index, spec] of specs.entries()) {
    let conversations: ChatMessage[][];
    if (spec.type === "multiturn")
      throw new BakingError(
        "E_INPUT",
        `stim[${index}] (multiturn): a remote teacher writes self questions and rollouts; multiturn conversations need the teacher model here`,
      );
    if (spec.type === "self") {
      const count = spec.count;
      if (!Number.isInteger(count) || count < 1)
        throw new BakingError(
          "E_INPUT",
          `stim[${index}] (self): give count, the questions to write`,
        );
      const instruction = spec.instruction ?? "Write one question a user might ask you.";
      const messages = [...prompt.teacher, { role: "user" as const, content: instruction }];
      const questions: string[] = [];
      const asked = new Set<string>();
      for (let attempt = 0; attempt < count * 4 && questions.length < count; attempt += 16) {
        const batch = Math.min(16, count * 4 - attempt);
        const base = rng.seed();
        const replies = await Promise.all(
          Array.from({ length: batch }, (_, i) =>
            teacher.client.chatCompletion({
              model: teacher.model,
              messages,
              max_tokens: spec.maxNewTokens ?? 32,
              temperature: spec.temperature ?? 1,
              seed: (base + i) % 2_147_483_647,
            }),
          ),
        );
        for (const reply of replies) {
          const text = reply?.choices?.[0]?.message?.content?.trim() ?? "";
          const key = text.toLowerCase();
          if (text === "" || asked.has(key) || questions.length >= count) continue;
          asked.add(key);
          questions.push(text);
        }
        options.onProgress?.(questions.length, count);
      }
      conversations = questions.map((q) => [{ role: "user", content: q }]);
    } else {
      conversations = (await generateStimuli([spec], { seed: rng.seed() })).map((s) => s.messages);
    }
    let n = 0;
    for (const messages of conversations) {
      const key = JSON.stringify(messages);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ id: `${spec.type}-${index}-${n++}`, messages, source: spec.type });
    }
  }
  if (out.length === 0)
    throw new BakingError("E_INPUT", "the stimulus generators produced no stimuli");
  return out;
}

/** Trajectories already in a partial rollout file (a torn last line is ignored). */
export async function readPartialRollout(file: string): Promise<Trajectory[]> {
  if (!existsSync(file)) return [];
  const lines = (await readFile(file, "utf8")).split("\n");
  const out: Trajectory[] = [];
  for (const [i, line] of lines.entries()) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      if (i >= lines.length - 2) break; // the last line, cut short by a stop
      throw new BakingError("E_FORMAT", `${file}:${i + 1}: not JSON`);
    }
    out.push(checkTrajectory(value, file, i + 1));
  }
  return out;
}

export interface RemoteRolloutOptions {
  /** The partial rollout file: appended to as trajectories arrive, read back on resume. */
  file: string;
  /** Top-K per position (≤ 20). */
  k: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Sample k trajectories per stimulus from the remote teacher, with its top-K at every
 * position. Finished trajectories in `options.file` are kept and not asked for again.
 */
export async function remoteRollout(
  teacher: RemoteTeacher,
  prompt: BakePrompt,
  stimuli: readonly Stimulus[],
  settings: RolloutSettings,
  options: RemoteRolloutOptions,
): Promise<Trajectory[]> {
  if (settings.topK !== undefined)
    throw new BakingError(
      "E_INPUT",
      "rollout.topK (top-k sampling) is not part of the OpenAI API; leave it out with a remote teacher (top_p is accepted)",
    );
  const done = new Map((await readPartialRollout(options.file)).map((t) => [t.id, t]));
  if (done.size > 0) {
    // the file holds only whole trajectories from here on
    await writeFileAtomic(options.file, toJsonl([...done.values()]));
  }
  const jobs: { stimulus: Stimulus; sample: number; id: string }[] = [];
  for (const stimulus of stimuli)
    for (let sample = 0; sample < settings.samples; sample++)
      jobs.push({ stimulus, sample, id: `${stimulus.id}#${sample}` });
  const total = jobs.length;
  let finished = jobs.filter((j) => done.has(j.id)).length;
  options.onProgress?.(finished, total);
  let writes = Promise.resolve();
  let failure: unknown;
  const queue = jobs.filter((j) => !done.has(j.id));
  // a pool of workers, so a failed or stopped rollout sends no further request
  const worker = async () => {
    for (;;) {
      const job = queue.shift();
      if (!job || options.signal?.aborted || failure !== undefined) return;
      try {
        const reply = await teacher.client.chatCompletion({
          model: teacher.model,
          messages: inContext(prompt.teacher, job.stimulus.messages),
          max_tokens: settings.maxNewTokens,
          temperature: settings.temperature,
          ...(settings.topP !== undefined ? { top_p: settings.topP } : {}),
          seed: seedOf(settings.seed, job.id),
          logprobs: true,
          top_logprobs: options.k,
        });
        const mapped = mapReply(reply, teacher, options.k, `stimulus ${job.stimulus.id}`);
        if (mapped.tokenIds.length === 0) continue;
        const trajectory: Trajectory = {
          id: job.id,
          stimulusId: job.stimulus.id,
          sample: job.sample,
          text: mapped.text,
          tokenIds: mapped.tokenIds,
          finishReason: mapped.finishReason,
          topK: mapped.topK,
          teacherLogprobs: mapped.logprobs,
        };
        done.set(job.id, trajectory);
        const line = `${JSON.stringify({ schema: RECORD_SCHEMA, ...trajectory })}\n`;
        writes = writes.then(() => appendFile(options.file, line));
        await writes;
        options.onProgress?.(++finished, total);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(teacher.concurrency, queue.length) }, () => worker()),
  );
  await writes;
  if (failure !== undefined) throw failure;
  checkRetokenization([...done.values()], teacher.tokens.tokenizer);
  // the rollout in the stimuli's order, as a local rollout gives it
  return jobs.map((j) => done.get(j.id)).filter((t): t is Trajectory => t !== undefined);
}

/**
 * The share of trajectories whose text the student's tokenizer would split differently (at
 * most this many may: a sampling teacher now and then writes a word in pieces the tokenizer
 * would merge; a teacher with another tokenizer does it all the time).
 */
export const MAX_RETOKENIZED_SHARE = 0.25;

/**
 * Refuse a rollout whose trajectories the student's tokenizer re-tokenizes differently more
 * often than `MAX_RETOKENIZED_SHARE` (a teacher whose tokens all exist in the student's
 * vocabulary but whose merges differ), naming an example.
 */
export function checkRetokenization(
  trajectories: readonly Trajectory[],
  tokenizer: Tokenizer,
): void {
  const stops = new Set(tokenizer.stopIds());
  const differing: { trajectory: Trajectory; at: number; ids: number[] }[] = [];
  for (const t of trajectories) {
    const ids = stops.has(t.tokenIds.at(-1)!) ? t.tokenIds.slice(0, -1) : t.tokenIds;
    const again = tokenizer.encode(tokenizer.decode(ids));
    const at = ids.findIndex((id, i) => again[i] !== id);
    if (at >= 0 || again.length !== ids.length)
      differing.push({ trajectory: t, at: at >= 0 ? at : ids.length, ids });
  }
  if (differing.length === 0 || differing.length <= MAX_RETOKENIZED_SHARE * trajectories.length)
    return;
  const { trajectory, at, ids } = differing[0]!;
  const token = at < ids.length ? tokenizer.decode([ids[at]!]) : "(the end)";
  throw new BakingError(
    "E_INPUT",
    `the teacher's tokenizer is not the student's: ${differing.length} of ${trajectories.length} trajectories re-tokenize differently with the student's tokenizer (at most ${Math.round(MAX_RETOKENIZED_SHARE * 100)}% may); e.g. trajectory ${trajectory.id} at its token ${JSON.stringify(token)} (position ${at})`,
  );
}

/** Move a finished partial rollout into place as rollout.jsonl. */
export async function finishPartialRollout(
  partial: string,
  target: string,
  trajectories: readonly Trajectory[],
): Promise<void> {
  await writeFileAtomic(target, toJsonl(trajectories));
  // the partial file is this bake's own: written by remoteRollout above
  await rm(partial, { force: true });
}

/**
 * KL(remote teacher ‖ student) on trajectories sampled from the remote teacher: token level
 * over the teacher's top-K + tail (per position, as the `topk` loss computes it), sequence
 * level from the teacher's reported log-probabilities of the sampled tokens.
 */
export function measureRemoteKL(
  student: MeasureTarget,
  tokenizer: Tokenizer,
  stimuli: readonly Stimulus[],
  trajectories: readonly Trajectory[],
): KLMeasurement {
  if (trajectories.length < 2)
    throw new BakingError("E_INPUT", "measuring KL needs at least two trajectories");
  const byId = new Map(stimuli.map((s) => [s.id, s]));
  const vocab = student.model.config.vocabSize;
  const logits = responseLogits(
    student.model,
    trajectories.map((t) => ({
      prompt: tokenizer.promptIds(inContext(student.prefix, byId.get(t.stimulusId)!.messages)),
      response: t.tokenIds,
    })),
  );
  const lq = new Float64Array(vocab);
  const teacherTotals: number[] = [];
  const studentTotals: number[] = [];
  const perPosition: number[][] = [];
  trajectories.forEach((t, i) => {
    const kls: number[] = [];
    let tSum = 0;
    let sSum = 0;
    t.tokenIds.forEach((token, r) => {
      logSoftmaxRow(logits[i]!, r * vocab, vocab, lq);
      const ids = t.topK!.ids[r]!;
      const lps = t.topK!.logprobs[r]!;
      let kl = 0;
      let mass = 0;
      const top = new Set(ids);
      for (const [j, id] of ids.entries()) {
        const p = Math.exp(lps[j]!);
        mass += p;
        if (p > 0) kl += p * (lps[j]! - lq[id]!);
      }
      let tailQ = 0; // the student's mass outside the teacher's top K, summed exactly
      for (let j = 0; j < vocab; j++) if (!top.has(j)) tailQ += Math.exp(lq[j]!);
      const tail = Math.max(0, 1 - mass);
      if (tail > 0) kl += tail * (Math.log(tail) - Math.log(Math.max(tailQ, 1e-300)));
      kls.push(Math.max(0, kl));
      const reported = t.teacherLogprobs?.[r];
      if (reported !== undefined) {
        tSum += reported;
        sSum += lq[token]!;
      }
    });
    teacherTotals.push(tSum);
    studentTotals.push(sSum);
    perPosition.push(kls);
  });
  return {
    sequence: sequenceKL(teacherTotals, studentTotals),
    token: tokenLevelKL(perPosition),
    n: trajectories.length,
    meanTokens: trajectories.reduce((a, t) => a + t.tokenIds.length, 0) / trajectories.length,
  };
}
