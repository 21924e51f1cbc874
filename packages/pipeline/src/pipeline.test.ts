import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ForgeError } from "@forge/core";
import { assertDynamicManifest, readManifest } from "@forge/manifest";
import { initBackend, loadModel } from "@forge/model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PIPELINE_PROFILES, planTraining, runPipeline } from "./index.js";

const root = mkdtempSync(path.join(os.tmpdir(), "forge-pipeline-"));
const repo = path.join(root, "repo");
let clock = Date.UTC(2026, 0, 1) / 1000;
/**
 * git in the test repository, each call a minute after the last: fixed dates make the commit
 * ids, and so the scraped training text, the same on every run (the early-stopping test's
 * losses depended on them).
 */
const git = (...args: string[]) => {
  clock += 60;
  return execFileSync("git", args, {
    cwd: repo,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "Ada",
      GIT_AUTHOR_EMAIL: "ada@example.com",
      GIT_COMMITTER_NAME: "Ada",
      GIT_COMMITTER_EMAIL: "ada@example.com",
      GIT_AUTHOR_DATE: `${clock} +0000`,
      GIT_COMMITTER_DATE: `${clock} +0000`,
    },
  }).trim();
};

const WORDS = "parser token window cache model branch merge index commit author tree blob".split(
  " ",
);

/** A small real history: two branches merged, a rename, a binary file, an empty commit. */
function makeRepository(): void {
  execFileSync("mkdir", ["-p", repo]);
  git("init", "-q", "--initial-branch=main");
  for (let i = 0; i < 24; i++) {
    const word = WORDS[i % WORDS.length]!;
    writeFileSync(
      path.join(repo, `${word}.ts`),
      `export const ${word}${i} = ${i};\n// ${word} handling, revision ${i}\n`,
    );
    git("add", ".");
    git(
      "commit",
      "-q",
      "-m",
      `Add ${word} handling (step ${i})\n\nThe ${word} now keeps revision ${i}.`,
    );
    if (i === 8) {
      git("checkout", "-q", "-b", "feature");
      git("mv", "parser.ts", "parse.ts");
      git("commit", "-q", "-m", "Rename parser to parse");
      writeFileSync(path.join(repo, "logo.bin"), Buffer.from([0, 1, 2, 255, 0, 7, 0, 0]));
      git("add", ".");
      git("commit", "-q", "-m", "Add a binary logo");
      git("checkout", "-q", "main");
    }
    if (i === 14) git("merge", "-q", "--no-ff", "--no-edit", "feature");
  }
  git("commit", "-q", "--allow-empty", "-m", "An empty commit");
}

