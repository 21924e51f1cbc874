/**
 * Bake repositories through the real CLI: real git, real bakes of the shipped forge-tiny
 * (small settings), a real detached background process.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forge as forgeIn, type Run } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-repo-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const repo = path.join(dir, "pirate-bot");
const env = {
  FORGE_STORE: path.join(dir, "store"),
  GIT_AUTHOR_NAME: "forge test",
  GIT_AUTHOR_EMAIL: "test@forge.invalid",
  GIT_COMMITTER_NAME: "forge test",
  GIT_COMMITTER_EMAIL: "test@forge.invalid",
};
const forge = (args: string[], cwd = repo, input?: string) => forgeIn(args, env, input, cwd);
const git = (...args: string[]) =>
  execFileSync("git", args, {
    cwd: repo,
    encoding: "utf8",
    env: { ...process.env, ...env },
  }).trim();

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

const input = (prompt: string, name: string) => `PROMPT:
  teacher:
    - role: system
      content: ${prompt}
TARGET:
  generators:
    - type: list
      items: [What is 12 plus 30?, What is the capital of France?, Spell the word cat., What is the opposite of hot?]
  rollout:
    samples: 1
    maxNewTokens: 24
BAKE:
  name: ${name}
  steps: 3
  batchSize: 4
  validationFraction: 0
`;

async function stage(prompt: string, name: string): Promise<void> {
  writeFileSync(path.join(repo, "input.yml"), input(prompt, name));
  expectOk(await forge(["add", "input.yml"]));
  expectOk(await forge(["commit", "-m", `${name} prompt`]));
}

beforeAll(async () => {
  expectOk(await forge(["init", "pirate-bot", "--base-model", TINY], dir));
}, 30_000);

describe("forge init, add, commit, run", () => {
  it("bakes the staged input: model in the store, recipe, state, input cleared, one commit", async () => {
    await stage("You are a pirate.", "pirate");
    const run = await forge(["run", "stim", "rollout", "bake"]);
    expectOk(run);
    expect(run.stdout).toMatch(/model: pirate-bot\/pirate\/3/);
    expect(run.stdout).toMatch(
      /loss: latest \d\.\d{4}, final \d\.\d{4}, min \d\.\d{4}, max \d\.\d{4}/,
    );
    expect(git("log", "-1", "--format=%s")).toBe("Update recipe.yml after bake completion: pirate");
    expect(readFileSync(path.join(repo, ".forge"), "utf8")).toMatch(
      /PARENT_MODEL: pirate-bot\/pirate\/3/,
    );
    expect(readFileSync(path.join(repo, "input.yml"), "utf8")).not.toMatch(/content:/);
    const stored = path.join(env.FORGE_STORE, "refs", "pirate-bot", "pirate");
    expect(existsSync(path.join(stored, "3.json"))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(stored, "3.manifest.json"), "utf8"))).toMatchObject({
      run: { kind: "bake", status: "succeeded" },
      repository: { branch: "main" },
    });

    const status = await forge(["status"]);
    expectOk(status);
    expect(status.stdout).toMatch(/parent model: pirate-bot\/pirate\/3/);
    const models = await forge(["models"]);
    expect(models.stdout).toMatch(/pirate-bot\/pirate\/3/);
    const targets = await forge(["target", "ls"]);
    expect(targets.stdout).toMatch(/^target-[0-9a-f]{8}\s+list\s+stim 4\s+rollout 4/m);
    const chat = await forge(
      ["chat", "pirate-bot/pirate/3", "--temperature", "0"],
      repo,
      "What is the capital of France?\n/quit\n",
    );
    expectOk(chat);
    expect(chat.stdout.length).toBeGreaterThan(0);
  }, 180_000);

  it("a second bake chains PARENT_MODEL; stim and rollout outputs are readable; the tree shows branches", async () => {
    git("checkout", "-q", "-b", "robot");
    await stage("You are a robot.", "robot");
    expectOk(await forge(["run", "stim"]));
    expect((await forge(["stim", "--count"])).stdout.trim()).toBe("4");
    expectOk(await forge(["run", "rollout"]));
    const rollouts = await forge(["rollout", "--limit", "1"]);
    expect(rollouts.stdout.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(rollouts.stdout)).toHaveProperty("tokenIds");
    expectOk(await forge(["run", "bake"]));
    const recipe = readFileSync(path.join(repo, "recipe.yml"), "utf8");
    expect(recipe).toMatch(/name: robot\n\s+parent: pirate-bot\/pirate\/3/);
    const tree = await forge(["tree"], repo);
    expectOk(tree);
    expect(tree.stdout).toContain(
      [
        "└── pirate [main]",
        "    │ └─ pirate-bot/pirate/3",
        "    └── robot [robot]",
        "          └─ pirate-bot/robot/3",
      ].join("\n"),
    );
    expect(tree.stdout.includes("\u001b[")).toBe(false); // NO_COLOR
  }, 180_000);

  it("a detached bake keeps the lock, survives a branch switch, and fetch commits it on its branch", async () => {
    git("checkout", "-q", "main");
    await stage("You are a poet.", "poet");
    const started = await forge(["run", "bake", "--detach"]);
    expectOk(started);
    const pid = /\(pid (\d+)\)/.exec(started.stdout)![1];
    const locked = await forge(["run", "stim"]);
    expect(locked.code).toBe(2);
    expect(locked.stderr).toMatch(
      new RegExp(`this repository \\(.*\\) is held by another forge process: pid ${pid}`),
    );
    git("checkout", "-q", "-b", "elsewhere");
    for (let i = 0; i < 240; i++) {
      const status = JSON.parse((await forge(["status", "--json"])).stdout);
      if (status.jobs.every((j: { status: string }) => j.status !== "running")) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const fetched = await forge(["fetch"]);
    expectOk(fetched);
    expect(fetched.stdout).toMatch(/poet → pirate-bot\/poet\/3 committed on main/);
    expect(git("log", "-1", "--format=%s", "main")).toBe(
      "Update recipe.yml after bake completion: poet",
    );
    expect(git("rev-parse", "--abbrev-ref", "HEAD")).toBe("elsewhere");
  }, 240_000);
});

describe("bad input and scraping", () => {
  it("outside a git repository; a malformed input.yml; an unknown operation", async () => {
    const plain = path.join(dir, "plain");
    mkdirSync(plain, { recursive: true });
    const outside = await forge(["status"], plain);
    expect(outside.code).toBe(2);
    expect(outside.stderr).toMatch(/is not a git repository: run forge init <name>/);
    git("checkout", "-q", "main");
    writeFileSync(path.join(repo, "input.yml"), "PROMPT:\n  teacher: [\n");
    expectOk(await forge(["add", "input.yml"]));
    const bad = await forge(["run", "stim"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/input.yml \(staged\):\d+:\d+: \(yaml\)/);
    const op = await forge(["run", "cook"]);
    expect(op.code).toBe(2);
    expect(op.stderr).toMatch(/unknown operation "cook"; accepted: stim, rollout, bake/);
    const name = await forge(["init", "bad name"], dir);
    expect(name.code).toBe(2);
    expect(name.stderr).toMatch(/repository name "bad name" is not allowed/);
  });

  it("scrape: every commit as JSONL, and token windows for training", async () => {
    const out = path.join(dir, "commits.jsonl");
    const run = await forge(
      [
        "scrape",
        repo,
        "--out",
        out,
        "--sequences",
        path.join(dir, "seq"),
        "--tokenizer",
        TINY,
        "--block-size",
        "64",
        "--overlap",
        "8",
        "--json",
      ],
      dir,
    );
    expectOk(run);
    const summary = JSON.parse(run.stdout);
    const lines = readFileSync(out, "utf8").trim().split("\n");
    expect(lines).toHaveLength(Number(git("rev-list", "--all", "--count")));
    expect(summary.commits).toBe(lines.length);
    expect(summary.windows).toBeGreaterThan(lines.length);
    expect(existsSync(path.join(dir, "seq", "pretrain-train", "meta.json"))).toBe(true);
    expect(Object.keys(JSON.parse(lines[0]!)).length).toBeGreaterThanOrEqual(30);
  });
});
