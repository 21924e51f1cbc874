#!/usr/bin/env node
// Lints every public package as it would be published — the tarball `pnpm pack` makes.
//
//   node tools/lint-packages.mjs [--tarballs DIR]   (DIR: tarballs packed already; else packs)
//
// For each package:
//   tarball       ships package.json, README.md, CHANGELOG.md, LICENSE and dist; no
//                 `workspace:` range left in it; its dist is byte-identical to the workspace's
//                 (so the checks below, which load the workspace's dist, load what ships);
//   publint       publint on the tarball, strict: any message, even a suggestion, fails;
//   attw          Are the Types Wrong on the tarball with `--profile esm-only` (the packages
//                 are ESM only: TypeScript's node16 CommonJS mode is out of scope) — for
//                 packages with type declarations;
//   declarations  per entry point, the values its .d.ts declares equal the names its JS
//                 exports (a phantom declaration passes tsc and throws in Node);
//   require       per entry point, in a child Node from inside the package (self-reference
//                 through the exports map), require() returns the very module import() does,
//                 with nothing printed (no top-level await, no warning).
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { publint } from "publint";
import { formatMessage } from "publint/utils";
import { declaredValueExports } from "./lib/declarations.mjs";
import { packAll, tarballFiles, tarballManifest, tarballName } from "./lib/pack.mjs";
import { settle } from "./lib/problems.mjs";
import { isMain, publicPackages, root, seconds } from "./lib/workspace.mjs";

const run = promisify(execFile);
const CHECKS = ["tarball", "publint", "attw", "declarations", "require"];
const REQUIRED_FILES = ["package.json", "README.md", "CHANGELOG.md", "LICENSE"];
const DEPENDENCY_FIELDS = [
  "dependencies",
  "peerDependencies",
  "optionalDependencies",
  "devDependencies",
];

/** Export subpaths whose `import` target is JavaScript: [subpath, { js, types? }]. */
export function javascriptEntries(manifest) {
  const entries = [];
  for (const [subpath, target] of Object.entries(manifest.exports ?? {})) {
    const js = typeof target === "string" ? target : (target?.import ?? target?.default);
    if (typeof js !== "string" || !/\.[cm]?js$/.test(js)) continue;
    entries.push([subpath, { js, types: typeof target === "object" ? target.types : undefined }]);
  }
  return entries;
}

function checkTarball(pkg, report) {
  const files = tarballFiles(pkg.tarball);
  for (const file of REQUIRED_FILES) {
    if (!files.includes(file)) report("tarball", `${path.basename(pkg.tarball)} lacks ${file}`);
  }
  const dist = files.filter((file) => file.startsWith("dist/"));
  if (dist.length === 0) report("tarball", "no dist/ files in the tarball");
  for (const file of dist) {
    const packed = tarballMember(pkg.tarball, file);
    let local;
    try {
      local = readFileSync(path.join(pkg.absolute, file));
    } catch {
      report("tarball", `${file} is in the tarball but not in ${pkg.dir} (stale tarball?)`);
      continue;
    }
    if (!packed.equals(local)) report("tarball", `${file} differs from ${pkg.dir}/${file}`);
  }
  const published = tarballManifest(pkg.tarball);
  for (const field of DEPENDENCY_FIELDS) {
    for (const [name, range] of Object.entries(published[field] ?? {})) {
      if (String(range).startsWith("workspace:")) {
        report("tarball", `${field}.${name} is still ${range} in the published package.json`);
      }
    }
  }
}

/** One member of a tarball, byte for byte (tar writes it to stdout). */
function tarballMember(tarball, file) {
  return execFileSync("tar", ["-xzOf", tarball, `package/${file}`], {
    maxBuffer: 512 * 1024 * 1024,
  });
}

async function checkPublint(pkg, report) {
  const tarball = readFileSync(pkg.tarball);
  const result = await publint({
    pack: {
      tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.length),
    },
    level: "suggestion",
    strict: true,
  });
  for (const message of result.messages) {
    report("publint", `${message.type}: ${formatMessage(message, result.pkg, { color: false })}`);
  }
}

async function checkAttw(pkg, report) {
  const attw = path.join(root, "node_modules/.bin/attw");
  const args = ["--profile", "esm-only", "--format", "json", "--no-color", pkg.tarball];
  let stdout;
  let failed = false;
  try {
    ({ stdout } = await run(attw, args, { maxBuffer: 64 * 1024 * 1024 }));
  } catch (error) {
    failed = true;
    stdout = error.stdout ?? "";
    if (!stdout) {
      report("attw", `attw did not run: ${error.message}`);
      return;
    }
  }
  const result = JSON.parse(stdout);
  // esm-only ignores node10 and node16-cjs resolution; the exit code follows the profile
  const ignored = new Set(["node10", "node16-cjs"]);
  const problems = Object.values(result.problems ?? {})
    .flat()
    .filter((problem) => !ignored.has(problem.resolutionKind));
  for (const problem of problems) {
    report(
      "attw",
      `${problem.kind} at ${problem.entrypoint ?? "?"} (${problem.resolutionKind ?? "all"})`,
    );
  }
  if (failed && problems.length === 0) report("attw", `attw failed:\n${stdout.slice(0, 2000)}`);
}

