/**
 * `forge pipeline` through the real CLI, on a real git repository in a temp dir: a run killed
 * with SIGKILL in its training phase resumes without scraping again; bad repositories and
 * flags are refused naming what is wrong.
 */
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-pipeline-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
const repo = at("project");

beforeAll(() => {
  mkdirSync(repo);
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.name=Grace", "-c", "user.email=grace@example.com", ...args], {
      cwd: repo,
    });
  git("init", "-q", "--initial-branch=trunk");
  for (let i = 0; i < 20; i++) {
    writeFileSync(
      path.join(repo, `module${i % 5}.js`),
      `// module ${i % 5}\nexport const value = ${i * 7};\n`,
    );
    git("add", ".");
    git("commit", "-q", "-m", `Update module ${i % 5} to value ${i * 7}`);
  }
  // 60 epochs with a checkpoint each: a training phase long enough to be killed in
  writeFileSync(at("long.json"), JSON.stringify({ minEpochs: 60, maxEpochs: 60, patience: 100 }));
});

describe("forge pipeline", () => {
  it("killed with SIGKILL while training, --resume continues from the checkpoint without re-scraping", async () => {
    const out = at("run");
    const args = [
      "pipeline",
      "--repo",
      repo,
      "--out",
      out,
      "--profile",
      "smoke",
      "--batch-size",
      "4",
      "--config",
      at("long.json"),
      "--sample-interval",
      "0.5",
    ];
    const child = spawn(process.execPath, [FORGE, ...args], { stdio: "ignore" });
    const work = `${out}.partial`;
    const manifestFile = path.join(work, "manifest.json");
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      const steps = existsSync(manifestFile)
        ? JSON.parse(readFileSync(manifestFile, "utf8")).training.logHistory.length
        : 0;
      if (steps >= 10 && existsSync(path.join(work, "checkpoints", "last"))) break;
    }
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(existsSync(out)).toBe(false);
    const scraped = statSync(path.join(work, "commits.jsonl")).mtimeMs;
    const resumed = await forge([...args, "--resume", "--json"]);
    expect(resumed.stderr).toBe("");
    expect(resumed.code).toBe(0);
    const result = JSON.parse(resumed.stdout);
    expect(result.resumed).toBe(true);
    expect(result.train.resumedFrom).toBeGreaterThan(0);
    expect(result.peakRssBytes).toBeGreaterThan(0);
    expect(statSync(path.join(out, "commits.jsonl")).mtimeMs).toBe(scraped);
    const manifest = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.run.resumes).toHaveLength(1);
    expect(
      manifest.phases.map((p: { name: string; status: string }) => `${p.name}:${p.status}`),
    ).toEqual([
      "analyse:succeeded",
      "scrape:succeeded",
      "tokenize:succeeded",
      "train:interrupted",
      "train:succeeded",
      "report:succeeded",
    ]);
    const dynamic = JSON.parse(readFileSync(path.join(out, "MANIFEST_DYNAMIC.json"), "utf8"));
    expect(Object.keys(dynamic)).toEqual(
      expect.arrayContaining([
        "repository_stats",
        "training_parameters",
        "phase_results",
        "training_report",
      ]),
    );
    expect(dynamic.training_parameters.epochs).toMatchObject({ value: 60, source: "derived" });
    // a second run into the same --out is refused, naming the flag that would allow it
    const again = await forge(args);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/--force/);
  }, 300_000);

  it("refuses a path that is not a repository, a repository with no commits, and bad flags (exit 2)", async () => {
    mkdirSync(at("plain"));
    const plain = await forge(["pipeline", "--repo", at("plain"), "--out", at("o1")]);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain(`${at("plain")} is not a git repository`);
    mkdirSync(at("empty"));
    execFileSync("git", ["init", "-q"], { cwd: at("empty") });
    const empty = await forge(["pipeline", "--repo", at("empty"), "--out", at("o2")]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain(`${at("empty")} has no commits`);
    const missing = await forge(["pipeline", "--out", at("o3")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--repo <path> is required/);
    const batch = await forge(["pipeline", "--repo", repo, "--batch-size", "0"]);
    expect(batch.code).toBe(2);
    expect(batch.stderr).toMatch(/--batch-size must be a positive integer; got "0"/);
    expect(existsSync(at("o1"))).toBe(false);
    expect(existsSync(at("o2.partial"))).toBe(true); // a failed run keeps what it made, to resume
  }, 120_000);

  it("--list-profiles names each profile", async () => {
    const list = await forge(["pipeline", "--list-profiles"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^smoke .*\ntiny .*\nprod .*\n$/);
  });
});
