/**
 * forge's model through @forge/eval's runner, on the shipped forge-tiny: the same replies,
 * scores, model hash and results-cache keys as the runner gave when it called `generate()`
 * itself. eval-model.fixture.json holds those, captured at bea07e5 (before `EvalModel`) by
 * running the old `runTasks({ name, model, tokenizer }, tasks, settings)` on the wasm backend
 * with exactly the tasks and settings below; `slim` keeps what the comparison needs.
 *
 * @forge/eval is a devDependency of this package for this test only: `evalModel` fits eval's
 * `EvalModel` by shape (this package never imports eval), and the typed assignment below and
 * the runs prove it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { exitCodeFor } from "@forge/core";
import {
  type EvalModel,
  type EvalResults,
  loadTask,
  parseTask,
  runTasks,
  type Task,
} from "@forge/eval";
import type { Tokenizer } from "@forge/tokenizer";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "./backend/select.js";
import { loadModel } from "./checkpoint.js";
import { evalModel, modelHash } from "./eval-model.js";
import type { GPT } from "./gpt.js";
import { attachLora } from "./lora.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const tiny = path.resolve(here, "../../tiny/model");
const fixture = JSON.parse(readFileSync(path.join(here, "eval-model.fixture.json"), "utf8"));
const tmp = mkdtempSync(path.join(os.tmpdir(), "forge-eval-model-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let model: GPT;
let tokenizer: Tokenizer;
let fileTasks: Task[];
let extra: Task[];

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  const loaded = await loadModel(tiny);
  model = loaded.model;
  tokenizer = loaded.tokenizer!;
  const files = [
    "arithmetic",
    "antonyms",
    "capitals",
    "counting",
    "reversal",
    "spelling",
    "persona-pirate",
    "persona-pirate-prompted",
  ];
  fileTasks = await Promise.all(files.map((f) => loadTask(path.join(tiny, "tasks", `${f}.yaml`))));
  const capitals = path.join(tiny, "tasks", "capitals.yaml");
  extra = await Promise.all([
    parseTask(
      `name: capitals-logprob-mean\ndata: data/capitals.jsonl\nmessages: [{ role: user, content: "{{question}}" }]\nscorer: { type: logprob, target: "The capital of {{answer}} is {{answer}}." }\n`,
      capitals,
    ),
    parseTask(
      `name: capitals-logprob-sum\ndata: data/capitals.jsonl\nmessages: [{ role: system, content: "You are a pirate." }, { role: user, content: "{{question}}" }]\nscorer: { type: logprob, target: "{{answer}}", normalize: sum }\n`,
      capitals,
    ),
    parseTask(
      `name: capitals-sampled\ndata: data/capitals.jsonl\nrounds: 2\nmessages: [{ role: user, content: "{{question}}" }]\ngeneration: { maxNewTokens: 24, temperature: 0.9, topK: 40, topP: 0.95 }\nscorer: { type: contains, target: "{{answer}}" }\n`,
      capitals,
    ),
    parseTask(
      `name: arithmetic-hot\ndata: data/arithmetic.jsonl\nmessages: [{ role: user, content: "{{question}}" }]\ngeneration: { maxNewTokens: 32, temperature: 1.5 }\nscorer: { type: numeric, target: "{{answer}}", pick: last }\n`,
      path.join(tiny, "tasks", "arithmetic.yaml"),
    ),
  ]);
});

afterAll(() => model?.dispose());

/** What the fixture keeps of a run. */
const slim = (r: EvalResults) => ({
  model: r.model,
  settings: r.settings,
  tasks: r.tasks.map((t) => ({
    name: t.name,
    hash: t.hash,
    rounds: t.rounds,
    n: t.n,
    mean: t.mean,
    records: t.records.map(({ id, round, seed, output, score }) => ({
      id,
      round,
      seed,
      output,
      score,
    })),
  })),
});

/**
 * `actual` equals `expected` with every number within 1e-5 + 1e-6 × its size (float32 sums of
 * log-probabilities reach −42): the fused inference kernels
 * (LayerNorm, GELU in one wasm kernel each) round differently from the tfjs compositions the
 * fixture was captured with, so log-probability scores move in the 7th digit; replies, ids,
 * seeds and hashes must still be identical.
 */
