/**
 * forge eval never loses what a user owns and never reaches what a task file may not: outputs
 * are claimed (an existing directory that is not forge's survives, a previous output is
 * replaced only with --force, the working directory and the inputs are never outputs), single
 * files never replace an input or a directory, a full disk leaves the previous output as it
 * was, task files stay inside their directory and run no code without --allow-code. Real
 * files, the built CLI as a child process, the shipped forge-tiny.
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge, type Run } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-eval-safety-"));
// A full disk: a small tmpfs inside `dir` (root only; that test is skipped where mount is not
// allowed). It is unmounted before `dir` is removed.
const mountPoint = path.join(dir, "small-disk");
let mounted = false;
beforeAll(() => {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return;
  mkdirSync(mountPoint, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint], {
      stdio: "ignore",
    });
    mounted = true;
  } catch {
    mounted = false;
  }
});
afterAll(() => {
  if (mounted) execFileSync("umount", [mountPoint], { stdio: "ignore" });
  rmSync(dir, { recursive: true, force: true });
});
const at = (...parts: string[]) => path.join(dir, ...parts);
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "", run.stdout).toBe("");
  expect(run.code).toBe(0);
}

/** Exit 2 with one line on stderr that matches every pattern, and no stack trace. */
function expectRefused(run: Run, ...patterns: (string | RegExp)[]): void {
  expect(run.code, run.stderr).toBe(2);
  const message = run.stderr.trim();
  expect(message).toMatch(/^forge: /);
  expect(message).not.toMatch(/\n\s+at /);
  for (const pattern of patterns)
    if (typeof pattern === "string") expect(message).toContain(pattern);
    else expect(message).toMatch(pattern);
}

/** A results file by hand (compare needs no model): one task, binary scores. */
function results(name: string, scores: number[]) {
  return {
    schemaVersion: 1,
    kind: "forge-eval-results",
    model: { name, hash: name },
    createdAt: new Date().toISOString(),
    settings: { seed: 0 },
    tasks: [
      {
        name: "sums",
        hash: "h",
        tags: [],
        scorer: "exact",
        rounds: 1,
        n: scores.length,
        mean: scores.reduce((a, b) => a + b, 0) / scores.length,
        records: scores.map((score, i) => ({
          id: `q${i}`,
          round: 0,
          seed: 0,
          input: [],
          output: "",
          score,
        })),
      },
    ],
  };
}

const A = at("a.json");
const B = at("b.json");
const scoresA = Array.from({ length: 30 }, (_, i) => (i % 5 ? 1 : 0));
writeFileSync(A, JSON.stringify(results("a", scoresA)));
writeFileSync(
  B,
  JSON.stringify(
    results(
      "b",
      scoresA.map(() => 1),
    ),
  ),
); // B is clearly better
const aBytes = readFileSync(A, "utf8");

/** Everything in a directory, recursively, with contents: to show nothing changed. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(root, file)] = entry.isFile() ? readFileSync(file, "utf8") : "(dir)";
  }
  return out;
}

/** Nothing forge leaves behind beside an output: work directories, replaced copies, locks. */
const leftovers = (parent: string) =>
  readdirSync(parent).filter((name) => /\.(partial|replaced)-|\.lock$/.test(name));

// A small task (two items, a few tokens) and a directory layout around it.
const tasks = at("project", "tasks");
const elsewhere = at("elsewhere");
mkdirSync(tasks, { recursive: true });
mkdirSync(elsewhere, { recursive: true });
const sums = (data: string, scorer = '{ type: contains, target: "{{answer}}" }') =>
  `name: sums\ndata: ${data}\nmessages:\n  - { role: user, content: "{{question}}" }\ngeneration: { maxNewTokens: 6, temperature: 0 }\nscorer: ${scorer}\n`;
const ITEMS =
  '{"id": "a", "question": "What is 2 plus 2?", "answer": "4"}\n{"id": "b", "question": "What is 3 plus 5?", "answer": "8"}\n';
