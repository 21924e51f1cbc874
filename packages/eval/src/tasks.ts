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
 *
 * Task files are untrusted input: the YAML is parsed within limits (size, aliases, nesting:
 * `parseYaml` from @forge/core); `data:` and a js scorer's `module:` resolve inside the task
 * file's directory unless the caller allows more (`allowOutside`, the CLI's --allow-outside);
 * a js scorer is code, loaded only when the caller allows it (`allowCode`, --allow-code); and
 * no error ever quotes the content of a data file.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import {
  ForgeError,
  type LocatedProblem,
  type ParsedYaml,
  parseJson,
  parseYaml,
  readTextFile,
  resolveInside,
} from "@forge/core";
import { isMap, isSeq } from "yaml";
import { EvaluationError } from "./errors.js";
import type { ChatMessage } from "./model.js";

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
  /** The JSONL file its items came from (absolute), when it has `data:`. */
  dataFile?: string;
  /** sha256 of the definition and items (the results cache keys on it). */
  hash: string;
}

export interface TaskProblem {
  path: string;
  message: string;
  line?: number;
  column?: number;
}

/** What a task file may reach beyond its own text. Both default to false. */
export interface TaskOptions {
  /**
   * Let `data:` and a js scorer's `module:` resolve outside the task file's directory
   * (the CLI's --allow-outside).
   */
  allowOutside?: boolean;
  /** Let a `js` scorer's module be loaded: it runs with the user's rights (--allow-code). */
  allowCode?: boolean;
}

/** The most tokens a task may ask to generate per reply. */
export const MAX_NEW_TOKENS = 65_536;
/** The most rounds a task (or a run) may ask for. */
export const MAX_ROUNDS = 1_000;

const DEFAULT_GENERATION: GenerationSpec = { maxNewTokens: 48, temperature: 0 };

/** A field's value as template text: strings as they are, other values as JSON. */
function asText(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  try {
    return JSON.stringify(value) ?? "";
  } catch {
    return "";
  }
}

