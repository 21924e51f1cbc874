/**
 * The git hooks of a bake repository, as functions (`runHook`) and as a script git can call
 * (`node dist/hook-main.js <pre-commit|post-merge>`; forge's CLI calls runHook from `forge hook`).
 */
import { RecipeError } from "./errors.js";
import { BakeRepo } from "./repo.js";

export const HOOKS = ["pre-commit", "post-merge"] as const;

/** Run a hook in the repository containing `cwd`. Returns whether it changed anything. */
export async function runHook(name: string, cwd = process.cwd()): Promise<boolean> {
  if (!HOOKS.includes(name as (typeof HOOKS)[number]))
    throw new RecipeError(
      "E_INPUT",
      `unknown hook ${JSON.stringify(name)}; accepted: ${HOOKS.join(", ")}`,
    );
  const repo = await BakeRepo.open(cwd);
  return name === "pre-commit" ? repo.preCommit() : repo.postMerge();
}
