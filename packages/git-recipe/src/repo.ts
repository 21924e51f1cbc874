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
 *
 * `BakeRepo` is the entry point; the work is done by the modules beside it: `init.ts` (making a
 * repository, installing hooks), `git.ts` (git plumbing), `status.ts` (operation statuses and
 * targets), `record.ts` (the commits a finished bake adds), `jobs.ts` (detached bakes).
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { acquireLock, type LockInfo, readLock, writeFileAtomic } from "@forge/core";
import { type SimpleGit, simpleGit } from "simple-git";
import { RecipeError } from "./errors.js";
import { commitPaths, currentBranch, gitInfo } from "./git.js";
import { type InitOptions, initRepository, installHooks } from "./init.js";
import { checkName, type InputSpec, parseInput, sectionHashes, stableJson } from "./input.js";
import { type JobRecord, JobStore } from "./jobs.js";
import {
  formatState,
  INPUT_FILE,
  parseRecipe,
  parseState,
  RECIPE_FILE,
  type Recipe,
  STATE_FILE,
  type State,
} from "./recipe.js";
import { recordBake } from "./record.js";
import {
  type BakeResult,
  type GitInfo,
  OPERATIONS,
  type Operation,
  type PhaseJob,
  type Progress,
  type Runner,
  summariseLosses,
} from "./runner.js";
import { type OperationStatus, OrderedWriter, StatusStore, targetName, workKey } from "./status.js";
import { ModelStore, parseModelId } from "./store.js";

/** The option and record types of BakeRepo's methods that live beside the code using them. */
export type { InitOptions, JobRecord, OperationStatus };

/** How `BakeRepo.open` opens a repository. */
export interface OpenOptions {
  store?: ModelStore;
}

/** How `BakeRepo.run` runs. */
export interface RunOptions {
  /** Hand a bake to a background process (`spawnDetached`) and return at once. */
  detach?: boolean;
  /** Start the background process of a detached bake; it must call `runJob(jobId, …)`. */
  spawnDetached?: (jobId: string) => number;
  /** Called as each phase starts; the progress function it returns is told every report. */
  onPhase?: (operation: Operation, name: string) => Progress;
  /** What the run lock says holds it (default `forge run <operations>`). */
  command?: string;
  /** Generator paths may leave the repository (forge run --allow-outside). */
  allowOutside?: boolean;
}

/** What `BakeRepo.run` did. */
export interface RunResult {
  /** The staged input's work key (where its stimuli, rollouts and statuses live). */
  key: string;
  /** The bake, stored and committed. */
  bake?: BakeResult;
  /** The detached job, when the bake was handed to a background process. */
  job?: JobRecord;
  /** The operations that ran, in order (missing stim and rollout run before a bake). */
  ran: Operation[];
}

/** What `BakeRepo.status` reports. */
export interface RepoStatus {
  /** The staged input's work key; null when the staged input cannot be read. */
  key: string | null;
  operations: (OperationStatus | { operation: Operation; status: "not run" })[];
  jobs: JobRecord[];
  parent: string | null;
  /** Why the staged input cannot be read. */
  inputError?: string;
}

/** What `BakeRepo.fetch` did with each detached job. */
export interface FetchResult {
  /** Finished bakes now committed on their branches. */
  fetched: JobRecord[];
  running: JobRecord[];
  /** Jobs seen failed for the first time. */
  failed: JobRecord[];
  /** Failed jobs an earlier fetch reported already. */
  reported: JobRecord[];
}

export class BakeRepo {
  readonly git: SimpleGit;
  readonly forgeDir: string;
  private readonly statusStore: StatusStore;
  private readonly jobStore: JobStore;

  private constructor(
    readonly root: string,
    readonly store: ModelStore,
  ) {
    this.git = simpleGit({ baseDir: root });
    this.forgeDir = path.join(root, ".git", "forge");
    const writer = new OrderedWriter();
    this.statusStore = new StatusStore(this.forgeDir, writer);
    this.jobStore = new JobStore({
      root,
      forgeDir: this.forgeDir,
      git: this.git,
      lockFile: this.lockFile(),
      writer,
      bake: (spec, state, key, runner, options) =>
        this.execute(spec, state, key, ["bake"], runner, options),
    });
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
    const { root, store } = await initRepository(dir, name, options);
    return new BakeRepo(root, store);
  }

