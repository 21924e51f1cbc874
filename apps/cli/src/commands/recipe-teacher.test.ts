/**
 * BAKE.teacher in a bake repository: `forge run stim rollout bake` with the teacher behind
 * `forge serve` (real git, real HTTP on 127.0.0.1, real child processes, forge-tiny).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge as forgeIn, type Run } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-repo-teacher-"));
const repo = path.join(dir, "pirate-bot");
const env = {
  FORGE_STORE: path.join(dir, "store"),
  GIT_AUTHOR_NAME: "forge test",
  GIT_AUTHOR_EMAIL: "test@forge.invalid",
  GIT_COMMITTER_NAME: "forge test",
  GIT_COMMITTER_EMAIL: "test@forge.invalid",
};
const forge = (args: string[], cwd = repo) => forgeIn(args, env, undefined, cwd);
let server: ChildProcess | undefined;
let url = "";
afterAll(() => {
  server?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

/** Every file under `root` whose name is `name`. */
function find(root: string, name: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(root)) {
    const full = path.join(root, entry);
    if (statSync(full).isDirectory()) out.push(...find(full, name));
    else if (entry === name) out.push(full);
  }
  return out;
}

beforeAll(async () => {
  expectOk(await forge(["init", "pirate-bot", "--base-model", FORGE_TINY_DIR], dir));
  url = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [FORGE, "serve", "forge-tiny", "--port", "0"], {
      env: { ...process.env, NO_COLOR: "1", FORGE_BACKEND: "" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    server = child;
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const match = /at (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`forge serve exited (${code})`)));
  });
}, 120_000);

describe("BAKE.teacher", () => {
  it("writes self stimuli and the rollout through the endpoint and bakes on its top-K", async () => {
    writeFileSync(
      path.join(repo, "input.yml"),
      `PROMPT:
  teacher:
    - role: system
      content: You are a pirate.
TARGET:
  generators:
    - { type: self, count: 3 }
    - type: list
      items: [What is 12 plus 30?, What is the capital of France?, Spell the word cat.]
  rollout:
    samples: 2
    maxNewTokens: 24
BAKE:
  name: pirate
  steps: 3
  batchSize: 4
  validationFraction: 0
  teacher: { url: "${url}", model: forge-tiny, concurrency: 4 }
`,
    );
    expectOk(await forge(["add", "input.yml"]));
    expectOk(await forge(["commit", "-m", "pirate with a remote teacher"]));
    const run = await forge(["run", "stim", "rollout", "bake"]);
    expectOk(run);
    expect(run.stdout).toMatch(/model: pirate-bot\/pirate\/3/);
    const rollouts = find(path.join(repo, ".git", "forge", "work"), "rollout.jsonl");
    expect(rollouts.length).toBeGreaterThan(0);
    const trajectories = readFileSync(rollouts[0]!, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(trajectories.length).toBeGreaterThanOrEqual(8);
    for (const t of trajectories) expect(t.topK.ids[0]).toHaveLength(20);
    const stimuli = find(path.join(repo, ".git", "forge", "work"), "stim.jsonl").map((f) =>
      readFileSync(f, "utf8"),
    );
    expect(stimuli.join("")).toContain('"source":"self"');
    const records = find(env.FORGE_STORE, "forge.json")
      .map((f) => JSON.parse(readFileSync(f, "utf8")))
      .filter((r) => r.kind === "bake");
    expect(records.length).toBeGreaterThan(0);
    expect(records[0].teacher).toMatchObject({ url, model: "forge-tiny" });
    expect(records[0].bake.loss).toBe("topk");
  });
});
