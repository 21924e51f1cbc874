/**
 * Bake repositories with real git in temp directories. The runner here writes real files
 * (stimuli, rollouts, a model directory) without a model: this package never loads one; the
 * CLI's tests run the same flow with real bakes of forge-tiny.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { acquireLock } from "@forge/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clearedInput } from "./input.js";
import { parseRecipe, parseState } from "./recipe.js";
import { BakeRepo } from "./repo.js";
import type { Runner } from "./runner.js";
import { ModelStore } from "./store.js";
import { buildTree, formatTree } from "./tree.js";

const HOOK = fileURLToPath(new URL("../dist/hook-main.js", import.meta.url));
const INDEX = fileURLToPath(new URL("../dist/index.js", import.meta.url));
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-recipe-"));
const store = new ModelStore(path.join(dir, "store"));
const base = path.join(dir, "base-model");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  for (const [k, v] of Object.entries({
    GIT_AUTHOR_NAME: "forge test",
    GIT_AUTHOR_EMAIL: "test@forge.invalid",
    GIT_COMMITTER_NAME: "forge test",
    GIT_COMMITTER_EMAIL: "test@forge.invalid",
  }))
    process.env[k] = v;
  mkdirSync(base, { recursive: true });
  writeFileSync(path.join(base, "config.json"), '{"model_type":"gpt2"}');
  writeFileSync(path.join(base, "weights.bin"), "base");
  if (!existsSync(HOOK)) throw new Error(`build @forge/git-recipe first: ${HOOK} is missing`);
});

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", args, { cwd, encoding: "utf8" }).trim();

/**
 * The runner: writes stimuli from `list` generators, one rollout per stimulus, and a model
 * directory whose weights record the chain of prompts. A JS module on disk, so a detached
 * job's child process runs exactly the same code.
 */
const RUNNER = `import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
export const fileRunner = (seen = { prompts: [], parents: [] }) => ({
  generators: ["list", "persona"],
  async stim(job, progress) {
    const items = job.target.generators.flatMap((g) => (g.type === "list" ? g.items : ["Who are you?"]));
    writeFileSync(job.stimFile, items.map((q, i) => JSON.stringify({ id: "s" + i, q })).join("\\n"));
    progress(items.length, items.length);
    seen.prompts.push(job.prompt.teacher[0].content);
    return items.length;
  },
  async rollout(job) {
    const lines = readFileSync(job.stimFile, "utf8").split("\\n");
    writeFileSync(job.rolloutFile, lines.map((l) => l + " -> answer").join("\\n"));
    return lines.length;
  },
  async bake(job, progress) {
    seen.parents.push(job.parentModel);
    const model = path.join(job.outDir, "model");
    mkdirSync(model, { recursive: true });
    writeFileSync(path.join(model, "config.json"), readFileSync(path.join(job.parentDir, "config.json")));
    const parent = readFileSync(path.join(job.parentDir, "weights.bin"), "utf8");
    writeFileSync(path.join(model, "weights.bin"), parent + " + " + job.prompt.teacher[0].content);
    progress(3, 3);
    return { modelDir: model, steps: 3, losses: [0.9, 0.5, 0.6] };
  },
});
`;
const runnerFile = path.join(dir, "runner.mjs");
let fileRunner: (seen?: { prompts: string[]; parents: (string | null)[] }) => Runner;
beforeAll(async () => {
  writeFileSync(runnerFile, RUNNER);
  fileRunner = (await import(runnerFile)).fileRunner;
});

const input = (prompt: string, name: string, extra = "") => `PROMPT:
  teacher:
    - role: system
      content: ${prompt}
TARGET:
  generators:
    - type: list
      items: [Hi, What is 2 + 2?]
BAKE:
  name: ${name}
  epochs: 1
${extra}`;

async function newRepo(name: string): Promise<BakeRepo> {
  return BakeRepo.init(path.join(dir, name), name, {
    baseModel: base,
    hookCommand: [process.execPath, HOOK],
    store,
  });
}

async function stageAndCommit(repo: BakeRepo, text: string, message: string): Promise<void> {
  writeFileSync(path.join(repo.root, "input.yml"), text);
  await repo.add(["input.yml"]);
  await repo.commit(message);
}

