/**
 * Detached bakes: `forge run bake --detach` checks everything, records a job and hands the run
 * lock to a background process, which bakes (`run`) without touching git; `fetch` later commits
 * each finished bake on the branch it started from.
 *
 * - Job records live in `.git/forge/jobs/<id>.json` (written atomically and in order), the
 *   background process's output in `<id>.log`, its scratch bake output in
 *   `.git/forge/bakes/job-<id>/`.
 * - The job lock: the repository's run lock, held under the job's name (`jobLockCommand`) —
 *   first by the forge that starts the job, then by the job's own process — so no other run
 *   can start in between, and a job whose lock holder and process are both gone is dead.
 * - A running job whose process died (killed, crashed) reads as failed; `fetch` reports a failed
 *   job once, `clearFailed` removes it with what forge made for it.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import {
  acquireLock,
  type Lock,
  processAlive,
  readJsonFile,
  readLock,
  transferLock,
} from "@forge/core";
import type { SimpleGit } from "simple-git";
import { RecipeError } from "./errors.js";
import { currentBranch } from "./git.js";
import { type InputSpec, parseInput } from "./input.js";
import { INPUT_FILE, parseState, type State } from "./recipe.js";
import { commitToBranch, recordBake } from "./record.js";
import type { BakeResult, Operation, Progress, Runner } from "./runner.js";
import { json, now, type OrderedWriter, workKey } from "./status.js";

/** A detached bake's record (`.git/forge/jobs/<id>.json`). */
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

/** What the run lock says while a detached job holds it. */
export const jobLockCommand = (id: string) => `forge run bake --detach (job ${id})`;

/** What the job store needs from the repository it belongs to. */
export interface JobContext {
  root: string;
  /** The repository's `.git/forge` directory. */
  forgeDir: string;
  git: SimpleGit;
  /** The repository's run lock. */
  lockFile: string;
  writer: OrderedWriter;
  /**
   * Run a bake on `spec` and store its model, with nothing committed (BakeRepo's own phases:
   * missing stim and rollout first, statuses recorded).
   */
  bake(
    spec: InputSpec,
    state: State,
    key: string,
    runner: Runner,
    options: {
      onPhase: (operation: Operation, name: string) => Progress;
      ref: string;
      branch: string;
      outDir: string;
      allowOutside?: boolean;
    },
  ): Promise<BakeResult | undefined>;
}

export class JobStore {
  constructor(private readonly repo: JobContext) {}

  private file(id: string): string {
    if (!/^[a-z0-9-]+$/.test(id))
      throw new RecipeError("E_INPUT", `${JSON.stringify(id)} is not a job id`);
    return path.join(this.repo.forgeDir, "jobs", `${id}.json`);
  }

  /** Where a detached job's background process writes its output (the CLI opens it). */
  logFile(id: string): string {
    return this.file(id).replace(/\.json$/, ".log");
  }

  /** A detached job's scratch directory for the runner's bake output. */
  private outDir(id: string): string {
    this.file(id); // checks the id
    return path.join(this.repo.forgeDir, "bakes", `job-${id}`);
  }

  /** Record a new running job for `input` and `state` as they are now, on the current branch. */
  async create(input: string, state: string, allowOutside = false): Promise<JobRecord> {
    const id = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
    const job: JobRecord = {
      id,
      branch: await currentBranch(this.repo.git),
      startedFrom: (await this.repo.git.revparse(["HEAD"])).trim(),
      input,
      state,
      status: "running",
      progress: 0,
      createdAt: now(),
      log: this.logFile(id),
      ...(allowOutside ? { allowOutside: true } : {}),
    };
    await this.write(job);
    return job;
  }

  /**
   * Hand the run lock to job `id`'s background process: under the job's name before the
   * process starts (so the lock is never free), then to the process `spawn` started. Returns
   * its pid.
   */
  handOver(lock: Lock, id: string, spawn: (jobId: string) => number): number {
    transferLock(lock, process.pid, jobLockCommand(id));
    const pid = spawn(id);
    transferLock(lock, pid, jobLockCommand(id));
    return pid;
  }

  write(job: JobRecord): Promise<void> {
    return this.repo.writer.write(this.file(job.id), json(job));
  }

  async get(id: string): Promise<JobRecord> {
    const file = this.file(id);
    if (!existsSync(file)) throw new RecipeError("E_INPUT", `no detached job ${id}`);
    return (await readJsonFile(file)) as JobRecord;
  }

