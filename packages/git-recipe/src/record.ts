/**
 * A finished bake, recorded in git. The model is already in the store; what remains is the
 * commits that say so, naming only forge's paths and built on a temporary index (git.ts), so
 * the user's index is never committed:
 *
 * 1. "Bake input: <name>" — input.yml as it was baked, and .forge with its section hashes —
 *    when the branch does not hold that input already (it was staged, not committed);
 * 2. "Update recipe.yml after bake completion: <name>" — recipe.yml + 1 bake, .forge with the
 *    new PARENT_MODEL, and input.yml cleared; or, when the branch has committed a newer
 *    input.yml since the bake started, that newer input kept as it is.
 *
 * `recordBake` puts them on the checked-out branch and brings the working tree and index along;
 * `commitToBranch` puts them on another branch without checking it out (a detached bake fetched
 * after a branch switch).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "@forge/core";
import type { SimpleGit } from "simple-git";
import { RecipeError } from "./errors.js";
import { categoryOf, commitTree, gitReason, moveRef, withTemporaryIndex } from "./git.js";
import { clearedInput, type InputSpec, sectionHashes } from "./input.js";
import {
  type BakeRecord,
  formatRecipe,
  formatState,
  INPUT_FILE,
  parseRecipe,
  parseState,
  RECIPE_FILE,
  STATE_FILE,
  type State,
} from "./recipe.js";
import type { BakeResult } from "./runner.js";

/** The commits a bake added, and the content of forge's files in the last one. */
interface BakeCommits {
  commit: string;
  inputCommit?: string;
  files: Record<string, string>;
}

/**
 * The files a finished bake leaves: recipe + 1 bake, PARENT_MODEL, input.yml cleared. `staged`
 * is what .forge's STAGED becomes (nothing staged, unless a newer input stays in place).
 */
function bakeFiles(
  result: BakeResult,
  spec: InputSpec,
  stateText: string,
  recipeText: string,
  staged: State["STAGED"] = {},
): { state: string; recipe: string; input: string } {
  const state = parseState(stateText);
  const recipe = parseRecipe(recipeText);
  const hashes = sectionHashes(spec);
  const record: BakeRecord = {
    name: result.name,
    parent: result.parent,
    models: result.models,
    prompt_hash: hashes.prompt!,
    ...(hashes.target ? { target_hash: hashes.target } : {}),
    ...(hashes.bake ? { bake_hash: hashes.bake } : {}),
    prompt: spec.prompt!.teacher.map((m) => `${m.role}: ${m.content}`).join("\n"),
    ...(result.metrics || result.losses
      ? {
          metrics: {
            ...(result.losses ? { loss: result.losses } : {}),
            ...(result.metrics ?? {}),
          },
        }
      : {}),
    created_at: new Date().toISOString(),
  };
  recipe.bakes.push(record);
  state.PARENT_MODEL = result.models.at(-1)!;
  state.LAST_BAKE = { name: result.name, ...hashes };
  state.STAGED = staged;
  return { state: formatState(state), recipe: formatRecipe(recipe), input: clearedInput() };
}

/** The commits a finished bake adds on top of `tip` (see the header); no ref is moved. */
async function bakeCommits(
  git: SimpleGit,
  root: string,
  tip: string,
  startedFrom: string,
  result: BakeResult,
  spec: InputSpec,
  inputText: string,
): Promise<BakeCommits> {
  const show = (ref: string, file: string) => git.show([`${ref}:${file}`]);
  const tipInput = await show(tip, INPUT_FILE).catch(() => undefined);
  const startInput = await show(startedFrom, INPUT_FILE).catch(() => undefined);
  const tipState = await show(tip, STATE_FILE);
  const movedOn = tipInput !== undefined && tipInput !== inputText && tipInput !== startInput;
  try {
    return await withTemporaryIndex(root, async (index) => {
      let parent = tip;
      let inputCommit: string | undefined;
      if (tipInput !== inputText) {
        const state = parseState(tipState);
        state.STAGED = sectionHashes(spec); // what the pre-commit hook would have recorded
        inputCommit = await commitTree(
          index,
          parent,
          { [INPUT_FILE]: inputText, [STATE_FILE]: formatState(state) },
          `Bake input: ${result.name}`,
        );
        parent = inputCommit;
      }
      const baked = bakeFiles(
        result,
        spec,
        tipState,
        await show(tip, RECIPE_FILE),
        movedOn ? parseState(tipState).STAGED : {},
      );
      const files = {
        [STATE_FILE]: baked.state,
        [RECIPE_FILE]: baked.recipe,
        [INPUT_FILE]: movedOn ? tipInput : baked.input,
      };
      const commit = await commitTree(
        index,
        parent,
        files,
        `Update recipe.yml after bake completion: ${result.name}`,
      );
      return { commit, ...(inputCommit ? { inputCommit } : {}), files };
    });
  } catch (error) {
    throw RecipeError.isInstance(error)
      ? error
      : new RecipeError("E_GIT", `recording the bake ${result.name} failed: ${gitReason(error)}`, {
          cause: error,
          category: categoryOf(error),
        });
  }
}

/**
 * Commit a finished bake on the current branch, then bring forge's files in the working tree
 * and the index along: .forge and recipe.yml always; input.yml only where it still holds the
 * baked input (an edit made meanwhile stays). Everything else the user has staged stays
 * staged, and is in neither commit.
 */
export async function recordBake(
  git: SimpleGit,
  root: string,
  result: BakeResult,
  spec: InputSpec,
  inputText: string,
  startedFrom: string,
): Promise<{ commit: string; inputCommit?: string }> {
  const tip = (await git.revparse(["HEAD"])).trim();
  const made = await bakeCommits(git, root, tip, startedFrom, result, spec, inputText);
  await moveRef(git, "HEAD", made.commit, tip, `forge: bake ${result.name}`);
  const inputFile = path.join(root, INPUT_FILE);
  const stagedInput = await git.show([`:${INPUT_FILE}`]).catch(() => undefined);
  const workingInput = await readFile(inputFile, "utf8").catch(() => undefined);
  await writeFileAtomic(path.join(root, STATE_FILE), made.files[STATE_FILE]!);
  await writeFileAtomic(path.join(root, RECIPE_FILE), made.files[RECIPE_FILE]!);
  await git.raw(["add", "--", STATE_FILE, RECIPE_FILE]);
  if (stagedInput === inputText) {
    if (workingInput === inputText) {
      await writeFileAtomic(inputFile, made.files[INPUT_FILE]!);
      await git.raw(["add", "--", INPUT_FILE]);
    } else {
      // the working file was edited during the bake: it stays, now as an unstaged change
      const blob = (await git.raw([`rev-parse`, `${made.commit}:${INPUT_FILE}`])).trim();
      await git.raw(["update-index", "--cacheinfo", `100644,${blob},${INPUT_FILE}`]);
    }
  }
  return made;
}

/** Commit a bake onto `branch` without checking it out. */
export async function commitToBranch(
  git: SimpleGit,
  root: string,
  branch: string,
  result: BakeResult,
  spec: InputSpec,
  inputText: string,
  startedFrom: string,
): Promise<{ commit: string; inputCommit?: string }> {
  const tip = (await git.revparse([`refs/heads/${branch}`])).trim();
  const made = await bakeCommits(git, root, tip, startedFrom, result, spec, inputText);
  await moveRef(git, `refs/heads/${branch}`, made.commit, tip, `forge: bake ${result.name}`);
  return made;
}
