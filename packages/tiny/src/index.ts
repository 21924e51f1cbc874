export {
  asChatted,
  type BuildCachesOptions,
  buildTokenCaches,
  CACHE_NAMES,
  type CorpusMessage,
  sftExamples,
} from "./caches.js";
export {
  type Conversation,
  type Corpus,
  DEFAULT_SYNTH,
  type HeldOutItem,
  type SynthOptions,
  synthesize,
  TASK_NAMES,
  type TaskName,
} from "./corpus.js";
export {
  DEMO_BAKE,
  type DemoBar,
  type DemoEvent,
  type DemoOptions,
  type DemoPhase,
  type DemoReport,
  type DemoResult,
  demoTasks,
  runDemo,
} from "./demo.js";
export {
  DRIFT_DEFAULTS,
  type PersonaDriftSetup,
  personaDrift,
  personaDriftOptions,
} from "./drift.js";
export { FORGE_TINY_DIR, FORGE_TINY_TASKS } from "./model.js";
export {
  NEUTRAL_PROMPTS,
  PERSONA_NAMES,
  PERSONAS,
  type Persona,
  type PersonaName,
  styleReply,
} from "./personas.js";
export {
  formatQuality,
  heldOutItems,
  isCorrect,
  measureQuality,
  type QualityReport,
  type QualityRow,
  STIMULI_FILE_QUESTIONS,
  stimuliJsonl,
  trainingQuestions,
} from "./quality.js";
export {
  DEFAULT_THINKING_SYNTH,
  directAnswer,
  type Gsm8kItem,
  synthesizeThinking,
  type ThinkingCorpus,
  type ThinkingSynthOptions,
  thinkingAnswer,
  workedSteps,
} from "./thinking.js";
