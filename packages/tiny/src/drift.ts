/**
 * Persona drift on forge-tiny: the conversation `forge drift --persona <name>` and the demo's
 * drift bar measure. forge-tiny answers task questions, so the probes are the held-out task
 * questions (scored by the persona's signature) and the distractors are training questions.
 */
import type { DriftOptions } from "@forge/baking";
import { PERSONAS, type PersonaName } from "./personas.js";
import { heldOutItems, trainingQuestions } from "./quality.js";

/** `forge drift`'s defaults: 30 user turns, 16 conversations, replies of up to 64 tokens at 0.7. */
export const DRIFT_DEFAULTS = { turns: 30, seeds: 16, maxNewTokens: 64, temperature: 0.7 } as const;

export interface PersonaDriftSetup {
  name: PersonaName;
  /** The persona's system prompt (its first prompt unless one is given). */
  system: string;
  score: (reply: string) => number;
  probes: string[];
  distractors: string[];
}

/** The probes, distractors and signature score of a forge-tiny persona's drift measurement. */
export function personaDrift(name: PersonaName, system?: string): PersonaDriftSetup {
  const persona = PERSONAS[name];
  return {
    name,
    system: system ?? persona.prompts[0]!,
    score: (reply) => (persona.check(reply) ? 1 : 0),
    probes: heldOutItems()
      .filter((i) => i.setting === "none")
      .map((i) => i.question),
    distractors: trainingQuestions(3, 200),
  };
}

/** DriftOptions (without `system`) for a persona with `forge drift`'s defaults. */
export function personaDriftOptions(
  setup: PersonaDriftSetup,
  overrides: Partial<Record<keyof typeof DRIFT_DEFAULTS, number>> = {},
): Omit<DriftOptions, "system"> {
  const s = { ...DRIFT_DEFAULTS, ...overrides };
  return {
    score: setup.score,
    probes: setup.probes,
    distractors: setup.distractors,
    turns: s.turns,
    contextPolicy: "sliding",
    seeds: Array.from({ length: s.seeds }, (_, i) => i + 1),
    maxNewTokens: s.maxNewTokens,
    temperature: s.temperature,
  };
}
