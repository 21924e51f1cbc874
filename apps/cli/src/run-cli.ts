/** Test helper: run the built CLI as a real child process. */
import { execFile } from "node:child_process";
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
