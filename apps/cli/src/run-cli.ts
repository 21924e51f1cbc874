/** Test helper: run the built CLI as a real child process. */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const FORGE = fileURLToPath(new URL("../dist/forge.js", import.meta.url));

/** Where a run without a `cwd` works: never the checkout, so caches and reports stay out of it. */
let scratch: string | undefined;
const scratchDir = () => {
  if (scratch === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "forge-cli-cwd-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    scratch = dir;
  }
  return scratch;
};

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function forge(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
  cwd?: string,
): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [FORGE, ...args],
      {
        env: { ...process.env, NO_COLOR: "1", FORGE_BACKEND: "", ...env },
        cwd: cwd ?? scratchDir(),
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 3) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input ?? "");
  });
}

/** A CLI child process still running: its pid, its stderr so far, and its end. */
export interface RunningForge {
  pid: number;
  /** Resolves when stderr (so far) matches — rejects if the process ends first. */
  stderrMatches(pattern: RegExp): Promise<void>;
  done: Promise<Run>;
}

/** Start the built CLI as a child process without waiting for it (two at once, say). */
export function startForge(args: string[], env: Record<string, string> = {}): RunningForge {
  const child = spawn(process.execPath, [FORGE, ...args], {
    env: { ...process.env, NO_COLOR: "1", FORGE_BACKEND: "", ...env },
    cwd: scratchDir(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let ended: number | null | undefined;
  const watchers: { pattern: RegExp; resolve: () => void; reject: (e: Error) => void }[] = [];
  const check = () => {
    for (const w of [...watchers])
      if (w.pattern.test(stderr)) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve();
      }
  };
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    check();
  });
  const done = new Promise<Run>((resolve) => {
    child.on("close", (code) => {
      ended = code;
      for (const w of watchers.splice(0))
        w.reject(
          new Error(
            `the process ended (exit ${code}) before stderr matched ${w.pattern}:\n${stderr}`,
          ),
        );
      resolve({ code: code ?? 3, stdout, stderr });
    });
  });
  return {
    pid: child.pid!,
    done,
    stderrMatches: (pattern) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(stderr)) return resolve();
        if (ended !== undefined)
          return reject(
            new Error(
              `the process ended (exit ${ended}) before stderr matched ${pattern}:\n${stderr}`,
            ),
          );
        watchers.push({ pattern, resolve, reject });
      }),
  };
}
