/**
 * `input.yml`: the input box of a bake repository. Three sections — PROMPT (what the teacher
 * and the student see), TARGET (stimulus generators and rollout settings), BAKE (training
 * settings) — written, staged, baked, and then cleared back to their headings and comments.
 *
 * Parsing reports every problem at once, each with its path and, where YAML gives one, its line
 * and column in the file.
 */
import { createHash } from "node:crypto";
import {
  ForgeError,
  type LocatedProblem,
  locatedError,
  type ParsedYaml,
  parseYaml,
  resolveInside,
} from "@forge/core";
import { isMap } from "yaml";
import { RecipeError } from "./errors.js";

export interface Message {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface Generator {
  type: string;
  [key: string]: unknown;
}

export interface RolloutSpec {
  samples?: number;
  temperature?: number;
  maxNewTokens?: number;
  /** Cache the teacher's top-K log-probabilities (needed by the topk losses). */
  cacheTopK?: number;
  seed?: number;
}

export interface BakeSpec {
  /** Bake name (default: bake-<n>). */
  name?: string;
  epochs?: number;
  steps?: number;
  batchSize?: number;
  learningRate?: number;
  rank?: number;
  alpha?: number;
  /** The divergence trained on (`BAKE_LOSSES`; default forward-kl). */
  loss?: BakeLoss;
  /** β of the jsd losses. */
  lossBeta?: number;
  /** Temperature of the distillation loss. */
  lossTemperature?: number;
  /** Layer-wise baking: adapters on these blocks only (a list of indices, or "0-1,3"). */
  layers?: number[] | string;
  /** Progressive baking: the adapter's strength ramps from `from` to 1 over `fraction` of training. */
  progressive?: { from: number; fraction?: number };
  validationFraction?: number;
  /** Early stopping: epochs without a better validation KL before the bake stops (default 2; 0: off). */
  patience?: number;
  seed?: number;
  /**
   * A remote teacher: an OpenAI-compatible endpoint (forge serve, vLLM, llama.cpp, Ollama, TGI)
   * that writes `self` stimuli and the rollouts with its top-K log-probabilities; the bake then
   * trains on the top-K + tail KL (default loss topk). The endpoint's key, if it needs one, is
   * read from FORGE_TEACHER_API_KEY, never from this file.
   */
  teacher?: TeacherSpec;
}

/** BAKE.teacher: where the remote teacher is. */
export interface TeacherSpec {
  /** The endpoint's base URL, e.g. http://127.0.0.1:8000. */
  url: string;
  /** The served model's name (default: the first the endpoint lists). */
  model?: string;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
}

/**
 * The losses BAKE.loss accepts (@forge/baking's LOSS_KINDS, and the older "full" for forward-kl):
 * forward KL (the default), reverse KL, Jensen–Shannon, generalised JSD(β), distillation at a
 * temperature, and forward/reverse KL and JS(D) over the teacher's cached top-K + tail.
 */
export const BAKE_LOSSES = [
  "forward-kl",
  "reverse-kl",
  "js",
  "jsd",
  "distillation",
  "topk",
  "topk-reverse-kl",
  "topk-js",
  "topk-jsd",
  "full",
] as const;
export type BakeLoss = (typeof BAKE_LOSSES)[number];

export interface InputSpec {
  prompt?: { name?: string; teacher: Message[]; student: Message[] };
  target?: { name?: string; generators: Generator[]; rollout: RolloutSpec };
  bake?: BakeSpec;
}

export type InputProblem = LocatedProblem;

export interface ParseInputOptions {
  /** Generator types the runner accepts. */
  generators?: readonly string[];
  /**
   * The repository root: when given, every generator `path` must resolve inside it (symbolic
   * links followed), unless `allowOutside`.
   */
  root?: string;
  /** Accept generator paths outside `root` (`forge run --allow-outside`). */
  allowOutside?: boolean;
}

/** A fresh input.yml: every field documented, with a worked example to edit. */
export const INPUT_TEMPLATE = `# input.yml — the input box. Write what the next bake should do, stage it (forge add
# input.yml), commit, then \`forge run stim rollout bake\`. forge reads the STAGED version.
# After a successful bake this file is cleared back to these headings and comments.

# PROMPT: what is baked in.
#   teacher: the messages the teacher (the parent model, prompted) sees before each question
#   student: the messages the student sees instead (usually none: the prompt is baked in)
#   name:    optional label for the prompt
PROMPT:
  teacher:
    - role: system
      content: You are a pirate.
  student: []

# TARGET: the questions and the teacher's answers the bake learns from.
#   generators: a list; each has a type — list (items: [...]), file (path: stim.jsonl,
#               count: N), template (template: "...", slots: {name: [...]}, count: N), self
#               (count: N: the teacher writes questions), persona (count: N: identity and style
#               probes), multiturn (count: N, turns: T: conversations the teacher carries on).
#               Without generators: 224 questions from the parent model's stimuli.jsonl (or
#               self: 224 when it has none) and 20 persona probes — the mix forge bake uses.
#   rollout:    samples (answers per question; 2), temperature (0.7), maxNewTokens (64), seed,
#               cacheTopK
TARGET:
  rollout:
    samples: 2

# BAKE: training settings (LoRA on the parent model; the parent is PARENT_MODEL in .forge,
# the previous bake's model, and cannot be set here).
#   name, epochs (8) | steps, batchSize (16), learningRate (0.002), rank (8), alpha (16),
#   validationFraction, patience (2: stop after 2 epochs without a better validation KL;
#   0: train every epoch), seed,
#   loss: forward-kl (default) | reverse-kl | js | jsd | distillation | topk | topk-reverse-kl |
#         topk-js | topk-jsd (the topk ones need rollout cacheTopK); lossBeta: β of jsd (0…1);
#   lossTemperature: T of distillation;
#   layers: adapters on these blocks only ([0, 1] or "0-1"); progressive: {from: 0.2,
#   fraction: 0.5} ramps the adapter's strength from 0.2 to 1 over the first half of training
#   teacher: {url, model, concurrency}: a remote teacher (an OpenAI-compatible endpoint: forge
#            serve, vLLM, llama.cpp, Ollama, TGI) writes self stimuli and rollouts with its top-K
#            log-probabilities; the key, if any, comes from FORGE_TEACHER_API_KEY
BAKE:
  name: pirate
`;

/** input.yml after a bake: the headings and the comments, nothing to run. */
export function clearedInput(): string {
  return INPUT_TEMPLATE.split("\n")
    .filter((line) => line.startsWith("#") || /^[A-Z]+:\s*$/.test(line) || line.trim() === "")
    .join("\n");
}

const SECTIONS = ["PROMPT", "TARGET", "BAKE"] as const;
const ROLES = ["system", "user", "assistant"];
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Check a repository, bake or target name against NAME_PATTERN (no ".." either); returns it. */
export function checkName(name: string, what: string): string {
  if (!NAME_PATTERN.test(name) || name.includes(".."))
    throw new RecipeError(
      "E_INPUT",
      `${what} ${JSON.stringify(name)} is not allowed: use 1–64 letters, digits, ".", "_" or "-" (no spaces, quotes, ";", "/" or "..")`,
    );
  return name;
}
const BAKE_KEYS: Record<
  keyof BakeSpec,
  "int" | "number" | "string" | "loss" | "layers" | "progressive" | "teacher"
> = {
  name: "string",
  epochs: "int",
  steps: "int",
  batchSize: "int",
  learningRate: "number",
  rank: "int",
  alpha: "number",
  loss: "loss",
  lossBeta: "number",
  lossTemperature: "number",
  layers: "layers",
  progressive: "progressive",
  validationFraction: "number",
  patience: "int",
  seed: "int",
  teacher: "teacher",
};
const ROLLOUT_KEYS: Record<keyof RolloutSpec, "int" | "number"> = {
  samples: "int",
  temperature: "number",
  maxNewTokens: "int",
  cacheTopK: "int",
  seed: "int",
};

/**
 * Parse input.yml. `generators` lists the generator types the runner accepts. Throws a
 * RecipeError listing every problem (`file:line:column: path: message`).
 */
export function parseInput(
  text: string,
  file = "input.yml",
  options: ParseInputOptions = {},
): InputSpec {
  let parsed: ParsedYaml;
  try {
    // bounded: size, alias and depth limits, so a hostile file is an input error, not a hang
    parsed = parseYaml(text, file);
  } catch (error) {
    throw asRecipeError(error);
  }
  const { doc, at } = parsed;
  const problems: InputProblem[] = [];
  const root = doc.contents;
  if (root !== null && !isMap(root)) {
    throw located(file, [
      {
        path: "(root)",
        message: "input.yml must be a mapping with PROMPT, TARGET, BAKE",
        ...at(root),
      },
    ]);
  }
  const add = (path: string, message: string, node?: unknown) =>
    problems.push({ path, message, ...at(node) });
  const value = (parsed.value ?? {}) as Record<string, unknown>;
  const nodeAt = (...path: (string | number)[]) => doc.getIn(path, true);
  /** The key node of `key` in the mapping at `path` (where an unknown key is reported). */
  const keyAt = (path: string[], key: string) => {
    const map = path.length ? doc.getIn(path, true) : root;
    if (!isMap(map)) return undefined;
    return map.items.find((pair) => (pair.key as { value?: unknown } | null)?.value === key)?.key;
  };
  for (const key of Object.keys(value))
    if (!SECTIONS.includes(key as (typeof SECTIONS)[number]))
      add(
        key,
        `unknown section "${key}"; accepted: ${SECTIONS.join(", ")}`,
        keyAt([], key) ?? root,
      );

  const spec: InputSpec = {};
  const section = (name: string) => {
    const v = value[name];
    if (v === null || v === undefined) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) {
      add(name, `${name} must be a mapping`, nodeAt(name));
      return undefined;
    }
    return v as Record<string, unknown>;
  };
  const checkKeys = (obj: Record<string, unknown>, base: string, keys: string[]) => {
    for (const key of Object.keys(obj))
      if (!keys.includes(key))
        add(
          `${base}.${key}`,
          `unknown key "${key}"; accepted: ${keys.join(", ")}`,
          keyAt(base.split("."), key),
        );
  };
  const checkName = (v: unknown, path: string) => {
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !NAME_PATTERN.test(v)) {
      add(
        path,
        `${path} must be 1–64 letters, digits, ".", "_" or "-" (no spaces, quotes, ";" or "/"); got ${JSON.stringify(v)}`,
        nodeAt(...path.split(".")),
      );
      return undefined;
    }
    if (v.includes("..")) {
      add(path, `${path} must not contain ".."`, nodeAt(...path.split(".")));
      return undefined;
    }
    return v;
  };

  const prompt = section("PROMPT");
  if (prompt) {
    checkKeys(prompt, "PROMPT", ["name", "teacher", "student"]);
    const messages = (key: "teacher" | "student"): Message[] => {
      const list = prompt[key] ?? [];
      if (!Array.isArray(list)) {
        add(
          `PROMPT.${key}`,
          `PROMPT.${key} must be a list of {role, content}`,
          nodeAt("PROMPT", key),
        );
        return [];
      }
      return list.flatMap((m, i) => {
        const path = `PROMPT.${key}[${i}]`;
        const node = nodeAt("PROMPT", key, i);
        if (typeof m !== "object" || m === null) {
          add(path, `${path} must be {role, content}`, node);
          return [];
        }
        const { role, content } = m as Record<string, unknown>;
        if (!ROLES.includes(role as string)) {
          add(
            `${path}.role`,
            `role must be one of ${ROLES.join(", ")}; got ${JSON.stringify(role)}`,
            nodeAt("PROMPT", key, i, "role") ?? node,
          );
          return [];
        }
        if (typeof content !== "string" || content.trim() === "") {
          add(
            `${path}.content`,
            "content must be a non-empty string",
            nodeAt("PROMPT", key, i, "content") ?? node,
          );
          return [];
        }
        return [{ role: role as Message["role"], content }];
      });
    };
    const teacher = messages("teacher");
    const student = messages("student");
    if (teacher.length === 0 && problems.length === 0)
      add(
        "PROMPT.teacher",
        "PROMPT.teacher needs at least one message (the prompt to bake)",
        nodeAt("PROMPT") ?? root,
      );
    const name = checkName(prompt.name, "PROMPT.name");
    spec.prompt = { ...(name ? { name } : {}), teacher, student };
  }

  const target = section("TARGET");
  if (target) {
    checkKeys(target, "TARGET", ["name", "generators", "rollout"]);
    const generators: Generator[] = [];
    const list = target.generators;
    // absent: the default mix for the parent model (@forge/baking's defaultStimuli)
    if (list === undefined || list === null) {
    } else if (!Array.isArray(list) || list.length === 0)
      add(
        "TARGET.generators",
        "TARGET.generators must be a non-empty list of {type, …}",
        nodeAt("TARGET", "generators") ?? nodeAt("TARGET"),
      );
    else
      for (const [i, g] of list.entries()) {
        const node = nodeAt("TARGET", "generators", i);
        if (typeof g !== "object" || g === null || typeof (g as Generator).type !== "string") {
          add(`TARGET.generators[${i}]`, "a generator needs a type", node);
          continue;
        }
        const type = (g as Generator).type;
        if (options.generators && !options.generators.includes(type)) {
          add(
            `TARGET.generators[${i}].type`,
            `unknown generator "${type}"; accepted: ${options.generators.join(", ")}`,
            nodeAt("TARGET", "generators", i, "type") ?? node,
          );
          continue;
        }
        const where = (g as Generator).path;
        if (options.root !== undefined && where !== undefined) {
          const field = `TARGET.generators[${i}].path`;
          const pathNode = nodeAt("TARGET", "generators", i, "path") ?? node;
          if (typeof where !== "string" || where === "") {
            add(
              field,
              `${field} must be a non-empty string (a file inside the repository)`,
              pathNode,
            );
            continue;
          }
          try {
            resolveInside(options.root, where, {
              source: file,
              what: field,
              ...(options.allowOutside ? { allowOutside: true } : {}),
            });
          } catch (error) {
            if (!ForgeError.isInstance(error)) throw error;
            // the path only: never what the file holds
            add(
              field,
              `${JSON.stringify(where)} resolves outside the repository ${options.root}; forge reads only files inside it (forge run --allow-outside allows it)`,
              pathNode,
            );
            continue;
          }
        }
        generators.push(g as Generator);
      }
    const rollout = (target.rollout ?? {}) as Record<string, unknown>;
    if (typeof rollout !== "object" || Array.isArray(rollout))
      add("TARGET.rollout", "TARGET.rollout must be a mapping", nodeAt("TARGET", "rollout"));
    else numbers(rollout, "TARGET.rollout", ROLLOUT_KEYS);
    const name = checkName(target.name, "TARGET.name");
    spec.target = { ...(name ? { name } : {}), generators, rollout: rollout as RolloutSpec };
  }

  const bake = section("BAKE");
  if (bake) {
    if ("PARENT_MODEL" in bake || "parent" in bake || "parentModel" in bake)
      add(
        "BAKE",
        "the parent model cannot be set in input.yml: it is PARENT_MODEL in .forge (the previous bake's model)",
        nodeAt("BAKE"),
      );
    else numbers(bake, "BAKE", BAKE_KEYS);
    if (bake.name !== undefined) checkName(bake.name, "BAKE.name");
    if (bake.teacher !== undefined) {
      const t = bake.teacher as Record<string, unknown> | null;
      if (typeof t !== "object" || t === null || Array.isArray(t))
        add(
          "BAKE.teacher",
          "BAKE.teacher must be a mapping: {url, model, concurrency}",
          nodeAt("BAKE", "teacher"),
        );
      else {
        checkKeys(t, "BAKE.teacher", ["url", "model", "concurrency"]);
        if (typeof t.url !== "string" || !/^https?:\/\/\S+$/.test(t.url))
          add(
            "BAKE.teacher.url",
            `BAKE.teacher.url must be an http:// or https:// base URL, such as http://127.0.0.1:8000; got ${JSON.stringify(t.url)}`,
            nodeAt("BAKE", "teacher", "url") ?? nodeAt("BAKE", "teacher"),
          );
        else if (/^https?:\/\/[^/]*@/.test(t.url))
          add(
            "BAKE.teacher.url",
            "BAKE.teacher.url must not carry credentials (input.yml is committed): put the key in FORGE_TEACHER_API_KEY",
            nodeAt("BAKE", "teacher", "url"),
          );
        if (t.model !== undefined && (typeof t.model !== "string" || t.model === ""))
          add(
            "BAKE.teacher.model",
            "BAKE.teacher.model must be a non-empty string",
            nodeAt("BAKE", "teacher", "model"),
          );
        if (
          t.concurrency !== undefined &&
          !(Number.isInteger(t.concurrency) && (t.concurrency as number) >= 1)
        )
          add(
            "BAKE.teacher.concurrency",
            `BAKE.teacher.concurrency must be a positive integer; got ${JSON.stringify(t.concurrency)}`,
            nodeAt("BAKE", "teacher", "concurrency"),
          );
      }
    }
    if (bake.epochs !== undefined && bake.steps !== undefined)
      add("BAKE", "give BAKE.epochs or BAKE.steps, not both", nodeAt("BAKE"));
    spec.bake = bake as BakeSpec;
  }
  if (problems.length) throw located(file, problems);
  return spec;

  function numbers(obj: Record<string, unknown>, base: string, keys: Record<string, string>): void {
    for (const [key, v] of Object.entries(obj)) {
      const kind = keys[key];
      const node = nodeAt(...base.split("."), key);
      if (!kind) {
        add(
          `${base}.${key}`,
          `unknown key "${key}"; accepted: ${Object.keys(keys).join(", ")}`,
          keyAt(base.split("."), key),
        );
        continue;
      }
      const ok =
        kind === "int"
          ? Number.isInteger(v) && (v as number) >= (key === "seed" || key === "patience" ? 0 : 1)
          : kind === "number"
            ? typeof v === "number" && Number.isFinite(v) && v >= 0
            : kind === "loss"
              ? (BAKE_LOSSES as readonly unknown[]).includes(v)
              : kind === "layers"
                ? isLayerList(v)
                : kind === "progressive"
                  ? isProgressive(v)
                  : kind === "teacher"
                    ? true // checked on its own
                    : typeof v === "string";
      if (!ok) {
        const expected =
          kind === "int"
            ? key === "seed"
              ? "an integer ≥ 0"
              : key === "patience"
                ? "an integer ≥ 0 (0: train every epoch)"
                : "a positive integer"
            : kind === "number"
              ? "a number ≥ 0"
              : kind === "loss"
                ? `one of ${BAKE_LOSSES.join(", ")}`
                : kind === "layers"
                  ? 'a list of block indices ≥ 0, or ranges like "0-1,3"'
                  : kind === "progressive"
                    ? "{from: a number in [0, 1], fraction: a number in (0, 1] (default 0.5)}"
                    : "a string";
        add(`${base}.${key}`, `${base}.${key} must be ${expected}; got ${JSON.stringify(v)}`, node);
      }
    }
  }
}

