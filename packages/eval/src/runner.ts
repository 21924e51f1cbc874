/**
 * The runner: a model × tasks → per-item records (id, input, output, score, round, seed) in a
 * schema-versioned results object. The model is anything implementing `EvalModel` (./model.ts):
 * the runner renders each item's conversation, asks the model for replies in batches (or for
 * log-probabilities), and scores them. Results are cached by model id + task hash + seed +
 * settings, so a re-run with nothing changed reads them back instead of generating.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ForgeError, writeFileAtomic } from "@forge/core";
import { EvaluationError } from "./errors.js";
import type { ChatMessage, EvalModel, GenerateOptions, LogprobRequest } from "./model.js";
import { extractNumber } from "./numbers.js";
import {
  codeRefusal,
  type Item,
  MAX_ROUNDS,
  renderMessages,
  renderTemplate,
  resolveTaskPath,
  type ScorerSpec,
  type Task,
  type TaskOptions,
} from "./tasks.js";

export const RESULTS_SCHEMA = 1;

export interface ItemRecord {
  id: string;
  round: number;
  seed: number;
  input: ChatMessage[];
  output: string;
  score: number;
}

export interface TaskResult {
  name: string;
  hash: string;
  tags: string[];
  scorer: ScorerSpec["type"];
  rounds: number;
  n: number;
  mean: number;
  records: ItemRecord[];
}

export interface EvalResults {
  schemaVersion: 1;
  kind: "forge-eval-results";
  /** `hash` is the model's `id` (the field keeps its name: result files predate `EvalModel`). */
  model: { name: string; hash: string };
  createdAt: string;
  settings: { rounds?: number; seed: number; system?: string };
  tasks: TaskResult[];
}

type ScoreFn = (output: string, item: Item) => number;

/**
 * A scorer for the text scorers; logprob is handled by the runner. A `js` scorer's module is
 * loaded only with `options.allowCode`, and only from inside the task file's directory unless
 * `options.allowOutside`.
 */
export async function makeScorer(task: Task, options: TaskOptions = {}): Promise<ScoreFn> {
  const s = task.scorer;
  const fold = (text: string) => (s.caseSensitive ? text : text.toLowerCase());
  const target = (item: Item) =>
    renderTemplate(s.target ?? "", item, `${task.name}: scorer.target`);
  switch (s.type) {
    case "exact":
      return (output, item) => (fold(output.trim()) === fold(target(item).trim()) ? 1 : 0);
    case "contains":
      return (output, item) => (fold(output).includes(fold(target(item))) ? 1 : 0);
    case "regex":
      return (output, item) =>
        new RegExp(
          renderTemplate(s.pattern!, item, `${task.name}: scorer.pattern`),
          s.flags ?? "",
        ).test(output)
          ? 1
          : 0;
    case "numeric":
      return (output, item) => {
        const value = extractNumber(output, s.pick);
        const expected = Number(target(item));
        return value !== undefined && Math.abs(value - expected) <= (s.tolerance ?? 0) ? 1 : 0;
      };
    case "keywords":
      return (output) =>
        s.keywords!.filter((k) => fold(output).includes(fold(k))).length / s.keywords!.length;
    case "js": {
      const where = task.file ?? task.name;
      if (!options.allowCode) throw codeRefusal(where, s.module!);
      const file = resolveTaskPath(
        task.file ?? path.join(process.cwd(), "task.yaml"),
        s.module!,
        "scorer.module",
        where,
        options.allowOutside,
      );
      let fn: unknown;
      try {
        fn = (await import(pathToFileURL(file).href)).default;
      } catch (error) {
        throw new EvaluationError(
          "E_TASK",
          `${task.name}: scorer module ${file} cannot be loaded: ${(error as Error).message}`,
          { cause: error },
        );
      }
      if (typeof fn !== "function")
        throw new EvaluationError(
          "E_TASK",
          `${task.name}: scorer module ${file} must export a default function (output, item) => number`,
        );
      return (output, item) => {
        const value = (fn as (o: string, i: Item) => unknown)(output, item);
        const score = typeof value === "boolean" ? (value ? 1 : 0) : Number(value);
        if (!Number.isFinite(score))
          throw new EvaluationError(
            "E_TASK",
            `${task.name}: scorer module returned ${String(value)} for item ${item.id}`,
          );
        return score;
      };
    }
    case "logprob":
      throw new EvaluationError(
        "E_INPUT",
        "logprob scores come from the model, not the output text",
      );
  }
}

/**
 * The results-cache key. `modelHash` is the model's `id` (the name is kept so that caches
 * written before `EvalModel` existed are still hits).
 */
function cacheKey(
  modelHash: string,
  task: Task,
  seed: number,
  rounds: number,
  system: string | undefined,
): string {
  return createHash("sha256")
    .update(
      JSON.stringify({
        modelHash,
        task: task.hash,
        seed,
        rounds,
        generation: task.generation,
        ...(system !== undefined ? { system } : {}),
      }),
    )
    .digest("hex");
}

