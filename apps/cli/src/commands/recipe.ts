/**
 * Bake repositories (@forge/git-recipe) from the command line: forge init, add, commit, run,
 * status, stim, rollout, models, target, tree, fetch, scrape, and the hooks git calls.
 * The runner wires @forge/baking in: stim → rollout → bake (LoRA) → merged model in the store.
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
} from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { repositoryRunner } from "@forge/baking";
import { temporarySibling } from "@forge/core";
import {
  type BakeJob,
  BakeRepo,
  buildTree,
  commitText,
  formatTree,
  type JobRecord,
  ModelStore,
  OPERATIONS,
  type Operation,
  type Progress,
  type Runner,
  runHook,
  scrapeHistory,
  windows,
} from "@forge/git-recipe";
import { ManifestWriter } from "@forge/manifest";
import { describeBackend, initBackend, isHubRepoId, TokenCacheWriter } from "@forge/model";
import { loadTokenizer, type Tokenizer } from "@forge/tokenizer";
import type { CAC } from "cac";
import pc from "picocolors";
import pkg from "../../package.json" with { type: "json" };
import { bakeEventSink } from "../bake-run.js";
import { UsageError } from "../errors.js";
import { DEFAULT_MODEL, resolveModelLocation } from "../models.js";
import { ProgressBar } from "../progress.js";

const FORGE_JS = fileURLToPath(new URL("./forge.js", import.meta.url));
/** How git hooks and detached jobs call this forge. */
const selfCommand = () => [process.execPath, FORGE_JS];

/**
 * @forge/baking's repository runner, with the run manifest of each bake recorded beside its
 * output (every write awaited before the manifest is finished: a failed write fails the bake
 * instead of surfacing later).
 */
export function bakingRunner(options: { quiet?: boolean } = {}): Runner {
  return repositoryRunner({
    ...(process.env.FORGE_TEACHER_API_KEY
      ? { teacherApiKey: process.env.FORGE_TEACHER_API_KEY }
      : {}),
    beforeLoad: async () => {
      const backend = await initBackend({ wasmThreads: "auto" });
      if (!options.quiet) process.stderr.write(`${describeBackend(backend)}\n`);
    },
    recorder: async (job, settings) => {
      const bakeJob = job as BakeJob;
      const file = path.join(job.outDir, "manifest.json");
      const manifest = await ManifestWriter.create(file, {
        kind: "bake",
        forgeVersion: pkg.version,
        parameters: {
          repository: bakeJob.repository,
          bake: job.name,
          parent: bakeJob.parentModel,
          ...settings,
          ...(job.teacher
            ? { teacher: { url: job.teacher.url, model: job.teacher.model ?? null } }
            : {}),
        },
        repository: bakeJob.git,
      });
      const sink = bakeEventSink(manifest, true);
      return {
        event: sink,
        async succeed(result) {
          await sink.settled();
          const metrics = result.record.metrics as Record<string, unknown>;
          manifest.setMetric("klBefore", metrics.klBefore);
          manifest.setMetric("klAfter", metrics.klAfter);
          await manifest.addArtifact(path.join(result.out, "merged", "model.safetensors"));
          await manifest.succeed();
          return file;
        },
        async fail(error) {
          await sink.settled().catch(() => undefined);
          await manifest.fail(error); // the bake's own error is the one to report
        },
      };
    },
  }) as Runner;
}

function phaseBars(quiet: boolean): (operation: Operation, name: string) => Progress {
  let bar: ProgressBar | undefined;
  return (operation, name) => {
    bar?.stop();
    bar = quiet ? undefined : new ProgressBar(`${operation} ${name}`);
    return (done, total, detail) => {
      bar?.update(done, total, detail);
      if (total !== undefined && done >= total) bar?.stop();
    };
  };
}

async function openRepo(): Promise<BakeRepo> {
  return BakeRepo.open(process.cwd());
}

function lossLine(l: { latest: number; final: number; min: number; max: number } | null): string {
  return l
    ? `loss: latest ${l.latest.toFixed(4)}, final ${l.final.toFixed(4)}, min ${l.min.toFixed(4)}, max ${l.max.toFixed(4)}`
    : "loss: –";
}

// ---- commands ------------------------------------------------------------------------------

