/**
 * forge bake --teacher-url against forge serve, over real HTTP on 127.0.0.1, both as real child
 * processes on forge-tiny: the remote bake reproduces the local bake's KL reduction (the same
 * top-K loss, stimuli and settings; both bakes measured the same way afterwards); a server
 * killed mid-rollout loses nothing (the rerun with --resume asks only for the rest); a served
 * model with another tokenizer is refused naming a token.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadBaked, measureKL, sampleTrajectories, systemPrompt } from "@forge/baking";
import { initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge, type Run } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-remote-teacher-"));
const at = (...parts: string[]) => path.join(dir, ...parts);
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

interface Served {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `forge serve <model> --port <port>` as a child process; resolves once it listens. */
function serveChild(model: string, port = 0): Promise<Served> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FORGE, "serve", model, "--port", String(port)], {
      env: { ...process.env, NO_COLOR: "1", FORGE_BACKEND: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let out = "";
    let err = "";
    child.stderr!.on("data", (d) => {
      err += d;
    });
    child.stdout!.on("data", (d) => {
      out += d;
      const match = /at (http:\/\/127\.0\.0\.1:(\d+))\/v1/.exec(out);
      if (match)
        resolve({
          url: match[1]!,
          port: Number(match[2]),
          child,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once("exit", () => done());
              child.kill("SIGKILL");
            }),
        });
    });
    child.once("exit", (code) => {
      children.delete(child);
      reject(new Error(`forge serve exited (${code}) before listening: ${err}`));
    });
  });
}

const STIM =
  "list:What is 12 plus 30?|What is the capital of France?|Spell the word cat.|What is the opposite of hot?|Name a colour.|Tell me about yourself.";
const PROMPT = "You are a pirate.";
const settings = [
  "--prompt",
  PROMPT,
  "--stim",
  STIM,
  "--samples",
  "6",
  "--max-new-tokens",
  "24",
  "--epochs",
  "3",
  "--batch-size",
  "8",
  "--val-fraction",
  "0",
  "--no-measure",
];

let teacher: Served;
beforeAll(async () => {
  await initBackend({ backend: "wasm" });
  teacher = await serveChild("forge-tiny");
}, 120_000);