writeFileSync(path.join(tasks, "sums.jsonl"), ITEMS);
writeFileSync(path.join(elsewhere, "sums.jsonl"), ITEMS);
const TASK = path.join(tasks, "sums.yaml");
writeFileSync(TASK, sums("sums.jsonl"));

describe("task files stay inside their directory (--allow-outside)", () => {
  it("data: ../../../etc/passwd is refused, naming the task file and the field; the flag allows it, and its content is never printed", async () => {
    const task = path.join(tasks, "passwd.yaml");
    writeFileSync(task, sums("../../../etc/passwd"));
    const out = at("passwd-results.json");
    const refused = await forge(["eval", "run", TINY, "--tasks", task, "--out", out]);
    expectRefused(refused, `${task}:2:7`, 'data "../../../etc/passwd"', "--allow-outside");
    expect(existsSync(out)).toBe(false);
    if (existsSync("/etc/passwd")) {
      // Allowed, the file is read — and refused as data without a word of what is in it. (Enough
      // ../ to reach the root from this temporary directory: the path ends at /etc/passwd.)
      writeFileSync(task, sums(`${"../".repeat(16)}etc/passwd`));
      const allowed = await forge([
        "eval",
        "run",
        TINY,
        "--tasks",
        task,
        "--out",
        out,
        "--allow-outside",
      ]);
      expectRefused(allowed, "/etc/passwd:1: not a JSON object", task);
      expect(allowed.stderr).not.toMatch(/root|nologin|bash/);
    }
    const outsideTask = path.join(tasks, "outside.yaml");
    writeFileSync(outsideTask, sums("../../elsewhere/sums.jsonl"));
    expectRefused(
      await forge(["eval", "run", TINY, "--tasks", outsideTask, "--out", out]),
      "resolves outside",
    );
    expectOk(
      await forge([
        "eval",
        "run",
        TINY,
        "--tasks",
        outsideTask,
        "--out",
        out,
        "--allow-outside",
        "--json",
      ]),
    );
    expect(json(out).tasks[0].n).toBe(2);
  }, 180_000);
});

describe("js scorers run only with --allow-code", () => {
  const marker = (name: string) => `${name}.ran`;
  const jsModule = (directory: string, name: string) => {
    writeFileSync(
      path.join(directory, `${name}.mjs`),
      `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(path.join(directory, marker(name)))}, "ran");\nexport default (output) => output.length > 0;\n`,
    );
    return path.join(directory, marker(name));
  };

  it("without the flag: exit 2 before anything runs, naming the task file, the module and the flag", async () => {
    const ran = jsModule(tasks, "score");
    const task = path.join(tasks, "js.yaml");
    writeFileSync(task, sums("sums.jsonl", "{ type: js, module: score.mjs }"));
    const out = at("js-results.json");
    for (const command of [
      ["run", TINY, "--out", out],
      ["ab", TINY, TINY, "--out", at("js-ab")],
      ["forgetting", "--base", TINY, "--baked", TINY, "--out", at("js-forgetting")],
    ]) {
      const run = await forge(["eval", ...command, "--tasks", task]);
      expectRefused(run, task, '"score.mjs"', "--allow-code");
    }
    expect(existsSync(ran)).toBe(false);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(at("js-ab"))).toBe(false);
    expectOk(await forge(["eval", "run", TINY, "--tasks", task, "--out", out, "--allow-code"]));
    expect(existsSync(ran)).toBe(true);
    expect(json(out).tasks[0].scorer).toBe("js");
  }, 180_000);

  it("the module stays inside the task file's directory unless --allow-outside", async () => {
    const ran = jsModule(elsewhere, "far");
    const task = path.join(tasks, "far.yaml");
    writeFileSync(task, sums("sums.jsonl", "{ type: js, module: ../../elsewhere/far.mjs }"));
    const out = at("far-results.json");
    expectRefused(
      await forge(["eval", "run", TINY, "--tasks", task, "--out", out, "--allow-code"]),
      task,
      "scorer.module",
      "--allow-outside",
    );
    expect(existsSync(ran)).toBe(false);
    expectOk(
      await forge([
        "eval",
        "run",
        TINY,
        "--tasks",
        task,
        "--out",
        out,
        "--allow-code",
        "--allow-outside",
      ]),
    );
    expect(existsSync(ran)).toBe(true);
  }, 180_000);
});