export function registerInit(cli: CAC): void {
  cli
    .command("<name>", "Create a bake repository ./<name>: input.yml, recipe.yml, .forge, hooks")
    .option(
      "--base-model <dir>",
      "The base model: a directory, a store id, or a hub id org/name (pulled into the hub cache; default: forge-tiny)",
    )
    .option("--json", "Print JSON")
    .example("forge init pirate-bot && cd pirate-bot")
    .action(async (name: string, options: { baseModel?: string; json?: boolean }) => {
      // a hub id becomes its snapshot in the hub cache (downloaded when missing)
      const hub =
        options.baseModel !== undefined &&
        isHubRepoId(options.baseModel) &&
        !existsSync(options.baseModel);
      const repo = await BakeRepo.init(path.resolve(name), name, {
        baseModel: hub
          ? await resolveModelLocation(options.baseModel)
          : (options.baseModel ?? DEFAULT_MODEL),
        hookCommand: selfCommand(),
      });
      const state = await repo.readState();
      if (options.json)
        process.stdout.write(
          `${JSON.stringify({ root: repo.root, baseModel: state.BASE_MODEL }, null, 2)}\n`,
        );
      else
        process.stdout.write(
          `created the bake repository ${repo.root} (base model ${state.BASE_MODEL})\nnext: edit input.yml, forge add input.yml, forge commit -m "…", forge run stim rollout bake\n`,
        );
      return 0;
    });
}

export function registerAdd(cli: CAC): void {
  cli
    .command("[...files]", "git add (input.yml is read from the index by forge run)")
    .action(async (files: string[]) => {
      await (await openRepo()).add(files);
      return 0;
    });
}

export function registerCommit(cli: CAC): void {
  cli
    .command("", "git commit; the pre-commit hook records the staged input's hashes in .forge")
    .option("-m, --message <message>", "Commit message")
    .action(async (options: { message?: string }) => {
      if (options.message === undefined)
        throw new UsageError('give a message: forge commit -m "…"');
      const commit = await (await openRepo()).commit(String(options.message));
      process.stdout.write(`${commit.slice(0, 12)}\n`);
      return 0;
    });
}

interface RunOptions {
  detach?: boolean;
  job?: string;
  json?: boolean;
  allowOutside?: boolean;
}

export function registerRun(cli: CAC): void {
  cli
    .command("[...operations]", `Run ${OPERATIONS.join(", ")} on the staged input.yml`)
    .option(
      "-d, --detach",
      "Bake in a background process that survives the terminal (forge fetch brings it in)",
    )
    .option("--job <id>", "(internal) run a detached job")
    .option("--allow-outside", "Let input.yml's generator paths name files outside the repository")
    .option("--json", "Print JSON")
    .example("forge run stim rollout bake")
    .example("forge run bake --detach")
    .action(async (operations: string[], options: RunOptions) => {
      const repo = await openRepo();
      const quiet = Boolean(options.json);
      if (options.job) {
        const job = await repo.runJob(options.job, bakingRunner({ quiet: true }));
        return job.status === "complete" ? 0 : 1;
      }
      for (const op of operations)
        if (!OPERATIONS.includes(op as Operation))
          throw new UsageError(
            `unknown operation ${JSON.stringify(op)}; accepted: ${OPERATIONS.join(", ")}`,
          );
      const result = await repo.run(operations as Operation[], bakingRunner({ quiet }), {
        detach: Boolean(options.detach),
        allowOutside: Boolean(options.allowOutside),
        spawnDetached: (id) => {
          const log = repo.jobLogFile(id);
          mkdirSync(path.dirname(log), { recursive: true });
          const fd = openSync(log, "a");
          try {
            const child = spawn(selfCommand()[0]!, [selfCommand()[1]!, "run", "--job", id], {
              cwd: repo.root,
              detached: true,
              stdio: ["ignore", fd, fd],
              env: { ...process.env, FORGE_PROGRESS: "0" },
            });
            child.unref();
            return child.pid!;
          } finally {
            closeSync(fd);
          }
        },
        onPhase: phaseBars(quiet),
        command: `forge run ${operations.join(" ")}${options.detach ? " --detach" : ""}`,
      });
      if (options.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return 0;
      }
      if (result.job) {
        process.stdout.write(
          `bake detached: job ${result.job.id} (pid ${result.job.pid}) on ${result.job.branch}; forge status shows its progress, forge fetch brings it in (its log: ${result.job.log})\n`,
        );
        return 0;
      }
      for (const op of result.ran) process.stdout.write(`${pc.green("✓")} ${op}\n`);
      if (result.bake) {
        const b = result.bake;
        process.stdout.write(
          `${pc.bold(`baked ${b.name}`)} from ${b.parent}\nmodel: ${b.models.map((m) => pc.green(m)).join(", ")}\n${lossLine(b.losses)}\n${b.inputCommit ? `commit ${b.inputCommit.slice(0, 12)}: Bake input: ${b.name}\n` : ""}commit ${b.commit?.slice(0, 12)}: Update recipe.yml after bake completion: ${b.name}\n`,
        );
      }
      return 0;
    });
}

