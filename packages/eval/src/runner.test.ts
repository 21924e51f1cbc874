/**
 * The runner with models written by hand against `EvalModel` (forge's own model through it is
 * tested in @forge/model's eval-model.test.ts, on forge-tiny). Each model here records what it
 * was asked, so batching, seeds, the greedy memo and the cache are checked by what reached it.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor, ForgeError } from "@forge/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareResults, evaluateGates, forgettingFromResults } from "./compare.js";
import type { ChatMessage, EvalModel, GenerateOptions, LogprobRequest } from "./model.js";
import { heatmapSvg, toHtml, toJUnit, toMarkdown } from "./report.js";
import { type EvalResults, runTasks } from "./runner.js";
import { parseTask, type Task } from "./tasks.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-runner-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small deterministic hash of a text (FNV-1a), for replies that depend on their inputs. */
function fnv(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const lastUser = (messages: readonly ChatMessage[]) =>
  messages.filter((m) => m.role === "user").at(-1)?.content ?? "";

/**
 * A model that answers "Say N" with N (greedy) or with a number drawn from the seed, the
 * position in the call and the conversation (sampled), and gives log-probabilities of -0.5
 * per character of the target plus one for the end of turn. It records every call.
 */
class RecordingModel implements EvalModel {
  readonly generateCalls: { conversations: ChatMessage[][]; options: GenerateOptions }[] = [];
  readonly logprobCalls: LogprobRequest[][] = [];
  constructor(
    readonly name: string,
    readonly id = `${name}-v1`,
  ) {}

  async generate(conversations: readonly ChatMessage[][], options: GenerateOptions) {
    this.generateCalls.push({ conversations: [...conversations], options });
    return conversations.map((messages, j) => {
      const said = lastUser(messages).replace(/^Say /, "");
      const system = messages[0]?.role === "system" ? `[${messages[0].content}] ` : "";
      if (options.temperature === 0) return `  ${system}${said}\n`;
      return `${system}${fnv(`${options.seed}|${j}|${JSON.stringify(messages)}`) % 1000}`;
    });
  }

  async logprobs(requests: readonly LogprobRequest[]) {
    this.logprobCalls.push([...requests]);
    return requests.map(({ target }) => [...Array.from(target, () => -0.5), -0.25]);
  }
}

/** The same answers, without log-probabilities. */
class TextOnlyModel implements EvalModel {
  readonly name = "text-only";
  readonly id = "text-only-v1";
  private readonly inner = new RecordingModel("inner");
  generate(conversations: readonly ChatMessage[][], options: GenerateOptions) {
    return this.inner.generate(conversations, options);
  }
  get calls() {
    return this.inner.generateCalls.length;
  }
}

let tasks: Task[];
const items = Array.from({ length: 12 }, (_, i) => `  - { id: q${i}, n: "${i}" }`).join("\n");

beforeAll(async () => {
  tasks = await Promise.all([
    parseTask(
      `name: echo\nitems:\n${items}\nmessages: [{ role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 4, temperature: 1, topK: 5 }\nscorer: { type: regex, pattern: "\\\\S" }\n`,
      path.join(dir, "echo.yaml"),
    ),
    parseTask(
      `name: likelihood\nitems:\n${items}\nmessages: [{ role: user, content: "Say {{n}}" }]\nscorer: { type: logprob, target: "{{n}}" }\n`,
      path.join(dir, "lp.yaml"),
    ),
  ]);
});

/** The error a promise rejects with (fails the test when it resolves). */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  const result = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(result, "expected a refusal").toBeInstanceOf(Error);
  return result as Error;
}