/** Greedy replies already generated in this run, by conversation and length (greedy is deterministic). */
type GreedyMemo = Map<string, string>;

export interface RunOptions extends TaskOptions {
  /** Rounds per task (default: each task's own). Round r samples with seed + r. */
  rounds?: number;
  seed?: number;
  /** Where cached task results live (default: no cache). */
  cacheDir?: string;
  /** Conversations per `generate` / `logprobs` call (default 32). */
  batchSize?: number;
  /**
   * A system prompt for every task that has no system message of its own: evaluates the
   * model *prompted* (base + prompt against a baked model, say).
   */
  system?: string;
  onProgress?: (event: { task: string; done: number; total: number; cached?: boolean }) => void;
}

/**
 * Call one of the model's methods. A forge error it throws (bad input, a context window
 * exceeded, a refused request) keeps its category and gains the task's name; anything else
 * is the model's own failure and passes through untouched.
 */
async function ask<T>(model: EvalModel, task: Task, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!ForgeError.isInstance(error) || EvaluationError.isInstance(error)) throw error;
    throw new EvaluationError(
      "E_MODEL",
      `${task.file ?? task.name}: model ${JSON.stringify(model.name)}: ${error.message}`,
      { cause: error, category: error.category },
    );
  }
}

/** What a model returned, checked: one reply (a string) per conversation. */
function checkReplies(model: EvalModel, replies: unknown, expected: number): string[] {
  if (
    !Array.isArray(replies) ||
    replies.length !== expected ||
    replies.some((r) => typeof r !== "string")
  )
    throw new EvaluationError(
      "E_MODEL",
      `model ${JSON.stringify(model.name)}: generate must return one string per conversation; asked for ${expected}, got ${Array.isArray(replies) ? `${replies.length} value(s)` : typeof replies}`,
    );
  return replies;
}

/** What a model returned, checked: per request, a non-empty list of finite log-probabilities. */
function checkLogprobs(model: EvalModel, values: unknown, expected: number): number[][] {
  const ok =
    Array.isArray(values) &&
    values.length === expected &&
    values.every(
      (v) =>
        Array.isArray(v) &&
        v.length > 0 &&
        v.every((x) => typeof x === "number" && Number.isFinite(x)),
    );
  if (!ok)
    throw new EvaluationError(
      "E_MODEL",
      `model ${JSON.stringify(model.name)}: logprobs must return, per request, a non-empty list of finite log-probabilities; asked for ${expected} request(s)`,
    );
  return values as number[][];
}

async function runTask(
  model: EvalModel,
  task: Task,
  id: string,
  options: RunOptions,
  memo: GreedyMemo,
): Promise<TaskResult> {
  const seed = options.seed ?? 0;
  const rounds = options.rounds ?? task.rounds;
  const batchSize = options.batchSize ?? 32;
  const key = cacheKey(id, task, seed, rounds, options.system);
  const cacheFile = options.cacheDir ? path.join(options.cacheDir, `${key}.json`) : undefined;
  if (cacheFile) {
    // The cache is forge's own, but a file that does not look like a result is just a miss.
    const cached = await readFile(cacheFile, "utf8")
      .then((text) => JSON.parse(text) as TaskResult | null)
      .catch(() => undefined);
    if (cached && Array.isArray(cached.records) && cached.hash === task.hash) {
      options.onProgress?.({
        task: task.name,
        done: cached.records.length,
        total: cached.records.length,
        cached: true,
      });
      return cached;
    }
  }
  const inputs = task.items.map((item) => {
    const messages = renderMessages(task, item);
    return options.system !== undefined && messages[0]?.role !== "system"
      ? [{ role: "system" as const, content: options.system }, ...messages]
      : messages;
  });
  const records: ItemRecord[] = [];
  const total = task.items.length * rounds;
  if (task.scorer.type === "logprob") {
    // Deterministic: computed once, recorded for every round.
    const normalize = task.scorer.normalize ?? "mean";
    const requests: LogprobRequest[] = task.items.map((item, i) => ({
      messages: inputs[i]!,
      target: renderTemplate(task.scorer.target!, item, `${task.name}: scorer.target`),
    }));
    const scores: number[] = [];
    for (let start = 0; start < requests.length; start += batchSize) {
      const batch = requests.slice(start, start + batchSize);
      const values = checkLogprobs(
        model,
        await ask(model, task, () => model.logprobs!(batch)),
        batch.length,
      );
      for (const tokens of values) {
        let sum = 0;
        for (const value of tokens) sum += value;
        scores.push(normalize === "sum" ? sum : sum / tokens.length);
      }
      options.onProgress?.({ task: task.name, done: scores.length * rounds, total });
    }
    for (let round = 0; round < rounds; round++) {
      for (const [i, item] of task.items.entries()) {
        records.push({
          id: item.id,
          round,
          seed: seed + round,
          input: inputs[i]!,
          output: "",
          score: scores[i]!,
        });
      }
    }
  } else {
    const score = await makeScorer(task, options);
    const greedy = task.generation.temperature === 0;
    for (let round = 0; round < rounds; round++) {
      for (let start = 0; start < inputs.length; start += batchSize) {
        const batch = inputs.slice(start, start + batchSize);
        const memoKeys = batch.map(
          (messages) => `${task.generation.maxNewTokens}|${JSON.stringify(messages)}`,
        );
        const outputs = memoKeys.map((k) => (greedy ? memo.get(k) : undefined));
        const missing = batch.filter((_, j) => outputs[j] === undefined);
        if (missing.length > 0) {
          const generation: GenerateOptions = {
            ...task.generation,
            seed: seed + round * 1_000_003 + start,
          };
          const replies = checkReplies(
            model,
            await ask(model, task, () => model.generate(missing, generation)),
            missing.length,
          );
          let next = 0;
          for (const [j, k] of memoKeys.entries()) {
            if (outputs[j] !== undefined) continue;
            outputs[j] = replies[next++]!.trim();
            if (greedy) memo.set(k, outputs[j]!);
          }
        }
        outputs.forEach((output, j) => {
          const i = start + j;
          records.push({
            id: task.items[i]!.id,
            round,
            seed: seed + round,
            input: inputs[i]!,
            output: output!,
            score: score(output!, task.items[i]!),
          });
        });
        options.onProgress?.({ task: task.name, done: records.length, total });
      }
    }
  }
  const result: TaskResult = {
    name: task.name,
    hash: task.hash,
    tags: task.tags,
    scorer: task.scorer.type,
    rounds,
    n: task.items.length,
    mean: records.reduce((s, r) => s + r.score, 0) / records.length,
    records,
  };
  if (cacheFile) await writeFileAtomic(cacheFile, JSON.stringify(result));
  return result;
}

