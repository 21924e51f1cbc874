// The workspace as the release tools see it: the root manifest and every package that
// pnpm-workspace.yaml lists. Plain Node, no dependencies, so every tool script can use it.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(fileURLToPath(import.meta.url), "../../..");

export function readJson(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

export function writeJson(file, value) {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** The `packages:` globs of pnpm-workspace.yaml; only `dir/*` and plain directories occur. */
function workspaceGlobs(directory) {
  const text = readFileSync(path.join(directory, "pnpm-workspace.yaml"), "utf8");
  const globs = [];
  let inPackages = false;
  for (const line of text.split("\n")) {
    if (/^packages:\s*$/.test(line)) {
      inPackages = true;
      continue;
    }
    if (inPackages) {
      const item = /^\s+-\s+["']?([^"'\s#]+)["']?/.exec(line);
      if (item) globs.push(item[1]);
      else if (/^\S/.test(line)) inPackages = false;
    }
  }
  if (globs.length === 0) throw new Error("pnpm-workspace.yaml lists no packages");
  return globs;
}

/**
 * Every workspace package: { name, dir (relative, forward slashes), absolute, manifest }.
 * Sorted by directory. `directory` defaults to the repository root.
 */
export function workspacePackages(directory = root) {
  const packages = [];
  for (const glob of workspaceGlobs(directory)) {
    let dirs;
    if (glob.endsWith("/*")) {
      const parent = glob.slice(0, -2);
      if (parent.includes("*")) throw new Error(`unsupported workspace glob ${glob}`);
      const absoluteParent = path.join(directory, parent);
      dirs = existsSync(absoluteParent)
        ? readdirSync(absoluteParent, { withFileTypes: true })
            .filter((entry) => entry.isDirectory())
            .map((entry) => `${parent}/${entry.name}`)
        : [];
    } else if (!glob.includes("*")) {
      dirs = [glob];
    } else {
      throw new Error(`unsupported workspace glob ${glob}`);
    }
    for (const dir of dirs) {
      const manifestPath = path.join(directory, dir, "package.json");
      if (!existsSync(manifestPath)) continue;
      packages.push({
        name: readJson(manifestPath).name,
        dir,
        absolute: path.join(directory, dir),
        manifestPath,
        manifest: readJson(manifestPath),
      });
    }
  }
  return packages.sort((a, b) => a.dir.localeCompare(b.dir));
}

/** The packages that get published (everything not marked private). */
export function publicPackages(directory = root) {
  return workspacePackages(directory).filter((pkg) => pkg.manifest.private !== true);
}

/** pnpm as .ci/run runs it: `npx -y pnpm@10` (no global pnpm is assumed). */
export const PNPM = ["npx", ["-y", "pnpm@10"]];

export function runPnpm(args, options = {}) {
  const [command, prefix] = PNPM;
  return execFileSync(command, [...prefix, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    ...options,
  });
}

/** A readable duration for the timing lines the tools print. */
export function seconds(milliseconds) {
  return `${(milliseconds / 1000).toFixed(1)} s`;
}

/** True when the module at `moduleUrl` is the script Node was started with. */
export function isMain(moduleUrl) {
  return Boolean(process.argv[1]) && path.resolve(process.argv[1]) === fileURLToPath(moduleUrl);
}
