/**
 * One `forge run` at a time per repository: a lock file created exclusively, holding the
 * holder's pid. A lock whose process is gone (killed, crashed) is stale and taken over.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { RecipeError } from "./errors.js";

export interface LockInfo {
  pid: number;
  startedAt: string;
  command: string;
}

export interface Lock {
  file: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function readLock(file: string): LockInfo | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as LockInfo;
  } catch {
    return undefined;
  }
}

/**
 * Take the lock or throw E_LOCKED naming the holder. `adopt` takes over a live holder's lock
 * when it returns true (a detached job adopting the lock its parent took for it).
 */
export function acquireLock(
  file: string,
  command: string,
  options: { pid?: number; adopt?: (holder: LockInfo) => boolean } = {},
): Lock {
  const pid = options.pid ?? process.pid;
  mkdirSync(path.dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, JSON.stringify({ pid, startedAt: new Date().toISOString(), command }));
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
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = readLock(file);
      if (holder && alive(holder.pid) && !options.adopt?.(holder))
        throw new RecipeError(
          "E_LOCKED",
          `another forge run holds this repository: pid ${holder.pid} (${holder.command}, since ${holder.startedAt}); wait for it, or remove ${file} if that process is gone`,
        );
      rmSync(file, { force: true }); // stale (its process is gone) or adopted
    }
  }
  throw new RecipeError("E_LOCKED", `could not take the lock ${file}`);
}

/** Hand a lock to another process (a detached bake): rewrite the holder's pid. */
export function transferLock(lock: Lock, pid: number, command: string): void {
  const info: LockInfo = { pid, startedAt: new Date().toISOString(), command };
  const fd = openSync(lock.file, "w");
  writeSync(fd, JSON.stringify(info));
  closeSync(fd);
}
