/**
 * GSM8K-format datasets: the final number after `####` is the target, read by the numeric
 * scorer's own `extractNumber`; the task scores the last number of a reply; bad lines are
 * refused naming file:line and never quoting the line.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { gsm8kFinalAnswer, loadGsm8k, parseGsm8k } from "./gsm8k.js";
import type { ChatMessage, EvalModel } from "./model.js";
import { extractNumber } from "./numbers.js";
import { runTasks } from "./runner.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-gsm8k-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lines = [
  {
    question: "Natalia sold 48 clips in April and half as many in May. How many in all?",
    answer: "48 / 2 = 24\n48 + 24 = 72\n#### 72",
  },
  {
    question: "A shop has 1,200 apples and sells 250. How many are left?",
    answer: "1,200 - 250 = 950\n#### 950",
  },
  { question: "What is 7 - 10?", answer: "#### -3" },
];

describe("extractNumber", () => {
  it("reads the first or last number, thousands separators and signs included", () => {
    expect(extractNumber("so 23 + 49 = 72.")).toBe(23);
    expect(extractNumber("so 23 + 49 = 72.", "last")).toBe(72);
    expect(extractNumber("about 1,234.5 of them", "last")).toBe(1234.5);
    expect(extractNumber("it is -3")).toBe(-3);
    expect(extractNumber("no numbers")).toBeUndefined();
  });
});

describe("GSM8K files", () => {
  it("become a task: question as the user turn, the number after #### as the target", () => {
    const task = parseGsm8k(lines.map((l) => JSON.stringify(l)).join("\n"), "train.jsonl");
    expect(task.name).toBe("train");
    expect(task.items.map((i) => [i.id, i.target])).toEqual([
      ["1", "72"],
      ["2", "950"],
      ["3", "-3"],
    ]);
    expect(task.messages).toEqual([{ role: "user", content: "{{question}}" }]);
    expect(task.scorer).toEqual({ type: "numeric", target: "{{target}}", pick: "last" });
    expect(gsm8kFinalAnswer("a #### 1 b #### 2,500")).toBe(2500);
  });

  it("are scored on the reply's last number, through the runner", async () => {
    const file = path.join(dir, "small.jsonl");
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
    const task = await loadGsm8k(file);
    const replies: Record<string, string> = {
      [lines[0]!.question]: "48 / 2 = 24, 48 + 24 = 72",
      [lines[1]!.question]: "There are 1,200 - 250 = 905 left.",
      [lines[2]!.question]: "7 - 10 = -3",
    };
    const model: EvalModel = {
      name: "table",
      id: "table-1",
      generate: async (conversations: readonly ChatMessage[][]) =>
        conversations.map((c) => replies[c.at(-1)!.content] ?? ""),
    };
    const results = await runTasks(model, [task]);
    expect(results.tasks[0]!.records.map((r) => r.score)).toEqual([1, 0, 1]);
  });

  it("refuse a line without an answer, without ####, without a question, naming file:line only", () => {
    const secret = "s3cr3t-content";
    const cases: [string, RegExp][] = [
      [JSON.stringify({ question: secret }), /data\.jsonl:2: "answer" is missing/],
      [
        JSON.stringify({ question: secret, answer: `${secret} 42` }),
        /data\.jsonl:2: "answer" has no final number after "####"/,
      ],
      [
        JSON.stringify({ answer: "#### 4" }),
        /data\.jsonl:2: "question" must be a non-empty string/,
      ],
      [`{"question": "${secret}", `, /data\.jsonl:2: invalid JSON at character/],
      [JSON.stringify([secret]), /data\.jsonl:2: not a JSON object/],
    ];
    for (const [line, message] of cases) {
      const text = `${JSON.stringify(lines[0])}\n${line}\n`;
      let error: unknown;
      try {
        parseGsm8k(text, "data.jsonl");
      } catch (caught) {
        error = caught;
      }
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain(secret);
    }
    expect(() => parseGsm8k("\n\n", "empty.jsonl")).toThrow(/empty\.jsonl has no items/);
  });
});
