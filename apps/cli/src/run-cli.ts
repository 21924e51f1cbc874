/** Test helper: run the built CLI as a real child process. */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

const FORGE = fileURLToPath(new URL("../dist/forge.js", import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function forge(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [FORGE, ...args],
      { env: { ...process.env, NO_COLOR: "1", FORGE_BACKEND: "", ...env } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 3) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input ?? "");
  });
}
