#!/usr/bin/env node
// Every public package's publishing metadata, derived from one place and checked.
//
//   node tools/package-metadata.mjs          check; exit 1 naming each difference
//   node tools/package-metadata.mjs --write  rewrite what is derived, then check
//
// The root package.json holds the project's home: `repository.url`, `homepage`, `bugs`,
// `license`, `author`, `engines`. Each package gets the same license, author, bugs and
// engines, its own `repository.directory`, and a homepage pointing at its folder on the
// changesets base branch. `--write` also copies the root LICENSE into each package (a
// committed copy: it ships with any packer — pnpm, npm, yarn — without a lifecycle script),
// adds a `default` condition beside every `import` condition (Node >= 20.19 require()s
// ES modules), and puts dist, README.md, CHANGELOG.md and LICENSE first in `files`.
// Keywords and README lines are written by people; they are only checked.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { settle } from "./lib/problems.mjs";
import { isMain, publicPackages, readJson, root, writeJson } from "./lib/workspace.mjs";

const BASE_FILES = ["dist", "README.md", "CHANGELOG.md", "LICENSE"];
// Where a missing key goes: after the last of these that the manifest has.
const KEY_ORDER = [
  "name",
  "version",
  "description",
  "keywords",
  "homepage",
  "bugs",
  "repository",
  "license",
  "author",
];

/** The web address of a git URL: git+https://host/owner/name.git -> https://host/owner/name. */
export function webAddress(url) {
  const match = /^(?:git\+)?(https:\/\/[^/]+\/[^/]+\/[^/]+?)(?:\.git)?\/?$/.exec(url);
  if (!match) throw new Error(`root package.json repository.url is not an https git URL: ${url}`);
  return match[1];
}

/** The fields every public package derives from the root manifest. */
export function derivedFields(rootManifest, dir, baseBranch) {
  const url = rootManifest.repository?.url;
  if (!url) throw new Error("root package.json has no repository.url");
  return {
    homepage: `${webAddress(url)}/tree/${baseBranch}/${dir}#readme`,
    bugs: rootManifest.bugs,
    repository: { type: "git", url, directory: dir },
    license: rootManifest.license,
    author: rootManifest.author,
  };
}

function insertKey(manifest, key, value) {
  if (key in manifest) {
    manifest[key] = value;
    return manifest;
  }
  const position = KEY_ORDER.indexOf(key);
  const after = KEY_ORDER.slice(0, position)
    .reverse()
    .find((candidate) => candidate in manifest);
  const result = {};
  if (after === undefined) result[key] = value;
  for (const [existing, existingValue] of Object.entries(manifest)) {
    result[existing] = existingValue;
    if (existing === after) result[key] = value;
  }
  return result;
}

/** Each conditional export target: [subpath, conditions object]. */
function conditionalExports(exportsField) {
  if (!exportsField || typeof exportsField !== "object") return [];
  return Object.entries(exportsField).filter(
    ([, target]) => target && typeof target === "object" && !Array.isArray(target),
  );
}