beforeAll(async () => {
  await initBackend();
  makeRepository();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("planTraining", () => {
  const prod = PIPELINE_PROFILES.prod!;
  it("derives epochs as the git-history document's worked examples do", () => {
    // 78 sequences of 2,048 tokens, 20M target: floor(20M / 159,744) = 125 → 10 (the cap)
    expect(
      planTraining({ profile: prod, trainSequences: 78, batchSize: 8, batchSource: "given" })
        .epochs,
    ).toBe(10);
    // 500 sequences = 1M tokens → 19 → 10
    expect(
      planTraining({ profile: prod, trainSequences: 500, batchSize: 8, batchSource: "given" })
        .epochs,
    ).toBe(10);
    // 10,000 sequences ≈ 20M tokens → 0 → 3 (the floor)
    expect(
      planTraining({ profile: prod, trainSequences: 10_000, batchSize: 8, batchSource: "given" })
        .epochs,
    ).toBe(3);
    // 2,000 sequences = 4,096,000 tokens → floor(4.88) = 4
    expect(
      planTraining({ profile: prod, trainSequences: 2000, batchSize: 8, batchSource: "given" })
        .epochs,
    ).toBe(4);
  });

  it("scales the learning rate by batch / 8 and clamps warmup to [100, 1000]", () => {
    const half = planTraining({
      profile: prod,
      trainSequences: 78,
      batchSize: 4,
      batchSource: "measured",
    });
    expect(half.learningRate).toBeCloseTo(2.5e-5, 12); // the document: batch 4 → 2.5e-5
    expect(half.stepsPerEpoch).toBe(20);
    expect(half.steps).toBe(200);
    expect(half.warmupSteps).toBe(100); // 10% of 200 = 20, raised to the floor of 100
    const long = planTraining({
      profile: prod,
      trainSequences: 100_000,
      batchSize: 8,
      batchSource: "given",
    });
    expect(long.steps).toBe(3 * 12_500);
    expect(long.warmupSteps).toBe(1000); // 10% = 3,750, lowered to the cap
    const middle = planTraining({
      profile: prod,
      trainSequences: 20_000,
      batchSize: 8,
      batchSource: "given",
      targetTokens: 200_000_000,
    });
    expect(middle.epochs).toBe(4);
    expect(middle.warmupSteps).toBe(1000);
    const derived = half.parameters.warmup_steps!;
    expect(derived).toMatchObject({ source: "derived", rule: expect.stringContaining("clamp") });
    expect(half.parameters.batch_size!.source).toBe("measured");
    expect(half.parameters.target_tokens).toEqual({ value: 20_000_000, source: "default" });
  });

  it("refuses a run with no training sequences", () => {
    expect(() =>
      planTraining({ profile: prod, trainSequences: 0, batchSize: 8, batchSource: "given" }),
    ).toThrow(/0 training sequences/);
  });
});

describe("runPipeline", () => {
  const out = path.join(root, "out");
  let result: Awaited<ReturnType<typeof runPipeline>>;

  it("runs every phase on a real repository, and the report holds all four sections", async () => {
    const phases: string[] = [];
    result = await runPipeline({
      repository: repo,
      out,
      profile: "smoke",
      batchSize: 4,
      samplingIntervalSeconds: 0.2,
      forgeVersion: "test",
      onEvent: (e) => {
        if (e.type === "phase-start") phases.push(e.phase);
      },
    });
    expect(phases).toEqual(["analyse", "scrape", "tokenize", "train", "report"]);
    expect(result.aborted).toBe(false);
    expect(result.out).toBe(out);
    expect(existsSync(`${out}.partial`)).toBe(false);
    // analyse: every branch's commits once (24 on main, 2 on feature, the merge, the empty one)
    expect(result.stats.commits).toBe(28);
    expect(result.stats.merges).toBe(1);
    expect(result.stats.branches).toEqual(["feature", "main"]);
    expect(result.stats.languages.TypeScript!.files).toBeGreaterThan(5);
    // scrape: every commit in commits.jsonl, the rename and the binary file among them
    const commits = readFileSync(path.join(out, "commits.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(commits).toHaveLength(28);
    const files = commits.flatMap(
      (c: { files: { status: string; binary?: boolean }[] }) => c.files,
    );
    expect(files.some((f) => f.status.startsWith("R"))).toBe(true);
    expect(files.some((f) => f.binary)).toBe(true);
    // tokenize: both splits hold sequences; every commit is in exactly one
    const t = result.tokenize!;
    expect(t.commits.train + t.commits.validation).toBe(28);
    expect(t.sequences.train).toBeGreaterThan(5);
    expect(t.sequences.validation).toBeGreaterThan(0);
    // the derived plan: epochs from the real sequence count, warmup clamped, lr scaled by 4/8
    const plan = result.plan!;
    expect(plan.epochs).toBe(
      Math.min(10, Math.max(3, Math.floor(200_000 / (t.sequences.train * 64)))),
    );
    expect(plan.learningRate).toBeCloseTo(1.5e-3, 12);
    expect(plan.stepsPerEpoch).toBe(Math.ceil(t.sequences.train / 4));
    // train: validation loss fell below its first value; the model loads
    const train = result.train!;
    expect(train.bestValidationLoss!).toBeLessThan(train.firstValidationLoss!);
    const { model } = await loadModel(path.join(out, "model"));
    expect(model.config.blockSize).toBe(64);
    model.dispose();
    // report: the manifest, MANIFEST_DYNAMIC.json (valid, four sections), the chart, the summary
    const manifest = await readManifest(path.join(out, "manifest.json"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.phases.map((p) => [p.name, p.status])).toEqual([
      ["analyse", "succeeded"],
      ["scrape", "succeeded"],
      ["tokenize", "succeeded"],
      ["train", "succeeded"],
      ["report", "succeeded"],
    ]);
    const dynamic = assertDynamicManifest(
      JSON.parse(readFileSync(path.join(out, "MANIFEST_DYNAMIC.json"), "utf8")),
      "MANIFEST_DYNAMIC.json",
    );
    expect(dynamic.repository_stats.total_commits).toBe(28);
    expect(dynamic.training_parameters.epochs!.rule).toMatch(/clamp/);
    expect(Object.keys(dynamic.phase_results)).toEqual([
      "analyse",
      "scrape",
      "tokenize",
      "train",
      "report",
    ]);
    expect(dynamic.phase_results.train!.duration_seconds).toBeGreaterThan(0);
    const report = dynamic.training_report.training;
    expect(report.loss.history.length).toBe(train.steps);
    expect(report.val_loss.history.length).toBeGreaterThanOrEqual(1);
    expect(report.gradient_norm.max).toBeGreaterThan(0);
    expect(report.learning_rate.max).toBeCloseTo(plan.learningRate, 6);
    expect(dynamic.training_report.hardware.peak_rss_bytes).toBeGreaterThan(0);
    expect(dynamic.training_report.hardware.sampling_interval_seconds).toBe(0.2);
    expect(readFileSync(path.join(out, "loss.svg"), "utf8")).toMatch(/^<svg/);
    expect(readFileSync(path.join(out, "summary.md"), "utf8")).toMatch(/## Training parameters/);
  });

  it("refuses to overwrite that output without --force, and replaces it with force", async () => {
    await expect(
      runPipeline({ repository: repo, out, profile: "smoke", batchSize: 4, forgeVersion: "test" }),
    ).rejects.toThrow(/--force/);
  });

  it("refuses a path that is not a repository, and a repository with no commits (exit 2, named)", async () => {
    const plain = mkdtempSync(path.join(root, "plain-"));
    const error = await runPipeline({
      repository: plain,
      out: path.join(root, "o1"),
      profile: "smoke",
      forgeVersion: "t",
    }).catch((e) => e);
    expect(ForgeError.isInstance(error) && error.category).toBe("input");
    expect(String(error.message)).toContain(plain);
    const empty = mkdtempSync(path.join(root, "empty-"));
    execFileSync("git", ["init", "-q"], { cwd: empty });
    const none = await runPipeline({
      repository: empty,
      out: path.join(root, "o2"),
      profile: "smoke",
      forgeVersion: "t",
    }).catch((e) => e);
    expect(ForgeError.isInstance(none) && none.category).toBe("input");
    expect(String(none.message)).toMatch(new RegExp(`${empty}.*no commits`));
    const bad = await runPipeline({
      repository: repo,
      out: path.join(root, "o3"),
      profile: "huge",
      forgeVersion: "t",
    }).catch((e) => e);
    expect(String(bad.message)).toMatch(
      /profile "huge" does not exist; profiles: smoke, tiny, prod/,
    );
  });

  it("resumes a stopped training phase from its checkpoint without scraping again", async () => {
    const resumable = path.join(root, "resumable");
    const controller = new AbortController();
    let steps = 0;
    const first = await runPipeline({
      repository: repo,
      out: resumable,
      profile: "smoke",
      batchSize: 4,
      forgeVersion: "test",
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "progress" && e.phase === "train" && ++steps === 25) controller.abort();
      },
    });
    expect(first.aborted).toBe(true);
    expect(first.out).toBe(`${resumable}.partial`);
    const scraped = statSync(path.join(first.out, "commits.jsonl")).mtimeMs;
    const started: string[] = [];
    const skipped: string[] = [];
    const second = await runPipeline({
      repository: repo,
      out: resumable,
      profile: "smoke",
      batchSize: 4,
      resume: true,
      forgeVersion: "test",
      onEvent: (e) => {
        if (e.type === "phase-start") started.push(e.phase);
        if (e.type === "phase-skipped") skipped.push(e.phase);
      },
    });
    expect(skipped).toEqual(["analyse", "scrape", "tokenize"]);
    expect(started).toEqual(["train", "report"]);
    expect(second.train!.resumedFrom).toBeGreaterThan(0);
    expect(statSync(path.join(resumable, "commits.jsonl")).mtimeMs).toBe(scraped);
    const manifest = await readManifest(path.join(resumable, "manifest.json"));
    expect(manifest.run.resumes).toHaveLength(1);
    expect(manifest.phases.filter((p) => p.name === "scrape")).toHaveLength(1);
    // the same plan, both runs' steps in one history
    expect(second.plan).toEqual(first.plan);
    const steps2 = manifest.training.logHistory
      .filter((s) => s.phase === "train")
      .map((s) => s.step);
    expect(steps2[0]).toBe(1);
    expect(steps2.at(-1)).toBe(second.train!.steps);
  });
});

describe("early stopping", () => {
  it("fires on a run that overfits: validation loss stops improving and the best weights are kept", async () => {
    const out = path.join(root, "overfit");
    const result = await runPipeline({
      repository: repo,
      out,
      profile: "smoke",
      batchSize: 4,
      forgeVersion: "test",
      // a wider model, a high learning rate and 60 epochs over ~20 sequences: it memorises them
      overrides: {
        minEpochs: 60,
        maxEpochs: 60,
        baseLearningRate: 2e-2,
        model: { nLayer: 2, nEmbd: 64 },
      },
    });
    const train = result.train!;
    expect(train.reason).toBe("early-stopped");
    expect(train.steps).toBeLessThan(result.plan!.steps);
    expect(train.restoredBest).toBe(true);
    expect(train.finalLoss).toBeLessThan(train.bestValidationLoss!); // training loss fell past validation
    const manifest = await readManifest(path.join(out, "manifest.json"));
    expect(manifest.training.earlyStopping).toMatchObject({
      stopped: true,
      bestStep: train.bestStep,
    });
    const dynamic = JSON.parse(readFileSync(path.join(out, "MANIFEST_DYNAMIC.json"), "utf8"));
    expect(dynamic.training_report.training.early_stopping.stopped).toBe(true);
    expect(dynamic.training_parameters.epochs.value).toBe(60);
    expect(dynamic.training_parameters.maxEpochs).toEqual({ value: 60, source: "given" });
  });

  it("names an unknown or mistyped setting", async () => {
    const error = await runPipeline({
      repository: repo,
      out: path.join(root, "o4"),
      profile: "smoke",
      forgeVersion: "t",
      overrides: { epochz: 3 },
    }).catch((e) => e);
    expect(error.message).toMatch(/unknown setting "epochz"; settings: minEpochs, maxEpochs, /);
    const typed = await runPipeline({
      repository: repo,
      out: path.join(root, "o5"),
      profile: "smoke",
      forgeVersion: "t",
      overrides: { patience: "3" },
    }).catch((e) => e);
    expect(typed.message).toMatch(/setting "patience" must be a number like 3; got "3"/);
  });
});
