/**
 * Nothing a user owns is ever lost (issue #14), through the real CLI: output directories forge
 * did not make, its own inputs, the working directory, two writers at once, a full disk, a
 * signal mid-bake, absurd sizes and blank values. Each case failed on the code before it.
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
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
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge, type Run } from "../run-cli.js";

const root = mkdtempSync(path.join(os.tmpdir(), "forge-safety-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(root, ...parts);
const TINY = FORGE_TINY_DIR;
let model: string;

/** A fast bake of forge-tiny: three questions, one sample each, a few steps. */
const bakeArgs = (out: string, ...extra: string[]) => [
  "bake",
  "--model",
  model,
  "--prompt",
  "You are a pirate.",
  "--stim",
  "list:What is 2 + 2?|Name a colour.|Who are you?",
  "--samples",
  "1",
  "--max-new-tokens",
  "12",
  "--epochs",
  "1",
  "--no-measure",
  "--out",
  out,
  ...extra,
];

const expectExit = (run: Run, code: number, pattern: RegExp) => {
  expect(run.code, run.stderr + run.stdout).toBe(code);
  expect(run.stderr).toMatch(pattern);
  expect(run.stderr).not.toMatch(/\n\s+at /); // one message, never a stack trace
};

/** sha256 of every file under a directory, by relative path. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const name = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(name);
      else
        out[name] = createHash("sha256")
          .update(readFileSync(path.join(dir, name)))
          .digest("hex");
    }
  };
  walk("");
  return out;
}

beforeAll(() => {
  model = at("forge-tiny");
  cpSync(TINY, model, { recursive: true, dereference: true });
});

describe("forge bake never destroys what it did not create", () => {
  it("a directory holding a user's file is refused, the file intact, --force or not", async () => {
    const users = at("thesis");
    mkdirSync(users);
    writeFileSync(path.join(users, "chapter-1.tex"), "two years of work");
    for (const extra of [[], ["--force"]]) {
      const run = await forge(bakeArgs(users, ...extra));
      expectExit(
        run,
        2,
        /--out .*thesis already exists and is not forge's output \(a directory holding chapter-1.tex\)/,
      );
    }
    expect(readdirSync(users)).toEqual(["chapter-1.tex"]);
    expect(readFileSync(path.join(users, "chapter-1.tex"), "utf8")).toBe("two years of work");
    expect(readdirSync(root).filter((n) => n.includes("thesis"))).toEqual(["thesis"]);
  });

  it("--out = --model and --out . are refused; the model and the working directory survive", async () => {
    const before = snapshot(model);
    expectExit(await forge(bakeArgs(model, "--force")), 2, /--out .* is the input/);
    expect(snapshot(model)).toEqual(before);
    const cwd = at("workdir");
    mkdirSync(cwd);
    writeFileSync(path.join(cwd, "keep.txt"), "mine");
    expectExit(await forge(bakeArgs(".", "--force"), {}, undefined, cwd), 2, /working directory/);
    expectExit(
      await forge(bakeArgs("..", "--force"), {}, undefined, cwd),
      2,
      /working directory or one of its parents/,
    );
    expect(readFileSync(path.join(cwd, "keep.txt"), "utf8")).toBe("mine");
    // an output that would contain the model is refused too
    expectExit(await forge(bakeArgs(root, "--force")), 2, /contains the input/);
  });

  it("two bakes into one --out: one is refused naming the holder's pid, the other is complete", async () => {
    const out = at("concurrent");
    const [a, b] = await Promise.all([forge(bakeArgs(out)), forge(bakeArgs(out))]);
    const runs = [a, b].sort((x, y) => x.code - y.code);
    expect(runs[0]!.code, runs[0]!.stderr).toBe(0);
    expectExit(
      runs[1]!,
      2,
      /(is held by another forge process: pid \d+|holds a previous bake output)/,
    );
    for (const file of [
      "adapter_model.safetensors",
      "adapter_config.json",
      "forge.json",
      "stim.jsonl",
      "rollout.jsonl",
      "manifest.json",
    ])
      expect(existsSync(path.join(out, file)), file).toBe(true);
    expect(JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8")).run.status).toBe(
      "succeeded",
    );
    // a previous bake is replaced only with --force
    expectExit(await forge(bakeArgs(out)), 2, /holds a previous bake output .*pass --force/);
    const forced = await forge(bakeArgs(out, "--force", "--seed", "2"));
    expect(forced.code, forced.stderr).toBe(0);
    expect(
      readdirSync(root).filter((n) => n.startsWith(".concurrent") || n.startsWith("concurrent.")),
    ).toEqual([]);
  });

  it("SIGINT mid-bake: exit 130, says how to resume, manifest interrupted; --resume appends to it", async () => {
    const out = at("interrupted");
    const args = bakeArgs(out, "--steps", "400", "--batch-size", "2", "--seed", "3");
    const child = spawn(process.execPath, [FORGE, ...args], {
      env: { ...process.env, NO_COLOR: "1", FORGE_PROGRESS: "0" },
    });
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number>((resolve) =>
      child.once("exit", (code) => resolve(code ?? -1)),
    );
    const checkpoint = path.join(`${out}.partial`, "checkpoints", "last", "trainer_state.json");
    const deadline = Date.now() + 60_000;
    while (!existsSync(checkpoint) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(checkpoint), stderr).toBe(true);
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/the bake stopped at step \d+/);
    expect(stderr).toMatch(/resume with: forge bake .* --resume/);
    expect(existsSync(out)).toBe(false);
    const stopped = JSON.parse(readFileSync(path.join(`${out}.partial`, "manifest.json"), "utf8"));
    expect(stopped.run.status).toBe("interrupted");
    const stoppedSteps = stopped.training.logHistory.map((s: { step: number }) => s.step);
    expect(stoppedSteps.length).toBeGreaterThan(0);

    expectExit(await forge(args), 2, /a stopped run left .*interrupted.partial.*--resume/);
    const resumed = await forge([...args, "--resume"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(done.run.status).toBe("succeeded");
    expect(done.run.resumes).toHaveLength(1);
    const steps = done.training.logHistory.map((s: { step: number }) => s.step);
    expect(steps.slice(0, stoppedSteps.length)).toEqual(stoppedSteps); // the earlier steps kept
    expect(steps.at(-1)).toBe(400);
  });

  it("a full disk ends with one line naming the path (exit 2); the output is absent or resumable", async (context) => {
    const mount = at("small-disk");
    mkdirSync(mount);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=300k", "tmpfs", mount], {
        stdio: "ignore",
      });
    } catch {
      context.skip(); // needs root and mount(2): CI runs as root
    }
    try {
      const out = path.join(mount, "out");
      const run = await forge(bakeArgs(out, "--epochs", "3"));
      expectExit(run, 2, /cannot write .*small-disk.*: no space left on the device \(ENOSPC\)/);
      expect(run.stderr).not.toMatch(/internal error/);
      expect(existsSync(out)).toBe(false);
      const partial = `${out}.partial`;
      if (existsSync(partial)) {
        expect(readFileSync(path.join(partial, ".forge-output.json"), "utf8")).toMatch(
          /"kind": "bake"/,
        );
        expect(run.stderr).toMatch(/--resume/);
      }
      expect(readdirSync(mount).filter((n) => n.endsWith(".lock"))).toEqual([]);
    } finally {
      execFileSync("umount", [mount]);
    }
  });
});

describe("validate before allocating", () => {
  it("absurd sizes and ranks, blank values and out-of-range counts are exit 2 in seconds", async () => {
    const huge = at("huge-model");
    cpSync(model, huge, { recursive: true, dereference: true });
    const config = JSON.parse(readFileSync(path.join(huge, "config.json"), "utf8"));
    writeFileSync(path.join(huge, "config.json"), JSON.stringify({ ...config, n_layer: 1e9 }));
    const cases: [string[], RegExp][] = [
      [
        ["generate", huge, "--user", "hi"],
        /config.json: 1.\d+e\+\d+ parameters .*this machine has/,
      ],
      [
        bakeArgs(at("rank"), "--rank", "100000"),
        /rank 100000 is larger than the model's width \(128\)/,
      ],
      [
        bakeArgs(at("blank")).map((a) => (a === "You are a pirate." ? "  " : a)),
        /--prompt is empty/,
      ],
      [bakeArgs(at("many"), "--stim", "persona:1e9"), /count 1000000000 is more than \d+/],
    ];
    for (const [args, pattern] of cases) {
      const started = Date.now();
      expectExit(await forge(args), 2, pattern);
      expect(Date.now() - started).toBeLessThan(20_000);
    }
    for (const name of ["rank", "blank", "many"]) expect(existsSync(at(name))).toBe(false);
  });

  it("a prompt that looks like a number is baked as typed, not as the number", async () => {
    const out = at("numeric-prompt");
    const run = await forge([
      ...bakeArgs(out).map((a) => (a === "You are a pirate." ? "007" : a)),
      "--json",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(
      JSON.parse(readFileSync(path.join(out, "forge.json"), "utf8")).prompt.teacher[0].content,
    ).toBe("007");
  });

  it("a bad generation_config.json or a tokenizer beyond the vocabulary is blamed on its file", async () => {
    const broken = at("broken-generation");
    cpSync(model, broken, { recursive: true, dereference: true });
    writeFileSync(path.join(broken, "generation_config.json"), '{"temperature": "hot"}');
    expectExit(
      await forge(["generate", broken, "--user", "hi"]),
      2,
      /generation_config.json: temperature must be a number ≥ 0; got "hot"/,
    );
    const small = at("small-vocab");
    cpSync(model, small, { recursive: true, dereference: true });
    const config = JSON.parse(readFileSync(path.join(small, "config.json"), "utf8"));
    writeFileSync(path.join(small, "config.json"), JSON.stringify({ ...config, vocab_size: 500 }));
    expectExit(
      await forge(["generate", small, "--user", "hi"]),
      2,
      /small-vocab\/tokenizer.json: the tokenizer has ids up to \d+, but .*says vocab_size 500/,
    );
  });
});

describe("pursue's tasks are untrusted too", () => {
  it("a js scorer needs --allow-code, and never runs without it", async () => {
    const tasks = at("js-tasks");
    mkdirSync(tasks);
    const marker = at("js-tasks", "ran");
    writeFileSync(
      path.join(tasks, "scorer.mjs"),
      `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(marker)}, "ran");\nexport default () => 1;\n`,
    );
    writeFileSync(
      path.join(tasks, "task.yaml"),
      'name: js\nitems:\n  - { q: "Who are you?" }\nmessages:\n  - { role: user, content: "{q}" }\nscorer: { type: js, module: scorer.mjs }\n',
    );
    const args = [
      "pursue",
      "--model",
      model,
      "--prompt",
      "You are a pirate.",
      "--eval",
      path.join(tasks, "task.yaml"),
      "--out",
      at("js-pursuit"),
    ];
    expectExit(await forge(args), 2, /--allow-code/);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(at("js-pursuit"))).toBe(false);
  });
});

describe("every command that writes a directory claims it", () => {
  it("train, demo, drift, pursue, data and tokenizer refuse a user's directory, naming it", async () => {
    const users = at("users");
    mkdirSync(users);
    writeFileSync(path.join(users, "notes.md"), "mine");
    const corpus = at("corpus.txt");
    writeFileSync(corpus, "hello world\n".repeat(50));
    const cases: string[][] = [
      [
        "train",
        "--profile",
        "smoke",
        "--data",
        at("nope"),
        "--tokenizer",
        path.join(model),
        "--out",
        users,
        "--runs-dir",
        at("runs"),
      ],
      ["demo", "--report", users],
      ["drift", "--persona", "pirate", "--turns", "2", "--seeds", "1", "--out", users],
      [
        "pursue",
        "--model",
        model,
        "--prompt",
        "You are a pirate.",
        "--eval",
        path.join(model, "tasks", "persona-pirate.yaml"),
        "--out",
        users,
      ],
      ["data", "synth", "--out", users],
      ["tokenizer", "train", corpus, "--vocab-size", "300", "--out", users],
    ];
    for (const args of cases)
      expectExit(
        await forge(args),
        2,
        /users already exists and is not forge's output \(a directory holding notes.md\)/,
      );
    expect(readdirSync(users)).toEqual(["notes.md"]);
    expect(existsSync(at("runs"))).toBe(false); // train refused before it made its run
  });
});
