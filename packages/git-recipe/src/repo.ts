/**
 * A bake repository: a git repository whose `input.yml` says what to bake, whose `recipe.yml`
 * records the bakes up to each commit, and whose `.forge` state file carries PARENT_MODEL from
 * one bake to the next. All git work goes through simple-git (no shell); bakes run through an
 * injected runner, so this package never loads a model.
 *
 * Working files that are not committed live in `.git/forge/`: stimuli and rollouts per input
 * (`work/<key>/`), operation status, the run lock, detached jobs and the targets that ran.
 *
 * What forge owns here it writes atomically (@forge/core's `writeFileAtomic`); what the user
 * owns it never overwrites (`init` refuses existing files and removes exactly what it created
 * when it fails) and never commits (bake commits name their paths).
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, statSync } from "node:fs";
import { chmod, link, mkdir, readdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  acquireLock,
  type ErrorCategory,
  ForgeError,
  ioError,
  isSystemRefusal,
  type Lock,
  processAlive,
  readJsonFile,
  readLock,
  temporarySibling,
  transferLock,
  writeFileAtomic,
} from "@forge/core";
import { GitError, type SimpleGit, simpleGit } from "simple-git";
import { RecipeError } from "./errors.js";
import {
  type BakeSpec,
  clearedInput,
  INPUT_TEMPLATE,
  type InputSpec,
  NAME_PATTERN,
  parseInput,
  sectionHashes,
  stableJson,
} from "./input.js";
import {
  type BakeRecord,
  formatRecipe,
  formatState,
  INPUT_FILE,
  newState,
  parseRecipe,
  parseState,
  RECIPE_FILE,
  type Recipe,
  STATE_FILE,
  type State,
} from "./recipe.js";
import { ModelStore, parseModelId } from "./store.js";

export type Operation = "stim" | "rollout" | "bake";
export const OPERATIONS: Operation[] = ["stim", "rollout", "bake"];
export const MERGE_DRIVER = "forge-keep-theirs";

export type Progress = (done: number, total?: number, detail?: string) => void;

/** Where a run came from, for its manifest. */
export interface GitInfo {
  commit: string;
  branch: string | null;
  dirty: boolean;
  commitCount: number;
  branchCount: number;
}

export interface PhaseJob {
  repository: string;
  /** The repository's root directory (relative paths in input.yml are relative to it). */
  root: string;
  git: GitInfo;
  /** A model directory: the parent model (the base, or the last bake's model from the store). */
  parentDir: string;
  parentModel: string | null;
  prompt: NonNullable<InputSpec["prompt"]>;
  target: NonNullable<InputSpec["target"]>;
  /** Where this input's stimuli and rollouts live. */
  workDir: string;
  stimFile: string;
  rolloutFile: string;
  /**
   * Generator paths may leave the repository (`forge run --allow-outside`). Paths were checked
   * against `root` when the input was read; a runner resolves them with @forge/core's
   * `resolveInside(root, …, { allowOutside })` again when it opens them.
   */
  allowOutside?: boolean;
}

export interface BakeJob extends PhaseJob {
  name: string;
  bake: BakeSpec;
  /** An empty directory for the runner's output. */
  outDir: string;
}

export interface BakeOutput {
  /** A complete model directory (weights merged) to store as the bake's model. */
  modelDir: string;
  steps: number;
  /** Training loss per step. */
  losses: number[];
  metrics?: Record<string, unknown>;
  /** A run manifest file to keep with the model in the store. */
  manifest?: string;
}

/** What runs the phases: the CLI passes one built on @forge/baking. */
export interface Runner {
  /** Generator types TARGET.generators may use. */
  generators: readonly string[];
  stim(job: PhaseJob, progress: Progress): Promise<number>;
  rollout(job: PhaseJob, progress: Progress): Promise<number>;
  bake(job: BakeJob, progress: Progress): Promise<BakeOutput>;
}

export interface OperationStatus {
  operation: Operation;
  name: string;
  status: "running" | "complete" | "failed";
  progress: number;
  lines?: number;
  pid?: number;
  updatedAt: string;
  error?: string;
}

export interface LossSummary {
  latest: number;
  final: number;
  min: number;
  max: number;
}

export interface BakeResult {
  name: string;
  models: string[];
  parent: string | null;
  losses: LossSummary | null;
  /** The "Update recipe.yml after bake completion" commit. */
  commit?: string;
  /** The "Bake input" commit: the baked input.yml, when it was not committed already. */
  inputCommit?: string;
  metrics?: Record<string, unknown>;
}

export interface JobRecord {
  id: string;
  branch: string;
  startedFrom: string;
  input: string;
  state: string;
  status: "running" | "complete" | "failed" | "fetched";
  pid?: number;
  progress: number;
  createdAt: string;
  /** The background process's output, where forge writes it (`.git/forge/jobs/<id>.log`). */
  log?: string;
  /** Generator paths outside the repository were allowed (`forge run --allow-outside`). */
  allowOutside?: boolean;
  result?: BakeResult & { storedAt: string };
  error?: string;
  /** fetch has reported this failed job once; later fetches list it without failing again. */
  reported?: boolean;
  fetchedCommit?: string;
}

export interface InitOptions {
  /** The base model: a directory or a model id in the store. */
  baseModel?: string;
  /** How hooks call forge, e.g. [process.execPath, "/path/to/forge.js"] (default ["forge"]). */
  hookCommand?: readonly string[];
  store?: ModelStore;
}

const GITATTRIBUTES = `# forge: the state file and the recipe follow the incoming branch on merge
${STATE_FILE} merge=${MERGE_DRIVER}
${RECIPE_FILE} merge=${MERGE_DRIVER}
`;

function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function hookScript(name: string, command: readonly string[]): string {
  const what =
    name === "pre-commit"
      ? "refreshes .forge when input.yml is staged"
      : "keeps the incoming .forge and recipe.yml after a merge (a safety net for the merge driver)";
  return `#!/bin/sh
${HOOK_MARK}: ${what}.
exec ${command.map(shellQuote).join(" ")} hook ${name}
`;
}

const HOOK_NAMES = ["pre-commit", "post-merge"] as const;
/** The files init commits. */
const TRACKED = [INPUT_FILE, STATE_FILE, RECIPE_FILE, ".gitattributes"];
const HOOK_MARK = "# Installed by forge init";

