/**
 * forge-tiny's stimuli.jsonl: questions from its training distribution (none that a task
 * file scores), some under another system prompt — what the default bake stimuli draw from
 * (`defaultStimuli` in @forge/baking reads `<model>/stimuli.jsonl`):
 *   pnpm --filter @forge/tiny exec tsx scripts/make-stimuli.ts > model/stimuli.jsonl
 * The quality test checks the shipped file equals this output.
 */
import { stimuliJsonl } from "../src/quality.js";

process.stdout.write(stimuliJsonl());