/** An `import` target also under `default`, last; `types` stays first. */
function withDefaultCondition(conditions) {
  if (!("import" in conditions)) return conditions;
  const { default: _ignored, ...rest } = conditions;
  return { ...rest, default: conditions.import };
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The problems of one package (its manifest as on disk). */
export function checkPackage(pkg, rootManifest, rootLicense, baseBranch) {
  const problems = [];
  const report = (check, message) => problems.push({ check, package: pkg.name, message });
  const manifest = pkg.manifest;

  for (const [key, value] of Object.entries(derivedFields(rootManifest, pkg.dir, baseBranch))) {
    if (!same(manifest[key], value)) {
      report(
        "metadata",
        `${key} is ${JSON.stringify(manifest[key])}, expected ${JSON.stringify(value)} (run node tools/package-metadata.mjs --write)`,
      );
    }
  }
  if (manifest.type !== "module") report("metadata", `type is ${manifest.type}, expected "module"`);
  if (!same(manifest.engines, rootManifest.engines)) {
    report("metadata", `engines ${JSON.stringify(manifest.engines)} differ from the root's`);
  }
  if (manifest.publishConfig?.access !== "public") {
    report(
      "metadata",
      'publishConfig.access must be "public" (a scoped package is private by default)',
    );
  }

  const keywords = manifest.keywords;
  if (!Array.isArray(keywords) || keywords.length < 3) {
    report("metadata", "keywords: at least three, written for this package");
  } else {
    const bad = keywords.filter(
      (word) => typeof word !== "string" || !/^[a-z0-9][a-z0-9.-]*$/.test(word),
    );
    if (bad.length > 0) report("metadata", `keywords must be lowercase words: ${bad.join(", ")}`);
    if (new Set(keywords).size !== keywords.length) report("metadata", "keywords repeat");
  }

  const files = manifest.files ?? [];
  if (!same(files.slice(0, BASE_FILES.length), BASE_FILES)) {
    report(
      "metadata",
      `files must start with ${JSON.stringify(BASE_FILES)}, is ${JSON.stringify(files)}`,
    );
  }
  for (const entry of files) {
    if (entry === "dist" || /[*?]/.test(entry)) continue;
    if (!existsSync(path.join(pkg.absolute, entry))) {
      report("metadata", `files lists ${entry}, which does not exist in ${pkg.dir}`);
    }
  }

  const licensePath = path.join(pkg.absolute, "LICENSE");
  if (!existsSync(licensePath)) report("metadata", `${pkg.dir}/LICENSE is missing`);
  else if (readFileSync(licensePath, "utf8") !== rootLicense) {
    report("metadata", `${pkg.dir}/LICENSE differs from the root LICENSE`);
  }
  const changelog = path.join(pkg.absolute, "CHANGELOG.md");
  if (!existsSync(changelog)) report("metadata", `${pkg.dir}/CHANGELOG.md is missing`);
  else if (!readFileSync(changelog, "utf8").startsWith(`# ${pkg.name}\n`)) {
    report("metadata", `${pkg.dir}/CHANGELOG.md must start with "# ${pkg.name}"`);
  }

  for (const [subpath, conditions] of conditionalExports(manifest.exports)) {
    const keys = Object.keys(conditions);
    if ("types" in conditions && keys[0] !== "types") {
      report("metadata", `exports["${subpath}"]: "types" must come first`);
    }
    if (
      "import" in conditions &&
      (keys.at(-1) !== "default" || conditions.default !== conditions.import)
    ) {
      report(
        "metadata",
        `exports["${subpath}"]: needs "default": ${JSON.stringify(conditions.import)} last, so require() works (Node >= 20.19)`,
      );
    }
  }

  const readmePath = path.join(pkg.absolute, "README.md");
  if (!existsSync(readmePath)) report("readme", `${pkg.dir}/README.md is missing`);
  else problems.push(...checkReadme(pkg, readFileSync(readmePath, "utf8")));
  return problems;
}

/**
 * The top of a README, before its second heading: how to install (`npm i <name>`, or
 * `npm i -g <name>` for a package with a bin), and for a library the "ESM only" statement.
 */
export function checkReadme(pkg, readme) {
  const problems = [];
  const report = (message) => problems.push({ check: "readme", package: pkg.name, message });
  const lines = readme.split("\n");
  if (lines[0] !== `# ${pkg.name}` && !(pkg.manifest.bin && lines[0].startsWith("# "))) {
    report(`README.md must start with "# ${pkg.name}"`);
  }
  const secondHeading = lines.findIndex((line, index) => index > 0 && /^#{1,6} /.test(line));
  const top = lines.slice(0, secondHeading === -1 ? lines.length : secondHeading).join("\n");
  const install = pkg.manifest.bin ? `npm i -g ${pkg.name}` : `npm i ${pkg.name}`;
  if (!new RegExp(`^${install.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}(\\s|$)`, "m").test(top)) {
    report(`README.md must show "${install}" before its first section`);
  }
  const isLibrary = Object.keys(pkg.manifest.exports ?? {}).some((key) => key !== "./package.json");
  if (isLibrary && !/\bESM only\b/.test(top)) {
    report('README.md must say "ESM only" (and how require() behaves) before its first section');
  }
  return problems;
}

/** Rewrites the derived fields of one package; returns the new manifest. */
export function fixPackage(pkg, rootManifest, baseBranch) {
  let manifest = { ...pkg.manifest };
  for (const [key, value] of Object.entries(derivedFields(rootManifest, pkg.dir, baseBranch))) {
    manifest = insertKey(manifest, key, value);
  }
  const files = (manifest.files ?? []).filter((entry) => !BASE_FILES.includes(entry));
  manifest.files = [...BASE_FILES, ...files];
  if (manifest.exports && typeof manifest.exports === "object") {
    manifest.exports = Object.fromEntries(
      Object.entries(manifest.exports).map(([subpath, target]) =>
        target && typeof target === "object"
          ? [subpath, withDefaultCondition(target)]
          : [subpath, target],
      ),
    );
  }
  manifest.publishConfig = { ...manifest.publishConfig, access: "public" };
  return manifest;
}

function main() {
  const write = process.argv.includes("--write");
  const rootManifest = readJson(path.join(root, "package.json"));
  const rootLicense = readFileSync(path.join(root, "LICENSE"), "utf8");
  const baseBranch = readJson(path.join(root, ".changeset/config.json")).baseBranch;
  const packages = publicPackages();
  if (write) {
    for (const pkg of packages) {
      writeJson(pkg.manifestPath, fixPackage(pkg, rootManifest, baseBranch));
      writeFileSync(path.join(pkg.absolute, "LICENSE"), rootLicense);
      const changelog = path.join(pkg.absolute, "CHANGELOG.md");
      if (!existsSync(changelog)) writeFileSync(changelog, `# ${pkg.name}\n`);
    }
  }
  const problems = publicPackages().flatMap((pkg) =>
    checkPackage(pkg, rootManifest, rootLicense, baseBranch),
  );
  const code = settle(problems, ["metadata", "readme"]);
  if (code === 0) {
    console.log(
      `package metadata: ${packages.length} packages consistent with the root package.json`,
    );
  }
  process.exitCode = code;
}

if (isMain(import.meta.url)) main();
