/**
 * Nothing a user owns is lost (issue #14), with real git in temp directories and real child
 * processes: init never overwrites and cleans up after itself, bake commits name their paths
 * and keep the baked input, paths from input.yml stay inside the repository, YAML is bounded,
 * a detached bake validates before it leaves, a killed job is reported once and can be cleared,
 * and a finished operation's status is never overwritten by a late progress write.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { exitCodeFor } from "@forge/core";
import { describe, expect, it } from "vitest";
import * as api from "./index.js";
import { clearedInput, INPUT_TEMPLATE, parseInput, sectionHashes } from "./input.js";
import { parseRecipe, parseState } from "./recipe.js";
import { BakeRepo } from "./repo.js";
import { ModelStore } from "./store.js";
import { bakeRepoHarness, failure, git, gitRaw, input, stage } from "./test-support.js";

const { dir, store, base, fileRunner, newRepo, detach } = bakeRepoHarness("forge-recipe-safety-");

/** Merge settings in a repository's config ("" when there are none). */
const mergeConfig = (cwd: string) => {
  try {
    return git(cwd, "config", "--get-regexp", "^merge\\.");
  } catch {
    return ""; // git config exits 1 when nothing matches
  }
};

describe("one base: @forge/core's lock and atomic writes", () => {
  it("git-recipe keeps no lock or liveness check of its own", () => {
    for (const name of ["acquireLock", "readLock", "processAlive"])
      expect(api, name).not.toHaveProperty(name);
  });

  it("the model store never writes through a fixed temporary name", async () => {
    // Someone (or something) left links at the names a fixed-name writer would use: a write
    // through them would replace the file they point at.
    const victim = path.join(dir, "victim.txt");
    writeFileSync(victim, "the user's file\n");
    const own = new ModelStore(path.join(dir, "store-tmp"));
    const refs = path.join(own.root, "refs", "bot", "pirate");
    mkdirSync(refs, { recursive: true });
    symlinkSync(victim, path.join(refs, `3.json.${process.pid}.tmp`));
    symlinkSync(victim, path.join(refs, "3.manifest.json.tmp"));
    await own.put("bot/pirate/3", base);
    await own.attach("bot/pirate/3", "manifest.json", '{"run":{}}\n');
    expect(readFileSync(victim, "utf8")).toBe("the user's file\n");
    expect(readFileSync(path.join(refs, "3.manifest.json"), "utf8")).toBe('{"run":{}}\n');
    expect((await own.get("bot/pirate/3")).dir).toMatch(/objects\/[0-9a-f]{64}$/);
  });
});

