#!/usr/bin/env node
// The packages as a user installs them: packed, then installed with plain npm in temp
// directories outside this repository (issue #15, "Shown by tests").
//
//   node tools/pack-check.mjs [--parts a,b,c,d] [--tarballs DIR] [--cache DIR] [--keep] [--strict]
//
// Every public package is packed with `pnpm -r pack` (so `workspace:^` becomes the real
// version). A registry in this process serves those tarballs for the @forge scope only
// (tools/lib/registry.mjs; npm gets `--@forge:registry=<it>`), so the commands are a user's —
// `npm i @forge/eval`, `npm i -g @forge/cli` — with @forge/* from the tarballs and everything
// else from the configured registry, through a cache kept between runs (--cache, default
// ~/.cache/forge-ci/npm). Each part says what it checked:
//
//   a  @forge/eval alone: no @tensorflow directory anywhere in node_modules; a script loads a
//      task file, runs the paired tests, compares two result files and writes JUnit (a model
//      name holds a control character, as a user's can); a strict XML parser accepts it.
//   b  @forge/tokenizer alone: no @tensorflow directory; train, encode, decode (round trip on
//      hard Unicode), chat rendering, save and load.
//   c  the CLI installed globally into a temp prefix (`npm i -g --prefix <tmp> @forge/cli`);
//      `forge demo --json --max-seconds 900` in an empty directory outside any checkout exits 0
//      and every bar in its JSON passes (the time bar is relaxed here: this checks the install,
//      and the demo's own time is reported by the demo test and the README).
//   d  the CLI installed in a project beside @tensorflow/tfjs 4.21.x: npm accepts it, the
//      project keeps its tfjs, and `forge doctor --json` and `forge demo --help` (which load
//      the tensor packages) print no "already registered" warning. Printed, not checked: the
//      tfjs-core copies installed, and the warnings of a project script that imports its own
//      tfjs and @forge/model in one process.
//
// Failures print what failed. The exit code is 1 when a check fails, except a failure recorded
// in tools/lib/problems.mjs as waiting for other work (printed as known, with the reason; it
// fails once it no longer occurs, so the entry gets deleted). --strict fails on those too.
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { SaxesParser } from "saxes";
import { packAll, tarballManifest, tarballName } from "./lib/pack.mjs";
import { knownEntry, settle } from "./lib/problems.mjs";
import { startRegistry } from "./lib/registry.mjs";
import { isMain, publicPackages, readJson, root, seconds } from "./lib/workspace.mjs";

const TFJS_BESIDE = "~4.21.0";
const NPM_FLAGS = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];
const KEEP_NPM_ENV = /^npm_config_(registry|cafile|strict_ssl|proxy|https_proxy|noproxy)$/i;

function parseArguments(argv) {
  const options = {
    parts: ["a", "b", "c", "d"],
    tarballs: undefined,
    cache: path.join(os.homedir(), ".cache", "forge-ci", "npm"),
    keep: false,
    strict: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    if (argument === "--parts") options.parts = argv[++i].split(",").map((part) => part.trim());
    else if (argument === "--tarballs") options.tarballs = path.resolve(argv[++i]);
    else if (argument === "--cache") options.cache = path.resolve(argv[++i]);
    else if (argument === "--keep") options.keep = true;
    else if (argument === "--strict") options.strict = true;
    else throw new Error(`unknown argument ${argument}`);
  }
  const unknown = options.parts.filter((part) => !"abcd".includes(part) || part.length !== 1);
  if (unknown.length) throw new Error(`unknown part(s) ${unknown.join(", ")}: a, b, c or d`);
  return options;
}

/** The environment for npm and forge: pnpm's script variables removed, npm's cache set. */
function cleanEnvironment(extra = {}) {
  const environment = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !KEEP_NPM_ENV.test(key)) continue;
    environment[key] = value;
  }
  return { ...environment, NO_COLOR: "1", ...extra };
}