function expectClose(actual: unknown, expected: unknown, where = "$"): void {
  if (typeof expected === "number" && typeof actual === "number") {
    expect(Math.abs(actual - expected), `${where}: ${actual} vs ${expected}`).toBeLessThan(
      1e-5 + 1e-6 * Math.abs(expected),
    );
    return;
  }
  if (Array.isArray(expected)) {
    expect(Array.isArray(actual), where).toBe(true);
    expect((actual as unknown[]).length, where).toBe(expected.length);
    for (const [i, e] of expected.entries())
      expectClose((actual as unknown[])[i], e, `${where}[${i}]`);
    return;
  }
  if (typeof expected === "object" && expected !== null) {
    expect(Object.keys(actual as object).sort(), where).toEqual(Object.keys(expected).sort());
    for (const [k, e] of Object.entries(expected))
      expectClose((actual as Record<string, unknown>)[k], e, `${where}.${k}`);
    return;
  }
  expect(actual, where).toEqual(expected);
}

describe("evalModel: forge-tiny through @forge/eval equals the runner before EvalModel", () => {
  it("fits EvalModel, and its id is the weights hash the old runner recorded", () => {
    const evaluated: EvalModel = evalModel(model, tokenizer, { name: "forge-tiny" });
    expect(evaluated.name).toBe("forge-tiny");
    expect(evaluated.id).toBe(fixture.modelHash);
    expect(modelHash(model)).toBe(fixture.modelHash);
  });

  it("every reply and score, greedy, sampled and log-probability, and the cache keys", async () => {
    const evaluated = evalModel(model, tokenizer, { name: "forge-tiny" });
    const cacheDir = path.join(tmp, "cache");
    const main = await runTasks(evaluated, [...fileTasks, ...extra], { seed: 7, cacheDir });
    expectClose(slim(main), fixture.runs.main);
    // the same cache files: results cached before EvalModel are still found
    expect(readdirSync(cacheDir).sort()).toEqual(fixture.cacheFiles);
    const smallBatch = await runTasks(evaluated, [extra[2]!, extra[3]!], {
      seed: 11,
      rounds: 3,
      batchSize: 8,
    });
    expectClose(slim(smallBatch), fixture.runs.smallBatch);
    const prompted = await runTasks(
      evalModel(model, tokenizer, { name: "prompted" }),
      [fileTasks[2]!, fileTasks[5]!, extra[0]!],
      { system: "You are a pirate." },
    );
    expectClose(slim(prompted), fixture.runs.prompted);
  });
});

describe("evalModel's methods", () => {
  it("generate: one trimmed reply per conversation, none for none", async () => {
    const evaluated = evalModel(model, tokenizer, { name: "t" });
    expect(await evaluated.generate([], { maxNewTokens: 8, temperature: 0, seed: 0 })).toEqual([]);
    const [reply] = await evaluated.generate(
      [[{ role: "user", content: "Name the capital of Greece." }]],
      { maxNewTokens: 64, temperature: 0, seed: 0 },
    );
    expect(reply).toBe(fixture.runs.main.tasks[2].records[0].output);
    expect(reply).not.toMatch(/<\|/);
  });

  it("logprobs: one value per target token plus the end of turn; too long for the window is exit 2 naming the task file", async () => {
    const evaluated = evalModel(model, tokenizer, { name: "t" });
    const [values] = await evaluated.logprobs([
      { messages: [{ role: "user", content: "Name the capital of Greece." }], target: "Athens" },
    ]);
    const tokens = tokenizer.encode("Athens").length + 1;
    expect(values).toHaveLength(tokens);
    for (const v of values!) expect(v).toBeLessThanOrEqual(0);
    const file = path.join(tmp, "long.yaml");
    const long = await parseTask(
      `name: long\nitems: [{ id: a, q: "hi" }]\nmessages: [{ role: user, content: "{{q}}" }]\nscorer: { type: logprob, target: "${"very ".repeat(300)}long" }\n`,
      file,
    );
    const error = await runTasks(evaluated, [long]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(exitCodeFor(error)).toBe(2);
    expect(error!.message).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: model "t": logprobs request 0: .*context window of 256 tokens$`,
      ),
    );
  });

  it("id follows the weights: an adapter changes it, at strength 0 it is the base's; a given id wins", () => {
    const evaluated = evalModel(model, tokenizer, { name: "t" });
    const base = evaluated.id;
    const adapter = attachLora(model, { r: 2 });
    try {
      for (const b of adapter.b.values())
        tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.1, "float32", 3)));
      const adapted = evaluated.id;
      expect(adapted).not.toBe(base);
      adapter.strength = 0;
      expect(evaluated.id).toBe(base);
      adapter.strength = 0.5;
      expect(evaluated.id).not.toBe(adapted);
    } finally {
      adapter.dispose();
      model.lora = undefined;
    }
    expect(evaluated.id).toBe(base);
    expect(evalModel(model, tokenizer, { name: "t", id: "served:forge-tiny@1" }).id).toBe(
      "served:forge-tiny@1",
    );
  });
});
