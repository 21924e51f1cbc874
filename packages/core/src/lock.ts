/**
 * One writer at a time: a lock file created exclusively (`wx`), holding the holder's pid, the
 * command and the start time. A lock whose process is gone (killed, crashed) is stale and is
 * taken over; a live holder makes the second writer fail with a message naming its pid.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { ForgeError, ioError } from "./errors.js";

export interface LockInfo {
  pid: number;
  startedAt: string;
  command: string;
}

export interface Lock {
  file: string;
  release(): void;
}

/**
 * Whether a process with this pid is running (EPERM: it exists, owned by someone else). A
 * zombie — killed, not yet reaped by its parent — is not running, though its pid still answers.
 */
export function processAlive(pid: number | undefined): boolean {
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  return !zombie(pid);
}

/** A zombie process (Linux: state Z in /proc/<pid>/stat); false where /proc is not there. */
function zombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

export function readLock(file: string): LockInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(file, "utf8")) as LockInfo;
    return typeof info?.pid === "number" ? info : undefined;
  } catch {
    return undefined;
  }
}

export interface AcquireOptions {
  pid?: number;
  /** Take over a live holder's lock when this returns true (a job adopting its parent's lock). */
  adopt?: (holder: LockInfo) => boolean;
  /** What is locked, for the message ("this repository", "the output …"). */
  what?: string;
}

/** Take the lock or throw E_LOCKED (exit 2) naming the holder. */
export function acquireLock(file: string, command: string, options: AcquireOptions = {}): Lock {
  const pid = options.pid ?? process.pid;
  try {
    mkdirSync(path.dirname(file), { recursive: true });
  } catch (error) {
    throw ioError(error, path.dirname(file), "create");
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, "wx");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(error, file, "create");
      const holder = readLock(file);
      if (holder && processAlive(holder.pid) && !options.adopt?.(holder))
        throw new ForgeError(
          "E_LOCKED",
          `${options.what ?? file} is held by another forge process: pid ${holder.pid} (${holder.command}, since ${holder.startedAt}); wait for it to finish`,
        );
      // Stale (its process is gone), half-written by a writer that just started, or adopted.
      // A half-written lock gets one more look before it is taken over.
      if (!holder && attempt === 0) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
        continue;
      }
      takeOver(file, holder);
      continue;
    }
    try {
      writeSync(fd, JSON.stringify({ pid, startedAt: new Date().toISOString(), command }));
    } catch (error) {
      closeSync(fd);
      rmSync(file, { force: true });
      throw ioError(error, file);
    }
    closeSync(fd);
    let released = false;
    return {
      file,
      release: () => {
        if (released) return;
        released = true;
        if (readLock(file)?.pid === pid) rmSync(file, { force: true });
      },
    };
  }
  throw new ForgeError("E_LOCKED", `could not take the lock ${file}`);
}

/**
 * Remove a stale lock without removing a fresh one: two processes may both see the same dead
 * holder, and the slower must not delete the lock the faster has just created. The lock is
 * moved aside first; if what was moved belongs to a live process it goes back.
 */
function takeOver(file: string, stale: LockInfo | undefined): void {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    renameSync(file, aside);
  } catch {
    return; // someone else moved or removed it first
  }
  const moved = readLock(aside);
  if (moved && moved.pid !== stale?.pid && processAlive(moved.pid)) {
    try {
      linkSync(aside, file); // put the live holder's lock back (fails if the slot is taken)
    } catch {
      // the slot was taken again meanwhile: that process holds it now
    }
  }
  rmSync(aside, { force: true });
}

/** Hand a lock to another process (a detached job): rewrite the holder's pid. */
export function transferLock(lock: Lock, pid: number, command: string): void {
  const info: LockInfo = { pid, startedAt: new Date().toISOString(), command };
  try {
    const fd = openSync(lock.file, "w");
    writeSync(fd, JSON.stringify(info));
    closeSync(fd);
  } catch (error) {
    throw ioError(error, lock.file);
  }
}

export interface WaitOptions extends AcquireOptions {
  /** Give up after this long (ms) with E_LOCKED naming the holder; 0 fails at once (default 1 h). */
  timeoutMs?: number;
  /** How often to look again (default 500 ms). */
  pollMs?: number;
  /** Called when the lock is found held, once per holder (its pid, command and start). */
  onWait?: (holder: LockInfo) => void;
}

/**
 * Take the lock, waiting while another live process holds it — looking again every `pollMs` —
 * instead of failing at once. A holder that dies leaves a stale lock, taken over as usual.
 * Past `timeoutMs` it fails with E_LOCKED (exit 2), naming the holder and how long it waited.
 */
export async function acquireLockWaiting(
  file: string,
  command: string,
  options: WaitOptions = {},
): Promise<Lock> {
  const timeoutMs = options.timeoutMs ?? 3_600_000;
  const pollMs = options.pollMs ?? 500;
  const started = Date.now();
  let announced: number | undefined;
  for (;;) {
    try {
      return acquireLock(file, command, options);
    } catch (error) {
      if (!ForgeError.isInstance(error) || error.code !== "E_LOCKED") throw error;
      const holder = readLock(file);
      const waited = Date.now() - started;
      if (waited >= timeoutMs) {
        if (timeoutMs === 0 || !holder) throw error;
        throw new ForgeError(
          "E_LOCKED",
          `${options.what ?? file} is still held by another forge process after ${(waited / 1000).toFixed(0)} s: pid ${holder.pid} (${holder.command}, since ${holder.startedAt}); wait longer (a longer timeout) or stop it`,
        );
      }
      if (holder && holder.pid !== announced) {
        announced = holder.pid;
        options.onWait?.(holder);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, timeoutMs - waited)));
    }
  }
}
