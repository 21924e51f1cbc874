/**
 * Nothing a user owns is lost (issue #14), through the real CLI: real git, a real bake of the
 * shipped forge-tiny, real detached processes (one killed with SIGKILL).
 */
import { execFile, execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge as forgeIn, type Run } from "../run-cli.js";

const TINY = FORGE_TINY_DIR;
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-recipe-safety-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const repo = path.join(dir, "bot");
const identity = {
  GIT_AUTHOR_NAME: "forge test",
  GIT_AUTHOR_EMAIL: "test@forge.invalid",
  GIT_COMMITTER_NAME: "forge test",
  GIT_COMMITTER_EMAIL: "test@forge.invalid",
};
const env = { FORGE_STORE: path.join(dir, "store"), ...identity };
const forge = (args: string[], cwd = repo) => forgeIn(args, env, undefined, cwd);
/** git's output as it is (file contents are compared byte for byte). */
const gitRaw = (cwd: string, ...args: string[]) =>
  execFileSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, ...env } });
const git = (...args: string[]) => gitRaw(repo, ...args).trim();

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

const input = (
  prompt: string,
  name: string,
  generator = "- type: list\n      items: [What is 12 plus 30?, Spell the word cat.]",
) => `PROMPT:
  teacher:
    - role: system
      content: ${prompt}
TARGET:
  generators:
    ${generator}
  rollout:
    samples: 1
    maxNewTokens: 16
BAKE:
  name: ${name}
  steps: 2
  batchSize: 2
  validationFraction: 0
`;

async function stage(text: string): Promise<void> {
  writeFileSync(path.join(repo, "input.yml"), text);
  expectOk(await forge(["add", "input.yml"]));
}

