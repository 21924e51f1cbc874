#!/usr/bin/env node
// The release flow, rehearsed on a scratch copy (the repository itself is never changed).
//
//   node tools/release-check.mjs   (needs a build: the dry-run publish packs dist/)
//
// 1. Copies the workspace's release inputs — root package.json, pnpm-workspace.yaml,
//    .changeset/, LICENSE and each package folder (without node_modules) — into a temp
//    directory, as one commit of a fresh git repository on the base branch.
// 2. `changeset version` there, then checks: every package a changeset names moved to exactly
//    the version its highest bump gives; any other package that moved is a patch bump (an
//    internal dependency moved); every package that moved has a "## <version>" section in its
//    CHANGELOG.md holding the first line of each of its changesets; no changeset is left.
// 3. `pnpm -r publish --dry-run --no-git-checks` there: it must succeed and name every public
//    package at its new version (tools/lint-packages.mjs checks what the tarballs hold).
// With no pending changeset, step 2 checks that `changeset version` changes nothing.
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { isMain, PNPM, publicPackages, readJson, root, seconds } from "./lib/workspace.mjs";

const BUMPS = ["patch", "minor", "major"];

/** The version `bump` gives; 0.x minors and majors follow semver (no special 0.x rule). */
export function bumpVersion(version, bump) {
  const match = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!match) throw new Error(`cannot bump a pre-release or odd version: ${version}`);
  const [major, minor, patch] = match.slice(1).map(Number);
  if (bump === "major") return `${major + 1}.0.0`;
  if (bump === "minor") return `${major}.${minor + 1}.0`;
  if (bump === "patch") return `${major}.${minor}.${patch + 1}`;
  throw new Error(`unknown bump ${bump}`);
}

/** A changeset file's releases ({ name: bump }) and its summary. */
export function parseChangeset(text, file) {
  const match = /^---\n([\s\S]*?)\n?---\n([\s\S]*)$/.exec(text);
  if (!match) throw new Error(`${file}: no front matter`);
  const releases = {};
  for (const line of match[1].split("\n")) {
    if (!line.trim()) continue;
    const release = /^\s*["']?([^"':]+)["']?\s*:\s*(patch|minor|major)\s*$/.exec(line);
    if (!release) throw new Error(`${file}: cannot read "${line}"`);
    releases[release[1]] = release[2];
  }
  return { releases, summary: match[2].trim() };
}

function pendingChangesets(directory) {
  const folder = path.join(directory, ".changeset");
  return readdirSync(folder)
    .filter((file) => file.endsWith(".md") && file !== "README.md")
    .map((file) => ({
      file,
      ...parseChangeset(readFileSync(path.join(folder, file), "utf8"), file),
    }));
}