const now = () => new Date().toISOString();
const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

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

/** Whether anything (a file, a directory, a link, even a dangling one) is at `file`. */
function occupied(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/** The nearest existing directory at or above `dir`. */
function nearestExisting(dir: string): string {
  let current = dir;
  while (!existsSync(current) && path.dirname(current) !== current) current = path.dirname(current);
  return current;
}

/** The line of a git failure that says why ("fatal: …"). */
function gitReason(error: unknown): string {
  const lines = String((error as Error)?.message ?? error)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  return lines.find((l) => /^(fatal|error):/.test(l)) ?? lines.at(-1) ?? "git failed";
}

/** A git failure's message on one line (its lines joined with "; "). */
function gitMessage(error: unknown): string {
  return String((error as Error)?.message ?? error)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join("; ");
}

/** The exit-code category of an error that interrupted a git operation. */
function categoryOf(error: unknown): ErrorCategory {
  if (ForgeError.isInstance(error)) return error.category;
  if (isSystemRefusal(error)) return "io";
  if (error instanceof GitError) return "input";
  return "internal";
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

export function checkName(name: string, what: string): string {
  if (!NAME_PATTERN.test(name) || name.includes(".."))
    throw new RecipeError(
      "E_INPUT",
      `${what} ${JSON.stringify(name)} is not allowed: use 1–64 letters, digits, ".", "_" or "-" (no spaces, quotes, ";", "/" or "..")`,
    );
  return name;
}

export function summariseLosses(losses: readonly number[]): LossSummary | null {
  if (losses.length === 0) return null;
  return {
    latest: losses.at(-1)!,
    final: losses.at(-1)!,
    min: Math.min(...losses),
    max: Math.max(...losses),
  };
}

export class BakeRepo {
  readonly git: SimpleGit;
  readonly forgeDir: string;

  private constructor(
    readonly root: string,
    readonly store: ModelStore,
  ) {
    this.git = simpleGit({ baseDir: root });
    this.forgeDir = path.join(root, ".git", "forge");
  }

  /**
   * Create `dir` (if needed) as a bake repository named `name`, with its first commit. Every
   * precondition is checked before anything is written: the name, the base model, a git
   * identity to commit with, and that none of the files init writes exists (input.yml,
   * recipe.yml, .forge, .gitattributes, the two hooks) — an existing directory or git
   * repository with other files is fine. If a step fails midway, init removes exactly what it
   * created (the files, the git config it set, `.git` only if it ran `git init`, the directory
   * only if it made it), so running it again works.
   */
  static async init(dir: string, name: string, options: InitOptions = {}): Promise<BakeRepo> {
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
      throw new RecipeError(
        "E_INPUT",
        `${root} is already a bake repository (${STATE_FILE} exists)`,
      );
    const base =
      options.baseModel !== undefined ? BakeRepo.checkBaseModel(options.baseModel, store) : null;
    const inRepository = occupied(path.join(root, ".git"));
    let hooksDir = path.join(root, ".git", "hooks");
    let known: string[] = [];
    if (inRepository) {
      try {
        hooksDir = await BakeRepo.hooksDirOf(root);
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
    await BakeRepo.checkIdentity(root, inRepository);
    const command = options.hookCommand ?? ["forge"];
    const files: [file: string, content: string, mode?: number][] = [
      [path.join(root, INPUT_FILE), INPUT_TEMPLATE],
      [path.join(root, STATE_FILE), formatState(newState(name, base))],
      [
        path.join(root, RECIPE_FILE),
        formatRecipe({ repository: name, base_model: base, bakes: [] }),
      ],
      [path.join(root, ".gitattributes"), GITATTRIBUTES],
      ...HOOK_NAMES.map(
        (hook) =>
          [path.join(hooksDir, hook), hookScript(hook, command), 0o755] as [string, string, number],
      ),
    ];
    const taken = files
      .filter(([file]) => occupied(file))
      .map(([file]) => path.relative(root, file));
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
      undo.push(await BakeRepo.configureMergeDriver(root));
      await git.raw(["add", "-f", "--", ...TRACKED]);
      undo.push(() => git.raw(["rm", "--cached", "-q", "--ignore-unmatch", "--", ...TRACKED]));
      const repo = new BakeRepo(root, store);
      await repo.commitPaths(`forge init ${name}`, TRACKED, { verify: false });
      return repo;
    } catch (error) {
      const left: string[] = [];
      for (const step of undo.reverse())
        await step().catch((e: unknown) => left.push(gitReason(e)));
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
   * A git identity to commit with (`git var`), checked before init writes anything. In an
   * existing repository its own config counts; elsewhere only the user's and the system's (the
   * `--git-dir` given does not exist, so no enclosing repository is consulted).
   */
  private static async checkIdentity(root: string, inRepository: boolean): Promise<void> {
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
  private static async hooksDirOf(root: string): Promise<string> {
    const common = (
      await simpleGit({ baseDir: root }).raw(["rev-parse", "--git-common-dir"])
    ).trim();
    return path.join(path.resolve(root, common), "hooks");
  }

  /**
   * Set the keep-theirs merge driver in the repository's config; returns how to put the config
   * back as it was (the values it had, or no such section).
   */
  private static async configureMergeDriver(root: string): Promise<() => Promise<unknown>> {
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

  private static checkBaseModel(base: string, store: ModelStore): string {
    if (/^[^/]+\/[^/]+\/\d+$/.test(base) && store.has(base)) return base;
    const dir = path.resolve(base);
    if (!existsSync(path.join(dir, "config.json")))
      throw new RecipeError(
        "E_INPUT",
        `--base-model ${base}: no model there (${path.join(dir, "config.json")} is missing; give a model directory or a model id from forge models)`,
      );
    return dir;
  }

  /** Open the bake repository containing `dir`. */
  static async open(dir: string, options: { store?: ModelStore } = {}): Promise<BakeRepo> {
    const start = path.resolve(dir);
    if (!existsSync(start)) throw new RecipeError("E_NOT_REPO", `${start} does not exist`);
    const git = simpleGit({ baseDir: start });
    let root: string;
    try {
      root = (await git.revparse(["--show-toplevel"])).trim();
    } catch {
      throw new RecipeError(
        "E_NOT_REPO",
        `${start} is not a git repository: run forge init <name> to create a bake repository`,
      );
    }
    if (!existsSync(path.join(root, STATE_FILE)))
      throw new RecipeError(
        "E_NOT_REPO",
        `${root} is a git repository but not a bake repository (no ${STATE_FILE}): run forge init <name> there`,
      );
    return new BakeRepo(root, options.store ?? new ModelStore());
  }

  /**
   * Hooks and the merge driver's git config, again after a clone. A hook forge installed is
   * rewritten; any other hook at that name is the user's and is refused, never replaced.
   */
  async installHooks(command: readonly string[]): Promise<void> {
    const hooks = await BakeRepo.hooksDirOf(this.root);
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
    await BakeRepo.configureMergeDriver(this.root);
  }

  // ---- files ----------------------------------------------------------------------------

  async readState(): Promise<State> {
    return parseState(await readFile(path.join(this.root, STATE_FILE), "utf8"));
  }

  async readRecipe(ref?: string): Promise<Recipe> {
    const text = ref
      ? await this.git.show([`${ref}:${RECIPE_FILE}`])
      : await readFile(path.join(this.root, RECIPE_FILE), "utf8");
    return parseRecipe(text, ref ? `${ref}:${RECIPE_FILE}` : RECIPE_FILE);
  }

  /** The staged input.yml text (the index, not the working file). */
  async stagedInputText(): Promise<string> {
    try {
      return await this.git.show([`:${INPUT_FILE}`]);
    } catch {
      throw new RecipeError(
        "E_INPUT",
        `${INPUT_FILE} is not in the index: forge add ${INPUT_FILE}`,
      );
    }
  }

  async stagedInput(generators?: readonly string[]): Promise<InputSpec> {
    return parseInput(
      await this.stagedInputText(),
      `${INPUT_FILE} (staged)`,
      generators ? { generators } : {},
    );
  }

  /** Tracked files whose working copy differs from the index. */
  async unstagedChanges(): Promise<string[]> {
    const out = await this.git.raw(["diff", "--name-only"]);
    return out.split("\n").filter((l) => l !== "");
  }

  async currentBranch(): Promise<string> {
    const name = (
      await this.git.raw(["symbolic-ref", "--short", "-q", "HEAD"]).catch(() => "")
    ).trim();
    if (!name) throw new RecipeError("E_GIT", "HEAD is detached: check out a branch before baking");
    return name;
  }

  async add(files: readonly string[]): Promise<void> {
    if (files.length === 0) throw new RecipeError("E_INPUT", "nothing to add: name the files");
    for (const f of files) this.inside(f);
    await this.git.add([...files]);
  }

  /** git commit, hooks included (the pre-commit hook refreshes .forge). */
  async commit(message: string): Promise<string> {
    if (!message.trim()) throw new RecipeError("E_INPUT", 'the commit message is empty: -m "…"');
    return this.commitFiles(message);
  }

  private async commitFiles(message: string, options: { verify?: boolean } = {}): Promise<string> {
    return this.commitPaths(message, undefined, options);
  }

  /**
   * git commit of exactly `paths` (their working-tree content, `--only`) when given: whatever
   * else the user has staged stays staged and out of forge's commit.
   */
  private async commitPaths(
    message: string,
    paths: readonly string[] | undefined,
    options: { verify?: boolean } = {},
  ): Promise<string> {
    const args = ["commit", "-q", "-m", message];
    if (options.verify === false) args.push("--no-verify");
    if (paths) args.push("--only", "--", ...paths);
    try {
      await this.git.raw(args);
    } catch (error) {
      throw new RecipeError("E_GIT", `git commit failed: ${gitMessage(error)}`, {
        cause: error,
      });
    }
    return (await this.git.revparse(["HEAD"])).trim();
  }

  /** Refuse paths that leave the repository. */
  inside(file: string): string {
    const resolved = path.resolve(this.root, file);
    if (resolved !== this.root && !resolved.startsWith(this.root + path.sep))
      throw new RecipeError("E_INPUT", `${file} is outside the repository ${this.root}`);
    return resolved;
  }

  // ---- hooks ------------------------------------------------------------------------------

  /** pre-commit: when input.yml is staged, record its section hashes in .forge and stage it. */
  async preCommit(): Promise<boolean> {
    const staged = (await this.git.raw(["diff", "--cached", "--name-only"])).split("\n");
    if (!staged.includes(INPUT_FILE)) return false;
    const spec = await this.stagedInput();
    const state = await this.readState();
    const hashes = sectionHashes(spec);
    if (stableJson(hashes) === stableJson(state.STAGED)) return false;
    state.STAGED = hashes;
    await writeFileAtomic(path.join(this.root, STATE_FILE), formatState(state));
    await this.git.add([STATE_FILE]);
    return true;
  }

  /**
   * post-merge: after a merge commit, .forge and recipe.yml must be the incoming branch's. If
   * the merge driver was not configured (a fresh clone) and git merged them line by line,
   * restore the incoming versions and commit them.
   */
  async postMerge(): Promise<boolean> {
    const parents = (await this.git.raw(["rev-list", "--parents", "-n", "1", "HEAD"]))
      .trim()
      .split(" ");
    if (parents.length < 3) return false; // not a merge commit (fast-forward or none)
    const changed: string[] = [];
    for (const file of [STATE_FILE, RECIPE_FILE]) {
      let incoming: string;
      try {
        incoming = await this.git.show([`HEAD^2:${file}`]);
      } catch {
        continue;
      }
      const current = await readFile(path.join(this.root, file), "utf8").catch(() => "");
      if (current !== incoming) {
        await writeFileAtomic(path.join(this.root, file), incoming);
        changed.push(file);
      }
    }
    if (changed.length === 0) return false;
    await this.git.add(changed);
    // right after a merge commit nothing else is staged (and git refuses a partial commit
    // while the merge is being finished), so this commit is of the index as it is
    await this.commitFiles(
      `Keep the incoming ${changed.join(" and ")} after merge (forge post-merge)`,
      { verify: false },
    );
    return true;
  }

  // ---- running ----------------------------------------------------------------------------

  private lockFile(): string {
    return path.join(this.forgeDir, "run.lock");
  }

  /** Who holds the run lock, if anyone. */
  lockHolder() {
    return readLock(this.lockFile());
  }

  /** The model directory of a parent: a store id or a directory. */
  async parentDir(parent: string | null): Promise<string> {
    if (parent === null)
      throw new RecipeError(
        "E_STATE",
        "this repository has no base model: forge init --base-model <dir>, or set BASE_MODEL in .forge",
      );
    if (/^[^/]+\/[^/]+\/\d+$/.test(parent) && !parent.startsWith("/")) {
      try {
        parseModelId(parent);
        return (await this.store.get(parent)).dir;
      } catch (error) {
        if (!existsSync(path.resolve(this.root, parent))) throw error;
      }
    }
    const dir = path.resolve(this.root, parent);
    if (!existsSync(path.join(dir, "config.json")))
      throw new RecipeError(
        "E_STATE",
        `the parent model ${parent} is missing (${path.join(dir, "config.json")} does not exist)`,
      );
    return dir;
  }

  /** The key of an input's stimuli and rollouts: prompt, target and parent together. */
  workKey(spec: InputSpec, parent: string | null): string {
    return createHash("sha256")
      .update(stableJson({ prompt: spec.prompt, target: spec.target, parent }))
      .digest("hex")
      .slice(0, 16);
  }

  private statusFile(key: string, operation: Operation): string {
    return path.join(this.forgeDir, "work", key, `status-${operation}.json`);
  }

  /** Writes in flight, per file: each write of a file waits for the one before it. */
  private readonly writes = new Map<string, Promise<void>>();

  /**
   * Write `file` atomically once every earlier write of it from this process has finished, so
   * writes land in the order they were asked for: a progress write that was still in flight can
   * never overwrite the final status that followed it.
   */
  private writeInOrder(file: string, content: string): Promise<void> {
    const write = () => writeFileAtomic(file, content);
    const next = (this.writes.get(file) ?? Promise.resolve()).then(write, write);
    this.writes.set(file, next);
    const forget = () => {
      if (this.writes.get(file) === next) this.writes.delete(file);
    };
    next.then(forget, forget);
    return next;
  }

  private setStatus(key: string, status: OperationStatus): Promise<void> {
    return this.writeInOrder(this.statusFile(key, status.operation), json(status));
  }

  /**
   * An operation's last recorded status. A "running" status whose process is gone (killed,
   * crashed) is reported as failed: it will never finish.
   */
  async operationStatus(key: string, operation: Operation): Promise<OperationStatus | undefined> {
    const file = this.statusFile(key, operation);
    if (!existsSync(file)) return undefined;
    const status = (await readJsonFile(file)) as OperationStatus;
    if (status?.status === "running" && status.pid !== process.pid && !processAlive(status.pid))
      return {
        ...status,
        status: "failed",
        error: `its process (pid ${status.pid}) died before it finished`,
      };
    return status;
  }

  /** Names a target by TARGET.name or its hash. */
  targetName(spec: InputSpec): string {
    return spec.target?.name ?? `target-${sectionHashes(spec).target?.slice(0, 8) ?? "none"}`;
  }

  /** Commit, branch, dirty flag and counts (what a run manifest records). */
  async describe(ref = "HEAD", branchName?: string): Promise<GitInfo> {
    const commit = (await this.git.revparse([ref])).trim();
    const branch =
      branchName ??
      ((await this.git.raw(["symbolic-ref", "--short", "-q", "HEAD"]).catch(() => "")).trim() ||
        null);
    const dirty =
      (await this.git.raw(["status", "--porcelain", "--untracked-files=no"])).trim() !== "";
    const commitCount = Number((await this.git.raw(["rev-list", "--count", commit])).trim());
    const branchCount = (await this.git.raw(["for-each-ref", "--format=%(refname)", "refs/heads"]))
      .split("\n")
      .filter((l) => l !== "").length;
    return { commit, branch, dirty, commitCount, branchCount };
  }

  /** PROMPT and TARGET, which every operation needs. */
  private checkPhases(spec: InputSpec, file: string): void {
    if (!spec.prompt)
      throw new RecipeError(
        "E_INPUT",
        `${file} has no PROMPT: write the prompt to bake, then forge add ${INPUT_FILE}`,
      );
    if (!spec.target)
      throw new RecipeError(
        "E_INPUT",
        `${file} has no TARGET: say which questions to ask, then forge add ${INPUT_FILE}`,
      );
  }

  /** The bake's name: BAKE present, the name allowed and not used by a bake in recipe.yml. */
  private async bakeName(spec: InputSpec, file: string): Promise<string> {
    if (!spec.bake)
      throw new RecipeError(
        "E_INPUT",
        `${file} has no BAKE section: add one (even just a name), then forge add ${INPUT_FILE}`,
      );
    const recipe = await this.readRecipe();
    const name = checkName(spec.bake.name ?? `bake-${recipe.bakes.length + 1}`, "BAKE.name");
    if (recipe.bakes.some((b) => b.name === name))
      throw new RecipeError(
        "E_INPUT",
        `a bake named ${name} is already in ${RECIPE_FILE}: choose another BAKE.name in ${INPUT_FILE}, then forge add ${INPUT_FILE}`,
      );
    return name;
  }

  private async phaseJob(
    spec: InputSpec,
    state: State,
    key: string,
    ref = "HEAD",
    branch?: string,
    allowOutside = false,
  ): Promise<PhaseJob> {
    this.checkPhases(spec, `${INPUT_FILE} (staged)`);
    const workDir = path.join(this.forgeDir, "work", key);
    await mkdir(workDir, { recursive: true });
    return {
      repository: state.REPOSITORY,
      root: this.root,
      git: await this.describe(ref, branch),
      parentDir: await this.parentDir(state.PARENT_MODEL),
      parentModel: state.PARENT_MODEL,
      prompt: spec.prompt!,
      target: spec.target!,
      workDir,
      stimFile: path.join(workDir, "stim.jsonl"),
      rolloutFile: path.join(workDir, "rollout.jsonl"),
      ...(allowOutside ? { allowOutside: true } : {}),
    };
  }

  /**
   * Run operations in order on the staged input.yml. `bake` refuses unstaged changes; missing
   * stim or rollout outputs are produced first. Everything a run needs is checked before any
   * phase runs: the input (generator paths inside the repository unless `allowOutside`), PROMPT
   * and TARGET, the parent model, and for a bake its section and an unused name. With
   * `detach`, a bake that passed those checks is handed to a background process started by
   * `spawnDetached(jobId)` (it must call `runJob`), and this returns at once.
   */
  async run(
    operations: readonly Operation[],
    runner: Runner,
    options: {
      detach?: boolean;
      spawnDetached?: (jobId: string) => number;
      onPhase?: (operation: Operation, name: string) => Progress;
      command?: string;
      /** Generator paths may leave the repository (forge run --allow-outside). */
      allowOutside?: boolean;
    } = {},
  ): Promise<{ key: string; bake?: BakeResult; job?: JobRecord; ran: Operation[] }> {
    for (const op of operations)
      if (!OPERATIONS.includes(op))
        throw new RecipeError(
          "E_INPUT",
          `unknown operation ${JSON.stringify(op)}; accepted: ${OPERATIONS.join(", ")}`,
        );
    if (operations.length === 0)
      throw new RecipeError("E_INPUT", `name what to run: ${OPERATIONS.join(", ")}`);
    const baking = operations.includes("bake");
    if (baking) {
      const unstaged = await this.unstagedChanges();
      if (unstaged.length)
        throw new RecipeError(
          "E_INPUT",
          `forge run bake reads the staged input and needs every change staged; unstaged: ${unstaged.join(", ")} (forge add them, or git checkout -- to drop them)`,
        );
    }
    const allowOutside = Boolean(options.allowOutside);
    const source = `${INPUT_FILE} (staged)`;
    const inputText = await this.stagedInputText();
    const spec = parseInput(inputText, source, {
      generators: runner.generators,
      root: this.root,
      allowOutside,
    });
    const lock = acquireLock(
      this.lockFile(),
      options.command ?? `forge run ${operations.join(" ")}`,
      { what: `this repository (${this.root})` },
    );
    let handedOver = false;
    try {
      const stateText = await readFile(path.join(this.root, STATE_FILE), "utf8");
      const state = parseState(stateText);
      const key = this.workKey(spec, state.PARENT_MODEL);
      const startedFrom = (await this.git.revparse(["HEAD"])).trim();
      // every check before any work (and before a bake detaches and fails out of sight)
      this.checkPhases(spec, source);
      await this.parentDir(state.PARENT_MODEL);
      if (baking) await this.bakeName(spec, source);
      if (baking && options.detach) {
        if (!options.spawnDetached)
          throw new RecipeError(
            "E_INPUT",
            "a detached bake needs a way to start the background process",
          );
        const job = await this.createJob(inputText, stateText, allowOutside);
        transferLock(lock, process.pid, jobLockCommand(job.id));
        const pid = options.spawnDetached(job.id);
        transferLock(lock, pid, jobLockCommand(job.id));
        handedOver = true;
        job.pid = pid;
        await this.writeJob(job);
        return { key, job, ran: [] };
      }
      const ran: Operation[] = [];
      const result = await this.execute(spec, state, key, operations, runner, {
        ...(options.onPhase ? { onPhase: options.onPhase } : {}),
        ran,
        allowOutside,
      });
      if (result) {
        const made = await this.recordBake(result, spec, inputText, startedFrom);
        result.commit = made.commit;
        if (made.inputCommit) result.inputCommit = made.inputCommit;
      }
      return { key, ...(result ? { bake: result } : {}), ran };
    } finally {
      if (!handedOver) lock.release();
    }
  }

  /** Run the phases; for a bake, store the model and return what to record (nothing is committed). */
  private async execute(
    spec: InputSpec,
    state: State,
    key: string,
    operations: readonly Operation[],
    runner: Runner,
    options: {
      onPhase?: (operation: Operation, name: string) => Progress;
      ran?: Operation[];
      ref?: string;
      branch?: string;
      /** Where the runner's bake output goes (default: a fresh directory under bakes/). */
      outDir?: string;
      allowOutside?: boolean;
    } = {},
  ): Promise<BakeResult | undefined> {
    const { onPhase, ran = [] } = options;
    const job = await this.phaseJob(
      spec,
      state,
      key,
      options.ref,
      options.branch,
      options.allowOutside,
    );
    const targetName = this.targetName(spec);
    const wanted = new Set(operations);
    if (wanted.has("bake")) {
      if (!existsSync(job.rolloutFile)) wanted.add("rollout");
      if (!existsSync(job.stimFile)) wanted.add("stim");
    }
    if (wanted.has("rollout") && !existsSync(job.stimFile)) wanted.add("stim");
    const phase = async <T>(
      op: Operation,
      name: string,
      fn: (p: Progress) => Promise<T>,
      lines?: (v: T) => number,
    ) => {
      const progress = onPhase?.(op, name) ?? (() => undefined);
      const started = { operation: op, name, pid: process.pid };
      await this.setStatus(key, { ...started, status: "running", progress: 0, updatedAt: now() });
      let last = 0;
      let settled = false;
      let value: T;
      try {
        value = await fn((done, total, detail) => {
          progress(done, total, detail);
          // a report after the phase ended must not overwrite its final status
          if (settled || performance.now() - last <= 1000) return;
          last = performance.now();
          // queued behind earlier writes of the file; a failed progress write is superseded
          // by the final status below, which is awaited
          this.setStatus(key, {
            ...started,
            status: "running",
            progress: total ? done / total : 0,
            updatedAt: now(),
          }).catch(() => undefined);
        });
      } catch (error) {
        settled = true;
        await this.setStatus(key, {
          ...started,
          status: "failed",
          progress: 0,
          updatedAt: now(),
          error: (error as Error).message,
        }).catch(() => undefined); // the phase's own error is the one to report
        throw error;
      }
      settled = true;
      await this.setStatus(key, {
        ...started,
        status: "complete",
        progress: 1,
        ...(lines ? { lines: lines(value) } : {}),
        updatedAt: now(),
      });
      ran.push(op);
      return value;
    };
    if (wanted.has("stim")) {
      await phase(
        "stim",
        targetName,
        (p) => runner.stim(job, p),
        (n) => n,
      );
      await this.recordTarget(targetName, spec, key);
    }
    if (wanted.has("rollout")) {
      await phase(
        "rollout",
        targetName,
        (p) => runner.rollout(job, p),
        (n) => n,
      );
      await this.recordTarget(targetName, spec, key);
    }
    if (!wanted.has("bake")) return undefined;
    const name = await this.bakeName(spec, `${INPUT_FILE} (staged)`);
    // forge's own scratch directory under .git/forge/bakes, named for this bake or job
    const outDir =
      options.outDir ??
      path.join(this.forgeDir, "bakes", `${name}-${randomBytes(4).toString("hex")}`);
    await rm(outDir, { recursive: true, force: true });
    await mkdir(outDir, { recursive: true });
    try {
      const output = await phase("bake", name, (p) =>
        runner.bake({ ...job, name, bake: spec.bake!, outDir }, p),
      );
      const id = `${state.REPOSITORY}/${name}/${output.steps}`;
      await this.store.put(id, output.modelDir);
      if (output.manifest && existsSync(output.manifest))
        await this.store.attach(id, "manifest.json", await readFile(output.manifest, "utf8"));
      return {
        name,
        models: [id],
        parent: state.PARENT_MODEL,
        losses: summariseLosses(output.losses),
        ...(output.metrics ? { metrics: output.metrics } : {}),
      };
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  }

  /**
   * The files a finished bake leaves: recipe + 1 bake, PARENT_MODEL, input.yml cleared. `staged`
   * is what .forge's STAGED becomes (nothing staged, unless a newer input stays in place).
   */
  private bakeFiles(
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
      created_at: now(),
    };
    recipe.bakes.push(record);
    state.PARENT_MODEL = result.models.at(-1)!;
    state.LAST_BAKE = { name: result.name, ...hashes };
    state.STAGED = staged;
    return { state: formatState(state), recipe: formatRecipe(recipe), input: clearedInput() };
  }

  /** A git for a temporary index file (the user's index is never touched by it). */
  private indexGit(index: string): SimpleGit {
    return simpleGit({ baseDir: this.root, unsafe: USER_ENVIRONMENT }).env({
      ...process.env,
      GIT_INDEX_FILE: index,
    });
  }

  /** A commit of `parent` with `files` replaced (a temporary index; no working tree, no hooks). */
  private async commitTree(
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

  /**
   * The commits a finished bake adds on top of `tip`, naming only forge's paths:
   *
   * 1. "Bake input: <name>" — input.yml as it was baked, and .forge with its section hashes —
   *    when `tip` does not hold that input already (it was staged, not committed);
   * 2. "Update recipe.yml after bake completion: <name>" — recipe.yml, .forge, and input.yml
   *    cleared; or, when the branch has committed a newer input.yml since the bake started,
   *    that newer input kept as it is.
   */
  private async bakeCommits(
    tip: string,
    startedFrom: string,
    result: BakeResult,
    spec: InputSpec,
    inputText: string,
  ): Promise<{ commit: string; inputCommit?: string; files: Record<string, string> }> {
    const show = (ref: string, file: string) => this.git.show([`${ref}:${file}`]);
    const tipInput = await show(tip, INPUT_FILE).catch(() => undefined);
    const startInput = await show(startedFrom, INPUT_FILE).catch(() => undefined);
    const tipState = await show(tip, STATE_FILE);
    const movedOn = tipInput !== undefined && tipInput !== inputText && tipInput !== startInput;
    const index = path.join(
      os.tmpdir(),
      `forge-index-${process.pid}-${randomBytes(4).toString("hex")}`,
    );
    const git = this.indexGit(index);
    try {
      let parent = tip;
      let inputCommit: string | undefined;
      if (tipInput !== inputText) {
        const state = parseState(tipState);
        state.STAGED = sectionHashes(spec); // what the pre-commit hook would have recorded
        inputCommit = await this.commitTree(
          git,
          parent,
          { [INPUT_FILE]: inputText, [STATE_FILE]: formatState(state) },
          `Bake input: ${result.name}`,
        );
        parent = inputCommit;
      }
      const baked = this.bakeFiles(
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
      const commit = await this.commitTree(
        git,
        parent,
        files,
        `Update recipe.yml after bake completion: ${result.name}`,
      );
      return { commit, ...(inputCommit ? { inputCommit } : {}), files };
    } catch (error) {
      throw RecipeError.isInstance(error)
        ? error
        : new RecipeError(
            "E_GIT",
            `recording the bake ${result.name} failed: ${gitReason(error)}`,
            {
              cause: error,
              category: categoryOf(error),
            },
          );
    } finally {
      await rm(index, { force: true });
    }
  }

  /**
   * Commit a finished bake on the current branch (see `bakeCommits`), then bring forge's files
   * in the working tree and the index along: .forge and recipe.yml always; input.yml only where
   * it still holds the baked input (an edit made meanwhile stays). Everything else the user has
   * staged stays staged, and is in neither commit.
   */
  private async recordBake(
    result: BakeResult,
    spec: InputSpec,
    inputText: string,
    startedFrom: string,
  ): Promise<{ commit: string; inputCommit?: string }> {
    const tip = (await this.git.revparse(["HEAD"])).trim();
    const made = await this.bakeCommits(tip, startedFrom, result, spec, inputText);
    await this.git.raw([
      "update-ref",
      "-m",
      `forge: bake ${result.name}`,
      "HEAD",
      made.commit,
      tip,
    ]);
    const inputFile = path.join(this.root, INPUT_FILE);
    const stagedInput = await this.git.show([`:${INPUT_FILE}`]).catch(() => undefined);
    const workingInput = await readFile(inputFile, "utf8").catch(() => undefined);
    await writeFileAtomic(path.join(this.root, STATE_FILE), made.files[STATE_FILE]!);
    await writeFileAtomic(path.join(this.root, RECIPE_FILE), made.files[RECIPE_FILE]!);
    await this.git.raw(["add", "--", STATE_FILE, RECIPE_FILE]);
    if (stagedInput === inputText) {
      if (workingInput === inputText) {
        await writeFileAtomic(inputFile, made.files[INPUT_FILE]!);
        await this.git.raw(["add", "--", INPUT_FILE]);
      } else {
        // the working file was edited during the bake: it stays, now as an unstaged change
        const blob = (await this.git.raw([`rev-parse`, `${made.commit}:${INPUT_FILE}`])).trim();
        await this.git.raw(["update-index", "--cacheinfo", `100644,${blob},${INPUT_FILE}`]);
      }
    }
    return made;
  }

  private async recordTarget(name: string, spec: InputSpec, key: string): Promise<void> {
    const file = path.join(this.forgeDir, "targets", `${name}.json`);
    const lines = async (f: string) =>
      existsSync(f) ? (await readFile(f, "utf8")).split("\n").filter((l) => l !== "").length : 0;
    await writeFileAtomic(
      file,
      json({
        name,
        key,
        hash: sectionHashes(spec).target,
        generators: spec.target?.generators ?? [],
        rollout: spec.target?.rollout ?? {},
        prompt: spec.prompt,
        stim: await lines(path.join(this.forgeDir, "work", key, "stim.jsonl")),
        rollouts: await lines(path.join(this.forgeDir, "work", key, "rollout.jsonl")),
        updatedAt: now(),
      }),
    );
  }

  async targets(): Promise<Record<string, unknown>[]> {
    const dir = path.join(this.forgeDir, "targets");
    if (!existsSync(dir)) return [];
    const out = [];
    for (const f of (await readdir(dir)).filter((f) => f.endsWith(".json")).sort())
      out.push((await readJsonFile(path.join(dir, f))) as Record<string, unknown>);
    return out;
  }

  async target(name: string): Promise<Record<string, unknown>> {
    checkName(name, "target name");
    const file = path.join(this.forgeDir, "targets", `${name}.json`);
    if (!existsSync(file)) {
      const names = (await this.targets()).map((t) => t.name);
      throw new RecipeError(
        "E_INPUT",
        `no target named ${name}${names.length ? `; targets: ${names.join(", ")}` : " (none has run yet: forge run stim)"}`,
      );
    }
    return (await readJsonFile(file)) as Record<string, unknown>;
  }

  /**
   * Status of stim, rollout and bake for the staged input, and of detached jobs. A job or an
   * operation whose process died is shown as failed, never as running.
   */
  async status(): Promise<{
    key: string | null;
    operations: (OperationStatus | { operation: Operation; status: "not run" })[];
    jobs: JobRecord[];
    parent: string | null;
    inputError?: string;
  }> {
    const state = await this.readState();
    let key: string | null = null;
    let inputError: string | undefined;
    try {
      key = this.workKey(await this.stagedInput(), state.PARENT_MODEL);
    } catch (error) {
      inputError = (error as Error).message;
    }
    const operations = await Promise.all(
      OPERATIONS.map(
        async (op) =>
          (key ? await this.operationStatus(key, op) : undefined) ?? {
            operation: op,
            status: "not run" as const,
          },
      ),
    );
    const jobs = (await this.jobs()).map((job) =>
      job.status === "running" && !this.jobAlive(job) ? this.died(job) : job,
    );
    return {
      key,
      operations,
      jobs,
      parent: state.PARENT_MODEL,
      ...(inputError ? { inputError } : {}),
    };
  }

  /** Lines of the staged input's stim.jsonl or rollout.jsonl. */
  async outputs(operation: "stim" | "rollout"): Promise<string[]> {
    const state = await this.readState();
    const key = this.workKey(await this.stagedInput(), state.PARENT_MODEL);
    const file = path.join(this.forgeDir, "work", key, `${operation}.jsonl`);
    if (!existsSync(file))
      throw new RecipeError(
        "E_INPUT",
        `no ${operation} output for the staged input yet: forge run ${operation}`,
      );
    return (await readFile(file, "utf8")).split("\n").filter((l) => l !== "");
  }

  // ---- detached bakes ---------------------------------------------------------------------

  private jobFile(id: string): string {
    if (!/^[a-z0-9-]+$/.test(id))
      throw new RecipeError("E_INPUT", `${JSON.stringify(id)} is not a job id`);
    return path.join(this.forgeDir, "jobs", `${id}.json`);
  }

  /** Where a detached job's background process writes its output (the CLI opens it). */
  jobLogFile(id: string): string {
    return this.jobFile(id).replace(/\.json$/, ".log");
  }

  /** A detached job's scratch directory for the runner's bake output. */
  private jobOutDir(id: string): string {
    this.jobFile(id); // checks the id
    return path.join(this.forgeDir, "bakes", `job-${id}`);
  }

  private async createJob(input: string, state: string, allowOutside = false): Promise<JobRecord> {
    const id = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
    const job: JobRecord = {
      id,
      branch: await this.currentBranch(),
      startedFrom: (await this.git.revparse(["HEAD"])).trim(),
      input,
      state,
      status: "running",
      progress: 0,
      createdAt: now(),
      log: this.jobLogFile(id),
      ...(allowOutside ? { allowOutside: true } : {}),
    };
    await this.writeJob(job);
    return job;
  }

  private writeJob(job: JobRecord): Promise<void> {
    return this.writeInOrder(this.jobFile(job.id), json(job));
  }

  async job(id: string): Promise<JobRecord> {
    const file = this.jobFile(id);
    if (!existsSync(file)) throw new RecipeError("E_INPUT", `no detached job ${id}`);
    return (await readJsonFile(file)) as JobRecord;
  }

  async jobs(): Promise<JobRecord[]> {
    const dir = path.join(this.forgeDir, "jobs");
    if (!existsSync(dir)) return [];
    const out: JobRecord[] = [];
    for (const f of (await readdir(dir)).filter((f) => f.endsWith(".json")).sort())
      out.push((await readJsonFile(path.join(dir, f))) as JobRecord);
    return out;
  }

  /**
   * Whether a running job's process is still there: it holds the run lock (or the forge that is
   * starting it does, under the job's name), or its pid is alive.
   */
  private jobAlive(job: JobRecord): boolean {
    const holder = this.lockHolder();
    if (holder?.command === jobLockCommand(job.id) && processAlive(holder.pid)) return true;
    return processAlive(job.pid);
  }

  /** A running job whose process is gone, as the failure it is. */
  private died(job: JobRecord): JobRecord {
    const log = job.log && existsSync(job.log) ? `; its log is ${job.log}` : "";
    return {
      ...job,
      status: "failed",
      error: `its process${job.pid !== undefined ? ` (pid ${job.pid})` : ""} died before it finished (killed, or it crashed)${log}`,
    };
  }

  /**
   * The background half of a detached bake: run the job's recorded input (not the index, which
   * may have changed), store the model, and record the result in the job file. Git is not
   * touched; `fetch` commits the result.
   */
  async runJob(
    id: string,
    runner: Runner,
    onPhase?: (operation: Operation, name: string) => Progress,
  ): Promise<JobRecord> {
    const job = await this.job(id);
    let lock: Lock | undefined;
    let settled = false;
    try {
      lock = acquireLock(this.lockFile(), jobLockCommand(id), {
        adopt: (holder) => holder.command === jobLockCommand(id),
        what: `this repository (${this.root})`,
      });
      job.pid = process.pid;
      await this.writeJob(job);
      const spec = parseInput(job.input, `${INPUT_FILE} (job ${id})`, {
        generators: runner.generators,
        root: this.root,
        ...(job.allowOutside ? { allowOutside: true } : {}),
      });
      const state = parseState(job.state);
      const key = this.workKey(spec, state.PARENT_MODEL);
      let lastWrite = 0;
      const result = await this.execute(spec, state, key, ["bake"], runner, {
        onPhase: (op, name) => {
          const inner = onPhase?.(op, name);
          return (done, total, detail) => {
            inner?.(done, total, detail);
            if (settled || op !== "bake" || !total || performance.now() - lastWrite <= 1000) return;
            lastWrite = performance.now();
            job.progress = done / total;
            // in order behind earlier writes; the final record below is awaited
            this.writeJob(job).catch(() => undefined);
          };
        },
        ref: job.startedFrom,
        branch: job.branch,
        outDir: this.jobOutDir(id),
        ...(job.allowOutside ? { allowOutside: true } : {}),
      });
      job.status = "complete";
      job.progress = 1;
      job.result = { ...result!, storedAt: now() };
    } catch (error) {
      job.status = "failed";
      job.error = (error as Error).message;
    } finally {
      settled = true;
    }
    // the final record is on disk before the lock goes: a job without the lock is finished
    try {
      await this.writeJob(job);
    } finally {
      lock?.release();
    }
    return job;
  }

  /**
   * Bring finished detached bakes into the repository: the bake's commits on the branch it
   * started from — through the working tree when that branch is checked out, else straight
   * into the branch with a temporary index. Running jobs report their progress. A job that
   * failed (its process died, or the bake failed) is in `failed` once — the fetch that first
   * sees it — and then in `reported`, so it does not fail every later fetch; `status` shows it
   * until `clearFailed` removes it.
   */
  async fetch(): Promise<{
    fetched: JobRecord[];
    running: JobRecord[];
    failed: JobRecord[];
    reported: JobRecord[];
  }> {
    const fetched: JobRecord[] = [];
    const running: JobRecord[] = [];
    const failed: JobRecord[] = [];
    const reported: JobRecord[] = [];
    const current = await this.currentBranch().catch(() => "");
    for (let job of await this.jobs()) {
      if (job.status === "running") {
        if (this.jobAlive(job)) {
          running.push(job);
          continue;
        }
        job = this.died(job);
      }
      if (job.status === "failed") {
        if (job.reported) reported.push(job);
        else {
          job.reported = true;
          await this.writeJob(job);
          failed.push(job);
        }
        continue;
      }
      if (job.status !== "complete" || !job.result) continue;
      const spec = parseInput(job.input, `${INPUT_FILE} (job ${job.id})`);
      const made =
        job.branch === current
          ? await this.recordBake(job.result, spec, job.input, job.startedFrom)
          : await this.commitToBranch(job.branch, job.result, spec, job.input, job.startedFrom);
      job.fetchedCommit = made.commit;
      job.result.commit = made.commit;
      if (made.inputCommit) job.result.inputCommit = made.inputCommit;
      job.status = "fetched";
      await this.writeJob(job);
      fetched.push(job);
    }
    return { fetched, running, failed, reported };
  }

  /**
   * Remove failed detached jobs — those whose bake failed and those whose process died — with
   * what forge made for them: the job record, its log, its scratch bake directory. Returns the
   * jobs removed.
   */
  async clearFailed(): Promise<JobRecord[]> {
    const cleared: JobRecord[] = [];
    for (let job of await this.jobs()) {
      if (job.status === "running" && !this.jobAlive(job)) job = this.died(job);
      if (job.status !== "failed") continue;
      await rm(this.jobOutDir(job.id), { recursive: true, force: true });
      // only the log at forge's own path: a record edited to point elsewhere removes nothing
      await rm(this.jobLogFile(job.id), { force: true });
      await rm(this.jobFile(job.id), { force: true });
      cleared.push(job);
    }
    return cleared;
  }

  /** Commit a bake onto `branch` without checking it out (see `bakeCommits`). */
  private async commitToBranch(
    branch: string,
    result: BakeResult,
    spec: InputSpec,
    inputText: string,
    startedFrom: string,
  ): Promise<{ commit: string; inputCommit?: string }> {
    const tip = (await this.git.revparse([`refs/heads/${branch}`])).trim();
    const made = await this.bakeCommits(tip, startedFrom, result, spec, inputText);
    await this.git.raw([
      "update-ref",
      "-m",
      `forge: bake ${result.name}`,
      `refs/heads/${branch}`,
      made.commit,
      tip,
    ]);
    return made;
  }

  // ---- lineage ----------------------------------------------------------------------------

  /** Every local branch's recipe.yml. */
  async branchRecipes(): Promise<{ branch: string; recipe: Recipe }[]> {
    const branches = (
      await this.git.raw(["for-each-ref", "--format=%(refname:short)", "refs/heads"])
    )
      .split("\n")
      .filter((b) => b !== "");
    const out: { branch: string; recipe: Recipe }[] = [];
    for (const branch of branches) {
      try {
        out.push({ branch, recipe: await this.readRecipe(`refs/heads/${branch}`) });
      } catch {
        // a branch without a recipe (not a bake branch) is left out of the tree
      }
    }
    return out;
  }
}

const jobLockCommand = (id: string) => `forge run bake --detach (job ${id})`;