/** Runs a command; resolves { code, stdout, stderr, ms } (never rejects on a non-zero exit). */
function run(command, args, { cwd, env, timeoutMs = 600_000 } = {}) {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      stderr += `\n[pack-check: killed after ${seconds(timeoutMs)}]`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${error.message}`, ms: Date.now() - started });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The last lines of a command's output; TensorFlow.js' registration warnings counted, not shown. */
function tail(text, lines = 25) {
  const all = text.trim().split("\n");
  const kept = all.filter((line) => !line.includes("already registered"));
  const dropped = all.length - kept.length;
  const last = kept.slice(-lines).join("\n");
  return dropped ? `(${dropped} "already registered" warning lines not shown)\n${last}` : last;
}

/** Every directory named `name` under `directory` (node_modules trees, links not followed). */
function findDirectories(directory, name, found = []) {
  let entries;
  try {
    entries = readdirSync(directory, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const full = path.join(directory, entry.name);
    if (entry.name === name) found.push(full);
    findDirectories(full, name, found);
  }
  return found;
}

/** Installed copies of a package under a node_modules tree: [{ dir, version }]. */
function installedCopies(directory, packageName) {
  const [scope, name] = packageName.startsWith("@")
    ? packageName.split("/")
    : [undefined, packageName];
  const parents = scope ? findDirectories(directory, scope) : [directory];
  return parents
    .map((parent) => path.join(parent, name))
    .filter((dir) => existsSync(path.join(dir, "package.json")))
    .map((dir) => ({ dir, version: readJson(path.join(dir, "package.json")).version }));
}

function directorySize(directory) {
  try {
    return execFileSync("du", ["-sh", directory], { encoding: "utf8" }).split("\t")[0];
  } catch {
    return "?";
  }
}

/** A part's record of checks: check(name, ok, detail) and info(line). */
class Part {
  constructor(id, title) {
    this.id = id;
    this.title = title;
    this.results = [];
    this.started = Date.now();
  }
  check(name, ok, detail = "") {
    this.results.push({ name, ok: Boolean(ok), detail });
    // a passing check shows a one-line detail; a failing one shows all of it
    const shown = detail && (!ok || !detail.includes("\n")) ? `\n${indent(detail)}` : "";
    const line = `[${this.id}] ${ok ? "pass" : "FAIL"}  ${name}${shown}`;
    if (ok) console.log(line);
    else console.error(line);
    return Boolean(ok);
  }
  info(text) {
    console.log(`[${this.id}]       ${text}`);
  }
  get ok() {
    return this.results.length > 0 && this.results.every((result) => result.ok);
  }
}

function indent(text) {
  return text
    .split("\n")
    .map((line) => `        ${line}`)
    .join("\n");
}

class Context {
  constructor(options, scratch, packages, registry) {
    this.options = options;
    this.scratch = scratch;
    this.packages = packages; // [{ name, tarball, published }]
    this.byName = new Map(packages.map((pkg) => [pkg.name, pkg]));
    this.registry = registry;
    this.repositoryUrl = readJson(path.join(root, "package.json")).repository.url;
    // the packages' npm scope (@forge): installed packages under it must be this repository's
    const scopes = new Set(packages.map((pkg) => pkg.name.split("/")[0]));
    if (scopes.size !== 1 || ![...scopes][0].startsWith("@")) {
      throw new Error(`the public packages do not share one npm scope: ${[...scopes].join(", ")}`);
    }
    this.scope = [...scopes][0];
  }

  /** `name@version` of a packed package, as a user would ask for it. */
  spec(name) {
    return `${name}@${this.byName.get(name).published.version}`;
  }

  /** The version range a project lists for a packed package: exactly the packed version. */
  version(name) {
    return this.byName.get(name).published.version;
  }

  /** A fresh project whose package.json lists `dependencies`, nothing else. */
  project(name, dependencies) {
    const dir = path.join(this.scratch, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      path.join(dir, "package.json"),
      `${JSON.stringify({ name, private: true, type: "module", dependencies }, null, 2)}\n`,
    );
    return dir;
  }

  npm(args, cwd) {
    const registry = `--${this.registry.scope}:registry=${this.registry.url}`;
    return run("npm", [...args, ...NPM_FLAGS, registry, "--cache", this.options.cache], {
      cwd,
      env: cleanEnvironment(),
      timeoutMs: 480_000,
    });
  }

  /** Installed @forge/* packages that are not this repository's (a registry namesake). */
  foreignForgePackages(directory) {
    const foreign = [];
    for (const scopeDir of findDirectories(directory, this.scope)) {
      for (const entry of readdirSync(scopeDir)) {
        const manifestPath = path.join(scopeDir, entry, "package.json");
        if (!existsSync(manifestPath)) continue;
        const manifest = readJson(manifestPath);
        if (manifest.repository?.url !== this.repositoryUrl) {
          foreign.push(
            `${manifest.name}@${manifest.version} at ${path.relative(directory, scopeDir)}`,
          );
        }
      }
    }
    return foreign;
  }
}

// ---------------------------------------------------------------------------------------------
// a: @forge/eval alone

const EVAL_SCRIPT = String.raw`
import { mkdirSync, writeFileSync } from "node:fs";
import {
  compareResults,
  evaluateGates,
  loadTask,
  pairedComparison,
  readResults,
  toJUnit,
} from "@forge/eval";

const checks = [];
const check = (name, ok, detail = "") => checks.push({ name, ok: Boolean(ok), detail });
const countries = [
  ["France", "Paris"], ["Japan", "Tokyo"], ["Peru", "Lima"], ["Kenya", "Nairobi"],
  ["Chile", "Santiago"], ["Egypt", "Cairo"], ["Spain", "Madrid"], ["Italy", "Rome"],
  ["Ghana", "Accra"], ["Nepal", "Kathmandu"],
];
const items = Array.from({ length: 40 }, (_, i) => {
  const [country, answer] = countries[i % countries.length];
  return { id: "q" + i, country, answer };
});

// 1. a task file with a JSONL data file beside it
mkdirSync("tasks/data", { recursive: true });
writeFileSync("tasks/data/capitals.jsonl", items.map((item) => JSON.stringify(item)).join("\n") + "\n");
writeFileSync(
  "tasks/capitals.yaml",
  [
    "name: capitals",
    "tags: [knowledge]",
    "data: data/capitals.jsonl",
    "messages:",
    '  - { role: user, content: "What is the capital of {{country}}?" }',
    "generation: { maxNewTokens: 16, temperature: 0 }",
    'scorer: { type: contains, target: "{{answer}}" }',
    "",
  ].join("\n"),
);
const task = await loadTask("tasks/capitals.yaml");
check(
  "loadTask reads the task file and its data",
  task.name === "capitals" && task.items.length === items.length && task.items[3].country === "Kenya",
  "name " + task.name + ", " + task.items.length + " items",
);

// 2. the paired tests: B right on every item, A wrong on every fifth
const ids = task.items.map((item) => item.id);
const a = ids.map((_, i) => [i % 5 === 0 ? 0 : 1]);
const b = ids.map(() => [1]);
const paired = pairedComparison({ ids, a, b }, { seed: 1, bootstrap: 2000 });
check(
  "pairedComparison: Δ = 0.2, McNemar exact p = 2·0.5^8, bootstrap CI around Δ, B wins",
  Math.abs(paired.delta - 0.2) < 1e-12 &&
    paired.mcnemar?.method === "exact" &&
    Math.abs(paired.mcnemar.p - 2 * 0.5 ** 8) < 1e-12 &&
    paired.bootstrap.low <= paired.delta &&
    paired.delta <= paired.bootstrap.high &&
    Number.isFinite(paired.tTest.p) &&
    paired.winner === "B",
  JSON.stringify({ delta: paired.delta, mcnemar: paired.mcnemar, t: paired.tTest, winner: paired.winner }),
);

// 3. two result files, compared
const results = (name, rows) => ({
  schemaVersion: 1,
  kind: "forge-eval-results",
  model: { name, hash: name.replace(/[^a-z]/g, "") },
  createdAt: new Date(0).toISOString(),
  settings: { seed: 0 },
  tasks: [
    {
      name: task.name,
      hash: task.hash,
      tags: task.tags,
      scorer: task.scorer.type,
      rounds: 1,
      n: ids.length,
      mean: rows.reduce((sum, row) => sum + row[0], 0) / rows.length,
      records: ids.map((id, i) => ({ id, round: 0, seed: 0, input: [], output: "", score: rows[i][0] })),
    },
  ],
});
// a model name as a user may type it, with a control character (U+0007) in it
writeFileSync("base.results.json", JSON.stringify(results("base\u0007model", a)));
writeFileSync("baked.results.json", JSON.stringify(results("baked", b)));
const base = await readResults("base.results.json");
const baked = await readResults("baked.results.json");
const comparison = compareResults(base, baked, { seed: 1 });
const row = comparison.tasks[0];
check(
  "compareResults on the two result files: capitals, Δ = 0.2, B wins",
  comparison.tasks.length === 1 && row.task === "capitals" && Math.abs(row.result.delta - 0.2) < 1e-12 && row.winner === "B",
  JSON.stringify({ task: row?.task, delta: row?.result.delta, pAdjusted: row?.pAdjusted, winner: row?.winner }),
);
const gates = [
  ...evaluateGates(["regression", "no-improvement"], comparison),
  ...evaluateGates(["regression"], compareResults(baked, base, { seed: 1 })),
];
check(
  "gates: no regression from base to baked; the reverse comparison fails the regression gate",
  gates.map((gate) => gate.passed).join() === "true,true,false",
  gates.map((gate) => gate.gate + " " + gate.passed).join("; "),
);

// 4. JUnit (checked with an XML parser by the caller)
writeFileSync("junit.xml", toJUnit({ title: "forge eval, installed alone", results: [base, baked], comparison, gates }));
check("toJUnit wrote junit.xml", true);
console.log(JSON.stringify(checks));
`;

/** Well-formed XML 1.0 (saxes is strict: control characters, entities, nesting). */
export function xmlProblems(xml) {
  const problems = [];
  const parser = new SaxesParser({ xmlns: false });
  let testcases = 0;
  let failures = 0;
  let declaredFailures;
  parser.on("error", (error) => {
    problems.push(error.message);
  });
  parser.on("opentag", (tag) => {
    if (tag.name === "testcase") testcases++;
    if (tag.name === "failure") failures++;
    if (tag.name === "testsuites") declaredFailures = Number(tag.attributes.failures);
  });
  try {
    parser.write(xml).close();
  } catch (error) {
    if (!problems.includes(error.message)) problems.push(error.message);
  }
  return { problems, testcases, failures, declaredFailures };
}

async function partA(context, part) {
  const dir = context.project("eval-alone", { "@forge/eval": context.version("@forge/eval") });
  const install = await context.npm(["install"], dir);
  if (
    !part.check(
      `npm install @forge/eval (${seconds(install.ms)})`,
      install.code === 0,
      tail(install.stderr),
    )
  )
    return;
  const modules = path.join(dir, "node_modules");
  part.info(
    `node_modules: ${directorySize(modules)}; @forge: ${findScoped(modules, context.scope).join(", ")}`,
  );
  const tensorflow = findDirectories(modules, "@tensorflow");
  part.check(
    "no @tensorflow directory in node_modules",
    tensorflow.length === 0,
    tensorflow.length
      ? `found: ${tensorflow.map((found) => path.relative(dir, found)).join(", ")}`
      : "",
  );
  const foreign = context.foreignForgePackages(modules);
  part.check(
    "every @forge package came from this repository's tarballs",
    foreign.length === 0,
    foreign.join("\n"),
  );

  writeFileSync(path.join(dir, "check-eval.mjs"), EVAL_SCRIPT);
  const script = await run(process.execPath, ["check-eval.mjs"], {
    cwd: dir,
    env: cleanEnvironment(),
  });
  part.info(`check-eval.mjs ran in ${seconds(script.ms)} (imports @forge/eval)`);
  let checks;
  try {
    checks = JSON.parse(script.stdout.trim().split("\n").at(-1));
  } catch {
    part.check(
      "the eval script runs",
      false,
      `exit ${script.code}\n${tail(script.stderr || script.stdout)}`,
    );
    return;
  }
  for (const check of checks) part.check(check.name, check.ok, check.ok ? "" : check.detail);
  part.check(
    "the eval script exits 0 and prints nothing on stderr",
    script.code === 0 && !script.stderr.trim(),
    tail(script.stderr),
  );
  const junit = path.join(dir, "junit.xml");
  if (existsSync(junit)) {
    const xml = xmlProblems(readFileSync(junit, "utf8"));
    part.check(
      "junit.xml is well-formed XML (strict parser)",
      xml.problems.length === 0,
      xml.problems.join("\n"),
    );
    part.check(
      "junit.xml holds test cases and its failure count matches its <failure> elements",
      xml.testcases > 0 && xml.failures === xml.declaredFailures && xml.failures === 1,
      `${xml.testcases} testcases, ${xml.failures} <failure>, failures="${xml.declaredFailures}"`,
    );
  }
}

function findScoped(modules, scope) {
  return findDirectories(modules, scope).flatMap((scopeDir) =>
    readdirSync(scopeDir).map((entry) => {
      const manifest = path.join(scopeDir, entry, "package.json");
      return existsSync(manifest)
        ? `${readJson(manifest).name}@${readJson(manifest).version}`
        : entry;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// b: @forge/tokenizer alone

const TOKENIZER_SCRIPT = String.raw`
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadTokenizer, saveTokenizer, train } from "@forge/tokenizer";