describe("init never overwrites, and cleans up after itself", () => {
  it("refuses existing files it would write, naming them, and keeps their bytes", async () => {
    const root = path.join(dir, "existing");
    mkdirSync(root);
    git(root, "init", "-q", "--initial-branch=main");
    writeFileSync(path.join(root, "input.yml"), "my own input\n");
    writeFileSync(path.join(root, ".git", "hooks", "pre-commit"), "#!/bin/sh\necho mine\n");
    writeFileSync(path.join(root, "notes.txt"), "unrelated\n");
    const error = await failure(
      BakeRepo.init(root, "existing", { baseModel: base, store, hookCommand: ["true"] }),
    );
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toMatch(
      /forge init would overwrite files in .*existing: input.yml, \.git\/hooks\/pre-commit; forge init never overwrites a file/,
    );
    expect(readFileSync(path.join(root, "input.yml"), "utf8")).toBe("my own input\n");
    expect(readFileSync(path.join(root, ".git", "hooks", "pre-commit"), "utf8")).toBe(
      "#!/bin/sh\necho mine\n",
    );
    for (const file of [".forge", "recipe.yml", ".gitattributes", ".git/hooks/post-merge"])
      expect(existsSync(path.join(root, file)), file).toBe(false);
    expect(mergeConfig(root)).toBe("");
  });

  it("inits an existing repository with other files; what the user staged stays staged", async () => {
    const root = path.join(dir, "adopted");
    mkdirSync(root);
    git(root, "init", "-q", "--initial-branch=main");
    writeFileSync(path.join(root, "notes.txt"), "unrelated\n");
    git(root, "add", "notes.txt");
    const repo = await BakeRepo.init(root, "adopted", {
      baseModel: base,
      store,
      hookCommand: ["true"],
    });
    expect(git(repo.root, "show", "--name-only", "--format=", "HEAD").split("\n").sort()).toEqual([
      ".forge",
      ".gitattributes",
      "input.yml",
      "recipe.yml",
    ]);
    expect(git(repo.root, "status", "--porcelain")).toBe("A  notes.txt");
  });

  it("a failure midway removes exactly what init created; running it again works", async () => {
    // An existing repository whose commits cannot be made (signing with a program that fails):
    // every file is written before the commit fails.
    const root = path.join(dir, "unsigned");
    mkdirSync(root);
    git(root, "init", "-q", "--initial-branch=main");
    git(root, "config", "commit.gpgsign", "true");
    git(root, "config", "gpg.program", "false");
    writeFileSync(path.join(root, "notes.txt"), "unrelated\n");
    git(root, "add", "notes.txt");
    const options = { baseModel: base, store, hookCommand: ["true"] };
    const error = await failure(BakeRepo.init(root, "unsigned", options));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toMatch(/forge init unsigned failed: .*it removed what it had created/);
    for (const file of ["input.yml", ".forge", "recipe.yml", ".gitattributes"])
      expect(existsSync(path.join(root, file)), file).toBe(false);
    for (const hook of ["pre-commit", "post-merge"])
      expect(existsSync(path.join(root, ".git", "hooks", hook)), hook).toBe(false);
    expect(existsSync(path.join(root, ".git"))).toBe(true); // the user's, not init's
    expect(mergeConfig(root)).toBe("");
    expect(git(root, "status", "--porcelain")).toBe("A  notes.txt");
    git(root, "config", "commit.gpgsign", "false");
    const repo = await BakeRepo.init(root, "unsigned", options);
    expect(git(repo.root, "log", "--format=%s")).toBe("forge init unsigned");

    // a directory init made itself goes entirely, .git included
    const global = path.join(dir, "signing.gitconfig");
    writeFileSync(global, "[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = false\n");
    const saved = process.env.GIT_CONFIG_GLOBAL;
    process.env.GIT_CONFIG_GLOBAL = global;
    try {
      const fresh = path.join(dir, "made", "here");
      await failure(BakeRepo.init(fresh, "here", options));
      expect(existsSync(path.join(dir, "made"))).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.GIT_CONFIG_GLOBAL;
      else process.env.GIT_CONFIG_GLOBAL = saved;
    }
    const again = await BakeRepo.init(path.join(dir, "made", "here"), "here", options);
    expect(git(again.root, "log", "--format=%s")).toBe("forge init here");
  });

  it("a .git that git cannot use is refused before anything is written", async () => {
    const root = path.join(dir, "broken");
    mkdirSync(root);
    writeFileSync(path.join(root, ".git"), "gitdir: /nowhere\n");
    const error = await failure(BakeRepo.init(root, "broken", { baseModel: base, store }));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toMatch(
      /broken\/\.git is there but git cannot use it \(fatal: .*\); nothing was written/,
    );
    expect(readdirSync(root)).toEqual([".git"]);
  });

  it("installHooks after a clone leaves a hook forge did not install alone", async () => {
    const repo = await newRepo("hooks");
    const hook = path.join(repo.root, ".git", "hooks", "post-merge");
    writeFileSync(hook, "#!/bin/sh\necho mine\n");
    const error = await failure(repo.installHooks(["forge"]));
    expect(error.message).toMatch(
      /post-merge is a hook forge did not install: forge leaves it alone/,
    );
    expect(readFileSync(hook, "utf8")).toBe("#!/bin/sh\necho mine\n");
  });
});