describe("output directories forge owns (ab, forgetting, compare)", () => {
  it("compare: a user's directory survives and is named; a second run needs --force; the manifest lands inside", async () => {
    const user = at("user-dir");
    mkdirSync(user);
    writeFileSync(path.join(user, "notes.txt"), "mine\n");
    expectRefused(
      await forge(["eval", "compare", A, B, "--out", user]),
      user,
      "notes.txt",
      "not forge's output",
    );
    expect(snapshot(user)).toEqual({ "notes.txt": "mine\n" });

    const out = at("cmp");
    expectOk(await forge(["eval", "compare", A, B, "--out", out, "--json"]));
    const manifest = json(path.join(out, "manifest.json"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.run.kind).toBe("eval-compare");
    for (const artifact of manifest.outputs.artifacts)
      expect(path.dirname(artifact.path)).toBe(out); // recorded where they stay
    expect(existsSync(path.join(out, "report.html"))).toBe(true);
    const first = snapshot(out);
    const again = await forge(["eval", "compare", A, B, "--out", out]);
    expectRefused(again, out, "--force");
    expect(snapshot(out)).toEqual(first);
    expectOk(await forge(["eval", "compare", A, B, "--out", out, "--force", "--json"]));
    expect(json(path.join(out, "manifest.json")).run.startedAt).not.toBe(manifest.run.startedAt);
    expect(leftovers(dir)).toEqual([]);
  });

  it("a failed gate (exit 1) still leaves its reports in place; bad input leaves nothing", async () => {
    const gated = at("gated");
    const run = await forge(["eval", "compare", B, A, "--out", gated, "--fail-on", "regression"]);
    expect(run.code, run.stderr).toBe(1);
    expect(json(path.join(gated, "manifest.json")).run.status).toBe("succeeded");
    const broken = at("broken.json");
    writeFileSync(broken, JSON.stringify({ ...results("x", [1]), tasks: [] }));
    const failed = at("failed");
    expect((await forge(["eval", "compare", A, broken, "--out", failed])).code).toBe(2);
    expect(existsSync(failed)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });

  it("--out is never the working directory, an input, or a directory holding one", async () => {
    const cwd = at("cwd");
    mkdirSync(cwd);
    writeFileSync(path.join(cwd, "keep.txt"), "keep\n");
    expectRefused(
      await forge(["eval", "compare", A, B, "--out", "."], {}, undefined, cwd),
      "working directory",
    );
    expect(snapshot(cwd)).toEqual({ "keep.txt": "keep\n" });
    expectRefused(await forge(["eval", "compare", A, B, "--out", A]), A, "input");
    expectRefused(await forge(["eval", "compare", A, B, "--out", dir]), "contains the input");
    expect(readFileSync(A, "utf8")).toBe(aBytes);
    // The report files, too: never an input, never a directory, never the same file twice.
    expectRefused(
      await forge(["eval", "compare", A, B, "--out", at("r1"), "--junit", A]),
      `--junit ${A}`,
      "input",
    );
    expectRefused(
      await forge(["eval", "compare", A, B, "--out", at("r2"), "--html", cwd]),
      `--html ${cwd} is a directory`,
    );
    expectRefused(
      await forge([
        "eval",
        "compare",
        A,
        B,
        "--out",
        at("r3"),
        "--junit",
        at("x.xml"),
        "--html",
        at("x.xml"),
      ]),
      "give each output its own path",
    );
    expect(readFileSync(A, "utf8")).toBe(aBytes);
    for (const name of ["r1", "r2", "r3", "x.xml"]) expect(existsSync(at(name))).toBe(false);
  });

  it("ab and forgetting on forge-tiny: claimed, refused without --force, replaced with it", async () => {
    for (const [command, out] of [
      [["ab", TINY, TINY], at("ab")],
      [["forgetting", "--base", TINY, "--baked", TINY], at("forgetting")],
    ] as const) {
      const args = ["eval", ...command, "--tasks", TASK, "--out", out, "--json"];
      expectOk(await forge(args));
      const manifest = json(path.join(out, "manifest.json"));
      expect(manifest.run.status).toBe("succeeded");
      expect(manifest.run.kind).toBe(`eval-${command[0]}`);
      expect(readdirSync(out)).toContain("report.html");
      expectRefused(await forge(args), out, "--force");
      expectOk(await forge([...args, "--force"]));
      // An input inside --out is refused before any model is loaded.
      expectRefused(
        await forge(["eval", ...command, "--tasks", TASK, "--out", at("project")]),
        "contains the input",
      );
    }
    expect(existsSync(path.join(tasks, "sums.yaml"))).toBe(true);
    expect(leftovers(dir)).toEqual([]);
  }, 240_000);
});

describe("single-file outputs (eval run --out, --junit, --markdown, --html)", () => {
  it("never an input, never a directory; written whole", async () => {
    const taskBytes = readFileSync(TASK, "utf8");
    expectRefused(
      await forge(["eval", "run", TINY, "--tasks", TASK, "--out", TASK]),
      `--out ${TASK} is the input`,
    );
    expectRefused(
      await forge([
        "eval",
        "run",
        TINY,
        "--tasks",
        TASK,
        "--out",
        at("ok.json"),
        "--markdown",
        path.join(tasks, "sums.jsonl"),
      ]),
      "--markdown",
      "is the input",
    );
    expectRefused(
      await forge(["eval", "run", TINY, "--tasks", TASK, "--out", path.join(TINY, "config.json")]),
      "config.json is a file of the input",
    );
    const folder = at("a-folder");
    mkdirSync(folder);
    expectRefused(
      await forge(["eval", "run", TINY, "--tasks", TASK, "--out", folder]),
      `--out ${folder} is a directory`,
    );
    expect(readFileSync(TASK, "utf8")).toBe(taskBytes);
    expect(readdirSync(folder)).toEqual([]);
    const out = at("run", "results.json");
    expectOk(
      await forge([
        "eval",
        "run",
        TINY,
        "--tasks",
        TASK,
        "--out",
        out,
        "--junit",
        at("run", "junit.xml"),
        "--json",
      ]),
    );
    expect(json(out).kind).toBe("forge-eval-results");
    expect(json(at("run", "results.manifest.json")).run.status).toBe("succeeded");
    expect(readFileSync(at("run", "junit.xml"), "utf8")).toMatch(/<testsuite/);
    expect(leftovers(at("run"))).toEqual([]);
    expect(readdirSync(at("run")).filter((n) => n.startsWith("."))).toEqual([]);
  }, 180_000);
});

describe("a full disk", () => {
  it("wherever a write fails (lock, marker, manifest, results, reports): one line naming the path, exit 2, the previous output as it was, nothing left behind", async (context) => {
    if (!mounted) context.skip();
    const out = path.join(mountPoint, "cmp");
    expectOk(await forge(["eval", "compare", A, B, "--out", out, "--json"]));
    const before = snapshot(out);
    const filler = path.join(mountPoint, "filler");
    // Free space left, in pages: none (the lock fails), one (the work directory's marker), two
    // (the manifest), then the results and reports in turn.
    for (const pages of [0, 1, 2, 3, 4, 5]) {
      rmSync(filler, { force: true });
      const { bavail, bsize } = statfsSync(mountPoint);
      writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - pages * 4096)));
      const run = await forge(["eval", "compare", A, B, "--out", out, "--force"]);
      expectRefused(run, mountPoint, /no space left on (the )?device/);
      expect(run.stderr.trim().split("\n"), `${pages} pages free`).toHaveLength(1);
      expect(snapshot(out), `${pages} pages free`).toEqual(before);
      expect(leftovers(mountPoint), `${pages} pages free`).toEqual([]);
    }
  }, 180_000);
});