const checks = [];
const check = (name, ok, detail = "") => checks.push({ name, ok: Boolean(ok), detail });
const corpus = Array.from({ length: 400 }, (_, i) =>
  "Arr, matey! I found " + i + " coins — naïve café, 日本語, emoji 🦜 and all.");
const tokenizer = train(corpus, { vocabSize: 400 });
const hard = "Arr, matey! naïve café — 日本語 🦜🦜 \u0000 \uFFFD tabs\tand\nnewlines";
const ids = tokenizer.encode(hard);
const back = tokenizer.decode(ids);
check("train, then encode/decode round-trips hard Unicode", back === hard, JSON.stringify({ back }));
const known = tokenizer.encode("Arr, matey! I found 7 coins");
check("training learned merges (fewer tokens than bytes)", known.length < Buffer.byteLength("Arr, matey! I found 7 coins"), known.length + " tokens");
const chat = tokenizer.renderChat(
  [
    { role: "system", content: "You are a pirate." },
    { role: "user", content: "How many coins?" },
    { role: "assistant", content: "Arr, 42." },
  ],
  { addGenerationPrompt: false },
);
const learned = chat.assistantMask.reduce((sum, bit) => sum + bit, 0);
check("renderChat masks the assistant's tokens", learned > 0 && learned < chat.ids.length, learned + " of " + chat.ids.length);
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-tokenizer-"));
await saveTokenizer(tokenizer, dir);
const again = await loadTokenizer(dir);
check("save and load give the same encoding", again.encode(hard).join() === ids.join());
console.log(JSON.stringify(checks));
`;

async function partB(context, part) {
  const dir = context.project("tokenizer-alone", {
    "@forge/tokenizer": context.version("@forge/tokenizer"),
  });
  const install = await context.npm(["install"], dir);
  if (
    !part.check(
      `npm install @forge/tokenizer (${seconds(install.ms)})`,
      install.code === 0,
      tail(install.stderr),
    )
  )
    return;
  const modules = path.join(dir, "node_modules");
  part.info(
    `node_modules: ${directorySize(modules)}; @forge: ${findScoped(modules, context.scope).join(", ")}`,
  );
  const tensorflow = findDirectories(modules, "@tensorflow");
  part.check(
    "no @tensorflow directory in node_modules",
    tensorflow.length === 0,
    tensorflow.map((found) => path.relative(dir, found)).join(", "),
  );
  const foreign = context.foreignForgePackages(modules);
  part.check(
    "every @forge package came from this repository's tarballs",
    foreign.length === 0,
    foreign.join("\n"),
  );
  writeFileSync(path.join(dir, "check-tokenizer.mjs"), TOKENIZER_SCRIPT);
  const script = await run(process.execPath, ["check-tokenizer.mjs"], {
    cwd: dir,
    env: cleanEnvironment(),
  });
  let checks;
  try {
    checks = JSON.parse(script.stdout.trim().split("\n").at(-1));
  } catch {
    part.check(
      "the tokenizer script runs",
      false,
      `exit ${script.code}\n${tail(script.stderr || script.stdout)}`,
    );
    return;
  }
  for (const check of checks) part.check(check.name, check.ok, check.ok ? "" : check.detail);
  part.check(
    "the tokenizer script exits 0 and prints nothing on stderr",
    script.code === 0 && !script.stderr.trim(),
    tail(script.stderr),
  );
}

// ---------------------------------------------------------------------------------------------
// c: the CLI installed globally, `forge demo --json` outside any checkout

function countRegistrationWarnings(text) {
  return (text.match(/already registered/g) ?? []).length;
}

async function partC(context, part) {
  const prefix = path.join(context.scratch, "global");
  const install = await context.npm(
    ["install", "--global", "--prefix", prefix, context.spec("@forge/cli")],
    context.scratch,
  );
  if (
    !part.check(
      `npm i -g --prefix <tmp> ${context.spec("@forge/cli")} (${seconds(install.ms)})`,
      install.code === 0,
      tail(install.stderr),
    )
  )
    return;
  const modules = path.join(prefix, "lib", "node_modules");
  const foreign = context.foreignForgePackages(modules);
  part.check(
    "every @forge package came from this repository's tarballs",
    foreign.length === 0,
    foreign.join("\n"),
  );
  const cores = installedCopies(modules, "@tensorflow/tfjs-core");
  part.info(
    `installed: ${directorySize(prefix)}; @tensorflow/tfjs-core copies: ${cores.length} (${cores.map((copy) => copy.version).join(", ")})`,
  );
  const forge = path.join(prefix, "bin", "forge");
  if (!part.check("the global prefix has bin/forge", existsSync(forge))) return;

  const workdir = mkdtempSync(path.join(os.tmpdir(), "forge-demo-outside-"));
  const home = path.join(context.scratch, "home");
  mkdirSync(home, { recursive: true });
  try {
    const demo = await run(forge, ["demo", "--json", "--max-seconds", "900"], {
      cwd: workdir,
      env: cleanEnvironment({
        HOME: home,
        PATH: `${path.join(prefix, "bin")}:${process.env.PATH}`,
      }),
      timeoutMs: 480_000,
    });
    part.info(`forge demo --json: exit ${demo.code} in ${seconds(demo.ms)} (cwd ${workdir})`);
    part.info(`stderr "already registered" warnings: ${countRegistrationWarnings(demo.stderr)}`);
    part.check("forge demo --json exits 0", demo.code === 0, tail(demo.stderr));
    // exit 1 is a failed bar, reported in the JSON; any other failure has no report to read
    if (demo.code !== 0 && demo.code !== 1) return;
    let report;
    try {
      report = JSON.parse(demo.stdout);
    } catch {
      part.check(
        "forge demo --json prints a JSON report",
        false,
        tail(demo.stdout || "(empty)", 10),
      );
      return;
    }
    const bars = Array.isArray(report.bars) ? report.bars : [];
    part.check("the report has bars", bars.length > 0);
    const failed = bars.filter((bar) => bar.pass !== true);
    part.check(
      `every bar passes (${bars.length - failed.length}/${bars.length})`,
      bars.length > 0 && failed.length === 0,
      failed.map((bar) => `${bar.name}: ${JSON.stringify(bar.value)}`).join("\n"),
    );
  } finally {
    if (!context.options.keep) rmSync(workdir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// d: the CLI beside another tfjs minor

const BOTH_SCRIPT = `
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
await import("@tensorflow/tfjs");
const fromCli = createRequire(path.resolve("node_modules/@forge/cli/package.json"));
await import(pathToFileURL(fromCli.resolve("@forge/model")).href);
`;

async function partD(context, part) {
  const dir = context.project("cli-beside-tfjs", {
    "@tensorflow/tfjs": TFJS_BESIDE,
    "@forge/cli": context.version("@forge/cli"),
  });
  const install = await context.npm(["install"], dir);
  if (
    !part.check(
      `npm install @forge/cli beside @tensorflow/tfjs@${TFJS_BESIDE} (${seconds(install.ms)})`,
      install.code === 0,
      tail(install.stderr),
    )
  )
    return;
  const modules = path.join(dir, "node_modules");
  const foreign = context.foreignForgePackages(modules);
  part.check(
    "every @forge package came from this repository's tarballs",
    foreign.length === 0,
    foreign.join("\n"),
  );
  const own = readJson(path.join(modules, "@tensorflow", "tfjs", "package.json")).version;
  part.check(
    `the project keeps its @tensorflow/tfjs ${TFJS_BESIDE}`,
    /^4\.21\./.test(own),
    `node_modules/@tensorflow/tfjs is ${own}`,
  );
  const cores = installedCopies(modules, "@tensorflow/tfjs-core");
  part.info(
    `node_modules: ${directorySize(modules)}; @tensorflow/tfjs-core copies: ${cores
      .map((copy) => `${copy.version} at ${path.relative(dir, copy.dir)}`)
      .join(", ")}`,
  );
  // Not a check (the issue asks about the CLI's output): a script of the project's own that
  // loads its TensorFlow.js and the @forge/model the CLI uses (resolved from the CLI, where npm
  // put it) in one process.
  const both = await run(process.execPath, ["--input-type=module", "-e", BOTH_SCRIPT], {
    cwd: dir,
    env: cleanEnvironment(),
    timeoutMs: 120_000,
  });
  part.info(
    `a project script importing its @tensorflow/tfjs and the CLI's @forge/model: exit ${both.code}, ${countRegistrationWarnings(both.stderr)} "already registered" warnings${both.code === 0 ? "" : `\n${indent(tail(both.stderr, 6))}`}`,
  );
  const forge = path.join(modules, ".bin", "forge");
  for (const args of [
    ["doctor", "--json"],
    ["demo", "--help"],
  ]) {
    const result = await run(forge, args, {
      cwd: dir,
      env: cleanEnvironment(),
      timeoutMs: 120_000,
    });
    const warnings = countRegistrationWarnings(result.stderr);
    part.check(
      `forge ${args.join(" ")} exits 0 (${seconds(result.ms)})`,
      result.code === 0,
      tail(result.stderr, 10),
    );
    part.check(
      `forge ${args.join(" ")} prints no "already registered" warning`,
      warnings === 0,
      warnings
        ? `${warnings} warnings, e.g.\n${result.stderr
            .split("\n")
            .filter((line) => line.includes("already registered"))
            .slice(0, 3)
            .join("\n")}`
        : "",
    );
  }
}

