/**
 * The built package as a user gets it (`dist/`, built before tests run): it loads without
 * TensorFlow, its dependencies never lead to TensorFlow, and every value its declarations
 * promise exists at runtime.
 */
import { execFile } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = path.join(packageDir, "dist");
const FORBIDDEN =
  /@tensorflow|@forge\/model|@forge\/tokenizer|[\\/]packages[\\/](model|tokenizer)[\\/]/;

const tmp = mkdtempSync(path.join(os.tmpdir(), "forge-eval-dist-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("@forge/eval loads without TensorFlow", () => {
  it("importing both entries in a fresh node loads no module from @tensorflow, @forge/model or @forge/tokenizer", async () => {
    // A resolve hook records every module node resolves (ESM); require.cache gives the
    // CommonJS ones a dependency might load with require().
    const log = path.join(tmp, "resolved.log");
    const hooks = path.join(tmp, "hooks.mjs");
    writeFileSync(
      hooks,
      `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, result.url + "\\n");
  return result;
}
`,
    );
    const register = path.join(tmp, "register.mjs");
    writeFileSync(
      register,
      `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
    );
    const script = path.join(tmp, "load.mjs");
    writeFileSync(
      script,
      `import { createRequire } from "node:module";
const index = await import(${JSON.stringify(pathToFileURL(path.join(dist, "index.js")).href)});
const stats = await import(${JSON.stringify(pathToFileURL(path.join(dist, "stats.js")).href)});
if (typeof index.runTasks !== "function" || typeof stats.compareResults !== "function") process.exit(5);
const require = createRequire(import.meta.url);
process.stdout.write(JSON.stringify(Object.keys(require.cache)));
`,
    );
    const { code, stdout, stderr } = await new Promise<{
      code: number;
      stdout: string;
      stderr: string;
    }>((resolve) =>
      execFile(
        process.execPath,
        ["--import", pathToFileURL(register).href, script],
        { cwd: tmp, timeout: 120_000 },
        (error, out, err) =>
          resolve({ code: error ? Number(error.code ?? 1) : 0, stdout: out, stderr: err }),
      ),
    );
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const loaded = [
      ...readFileSync(log, "utf8").split("\n").filter(Boolean),
      ...(JSON.parse(stdout) as string[]),
    ];
    expect(loaded.some((url) => url.includes("/dist/index.js"))).toBe(true);
    expect(loaded.some((url) => url.includes("jstat"))).toBe(true); // the log sees dependencies
    expect(loaded.filter((url) => FORBIDDEN.test(url))).toEqual([]);
  });

  it("depends on @forge/core, jstat and yaml only, and nothing they depend on is TensorFlow", () => {
    const manifest = JSON.parse(readFileSync(path.join(packageDir, "package.json"), "utf8"));
    expect(Object.keys(manifest.dependencies).sort()).toEqual(["@forge/core", "jstat", "yaml"]);
    expect(manifest.peerDependencies ?? {}).toEqual({});
    expect(manifest.optionalDependencies ?? {}).toEqual({});
    // The installed closure: every dependency (optional and required peers too: npm installs
    // those) of every package reached, found the way node finds it.
    const find = (from: string, name: string): string | undefined => {
      for (let dir = from; ; dir = path.dirname(dir)) {
        const candidate = path.join(dir, "node_modules", name, "package.json");
        if (existsSync(candidate)) return realpathSync(path.dirname(candidate));
        if (path.dirname(dir) === dir) return undefined;
      }
    };
    const reached = new Map<string, string>();
    const visit = (dir: string) => {
      const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
      const optionalPeers = new Set(
        Object.entries(pkg.peerDependenciesMeta ?? {})
          .filter(([, meta]) => (meta as { optional?: boolean }).optional)
          .map(([name]) => name),
      );
      const names = [
        ...Object.keys(pkg.dependencies ?? {}),
        ...Object.keys(pkg.optionalDependencies ?? {}),
        ...Object.keys(pkg.peerDependencies ?? {}).filter((name) => !optionalPeers.has(name)),
      ];
      for (const name of names) {
        const found = find(dir, name);
        if (!found || reached.has(found)) continue;
        reached.set(found, name);
        visit(found);
      }
    };
    visit(packageDir);
    const names = [...new Set(reached.values())].sort();
    expect(names).toContain("@forge/core");
    expect(names).toContain("jstat");
    expect(names.filter((name) => FORBIDDEN.test(name))).toEqual([]);
  });
});

/** The names a declaration file exports as values (not types), as TypeScript reads them. */

// That each .d.ts declares exactly what its .js exports (the phantom `/stats` names) is checked
// for every package by CI's "packages as published" step (tools/lint-packages.mjs).
describe("@forge/eval/stats", () => {
  it("@forge/eval/stats still offers what CI pipelines import from it", async () => {
    const stats = await import(pathToFileURL(path.join(dist, "stats.js")).href);
    for (const name of [
      "compareResults",
      "readResults",
      "evaluateGates",
      "forgettingFromResults",
      "toJUnit",
      "toMarkdown",
      "toHtml",
      "pairedComparison",
      "mcnemar",
      "binomialTwoSided",
      "holmBonferroni",
      "EvaluationError",
    ])
      expect(typeof stats[name], name).toBe("function");
  });
});
