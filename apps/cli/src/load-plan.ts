/**
 * Every model any command loads — here, or inside a package (a bake's base, a cycle's model) —
 * reports its plan before its weights are allocated: a line on stderr (stdout stays the
 * command's, clean for --json) for a model larger than forge-tiny. A model too large for the
 * backend is then refused by loadModel (exit 2), naming its size and the backend's limit.
 * Imported for this effect by every command module that loads models.
 */
import { describeLoadPlan, setLoadPlanListener } from "@forge/model";

/**
 * Models larger than this announce themselves — forge-tiny (0.9 M parameters) and test-sized
 * models load silently; every hub model prints.
 */
export const ANNOUNCE_MIN_PARAMETERS = 2_000_000;

setLoadPlanListener((plan) => {
  if (plan.parameters > ANNOUNCE_MIN_PARAMETERS)
    process.stderr.write(`loading ${plan.directory}: ${describeLoadPlan(plan)}\n`);
});
