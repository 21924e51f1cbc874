/**
 * Evaluation tasks as YAML files:
 *
 *   name: capitals
 *   description: country → capital, held out
 *   tags: [forge-tiny, knowledge]
 *   data: capitals.jsonl            # JSONL relative to this file — or `items:` inline
 *   messages:
 *     - { role: system, content: "{{system}}" }    # a message that renders empty is dropped
 *     - { role: user, content: "What is the capital of {{country}}?" }
 *   generation: { maxNewTokens: 32, temperature: 0 }
 *   rounds: 1
 *   scorer: { type: contains, target: "{{answer}}" }
 *
 * Scorers: exact, contains, regex (`pattern`), numeric (`target`, `tolerance`, `pick`), keywords
 * (`keywords`: the fraction present), logprob (of `target` after the prompt), js (`module`:
 * a file whose default export is `(output, item) => number | boolean`).
 *
 * Validation returns every problem with its path in the file and, where YAML gives one, its
 * line and column.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { ChatMessage } from "@forge/tokenizer";
import { isMap, isSeq, LineCounter, parseDocument } from "yaml";
import { EvaluationError } from "./errors.js";

export type ScorerType = "exact" | "contains" | "regex" | "numeric" | "keywords" | "logprob" | "js";
export const SCORER_TYPES: ScorerType[] = [
  "exact",
  "contains",
  "regex",
  "numeric",
  "keywords",
  "logprob",
  "js",
];

export interface ScorerSpec {
  type: ScorerType;
  target?: string;
  pattern?: string;
  flags?: string;
  keywords?: string[];
  caseSensitive?: boolean;
  tolerance?: number;
  /** numeric: which number in the output is the answer, "first" (default) or "last". */
  pick?: "first" | "last";
  module?: string;
  /** logprob: "mean" (per token, default) or "sum". */
  normalize?: "mean" | "sum";
}

export interface GenerationSpec {
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
}

export type Item = Record<string, unknown> & { id: string };

export interface Task {
  name: string;
  description?: string;
  tags: string[];
  messages: { role: ChatMessage["role"]; content: string }[];
  generation: GenerationSpec;
  rounds: number;
  scorer: ScorerSpec;
  items: Item[];
  /** The file it came from (for error messages and js scorers). */
  file?: string;
  /** sha256 of the definition and items (the results cache keys on it). */
  hash: string;
}

export interface TaskProblem {
  path: string;
  message: string;
  line?: number;
  column?: number;
}

const DEFAULT_GENERATION: GenerationSpec = { maxNewTokens: 48, temperature: 0 };

/** Fill `{{field}}` slots from an item; a missing field is an error naming it. */
export function renderTemplate(
  template: string,
  item: Record<string, unknown>,
  where: string,
): string {
  return template.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, field: string) => {
    if (!(field in item))
      throw new EvaluationError(
        "E_TASK",
        `${where}: item ${String(item.id)} has no field "${field}"`,
      );
    const value = item[field];
    return value === null || value === undefined ? "" : String(value);
  });
}

/** The chat messages of an item (messages that render empty are dropped). */
export function renderMessages(task: Task, item: Item): ChatMessage[] {
  return task.messages
    .map((m, i) => ({
      role: m.role,
      content: renderTemplate(m.content, item, `${task.file ?? task.name}: messages[${i}]`),
    }))
    .filter((m) => m.content.trim() !== "");
}