function jobLine(job: JobRecord): string {
  const pct = `${Math.round(100 * job.progress)}%`;
  const icon =
    job.status === "running" ? "⏳" : job.status === "failed" ? pc.red("✗") : pc.green("✓");
  const log =
    job.status === "failed" && job.log && existsSync(job.log) && !job.error?.includes(job.log)
      ? ` (log: ${job.log})`
      : "";
  return `${icon} job ${job.id} on ${job.branch}: ${job.status} (${pct})${job.result ? ` → ${job.result.models.join(", ")}` : ""}${job.error ? ` — ${job.error}` : ""}${log}`;
}

export function registerStatus(cli: CAC): void {
  cli
    .command("", "Status of stim, rollout and bake for the staged input, and of detached bakes")
    .option("--json", "Print JSON")
    .action(async (options: { json?: boolean }) => {
      const status = await (await openRepo()).status();
      if (options.json) {
        process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
        return 0;
      }
      const lines = [`parent model: ${status.parent ?? "(none)"}`];
      if (status.inputError) lines.push(pc.yellow(`staged input.yml: ${status.inputError}`));
      for (const op of status.operations) {
        if (op.status === "not run") lines.push(`· ${op.operation}: not run`);
        else {
          const icon =
            op.status === "running" ? "⏳" : op.status === "failed" ? pc.red("✗") : pc.green("✓");
          lines.push(
            `${icon} ${op.operation} ${op.name}: ${op.status} (${Math.round(100 * op.progress)}%)${op.lines !== undefined ? ` - ${op.lines} lines` : ""}${op.error ? ` — ${op.error}` : ""}`,
          );
        }
      }
      const jobs = status.jobs.filter((j) => j.status !== "fetched");
      for (const job of jobs) lines.push(jobLine(job));
      if (jobs.some((j) => j.status === "failed"))
        lines.push("forge fetch --clear-failed removes failed jobs and their logs");
      process.stdout.write(`${lines.join("\n")}\n`);
      return 0;
    });
}

function registerOutputs(operation: "stim" | "rollout") {
  return (cli: CAC): void => {
    cli
      .command("", `Show the staged input's ${operation} output (${operation}.jsonl)`)
      .option("--limit <n>", "Show the first n lines")
      .option("--count", "Print the number of lines only")
      .action(async (options: { limit?: string; count?: boolean }) => {
        const lines = await (await openRepo()).outputs(operation);
        if (options.count) {
          process.stdout.write(`${lines.length}\n`);
          return 0;
        }
        const limit = options.limit === undefined ? lines.length : Number(options.limit);
        if (!Number.isInteger(limit) || limit < 0)
          throw new UsageError(
            `--limit must be a non-negative integer; got ${JSON.stringify(options.limit)}`,
          );
        process.stdout.write(
          lines
            .slice(0, limit)
            .map((l) => `${l}\n`)
            .join(""),
        );
        return 0;
      });
  };
}
export const registerStim = registerOutputs("stim");
export const registerRollout = registerOutputs("rollout");