describe("a bake repository", () => {
  it("init → edit → add → commit → run: recipe, state and input.yml as specified; bakes chain", async () => {
    const repo = await newRepo("persona");
    for (const file of ["input.yml", "recipe.yml", ".forge", ".gitattributes"])
      expect(existsSync(path.join(repo.root, file))).toBe(true);
    expect(git(repo.root, "config", "merge.forge-keep-theirs.driver")).toBe("cp -f %B %A");
    expect(git(repo.root, "log", "--format=%s")).toBe("forge init persona");

    await stageAndCommit(repo, input("You are a pirate.", "pirate"), "pirate prompt");
    // the pre-commit hook recorded the staged section hashes, in the same commit
    const committedState = parseState(git(repo.root, "show", "HEAD:.forge"));
    expect(committedState.STAGED.prompt).toMatch(/^[0-9a-f]{16}$/);

    const seen = { prompts: [] as string[], parents: [] as (string | null)[] };
    const first = await repo.run(["stim", "rollout", "bake"], fileRunner(seen));
    expect(first.ran).toEqual(["stim", "rollout", "bake"]);
    expect(first.bake).toMatchObject({
      name: "pirate",
      models: ["persona/pirate/3"],
      parent: base,
      losses: { latest: 0.6, final: 0.6, min: 0.5, max: 0.9 },
    });
    expect(git(repo.root, "log", "-1", "--format=%s")).toBe(
      "Update recipe.yml after bake completion: pirate",
    );
    expect(git(repo.root, "status", "--porcelain")).toBe("");
    const recipe = parseRecipe(readFileSync(path.join(repo.root, "recipe.yml"), "utf8"));
    expect(recipe.bakes).toHaveLength(1);
    expect(recipe.bakes[0]).toMatchObject({
      name: "pirate",
      parent: base,
      models: ["persona/pirate/3"],
    });
    expect(readFileSync(path.join(repo.root, "recipe.yml"), "utf8")).toMatch(
      /^# recipe.yml — GENERATED BY FORGE, READ-ONLY/,
    );
    const state = await repo.readState();
    expect(state.PARENT_MODEL).toBe("persona/pirate/3");
    expect(readFileSync(path.join(repo.root, "input.yml"), "utf8")).toBe(clearedInput());
    expect(
      readFileSync(path.join((await store.get("persona/pirate/3")).dir, "weights.bin"), "utf8"),
    ).toBe("base + You are a pirate.");

    await stageAndCommit(repo, input("Say matey.", "matey"), "second bake");
    const second = await repo.run(["bake"], fileRunner(seen));
    expect(second.ran).toEqual(["stim", "rollout", "bake"]); // missing phases run first
    expect(second.bake!.parent).toBe("persona/pirate/3");
    expect(seen.parents).toEqual([base, "persona/pirate/3"]);
    expect(
      readFileSync(path.join((await store.get("persona/matey/3")).dir, "weights.bin"), "utf8"),
    ).toBe("base + You are a pirate. + Say matey.");
    expect((await repo.readRecipe()).bakes.map((b) => b.name)).toEqual(["pirate", "matey"]);
    const status = await repo.status();
    expect(status.parent).toBe("persona/matey/3");
  });

  it("bake refuses unstaged changes; stim reads the staged input, not the working file", async () => {
    const repo = await newRepo("staging");
    await stageAndCommit(repo, input("You are a robot.", "robot"), "robot");
    writeFileSync(path.join(repo.root, "input.yml"), input("You are a cat.", "cat"));
    await expect(repo.run(["bake"], fileRunner())).rejects.toThrow(
      /needs every change staged; unstaged: input.yml/,
    );
    const seen = { prompts: [] as string[], parents: [] as (string | null)[] };
    await repo.run(["stim"], fileRunner(seen));
    expect(seen.prompts).toEqual(["You are a robot."]);
    expect((await repo.outputs("stim")).length).toBe(2);
    expect((await repo.targets()).length).toBe(1);
  });

  it("two branches bake independently; merging keeps the incoming state and recipe; the tree joins them", async () => {
    const repo = await newRepo("branches");
    await stageAndCommit(repo, input("You are a pirate.", "pirate"), "pirate");
    await repo.run(["bake"], fileRunner());
    git(repo.root, "checkout", "-q", "-b", "robot");
    await stageAndCommit(repo, input("You are a robot.", "robot"), "robot");
    await repo.run(["bake"], fileRunner());
    git(repo.root, "checkout", "-q", "main");
    git(repo.root, "checkout", "-q", "-b", "poet");
    await stageAndCommit(repo, input("You are a poet.", "poet"), "poet");
    await repo.run(["bake"], fileRunner());
    git(repo.root, "checkout", "-q", "main");
    await stageAndCommit(repo, input("Be brief.", "brief"), "brief");
    await repo.run(["bake"], fileRunner());

    const tree = formatTree(buildTree(await repo.branchRecipes()));
    expect(tree).toBe(
      [
        "Model tree for branches (3 branches)",
        `Base model: ${base}`,
        "└── pirate",
        "    │ └─ branches/pirate/3",
        "    ├── brief [main]",
        "    │     └─ branches/brief/3",
        "    ├── poet [poet]",
        "    │     └─ branches/poet/3",
        "    └── robot [robot]",
        "          └─ branches/robot/3",
      ].join("\n"),
    );

    git(repo.root, "merge", "-q", "--no-edit", "robot");
    for (const file of [".forge", "recipe.yml"]) {
      const merged = readFileSync(path.join(repo.root, file), "utf8");
      expect(merged).not.toMatch(/^(<<<<<<<|>>>>>>>|=======)/m);
      expect(merged).toBe(git(repo.root, "show", `robot:${file}`) + "\n");
    }
    expect((await repo.readState()).PARENT_MODEL).toBe("branches/robot/3");
  });

  it("the post-merge hook repairs a merge made without the merge driver configured", async () => {
    const repo = await newRepo("nodriver");
    git(repo.root, "config", "--remove-section", "merge.forge-keep-theirs");
    await stageAndCommit(repo, input("You are a pirate.", "pirate"), "pirate");
    git(repo.root, "checkout", "-q", "-b", "exp");
    await repo.run(["bake"], fileRunner()); // exp: PARENT_MODEL, recipe, STAGED cleared
    git(repo.root, "checkout", "-q", "main");
    // main changes another part of .forge only: git's line merge would mix the two versions
    await stageAndCommit(repo, input("You are a robot.", "robot"), "robot prompt");
    // Without the driver git merges .forge line by line; -X ours settles the overlapping
    // hunks for main, as a careless merge would: the merge succeeds with the wrong state.
    git(repo.root, "merge", "-q", "--no-edit", "-X", "ours", "exp");
    expect(git(repo.root, "log", "-1", "--format=%s")).toMatch(/^Keep the incoming .forge/);
    expect(readFileSync(path.join(repo.root, ".forge"), "utf8")).toBe(
      `${git(repo.root, "show", "exp:.forge")}\n`,
    );
    expect(readFileSync(path.join(repo.root, "recipe.yml"), "utf8")).toBe(
      `${git(repo.root, "show", "exp:recipe.yml")}\n`,
    );
  });

  it("a detached bake survives a branch switch; fetch commits it on the branch it started from", async () => {
    const repo = await newRepo("detached");
    await stageAndCommit(repo, input("You are a pirate.", "pirate"), "pirate");
    const script = path.join(dir, "job.mjs");
    writeFileSync(
      script,
      `import { BakeRepo, ModelStore } from ${JSON.stringify(INDEX)};
import { fileRunner } from ${JSON.stringify(runnerFile)};
const [root, storeRoot, id] = process.argv.slice(2);
const repo = await BakeRepo.open(root, { store: new ModelStore(storeRoot) });
await new Promise((r) => setTimeout(r, 300));
await repo.runJob(id, fileRunner());
`,
    );
    let child: ReturnType<typeof spawn> | undefined;
    const started = await repo.run(["bake"], fileRunner(), {
      detach: true,
      spawnDetached: (id) => {
        child = spawn(process.execPath, [script, repo.root, store.root, id], {
          stdio: "ignore",
          env: process.env,
        });
        return child.pid!;
      },
    });
    expect(started.job!.status).toBe("running");
    git(repo.root, "checkout", "-q", "-b", "elsewhere");
    await new Promise<void>((resolve) => child!.on("exit", () => resolve()));
    const { fetched } = await repo.fetch();
    expect(fetched.map((j) => j.branch)).toEqual(["main"]);
    expect(git(repo.root, "log", "-1", "--format=%s", "main")).toBe(
      "Update recipe.yml after bake completion: pirate",
    );
    expect(git(repo.root, "rev-parse", "--abbrev-ref", "HEAD")).toBe("elsewhere");
    expect(parseState(git(repo.root, "show", "main:.forge")).PARENT_MODEL).toBe(
      "detached/pirate/3",
    );
    expect(git(repo.root, "show", "main:input.yml")).toBe(clearedInput().trimEnd());
    expect(git(repo.root, "log", "-1", "--format=%s", "elsewhere")).toBe("pirate");
    expect((await repo.fetch()).fetched).toHaveLength(0); // fetched once
  });
});