  /** Open the bake repository containing `dir`. */
  static async open(dir: string, options: OpenOptions = {}): Promise<BakeRepo> {
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
  installHooks(command: readonly string[]): Promise<void> {
    return installHooks(this.root, command);
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

  /** The checked-out branch; a detached HEAD is refused. */
  currentBranch(): Promise<string> {
    return currentBranch(this.git);
  }

  async add(files: readonly string[]): Promise<void> {
    if (files.length === 0) throw new RecipeError("E_INPUT", "nothing to add: name the files");
    for (const f of files) this.inside(f);
    await this.git.add([...files]);
  }

  /** git commit, hooks included (the pre-commit hook refreshes .forge). */
  async commit(message: string): Promise<string> {
    if (!message.trim()) throw new RecipeError("E_INPUT", 'the commit message is empty: -m "…"');
    return commitPaths(this.git, message, undefined);
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
    await commitPaths(
      this.git,
      `Keep the incoming ${changed.join(" and ")} after merge (forge post-merge)`,
      undefined,
      { verify: false },
    );
    return true;
  }

  // ---- running ----------------------------------------------------------------------------

  private lockFile(): string {
    return path.join(this.forgeDir, "run.lock");
  }

  /** Who holds the run lock, if anyone. */
  lockHolder(): LockInfo | undefined {
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
    return workKey(spec, parent);
  }

  /**
   * An operation's last recorded status. A "running" status whose process is gone (killed,
   * crashed) is reported as failed: it will never finish.
   */
  operationStatus(key: string, operation: Operation): Promise<OperationStatus | undefined> {
    return this.statusStore.get(key, operation);
  }

  /** Names a target by TARGET.name or its hash. */
  targetName(spec: InputSpec): string {
    return targetName(spec);
  }

  /** Commit, branch, dirty flag and counts (what a run manifest records). */
  describe(ref = "HEAD", branchName?: string): Promise<GitInfo> {
    return gitInfo(this.git, ref, branchName);
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
    const workDir = this.statusStore.workDir(key);
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
      ...(spec.bake?.teacher ? { teacher: spec.bake.teacher } : {}),
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
    options: RunOptions = {},
  ): Promise<RunResult> {
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
      const key = workKey(spec, state.PARENT_MODEL);
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
        const job = await this.jobStore.create(inputText, stateText, allowOutside);
        const pid = this.jobStore.handOver(lock, job.id, options.spawnDetached);
        handedOver = true;
        job.pid = pid;
        await this.jobStore.write(job);
        return { key, job, ran: [] };
      }
      const ran: Operation[] = [];
      const result = await this.execute(spec, state, key, operations, runner, {
        ...(options.onPhase ? { onPhase: options.onPhase } : {}),
        ran,
        allowOutside,
      });
      if (result) {
        const made = await recordBake(this.git, this.root, result, spec, inputText, startedFrom);
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
    const target = targetName(spec);
    const wanted = new Set(operations);
    if (wanted.has("bake")) {
      if (!existsSync(job.rolloutFile)) wanted.add("rollout");
      if (!existsSync(job.stimFile)) wanted.add("stim");
    }
    if (wanted.has("rollout") && !existsSync(job.stimFile)) wanted.add("stim");
    // each phase with its status recorded (status.ts), then counted as ran
    const phase = async <T>(
      op: Operation,
      name: string,
      fn: (p: Progress) => Promise<T>,
      lines?: (v: T) => number,
    ) => {
      const progress = onPhase?.(op, name) ?? (() => undefined);
      const value = await this.statusStore.track(key, op, name, progress, fn, lines);
      ran.push(op);
      return value;
    };
    if (wanted.has("stim")) {
      await phase(
        "stim",
        target,
        (p) => runner.stim(job, p),
        (n) => n,
      );
      await this.statusStore.recordTarget(target, spec, key);
    }
    if (wanted.has("rollout")) {
      await phase(
        "rollout",
        target,
        (p) => runner.rollout(job, p),
        (n) => n,
      );
      await this.statusStore.recordTarget(target, spec, key);
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

  // ---- what ran ---------------------------------------------------------------------------

  /** Every target that ran. */
  targets(): Promise<Record<string, unknown>[]> {
    return this.statusStore.targets();
  }

  /** One target's record; an unknown name is refused, listing the targets there are. */
  target(name: string): Promise<Record<string, unknown>> {
    return this.statusStore.target(name);
  }

  /**
   * Status of stim, rollout and bake for the staged input, and of detached jobs. A job or an
   * operation whose process died is shown as failed, never as running.
   */
  async status(): Promise<RepoStatus> {
    const state = await this.readState();
    let key: string | null = null;
    let inputError: string | undefined;
    try {
      key = workKey(await this.stagedInput(), state.PARENT_MODEL);
    } catch (error) {
      inputError = (error as Error).message;
    }
    const operations = await Promise.all(
      OPERATIONS.map(
        async (op) =>
          (key ? await this.statusStore.get(key, op) : undefined) ?? {
            operation: op,
            status: "not run" as const,
          },
      ),
    );
    const jobs = await this.jobStore.current();
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
    const key = workKey(await this.stagedInput(), state.PARENT_MODEL);
    const file = path.join(this.statusStore.workDir(key), `${operation}.jsonl`);
    if (!existsSync(file))
      throw new RecipeError(
        "E_INPUT",
        `no ${operation} output for the staged input yet: forge run ${operation}`,
      );
    return (await readFile(file, "utf8")).split("\n").filter((l) => l !== "");
  }

  // ---- detached bakes (jobs.ts) -----------------------------------------------------------

  /** Where a detached job's background process writes its output (the CLI opens it). */
  jobLogFile(id: string): string {
    return this.jobStore.logFile(id);
  }

  /** A detached job's record. */
  job(id: string): Promise<JobRecord> {
    return this.jobStore.get(id);
  }

  /** Every detached job's record, as written. */
  jobs(): Promise<JobRecord[]> {
    return this.jobStore.list();
  }

  /**
   * The background half of a detached bake: run the job's recorded input (not the index, which
   * may have changed), store the model, and record the result in the job file. Git is not
   * touched; `fetch` commits the result.
   */
  runJob(
    id: string,
    runner: Runner,
    onPhase?: (operation: Operation, name: string) => Progress,
  ): Promise<JobRecord> {
    return this.jobStore.run(id, runner, onPhase);
  }

  /**
   * Bring finished detached bakes into the repository: the bake's commits on the branch it
   * started from — through the working tree when that branch is checked out, else straight
   * into the branch with a temporary index. Running jobs report their progress. A job that
   * failed (its process died, or the bake failed) is in `failed` once — the fetch that first
   * sees it — and then in `reported`, so it does not fail every later fetch; `status` shows it
   * until `clearFailed` removes it.
   */
  fetch(): Promise<FetchResult> {
    return this.jobStore.fetch();
  }

  /**
   * Remove failed detached jobs — those whose bake failed and those whose process died — with
   * what forge made for them: the job record, its log, its scratch bake directory. Returns the
   * jobs removed.
   */
  clearFailed(): Promise<JobRecord[]> {
    return this.jobStore.clearFailed();
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