describe("runTasks", () => {
  it("records every item × round, asks in batches with a seed per batch, caches, and re-runs are free", async () => {
    const m = new RecordingModel("m1");
    const cacheDir = path.join(dir, "cache");
    const first = await runTasks(m, tasks, { rounds: 2, seed: 3, cacheDir, batchSize: 5 });
    expect(first.model).toEqual({ name: "m1", hash: "m1-v1" });
    expect(first.tasks[0]!.records).toHaveLength(24);
    expect(first.tasks[0]!.records[13]).toMatchObject({ id: "q1", round: 1, seed: 4 });
    // 12 items in batches of 5, two rounds: seed + round · 1,000,003 + the batch's first item
    expect(m.generateCalls.map((c) => [c.conversations.length, c.options.seed])).toEqual([
      [5, 3],
      [5, 8],
      [2, 13],
      [5, 1_000_006],
      [5, 1_000_011],
      [2, 1_000_016],
    ]);
    expect(m.generateCalls[0]!.options).toEqual({
      maxNewTokens: 4,
      temperature: 1,
      topK: 5,
      seed: 3,
    });
    expect(m.generateCalls[0]!.conversations[1]).toEqual([{ role: "user", content: "Say 1" }]);
    // log-probabilities: once (they do not depend on the round), in batches, summed per token
    // and averaged (normalize: mean); the same score in every round
    expect(m.logprobCalls.map((c) => c.length)).toEqual([5, 5, 2]);
    expect(m.logprobCalls[0]![3]).toEqual({
      messages: [{ role: "user", content: "Say 3" }],
      target: "3",
    });
    expect(first.tasks[1]!.records[0]!.score).toBe(-0.375); // (-0.5 - 0.25) / 2
    expect(first.tasks[1]!.records[12]!.score).toBe(-0.375);
    expect(first.tasks[1]!.records[10]!.score).toBe(-1.25 / 3); // "10": two characters
    const cached: boolean[] = [];
    const again = await runTasks(m, tasks, {
      rounds: 2,
      seed: 3,
      cacheDir,
      batchSize: 5,
      onProgress: (e) => cached.push(Boolean(e.cached)),
    });
    expect(cached).toEqual([true, true]);
    expect(m.generateCalls).toHaveLength(6);
    expect(again.tasks).toEqual(first.tasks);
    const fresh = await runTasks(m, tasks, { rounds: 2, seed: 4, cacheDir });
    expect(fresh.tasks[0]!.records.map((r) => r.output)).not.toEqual(
      first.tasks[0]!.records.map((r) => r.output),
    );
    // another model id is another cache entry, even with the same name
    const other = new RecordingModel("m1", "m1-v2");
    await runTasks(other, tasks, { rounds: 2, seed: 3, cacheDir, batchSize: 5 });
    expect(other.generateCalls).toHaveLength(6);
  });

  it("a logprob task and a model without logprobs: exit 2 naming the task file, before anything runs", async () => {
    const m = new TextOnlyModel();
    const error = await refusal(runTasks(m, tasks));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain(path.join(dir, "lp.yaml"));
    expect(error.message).toContain("scorer.type logprob");
    expect(error.message).toContain('"text-only"');
    expect(m.calls).toBe(0);
    const textOnly = await runTasks(m, [tasks[0]!]);
    expect(textOnly.tasks[0]!.n).toBe(12);
  });
});

