/**
 * Export a bake for distributed training: one JSON record per trajectory — the student's
 * (prompt-free) input, the trajectory, and the teacher's top-K log-probabilities at every
 * trajectory position plus the tail mass — after a header record naming the schema, the base
 * model, the tokenizer, K and the baked prompt's hash. A PyTorch/TRL distillation job trains on
 * the records without forge (docs/scale-out.md); the adapter it returns comes back through
 * `importAdapter`.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, existsSync } from "node:fs";
import { readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { GPT } from "@forge/model";
import type { Tokenizer } from "@forge/tokenizer";
import { BakingError } from "./errors.js";
import {
  type BakePrompt,
  inContext,
  promptHash,
  readStimuli,
  readTrajectories,
  type Stimulus,
  type Trajectory,
} from "./records.js";
import { responseLogits, topKOf } from "./score.js";

/** The export's schema name (the header's `schema`); bumped on any incompatible change. */
export const EXPORT_SCHEMA = "forge.bake-export/1";

/** The default K when the bake cached no top-K (the OpenAI API's largest top_logprobs). */
export const DEFAULT_EXPORT_TOPK = 20;

export interface ExportHeader {
  type: "header";
  schema: typeof EXPORT_SCHEMA;
  /** The base model's directory (forge.json `baseModel`): teacher and student share it. */
  model: string | null;
  tokenizer: { vocabSize: number; sha256: string | null };
  /** Top-K entries per position. */
  k: number;
  /** Where the top-K came from: the rollout's cache, or recomputed with the teacher at export. */
  topKSource: "rollout-cache" | "recomputed";
  prompt: { hash: string };
  /** The bake directory exported. */
  bake: string;
  trajectories: number;
}

export interface ExportRecord {
  type: "trajectory";
  id: string;
  stimulusId: string;
  sample: number;
  /** The student's context: the stimulus without the baked prompt, rendered for generation. */
  input: {
    messages: { role: string; content: string }[];
    text: string;
    ids: number[];
  };
  /** The teacher's response: ids (the stop token included when it stopped), text, tokens. */
  trajectory: {
    ids: number[];
    text: string;
    tokens: string[];
    finishReason: "stop" | "length";
  };
  /**
   * The teacher's top-K at each trajectory position r (the distribution of trajectory.ids[r]
   * given input.ids + trajectory.ids[0…r-1], with the prompt in front): ids, tokens and
   * log-probabilities [R][K], best first, and the tail mass 1 − Σ exp(logprobs) [R].
   */
  teacher: {
    ids: number[][];
    tokens: string[][];
    logprobs: number[][];
    tail: number[];
  };
}

/** What a bake directory holds that an export reads. */
export interface BakeFiles {
  dir: string;
  record: Record<string, unknown>;
  prompt: BakePrompt;
  baseModel: string | null;
  stimuli: Stimulus[];
  trajectories: Trajectory[];
}