/** Fill `{{field}}` slots from an item; a missing field is an error naming it. */
export function renderTemplate(
  template: string,
  item: Record<string, unknown>,
  where: string,
): string {
  return template.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, field: string) => {
    if (!Object.hasOwn(item, field))
      throw new EvaluationError(
        "E_TASK",
        `${where}: item ${asText(item.id)} has no field "${field}"`,
      );
    return asText(item[field]);
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

/** The most problems one error message lists (the `problems` property holds them all). */
const MAX_PROBLEMS_SHOWN = 20;
/** The largest task file accepted: items beyond this belong in a JSONL `data:` file. */
export const MAX_TASK_BYTES = 1024 * 1024;
/** The deepest nesting accepted in a task file (the YAML parse limit as well). */
const MAX_TASK_DEPTH = 64;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** A validated task before its items are read. */
export type ValidatedTask = Omit<Task, "hash" | "items" | "dataFile"> & {
  data?: string;
  inline?: unknown[];
};

/** Validate a parsed task; returns the task or every problem found. */
export function validateTask(
  source: string,
  text: string,
):
  | {
      ok: true;
      task: ValidatedTask;
      /** Where `data` and `scorer.module` stand in the file, for messages about them. */
      locations: { data?: string; module?: string };
    }
  | { ok: false; problems: TaskProblem[] } {
  let parsed: ParsedYaml;
  try {
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_TASK_BYTES)
      return {
        ok: false,
        problems: [
          {
            path: "(file)",
            message: `${bytes} bytes is more than the ${MAX_TASK_BYTES} accepted for a task file; put the items in a JSONL file and name it with data:`,
          },
        ],
      };
    parsed = parseYaml(text, source, { maxBytes: MAX_TASK_BYTES, maxDepth: MAX_TASK_DEPTH });
  } catch (error) {
    const problems = (error as { problems?: LocatedProblem[] }).problems;
    if (ForgeError.isInstance(error) && problems) return { ok: false, problems };
    throw error;
  }
  const problems: TaskProblem[] = [];
  const add = (keyPath: (string | number)[], message: string) =>
    problems.push(parsed.problem(keyPath, message));
  const value = parsed.value;
  if (!isMap(parsed.doc.contents) || !isRecord(value)) {
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
  if (hasData && (typeof value.data !== "string" || value.data.trim() === ""))
    add(["data"], "data must be a path to a JSONL file");
  if (hasItems && (!isSeq(parsed.doc.get("items")) || !Array.isArray(value.items)))
    add(["items"], "items must be a non-empty list");
  else if (hasItems && (value.items as unknown[]).length === 0)
    add(["items"], "items must be a non-empty list");
  if (hasItems && Array.isArray(value.items)) {
    (value.items as unknown[]).forEach((item, i) => {
      if (!isRecord(item)) add(["items", i], "each item must be a mapping of fields");
      else if (item.id !== undefined && !["string", "number"].includes(typeof item.id))
        add(["items", i, "id"], "an item's id must be a string or a number");
    });
  }
  const messages = value.messages;
  if (!Array.isArray(messages) || messages.length === 0)
    add(["messages"], "messages must be a non-empty list of {role, content}");
  else {
    messages.forEach((m, i) => {
      const message = isRecord(m) ? m : {};
      if (!["system", "user", "assistant"].includes(message.role as string))
        add(
          ["messages", i, "role"],
          `role must be system, user or assistant; got ${JSON.stringify(message.role) ?? "nothing"}`,
        );
      if (typeof message.content !== "string")
        add(["messages", i, "content"], "content must be a string");
    });
    const last = messages.at(-1) as { role?: unknown } | null;
    if (last?.role !== "user")
      add(["messages", messages.length - 1], "the last message must be the user's");
  }
  if (value.generation !== undefined && !isRecord(value.generation))
    add(["generation"], "generation must be a mapping");
  const generation = {
    ...DEFAULT_GENERATION,
    ...(isRecord(value.generation) ? value.generation : {}),
  } as GenerationSpec & Record<string, unknown>;
  for (const key of Object.keys(generation)) {
    if (!["maxNewTokens", "temperature", "topK", "topP"].includes(key))
      add(
        ["generation", key],
        `unknown key "${key}"; accepted: maxNewTokens, temperature, topK, topP`,
      );
  }
  if (
    !Number.isInteger(generation.maxNewTokens) ||
    generation.maxNewTokens < 1 ||
    generation.maxNewTokens > MAX_NEW_TOKENS
  )
    add(
      ["generation", "maxNewTokens"],
      `maxNewTokens must be an integer from 1 to ${MAX_NEW_TOKENS}`,
    );
  if (
    typeof generation.temperature !== "number" ||
    !Number.isFinite(generation.temperature) ||
    generation.temperature < 0
  )
    add(["generation", "temperature"], "temperature must be a number ≥ 0");
  if (
    generation.topK !== undefined &&
    (!Number.isInteger(generation.topK) || (generation.topK as number) < 1)
  )
    add(["generation", "topK"], "topK must be a positive integer");
  if (
    generation.topP !== undefined &&
    (typeof generation.topP !== "number" || !(generation.topP > 0 && generation.topP <= 1))
  )
    add(["generation", "topP"], "topP must be a number in (0, 1]");
  const rounds = value.rounds ?? 1;
  if (!Number.isInteger(rounds) || (rounds as number) < 1 || (rounds as number) > MAX_ROUNDS)
    add(["rounds"], `rounds must be an integer from 1 to ${MAX_ROUNDS}`);
  const scorer = value.scorer;
  if (!isRecord(scorer))
    add(["scorer"], `scorer is required: {type: ${SCORER_TYPES.join(" | ")}, …}`);
  else {
    const type = scorer.type as ScorerType;
    if (!SCORER_TYPES.includes(type))
      add(
        ["scorer", "type"],
        `scorer.type must be one of ${SCORER_TYPES.join(", ")}; got ${JSON.stringify(scorer.type) ?? "nothing"}`,
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
    const field = Object.hasOwn(needs, type) ? needs[type] : undefined;
    if (field && scorer[field] === undefined) add(["scorer"], `scorer ${type} needs "${field}"`);
    // A number is a fine target (`target: 54`); it is matched as its text.
    if (typeof scorer.target === "number" && Number.isFinite(scorer.target))
      scorer.target = String(scorer.target);
    if (scorer.target !== undefined && typeof scorer.target !== "string")
      add(["scorer", "target"], "target must be a string or a number");
    if (scorer.pattern !== undefined && typeof scorer.pattern !== "string")
      add(["scorer", "pattern"], "pattern must be a string (a regular expression)");
    if (scorer.flags !== undefined && typeof scorer.flags !== "string")
      add(["scorer", "flags"], 'flags must be a string of regular-expression flags, e.g. "i"');
    if (typeof scorer.pattern === "string" && (type === "regex" || scorer.flags !== undefined)) {
      try {
        new RegExp(scorer.pattern, typeof scorer.flags === "string" ? scorer.flags : "");
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
      scorer.keywords !== undefined &&
      (!Array.isArray(scorer.keywords) ||
        scorer.keywords.length === 0 ||
        scorer.keywords.some((k) => typeof k !== "string"))
    )
      add(["scorer", "keywords"], "keywords must be a non-empty list of strings");
    if (scorer.caseSensitive !== undefined && typeof scorer.caseSensitive !== "boolean")
      add(["scorer", "caseSensitive"], "caseSensitive must be true or false");
    if (
      scorer.tolerance !== undefined &&
      (typeof scorer.tolerance !== "number" ||
        !Number.isFinite(scorer.tolerance) ||
        scorer.tolerance < 0)
    )
      add(["scorer", "tolerance"], "tolerance must be a number ≥ 0");
    if (
      scorer.module !== undefined &&
      (typeof scorer.module !== "string" || scorer.module.trim() === "")
    )
      add(["scorer", "module"], "module must be a path to a JavaScript file");
    if (scorer.normalize !== undefined && scorer.normalize !== "mean" && scorer.normalize !== "sum")
      add(["scorer", "normalize"], `normalize must be "mean" or "sum"`);
  }
  if (problems.length) return { ok: false, problems };
  const where = (keyPath: string[]) => {
    const { line, column } = parsed.problem(keyPath, "");
    return line !== undefined ? `${source}:${line}:${column}` : source;
  };
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
      scorer: scorer as unknown as ScorerSpec,
      ...(hasData ? { data: value.data as string } : { inline: value.items as unknown[] }),
      file: source,
    },
    locations: {
      ...(hasData ? { data: where(["data"]) } : {}),
      ...((scorer as ScorerSpec).type === "js" ? { module: where(["scorer", "module"]) } : {}),
    },
  };
}

function withIds(records: unknown[], source: string): Item[] {
  const seen = new Set<string>();
  return records.map((record, i) => {
    const item = record as Record<string, unknown>;
    if (item.id !== undefined && typeof item.id !== "string" && typeof item.id !== "number")
      throw new EvaluationError(
        "E_TASK",
        `${source}: item ${i + 1} has an id that is neither a string nor a number`,
      );
    const id = item.id === undefined ? String(i) : String(item.id);
    if (seen.has(id))
      throw new EvaluationError("E_TASK", `${source}: item id ${JSON.stringify(id)} appears twice`);
    seen.add(id);
    return { ...item, id };
  });
}

/**
 * The items of a JSONL data file. An error names the file and the line, and the task that
 * reads it, but never quotes the line: the file may not be what the task's author said it is.
 */
async function readJsonl(file: string, task: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await readTextFile(file);
  } catch (error) {
    throw new EvaluationError("E_IO", `${task}: data: ${(error as Error).message}`, {
      cause: error,
      category: "io",
    });
  }
  const out: unknown[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = parseJson(line, file, i + 1);
    } catch (error) {
      const detail = (error as Error).message.slice(`${file}:${i + 1}: `.length);
      throw new EvaluationError(
        "E_TASK",
        `${file}:${i + 1}: not a JSON object (${detail}); it is the data of ${task}`,
        { cause: error },
      );
    }
    if (!isRecord(value))
      throw new EvaluationError(
        "E_TASK",
        `${file}:${i + 1}: not a JSON object (each line must be one {…} item); it is the data of ${task}`,
      );
    out.push(value);
  });
  if (out.length === 0)
    throw new EvaluationError("E_TASK", `${file} has no items; it is the data of ${task}`);
  return out;
}

