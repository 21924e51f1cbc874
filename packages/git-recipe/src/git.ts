/**
 * Git plumbing for bake repositories: what forge asks of git, below the level of a bake.
 *
 * - commits that name their paths (`git commit --only -- <paths>`), so what else the user has
 *   staged stays staged and out of forge's commit;
 * - commits built on a temporary index (`read-tree`, `hash-object`, `update-index`,
 *   `write-tree`, `commit-tree`) and moved onto a branch with a checked `update-ref`: the user's
 *   index and working tree are never touched by them;
 * - the branch, commit and counts a run manifest records;
 * - the identity check made before `init` writes anything;
 * - hooks (where they live, the scripts forge installs) and the keep-theirs merge driver's
 *   config, set so that it can be put back as it was;
 * - how a git failure reads in an error message, and which exit-code category it has.
 *
 * Everything goes through simple-git (no shell).
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type ErrorCategory, ForgeError, isSystemRefusal } from "@forge/core";
import { GitError, type SimpleGit, simpleGit } from "simple-git";
import { RecipeError } from "./errors.js";
import { RECIPE_FILE, STATE_FILE } from "./recipe.js";
import type { GitInfo } from "./runner.js";

/** The name of the keep-theirs merge driver in git config and `.gitattributes`. */
export const MERGE_DRIVER = "forge-keep-theirs";

/** The `.gitattributes` init writes: the state file and the recipe merge "keep theirs". */
export const GITATTRIBUTES = `# forge: the state file and the recipe follow the incoming branch on merge
${STATE_FILE} merge=${MERGE_DRIVER}
${RECIPE_FILE} merge=${MERGE_DRIVER}
`;

/** The hooks forge installs. */
export const HOOK_NAMES = ["pre-commit", "post-merge"] as const;
/** The line that marks a hook as forge's own (only such a hook is ever rewritten). */
export const HOOK_MARK = "# Installed by forge init";

function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The script of hook `name`: it runs `<command> hook <name>`. */
export function hookScript(name: string, command: readonly string[]): string {
  const what =
    name === "pre-commit"
      ? "refreshes .forge when input.yml is staged"
      : "keeps the incoming .forge and recipe.yml after a merge (a safety net for the merge driver)";
  return `#!/bin/sh
${HOOK_MARK}: ${what}.
exec ${command.map(shellQuote).join(" ")} hook ${name}
`;
}

/**
 * simple-git refuses an environment holding variables that start programs (editors, pagers,
 * ssh, config paths) unless allowed. The environment forge passes is the user's own, exactly as
 * plain git would see it, so those categories are allowed where forge sets an environment.
 */
const USER_ENVIRONMENT = {
  allowUnsafeEditor: true,
  allowUnsafeAskPass: true,
  allowUnsafeConfigPaths: true,
  allowUnsafeConfigEnvCount: true,
  allowUnsafeDiffExternal: true,
  allowUnsafePager: true,
  allowUnsafeGitProxy: true,
  allowUnsafeTemplateDir: true,
  allowUnsafeSshCommand: true,
};

// ---- errors ---------------------------------------------------------------------------------

/** The line of a git failure that says why ("fatal: …"). */
export function gitReason(error: unknown): string {
  const lines = String((error as Error)?.message ?? error)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  return lines.find((l) => /^(fatal|error):/.test(l)) ?? lines.at(-1) ?? "git failed";
}

/** A git failure's message on one line (its lines joined with "; "). */
export function gitMessage(error: unknown): string {
  return String((error as Error)?.message ?? error)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join("; ");
}

/** The exit-code category of an error that interrupted a git operation. */
export function categoryOf(error: unknown): ErrorCategory {
  if (ForgeError.isInstance(error)) return error.category;
  if (isSystemRefusal(error)) return "io";
  if (error instanceof GitError) return "input";
  return "internal";
}

// ---- commits --------------------------------------------------------------------------------

/**
 * git commit, hooks included unless `verify` is false; of exactly `paths` (their working-tree
 * content, `--only`) when given, so whatever else the user has staged stays staged and out of
 * the commit. Returns the new HEAD.
 */
export async function commitPaths(
  git: SimpleGit,
  message: string,
  paths: readonly string[] | undefined,
  options: { verify?: boolean } = {},
): Promise<string> {
  const args = ["commit", "-q", "-m", message];
  if (options.verify === false) args.push("--no-verify");
  if (paths) args.push("--only", "--", ...paths);
  try {
    await git.raw(args);
  } catch (error) {
    throw new RecipeError("E_GIT", `git commit failed: ${gitMessage(error)}`, {
      cause: error,
    });
  }
  return (await git.revparse(["HEAD"])).trim();
}

/**
 * Run `work` with a git for a temporary index file in the repository at `root` (the user's
 * index is never touched by it); the index file is removed afterwards.
 */
