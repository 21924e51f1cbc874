/**
 * Output directories forge owns. The one rule: forge writes only what it owns, and never
 * removes what it did not create.
 *
 * - A run writes into a work directory beside the output (`.<name>.partial-<pid>-<random>`,
 *   or `<name>.partial` for a run that can resume) and renames it into place at the end, so
 *   the output is either absent, the previous one, or complete.
 * - Every directory forge makes this way carries a marker file, `.forge-output.json`, naming
 *   its kind. An existing output is replaced only when its marker says it is forge's output of
 *   the same kind and the caller passed `force`; an empty directory is used as if absent;
 *   anything else is refused with a message that says what is there.
 * - The output may not be the working directory, an input of the run, or an ancestor of
 *   either.
 * - One writer per output: a lock file beside it (`.<name>.lock`) names the holder's pid; the
 *   second writer is refused, and a lock whose process has died is taken over.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { lstat, mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { ForgeError, ioError } from "./errors.js";
import { writeJsonAtomic } from "./fs.js";
import { acquireLock, type Lock, processAlive } from "./lock.js";
import { isInside, realPath } from "./paths.js";

export const OUTPUT_MARKER = ".forge-output.json";

export interface OutputMarker {
  kind: string;
  createdAt: string;
  command: string;
  /** The pid of the run that made it (stale work directories of dead runs are swept). */
  pid: number;
}

/** The marker of a directory forge made, if it has one. */
export function readOutputMarker(dir: string): OutputMarker | undefined {
  try {
    const marker = JSON.parse(readFileSync(path.join(dir, OUTPUT_MARKER), "utf8")) as OutputMarker;
    return typeof marker?.kind === "string" ? marker : undefined;
  } catch {
    return undefined;
  }
}

export interface ClaimOptions {
  /** What the output is ("bake", "model", "eval-ab", …): its marker records it. */
  kind: string;
  /** Paths the run reads: the output may be none of them, nor contain one. */
  inputs?: readonly (string | undefined)[];
  /** Replace an existing output of the same kind (and, when resumable, a stopped run's work). */
  force?: boolean;
  /** Continue in a stopped run's work directory (resumable outputs). */
  resume?: boolean;
  /** Work in `<out>.partial`, kept when the run stops, so that it can resume. */
  resumable?: boolean;
  /** How the output was named, for messages (default "--out"). */
  flag?: string;
  /** The command line, recorded in the marker and the lock. */
  command?: string;
}

export interface OutputClaim {
  /** The output directory (absolute). */
  readonly target: string;
  /** Where the run writes; it becomes `target` on commit. */
  readonly work: string;
  /** `work` holds a stopped run's files (resume). */
  readonly resumed: boolean;
  /** Move the work into place (replacing a previous output only as the claim allowed). */
  commit(): Promise<void>;
  /**
   * Give up: remove the work directory (which this run, or a stopped run of the same kind,
   * created) unless `keepWork`, and release the lock.
   */
  release(options?: { keepWork?: boolean }): Promise<void>;
}

const describeEntries = (dir: string): string => {
  const names = readdirSync(dir).sort();
  const shown = names.slice(0, 5).join(", ");
  return names.length > 5 ? `${shown} and ${names.length - 5} more` : shown;
};

/** Refuse an output that is, or contains, the working directory or one of the inputs. */
export function checkOutputPath(
  target: string,
  inputs: readonly (string | undefined)[],
  flag = "--out",
  shown = target,
): void {
  const real = realPath(target);
  if (path.dirname(real) === real)
    throw new ForgeError("E_OUTPUT", `${flag} ${shown} is the root of the file system`);
  if (isInside(real, realPath(process.cwd())))
    throw new ForgeError(
      "E_OUTPUT",
      `${flag} ${shown} is the working directory${real === realPath(process.cwd()) ? "" : " or one of its parents"}: forge writes outputs into a directory of their own`,
    );
  for (const input of inputs) {
    if (input === undefined) continue;
    if (isInside(real, realPath(input)))
      throw new ForgeError(
        "E_OUTPUT",
        `${flag} ${shown} ${real === realPath(input) ? "is" : "contains"} the input ${input}: an output never replaces what the run reads`,
      );
  }
}

/** What stands at `target`: nothing, an empty directory, forge's output of some kind, or else. */
async function inspect(
  target: string,
): Promise<
  | { state: "absent" }
  | { state: "empty" }
  | { state: "forge"; marker: OutputMarker }
  | { state: "foreign"; what: string }
> {
  const info = await lstat(target).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw ioError(error, target, "inspect");
  });
  if (!info) return { state: "absent" };
  if (info.isSymbolicLink()) return { state: "foreign", what: "a symbolic link" };
  if (!info.isDirectory()) return { state: "foreign", what: "a file" };
  const entries = await readdir(target).catch((error) => {
    throw ioError(error, target, "read");
  });
  if (entries.length === 0) return { state: "empty" };
  const marker = readOutputMarker(target);
  if (marker) return { state: "forge", marker };
  return { state: "foreign", what: `a directory holding ${describeEntries(target)}` };
}

/**
 * Work directories of this output left by runs that died (their pid is gone): forge made them
 * (their marker says so), so they are removed.
 */
