/**
 * Every package README's TypeScript example runs as written: the first ```ts block is saved
 * inside the package (so "@forge/<name>" resolves to the built package) and run with tsx in a
 * child process.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(fileURLToPath(import.meta.url), "../..");
const tsx = path.join(root, "node_modules/.bin/tsx");

const packages = readdirSync(path.join(root, "packages")).map((name) =>
  path.join(root, "packages", name),
);

function firstTypeScriptBlock(markdown: string): string | undefined {
  return /```ts\n([\s\S]*?)```/.exec(markdown)?.[1];
}

describe("README examples", () => {
  for (const dir of packages) {
    const readme = readFileSync(path.join(dir, "README.md"), "utf8");
    const example = firstTypeScriptBlock(readme);
    it(`${path.basename(dir)}/README.md has a TypeScript example that runs`, async () => {
      expect(example, "README.md needs a ```ts example").toBeDefined();
      const file = path.join(dir, `.readme-example-${process.pid}.ts`);
      writeFileSync(file, example!);
      try {
        const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
          execFile(tsx, [file], { cwd: dir }, (error, _stdout, stderr) =>
            resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
          );
        });
        expect(result.stderr).toBe("");
        expect(result.code).toBe(0);
      } finally {
        rmSync(file, { force: true });
      }
    });
  }
});