describe("bake commits name their paths and keep the baked input", () => {
  it("a staged input is committed as baked, then cleared; another staged file stays staged", async () => {
    const repo = await newRepo("staged");
    const text = input("You are a pirate.", "pirate");
    await stage(repo, text); // staged, never committed
    writeFileSync(path.join(repo.root, "notes.txt"), "mine, not forge's\n");
    git(repo.root, "add", "notes.txt");
    const { bake } = await repo.run(["bake"], fileRunner());
    expect(git(repo.root, "log", "-3", "--format=%s").split("\n")).toEqual([
      "Update recipe.yml after bake completion: pirate",
      "Bake input: pirate",
      "forge init staged",
    ]);
    expect(bake!.inputCommit).toBe(git(repo.root, "rev-parse", "HEAD~1"));
    expect(bake!.commit).toBe(git(repo.root, "rev-parse", "HEAD"));
    expect(gitRaw(repo.root, "show", `${bake!.inputCommit}:input.yml`)).toBe(text);
    expect(parseState(gitRaw(repo.root, "show", `${bake!.inputCommit}:.forge`)).STAGED).toEqual(
      sectionHashes(parseInput(text)),
    );
    expect(git(repo.root, "show", "--name-only", "--format=", "HEAD~1").split("\n")).toEqual([
      ".forge",
      "input.yml",
    ]);
    expect(git(repo.root, "show", "--name-only", "--format=", "HEAD").split("\n")).toEqual([
      ".forge",
      "input.yml",
      "recipe.yml",
    ]);
    expect(gitRaw(repo.root, "show", "HEAD:input.yml")).toBe(clearedInput());
    expect(readFileSync(path.join(repo.root, "input.yml"), "utf8")).toBe(clearedInput());
    expect(git(repo.root, "status", "--porcelain")).toBe("A  notes.txt");
  });

  it("an edit to input.yml made during the bake stays in the working tree", async () => {
    const repo = await newRepo("edited");
    await stage(repo, input("You are a pirate.", "pirate"));
    const edit = input("You are a robot.", "robot");
    await repo.run(
      ["bake"],
      fileRunner({ duringBake: (job) => writeFileSync(path.join(job.root, "input.yml"), edit) }),
    );
    expect(readFileSync(path.join(repo.root, "input.yml"), "utf8")).toBe(edit);
    expect(gitRaw(repo.root, "show", ":input.yml")).toBe(clearedInput());
    expect(git(repo.root, "status", "--porcelain")).toBe("M input.yml");
  });

  it("a detached bake fetched onto another branch puts the baked input in that branch's history", async () => {
    const repo = await newRepo("fetched");
    const text = input("You are a poet.", "poet");
    await stage(repo, text);
    const { child } = await detach(repo);
    git(repo.root, "checkout", "-q", "-b", "elsewhere");
    await new Promise<void>((resolve) => child.on("exit", () => resolve()));
    const { fetched } = await repo.fetch();
    expect(fetched.map((j) => j.branch)).toEqual(["main"]);
    expect(git(repo.root, "log", "-2", "--format=%s", "main").split("\n")).toEqual([
      "Update recipe.yml after bake completion: poet",
      "Bake input: poet",
    ]);
    expect(gitRaw(repo.root, "show", "main~1:input.yml")).toBe(text);
    expect(gitRaw(repo.root, "show", "main:input.yml")).toBe(clearedInput());
    expect(git(repo.root, "rev-parse", "--abbrev-ref", "HEAD")).toBe("elsewhere");
  });
});