describe("bad input", () => {
  it("not a git repository, not a bake repository", async () => {
    const plain = path.join(dir, "plain");
    mkdirSync(plain, { recursive: true });
    await expect(BakeRepo.open(plain)).rejects.toThrow(/is not a git repository: run forge init/);
    git(plain, "init", "-q");
    await expect(BakeRepo.open(plain)).rejects.toThrow(/not a bake repository \(no .forge\)/);
  });

  it("names with spaces, quotes, ; or .. are refused before reaching git or the disk", async () => {
    for (const name of ["my repo", 'say"hi', "a;rm -rf", "..", "../up", "x/y"]) {
      await expect(
        BakeRepo.init(path.join(dir, "names", String(Math.random())), name, { store }),
      ).rejects.toThrow(/is not allowed: use 1–64 letters/);
    }
    expect(existsSync(path.join(dir, "up"))).toBe(false);
    const repo = await newRepo("badnames");
    await stageAndCommit(repo, input("x", "ok"), "ok");
    await expect(repo.add(["../../etc/passwd"])).rejects.toThrow(/outside the repository/);
    await expect(store.get("a/../b/1")).rejects.toThrow(/is not a model id/);
  });

  it("missing base model; malformed input.yml with line and column; unknown generator", async () => {
    await expect(
      BakeRepo.init(path.join(dir, "nobase"), "nobase", {
        baseModel: path.join(dir, "nope"),
        store,
      }),
    ).rejects.toThrow(/--base-model .*nope: no model there/);
    const repo = await newRepo("malformed");
    writeFileSync(path.join(repo.root, "input.yml"), input("x", "ok", "  epochz: 2\n"));
    await repo.add(["input.yml"]);
    await expect(repo.commit("bad")).rejects.toThrow(
      /input.yml \(staged\):12:3: BAKE.epochz: unknown key "epochz"/,
    );
    writeFileSync(
      path.join(repo.root, "input.yml"),
      input("x", "ok").replace("type: list", "type: webcrawl"),
    );
    await repo.add(["input.yml"]);
    await expect(repo.run(["stim"], fileRunner())).rejects.toThrow(
      /input.yml \(staged\):7:13: TARGET.generators\[0\].type: unknown generator "webcrawl"; accepted: list, persona/,
    );
  });

  it("two runs at once: the second refuses with the holder's pid", async () => {
    const repo = await newRepo("locked");
    await stageAndCommit(repo, input("x", "ok"), "ok");
    const holder = spawn("sleep", ["30"]);
    const lock = acquireLock(path.join(repo.root, ".git", "forge", "run.lock"), "forge run bake", {
      pid: holder.pid!,
    });
    try {
      await expect(repo.run(["stim"], fileRunner())).rejects.toThrow(
        new RegExp(
          `this repository \\(.*\\) is held by another forge process: pid ${holder.pid} \\(forge run bake`,
        ),
      );
    } finally {
      holder.kill();
      await new Promise((r) => holder.on("exit", r));
    }
    // the holder is gone: its lock is stale and the next run takes it
    await expect(repo.run(["stim"], fileRunner())).resolves.toMatchObject({ ran: ["stim"] });
    lock.release();
  });
});
