/**
 * The built package as a user gets it (`dist/`, built before tests run): `@forge/git-recipe`
 * offers the curated public API and `@forge/git-recipe/internal` the plumbing, no name is in
 * both, both resolve by name through the `exports` map, and every value their declarations
 * promise exists at runtime.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = path.join(packageDir, "dist");

/** What a user of bake repositories reaches for (the README's API section). */
const PUBLIC = [
  "BAKE_LOSSES",
  "BakeRepo",
  "HOOKS",
  "INPUT_FILE",
  "INPUT_TEMPLATE",
  "ModelStore",
  "OPERATIONS",
  "RECIPE_FILE",
  "RecipeError",
  "STATE_FILE",
  "analyseRepository",
  "buildTree",
  "commitText",
  "defaultStoreRoot",
  "formatTree",
  "languageOf",
  "parseInput",
  "parseModelId",
  "runHook",
  "scrapeHistory",
  "windows",
].sort();

/** The plumbing under it. */
const INTERNAL = [
  "MERGE_DRIVER",
  "NAME_PATTERN",
  "checkName",
  "clearedInput",
  "complexityScore",
  "digestDirectory",
  "formatRecipe",
  "formatState",
  "parseRecipe",
  "parseState",
  "parseTrailers",
  "sectionHashes",
  "stableJson",
  "summariseLosses",
].sort();

/** The names a declaration file exports as values (not types), as TypeScript reads them. */

describe("the package's two entry points", () => {
  it("resolve by name through the exports map, to the public API and the plumbing", () => {
    const manifest = JSON.parse(readFileSync(path.join(packageDir, "package.json"), "utf8"));
    expect(Object.keys(manifest.exports).sort()).toEqual([".", "./internal", "./package.json"]);
    for (const entry of [".", "./internal"])
      for (const condition of ["types", "import"]) {
        const file = path.join(packageDir, manifest.exports[entry][condition]);
        expect(existsSync(file), `${entry} ${condition}: ${file}`).toBe(true);
      }
    // a fresh node inside the package imports it by its own name, as a dependent would
    const out = execFileSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const names = async (m) => Object.keys(await import(m)).sort();
process.stdout.write(JSON.stringify([await names("@forge/git-recipe"), await names("@forge/git-recipe/internal")]));`,
      ],
      { cwd: packageDir, encoding: "utf8" },
    );
    expect(JSON.parse(out)).toEqual([PUBLIC, INTERNAL]);
  });

  it("no name is both public and internal", () => {
    expect(PUBLIC.filter((name) => INTERNAL.includes(name))).toEqual([]);
  });

  // (that each .d.ts declares exactly these values is checked for every package by CI's
  // "packages as published" step, tools/lint-packages.mjs)
  for (const entry of ["index", "internal"])
    it(`dist/${entry}.js exports exactly the ${entry === "index" ? "public" : "internal"} names`, async () => {
      const runtime = Object.keys(await import(pathToFileURL(path.join(dist, `${entry}.js`)).href))
        .filter((name) => name !== "default")
        .sort();
      expect(runtime).toEqual(entry === "index" ? PUBLIC : INTERNAL);
    });
});
