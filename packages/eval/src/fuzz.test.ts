/**
 * Fuzzing the task parser: mutated task files (from the shipped forge-tiny tasks and a few
 * inline-items tasks) must each end in a task or in an input error (exit 2) whose message names
 * the file — never another exception, never a hang.
 *
 * Seeded: FORGE_FUZZ_SEED reproduces a run (the seed is printed with any failure),
 * FORGE_FUZZ_CASES sets how many inputs (default 1,500), and FORGE_FUZZ_DUMP=<dir> writes each
 * failing input there whole (the message shows its first 1,500 characters).
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { exitCodeFor, mulberry32 } from "@forge/core";
import { int, mutateYaml, pick } from "@forge/core/testing";
import { describe, expect, it } from "vitest";
import { parseTask, type TaskOptions, validateTask } from "./tasks.js";

const TASKS = fileURLToPath(new URL("../../tiny/model/tasks", import.meta.url));
const SEED = Number(process.env.FORGE_FUZZ_SEED ?? 0x5eed14);
const CASES = Number(process.env.FORGE_FUZZ_CASES ?? 1500);
/** Generous for a busy two-core machine: a hostile input is refused in milliseconds. */
const PER_PARSE_MS = Number(process.env.FORGE_FUZZ_MS ?? 2000);
const DUMP = process.env.FORGE_FUZZ_DUMP;

const INLINE = [
  `name: inline-keywords
description: "inline items, block scalars, every generation key"
tags: [fuzz, inline]
items:
  - { id: 1, q: "What is 2+2?", answer: "4", system: "" }
  - { id: two, q: 'It''s cold', answer: "hot", system: "Be brief." }
messages:
  - { role: system, content: "{{system}}" }
  - role: user
    content: |
      {{q}}
generation: { maxNewTokens: 16, temperature: 0.7, topK: 5, topP: 0.9 }
rounds: 2
scorer: { type: keywords, keywords: [four, "4"], caseSensitive: false }
`,
  `# anchors and aliases that are fine
name: inline-anchors
defaults: &defaults { answer: "Paris" }
items:
  - { id: fr, country: France, answer: Paris }
  - { id: es, country: Spain, answer: Madrid }
messages:
  - role: user
    content: "What is the capital of {{country}}?"
generation: &gen { maxNewTokens: 8, temperature: 0 }
scorer: { type: regex, pattern: "^(Paris|Madrid)\\\\b", flags: i }
`,
  `name: inline-logprob
items:
  - id: a
    word: hot
    target: cold
  - id: b
    word: up
    target: down
messages: [{ role: user, content: "The opposite of {{word}} is" }]
scorer: { type: logprob, target: "{{target}}", normalize: sum }
`,
  `name: inline-numeric
items: [{ id: x, a: 12, b: 30 }, { id: y, a: 1.5, b: -2 }]
messages: [{ role: user, content: "What is {{a}} plus {{b}}?" }]
generation: { maxNewTokens: 24, temperature: 0 }
rounds: 1
scorer: { type: numeric, target: 42, tolerance: 0.5, pick: last }
`,
  `name: inline-js
items: [{ id: only, q: "hi" }]
messages: [{ role: user, content: "{{q}}" }]
scorer: { type: js, module: scorers/length.mjs }
`,
];

const CORPUS = [
  ...readdirSync(TASKS)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => readFileSync(path.join(TASKS, f), "utf8")),
  ...INLINE,
];

const show = (text: string) =>
  JSON.stringify(text.length > 1500 ? `${text.slice(0, 1500)}… (${text.length} chars)` : text);

describe("fuzzing task files", () => {
  it(`${CASES} mutated task files: a task, or exit 2 naming the file; never a crash or a hang`, async () => {
    const random = mulberry32(SEED);
    const failures: string[] = [];
    const outcomes = { ok: 0, refused: 0 };
    let slowest = 0;
    for (let n = 0; n < CASES && failures.length < 5; n++) {
      let text = pick(random, CORPUS);
      for (let k = 1 + int(random, 4); k > 0; k--) text = mutateYaml(text, random);
      const source = path.join(TASKS, `fuzz-${n}.yaml`);
      const options: TaskOptions = random() < 0.5 ? {} : { allowCode: true };
      const started = performance.now();
      const fail = (why: string) => {
        failures.push(
          `case ${n} (FORGE_FUZZ_SEED=${SEED}, options ${JSON.stringify(options)}): ${why}\ninput: ${show(text)}`,
        );
        if (DUMP) {
          mkdirSync(DUMP, { recursive: true });
          writeFileSync(path.join(DUMP, `seed-${SEED}-case-${n}.yaml`), text);
        }
      };
      try {
        const checked = validateTask(source, text);
        if (typeof checked.ok !== "boolean") fail("validateTask returned no verdict");
        await parseTask(text, source, options);
        outcomes.ok++;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (exitCodeFor(error) !== 2)
          fail(
            `exit ${exitCodeFor(error)}: ${error instanceof Error ? (error.stack ?? message) : message}`,
          );
        else if (!message.includes(source)) fail(`the message does not name the file: ${message}`);
        else outcomes.refused++;
      }
      const ms = performance.now() - started;
      slowest = Math.max(slowest, ms);
      if (ms > PER_PARSE_MS) fail(`took ${ms.toFixed(0)} ms`);
    }
    expect(failures, failures.join("\n\n")).toEqual([]);
    // The mutations exercise both sides: some inputs stay valid, most are refused.
    expect(outcomes.ok).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(CASES / 2);
    console.log(
      `fuzz seed ${SEED}: ${outcomes.ok} parsed, ${outcomes.refused} refused, slowest ${slowest.toFixed(0)} ms`,
    );
  }, 300_000);
});