const PROBE = `
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
const [dir, ...specifiers] = process.argv.slice(1);
const require = createRequire(pathToFileURL(dir + "/package.json"));
const out = {};
for (const specifier of specifiers) {
  const imported = await import(specifier);
  let required;
  try {
    required = require(specifier);
  } catch (error) {
    out[specifier] = { importKeys: Object.keys(imported), error: String(error.code ?? "") + " " + error.message.split("\\n")[0] };
    continue;
  }
  out[specifier] = { importKeys: Object.keys(imported), requireKeys: Object.keys(required), same: required === imported };
}
console.log(JSON.stringify(out));
`;

async function checkEntries(pkg, report, declarations) {
  const entries = javascriptEntries(pkg.manifest);
  if (entries.length === 0) return;
  const specifiers = entries.map(([subpath]) =>
    subpath === "." ? pkg.name : `${pkg.name}/${subpath.slice(2)}`,
  );
  let probe;
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--input-type=module", "-e", PROBE, pkg.absolute, ...specifiers],
      { cwd: pkg.absolute, maxBuffer: 16 * 1024 * 1024 },
    );
    probe = JSON.parse(stdout);
    if (stderr.trim())
      report("require", `loading ${specifiers.join(", ")} printed:\n${stderr.trim()}`);
  } catch (error) {
    report("require", `loading ${specifiers.join(", ")} failed: ${error.stderr || error.message}`);
    return;
  }
  entries.forEach(([subpath, { types }], index) => {
    const result = probe[specifiers[index]];
    if (result.error) {
      report("require", `require("${specifiers[index]}") throws: ${result.error}`, subpath);
    } else if (!result.same) {
      report(
        "require",
        `require("${specifiers[index]}") is not the module import() returns`,
        subpath,
      );
    }
    if (!types) return;
    const declared = declarations.get(path.join(pkg.absolute, types));
    const runtime = new Set(result.importKeys);
    const phantom = declared.values.filter((name) => !runtime.has(name));
    const undeclared = result.importKeys.filter((name) => !declared.values.includes(name));
    const parts = [];
    if (phantom.length) parts.push(`declared but not exported by the JS: ${phantom.join(", ")}`);
    if (undeclared.length)
      parts.push(`exported by the JS but not declared: ${undeclared.join(", ")}`);
    if (declared.unresolved.length)
      parts.push(`declarations that do not resolve: ${declared.unresolved.join(", ")}`);
    if (parts.length) report("declarations", `${types}: ${parts.join("; ")}`, subpath);
  });
}

/** Maps items through an async function, at most `limit` at once, results in order. */
async function inParallel(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

async function main() {
  const started = Date.now();
  const index = process.argv.indexOf("--tarballs");
  let scratch;
  let packages;
  if (index !== -1) {
    const directory = path.resolve(process.argv[index + 1]);
    packages = publicPackages().map((pkg) => ({
      ...pkg,
      tarball: path.join(directory, tarballName(pkg.manifest)),
    }));
  } else {
    scratch = mkdtempSync(path.join(os.tmpdir(), "forge-lint-packages-"));
    packages = packAll(scratch);
    console.log(`packed ${packages.length} packages in ${seconds(Date.now() - started)}`);
  }
  const problems = [];
  const declarationFiles = packages.flatMap((pkg) =>
    javascriptEntries(pkg.manifest)
      .filter(([, target]) => target.types)
      .map(([, target]) => path.join(pkg.absolute, target.types)),
  );
  const before = Date.now();
  const declarations = declaredValueExports(declarationFiles);
  console.log(
    `read ${declarationFiles.length} declaration files in ${seconds(Date.now() - before)}`,
  );
  try {
    // two at a time: attw and the Node probes are child processes, publint waits on I/O
    const lines = await inParallel(packages, os.availableParallelism(), async (pkg) => {
      const before = Date.now();
      const report = (check, message, entry) =>
        problems.push({ check, package: pkg.name, entry, message });
      checkTarball(pkg, report);
      const hasTypes = javascriptEntries(pkg.manifest).some(([, target]) => target.types);
      await Promise.all([
        checkPublint(pkg, report),
        hasTypes ? checkAttw(pkg, report) : undefined,
        checkEntries(pkg, report, declarations),
      ]);
      const checks = hasTypes
        ? "tarball, publint, attw, declarations, require"
        : "tarball, publint (no library entry points: attw, declarations and require do not apply)";
      return `${pkg.name}: ${checks} — ${seconds(Date.now() - before)}`;
    });
    for (const line of lines) console.log(line);
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
  const code = settle(problems, CHECKS);
  console.log(
    `${code === 0 ? "lint-packages: clean" : "lint-packages: FAILED"} (${packages.length} packages, ${seconds(Date.now() - started)})`,
  );
  process.exitCode = code;
}

if (isMain(import.meta.url)) await main();