const isText = (value: unknown): value is string => typeof value === "string" && value !== "";

/** Check the model and the options before anything runs. */
function checkRun(model: EvalModel, tasks: readonly Task[], options: RunOptions): string {
  if (typeof model !== "object" || model === null || typeof model.generate !== "function")
    throw new EvaluationError(
      "E_INPUT",
      "the model must be an EvalModel: { name, id, generate(conversations, options), logprobs? }",
    );
  if (!isText(model.name))
    throw new EvaluationError("E_INPUT", "the model's name must be a non-empty string");
  const id: unknown = model.id;
  if (!isText(id))
    throw new EvaluationError(
      "E_INPUT",
      `model ${JSON.stringify(model.name)}: id must be a non-empty string (a weights hash, an endpoint and model revision)`,
    );
  if (tasks.length === 0) throw new EvaluationError("E_INPUT", "no tasks to run");
  if (
    options.rounds !== undefined &&
    (!Number.isInteger(options.rounds) || options.rounds < 1 || options.rounds > MAX_ROUNDS)
  )
    throw new EvaluationError(
      "E_INPUT",
      `rounds must be an integer from 1 to ${MAX_ROUNDS}; got ${options.rounds}`,
    );
  if (
    options.batchSize !== undefined &&
    (!Number.isInteger(options.batchSize) || options.batchSize < 1)
  )
    throw new EvaluationError(
      "E_INPUT",
      `batchSize must be a positive integer; got ${options.batchSize}`,
    );
  const names = tasks.map((t) => t.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate)
    throw new EvaluationError(
      "E_INPUT",
      `two tasks are named ${JSON.stringify(duplicate)}; task names must be unique`,
    );
  const scoredByLogprob = tasks.find((t) => t.scorer.type === "logprob");
  if (scoredByLogprob && typeof model.logprobs !== "function")
    throw new EvaluationError(
      "E_INPUT",
      `${scoredByLogprob.file ?? scoredByLogprob.name}: scorer.type logprob needs the model's log-probabilities, and model ${JSON.stringify(model.name)} gives none (it has no logprobs method); score the task from its text (exact, contains, regex, …) or use a model that gives them`,
    );
  return id;
}

/** Run every task on the model. */
export async function runTasks(
  model: EvalModel,
  tasks: readonly Task[],
  options: RunOptions = {},
): Promise<EvalResults> {
  const id = checkRun(model, tasks, options);
  const results: TaskResult[] = [];
  const memo: GreedyMemo = new Map();
  for (const task of tasks) results.push(await runTask(model, task, id, options, memo));
  return {
    schemaVersion: RESULTS_SCHEMA,
    kind: "forge-eval-results",
    model: { name: model.name, hash: id },
    createdAt: new Date().toISOString(),
    settings: {
      ...(options.rounds !== undefined ? { rounds: options.rounds } : {}),
      seed: options.seed ?? 0,
      ...(options.system !== undefined ? { system: options.system } : {}),
    },
    tasks: results,
  };
}