describe("paths from input.yml stay inside the repository", () => {
  const outside = "    - type: file\n      path: ../../etc/passwd\n";

  it("a generator path outside is refused before any phase runs, naming the field, never the content", async () => {
    const repo = await newRepo("escape");
    await stage(repo, input("x", "x", { generators: outside }));
    const error = await failure(repo.run(["stim"], fileRunner()));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toMatch(
      /^input.yml \(staged\):8:13: TARGET.generators\[0\].path: "..\/..\/etc\/passwd" resolves outside the repository .*; forge reads only files inside it \(forge run --allow-outside allows it\)$/,
    );
    expect(error.message).not.toContain("root:");
    expect((await repo.status()).operations[0]).toMatchObject({ status: "not run" });
    expect(repo.lockHolder()).toBeUndefined();
  });

  it("a link inside the repository that points outside is refused too", async () => {
    const repo = await newRepo("link");
    const secret = path.join(dir, "outside.txt");
    writeFileSync(secret, "secret\n");
    symlinkSync(secret, path.join(repo.root, "questions.txt"));
    await stage(
      repo,
      input("x", "x", { generators: "    - type: file\n      path: questions.txt\n" }),
    );
    const error = await failure(repo.run(["stim"], fileRunner()));
    expect(error.message).toMatch(/TARGET.generators\[0\].path: "questions.txt" resolves outside/);
    expect(error.message).not.toContain("secret");
  });

  it("allowOutside lets it through, for the run and for a detached job", async () => {
    const repo = await newRepo("allowed");
    await stage(repo, input("x", "allowed", { generators: outside }));
    await expect(repo.run(["stim"], fileRunner(), { allowOutside: true })).resolves.toMatchObject({
      ran: ["stim"],
    });
    const { child } = await detach(repo, { run: { allowOutside: true } });
    await new Promise<void>((resolve) => child.on("exit", () => resolve()));
    const [job] = await repo.jobs();
    expect(job).toMatchObject({ allowOutside: true, status: "complete" });
  });
});

describe("YAML is bounded", () => {
  const bomb = `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`;
  const deep = `PROMPT: ${"[".repeat(200)}${"]".repeat(200)}\n`;

  it("an alias bomb or deep nesting in input.yml is an input error naming the file, at once", () => {
    for (const text of [bomb, deep]) {
      const started = performance.now();
      let error: unknown;
      try {
        parseInput(text, "input.yml (staged)");
      } catch (e) {
        error = e;
      }
      expect(performance.now() - started).toBeLessThan(2000); // milliseconds in practice
      expect(exitCodeFor(error)).toBe(2);
      expect((error as Error).message).toMatch(/^input.yml \(staged\)(:\d+:\d+)?: \(yaml\): /);
      expect((error as Error).name).toBe("RecipeError");
    }
  });

  it("recipe.yml and .forge too, with how to restore them", () => {
    for (const [parse, file] of [
      [parseRecipe, "recipe.yml"],
      [parseState, ".forge"],
    ] as const) {
      for (const text of [bomb, deep]) {
        let error: unknown;
        try {
          parse(text, file);
        } catch (e) {
          error = e;
        }
        expect(exitCodeFor(error)).toBe(2);
        expect((error as Error).message).toContain(`${file}`);
        expect((error as Error).message).toContain(`restore it with git checkout -- ${file}`);
      }
    }
    // the template and the cleared input still parse
    expect(parseInput(INPUT_TEMPLATE).bake?.name).toBe("pirate");
    expect(parseInput(clearedInput())).toEqual({});
  });
});

describe("a detached bake validates first", () => {
  it("a cleared or invalid input, a missing parent, a used name: refused before detaching", async () => {
    const repo = await newRepo("validate");
    let spawned = 0;
    const tryDetach = () =>
      failure(
        repo.run(["bake"], fileRunner(), {
          detach: true,
          spawnDetached: () => {
            spawned++;
            return process.pid;
          },
        }),
      );
    await stage(repo, clearedInput());
    expect((await tryDetach()).message).toMatch(/input.yml \(staged\) has no PROMPT/);
    await stage(repo, input("x", "x").replace(/BAKE:[\s\S]*$/, ""));
    expect((await tryDetach()).message).toMatch(/has no BAKE section/);
    await stage(
      repo,
      input("x", "x", { generators: "    - type: file\n      path: /etc/passwd\n" }),
    );
    expect((await tryDetach()).message).toMatch(
      /TARGET.generators\[0\].path: "\/etc\/passwd" resolves outside/,
    );
    await stage(repo, input("x", "first"));
    await repo.run(["bake"], fileRunner());
    await stage(repo, input("y", "first"));
    const used = await tryDetach();
    expect(exitCodeFor(used)).toBe(2);
    expect(used.message).toMatch(/a bake named first is already in recipe.yml/);
    // the parent model left the store
    rmSync(path.join(store.root, "refs", "validate"), { recursive: true });
    await stage(repo, input("y", "second"));
    expect((await tryDetach()).message).toMatch(/model validate\/first\/3 is not in the store/);
    expect(spawned).toBe(0);
    expect(await repo.jobs()).toEqual([]);
    expect(repo.lockHolder()).toBeUndefined();
  });
});