function problemAt(
  doc: ReturnType<typeof parseDocument>,
  counter: LineCounter,
  keyPath: (string | number)[],
  message: string,
): TaskProblem {
  let node: unknown = doc.getIn(keyPath, true);
  for (let cut = keyPath.length - 1; !node && cut >= 0; cut--)
    node = doc.getIn(keyPath.slice(0, cut), true);
  const range = (node as { range?: [number, number, number] } | undefined)?.range;
  const position = range ? counter.linePos(range[0]) : undefined;
  return {
    path:
      keyPath
        .map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`))
        .join("")
        .replace(/^\./, "") || "(root)",
    message,
    ...(position ? { line: position.line, column: position.col } : {}),
  };
}

/** Validate a parsed task; returns the task or every problem found. */
export function validateTask(
  source: string,
  text: string,
):
  | { ok: true; task: Omit<Task, "hash" | "items"> & { data?: string; inline?: unknown[] } }
  | { ok: false; problems: TaskProblem[] } {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  const problems: TaskProblem[] = [];
  for (const error of doc.errors) {
    const position = error.linePos?.[0] ?? counter.linePos(error.pos[0]);
    problems.push({
      path: "(yaml)",
      message: error.message.split("\n")[0]!,
      ...(position ? { line: position.line, column: position.col } : {}),
    });
  }
  if (problems.length) return { ok: false, problems };
  const value = doc.toJS() as Record<string, unknown> | null;
  const add = (keyPath: (string | number)[], message: string) =>
    problems.push(problemAt(doc, counter, keyPath, message));
  if (!isMap(doc.contents) || value === null || typeof value !== "object") {
    return {
      ok: false,
      problems: [{ path: "(root)", message: "a task file must be a YAML mapping" }],
    };
  }
  const known = new Set([
    "name",
    "description",
    "tags",
    "data",
    "items",
    "messages",
    "generation",
    "rounds",
    "scorer",
  ]);
  for (const key of Object.keys(value))
    if (!known.has(key)) add([key], `unknown key "${key}"; accepted: ${[...known].join(", ")}`);
  if (typeof value.name !== "string" || value.name.trim() === "")
    add(["name"], "name must be a non-empty string");
  if (value.description !== undefined && typeof value.description !== "string")
    add(["description"], "description must be a string");
  if (
    value.tags !== undefined &&
    (!Array.isArray(value.tags) || value.tags.some((t) => typeof t !== "string"))
  )
    add(["tags"], "tags must be a list of strings");
  const hasData = value.data !== undefined;
  const hasItems = value.items !== undefined;
  if (hasData === hasItems)
    add(
      hasData ? ["items"] : [],
      "give exactly one of data (a JSONL path) or items (an inline list)",
    );
  if (hasData && typeof value.data !== "string")
    add(["data"], "data must be a path to a JSONL file");
  if (hasItems && (!isSeq(doc.get("items")) || (value.items as unknown[]).length === 0))
    add(["items"], "items must be a non-empty list");
  if (hasItems && Array.isArray(value.items)) {
    (value.items as unknown[]).forEach((item, i) => {
      if (typeof item !== "object" || item === null || Array.isArray(item))
        add(["items", i], "each item must be a mapping of fields");
    });
  }
  const messages = value.messages;
  if (!Array.isArray(messages) || messages.length === 0)
    add(["messages"], "messages must be a non-empty list of {role, content}");
  else {
    messages.forEach((m, i) => {
      const message = m as { role?: unknown; content?: unknown };
      if (!["system", "user", "assistant"].includes(message?.role as string))
        add(
          ["messages", i, "role"],
          `role must be system, user or assistant; got ${JSON.stringify(message?.role)}`,
        );
      if (typeof message?.content !== "string")
        add(["messages", i, "content"], "content must be a string");
    });
    const last = messages.at(-1) as { role?: unknown };
    if (last?.role !== "user")
      add(["messages", messages.length - 1], "the last message must be the user's");
  }
  const generation = {
    ...DEFAULT_GENERATION,
    ...((value.generation as object) ?? {}),
  } as GenerationSpec & Record<string, unknown>;
  if (
    value.generation !== undefined &&
    (typeof value.generation !== "object" || value.generation === null)
  )
    add(["generation"], "generation must be a mapping");
  for (const key of Object.keys(generation)) {
    if (!["maxNewTokens", "temperature", "topK", "topP"].includes(key))
      add(
        ["generation", key],
        `unknown key "${key}"; accepted: maxNewTokens, temperature, topK, topP`,
      );
  }
  if (!Number.isInteger(generation.maxNewTokens) || generation.maxNewTokens < 1)
    add(["generation", "maxNewTokens"], "maxNewTokens must be a positive integer");
  if (typeof generation.temperature !== "number" || generation.temperature < 0)
    add(["generation", "temperature"], "temperature must be a number ≥ 0");
  const rounds = value.rounds ?? 1;
  if (!Number.isInteger(rounds) || (rounds as number) < 1)
    add(["rounds"], "rounds must be a positive integer");
  const scorer = value.scorer as ScorerSpec | undefined;
  if (!scorer || typeof scorer !== "object")
    add(["scorer"], `scorer is required: {type: ${SCORER_TYPES.join(" | ")}, …}`);
  else {
    if (!SCORER_TYPES.includes(scorer.type))
      add(
        ["scorer", "type"],
        `scorer.type must be one of ${SCORER_TYPES.join(", ")}; got ${JSON.stringify(scorer.type)}`,
      );
    const scorerKeys = [
      "type",
      "target",
      "pattern",
      "flags",
      "keywords",
      "caseSensitive",
      "tolerance",
      "pick",
      "module",
      "normalize",
    ];
    for (const key of Object.keys(scorer))
      if (!scorerKeys.includes(key))
        add(["scorer", key], `unknown key "${key}"; accepted: ${scorerKeys.join(", ")}`);
    const needs: Partial<Record<ScorerType, keyof ScorerSpec>> = {
      exact: "target",
      contains: "target",
      numeric: "target",
      logprob: "target",
      regex: "pattern",
      keywords: "keywords",
      js: "module",
    };
    const field = needs[scorer.type];
    if (field && scorer[field] === undefined)
      add(["scorer"], `scorer ${scorer.type} needs "${field}"`);
    if (scorer.type === "regex" && typeof scorer.pattern === "string") {
      try {
        new RegExp(scorer.pattern, scorer.flags ?? "");
      } catch (error) {
        add(
          ["scorer", "pattern"],
          `pattern is not a valid regular expression: ${(error as Error).message}`,
        );
      }
    }
    if (scorer.pick !== undefined && scorer.pick !== "first" && scorer.pick !== "last")
      add(
        ["scorer", "pick"],
        `pick must be "first" or "last" (which number in the output is the answer); got ${JSON.stringify(scorer.pick)}`,
      );
    if (
      scorer.type === "keywords" &&
      (!Array.isArray(scorer.keywords) || scorer.keywords.length === 0)
    )
      add(["scorer", "keywords"], "keywords must be a non-empty list");
  }
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    task: {
      name: (value.name as string).trim(),
      ...(typeof value.description === "string" ? { description: value.description } : {}),
      tags: (value.tags as string[] | undefined) ?? [],
      messages: messages as Task["messages"],
      generation: {
        maxNewTokens: generation.maxNewTokens,
        temperature: generation.temperature,
        ...(generation.topK !== undefined ? { topK: generation.topK } : {}),
        ...(generation.topP !== undefined ? { topP: generation.topP } : {}),
      },
      rounds: rounds as number,
      scorer: scorer!,
      ...(hasData ? { data: value.data as string } : { inline: value.items as unknown[] }),
      file: source,
    },
  };
}

function withIds(records: unknown[], source: string): Item[] {
  const seen = new Set<string>();
  return records.map((record, i) => {
    const item = record as Record<string, unknown>;
    const id = item.id === undefined ? String(i) : String(item.id);
    if (seen.has(id))
      throw new EvaluationError("E_TASK", `${source}: item id ${JSON.stringify(id)} appears twice`);
    seen.add(id);
    return { ...item, id };
  });
}

async function readText(file: string, what = ""): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new EvaluationError(
      "E_IO",
      `cannot read ${what}${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    );
  }
}