// ---------------------------------------------------------------------------------------------

const PARTS = {
  a: ["@forge/eval installed alone", partA],
  b: ["@forge/tokenizer installed alone", partB],
  c: ["the CLI installed globally, forge demo --json outside the checkout", partC],
  d: [`the CLI beside @tensorflow/tfjs ${TFJS_BESIDE}`, partD],
};

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const started = Date.now();
  mkdirSync(options.cache, { recursive: true });
  const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-pack-check-"));
  const parts = [];
  let registry;
  try {
    let packages;
    if (options.tarballs) {
      packages = publicPackages().map((pkg) => ({
        ...pkg,
        tarball: path.join(options.tarballs, tarballName(pkg.manifest)),
      }));
    } else {
      packages = packAll(path.join(scratch, "tarballs"));
    }
    packages = packages.map((pkg) => ({ ...pkg, published: tarballManifest(pkg.tarball) }));
    console.log(
      `packed ${packages.length} packages in ${seconds(Date.now() - started)}; npm cache ${options.cache}; scratch ${scratch}`,
    );
    registry = await startRegistry(packages);
    const context = new Context(options, scratch, packages, registry);
    for (const id of options.parts) {
      const [title, work] = PARTS[id];
      const part = new Part(id, title);
      console.log(`\n(${id}) ${title}`);
      try {
        await work(context, part);
      } catch (error) {
        part.check("ran to the end", false, error.stack ?? String(error));
      }
      part.ms = Date.now() - part.started;
      parts.push(part);
    }
  } finally {
    await registry?.close();
    if (!options.keep) rmSync(scratch, { recursive: true, force: true });
  }
  console.log("\npack-check summary");
  for (const part of parts) {
    const failed = part.results.filter((result) => !result.ok);
    const known = failed.filter((result) =>
      knownEntry({ check: "pack", package: part.id, entry: result.name, message: result.detail }),
    );
    const status =
      failed.length === 0 ? "PASS" : known.length === failed.length ? "FAIL (known)" : "FAIL";
    const names = failed.map((result) => result.name).join("; ");
    console.log(
      `  (${part.id}) ${status}  ${part.title} — ${seconds(part.ms)}${failed.length ? `; failed: ${names}` : ""}`,
    );
  }
  const problems = parts.flatMap((part) =>
    part.results
      .filter((result) => !result.ok)
      .map((result) => ({
        check: "pack",
        package: part.id,
        entry: result.name,
        message: result.detail,
      })),
  );
  console.log("");
  const code = settle(problems, ["pack"], {
    strict: options.strict,
    inScope: (entry) => options.parts.includes(entry.package),
  });
  const outcome = code !== 0 ? "FAILED" : problems.length ? "ok apart from known problems" : "ok";
  console.log(`pack-check: ${outcome} (${seconds(Date.now() - started)})`);
  process.exitCode = parts.length > 0 ? code : 1;
}

if (isMain(import.meta.url)) await main();