export async function withTemporaryIndex<T>(
  root: string,
  work: (git: SimpleGit) => Promise<T>,
): Promise<T> {
  const index = path.join(
    os.tmpdir(),
    `forge-index-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  try {
    return await work(
      simpleGit({ baseDir: root, unsafe: USER_ENVIRONMENT }).env({
        ...process.env,
        GIT_INDEX_FILE: index,
      }),
    );
  } finally {
    await rm(index, { force: true });
  }
}

/**
 * A commit of `parent` with `files` replaced, made with `git` on a temporary index (see
 * `withTemporaryIndex`): no working tree, no hooks. The commit is on no branch until a ref is
 * moved to it.
 */
export async function commitTree(
  git: SimpleGit,
  parent: string,
  files: Record<string, string>,
  message: string,
): Promise<string> {
  await git.raw(["read-tree", parent]);
  for (const [file, content] of Object.entries(files)) {
    const temporary = path.join(
      os.tmpdir(),
      `forge-blob-${process.pid}-${randomBytes(4).toString("hex")}`,
    );
    let blob: string;
    try {
      await writeFile(temporary, content);
      // --path: the repository's attributes for that file apply, as with git add
      blob = (await git.raw(["hash-object", "-w", `--path=${file}`, temporary])).trim();
    } finally {
      await rm(temporary, { force: true });
    }
    await git.raw(["update-index", "--add", "--cacheinfo", `100644,${blob},${file}`]);
  }
  const tree = (await git.raw(["write-tree"])).trim();
  return (await git.raw(["commit-tree", tree, "-p", parent, "-m", message])).trim();
}

/** Move `ref` (HEAD or a branch) from `from` to `to`; git refuses if it moved meanwhile. */
export async function moveRef(
  git: SimpleGit,
  ref: string,
  to: string,
  from: string,
  reason: string,
): Promise<void> {
  await git.raw(["update-ref", "-m", reason, ref, to, from]);
}

// ---- where a run is -------------------------------------------------------------------------

/** The checked-out branch; a detached HEAD is refused. */
export async function currentBranch(git: SimpleGit): Promise<string> {
  const name = (await git.raw(["symbolic-ref", "--short", "-q", "HEAD"]).catch(() => "")).trim();
  if (!name) throw new RecipeError("E_GIT", "HEAD is detached: check out a branch before baking");
  return name;
}

/** Commit, branch, dirty flag and counts (what a run manifest records). */
export async function gitInfo(git: SimpleGit, ref = "HEAD", branchName?: string): Promise<GitInfo> {
  const commit = (await git.revparse([ref])).trim();
  const branch =
    branchName ??
    ((await git.raw(["symbolic-ref", "--short", "-q", "HEAD"]).catch(() => "")).trim() || null);
  const dirty = (await git.raw(["status", "--porcelain", "--untracked-files=no"])).trim() !== "";
  const commitCount = Number((await git.raw(["rev-list", "--count", commit])).trim());
  const branchCount = (await git.raw(["for-each-ref", "--format=%(refname)", "refs/heads"]))
    .split("\n")
    .filter((l) => l !== "").length;
  return { commit, branch, dirty, commitCount, branchCount };
}

// ---- set-up: identity, hooks, merge driver --------------------------------------------------

/** The nearest existing directory at or above `dir`. */
function nearestExisting(dir: string): string {
  let current = dir;
  while (!existsSync(current) && path.dirname(current) !== current) current = path.dirname(current);
  return current;
}

/**
 * A git identity to commit with (`git var`), checked before init writes anything. In an
 * existing repository its own config counts; elsewhere only the user's and the system's (the
 * `--git-dir` given does not exist, so no enclosing repository is consulted).
 */
export async function checkIdentity(root: string, inRepository: boolean): Promise<void> {
  const git = simpleGit({ baseDir: inRepository ? root : nearestExisting(root) });
  const prefix = inRepository ? [] : [`--git-dir=${path.join(root, ".git")}`];
  for (const who of ["GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"]) {
    try {
      await git.raw([...prefix, "var", who]);
    } catch (error) {
      throw new RecipeError(
        "E_GIT",
        `git has no identity to commit with (${gitReason(error)}); forge init makes a commit, so set one first: git config --global user.name "Your Name" and git config --global user.email you@example.com. Nothing was written.`,
        { cause: error },
      );
    }
  }
}

/** Where an existing repository's hooks live (its common git directory, worktrees included). */
export async function hooksDirOf(root: string): Promise<string> {
  const common = (await simpleGit({ baseDir: root }).raw(["rev-parse", "--git-common-dir"])).trim();
  return path.join(path.resolve(root, common), "hooks");
}

/**
 * Set the keep-theirs merge driver in the repository's config; returns how to put the config
 * back as it was (the values it had, or no such section).
 */
export async function configureMergeDriver(root: string): Promise<() => Promise<unknown>> {
  // simple-git refuses merge-driver config unless asked: this one is forge's fixed command
  const git = simpleGit({ baseDir: root, unsafe: { allowUnsafeMergeDriver: true } });
  const keys = {
    [`merge.${MERGE_DRIVER}.name`]: "forge: keep the incoming version",
    [`merge.${MERGE_DRIVER}.driver`]: "cp -f %B %A",
  };
  // (simple-git does not treat `git config --get`'s exit 1 for a missing key as a failure,
  // so the values are read from the whole local config)
  const local = new Map(
    (await git.raw(["config", "--local", "--list"]))
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const),
  );
  const before: Record<string, string | undefined> = {};
  for (const key of Object.keys(keys)) before[key] = local.get(key);
  for (const [key, value] of Object.entries(keys))
    if (before[key] !== value) await git.addConfig(key, value);
  return async () => {
    if (Object.values(before).every((v) => v === undefined))
      return git.raw(["config", "--local", "--remove-section", `merge.${MERGE_DRIVER}`]);
    for (const [key, value] of Object.entries(before))
      if (value === undefined) await git.raw(["config", "--local", "--unset", key]);
      else await git.addConfig(key, value);
  };
}