describe("runTasks with a system prompt and greedy decoding", () => {
  it("puts the system prompt first unless the task has one; identical greedy conversations are asked once", async () => {
    const m = new RecordingModel("m2");
    const greedy = await Promise.all(
      ["a", "b"].map((name) =>
        parseTask(
          `name: ${name}\nitems: [{ id: x, n: "1" }, { id: y, n: "2" }]\nmessages: [{ role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 6, temperature: 0 }\nscorer: { type: regex, pattern: "." }\n`,
          path.join(dir, `${name}.yaml`),
        ),
      ),
    );
    const own = await parseTask(
      `name: own\nitems: [{ id: x, n: "1" }]\nmessages: [{ role: system, content: "Mine." }, { role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 6, temperature: 0 }\nscorer: { type: regex, pattern: "." }\n`,
      path.join(dir, "own.yaml"),
    );
    const prompted = await runTasks(m, [...greedy, own], { system: "Be brief." });
    expect(prompted.settings.system).toBe("Be brief.");
    expect(prompted.tasks[0]!.records[0]!.input[0]).toEqual({
      role: "system",
      content: "Be brief.",
    });
    expect(prompted.tasks[2]!.records[0]!.input[0]).toEqual({ role: "system", content: "Mine." });
    // the replies as recorded: trimmed
    expect(prompted.tasks[0]!.records.map((r) => r.output)).toEqual([
      "[Be brief.] 1",
      "[Be brief.] 2",
    ]);
    expect(prompted.tasks[2]!.records[0]!.output).toBe("[Mine.] 1");
    // task b asks what task a asked: no call for it
    expect(m.generateCalls.map((c) => c.conversations.length)).toEqual([2, 1]);
    expect(prompted.tasks[1]!.records).toEqual(prompted.tasks[0]!.records.map((r) => ({ ...r })));
    const plain = await runTasks(m, [greedy[0]!]);
    expect(plain.tasks[0]!.records[0]!.input[0]!.role).toBe("user");
    expect(plain.tasks[0]!.records[0]!.output).toBe("1");
  });

  it("progress: one event per batch, the last one complete", async () => {
    const m = new RecordingModel("m3");
    const events: { task: string; done: number; total: number }[] = [];
    await runTasks(m, tasks, { batchSize: 8, onProgress: (e) => events.push(e) });
    expect(events).toEqual([
      { task: "echo", done: 8, total: 12 },
      { task: "echo", done: 12, total: 12 },
      { task: "likelihood", done: 8, total: 12 },
      { task: "likelihood", done: 12, total: 12 },
    ]);
  });
});

describe("js scorers through runTasks", () => {
  it("run only with allowCode, even for a task parsed with it", async () => {
    writeFileSync(
      path.join(dir, "even.mjs"),
      "export default (output) => Number(output.trim()) % 2 === 0;\n",
    );
    const file = path.join(dir, "js.yaml");
    const task = await parseTask(
      `name: even\nitems: [{ id: a, n: "2" }, { id: b, n: "3" }]\nmessages: [{ role: user, content: "Say {{n}}" }]\ngeneration: { maxNewTokens: 2, temperature: 0 }\nscorer: { type: js, module: even.mjs }\n`,
      file,
      { allowCode: true },
    );
    const m = new RecordingModel("m4");
    const error = await refusal(runTasks(m, [task]));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain("--allow-code");
    expect(m.generateCalls).toHaveLength(0);
    const ran = await runTasks(m, [task], { allowCode: true });
    expect(ran.tasks[0]!.records.map((r) => r.score)).toEqual([1, 0]);
  });
});