/** Whether a process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

beforeAll(async () => {
  expectOk(await forge(["init", "bot", "--base-model", TINY], dir));
}, 60_000);

describe("forge init never overwrites", () => {
  it("over an existing input.yml and a user's hook: exit 2 naming them, their bytes kept", async () => {
    const mine = path.join(dir, "mine");
    mkdirSync(mine);
    execFileSync("git", ["init", "-q"], { cwd: mine });
    writeFileSync(path.join(mine, "input.yml"), "my notes, not forge's\n");
    writeFileSync(path.join(mine, ".git", "hooks", "post-merge"), "#!/bin/sh\necho mine\n");
    const run = await forge(["init", "mine", "--base-model", TINY], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /forge init would overwrite files in .*mine: input.yml, \.git\/hooks\/post-merge; forge init never overwrites a file — move them away/,
    );
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(readFileSync(path.join(mine, "input.yml"), "utf8")).toBe("my notes, not forge's\n");
    expect(readFileSync(path.join(mine, ".git", "hooks", "post-merge"), "utf8")).toBe(
      "#!/bin/sh\necho mine\n",
    );
    expect(existsSync(path.join(mine, ".forge"))).toBe(false);
  }, 120_000);

  it("with no git identity: exit 2 before writing anything; a rerun with one succeeds", async () => {
    const home = path.join(dir, "empty-home");
    mkdirSync(home);
    // the user's environment without any git identity: no config, no GIT_* variables
    const bare = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^GIT_|^EMAIL$/.test(k)),
    );
    const run = await new Promise<Run>((resolve) => {
      execFile(
        process.execPath,
        [FORGE, "init", "nobody", "--base-model", TINY],
        {
          cwd: dir,
          env: {
            ...bare,
            NO_COLOR: "1",
            HOME: home,
            XDG_CONFIG_HOME: home,
            GIT_CONFIG_NOSYSTEM: "1",
            FORGE_STORE: env.FORGE_STORE,
          },
        },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code ?? 3) : 0, stdout, stderr }),
      );
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/git has no identity to commit with .*Nothing was written/);
    expect(existsSync(path.join(dir, "nobody"))).toBe(false);
    const again = await forge(["init", "nobody", "--base-model", TINY], dir);
    expectOk(again);
    expect(gitRaw(path.join(dir, "nobody"), "log", "--format=%s").trim()).toBe("forge init nobody");
  }, 120_000);
});

describe("forge run", () => {
  it("commits only forge's files, the baked input first; another staged file stays staged", async () => {
    const text = input("You are a pirate.", "pirate");
    await stage(text); // staged, not committed
    writeFileSync(path.join(repo, "notes.txt"), "mine, not forge's\n");
    git("add", "notes.txt");
    const run = await forge(["run", "stim", "rollout", "bake"]);
    expectOk(run);
    expect(run.stdout).toMatch(/commit [0-9a-f]{12}: Bake input: pirate/);
    expect(git("log", "-2", "--format=%s").split("\n")).toEqual([
      "Update recipe.yml after bake completion: pirate",
      "Bake input: pirate",
    ]);
    expect(gitRaw(repo, "show", "HEAD~1:input.yml")).toBe(text);
    expect(git("diff", "--cached", "--name-only")).toBe("notes.txt");
    expect(git("ls-tree", "--name-only", "HEAD").split("\n")).not.toContain("notes.txt");
    expect(git("status", "--porcelain")).toBe("A  notes.txt");
    const status = JSON.parse((await forge(["status", "--json"])).stdout);
    expect(status.parent).toBe("bot/pirate/2");
  }, 300_000);

  it("--detach on a cleared input fails before detaching", async () => {
    // the input was cleared by the bake above, and is staged that way
    const run = await forge(["run", "bake", "--detach"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/input.yml \(staged\) has no PROMPT/);
    expect(run.stdout).not.toMatch(/bake detached/);
    expect(JSON.parse((await forge(["status", "--json"])).stdout).jobs).toEqual([]);
    await stage(input("Again.", "pirate")); // a name already used
    const used = await forge(["run", "bake", "--detach"]);
    expect(used.code).toBe(2);
    expect(used.stderr).toMatch(/a bake named pirate is already in recipe.yml/);
  }, 120_000);

  it("a generator path outside the repository is refused, never printed; --allow-outside reads it", async () => {
    await stage(input("You are a robot.", "robot", "- type: file\n      path: ../../etc/passwd"));
    for (const args of [
      ["run", "stim"],
      ["run", "bake", "--detach"],
    ]) {
      const run = await forge(args);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(
        /input.yml \(staged\):\d+:\d+: TARGET.generators\[0\].path: "..\/..\/etc\/passwd" resolves outside the repository/,
      );
      expect(run.stderr).toMatch(/--allow-outside/);
      expect(run.stderr + run.stdout).not.toContain("root:");
      expect(run.stdout).not.toMatch(/bake detached/);
    }
    writeFileSync(path.join(dir, "questions.txt"), "What is the capital of Spain?\n");
    await stage(input("You are a robot.", "robot", "- type: file\n      path: ../questions.txt"));
    expect((await forge(["run", "stim"])).code).toBe(2);
    // stim.jsonl is written whole and renamed into place: never through whatever is there
    const { key } = JSON.parse((await forge(["status", "--json"])).stdout);
    const work = path.join(repo, ".git", "forge", "work", key);
    mkdirSync(work, { recursive: true });
    const victim = path.join(dir, "victim.txt");
    writeFileSync(victim, "the user's file\n");
    symlinkSync(victim, path.join(work, "stim.jsonl"));
    expectOk(await forge(["run", "stim", "--allow-outside"]));
    expect((await forge(["stim"])).stdout).toContain("What is the capital of Spain?");
    expect(readFileSync(victim, "utf8")).toBe("the user's file\n");
    expect(lstatSync(path.join(work, "stim.jsonl")).isSymbolicLink()).toBe(false);
  }, 120_000);

  it("an alias bomb staged as input.yml is exit 2 naming the file", async () => {
    const levels = "abcdefghi".split("");
    const bomb = levels
      .map((name, i) =>
        i === 0
          ? `${name}: &${name} [lol, lol, lol, lol, lol, lol, lol, lol, lol]`
          : `${name}: &${name} [${Array(9)
              .fill(`*${levels[i - 1]}`)
              .join(", ")}]`,
      )
      .join("\n");
    await stage(`${bomb}\n`);
    const run = await forge(["run", "stim"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/input.yml \(staged\):\d+:\d+: \(yaml\): \d+ aliases/);
    expect(run.stderr).not.toMatch(/internal error/);
  }, 120_000);
});

describe("a detached job killed with SIGKILL", () => {
  it("fails one fetch, naming it and its log; later fetches pass; status shows it until --clear-failed", async () => {
    await stage(input("You are a poet.", "poet"));
    const started = await forge(["run", "bake", "--detach"]);
    expectOk(started);
    const id = /job ([a-z0-9-]+) \(pid (\d+)\)/.exec(started.stdout)![1]!;
    const pid = Number(/\(pid (\d+)\)/.exec(started.stdout)![1]);
    process.kill(pid, "SIGKILL");
    for (let i = 0; i < 600 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(false);
    const log = path.join(repo, ".git", "forge", "jobs", `${id}.log`);
    expect(existsSync(log)).toBe(true);

    const first = await forge(["fetch"]);
    expect(first.code).toBe(1);
    expect(first.stdout).toContain(`job ${id}`);
    expect(first.stdout).toMatch(
      new RegExp(`its process \\(pid ${pid}\\) died before it finished`),
    );
    expect(first.stdout).toContain(log);
    const second = await forge(["fetch"]);
    expectOk(second);
    expect(second.stdout).toMatch(/no detached bakes to fetch/);
    expect(second.stdout).toMatch(/1 failed job reported earlier/);

    const json = JSON.parse((await forge(["status", "--json"])).stdout);
    expect(json.jobs).toMatchObject([{ id, status: "failed", reported: true, pid }]);
    const status = await forge(["status"]);
    expect(status.stdout).toMatch(new RegExp(`✗ job ${id} on main: failed`));
    expect(status.stdout).toMatch(/forge fetch --clear-failed removes failed jobs/);

    const cleared = await forge(["fetch", "--clear-failed"]);
    expectOk(cleared);
    expect(cleared.stdout).toMatch(new RegExp(`cleared job ${id} on main \\(failed: `));
    expect(existsSync(log)).toBe(false);
    expect(JSON.parse((await forge(["status", "--json"])).stdout).jobs).toEqual([]);
    expect((await forge(["fetch"])).stdout).toBe("no detached bakes to fetch\n");
  }, 120_000);
});