describe("forge bake --teacher-url (forge serve on forge-tiny)", () => {
  it("reproduces the local bake's KL reduction (top-K + tail loss, same stimuli and settings)", async () => {
    const [remote, local] = [
      await forge([
        "bake",
        ...settings,
        "--teacher-url",
        teacher.url,
        "--out",
        at("remote"),
        "--json",
      ]),
      await forge([
        "bake",
        ...settings,
        "--loss",
        "topk",
        "--cache-topk",
        "20",
        "--out",
        at("local"),
        "--json",
      ]),
    ];
    expectOk(remote);
    expectOk(local);
    const remoteRecord = JSON.parse(readFileSync(at("remote", "forge.json"), "utf8"));
    expect(remoteRecord.teacher).toMatchObject({ url: teacher.url, model: "forge-tiny" });
    expect(remoteRecord.bake.loss).toBe("topk");
    expect(remoteRecord.rollout.cacheTopK).toBe(20);
    const manifest = JSON.parse(readFileSync(at("remote", "manifest.json"), "utf8"));
    expect(JSON.stringify(manifest)).toContain(teacher.url);
    expect(JSON.parse(remote.stdout).trajectories).toBe(36);
    expect(JSON.parse(local.stdout).trajectories).toBe(36);

    // both bakes measured alike: KL(prompted forge-tiny ‖ baked) on one set of teacher samples
    const { model: base, tokenizer } = await loadModel(FORGE_TINY_DIR);
    const prompt = systemPrompt(PROMPT);
    const stimuli = JSON.parse(
      `[${readFileSync(at("local", "stim.jsonl"), "utf8").trim().split("\n").join(",")}]`,
    );
    const measure = { n: 96, maxNewTokens: 24, batchSize: 32, seed: 11 };
    const samples = sampleTrajectories(
      { model: base, prefix: prompt.teacher },
      tokenizer!,
      stimuli,
      measure,
    );
    const klOf = async (student: typeof base) =>
      measureKL(
        { model: base, prefix: prompt.teacher },
        { model: student, prefix: prompt.student },
        tokenizer!,
        stimuli,
        measure,
        samples,
      ).token.estimate;
    const before = await klOf(base);
    const remoteBaked = await loadBaked(at("remote"));
    const localBaked = await loadBaked(at("local"));
    const afterRemote = await klOf(remoteBaked.model);
    const afterLocal = await klOf(localBaked.model);
    remoteBaked.model.dispose();
    localBaked.model.dispose();
    base.dispose();
    const reductionRemote = 1 - afterRemote / before;
    const reductionLocal = 1 - afterLocal / before;
    console.log(
      `KL before ${before.toFixed(3)}; after local ${afterLocal.toFixed(3)} (${(100 * reductionLocal).toFixed(1)}%), after remote ${afterRemote.toFixed(3)} (${(100 * reductionRemote).toFixed(1)}%)`,
    );
    expect(reductionLocal).toBeGreaterThan(0.05);
    expect(reductionRemote).toBeGreaterThan(0.05);
    expect(Math.abs(reductionRemote - reductionLocal)).toBeLessThan(0.25 * reductionLocal);
  });

  it("loses nothing when the server dies mid-rollout: --resume asks only for the rest", async () => {
    const server = await serveChild("forge-tiny");
    const out = at("resumed");
    const args = (url: string) => [
      "bake",
      ...settings,
      "--samples",
      "8",
      "--teacher-url",
      url,
      "--teacher-concurrency",
      "1",
      "--out",
      out,
      "--json",
    ];
    const partial = path.join(`${out}.partial`, "rollout.partial.jsonl");
    const lines = () =>
      existsSync(partial)
        ? readFileSync(partial, "utf8")
            .split("\n")
            .filter((l) => l.trim() !== "").length
        : 0;
    const first = forge(args(server.url));
    // kill the server once part of the rollout is in
    for (let i = 0; i < 2400 && lines() < 6; i++) await new Promise((r) => setTimeout(r, 50));
    expect(lines()).toBeGreaterThanOrEqual(6);
    await server.stop();
    const failed = await first;
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("--resume");
    const kept = readFileSync(partial, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "");
    expect(kept.length).toBeGreaterThanOrEqual(6);
    expect(kept.length).toBeLessThan(48);

    const again = await serveChild("forge-tiny", server.port);
    const resumed = await forge([...args(again.url), "--resume"]);
    expectOk(resumed);
    const rollout = readFileSync(path.join(out, "rollout.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rollout).toHaveLength(48);
    expect(new Set(rollout.map((t: { id: string }) => t.id)).size).toBe(48);
    // the trajectories finished before the kill are kept as they were
    const byId = new Map(rollout.map((t: { id: string }) => [t.id, t]));
    for (const line of kept) {
      const t = JSON.parse(line);
      expect(byId.get(t.id)).toEqual(t);
    }
    // the restarted server was asked only for the rest (and its model list)
    const stats = (await (await fetch(`${again.url}/stats`)).json()) as { requests: number };
    expect(stats.requests).toBeLessThanOrEqual(48 - kept.length + 2);
    expect(existsSync(partial)).toBe(false);
    await again.stop();
  });

  it("refuses a served model whose tokenizer differs, naming a token (exit 2)", async () => {
    // forge-tiny's weights behind a tokenizer trained on other text: same size, other merges
    const docs = path.resolve(FORGE_TINY_DIR, "..", "README.md");
    expectOk(
      await forge([
        "tokenizer",
        "train",
        docs,
        path.resolve(FORGE_TINY_DIR, "README.md"),
        "--vocab-size",
        "1024",
        "--min-frequency",
        "1",
        "--out",
        at("other-tokenizer"),
      ]),
    );
    mkdirSync(at("other-model"));
    for (const file of ["config.json", "model.safetensors", "generation_config.json"])
      cpSync(path.join(FORGE_TINY_DIR, file), at("other-model", file));
    for (const file of ["tokenizer.json", "tokenizer_config.json"])
      cpSync(at("other-tokenizer", file), at("other-model", file));
    const other = await serveChild(at("other-model"));
    const run = await forge([
      "bake",
      ...settings,
      "--teacher-url",
      other.url,
      "--out",
      at("mismatch"),
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /the teacher's tokenizer is not the student's: its token ".+" \(stimulus/,
    );
    expect(
      run.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("forge:")),
    ).toHaveLength(1);
    expect(existsSync(at("mismatch"))).toBe(false);
    await other.stop();
  });

  it("refuses bad flags with exit 2", async () => {
    const url = await forge(["bake", ...settings, "--teacher-url", "ftp://x", "--out", at("bad")]);
    expect(url.code).toBe(2);
    expect(url.stderr).toContain("--teacher-url must be an http:// or https:// base URL");
    const loss = await forge([
      "bake",
      ...settings,
      "--teacher-url",
      teacher.url,
      "--loss",
      "forward-kl",
      "--out",
      at("bad"),
    ]);
    expect(loss.code).toBe(2);
    expect(loss.stderr).toContain("a remote teacher gives its top-K");
    const model = await forge([
      "bake",
      ...settings,
      "--teacher-url",
      teacher.url,
      "--teacher-model",
      "gpt-9",
      "--out",
      at("bad"),
    ]);
    expect(model.code).toBe(2);
    expect(model.stderr).toContain('serves "forge-tiny"');
    const lonely = await forge(["bake", ...settings, "--teacher-model", "x", "--out", at("bad")]);
    expect(lonely.code).toBe(2);
    expect(lonely.stderr).toContain("--teacher-model goes with --teacher-url");
  });
});