describe("models that misbehave", () => {
  it("a model that is not an EvalModel, or has no id: exit 2 before anything runs", async () => {
    for (const model of [
      { name: "x", id: "x" },
      { name: "", id: "x", generate: async () => [] },
      { name: "x", id: "", generate: async () => [] },
    ]) {
      const error = await refusal(runTasks(model as unknown as EvalModel, tasks.slice(0, 1)));
      expect(exitCodeFor(error)).toBe(2);
    }
    const error = await refusal(
      runTasks(new RecordingModel("m"), tasks.slice(0, 1), { batchSize: 0 }),
    );
    expect(error.message).toBe("batchSize must be a positive integer; got 0");
  });

  it("the wrong number of replies, or log-probabilities that are not numbers: exit 2 naming the model", async () => {
    const short: EvalModel = {
      name: "short",
      id: "short",
      generate: async (conversations) => conversations.slice(1).map(() => "1"),
    };
    const error = await refusal(runTasks(short, tasks.slice(0, 1)));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain(
      'model "short": generate must return one string per conversation; asked for 12, got 11',
    );
    const nan: EvalModel = {
      name: "nan",
      id: "nan",
      generate: async (conversations) => conversations.map(() => "1"),
      logprobs: async (requests) => requests.map(() => [Number.NaN]),
    };
    const lp = await refusal(runTasks(nan, tasks.slice(1)));
    expect(exitCodeFor(lp)).toBe(2);
    expect(lp.message).toContain('model "nan": logprobs must return');
  });

  it("a forge error from the model keeps its category and gains the task file; any other error passes through", async () => {
    const refusing: EvalModel = {
      name: "refusing",
      id: "refusing",
      generate: async () => {
        throw new ForgeError("E_INPUT", "the conversation is longer than the context window");
      },
    };
    const error = await refusal(runTasks(refusing, tasks.slice(0, 1)));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toBe(
      `${path.join(dir, "echo.yaml")}: model "refusing": the conversation is longer than the context window`,
    );
    const broken: EvalModel = {
      name: "broken",
      id: "broken",
      generate: async () => {
        throw new TypeError("undefined is not a function");
      },
    };
    const bug = await refusal(runTasks(broken, tasks.slice(0, 1)));
    expect(bug).toBeInstanceOf(TypeError);
    expect(exitCodeFor(bug)).toBe(3);
  });
});

describe("comparing results", () => {
  const fake = (
    name: string,
    scores: number[],
    ids = scores.map((_, i) => `i${i}`),
  ): EvalResults => ({
    schemaVersion: 1,
    kind: "forge-eval-results",
    model: { name, hash: name },
    createdAt: "",
    settings: { seed: 0 },
    tasks: [
      {
        name: "t",
        hash: "h",
        tags: [],
        scorer: "contains",
        rounds: 1,
        n: ids.length,
        mean: 0,
        records: ids.map((id, i) => ({
          id,
          round: 0,
          seed: 0,
          input: [],
          output: "",
          score: scores[i]!,
        })),
      },
    ],
  });

  it("different item sets are an error naming the missing ids", () => {
    expect(() =>
      compareResults(fake("a", [1, 0, 1]), fake("b", [1, 0, 1], ["i0", "i1", "i9"])),
    ).toThrow("task t: the results have different items — missing from B: i2; missing from A: i9");
  });

  it("gates: a planted regression fails, no-improvement fails without a win, forgetting flags the drop", () => {
    const base = fake(
      "base",
      Array.from({ length: 100 }, (_, i) => (i % 10 === 0 ? 0 : 1)),
    );
    const worse = fake(
      "worse",
      Array.from({ length: 100 }, (_, i) => (i % 3 === 0 ? 0 : 1)),
    );
    const comparison = compareResults(base, worse);
    expect(comparison.tasks[0]!.winner).toBe("A");
    const gates = evaluateGates(["regression", "no-improvement"], comparison);
    expect(gates.map((g) => g.passed)).toEqual([false, false]);
    const forgetting = forgettingFromResults(base, [worse]);
    expect(evaluateGates(["forgetting"], undefined, forgetting)[0]!.passed).toBe(false);
    const same = forgettingFromResults(base, [
      fake(
        "same",
        base.tasks[0]!.records.map((r) => r.score),
      ),
    ]);
    expect(evaluateGates(["forgetting"], undefined, same)[0]!.passed).toBe(true);
    const input = { title: "t", comparison, forgetting, gates };
    expect(toJUnit(input)).toMatch(/<testsuites name="t" tests="3" failures="2">/);
    expect(toMarkdown(input)).toContain("| t | 90.0 | 66.0 | -24.0 |");
    expect(toHtml(input)).toMatch(/^<!doctype html>[\s\S]*<svg[\s\S]*<svg/);
    expect(toHtml(input)).not.toMatch(/<script|src=|href=/);
    expect(heatmapSvg(forgetting)).toContain("90.0");
  });
});
