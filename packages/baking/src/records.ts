/**
 * The baking files: prompts, stimuli (`stim.jsonl`) and trajectories (`rollout.jsonl`), one
 * schema-versioned JSON record per line. Readers name the file and line of any bad record.
 */
import { createHash } from "node:crypto";
import { readJsonl, toJsonl as recordsToJsonl } from "@forge/core";
import type { ChatMessage } from "@forge/tokenizer";
import { BakingError } from "./errors.js";

export const RECORD_SCHEMA = 1;

/**
 * What is baked: the teacher sees `teacher` messages (typically the system prompt u) before
 * each stimulus; the student sees `student` messages (typically none).
 */
export interface BakePrompt {
  teacher: ChatMessage[];
  student: ChatMessage[];
}

/** The usual prompt: a system prompt for the teacher, nothing for the student. */
export function systemPrompt(text: string): BakePrompt {
  if (typeof text !== "string" || text.trim() === "") {
    throw new BakingError(
      "E_INPUT",
      "the prompt is empty: give the text to bake (for example --prompt 'You are a pirate.')",
    );
  }
  return { teacher: [{ role: "system", content: text }], student: [] };
}

/** A stable short hash of a prompt (lineage records it). */
/**
 * What one side (teacher or student) sees for a stimulus: its prefix, then the stimulus — unless
 * the stimulus opens with a system message of its own, which then stands in the prefix's place,
 * as a task's own system message replaces the A-side prompt in @forge/eval. So the baked prompt
 * becomes the model's default system prompt, and a system prompt a user gives still governs.
 */
export function inContext(
  prefix: readonly ChatMessage[],
  messages: readonly ChatMessage[],
): ChatMessage[] {
  return messages[0]?.role === "system" ? [...messages] : [...prefix, ...messages];
}

export function promptHash(prompt: BakePrompt): string {
  return createHash("sha256").update(JSON.stringify(prompt)).digest("hex").slice(0, 16);
}

/** A stimulus: the conversation so far (user/assistant turns, ending with a user turn). */
export interface Stimulus {
  schema?: number;
  id: string;
  messages: ChatMessage[];
  /** Which generator made it. */
  source?: string;
  /**
   * The assistant turns in `messages` were written by the teacher, prompted (the `multiturn`
   * generator): the bake trains the student on them too, not only on the final reply.
   */
  teacherWritten?: boolean;
}

export interface Trajectory {
  schema?: number;
  id: string;
  stimulusId: string;
  /** Index of this sample among the stimulus's k samples. */
  sample: number;
  /** The teacher's response text. */
  text: string;
  /** Response token ids, the stop token included when the teacher stopped. */
  tokenIds: number[];
  finishReason: "stop" | "length";
  /** The teacher's top-K log-probabilities per response position (when cached). */
  topK?: { ids: number[][]; logprobs: number[][] };
  /**
   * A remote teacher's log-probability of each sampled token, as its endpoint reported it
   * (none for a stop token the endpoint did not report; see remote.ts).
   */
  teacherLogprobs?: number[];
}

const ROLES = new Set(["system", "user", "assistant"]);

function fail(source: string, line: number, message: string): never {
  throw new BakingError("E_FORMAT", `${source}:${line}: ${message}`);
}

export function checkStimulus(value: unknown, source: string, line: number): Stimulus {
  if (typeof value !== "object" || value === null)
    fail(source, line, "a stimulus must be a JSON object");
  const record = value as Partial<Stimulus>;
  if (typeof record.id !== "string" || record.id === "")
    fail(source, line, 'a stimulus needs a string "id"');
  if (!Array.isArray(record.messages) || record.messages.length === 0)
    fail(source, line, 'a stimulus needs a non-empty "messages" list');
  record.messages.forEach((m, i) => {
    if (!m || !ROLES.has(m.role) || typeof m.content !== "string") {
      fail(
        source,
        line,
        `messages[${i}] must be {"role": "user" | "assistant" | "system", "content": "…"}`,
      );
    }
  });
  if (record.messages.at(-1)!.role !== "user")
    fail(source, line, "a stimulus must end with a user message");
  if (record.teacherWritten !== undefined && typeof record.teacherWritten !== "boolean")
    fail(source, line, '"teacherWritten" must be true or false');
  return record as Stimulus;
}

export function checkTrajectory(
  value: unknown,
  source: string,
  line: number,
  vocabSize?: number,
): Trajectory {
  if (typeof value !== "object" || value === null)
    fail(source, line, "a trajectory must be a JSON object");
  const record = value as Partial<Trajectory>;
  for (const key of ["id", "stimulusId", "text"] as const) {
    if (typeof record[key] !== "string") fail(source, line, `"${key}" must be a string`);
  }
  if (!Number.isInteger(record.sample)) fail(source, line, '"sample" must be an integer');
  if (!Array.isArray(record.tokenIds) || record.tokenIds.length === 0)
    fail(source, line, '"tokenIds" must be a non-empty list');
  for (const id of record.tokenIds) {
    if (!Number.isInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
      fail(
        source,
        line,
        `token id ${id} is outside the vocabulary${vocabSize !== undefined ? ` (0..${vocabSize - 1})` : ""}`,
      );
    }
  }
  if (record.finishReason !== "stop" && record.finishReason !== "length")
    fail(source, line, '"finishReason" must be "stop" or "length"');
  if (record.topK !== undefined) {
    const { ids, logprobs } = record.topK;
    if (
      !Array.isArray(ids) ||
      !Array.isArray(logprobs) ||
      ids.length !== record.tokenIds.length ||
      logprobs.length !== ids.length
    ) {
      fail(source, line, '"topK" needs ids and logprobs lists, one entry per response token');
    }
  }
  return record as Trajectory;
}

export function readStimuli(file: string): Promise<Stimulus[]> {
  return readJsonl(file, (value, line) => checkStimulus(value, file, line));
}

export function readTrajectories(file: string, vocabSize?: number): Promise<Trajectory[]> {
  return readJsonl(file, (value, line) => checkTrajectory(value, file, line, vocabSize));
}

/** Records as JSONL text (schema field added). */
export function toJsonl(records: readonly (Stimulus | Trajectory)[]): string {
  return recordsToJsonl(records.map((record) => ({ schema: RECORD_SCHEMA, ...record })));
}
