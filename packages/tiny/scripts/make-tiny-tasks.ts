/**
 * Write forge-tiny's evaluation task files from the corpus generator's held-out items:
 *   models/forge-tiny/tasks/<task>.yaml + data/<task>.jsonl       (no system prompt; scored as isCorrect does)
 *   models/forge-tiny/tasks/persona-<p>.yaml                     (no system prompt; the persona's signature)
 *   models/forge-tiny/tasks/persona-<p>-prompted.yaml            (the persona's prompt; its signature)
 *
 *   pnpm --filter @forge/cli exec tsx scripts/make-tiny-tasks.ts [out-dir]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { TASK_NAMES } from "../src/corpus.js";
import { PERSONA_NAMES, PERSONAS } from "../src/personas.js";
import { heldOutItems } from "../src/quality.js";

const out = process.argv[2] ?? path.resolve(import.meta.dirname, "../model/tasks");
mkdirSync(path.join(out, "data"), { recursive: true });
const items = heldOutItems().filter((item) => item.setting === "none");
const jsonl = (rows: unknown[]) => `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`;

/** Regular expressions equivalent to the personas' signature checks. */
export const SIGNATURE_PATTERNS: Record<string, { pattern: string; flags?: string }> = {
  pirate: { pattern: "^\\s*Arr\\b[\\s\\S]*\\b[Mm][Aa][Tt][Ee][Yy]\\b" },
  robot: { pattern: "^\\s*BEEP BOOP\\.[\\s\\S]*END OF LINE\\.\\s*$" },
  poet: { pattern: "And that is all, both great and small\\.\\s*$" },
  cheerful: { pattern: "^\\s*Yay![\\s\\S]*:\\)\\s*$" },
};

for (const task of TASK_NAMES) {
  const rows = items
    .filter((i) => i.task === task)
    .map((i) => ({ id: i.id, question: i.question, answer: i.answer }));
  writeFileSync(path.join(out, "data", `${task}.jsonl`), jsonl(rows));
  writeFileSync(
    path.join(out, `${task}.yaml`),
    `# forge-tiny held-out ${task} items (no system prompt): ${task === "arithmetic" || task === "counting" ? "the last number in the (worked) reply must be the answer" : "the answer must appear in the reply"}.
name: ${task}
description: forge-tiny held-out ${task} questions, no system prompt
tags: [forge-tiny, task]
data: data/${task}.jsonl
messages:
  - role: user
    content: "{{question}}"
generation: { maxNewTokens: 64, temperature: 0 }
scorer: ${
      task === "arithmetic" || task === "counting"
        ? '{ type: numeric, target: "{{answer}}", pick: last }'
        : '{ type: contains, target: "{{answer}}" }'
    }
`,
  );
}
const all = items.map((i) => ({ id: i.id, question: i.question, answer: i.answer }));
writeFileSync(path.join(out, "data", "all.jsonl"), jsonl(all));
for (const persona of PERSONA_NAMES) {
  const { pattern } = SIGNATURE_PATTERNS[persona]!;
  for (const prompted of [false, true]) {
    const name = `persona-${persona}${prompted ? "-prompted" : ""}`;
    writeFileSync(
      path.join(out, `${name}.yaml`),
      `# Share of replies with the ${persona} signature (${PERSONAS[persona].signature}), ${prompted ? "with" : "without"} its system prompt.
name: ${name}
description: ${persona} signature rate on held-out questions, ${prompted ? "with the prompt" : "no system prompt"}
tags: [forge-tiny, persona, ${persona}]
data: data/all.jsonl
messages:
${prompted ? `  - role: system\n    content: ${JSON.stringify(PERSONAS[persona].prompts[0])}\n` : ""}  - role: user
    content: "{{question}}"
generation: { maxNewTokens: 64, temperature: 0 }
scorer: { type: regex, pattern: ${JSON.stringify(pattern)} }
`,
    );
  }
}
console.log(
  `wrote ${TASK_NAMES.length} task files and ${2 * PERSONA_NAMES.length} persona task files to ${out}`,
);