async function sweepDeadWork(parent: string, name: string, kind: string): Promise<void> {
  const prefix = `.${name}.partial-`;
  for (const entry of existsSync(parent) ? readdirSync(parent) : []) {
    if (!entry.startsWith(prefix)) continue;
    const dir = path.join(parent, entry);
    const marker = readOutputMarker(dir);
    if (marker?.kind === kind && !processAlive(marker.pid))
      await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Claim `out` as this run's output of `options.kind`. Throws (exit 2) naming the directory and
 * what is in it when the claim is not allowed; otherwise returns where to write.
 */
export async function claimOutput(out: string, options: ClaimOptions): Promise<OutputClaim> {
  const flag = options.flag ?? "output";
  const target = path.resolve(out);
  checkOutputPath(target, options.inputs ?? [], flag, out);
  const parent = path.dirname(target);
  const name = path.basename(target);
  const command = options.command ?? process.argv.slice(2).join(" ");
  await mkdir(parent, { recursive: true }).catch((error) => {
    throw ioError(error, parent, "create");
  });
  const lock: Lock = acquireLock(path.join(parent, `.${name}.lock`), `forge ${command}`, {
    what: `${flag} ${out}`,
  });
  try {
    const existing = await inspect(target);
    if (existing.state === "foreign")
      throw new ForgeError(
        "E_OUTPUT",
        `${flag} ${out} already exists and is not forge's output (${existing.what}); forge never replaces what it did not create: choose another ${flag}, or move it away yourself`,
      );
    if (existing.state === "forge" && existing.marker.kind !== options.kind)
      throw new ForgeError(
        "E_OUTPUT",
        `${flag} ${out} holds forge's ${existing.marker.kind} output (from \`forge ${existing.marker.command}\`), not a ${options.kind}: choose another ${flag}`,
      );
    if (existing.state === "forge" && !options.force)
      throw new ForgeError(
        "E_OUTPUT",
        `${flag} ${out} holds a previous ${options.kind} output (from \`forge ${existing.marker.command}\`, ${existing.marker.createdAt}); pass --force to replace it`,
      );

    let work: string;
    let resumed = false;
    if (options.resumable) {
      work = `${target}.partial`;
      const left = await inspect(work);
      if (left.state === "foreign")
        throw new ForgeError(
          "E_OUTPUT",
          `${work} exists and is not a stopped forge run (${left.what}); move it away, or choose another ${flag}`,
        );
      if (left.state === "forge") {
        if (left.marker.kind !== options.kind)
          throw new ForgeError(
            "E_OUTPUT",
            `${work} holds a stopped ${left.marker.kind} run, not a ${options.kind}: choose another ${flag}`,
          );
        if (options.resume) resumed = true;
        else if (options.force) await rm(work, { recursive: true, force: true });
        else
          throw new ForgeError(
            "E_OUTPUT",
            `a stopped run left ${work} (from \`forge ${left.marker.command}\`, ${left.marker.createdAt}); pass --resume to continue it, or --force to start over`,
          );
      } else if (left.state === "empty") await rmdir(work);
    } else {
      await sweepDeadWork(parent, name, options.kind);
      work = path.join(parent, `.${name}.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
    }
    const made = !existsSync(work);
    await mkdir(work, { recursive: true }).catch((error) => {
      throw ioError(error, work, "create");
    });
    const marker: OutputMarker = {
      kind: options.kind,
      createdAt: new Date().toISOString(),
      command,
      pid: process.pid,
    };
    try {
      await writeJsonAtomic(path.join(work, OUTPUT_MARKER), marker);
    } catch (error) {
      // unmarked, no later run would know it as forge's: the directory made here goes now
      if (made) await rmdir(work).catch(() => undefined);
      throw error;
    }

    let done = false;
    return {
      target,
      work,
      resumed,
      async commit() {
        if (done) throw new ForgeError("E_INTERNAL", `${target}: output committed twice`);
        const now = await inspect(target);
        const aside = path.join(
          parent,
          `.${name}.replaced-${process.pid}-${randomBytes(4).toString("hex")}`,
        );
        try {
          if (now.state === "empty") await rmdir(target);
          else if (now.state === "forge" && now.marker.kind === options.kind && options.force)
            await rename(target, aside);
          else if (now.state !== "absent")
            throw new ForgeError(
              "E_OUTPUT",
              `${flag} ${out} appeared while the run worked (${now.state === "forge" ? `forge's ${now.marker.kind} output` : now.what}); the result is kept in ${work}`,
            );
          await rename(work, target);
        } catch (error) {
          if (existsSync(aside) && !existsSync(target)) await rename(aside, target);
          throw ioError(error, target);
        }
        if (existsSync(aside)) await rm(aside, { recursive: true, force: true });
        done = true;
        lock.release();
      },
      async release(releaseOptions = {}) {
        if (done) return;
        done = true;
        try {
          if (!releaseOptions.keepWork) await rm(work, { recursive: true, force: true });
        } finally {
          lock.release();
        }
      },
    };
  } catch (error) {
    lock.release();
    throw error;
  }
}

/**
 * Claim `out`, let `fill` write into the work directory, and commit it; when `fill` throws, the
 * work directory (this run's) is removed and the error rethrown.
 */
export async function writeOutputDirectory(
  out: string,
  options: ClaimOptions,
  fill: (work: string) => Promise<void>,
): Promise<string> {
  const claim = await claimOutput(out, options);
  try {
    await fill(claim.work);
    await claim.commit();
  } catch (error) {
    await claim.release();
    throw error;
  }
  return claim.target;
}
