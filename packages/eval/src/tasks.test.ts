import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EvaluationError } from "./errors.js";
import { makeScorer } from "./runner.js";
import { loadTask, parseTask, renderMessages, type TaskProblem, validateTask } from "./tasks.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-tasks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = `name: capitals
tags: [knowledge]
items:
  - { id: fr, country: France, answer: Paris, system: "" }
  - { id: es, country: Spain, answer: Madrid, system: "Be brief." }
messages:
  - { role: system, content: "{{system}}" }
  - { role: user, content: "What is the capital of {{country}}?" }
generation: { maxNewTokens: 16, temperature: 0 }
scorer: { type: contains, target: "{{answer}}" }
`;

describe("task files", () => {
  it("parse: items get ids, slots render, empty messages drop, the hash is stable", async () => {
    const task = await parseTask(good, "capitals.yaml");
    expect(task.items.map((i) => i.id)).toEqual(["fr", "es"]);
    expect(renderMessages(task, task.items[0]!)).toEqual([
      { role: "user", content: "What is the capital of France?" },
    ]);
    expect(renderMessages(task, task.items[1]!)).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "What is the capital of Spain?" },
    ]);
    expect(task.hash).toBe((await parseTask(good, "capitals.yaml")).hash);
    expect(task.hash).not.toBe(
      (await parseTask(good.replace("Madrid", "Barcelona"), "capitals.yaml")).hash,
    );
  });

  it("data: a JSONL file next to the task; a bad line is an error naming it", async () => {
    writeFileSync(
      path.join(dir, "items.jsonl"),
      '{"id": "a", "q": "1+1", "answer": "2"}\n{"q": "2+2", "answer": "4"}\n',
    );
    writeFileSync(
      path.join(dir, "sums.yaml"),
      'name: sums\ndata: items.jsonl\nmessages:\n  - { role: user, content: "{{q}}" }\nscorer: { type: numeric, target: "{{answer}}" }\n',
    );
    const task = await loadTask(path.join(dir, "sums.yaml"));
    expect(task.items.map((i) => i.id)).toEqual(["a", "1"]);
    writeFileSync(path.join(dir, "broken.jsonl"), '{"q": "x"}\nnot json\n');
    writeFileSync(
      path.join(dir, "broken.yaml"),
      'name: b\ndata: broken.jsonl\nmessages:\n  - { role: user, content: "{{q}}" }\nscorer: { type: exact, target: "x" }\n',
    );
    await expect(loadTask(path.join(dir, "broken.yaml"))).rejects.toThrow(
      /broken.jsonl:2: not a JSON object/,
    );
  });

  it("validation returns every problem with its path, line and column", () => {
    const text = `name: ""
item: []
items: [{ a: 1 }]
messages:
  - { role: robot, content: "hi" }
generation: { maxNewTokens: 0, temprature: 1 }
scorer: { type: fuzzy, pattren: x }
`;
    const result = validateTask("bad.yaml", text);
    expect(result.ok).toBe(false);
    const problems = (result as { problems: TaskProblem[] }).problems;
    const find = (p: string) => problems.find((x) => x.path === p);
    expect(find("name")).toMatchObject({ line: 1, message: "name must be a non-empty string" });
    expect(find("item")).toMatchObject({
      line: 2,
      message: expect.stringContaining('unknown key "item"'),
    });
    expect(find("messages[0].role")).toMatchObject({ line: 5, column: 13 });
    expect(find("generation.maxNewTokens")).toMatchObject({ line: 6 });
    expect(find("generation.temprature")).toMatchObject({
      message: expect.stringContaining("unknown key"),
    });
    expect(find("scorer.type")).toMatchObject({
      line: 7,
      message: expect.stringContaining("scorer.type must be one of exact, contains"),
    });
    expect(find("scorer.pattren")).toMatchObject({
      line: 7,
      message: expect.stringContaining('unknown key "pattren"; accepted: type, target, pattern'),
    });
  });

  it("broken YAML and a slot no item fills are errors", async () => {
    await expect(parseTask("name: [unclosed", "y.yaml")).rejects.toThrow(/y.yaml:1:\d+: \(yaml\)/);
    await expect(parseTask(good.replace("{{country}}", "{{nation}}"), "c.yaml")).rejects.toThrow(
      'c.yaml: messages[1]: item fr has no field "nation"',
    );
    const error = await parseTask("name: x\n", "x.yaml").catch((e: unknown) => e);
    expect(EvaluationError.isInstance(error)).toBe(true);
  });
});

describe("scorers", () => {
  const scorer = async (
    spec: string,
    output: string,
    item: Record<string, unknown> = { id: "i", answer: "Paris" },
  ) => {
    const task = await parseTask(
      `name: t\nitems: [{ id: i, answer: Paris }]\nmessages: [{ role: user, content: q }]\nscorer: ${spec}\n`,
      path.join(dir, "t.yaml"),
      { allowCode: true },
    );
    return (await makeScorer(task, { allowCode: true }))(output, { id: "i", ...item });
  };
  it("exact, contains, regex, numeric, keywords and a JS module", async () => {
    expect(await scorer('{ type: exact, target: "{{answer}}" }', " paris ")).toBe(1);
    expect(
      await scorer('{ type: exact, target: "{{answer}}", caseSensitive: true }', "paris"),
    ).toBe(0);
    expect(await scorer('{ type: contains, target: "{{answer}}" }', "It is PARIS.")).toBe(1);
    expect(await scorer('{ type: regex, pattern: "^Arr.*matey" }', "Arr, yes matey")).toBe(1);
    expect(await scorer('{ type: numeric, target: "54", tolerance: 0 }', "10 + 44 = 54.")).toBe(0); // first number is 10
    expect(await scorer('{ type: numeric, target: "54", pick: last }', "10 + 44 = 54.")).toBe(1);
    expect(await scorer('{ type: numeric, target: "1200", pick: last }', "so it is 1,200")).toBe(1);
    expect(await scorer('{ type: numeric, target: "54" }', "The answer is 54.")).toBe(1);
    expect(
      await scorer("{ type: keywords, keywords: [arr, matey, ship] }", "Arr matey!"),
    ).toBeCloseTo(2 / 3);
    writeFileSync(
      path.join(dir, "len.mjs"),
      "export default (output, item) => output.length === item.answer.length;\n",
    );
    expect(await scorer("{ type: js, module: len.mjs }", "Rome!")).toBe(1);
    writeFileSync(path.join(dir, "nope.mjs"), "export const x = 1;\n");
    await expect(scorer("{ type: js, module: nope.mjs }", "x")).rejects.toThrow(
      /must export a default function/,
    );
  });
});