/** BAKE.layers: block indices ≥ 0, or a string of indices and ranges ("0-1,3"). */
function isLayerList(v: unknown): boolean {
  if (typeof v === "string") return /^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$/.test(v);
  return Array.isArray(v) && v.length > 0 && v.every((i) => Number.isInteger(i) && i >= 0);
}

/** BAKE.progressive: {from in [0, 1], fraction in (0, 1]}. */
function isProgressive(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const { from, fraction, ...rest } = v as Record<string, unknown>;
  return (
    Object.keys(rest).length === 0 &&
    typeof from === "number" &&
    from >= 0 &&
    from <= 1 &&
    (fraction === undefined || (typeof fraction === "number" && fraction > 0 && fraction <= 1))
  );
}

/** Every problem as `file:line:col: path: message`, one per line (exit 2). */
function located(file: string, problems: InputProblem[]): RecipeError {
  return asRecipeError(locatedError(file, problems)) as RecipeError;
}

/** A located error from @forge/core as this package's error, problems kept. */
function asRecipeError(error: unknown): unknown {
  if (!ForgeError.isInstance(error) || RecipeError.isInstance(error)) return error;
  const problems = (error as { problems?: InputProblem[] }).problems;
  return new RecipeError("E_INPUT", error.message, {
    cause: error,
    ...(problems ? { problems } : {}),
  });
}

/** Stable short hashes of each section (what the state file records). */
export function sectionHashes(spec: InputSpec): {
  prompt?: string;
  target?: string;
  bake?: string;
} {
  const h = (v: unknown) => createHash("sha256").update(stableJson(v)).digest("hex").slice(0, 16);
  return {
    ...(spec.prompt ? { prompt: h(spec.prompt) } : {}),
    ...(spec.target ? { target: h(spec.target) } : {}),
    ...(spec.bake ? { bake: h(spec.bake) } : {}),
  };
}

/** JSON with object keys sorted, so equal content hashes equally. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(value);
}
