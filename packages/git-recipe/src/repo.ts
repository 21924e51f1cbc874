/**
 * A bake repository: a git repository whose `input.yml` says what to bake, whose `recipe.yml`
 * records the bakes up to each commit, and whose `.forge` state file carries PARENT_MODEL from
 * one bake to the next. All git work goes through simple-git (no shell); bakes run through an
 * injected runner, so this package never loads a model.
 *
 * Working files that are not committed live in `.git/forge/`: stimuli and rollouts per input
 * (`work/<key>/`), operation status, the run lock, detached jobs and the targets that ran.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type SimpleGit, simpleGit } from "simple-git";
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
import { acquireLock, type Lock, readLock, transferLock } from "./lock.js";
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
  commit?: string;
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
  result?: BakeResult & { storedAt: string };
  error?: string;
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
# Installed by forge init: ${what}.
exec ${command.map(shellQuote).join(" ")} hook ${name}
`;
}

const now = () => new Date().toISOString();
const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

async function writeAtomic(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.${randomBytes(3).toString("hex")}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, file);
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

  /** Create `dir` (if needed) as a bake repository named `name`, with its first commit. */
  static async init(dir: string, name: string, options: InitOptions = {}): Promise<BakeRepo> {
    checkName(name, "repository name");
    const root = path.resolve(dir);
    if (existsSync(path.join(root, STATE_FILE)))
      throw new RecipeError(
        "E_INPUT",
        `${root} is already a bake repository (${STATE_FILE} exists)`,
      );
    let base: string | null = null;
    const store = options.store ?? new ModelStore();
    if (options.baseModel !== undefined) {
      base = BakeRepo.checkBaseModel(options.baseModel, store);
    }
    await mkdir(root, { recursive: true });
    const git = simpleGit({ baseDir: root });
    if (!existsSync(path.join(root, ".git"))) await git.init(["--initial-branch=main"]);
    const repo = new BakeRepo(root, store);
    await writeFile(path.join(root, INPUT_FILE), INPUT_TEMPLATE);
    await writeFile(path.join(root, STATE_FILE), formatState(newState(name, base)));
    await writeFile(
      path.join(root, RECIPE_FILE),
      formatRecipe({ repository: name, base_model: base, bakes: [] }),
    );
    await writeFile(path.join(root, ".gitattributes"), GITATTRIBUTES);
    await repo.installHooks(options.hookCommand ?? ["forge"]);
    await git.add([INPUT_FILE, STATE_FILE, RECIPE_FILE, ".gitattributes"]);
    await repo.commitFiles(`forge init ${name}`, { verify: false });
    return repo;
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

  /** Hooks and the merge driver's git config (init, and again after a clone). */
  async installHooks(command: readonly string[]): Promise<void> {
    const hooks = path.join(this.root, ".git", "hooks");
    await mkdir(hooks, { recursive: true });
    for (const name of ["pre-commit", "post-merge"]) {
      const file = path.join(hooks, name);
      await writeFile(file, hookScript(name, command));
      await chmod(file, 0o755);
    }
    // simple-git refuses merge-driver config unless asked: this one is forge's fixed command
    const git = simpleGit({ baseDir: this.root, unsafe: { allowUnsafeMergeDriver: true } });
    await git.addConfig(`merge.${MERGE_DRIVER}.name`, "forge: keep the incoming version");
    await git.addConfig(`merge.${MERGE_DRIVER}.driver`, "cp -f %B %A");
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
    const args = ["commit", "-q", "-m", message];
    if (options.verify === false) args.push("--no-verify");
    try {
      await this.git.raw(args);
    } catch (error) {
      throw new RecipeError("E_GIT", `git commit failed: ${(error as Error).message.trim()}`, {
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
    await writeAtomic(path.join(this.root, STATE_FILE), formatState(state));
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
        await writeAtomic(path.join(this.root, file), incoming);
        changed.push(file);
      }
    }
    if (changed.length === 0) return false;
    await this.git.add(changed);
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

  private async setStatus(key: string, status: OperationStatus): Promise<void> {
    await writeAtomic(this.statusFile(key, status.operation), json(status));
  }

  async operationStatus(key: string, operation: Operation): Promise<OperationStatus | undefined> {
    const file = this.statusFile(key, operation);
    if (!existsSync(file)) return undefined;
    return JSON.parse(await readFile(file, "utf8")) as OperationStatus;
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

  private async phaseJob(
    spec: InputSpec,
    state: State,
    key: string,
    ref = "HEAD",
    branch?: string,
  ): Promise<PhaseJob> {
    if (!spec.prompt)
      throw new RecipeError(
        "E_INPUT",
        `${INPUT_FILE} (staged) has no PROMPT: write the prompt to bake, then forge add ${INPUT_FILE}`,
      );
    if (!spec.target)
      throw new RecipeError(
        "E_INPUT",
        `${INPUT_FILE} (staged) has no TARGET: say which questions to ask, then forge add ${INPUT_FILE}`,
      );
    const workDir = path.join(this.forgeDir, "work", key);
    await mkdir(workDir, { recursive: true });
    return {
      repository: state.REPOSITORY,
      root: this.root,
      git: await this.describe(ref, branch),
      parentDir: await this.parentDir(state.PARENT_MODEL),
      parentModel: state.PARENT_MODEL,
      prompt: spec.prompt,
      target: spec.target,
      workDir,
      stimFile: path.join(workDir, "stim.jsonl"),
      rolloutFile: path.join(workDir, "rollout.jsonl"),
    };
  }

  /**
   * Run operations in order on the staged input.yml. `bake` refuses unstaged changes; missing
   * stim or rollout outputs are produced first. With `detach`, a bake is handed to a background
   * process started by `spawnDetached(jobId)` (it must call `runJob`), and this returns at once.
   */
  async run(
    operations: readonly Operation[],
    runner: Runner,
    options: {
      detach?: boolean;
      spawnDetached?: (jobId: string) => number;
      onPhase?: (operation: Operation, name: string) => Progress;
      command?: string;
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
    const spec = await this.stagedInput(runner.generators);
    const inputText = await this.stagedInputText();
    const lock = acquireLock(
      this.lockFile(),
      options.command ?? `forge run ${operations.join(" ")}`,
    );
    let handedOver = false;
    try {
      const state = await this.readState();
      const key = this.workKey(spec, state.PARENT_MODEL);
      if (baking && options.detach) {
        if (!options.spawnDetached)
          throw new RecipeError(
            "E_INPUT",
            "a detached bake needs a way to start the background process",
          );
        const job = await this.createJob(
          inputText,
          await readFile(path.join(this.root, STATE_FILE), "utf8"),
        );
        transferLock(lock, process.pid, jobLockCommand(job.id));
        const pid = options.spawnDetached(job.id);
        transferLock(lock, pid, jobLockCommand(job.id));
        handedOver = true;
        job.pid = pid;
        await this.writeJob(job);
        return { key, job, ran: [] };
      }
      const ran: Operation[] = [];
      const result = await this.execute(spec, state, key, operations, runner, options.onPhase, ran);
      if (result) {
        const commit = await this.recordBake(result, spec, inputText);
        result.commit = commit;
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
    onPhase: ((operation: Operation, name: string) => Progress) | undefined,
    ran: Operation[],
    ref = "HEAD",
    branch?: string,
  ): Promise<BakeResult | undefined> {
    const job = await this.phaseJob(spec, state, key, ref, branch);
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
      try {
        const value = await fn((done, total, detail) => {
          progress(done, total, detail);
          const fraction = total ? done / total : 0;
          if (performance.now() - last > 1000) {
            last = performance.now();
            void this.setStatus(key, {
              ...started,
              status: "running",
              progress: fraction,
              updatedAt: now(),
            });
          }
        });
        await this.setStatus(key, {
          ...started,
          status: "complete",
          progress: 1,
          ...(lines ? { lines: lines(value) } : {}),
          updatedAt: now(),
        });
        ran.push(op);
        return value;
      } catch (error) {
        await this.setStatus(key, {
          ...started,
          status: "failed",
          progress: 0,
          updatedAt: now(),
          error: (error as Error).message,
        });
        throw error;
      }
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
    if (!spec.bake)
      throw new RecipeError(
        "E_INPUT",
        `${INPUT_FILE} (staged) has no BAKE section: add one (even just a name), then forge add ${INPUT_FILE}`,
      );
    const recipe = await this.readRecipe();
    const name = checkName(spec.bake.name ?? `bake-${recipe.bakes.length + 1}`, "BAKE.name");
    if (recipe.bakes.some((b) => b.name === name))
      throw new RecipeError(
        "E_INPUT",
        `a bake named ${name} is already in ${RECIPE_FILE}: choose another BAKE.name`,
      );
    const outDir = path.join(this.forgeDir, "bakes", `${name}-${randomBytes(4).toString("hex")}`);
    await rm(outDir, { recursive: true, force: true });
    await mkdir(outDir, { recursive: true });
    const output = await phase("bake", name, (p) =>
      runner.bake({ ...job, name, bake: spec.bake!, outDir }, p),
    );
    const id = `${state.REPOSITORY}/${name}/${output.steps}`;
    await this.store.put(id, output.modelDir);
    if (output.manifest && existsSync(output.manifest))
      await this.store.attach(id, "manifest.json", await readFile(output.manifest, "utf8"));
    await rm(outDir, { recursive: true, force: true });
    return {
      name,
      models: [id],
      parent: state.PARENT_MODEL,
      losses: summariseLosses(output.losses),
      ...(output.metrics ? { metrics: output.metrics } : {}),
    };
  }

  /** The files a finished bake leaves: recipe + 1 bake, PARENT_MODEL, input.yml cleared. */
  private bakeFiles(
    result: BakeResult,
    spec: InputSpec,
    stateText: string,
    recipeText: string,
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
    state.STAGED = {};
    return { state: formatState(state), recipe: formatRecipe(recipe), input: clearedInput() };
  }

  /** Commit a finished bake on the current branch. */
  private async recordBake(
    result: BakeResult,
    spec: InputSpec,
    inputText: string,
  ): Promise<string> {
    const files = this.bakeFiles(
      result,
      spec,
      await readFile(path.join(this.root, STATE_FILE), "utf8"),
      await readFile(path.join(this.root, RECIPE_FILE), "utf8"),
    );
    await writeAtomic(path.join(this.root, STATE_FILE), files.state);
    await writeAtomic(path.join(this.root, RECIPE_FILE), files.recipe);
    const working = await readFile(path.join(this.root, INPUT_FILE), "utf8").catch(() => "");
    const clearInput = working === inputText || (await this.stagedInputText()) === inputText;
    if (clearInput) await writeAtomic(path.join(this.root, INPUT_FILE), files.input);
    await this.git.add([STATE_FILE, RECIPE_FILE, ...(clearInput ? [INPUT_FILE] : [])]);
    return this.commitFiles(`Update recipe.yml after bake completion: ${result.name}`, {
      verify: false,
    });
  }

  private async recordTarget(name: string, spec: InputSpec, key: string): Promise<void> {
    const file = path.join(this.forgeDir, "targets", `${name}.json`);
    const lines = async (f: string) =>
      existsSync(f) ? (await readFile(f, "utf8")).split("\n").filter((l) => l !== "").length : 0;
    await writeAtomic(
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
      out.push(JSON.parse(await readFile(path.join(dir, f), "utf8")) as Record<string, unknown>);
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
    return JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  }

  /** Status of stim, rollout and bake for the staged input, and of detached jobs. */
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
    return {
      key,
      operations,
      jobs: await this.jobs(),
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

  private async createJob(input: string, state: string): Promise<JobRecord> {
    const job: JobRecord = {
      id: `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`,
      branch: await this.currentBranch(),
      startedFrom: (await this.git.revparse(["HEAD"])).trim(),
      input,
      state,
      status: "running",
      progress: 0,
      createdAt: now(),
    };
    await this.writeJob(job);
    return job;
  }

  private async writeJob(job: JobRecord): Promise<void> {
    await writeAtomic(this.jobFile(job.id), json(job));
  }

  async job(id: string): Promise<JobRecord> {
    const file = this.jobFile(id);
    if (!existsSync(file)) throw new RecipeError("E_INPUT", `no detached job ${id}`);
    return JSON.parse(await readFile(file, "utf8")) as JobRecord;
  }

  async jobs(): Promise<JobRecord[]> {
    const dir = path.join(this.forgeDir, "jobs");
    if (!existsSync(dir)) return [];
    const out: JobRecord[] = [];
    for (const f of (await readdir(dir)).filter((f) => f.endsWith(".json")).sort())
      out.push(JSON.parse(await readFile(path.join(dir, f), "utf8")) as JobRecord);
    return out;
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
    try {
      lock = acquireLock(this.lockFile(), jobLockCommand(id), {
        adopt: (holder) => holder.command === jobLockCommand(id),
      });
      job.pid = process.pid;
      await this.writeJob(job);
      const spec = parseInput(job.input, `${INPUT_FILE} (job ${id})`, {
        generators: runner.generators,
      });
      const state = parseState(job.state);
      const key = this.workKey(spec, state.PARENT_MODEL);
      let lastWrite = 0;
      const result = await this.execute(
        spec,
        state,
        key,
        ["bake"],
        runner,
        (op, name) => {
          const inner = onPhase?.(op, name);
          return (done, total, detail) => {
            inner?.(done, total, detail);
            if (op === "bake" && total && performance.now() - lastWrite > 1000) {
              lastWrite = performance.now();
              job.progress = done / total;
              void this.writeJob(job);
            }
          };
        },
        [],
        job.startedFrom,
        job.branch,
      );
      job.status = "complete";
      job.progress = 1;
      job.result = { ...result!, storedAt: now() };
    } catch (error) {
      job.status = "failed";
      job.error = (error as Error).message;
    } finally {
      lock?.release();
    }
    await this.writeJob(job);
    return job;
  }

  /**
   * Bring finished detached bakes into the repository: one commit per bake on the branch it
   * started from — through the working tree when that branch is checked out, else straight
   * into the branch with a temporary index. Running jobs report their progress.
   */
  async fetch(): Promise<{ fetched: JobRecord[]; running: JobRecord[]; failed: JobRecord[] }> {
    const fetched: JobRecord[] = [];
    const running: JobRecord[] = [];
    const failed: JobRecord[] = [];
    const current = await this.currentBranch().catch(() => "");
    for (const job of await this.jobs()) {
      if (job.status === "running") {
        const alive = job.pid !== undefined && processAlive(job.pid);
        if (alive) running.push(job);
        else {
          job.status = "failed";
          job.error = `the background process (pid ${job.pid}) ended without a result`;
          await this.writeJob(job);
          failed.push(job);
        }
        continue;
      }
      if (job.status === "failed") {
        failed.push(job);
        continue;
      }
      if (job.status !== "complete" || !job.result) continue;
      const spec = parseInput(job.input, `${INPUT_FILE} (job ${job.id})`);
      if (job.branch === current) {
        job.fetchedCommit = await this.recordBake(job.result, spec, job.input);
      } else {
        job.fetchedCommit = await this.commitToBranch(job.branch, job.result, spec, job.input);
      }
      job.status = "fetched";
      await this.writeJob(job);
      fetched.push(job);
    }
    return { fetched, running, failed };
  }

  /** Commit a bake onto `branch` without checking it out (temporary index, commit-tree). */
  private async commitToBranch(
    branch: string,
    result: BakeResult,
    spec: InputSpec,
    inputText: string,
  ): Promise<string> {
    const tip = (await this.git.revparse([`refs/heads/${branch}`])).trim();
    const show = (file: string) => this.git.show([`${tip}:${file}`]);
    const files = this.bakeFiles(result, spec, await show(STATE_FILE), await show(RECIPE_FILE));
    const branchInput = await show(INPUT_FILE).catch(() => "");
    const index = path.join(
      os.tmpdir(),
      `forge-index-${process.pid}-${randomBytes(4).toString("hex")}`,
    );
    // simple-git refuses editor, pager and helper variables: git needs none of them here
    const env = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) =>
          !/EDITOR|PAGER|ASKPASS|SSH|PROXY|EXTERNAL_DIFF|GIT_CONFIG|EXEC_PATH|TEMPLATE_DIR/.test(k),
      ),
    );
    const git = simpleGit({ baseDir: this.root }).env({ ...env, GIT_INDEX_FILE: index });
    try {
      await git.raw(["read-tree", tip]);
      const entries: [string, string][] = [
        [STATE_FILE, files.state],
        [RECIPE_FILE, files.recipe],
        ...(branchInput === inputText ? ([[INPUT_FILE, files.input]] as [string, string][]) : []),
      ];
      for (const [file, content] of entries) {
        const temporary = `${index}.${file.replace(/\W/g, "_")}`;
        await writeFile(temporary, content);
        const blob = (await git.raw(["hash-object", "-w", temporary])).trim();
        await rm(temporary, { force: true });
        await git.raw(["update-index", "--add", "--cacheinfo", `100644,${blob},${file}`]);
      }
      const tree = (await git.raw(["write-tree"])).trim();
      const commit = (
        await git.raw([
          "commit-tree",
          tree,
          "-p",
          tip,
          "-m",
          `Update recipe.yml after bake completion: ${result.name}`,
        ])
      ).trim();
      await this.git.raw(["update-ref", `refs/heads/${branch}`, commit, tip]);
      return commit;
    } finally {
      await rm(index, { force: true });
    }
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

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
