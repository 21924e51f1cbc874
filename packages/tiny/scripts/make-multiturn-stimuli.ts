/**
 * Bake stimuli for forge-tiny that include multi-turn conversations, so a baked persona holds in
 * long chats too (forge drift): the demo's 160 single-turn training questions plus 80
 * conversations with 1–4 earlier turns answered in the persona's style, ending with a question.
 * No question the task files score appears as a final question.
 *
 *   pnpm --filter @forge/cli exec tsx scripts/make-multiturn-stimuli.ts [persona] > stim.jsonl
 *   forge bake --model models/forge-tiny --prompt "You are a pirate." --stim file:stim.jsonl \
 *     --stim persona:20 --samples 2 --temperature 0.7 --max-new-tokens 64 --epochs 8 \
 *     --batch-size 16 --lr 0.002 --out bakes/pirate-multiturn
 */
import { mulberry32 } from "@forge/core";
import { arithmeticPairs, DEFAULT_SYNTH, drawQuestion, TASK_NAMES } from "../src/corpus.js";
import { PERSONA_NAMES, type PersonaName, styleReply } from "../src/personas.js";
import { heldOutItems, trainingQuestions } from "../src/quality.js";

const persona = (process.argv[2] ?? "pirate") as PersonaName;
if (!PERSONA_NAMES.includes(persona)) {
  console.error(
    `unknown persona ${JSON.stringify(persona)}; accepted: ${PERSONA_NAMES.join(", ")}`,
  );
  process.exit(2);
}
const scored = new Set(
  heldOutItems()
    .filter((i) => i.setting === "none")
    .map((i) => i.question),
);
const pairs = arithmeticPairs(DEFAULT_SYNTH.seed).train;
const random = mulberry32(4242);
const draw = () => {
  for (;;) {
    const task = TASK_NAMES[Math.floor(random() * TASK_NAMES.length)]!;
    const q = drawQuestion(task, random, pairs);
    if (!scored.has(q.question)) return q;
  }
};
const rows: unknown[] = trainingQuestions(1, 160).map((q) => ({
  messages: [{ role: "user", content: q }],
}));
for (let c = 0; c < 80; c++) {
  const messages: { role: string; content: string }[] = [];
  const history = 1 + Math.floor(random() * 4);
  for (let t = 0; t < history; t++) {
    const q = draw();
    messages.push(
      { role: "user", content: q.question },
      { role: "assistant", content: styleReply(persona, q.sentence) },
    );
  }
  messages.push({ role: "user", content: draw().question });
  rows.push({ messages });
}
process.stdout.write(`${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