  /** Every job record as written. */
  async list(): Promise<JobRecord[]> {
    const dir = path.join(this.repo.forgeDir, "jobs");
    if (!existsSync(dir)) return [];
    const out: JobRecord[] = [];
    for (const f of (await readdir(dir)).filter((f) => f.endsWith(".json")).sort())
      out.push((await readJsonFile(path.join(dir, f))) as JobRecord);
    return out;
  }

  /** Every job as it stands: a running one whose process is gone reads as failed. */
  async current(): Promise<JobRecord[]> {
    return (await this.list()).map((job) =>
      job.status === "running" && !this.alive(job) ? this.died(job) : job,
    );
  }

  /**
   * Whether a running job's process is still there: it holds the run lock (or the forge that is
   * starting it does, under the job's name), or its pid is alive.
   */
  private alive(job: JobRecord): boolean {
    const holder = readLock(this.repo.lockFile);
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
  async run(
    id: string,
    runner: Runner,
    onPhase?: (operation: Operation, name: string) => Progress,
  ): Promise<JobRecord> {
    const job = await this.get(id);
    let lock: Lock | undefined;
    let settled = false;
    try {
      lock = acquireLock(this.repo.lockFile, jobLockCommand(id), {
        adopt: (holder) => holder.command === jobLockCommand(id),
        what: `this repository (${this.repo.root})`,
      });
      job.pid = process.pid;
      await this.write(job);
      const spec = parseInput(job.input, `${INPUT_FILE} (job ${id})`, {
        generators: runner.generators,
        root: this.repo.root,
        ...(job.allowOutside ? { allowOutside: true } : {}),
      });
      const state = parseState(job.state);
      const key = workKey(spec, state.PARENT_MODEL);
      let lastWrite = 0;
      const result = await this.repo.bake(spec, state, key, runner, {
        onPhase: (op, name) => {
          const inner = onPhase?.(op, name);
          return (done, total, detail) => {
            inner?.(done, total, detail);
            if (settled || op !== "bake" || !total || performance.now() - lastWrite <= 1000) return;
            lastWrite = performance.now();
            job.progress = done / total;
            // in order behind earlier writes; the final record below is awaited
            this.write(job).catch(() => undefined);
          };
        },
        ref: job.startedFrom,
        branch: job.branch,
        outDir: this.outDir(id),
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
      await this.write(job);
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
   * sees it — and then in `reported`, so it does not fail every later fetch.
   */
  async fetch(): Promise<{
    fetched: JobRecord[];
    running: JobRecord[];
    failed: JobRecord[];
    reported: JobRecord[];
  }> {
    const { git, root } = this.repo;
    const fetched: JobRecord[] = [];
    const running: JobRecord[] = [];
    const failed: JobRecord[] = [];
    const reported: JobRecord[] = [];
    const current = await currentBranch(git).catch(() => "");
    for (let job of await this.list()) {
      if (job.status === "running") {
        if (this.alive(job)) {
          running.push(job);
          continue;
        }
        job = this.died(job);
      }
      if (job.status === "failed") {
        if (job.reported) reported.push(job);
        else {
          job.reported = true;
          await this.write(job);
          failed.push(job);
        }
        continue;
      }
      if (job.status !== "complete" || !job.result) continue;
      const spec = parseInput(job.input, `${INPUT_FILE} (job ${job.id})`);
      const made =
        job.branch === current
          ? await recordBake(git, root, job.result, spec, job.input, job.startedFrom)
          : await commitToBranch(
              git,
              root,
              job.branch,
              job.result,
              spec,
              job.input,
              job.startedFrom,
            );
      job.fetchedCommit = made.commit;
      job.result.commit = made.commit;
      if (made.inputCommit) job.result.inputCommit = made.inputCommit;
      job.status = "fetched";
      await this.write(job);
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
    for (let job of await this.list()) {
      if (job.status === "running" && !this.alive(job)) job = this.died(job);
      if (job.status !== "failed") continue;
      await rm(this.outDir(job.id), { recursive: true, force: true });
      // only the log at forge's own path: a record edited to point elsewhere removes nothing
      await rm(this.logFile(job.id), { force: true });
      await rm(this.file(job.id), { force: true });
      cleared.push(job);
    }
    return cleared;
  }
}