describe("a detached job killed with SIGKILL", () => {
  it("is reported by one fetch, shown by status until cleared, and cleared with what forge made for it", async () => {
    const repo = await newRepo("killed");
    await stage(repo, input("You are a pirate.", "pirate"));
    const { child } = await detach(repo, { runner: { hang: true } });
    const [job] = await repo.jobs();
    // wait until the job runs its bake (its status says so), then kill it without warning
    for (let i = 0; i < 600 && (await repo.status()).operations[2]!.status !== "running"; i++)
      await new Promise((r) => setTimeout(r, 50));
    expect((await repo.status()).operations[2]).toMatchObject({
      status: "running",
      pid: child.pid,
    });
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    process.kill(child.pid!, "SIGKILL");
    await exited;
    writeFileSync(repo.jobLogFile(job!.id), "the job's output\n"); // as the CLI's spawn makes it

    const first = await repo.fetch();
    expect(first.failed.map((j) => j.id)).toEqual([job!.id]);
    expect(first.failed[0]!.error).toMatch(
      new RegExp(
        `its process \\(pid ${child.pid}\\) died before it finished .*its log is .*${job!.id}\\.log`,
      ),
    );
    const second = await repo.fetch();
    expect(second.failed).toEqual([]);
    expect(second.reported.map((j) => j.id)).toEqual([job!.id]);
    const status = await repo.status();
    expect(status.jobs).toMatchObject([{ id: job!.id, status: "failed", reported: true }]);
    expect(status.operations[2]).toMatchObject({ status: "failed" }); // not "running"

    const scratch = path.join(repo.forgeDir, "bakes", `job-${job!.id}`);
    expect(existsSync(scratch)).toBe(true);
    const cleared = await repo.clearFailed();
    expect(cleared.map((j) => j.id)).toEqual([job!.id]);
    for (const file of [
      repo.jobLogFile(job!.id),
      scratch,
      path.join(repo.forgeDir, "jobs", `${job!.id}.json`),
    ])
      expect(existsSync(file), file).toBe(false);
    expect((await repo.status()).jobs).toEqual([]);
    expect((await repo.fetch()).reported).toEqual([]);
    // the stale lock of the dead job is taken over by the next run
    await expect(repo.run(["stim"], fileRunner())).resolves.toMatchObject({ ran: ["stim"] });
  });
});

describe("status never lies", () => {
  it("a progress report after a phase returned does not overwrite its final status", async () => {
    const repo = await newRepo("late");
    await stage(repo, input("x", "late"));
    const late: { done?: Promise<void> } = {};
    const { key } = await repo.run(["stim"], fileRunner({ lateReport: late }));
    await late.done; // the runner reported progress after the status said complete
    const file = path.join(repo.forgeDir, "work", key, "status-stim.json");
    // give a write that should not exist every chance to land
    for (let i = 0; i < 40; i++) {
      if (JSON.parse(readFileSync(file, "utf8")).status !== "complete") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ status: "complete" });
  });

  it("a progress report right before a phase returns lands before the final status", async () => {
    const repo = await newRepo("ordered");
    await stage(repo, input("x", "ordered"));
    for (let round = 0; round < 5; round++) {
      const { key } = await repo.run(["rollout"], fileRunner());
      const status = JSON.parse(
        readFileSync(path.join(repo.forgeDir, "work", key, "status-rollout.json"), "utf8"),
      );
      expect(status).toMatchObject({ status: "complete", progress: 1, lines: 2 });
    }
  });
});