export function registerModels(cli: CAC): void {
  cli
    .command("", "Models in the store (FORGE_STORE, else ~/.forge/store)")
    .option("--json", "Print JSON")
    .action(async (options: { json?: boolean }) => {
      const store = new ModelStore();
      const models = await store.list();
      if (options.json)
        process.stdout.write(`${JSON.stringify({ store: store.root, models }, null, 2)}\n`);
      else if (models.length === 0) process.stdout.write(`no models in ${store.root}\n`);
      else
        process.stdout.write(
          `${models.map((m) => `${pc.green(m.id)}  ${m.digest.slice(0, 12)}  ${m.createdAt}`).join("\n")}\n`,
        );
      return 0;
    });
}

export function registerTarget(cli: CAC): void {
  cli
    .command("[name]", "Targets that have run: forge target ls, or forge target <name> for one")
    .option("--json", "Print JSON")
    .action(async (name: string | undefined, options: { json?: boolean }) => {
      const repo = await openRepo();
      if (name === undefined || name === "ls" || name === "list") {
        const targets = await repo.targets();
        if (options.json) process.stdout.write(`${JSON.stringify(targets, null, 2)}\n`);
        else if (targets.length === 0)
          process.stdout.write("no targets have run yet (forge run stim)\n");
        else
          process.stdout.write(
            `${targets.map((t) => `${t.name}  ${(t.generators as { type: string }[]).map((g) => g.type).join(", ")}  stim ${t.stim}  rollout ${t.rollouts}`).join("\n")}\n`,
          );
        return 0;
      }
      process.stdout.write(`${JSON.stringify(await repo.target(name), null, 2)}\n`);
      return 0;
    });
}

export function registerTree(cli: CAC): void {
  cli
    .command("", "The lineage tree across every branch's recipe.yml")
    .option("--json", "Print JSON")
    .action(async (options: { json?: boolean }) => {
      const tree = buildTree(await (await openRepo()).branchRecipes());
      if (options.json) process.stdout.write(`${JSON.stringify(tree, null, 2)}\n`);
      else
        process.stdout.write(
          `${formatTree(tree, { bake: pc.yellow, model: pc.green, branch: pc.gray, header: pc.cyan })}\n`,
        );
      return 0;
    });
}

export function registerFetch(cli: CAC): void {
  cli
    .command(
      "",
      "Bring finished detached bakes into the repository (their commits on their branch)",
    )
    .option("--clear-failed", "Remove failed detached jobs, their logs and their scratch output")
    .option("--json", "Print JSON")
    .action(async (options: { json?: boolean; clearFailed?: boolean }) => {
      const repo = await openRepo();
      if (options.clearFailed) {
        const cleared = await repo.clearFailed();
        if (options.json) process.stdout.write(`${JSON.stringify({ cleared }, null, 2)}\n`);
        else if (cleared.length === 0) process.stdout.write("no failed detached jobs to clear\n");
        else
          for (const job of cleared)
            process.stdout.write(
              `cleared job ${job.id} on ${job.branch} (failed${job.error ? `: ${job.error}` : ""}): its record, its log and its scratch output\n`,
            );
        return 0;
      }
      const result = await repo.fetch();
      if (options.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return result.failed.length ? 1 : 0;
      }
      for (const job of result.fetched) {
        const r = job.result!;
        process.stdout.write(
          `${pc.green("✓")} ${r.name} → ${r.models.join(", ")} committed on ${job.branch} (${r.inputCommit ? `${r.inputCommit.slice(0, 12)} Bake input, ` : ""}${job.fetchedCommit?.slice(0, 12)})\n${lossLine(r.losses)}\n`,
        );
      }
      for (const job of [...result.running, ...result.failed])
        process.stdout.write(`${jobLine(job)}\n`);
      if (!result.fetched.length && !result.running.length && !result.failed.length)
        process.stdout.write("no detached bakes to fetch\n");
      if (result.failed.length || result.reported.length) {
        const earlier = result.reported.length
          ? `${result.reported.length} failed job${result.reported.length === 1 ? "" : "s"} reported earlier; `
          : "";
        process.stdout.write(
          `${earlier}forge status shows failed jobs until forge fetch --clear-failed removes them\n`,
        );
      }
      // a failure fails the fetch that first reports it, not every fetch after it
      return result.failed.length ? 1 : 0;
    });
}

interface ScrapeOptions {
  out?: string;
  sequences?: string;
  tokenizer?: string;
  blockSize?: string;
  overlap?: string;
  json?: boolean;
}