function run(command, args, cwd) {
  try {
    return execFileSync(command, args, {
      cwd,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (error) {
    throw new Error(
      `${[command, ...args].join(" ")} failed in ${cwd}:\n${error.stdout ?? ""}${error.stderr ?? ""}`,
    );
  }
}

function copyWorkspace(scratch) {
  for (const file of ["package.json", "pnpm-workspace.yaml", "LICENSE", ".changeset"]) {
    cpSync(path.join(root, file), path.join(scratch, file), { recursive: true });
  }
  for (const pkg of publicPackages()) {
    cpSync(pkg.absolute, path.join(scratch, pkg.dir), {
      recursive: true,
      filter: (source) => !/[/\\](node_modules|\.turbo)([/\\]|$)/.test(source),
    });
  }
  const baseBranch = readJson(path.join(root, ".changeset/config.json")).baseBranch;
  const git = (...args) =>
    run("git", ["-c", "user.name=forge ci", "-c", "user.email=ci@forge.invalid", ...args], scratch);
  git("init", "-q", "-b", baseBranch);
  git("add", "-A");
  git("commit", "-q", "-m", "release rehearsal");
}

function checkVersioning(scratch, problems) {
  const changesets = pendingChangesets(scratch);
  const before = new Map(publicPackages(scratch).map((pkg) => [pkg.name, pkg.manifest.version]));
  const planned = new Map();
  for (const changeset of changesets) {
    for (const [name, bump] of Object.entries(changeset.releases)) {
      if (!before.has(name)) problems.push(`${changeset.file} names ${name}, not a public package`);
      const previous = planned.get(name);
      if (!previous || BUMPS.indexOf(bump) > BUMPS.indexOf(previous)) planned.set(name, bump);
    }
  }
  // changeset resolves its changelog module from the project: lend it the repository's
  const modules = path.join(scratch, "node_modules");
  symlinkSync(path.join(root, "node_modules"), modules, "dir");
  try {
    run(path.join(root, "node_modules/.bin/changeset"), ["version"], scratch);
  } finally {
    unlinkSync(modules);
  }
  const left = pendingChangesets(scratch);
  if (left.length > 0)
    problems.push(`changesets left after version: ${left.map((c) => c.file).join(", ")}`);

  const moved = [];
  for (const pkg of publicPackages(scratch)) {
    const old = before.get(pkg.name);
    const now = pkg.manifest.version;
    const bump = planned.get(pkg.name);
    if (bump && now !== bumpVersion(old, bump)) {
      problems.push(`${pkg.name}: ${old} -> ${now}, expected ${bumpVersion(old, bump)} (${bump})`);
    }
    if (!bump && now !== old && now !== bumpVersion(old, "patch")) {
      problems.push(
        `${pkg.name}: not in a changeset, yet moved ${old} -> ${now} (more than a patch)`,
      );
    }
    if (now === old) continue;
    moved.push(`${pkg.name} ${old} -> ${now}`);
    const changelog = path.join(pkg.absolute, "CHANGELOG.md");
    const text = existsSync(changelog) ? readFileSync(changelog, "utf8") : "";
    const section = text.split(new RegExp(`^## ${now.replace(/\./g, "\\.")}$`, "m"))[1];
    if (section === undefined) {
      problems.push(`${pkg.name}: CHANGELOG.md has no "## ${now}" section`);
      continue;
    }
    const body = section.split(/^## /m)[0];
    for (const changeset of changesets) {
      if (!changeset.releases[pkg.name]) continue;
      const firstLine = changeset.summary.split("\n")[0];
      if (!body.includes(firstLine)) {
        problems.push(`${pkg.name}: CHANGELOG.md ${now} lacks ${changeset.file}: "${firstLine}"`);
      }
    }
  }
  return { changesets: changesets.length, moved };
}

/**
 * Links each package's workspace dependencies into its node_modules, as `pnpm install` would:
 * pnpm publish reads a `workspace:` dependency's version through that link. Nothing else is
 * installed — packing needs no third-party code.
 */
function linkWorkspaceDependencies(scratch) {
  const packages = publicPackages(scratch);
  const byName = new Map(packages.map((pkg) => [pkg.name, pkg]));
  for (const pkg of packages) {
    for (const field of [
      "dependencies",
      "devDependencies",
      "optionalDependencies",
      "peerDependencies",
    ]) {
      for (const [name, range] of Object.entries(pkg.manifest[field] ?? {})) {
        if (!String(range).startsWith("workspace:")) continue;
        const target = byName.get(name);
        if (!target)
          throw new Error(`${pkg.name} ${field}.${name} is ${range}, but no such package`);
        const link = path.join(pkg.absolute, "node_modules", name);
        if (existsSync(link)) continue;
        mkdirSync(path.dirname(link), { recursive: true });
        symlinkSync(path.relative(path.dirname(link), target.absolute), link, "dir");
      }
    }
  }
}

function checkPublish(scratch, problems) {
  const [command, prefix] = PNPM;
  linkWorkspaceDependencies(scratch);
  let output;
  try {
    output = run(
      command,
      [...prefix, "-r", "publish", "--dry-run", "--no-git-checks", "--report-summary"],
      scratch,
    );
  } catch (error) {
    problems.push(error.message);
    return [];
  }
  const summaryFile = path.join(scratch, "pnpm-publish-summary.json");
  const summary = existsSync(summaryFile) ? readJson(summaryFile) : { publishedPackages: [] };
  const published = new Set(summary.publishedPackages.map((p) => `${p.name}@${p.version}`));
  const names = [];
  for (const pkg of publicPackages(scratch)) {
    const id = `${pkg.name}@${pkg.manifest.version}`;
    names.push(id);
    if (!published.has(id) && !output.includes(id)) {
      problems.push(`pnpm publish --dry-run did not publish ${id}:\n${output.slice(-3000)}`);
    }
  }
  return names;
}

function main() {
  const started = Date.now();
  const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-release-"));
  const problems = [];
  try {
    copyWorkspace(scratch);
    const versioned = checkVersioning(scratch, problems);
    console.log(
      `changeset version: ${versioned.changesets} changesets; ${versioned.moved.length ? versioned.moved.join(", ") : "no version moved"} (${seconds(Date.now() - started)})`,
    );
    const publishStarted = Date.now();
    const published = checkPublish(scratch, problems);
    console.log(
      `pnpm -r publish --dry-run: ${published.join(", ")} (${seconds(Date.now() - publishStarted)})`,
    );
  } catch (error) {
    problems.push(error.stack ?? String(error));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  for (const problem of problems) console.error(`FAIL release: ${problem}`);
  console.log(
    `release-check: ${problems.length ? "FAILED" : "ok"} (${seconds(Date.now() - started)})`,
  );
  process.exitCode = problems.length ? 1 : 0;
}

if (isMain(import.meta.url)) main();
