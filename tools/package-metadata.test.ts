/**
 * The publishing-metadata check finds what it claims to find: each rule is broken once on a
 * copy of a real package's manifest and must be reported; `--write`'s fix must then pass.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, vi } from "vitest";
import { KNOWN_PROBLEMS, settle } from "./lib/problems.mjs";
import { publicPackages } from "./lib/workspace.mjs";
import {
  checkPackage,
  checkReadme,
  derivedFields,
  fixPackage,
  webAddress,
} from "./package-metadata.mjs";

type Manifest = Record<string, unknown> & { name: string };
interface Package {
  name: string;
  dir: string;
  absolute: string;
  manifest: Manifest;
}
interface Problem {
  check: string;
  package: string;
  message: string;
}

const root = path.resolve(fileURLToPath(import.meta.url), "../..");
const rootManifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
const rootLicense = readFileSync(path.join(root, "LICENSE"), "utf8");
const packages: Package[] = publicPackages();
const core = packages.find((pkg) => pkg.name === "@forge/core")!;

function problemsOf(manifest: Manifest): string[] {
  const pkg = { ...core, manifest };
  return (checkPackage(pkg, rootManifest, rootLicense, "main") as Problem[])
    .filter((problem) => problem.check === "metadata")
    .map((problem) => problem.message);
}

describe("package metadata", () => {
  it("every public package passes as committed", () => {
    for (const pkg of packages) {
      const problems = (checkPackage(pkg, rootManifest, rootLicense, "main") as Problem[]).filter(
        (problem) => problem.check === "metadata",
      );
      expect(problems, pkg.name).toEqual([]);
    }
  });

  it("derives repository, homepage and bugs from the root package.json", () => {
    expect(webAddress("git+https://github.com/owner/name.git")).toBe(
      "https://github.com/owner/name",
    );
    expect(() => webAddress("git@github.com:owner/name.git")).toThrow(/https git URL/);
    const fields = derivedFields(
      { ...rootManifest, repository: { type: "git", url: "git+https://example.org/a/b.git" } },
      "packages/core",
      "trunk",
    );
    expect(fields.repository).toEqual({
      type: "git",
      url: "git+https://example.org/a/b.git",
      directory: "packages/core",
    });
    expect(fields.homepage).toBe("https://example.org/a/b/tree/trunk/packages/core#readme");
  });

  it("reports each broken rule", () => {
    const good = core.manifest;
    expect(problemsOf(good)).toEqual([]);
    const exportsWithoutDefault = {
      ...good,
      exports: { ".": { types: "./dist/index.d.ts", import: "./dist/index.js" } },
    };
    expect(problemsOf(exportsWithoutDefault).join("\n")).toMatch(/needs "default"/);
    const typesLast = {
      ...good,
      exports: {
        ".": { import: "./dist/index.js", types: "./dist/index.d.ts", default: "./dist/index.js" },
      },
    };
    expect(problemsOf(typesLast).join("\n")).toMatch(/"types" must come first/);
    expect(problemsOf({ ...good, files: ["dist"] }).join("\n")).toMatch(/files must start with/);
    expect(
      problemsOf({ ...good, files: [...(good.files as string[]), "nope.json"] }).join("\n"),
    ).toMatch(/files lists nope.json/);
    expect(problemsOf({ ...good, keywords: ["one"] }).join("\n")).toMatch(/at least three/);
    expect(problemsOf({ ...good, keywords: ["a", "B C", "a"] }).join("\n")).toMatch(/lowercase/);
    expect(problemsOf({ ...good, repository: "forge/forge" }).join("\n")).toMatch(/repository is/);
    expect(problemsOf({ ...good, homepage: undefined }).join("\n")).toMatch(
      /homepage is undefined/,
    );
    expect(problemsOf({ ...good, publishConfig: {} }).join("\n")).toMatch(/publishConfig.access/);
  });

  it("--write's fix passes the check and keeps types first, default last", () => {
    const broken: Manifest = {
      name: core.name,
      version: "0.0.0",
      description: "x",
      keywords: core.manifest.keywords,
      type: "module",
      engines: rootManifest.engines,
      exports: {
        ".": { types: "./dist/index.d.ts", import: "./dist/index.js" },
        "./package.json": "./package.json",
      },
      files: ["dist", "extra"],
    };
    const fixed = fixPackage({ ...core, manifest: broken }, rootManifest, "main");
    expect(Object.keys(fixed.exports["."])).toEqual(["types", "import", "default"]);
    expect(fixed.exports["./package.json"]).toBe("./package.json");
    expect(fixed.files).toEqual(["dist", "README.md", "CHANGELOG.md", "LICENSE", "extra"]);
    expect(Object.keys(fixed).slice(0, 9)).toEqual([
      "name",
      "version",
      "description",
      "keywords",
      "homepage",
      "bugs",
      "repository",
      "license",
      "author",
    ]);
    const remaining = problemsOf({ ...fixed, files: fixed.files.slice(0, 4) });
    expect(remaining).toEqual([]);
  });
});

describe("README top", () => {
  const library = {
    ...core,
    name: "@forge/x",
    manifest: { name: "@forge/x", exports: { ".": {} } },
  };
  const cli = { ...core, name: "@forge/y", manifest: { name: "@forge/y", bin: { y: "./y.js" } } };
  const messages = (pkg: Package, text: string) =>
    (checkReadme(pkg, text) as Problem[]).map((problem) => problem.message).join("\n");

  it("wants the install line and ESM only before the first section", () => {
    const good = "# @forge/x\n\nText.\n\n```sh\nnpm i @forge/x\n```\n\nESM only: …\n\n## Use\n";
    expect(messages(library, good)).toBe("");
    expect(messages(library, good.replace("npm i @forge/x", "npm i @forge/xy"))).toMatch(
      /npm i @forge\/x/,
    );
    expect(messages(library, good.replace("ESM only", "ES modules"))).toMatch(/ESM only/);
    const late = "# @forge/x\n\n## Install\n\n```sh\nnpm i @forge/x\n```\n\nESM only.\n";
    expect(messages(library, late)).toMatch(/before its first section/);
  });

  it("wants a global install for a package with a bin, and no ESM sentence", () => {
    expect(messages(cli, "# y (CLI)\n\n```sh\nnpm i -g @forge/y\n```\n")).toBe("");
    expect(messages(cli, "# y (CLI)\n\n```sh\nnpm i @forge/y\n```\n")).toMatch(/npm i -g/);
  });
});

describe("known problems", () => {
  const known = [
    { check: "readme", package: "@forge/eval", why: "being rewritten" },
    {
      check: "pack",
      package: "d",
      entry: "one tfjs-core",
      message: /4\.22\.0/,
      why: "waiting for the peer range",
    },
  ];
  const readmeOnly = { known, inScope: (entry: { check: string }) => entry.check === "readme" };
  const packOnly = { known, inScope: (entry: { check: string }) => entry.check === "pack" };

  it("a known problem does not fail; an unknown one does; a known one that went away does", () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const problem = { check: "readme", package: "@forge/eval", message: "no install line" };
      expect(settle([problem], ["readme"], readmeOnly)).toBe(0);
      expect(
        settle([problem, { ...problem, package: "@forge/core" }], ["readme"], readmeOnly),
      ).toBe(1);
      expect(settle([], ["readme"], readmeOnly)).toBe(1);
      expect(error.mock.calls.flat().join("\n")).toMatch(/no longer occurs/);
      expect(settle([problem], ["readme"], { ...readmeOnly, strict: true })).toBe(1);
      // a known check failing for another reason than the recorded one still fails
      error.mockClear();
      const pack = { check: "pack", package: "d", entry: "one tfjs-core" };
      expect(settle([{ ...pack, message: "4.22.0 at node_modules" }], ["pack"], packOnly)).toBe(0);
      expect(settle([{ ...pack, message: "4.21.0 twice" }], ["pack"], packOnly)).toBe(1);
      expect(error.mock.calls.flat().join("\n")).toMatch(/FAIL pack: d one tfjs-core/);
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  });

  it("none is recorded without saying why", () => {
    for (const entry of KNOWN_PROBLEMS) expect(entry.why.length).toBeGreaterThan(10);
  });
});