/** Read forge.json, stim.jsonl and rollout.jsonl of a bake directory. */
export async function readBakeFiles(dir: string, vocabSize?: number): Promise<BakeFiles> {
  const recordFile = path.join(dir, "forge.json");
  if (!existsSync(recordFile))
    throw new BakingError("E_INPUT", `${dir} is not a bake output: forge.json is missing`);
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(await readFile(recordFile, "utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new BakingError("E_FORMAT", `${recordFile}: not JSON (${(error as Error).message})`);
  }
  const prompt = record.prompt as Partial<BakePrompt> | undefined;
  if (!prompt || !Array.isArray(prompt.teacher) || !Array.isArray(prompt.student))
    throw new BakingError(
      "E_FORMAT",
      `${recordFile}: "prompt" needs teacher and student message lists (a bake's forge.json)`,
    );
  for (const name of ["stim.jsonl", "rollout.jsonl"]) {
    if (!existsSync(path.join(dir, name)))
      throw new BakingError("E_INPUT", `${dir} holds no ${name}: export needs a bake's files`);
  }
  return {
    dir,
    record,
    prompt: { teacher: prompt.teacher, student: prompt.student },
    baseModel: typeof record.baseModel === "string" ? record.baseModel : null,
    stimuli: await readStimuli(path.join(dir, "stim.jsonl")),
    trajectories: await readTrajectories(path.join(dir, "rollout.jsonl"), vocabSize),
  };
}

export interface ExportOptions {
  /** K (default: the rollout's cached K, else 20). A K above the cache is recomputed. */
  k?: number;
  /** sha256 of the tokenizer file, for the header. */
  tokenizerSha256?: string | null;
  onProgress?: (done: number, total: number) => void;
}

/** sha256 of a model directory's tokenizer.json (null when it has none). */
export async function tokenizerHash(modelDir: string): Promise<string | null> {
  const file = path.join(modelDir, "tokenizer.json");
  if (!existsSync(file)) return null;
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

/**
 * The export's records: the header, then one record per trajectory. `teacher` is the base
 * model (the teacher is it with the bake's prompt in front): it recomputes the top-K when the
 * rollout cached none, or fewer than K.
 */
export function exportRecords(
  bake: BakeFiles,
  teacher: GPT,
  tokenizer: Tokenizer,
  options: ExportOptions = {},
): [ExportHeader, ...ExportRecord[]] {
  const { vocabSize } = teacher.config;
  const cached = bake.trajectories.every((t) => t.topK !== undefined)
    ? Math.min(...bake.trajectories.map((t) => t.topK!.ids[0]?.length ?? 0))
    : 0;
  const k = options.k ?? (cached > 0 ? cached : Math.min(DEFAULT_EXPORT_TOPK, vocabSize));
  if (!Number.isInteger(k) || k < 1 || k > vocabSize)
    throw new BakingError("E_INPUT", `--top-k must be an integer in 1..${vocabSize}; got ${k}`);
  const byId = new Map(bake.stimuli.map((s) => [s.id, s]));
  for (const t of bake.trajectories) {
    if (!byId.has(t.stimulusId))
      throw new BakingError(
        "E_FORMAT",
        `${path.join(bake.dir, "rollout.jsonl")}: trajectory ${t.id} names stimulus ${t.stimulusId}, which stim.jsonl lacks`,
      );
  }
  const recompute = cached < k;
  let topK: { ids: number[][]; logprobs: number[][] }[];
  if (recompute) {
    const logits = responseLogits(
      teacher,
      bake.trajectories.map((t) => ({
        prompt: tokenizer.promptIds(
          inContext(bake.prompt.teacher, byId.get(t.stimulusId)!.messages),
        ),
        response: t.tokenIds,
      })),
      { onProgress: (done) => options.onProgress?.(done, bake.trajectories.length) },
    );
    topK = logits.map((l) => topKOf(l, vocabSize, k));
  } else {
    topK = bake.trajectories.map((t) => ({
      ids: t.topK!.ids.map((row) => row.slice(0, k)),
      logprobs: t.topK!.logprobs.map((row) => row.slice(0, k)),
    }));
  }
  const header: ExportHeader = {
    type: "header",
    schema: EXPORT_SCHEMA,
    model: bake.baseModel,
    tokenizer: { vocabSize, sha256: options.tokenizerSha256 ?? null },
    k,
    topKSource: recompute ? "recomputed" : "rollout-cache",
    prompt: { hash: promptHash(bake.prompt) },
    bake: path.resolve(bake.dir),
    trajectories: bake.trajectories.length,
  };
  const records = bake.trajectories.map((t, i): ExportRecord => {
    const stimulus = byId.get(t.stimulusId)!;
    const messages = inContext(bake.prompt.student, stimulus.messages);
    const ids = tokenizer.promptIds(messages);
    const top = topK[i]!;
    return {
      type: "trajectory",
      id: t.id,
      stimulusId: t.stimulusId,
      sample: t.sample,
      input: {
        messages,
        text: tokenizer.decode(ids),
        ids,
      },
      trajectory: {
        ids: t.tokenIds,
        text: t.text,
        tokens: t.tokenIds.map((id) => tokenizer.idToToken(id)),
        finishReason: t.finishReason,
      },
      teacher: {
        ids: top.ids,
        tokens: top.ids.map((row) => row.map((id) => tokenizer.idToToken(id))),
        logprobs: top.logprobs,
        tail: top.logprobs.map((row) =>
          Math.max(0, 1 - row.reduce((sum, lp) => sum + Math.exp(lp), 0)),
        ),
      },
    };
  });
  return [header, ...records];
}

/** Write records as JSONL to `file` (temp + rename): nothing half-written is left under its name. */
export async function writeExport(file: string, records: readonly unknown[]): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  const stream = createWriteStream(temp, { flags: "wx" });
  try {
    for (const record of records) {
      if (!stream.write(`${JSON.stringify(record)}\n`)) await once(stream, "drain");
    }
    stream.end();
    await once(stream, "finish");
    await rename(temp, file);
  } catch (error) {
    stream.destroy();
    await rm(temp, { force: true });
    throw new BakingError("E_IO", `cannot write ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Write records as JSONL to a stream (stdout). */
export async function streamExport(
  stream: NodeJS.WritableStream,
  records: readonly unknown[],
): Promise<void> {
  for (const record of records) {
    if (!stream.write(`${JSON.stringify(record)}\n`)) await once(stream, "drain");
  }
}
