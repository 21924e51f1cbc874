/**
 * The runner: a model × tasks → per-item records (id, input, output, score, round, seed) in a
 * schema-versioned results object. Results are cached by model hash + task hash + seed +
 * settings, so a re-run with nothing changed reads them back instead of generating.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { writeFileAtomic } from "@forge/core";
import { type GPT, generate, modelTensors } from "@forge/model";
import type { ChatMessage, Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { EvaluationError } from "./errors.js";
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
  model: { name: string; hash: string };
  createdAt: string;
  settings: { rounds?: number; seed: number; system?: string };
  tasks: TaskResult[];
}

export interface EvalModel {
  name: string;
  model: GPT;
  tokenizer: Tokenizer;
  /** Defaults to a hash of the effective weights (adapter merged at its strength). */
  hash?: string;
}

/** sha256 of the effective weights. */
export function modelHash(model: GPT): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify(model.config));
  for (const [name, t] of [...modelTensors(model, { mergeAdapter: true })].sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    hash.update(name);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hash.digest("hex");
}

type ScoreFn = (output: string, item: Item) => number;

/** The first or last number in a text (thousands separators removed). */
const numberIn = (text: string, pick: "first" | "last" = "first") => {
  const matches = text.replace(/,(?=\d{3}\b)/g, "").match(/-?\d+(?:\.\d+)?/g);
  if (!matches) return undefined;
  return Number(pick === "first" ? matches[0] : matches.at(-1));
};

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
        const value = numberIn(output, s.pick);
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

/** log P(target | prompt) for each pair, summed or averaged over the target's tokens. */
function logprobScores(
  model: GPT,
  pairs: { prompt: number[]; target: number[] }[],
  normalize: "mean" | "sum",
): number[] {
  const vocab = model.config.vocabSize;
  return pairs.map(({ prompt, target }) => {
    const ids = [...prompt, ...target.slice(0, -1)];
    if (ids.length > model.config.blockSize)
      throw new EvaluationError(
        "E_INPUT",
        `a logprob prompt + target of ${ids.length} tokens exceeds the context window`,
      );
    const logits = tf.tidy(() =>
      tf.logSoftmax(model.run(tf.tensor2d([ids], undefined, "int32")).logits),
    );
    const values = logits.dataSync();
    logits.dispose();
    let sum = 0;
    target.forEach((token, i) => {
      sum += values[(prompt.length - 1 + i) * vocab + token]!;
    });
    return normalize === "sum" ? sum : sum / target.length;
  });
}

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

/** Greedy outputs already generated in this run, by prompt and length (greedy is deterministic). */
type GreedyMemo = Map<string, string>;

export interface RunOptions extends TaskOptions {
  /** Rounds per task (default: each task's own). Round r samples with seed + r. */
  rounds?: number;
  seed?: number;
  /** Where cached task results live (default: no cache). */
  cacheDir?: string;
  batchSize?: number;
  /**
   * A system prompt for every task that has no system message of its own: evaluates the
   * model *prompted* (base + prompt against a baked model, say).
   */
  system?: string;
  onProgress?: (event: { task: string; done: number; total: number; cached?: boolean }) => void;
}

async function runTask(
  model: EvalModel,
  task: Task,
  hash: string,
  options: RunOptions,
  memo: GreedyMemo,
): Promise<TaskResult> {
  const seed = options.seed ?? 0;
  const rounds = options.rounds ?? task.rounds;
  const key = cacheKey(hash, task, seed, rounds, options.system);
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
  const { tokenizer } = model;
  const inputs = task.items.map((item) => {
    const messages = renderMessages(task, item);
    return options.system !== undefined && messages[0]?.role !== "system"
      ? [{ role: "system" as const, content: options.system }, ...messages]
      : messages;
  });
  const prompts = inputs.map(
    (messages) => tokenizer.renderChat(messages, { addGenerationPrompt: true }).ids,
  );
  const records: ItemRecord[] = [];
  const total = task.items.length * rounds;
  if (task.scorer.type === "logprob") {
    const targets = task.items.map((item) => [
      ...tokenizer.encode(
        renderTemplate(task.scorer.target!, item, `${task.name}: scorer.target`),
        { disallowedSpecial: "none" },
      ),
      tokenizer.specialTokenId("<|eot|>"),
    ]);
    const scores = logprobScores(
      model.model,
      prompts.map((p, i) => ({ prompt: p, target: targets[i]! })),
      task.scorer.normalize ?? "mean",
    );
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
    options.onProgress?.({ task: task.name, done: total, total });
  } else {
    const score = await makeScorer(task, options);
    const eot = tokenizer.specialTokenId("<|eot|>");
    const batchSize = options.batchSize ?? 32;
    for (let round = 0; round < rounds; round++) {
      for (let start = 0; start < prompts.length; start += batchSize) {
        const batch = prompts.slice(start, start + batchSize);
        const greedy = task.generation.temperature === 0;
        const memoKeys = batch.map((ids) => `${task.generation.maxNewTokens}|${ids.join(",")}`);
        const outputs = memoKeys.map((k) => (greedy ? memo.get(k) : undefined));
        const missing = batch.filter((_, j) => outputs[j] === undefined);
        if (missing.length > 0) {
          const { tokens } = generate(model.model, missing, {
            maxNewTokens: task.generation.maxNewTokens,
            temperature: task.generation.temperature,
            ...(task.generation.topK !== undefined ? { topK: task.generation.topK } : {}),
            ...(task.generation.topP !== undefined ? { topP: task.generation.topP } : {}),
            seed: seed + round * 1_000_003 + start,
            stopIds: [eot],
            bannedIds: tokenizer.bannedIds(),
          });
          let next = 0;
          for (const [j, k] of memoKeys.entries()) {
            if (outputs[j] !== undefined) continue;
            const ids = tokens[next++]!;
            outputs[j] = tokenizer.decode(ids.at(-1) === eot ? ids.slice(0, -1) : ids).trim();
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

/** Run every task on the model. */
export async function runTasks(
  model: EvalModel,
  tasks: readonly Task[],
  options: RunOptions = {},
): Promise<EvalResults> {
  if (tasks.length === 0) throw new EvaluationError("E_INPUT", "no tasks to run");
  if (
    options.rounds !== undefined &&
    (!Number.isInteger(options.rounds) || options.rounds < 1 || options.rounds > MAX_ROUNDS)
  )
    throw new EvaluationError(
      "E_INPUT",
      `rounds must be an integer from 1 to ${MAX_ROUNDS}; got ${options.rounds}`,
    );
  const names = tasks.map((t) => t.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate)
    throw new EvaluationError(
      "E_INPUT",
      `two tasks are named ${JSON.stringify(duplicate)}; task names must be unique`,
    );
  const hash = model.hash ?? modelHash(model.model);
  const results: TaskResult[] = [];
  const memo: GreedyMemo = new Map();
  for (const task of tasks) results.push(await runTask(model, task, hash, options, memo));
  return {
    schemaVersion: RESULTS_SCHEMA,
    kind: "forge-eval-results",
    model: { name: model.name, hash },
    createdAt: new Date().toISOString(),
    settings: {
      ...(options.rounds !== undefined ? { rounds: options.rounds } : {}),
      seed: options.seed ?? 0,
      ...(options.system !== undefined ? { system: options.system } : {}),
    },
    tasks: results,
  };
}
