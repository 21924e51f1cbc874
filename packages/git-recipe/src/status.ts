/**
 * The status store: what a bake repository's runs leave in `.git/forge/` besides jobs, never
 * committed.
 *
 * - `work/<key>/` per input — its stimuli and rollouts, and one status file per operation
 *   (`status-<operation>.json`): "running" with progress while it runs, then "complete" or
 *   "failed". The key is a hash of the input's PROMPT and TARGET and the parent model
 *   (`workKey`), so an input that changes elsewhere gets fresh outputs.
 * - `targets/<name>.json` — each target that ran: its hash, generators, rollout settings and
 *   how many stimuli and rollouts it has.
 *
 * Every file is written atomically, and writes of one file land in the order they were asked
 * for (`OrderedWriter`): a progress write still in flight can never overwrite the final status
 * that followed it. A "running" status whose process is gone reads as failed.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { processAlive, readJsonFile, writeFileAtomic } from "@forge/core";
import { RecipeError } from "./errors.js";
import { checkName, type InputSpec, sectionHashes, stableJson } from "./input.js";
import type { Operation, Progress } from "./runner.js";

/** An operation's last recorded status (`BakeRepo.status`, `status-<operation>.json`). */
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

export const now = () => new Date().toISOString();
export const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

/** Atomic writes that land, per file, in the order they were asked for. */
export class OrderedWriter {
  /** Writes in flight, per file: each write of a file waits for the one before it. */
  private readonly writes = new Map<string, Promise<void>>();

  /**
   * Write `file` atomically once every earlier write of it through this writer has finished,
   * so writes land in the order they were asked for.
   */
  write(file: string, content: string): Promise<void> {
    const write = () => writeFileAtomic(file, content);
    const next = (this.writes.get(file) ?? Promise.resolve()).then(write, write);
    this.writes.set(file, next);
    const forget = () => {
      if (this.writes.get(file) === next) this.writes.delete(file);
    };
    next.then(forget, forget);
    return next;
  }
}

/**
 * The key of an input's stimuli and rollouts: prompt, target and parent together (and a
 * remote teacher's address and model, BAKE.teacher, which writes them).
 */
export function workKey(spec: InputSpec, parent: string | null): string {
  const teacher = spec.bake?.teacher
    ? { teacher: { url: spec.bake.teacher.url, model: spec.bake.teacher.model ?? null } }
    : {};
  return createHash("sha256")
    .update(stableJson({ prompt: spec.prompt, target: spec.target, parent, ...teacher }))
    .digest("hex")
    .slice(0, 16);
}

/** Names a target by TARGET.name or its hash. */
export function targetName(spec: InputSpec): string {
  return spec.target?.name ?? `target-${sectionHashes(spec).target?.slice(0, 8) ?? "none"}`;
}

export class StatusStore {
  constructor(
    /** The repository's `.git/forge` directory. */
    readonly forgeDir: string,
    private readonly writer: OrderedWriter,
  ) {}

  /** Where the input with `key` keeps its stimuli, rollouts and statuses. */
  workDir(key: string): string {
    return path.join(this.forgeDir, "work", key);
  }

  private statusFile(key: string, operation: Operation): string {
    return path.join(this.workDir(key), `status-${operation}.json`);
  }

  private set(key: string, status: OperationStatus): Promise<void> {
    return this.writer.write(this.statusFile(key, status.operation), json(status));
  }

  /**
   * An operation's last recorded status. A "running" status whose process is gone (killed,
   * crashed) is reported as failed: it will never finish.
   */
  async get(key: string, operation: Operation): Promise<OperationStatus | undefined> {
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

  /**
   * Run one phase with its status recorded: "running" first; while it runs, progress at most
   * once a second (never after it ended); then "complete" (with `lines(value)`) or "failed",
   * awaited and queued behind every progress write, so the final status is the one that stays.
   * `progress` is told every report.
   */
  async track<T>(
    key: string,
    operation: Operation,
    name: string,
    progress: Progress,
    run: (progress: Progress) => Promise<T>,
    lines?: (value: T) => number,
  ): Promise<T> {
    const started = { operation, name, pid: process.pid };
    await this.set(key, { ...started, status: "running", progress: 0, updatedAt: now() });
    let last = 0;
    let settled = false;
    let value: T;
    try {
      value = await run((done, total, detail) => {
        progress(done, total, detail);
        // a report after the phase ended must not overwrite its final status
        if (settled || performance.now() - last <= 1000) return;
        last = performance.now();
        // queued behind earlier writes of the file; a failed progress write is superseded
        // by the final status below, which is awaited
        this.set(key, {
          ...started,
          status: "running",
          progress: total ? done / total : 0,
          updatedAt: now(),
        }).catch(() => undefined);
      });
    } catch (error) {
      settled = true;
      await this.set(key, {
        ...started,
        status: "failed",
        progress: 0,
        updatedAt: now(),
        error: (error as Error).message,
      }).catch(() => undefined); // the phase's own error is the one to report
      throw error;
    }
    settled = true;
    await this.set(key, {
      ...started,
      status: "complete",
      progress: 1,
      ...(lines ? { lines: lines(value) } : {}),
      updatedAt: now(),
    });
    return value;
  }

  /** Record that target `name` ran for the input with `key` (what it is, how much it made). */
  async recordTarget(name: string, spec: InputSpec, key: string): Promise<void> {
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
        stim: await lines(path.join(this.workDir(key), "stim.jsonl")),
        rollouts: await lines(path.join(this.workDir(key), "rollout.jsonl")),
        updatedAt: now(),
      }),
    );
  }

  /** Every target that ran, by name. */
  async targets(): Promise<Record<string, unknown>[]> {
    const dir = path.join(this.forgeDir, "targets");
    if (!existsSync(dir)) return [];
    const out = [];
    for (const f of (await readdir(dir)).filter((f) => f.endsWith(".json")).sort())
      out.push((await readJsonFile(path.join(dir, f))) as Record<string, unknown>);
    return out;
  }

  /** One target's record; an unknown name is refused, listing the targets there are. */
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
}
