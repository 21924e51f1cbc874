/**
 * Making a bake repository (`forge init`), and its hooks again after a clone.
 *
 * - Preconditions, all checked before anything is written: the name, the base model, a git
 *   identity to commit with, a `.git` that git can use, and that none of the files init writes
 *   exists (input.yml, recipe.yml, .forge, .gitattributes, the two hooks), on disk or tracked.
 * - Files are created, never overwritten (`createFile`: a hard link of a temporary sibling,
 *   which fails if the name is taken).
 * - Each step that succeeded leaves an undo; if a later step fails, init runs them in reverse
 *   — its files, the git config it set, `.git` only if it ran `git init`, the directory only if
 *   it made it — so running it again works.
 */
import { existsSync, lstatSync, statSync } from "node:fs";
import { chmod, link, mkdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { ForgeError, ioError, temporarySibling, writeFileAtomic } from "@forge/core";
import { simpleGit } from "simple-git";
import { RecipeError } from "./errors.js";
import {
  categoryOf,
  checkIdentity,
  commitPaths,
  configureMergeDriver,
  GITATTRIBUTES,
  gitMessage,
  gitReason,
  HOOK_MARK,
  HOOK_NAMES,
  hookScript,
  hooksDirOf,
} from "./git.js";
import { checkName, INPUT_TEMPLATE } from "./input.js";
import {
  formatRecipe,
  formatState,
  INPUT_FILE,
  newState,
  RECIPE_FILE,
  STATE_FILE,
} from "./recipe.js";
import { ModelStore } from "./store.js";

/** How `BakeRepo.init` makes a repository. */
export interface InitOptions {
  /** The base model: a directory or a model id in the store. */
  baseModel?: string;
  /** How hooks call forge, e.g. [process.execPath, "/path/to/forge.js"] (default ["forge"]). */
  hookCommand?: readonly string[];
  store?: ModelStore;
}

/** The files init commits. */
const TRACKED = [INPUT_FILE, STATE_FILE, RECIPE_FILE, ".gitattributes"];

/** Whether anything (a file, a directory, a link, even a dangling one) is at `file`. */
function occupied(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Create `file` holding `content`, never replacing anything: the content is written to a
 * temporary sibling and hard-linked into place, which fails if the name is taken (a plain
 * exclusive create where the file system has no hard links).
 */
async function createFile(file: string, content: string, mode?: number): Promise<void> {
  const temporary = temporarySibling(file);
  try {
    await writeFile(temporary, content);
    if (mode !== undefined) await chmod(temporary, mode);
    try {
      await link(temporary, file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EXDEV")
        throw error;
      await writeFile(file, content, { flag: "wx", ...(mode !== undefined ? { mode } : {}) });
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST")
      throw new RecipeError("E_INPUT", `${file} exists: forge does not overwrite it`, {
        cause: error,
      });
    throw ioError(error, file);
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/** `--base-model`: a model id in the store, else a model directory (resolved). */
function checkBaseModel(base: string, store: ModelStore): string {
  if (/^[^/]+\/[^/]+\/\d+$/.test(base) && store.has(base)) return base;
  const dir = path.resolve(base);
  if (!existsSync(path.join(dir, "config.json")))
    throw new RecipeError(
      "E_INPUT",
      `--base-model ${base}: no model there (${path.join(dir, "config.json")} is missing; give a model directory or a model id from forge models)`,
    );
  return dir;
}

/**
 * Create `dir` (if needed) as a bake repository named `name`, with its first commit (see the
 * header). Returns the repository's root and store.
 */
export async function initRepository(
  dir: string,
  name: string,
  options: InitOptions = {},
): Promise<{ root: string; store: ModelStore }> {
  checkName(name, "repository name");
  const root = path.resolve(dir);
  const store = options.store ?? new ModelStore();
  const info = statSync(root, { throwIfNoEntry: false });
  if (info && !info.isDirectory())
    throw new RecipeError(
      "E_INPUT",
      `${root} exists and is not a directory: forge init makes a bake repository in a directory (a new one, or an existing one)`,
    );
  if (occupied(path.join(root, STATE_FILE)))
    throw new RecipeError("E_INPUT", `${root} is already a bake repository (${STATE_FILE} exists)`);
  const base = options.baseModel !== undefined ? checkBaseModel(options.baseModel, store) : null;
  const inRepository = occupied(path.join(root, ".git"));
  let hooksDir = path.join(root, ".git", "hooks");
  let known: string[] = [];
  if (inRepository) {
    try {
      hooksDir = await hooksDirOf(root);
      // a file git tracks but the working tree lacks (deleted, not committed) is the user's too
      known = (await simpleGit({ baseDir: root }).raw(["ls-files", "--", ...TRACKED]))
        .split("\n")
        .filter((l) => l !== "");
    } catch (error) {
      throw new RecipeError(
        "E_GIT",
        `${path.join(root, ".git")} is there but git cannot use it (${gitReason(error)}); nothing was written`,
        { cause: error },
      );
    }
  }
  await checkIdentity(root, inRepository);
  const command = options.hookCommand ?? ["forge"];
  const files: [file: string, content: string, mode?: number][] = [
    [path.join(root, INPUT_FILE), INPUT_TEMPLATE],
    [path.join(root, STATE_FILE), formatState(newState(name, base))],
    [path.join(root, RECIPE_FILE), formatRecipe({ repository: name, base_model: base, bakes: [] })],
    [path.join(root, ".gitattributes"), GITATTRIBUTES],
    ...HOOK_NAMES.map(
      (hook) =>
        [path.join(hooksDir, hook), hookScript(hook, command), 0o755] as [string, string, number],
    ),
  ];
  const taken = files.filter(([file]) => occupied(file)).map(([file]) => path.relative(root, file));
  taken.push(...known.filter((f) => !taken.includes(f)).map((f) => `${f} (tracked by git)`));
  if (taken.length > 0)
    throw new RecipeError(
      "E_INPUT",
      `forge init would overwrite ${taken.length === 1 ? "a file" : "files"} in ${root}: ${taken.join(", ")}; forge init never overwrites a file — move ${taken.length === 1 ? "it" : "them"} away (or init another directory) and run forge init again. Nothing was written.`,
    );

  // Write, remembering how to undo each step.
  const undo: (() => Promise<unknown>)[] = [];
  try {
    const made = await mkdir(root, { recursive: true }).catch((error: unknown) => {
      throw ioError(error, root, "create");
    });
    if (made !== undefined) undo.push(() => rm(made, { recursive: true, force: true }));
    const git = simpleGit({ baseDir: root });
    if (!inRepository) {
      await git.init(["--initial-branch=main"]);
      undo.push(() => rm(path.join(root, ".git"), { recursive: true, force: true }));
    }
    const madeHooks = await mkdir(hooksDir, { recursive: true }).catch((error: unknown) => {
      throw ioError(error, hooksDir, "create");
    });
    if (madeHooks !== undefined) undo.push(() => rm(madeHooks, { recursive: true, force: true }));
    for (const [file, content, mode] of files) {
      await createFile(file, content, mode);
      undo.push(() => rm(file, { force: true }));
    }
    undo.push(await configureMergeDriver(root));
    await git.raw(["add", "-f", "--", ...TRACKED]);
    undo.push(() => git.raw(["rm", "--cached", "-q", "--ignore-unmatch", "--", ...TRACKED]));
    await commitPaths(git, `forge init ${name}`, TRACKED, { verify: false });
    return { root, store };
  } catch (error) {
    const left: string[] = [];
    for (const step of undo.reverse()) await step().catch((e: unknown) => left.push(gitReason(e)));
    const reason = ForgeError.isInstance(error) ? error.message : gitMessage(error);
    throw new RecipeError(
      RecipeError.isInstance(error) ? error.code : "E_GIT",
      `forge init ${name} failed: ${reason}; ${
        left.length === 0
          ? "it removed what it had created, so forge init can run again"
          : `it could not remove everything it had created: ${left.join("; ")}`
      }`,
      { cause: error, category: categoryOf(error) },
    );
  }
}

/**
 * Hooks and the merge driver's git config, again after a clone. A hook forge installed is
 * rewritten; any other hook at that name is the user's and is refused, never replaced.
 */
export async function installHooks(root: string, command: readonly string[]): Promise<void> {
  const hooks = await hooksDirOf(root);
  for (const name of HOOK_NAMES) {
    const file = path.join(hooks, name);
    if (!occupied(file)) {
      await mkdir(hooks, { recursive: true });
      await createFile(file, hookScript(name, command), 0o755);
      continue;
    }
    const current = await readFile(file, "utf8").catch(() => "");
    if (!current.includes(HOOK_MARK))
      throw new RecipeError(
        "E_INPUT",
        `${file} is a hook forge did not install: forge leaves it alone (merge it by hand: it should run ${command.join(" ")} hook ${name})`,
      );
    await writeFileAtomic(file, hookScript(name, command));
    await chmod(file, 0o755);
  }
  await configureMergeDriver(root);
}