export function registerScrape(cli: CAC): void {
  cli
    .command(
      "<repo>",
      "Every commit of a git repository as JSONL (≥ 30 fields each); --sequences for training",
    )
    .option("--out <file>", "Where commits.jsonl goes (default commits.jsonl)")
    .option(
      "--sequences <dir>",
      "Also write token windows for forge train --phase pretrain --data <dir>",
    )
    .option("--tokenizer <dir>", "Tokenizer for --sequences")
    .option("--block-size <n>", "Window length in tokens (default 256)")
    .option("--overlap <n>", "Tokens shared by consecutive windows (default 32)")
    .option("--json", "Print a JSON summary")
    .action(async (repository: string, options: ScrapeOptions) => {
      const out = options.out ?? "commits.jsonl";
      let tokenizer: Tokenizer | undefined;
      let writers: { train: TokenCacheWriter; val: TokenCacheWriter } | undefined;
      const blockSize = Number(options.blockSize ?? 256);
      const overlap = Number(options.overlap ?? 32);
      if (options.sequences) {
        if (!options.tokenizer) throw new UsageError("--sequences needs --tokenizer <dir>");
        if (!Number.isInteger(blockSize) || blockSize < 8)
          throw new UsageError(
            `--block-size must be an integer ≥ 8; got ${JSON.stringify(options.blockSize)}`,
          );
        if (!Number.isInteger(overlap) || overlap < 0 || overlap >= blockSize)
          throw new UsageError(
            `--overlap must be an integer in [0, ${blockSize - 1}]; got ${JSON.stringify(options.overlap)}`,
          );
        tokenizer = await loadTokenizer(options.tokenizer);
        const make = (split: string) =>
          new TokenCacheWriter(path.join(options.sequences!, `pretrain-${split}`), {
            kind: "pretrain",
            vocabSize: tokenizer!.vocabSize,
            info: { source: path.resolve(repository), blockSize, overlap },
          });
        writers = { train: make("train"), val: make("val") };
      }
      mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      const temporary = temporarySibling(path.resolve(out));
      const stream = createWriteStream(temporary);
      const bar = options.json ? undefined : new ProgressBar("scrape", { unit: "commits" });
      let count = 0;
      let windowsWritten = 0;
      try {
        for await (const commit of scrapeHistory(repository)) {
          if (!stream.write(`${JSON.stringify(commit)}\n`))
            await new Promise<void>((r) => stream.once("drain", () => r()));
          if (tokenizer && writers) {
            const eot = tokenizer.specialTokenId("<|eot|>");
            const ids = [
              ...tokenizer.encode(commitText(commit), { disallowedSpecial: "none" }),
              eot,
            ];
            // a commit's windows go to validation when its hash starts with 0 or 1 (1/8 of commits)
            const writer = /^[01]/.test(commit.hash) ? writers.val : writers.train;
            for (const w of windows(ids, blockSize + 1, overlap)) {
              writer.append(w);
              windowsWritten++;
            }
          }
          count++;
          bar?.update(count);
        }
        await new Promise<void>((resolve, reject) =>
          stream.end((e?: Error | null) => (e ? reject(e) : resolve())),
        );
        renameSync(temporary, out);
        if (writers) for (const w of Object.values(writers)) w.close();
      } catch (error) {
        stream.destroy();
        if (writers) for (const w of Object.values(writers)) w.abort();
        rmSync(temporary, { force: true });
        throw error;
      } finally {
        bar?.stop();
      }
      const summary = {
        commits: count,
        out,
        ...(options.sequences
          ? { sequences: options.sequences, windows: windowsWritten, blockSize, overlap }
          : {}),
      };
      if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      else
        process.stdout.write(
          `wrote ${count} commits to ${out}${options.sequences ? `; ${windowsWritten} windows of ${blockSize + 1} tokens (overlap ${overlap}) to ${options.sequences}` : ""}\n`,
        );
      return 0;
    });
}

export function registerHook(cli: CAC): void {
  cli
    .command("<name>", "(called by git) run a bake repository's hook: pre-commit or post-merge")
    .action(async (name: string) => {
      await runHook(name);
      return 0;
    });
}