async function readJsonl(file: string): Promise<unknown[]> {
  const text = await readText(file);
  const out: unknown[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      const value = JSON.parse(line);
      if (typeof value !== "object" || value === null || Array.isArray(value))
        throw new Error("expected an object");
      out.push(value);
    } catch (error) {
      throw new EvaluationError(
        "E_TASK",
        `${file}:${i + 1}: not a JSON object (${(error as Error).message})`,
      );
    }
  });
  if (out.length === 0) throw new EvaluationError("E_TASK", `${file} has no items`);
  return out;
}

/** Parse and validate task YAML text (data paths resolve against `source`'s directory). */
export async function parseTask(text: string, source = "task.yaml"): Promise<Task> {
  const result = validateTask(source, text);
  if (!result.ok) {
    const list = result.problems
      .map((p) => `${source}${p.line ? `:${p.line}:${p.column}` : ""}: ${p.path}: ${p.message}`)
      .join("\n  ");
    throw Object.assign(
      new EvaluationError("E_TASK", `${source} is not a valid task:\n  ${list}`),
      { problems: result.problems },
    );
  }
  const { data, inline, ...task } = result.task;
  const items = withIds(
    data ? await readJsonl(path.resolve(path.dirname(source), data)) : inline!,
    source,
  );
  for (const item of items) renderMessages({ ...task, items, hash: "" }, item); // every slot resolves
  const hash = createHash("sha256")
    .update(JSON.stringify({ ...task, file: undefined, items }))
    .digest("hex");
  return { ...task, items, hash };
}

/** Load a task file. */
export async function loadTask(file: string): Promise<Task> {
  const text = await readText(file, "task ");
  return parseTask(text, file);
}
