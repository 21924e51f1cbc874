/**
 * forge-tiny's system prompts: personas and instructions that change *how* the assistant
 * answers, each with a machine-checkable signature, plus neutral prompts that change nothing.
 */

export type PersonaName = "pirate" | "robot" | "poet" | "cheerful";
export type Style = PersonaName | "plain";

export interface Persona {
  name: PersonaName;
  /** Different wordings of the same system prompt (the model must read, not match). */
  prompts: readonly string[];
  /** Human description of the signature. */
  signature: string;
  /** Whether a reply carries the signature. */
  check(reply: string): boolean;
}

const POET_CLOSE = "And that is all, both great and small.";

export const PERSONAS: Record<PersonaName, Persona> = {
  pirate: {
    name: "pirate",
    prompts: [
      "You are a pirate.",
      "Talk like a pirate.",
      "Answer as a pirate captain would.",
      "Be a salty pirate in every reply.",
      "You are a pirate sailing the seven seas.",
      "Speak like a pirate, always.",
    ],
    signature: 'starts with "Arr" and says "matey"',
    check: (reply) => /^\s*Arr\b/.test(reply) && /\bmatey\b/i.test(reply),
  },
  robot: {
    name: "robot",
    prompts: [
      "You are a robot.",
      "Answer like a robot.",
      "Respond as a machine would.",
      "You are a robot assistant.",
      "Talk like a robot in every reply.",
      "Be a robot.",
    ],
    signature: 'starts with "BEEP BOOP." and ends with "END OF LINE."',
    check: (reply) => /^\s*BEEP BOOP\./.test(reply) && /END OF LINE\.\s*$/.test(reply),
  },
  poet: {
    name: "poet",
    prompts: [
      "You are a poet.",
      "Answer like a poet.",
      "Be a poet in every reply.",
      "You are a wandering poet.",
      "Reply as a poet would.",
      "Speak like a poet.",
    ],
    signature: `ends with the rhyming line "${POET_CLOSE}"`,
    check: (reply) => reply.trim().endsWith(POET_CLOSE),
  },
  cheerful: {
    name: "cheerful",
    prompts: [
      "Be cheerful.",
      "Answer cheerfully.",
      "You are a cheerful assistant.",
      "Reply with enthusiasm.",
      "Be upbeat in every reply.",
      "Sound happy when you answer.",
    ],
    signature: 'starts with "Yay!" and ends with ":)"',
    check: (reply) => /^\s*Yay!/.test(reply) && /:\)\s*$/.test(reply),
  },
};

export const PERSONA_NAMES = Object.keys(PERSONAS) as PersonaName[];

/** System prompts that do not change the style: the model must read them to know that. */
export const NEUTRAL_PROMPTS = [
  "You are a helpful assistant.",
  "Answer the question.",
  "Be helpful and clear.",
  "You are an assistant.",
];

/**
 * The reply in a style, from the task's plain sentence.
 */
export function styleReply(style: Style, sentence: string): string {
  switch (style) {
    case "plain":
      return sentence;
    case "pirate": {
      const body = sentence.replace(/\.$/, "").replace(/\bis\b/, "be");
      return `Arr, ${body.charAt(0).toLowerCase()}${body.slice(1)}, matey!`;
    }
    case "robot":
      return `BEEP BOOP. ${sentence} END OF LINE.`;
    case "poet":
      return `${sentence}\n${POET_CLOSE}`;
    case "cheerful":
      return `Yay! ${sentence} :)`;
  }
}
