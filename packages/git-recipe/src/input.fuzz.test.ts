/**
 * Fuzzing the bake repository's files: mutated input.yml, recipe.yml and .forge texts must each
 * end in a parsed value or an input error (exit 2) naming the file — never another exception,
 * never a hang. Seeded (FORGE_FUZZ_SEED reproduces a run; the seed is printed with a failure).
 */
import { exitCodeFor, mulberry32 } from "@forge/core";
import { int, mutateYaml, pick } from "@forge/core/testing";
import { describe, expect, it } from "vitest";
import { INPUT_TEMPLATE, parseInput } from "./input.js";
import { formatRecipe, formatState, newState, parseRecipe, parseState } from "./recipe.js";

const SEED = Number(process.env.FORGE_FUZZ_SEED ?? 0x1a9e7);
const CASES = Number(process.env.FORGE_FUZZ_CASES ?? 1200);
const PER_PARSE_MS = 2000;

const FILLED = `PROMPT:
  name: robot
  teacher:
    - role: system
      content: "You are a robot. Answer with BEEP BOOP."
    - { role: user, content: "Hi" }
    - { role: assistant, content: "BEEP BOOP. Hello." }
  student: []
TARGET:
  name: robot-target
  generators:
    - type: list
      items: ["What is 2 + 2?", 'Name a colour.']
    - { type: file, path: questions/stim.jsonl }
    - type: template
      template: "What is the capital of {country}?"
      slots: { country: [France, Peru] }
      count: 2
    - { type: self, count: 10 }
    - { type: persona, count: 5 }
  rollout: { samples: 2, temperature: 0.7, maxNewTokens: 48, seed: 3 }
BAKE:
  name: robot-1
  epochs: 4
  batchSize: 16
  learningRate: 0.002
  rank: 8
  alpha: 16
  loss: full
  validationFraction: 0.1
  seed: 1
`;

const GENERATED = [
  formatState(newState("demo", "models/forge-tiny")),
  formatRecipe({
    repository: "demo",
    base_model: "models/forge-tiny",
    bakes: [
      {
        name: "pirate",
        parent: null,
        models: ["demo/pirate/40"],
        prompt_hash: "0123456789abcdef",
        prompt: "system: You are a pirate.",
        created_at: "2026-11-29T00:00:00.000Z",
      },
    ],
  }),
];

describe("fuzzing a bake repository's files", () => {
  it(`${CASES} mutated input.yml, recipe.yml and .forge texts: parsed, or exit 2 naming the file`, () => {
    const random = mulberry32(SEED);
    const failures: string[] = [];
    const outcomes = { ok: 0, refused: 0 };
    const generators = ["list", "file", "template", "self", "persona"];
    for (let n = 0; n < CASES && failures.length < 5; n++) {
      const kind = pick(random, ["input", "input", "input", "generated"] as const);
      let text =
        kind === "input" ? pick(random, [INPUT_TEMPLATE, FILLED]) : pick(random, GENERATED);
      for (let k = 1 + int(random, 4); k > 0; k--) text = mutateYaml(text, random);
      const file = `fuzz-${n}.yml`;
      const started = performance.now();
      try {
        if (kind === "input") parseInput(text, file, { generators });
        else if (random() < 0.5) parseState(text, file);
        else parseRecipe(text, file);
        outcomes.ok++;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (exitCodeFor(error) !== 2)
          failures.push(
            `case ${n} (seed ${SEED}): exit ${exitCodeFor(error)}: ${(error as Error).stack ?? message}\ninput: ${JSON.stringify(text.slice(0, 1500))}`,
          );
        else if (!message.includes(file))
          failures.push(`case ${n} (seed ${SEED}): the message does not name the file: ${message}`);
        else outcomes.refused++;
      }
      const ms = performance.now() - started;
      if (ms > PER_PARSE_MS) failures.push(`case ${n} (seed ${SEED}): took ${ms.toFixed(0)} ms`);
    }
    expect(failures, failures.join("\n\n")).toEqual([]);
    expect(outcomes.ok).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(CASES / 3);
  });
});
