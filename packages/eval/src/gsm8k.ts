/**
 * GSM8K-format datasets as tasks. Each line of the JSONL file is one problem:
 *
 *   {"question": "Natalia sold 48 clips …", "answer": "… 48 + 24 = 72\n#### 72"}
 *
 * The answer's working is kept as it is; the target is the number after the last `####`, read
 * by the same `extractNumber` the `numeric` scorer reads a model's output with. The task asks
 * the question as the user's message and scores the last number of the reply (the conclusion,
 * after any working) against the target. An optional `id` field names an item (else its line
 * number). Errors name the file and line, never the line's content.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { parseJson, readTextFile } from "@forge/core";
import { EvaluationError } from "./errors.js";
import { extractNumber } from "./numbers.js";
import type { Item, Task } from "./tasks.js";

export interface Gsm8kOptions {
  /** The task's name (default: the file's name without its extension). */
  name?: string;
  /** The longest reply, in tokens (default 64). */
  maxNewTokens?: number;
}

/** The final answer of a GSM8K answer text: the number after its last `####`. */
export function gsm8kFinalAnswer(answer: string): number | undefined {
  const marker = answer.lastIndexOf("####");
  return marker < 0 ? undefined : extractNumber(answer.slice(marker + 4));
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** GSM8K-format JSONL text → a task (`source` names the file in messages and in the task). */
export function parseGsm8k(text: string, source: string, options: Gsm8kOptions = {}): Task {
  const items: Item[] = [];
  const seen = new Set<string>();
  text.split("\n").forEach((line, index) => {
    if (line.trim() === "") return;
    const where = `${source}:${index + 1}`;
    let value: unknown;
    try {
      value = parseJson(line, source, index + 1);
    } catch (error) {
      throw new EvaluationError("E_TASK", (error as Error).message, { cause: error });
    }
    if (!isRecord(value))
      throw new EvaluationError(
        "E_TASK",
        `${where}: not a JSON object; a GSM8K line is {"question": "…", "answer": "… #### <number>"}`,
      );
    if (typeof value.question !== "string" || value.question.trim() === "")
      throw new EvaluationError("E_TASK", `${where}: "question" must be a non-empty string`);
    if (typeof value.answer !== "string" && typeof value.answer !== "number")
      throw new EvaluationError(
        "E_TASK",
        `${where}: "answer" is missing; a GSM8K answer ends with "#### <number>"`,
      );
    const answer = String(value.answer);
    const target = gsm8kFinalAnswer(answer);
    if (target === undefined)
      throw new EvaluationError(
        "E_TASK",
        `${where}: "answer" has no final number after "####"; a GSM8K answer ends with "#### <number>"`,
      );
    if (value.id !== undefined && typeof value.id !== "string" && typeof value.id !== "number")
      throw new EvaluationError("E_TASK", `${where}: "id" must be a string or a number`);
    const id = value.id === undefined ? String(index + 1) : String(value.id);
    if (seen.has(id))
      throw new EvaluationError("E_TASK", `${where}: item id ${JSON.stringify(id)} appears twice`);
    seen.add(id);
    items.push({ id, question: value.question, answer, target: String(target) });
  });
  if (items.length === 0)
    throw new EvaluationError("E_TASK", `${source} has no items; a GSM8K file has one per line`);
  const maxNewTokens = options.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1)
    throw new EvaluationError("E_INPUT", `maxNewTokens must be a positive integer`);
  const task: Omit<Task, "hash"> = {
    name: options.name ?? path.basename(source).replace(/\.[^.]*$/, ""),
    description: `GSM8K-format problems from ${path.basename(source)}`,
    tags: ["gsm8k"],
    messages: [{ role: "user", content: "{{question}}" }],
    generation: { maxNewTokens, temperature: 0 },
    rounds: 1,
    scorer: { type: "numeric", target: "{{target}}", pick: "last" },
    items,
    file: source,
    dataFile: path.resolve(source),
  };
  const hash = createHash("sha256")
    .update(JSON.stringify({ ...task, file: undefined, dataFile: undefined }))
    .digest("hex");
  return { ...task, hash };
}

/** Load a GSM8K-format JSONL file as a task (see `parseGsm8k`). */
export async function loadGsm8k(file: string, options: Gsm8kOptions = {}): Promise<Task> {
  let text: string;
  try {
    text = await readTextFile(file, "GSM8K data ");
  } catch (error) {
    throw new EvaluationError("E_IO", (error as Error).message, { cause: error, category: "io" });
  }
  return parseGsm8k(text, file, options);
}