/** The message that refuses a js scorer the caller did not allow. */
export function codeRefusal(where: string, module: string): EvaluationError {
  return new EvaluationError(
    "E_CODE",
    `${where}: scorer.module ${JSON.stringify(module)} is JavaScript that forge would run with your rights; pass --allow-code to run it`,
  );
}

/**
 * Resolve a path a task file names (its `data`, its scorer's `module`) inside the task file's
 * directory, unless `allowOutside`.
 */
export function resolveTaskPath(
  taskFile: string,
  relative: string,
  what: string,
  where: string,
  allowOutside = false,
): string {
  try {
    return resolveInside(path.dirname(path.resolve(taskFile)), relative, {
      source: where,
      what,
      allowOutside,
      allowHint: "pass --allow-outside",
    });
  } catch (error) {
    if (!ForgeError.isInstance(error)) throw error;
    throw new EvaluationError("E_OUTSIDE", error.message, { cause: error });
  }
}

/**
 * Parse and validate task YAML text. `data:` and a js scorer's module resolve inside `source`'s
 * directory unless `options.allowOutside`; a js scorer is refused unless `options.allowCode`.
 */
export async function parseTask(
  text: string,
  source = "task.yaml",
  options: TaskOptions = {},
): Promise<Task> {
  const result = validateTask(source, text);
  if (!result.ok) {
    const shown = result.problems.slice(0, MAX_PROBLEMS_SHOWN);
    const more = result.problems.length - shown.length;
    const list = [
      ...shown.map(
        (p) => `${source}${p.line ? `:${p.line}:${p.column}` : ""}: ${p.path}: ${p.message}`,
      ),
      ...(more > 0 ? [`… and ${more} more problem${more > 1 ? "s" : ""}`] : []),
    ].join("\n  ");
    throw Object.assign(
      new EvaluationError("E_TASK", `${source} is not a valid task:\n  ${list}`),
      { problems: result.problems },
    );
  }
  const { data, inline, ...task } = result.task;
  if (task.scorer.type === "js") {
    const module = task.scorer.module!;
    const where = result.locations.module ?? source;
    if (!options.allowCode) throw codeRefusal(where, module);
    const file = resolveTaskPath(source, module, "scorer.module", where, options.allowOutside);
    if (!existsSync(file))
      throw new EvaluationError(
        "E_TASK",
        `${where}: scorer.module ${JSON.stringify(module)}: no file ${file}`,
      );
  }
  const dataFile =
    data !== undefined
      ? resolveTaskPath(source, data, "data", result.locations.data ?? source, options.allowOutside)
      : undefined;
  const items = withIds(dataFile ? await readJsonl(dataFile, source) : inline!, source);
  for (const item of items) renderMessages({ ...task, items, hash: "" }, item); // every slot resolves
  const hash = createHash("sha256")
    .update(JSON.stringify({ ...task, file: undefined, items }))
    .digest("hex");
  return { ...task, items, ...(dataFile ? { dataFile } : {}), hash };
}

/** Load a task file (see `parseTask` for what `options` allow). */
export async function loadTask(file: string, options: TaskOptions = {}): Promise<Task> {
  let text: string;
  try {
    text = await readTextFile(file, "task ");
  } catch (error) {
    throw new EvaluationError("E_IO", (error as Error).message, { cause: error, category: "io" });
  }
  return parseTask(text, file, options);
}

/** The files a task reads: the task file, its data, its scorer module (for output checks). */
export function taskInputs(task: Task): string[] {
  const files: string[] = [];
  if (task.file) files.push(path.resolve(task.file));
  if (task.dataFile) files.push(task.dataFile);
  if (task.scorer.type === "js" && task.scorer.module && task.file)
    files.push(path.resolve(path.dirname(task.file), task.scorer.module));
  return files;
}
