/**
 * What this package's bake-repository tests share (not built, not exported): real git in a
 * temp directory with a test identity, a base model on disk, a model store, and a runner that
 * writes files instead of baking. The runner is a JS module on disk, so a detached job's child
 * process runs exactly the same code as the test.
 *
 * `bakeRepoHarness(prefix)` is called at the top of a test file: it makes the directory, and
 * registers the hooks that set the identity, write the base model and the runner, and remove
 * the directory afterwards. The package must be built (the hooks run `dist/hook-main.js`, a
 * detached job imports `dist/index.js`).
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ForgeError } from "@forge/core";
import { afterAll, beforeAll, expect } from "vitest";
import { BakeRepo, type RunResult } from "./repo.js";
import type { Runner } from "./runner.js";
import { ModelStore } from "./store.js";

export const HOOK = fileURLToPath(new URL("../dist/hook-main.js", import.meta.url));
export const INDEX = fileURLToPath(new URL("../dist/index.js", import.meta.url));

/** git's output as it is (no trimming: file contents are compared byte for byte). */
export const gitRaw = (cwd: string, ...args: string[]) =>
  execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
/** git's output, trimmed. */
export const git = (cwd: string, ...args: string[]) => gitRaw(cwd, ...args).trim();

/**
 * The test runner: stimuli from `list` generators (one question per other generator), one
 * rollout per stimulus, and a model directory whose weights record the chain of prompts
 * (the parent's weights + " + " + this prompt). Options: `seen` collects the prompts and
 * parents it ran with; `hang` makes the bake wait forever (until killed); `lateReport` reports
 * stim progress after stim has returned, once its status says complete; `duringBake` runs
 * while the bake does.
 */
const RUNNER = `import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
export const fileRunner = (options = {}) => ({
  generators: ["list", "persona", "file"],
  async stim(job, progress) {
    const items = job.target.generators.flatMap((g) => (g.type === "list" ? g.items : ["Who are you?"]));
    writeFileSync(job.stimFile, items.map((q, i) => JSON.stringify({ id: "s" + i, q })).join("\\n"));
    if (options.lateReport) {
      const status = path.join(job.workDir, "status-stim.json");
      options.lateReport.done = new Promise((resolve) => {
        const poll = () => {
          let complete = false;
          try { complete = JSON.parse(readFileSync(status, "utf8")).status === "complete"; } catch {}
          if (complete) { progress(1, 2); resolve(); } else setTimeout(poll, 2);
        };
        setTimeout(poll, 0);
      });
    } else progress(items.length, items.length);
    options.seen?.prompts.push(job.prompt.teacher[0].content);
    return items.length;
  },
  async rollout(job, progress) {
    const lines = readFileSync(job.stimFile, "utf8").split("\\n");
    writeFileSync(job.rolloutFile, lines.map((l) => l + " -> answer").join("\\n"));
    progress(lines.length, lines.length); // right before returning
    return lines.length;
  },
  async bake(job, progress) {
    options.seen?.parents.push(job.parentModel);
    if (options.duringBake) options.duringBake(job);
    if (options.hang) await new Promise(() => setInterval(() => {}, 1000));
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

export interface RunnerOptions {
  seen?: { prompts: string[]; parents: (string | null)[] };
  hang?: boolean;
  lateReport?: { done?: Promise<void> };
  duringBake?: (job: { root: string }) => void;
}

const LIST = "    - type: list\n      items: [Hi, What is 2 + 2?]\n";

/**
 * An input.yml baking `prompt` as bake `name`: `generators` replaces the TARGET generators (a
 * list of two questions), `bake` adds lines to BAKE (after `epochs: 1`).
 */
export const input = (
  prompt: string,
  name: string,
  { generators = LIST, bake = "" }: { generators?: string; bake?: string } = {},
) => `PROMPT:
  teacher:
    - role: system
      content: ${prompt}
TARGET:
  generators:
${generators}BAKE:
  name: ${name}
  epochs: 1
${bake}`;

/** Write input.yml and stage it. */
export async function stage(repo: BakeRepo, text: string): Promise<void> {
  writeFileSync(path.join(repo.root, "input.yml"), text);
  await repo.add(["input.yml"]);
}

/** Write input.yml, stage it and commit it. */
export async function stageAndCommit(repo: BakeRepo, text: string, message: string) {
  await stage(repo, text);
  await repo.commit(message);
}

/** What a call threw (or a failure if it did not). */
export async function failure(promise: Promise<unknown>): Promise<ForgeError> {
  try {
    await promise;
  } catch (error) {
    expect(ForgeError.isInstance(error), String(error)).toBe(true);
    return error as ForgeError;
  }
  throw new Error("expected a failure");
}

/** A temp directory with a store and a base model, a test git identity, and the file runner. */
export function bakeRepoHarness(prefix: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const store = new ModelStore(path.join(dir, "store"));
  const base = path.join(dir, "base-model");
  const runnerFile = path.join(dir, "runner.mjs");
  let load: ((options?: RunnerOptions) => Runner) | undefined;

  beforeAll(async () => {
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
    writeFileSync(runnerFile, RUNNER);
    load = (await import(runnerFile)).fileRunner;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The file runner (see RUNNER). */
  function fileRunner(options: RunnerOptions = {}): Runner {
    if (!load) throw new Error("the file runner loads in beforeAll");
    return load(options);
  }

  /** A new bake repository `name` in the temp directory, on the base model. */
  function newRepo(name: string): Promise<BakeRepo> {
    return BakeRepo.init(path.join(dir, name), name, {
      baseModel: base,
      hookCommand: [process.execPath, HOOK],
      store,
    });
  }

  /**
   * Start a detached bake the way the CLI does: the child process opens the repository and
   * runs the job with the file runner (`runner`'s JSON-able options), after `delayMs`.
   * Returns the child and what `run` returned.
   */
  async function detach(
    repo: BakeRepo,
    {
      runner = {},
      run = {},
      delayMs = 0,
    }: {
      runner?: Omit<RunnerOptions, "seen" | "duringBake" | "lateReport">;
      run?: Partial<Parameters<BakeRepo["run"]>[2]>;
      delayMs?: number;
    } = {},
  ): Promise<{ child: ReturnType<typeof spawn>; started: RunResult }> {
    const script = path.join(dir, `job-${Math.random().toString(36).slice(2)}.mjs`);
    writeFileSync(
      script,
      `import { BakeRepo, ModelStore } from ${JSON.stringify(INDEX)};
import { fileRunner } from ${JSON.stringify(runnerFile)};
const [root, storeRoot, id] = process.argv.slice(2);
const repo = await BakeRepo.open(root, { store: new ModelStore(storeRoot) });
${delayMs > 0 ? `await new Promise((r) => setTimeout(r, ${delayMs}));\n` : ""}await repo.runJob(id, fileRunner(${JSON.stringify(runner)}));
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
      ...run,
    });
    return { child: child!, started };
  }

  return { dir, store, base, fileRunner, newRepo, detach };
}
