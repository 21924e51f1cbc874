import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FORGE_TINY_DIR } from "@forge/tiny";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FORGE, forge, type Run } from "../run-cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-pipeline-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (...parts: string[]) => path.join(dir, ...parts);
let trained: Run;

function expectOk(run: Run): void {
  expect(run.stderr.includes("forge:") ? run.stderr : "").toBe("");
  expect(run.code).toBe(0);
}

beforeAll(async () => {
  // The smoke pipeline, end to end, through the real CLI: synth → tokenizer → shards → train.
  expectOk(
    await forge([
      "data",
      "synth",
      "--out",
      at("synth"),
      "--conversations",
      "1500",
      "--held-out",
      "4",
    ]),
  );
  expectOk(
    await forge([
      "tokenizer",
      "train",
      "--input",
      at("synth", "train.jsonl"),
      "--input",
      at("synth", "pretrain.jsonl"),
      "--vocab-size",
      "400",
      "--pattern",
      "gpt2-digits",
      "--out",
      at("tokenizer"),
    ]),
  );
  expectOk(
    await forge([
      "data",
      "build",
      "--input",
      at("synth"),
      "--tokenizer",
      at("tokenizer"),
      "--out",
      at("cache"),
      "--block-size",
      "64",
    ]),
  );
  trained = await forge([
    "train",
    "--profile",
    "smoke",
    "--data",
    at("cache"),
    "--tokenizer",
    at("tokenizer"),
    "--runs-dir",
    at("runs"),
    "--run-id",
    "smoke",
    "--out",
    at("model"),
    "--json",
  ]);
}, 60_000);

describe("forge train (smoke pipeline)", () => {
  it("runs end to end: the loss falls, settings and the model directory are written", () => {
    expectOk(trained);
    const summary = JSON.parse(trained.stdout);
    expect(summary.phases.map((p: { phase: string }) => p.phase)).toEqual(["pretrain", "sft"]);
    for (const phase of summary.phases) {
      expect(phase.steps).toBe(20);
      expect(phase.finalLoss).toBeLessThan(phase.firstLoss);
    }
    const resolved = JSON.parse(
      readFileSync(at("runs", "smoke", "resolved_settings.json"), "utf8"),
    );
    expect(resolved).toMatchObject({
      profile: "smoke",
      phase: "pipeline",
      settings: { model: { nLayer: 1, blockSize: 64 } },
    });
    for (const file of [
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "generation_config.json",
      "forge.json",
    ]) {
      expect(existsSync(at("model", file)), file).toBe(true);
    }
    const forgeJson = JSON.parse(readFileSync(at("model", "forge.json"), "utf8"));
    expect(forgeJson.createdBy).toMatch(/^forge train --profile smoke/);
  });

  it("--resume continues a finished phase's run from its checkpoint", async () => {
    const run = await forge([
      "train",
      "--phase",
      "pretrain",
      "--profile",
      "smoke",
      "--data",
      at("cache"),
      "--tokenizer",
      at("tokenizer"),
      "--runs-dir",
      at("runs"),
      "--run-id",
      "smoke",
      "--resume",
      "--json",
    ]);
    expectOk(run);
    expect(JSON.parse(run.stdout).phases[0].resumedFrom).toBe(20);
  });

  it("--list-profiles lists minimal, smoke, dev, tiny and prod", async () => {
    const run = await forge(["train", "--list-profiles"]);
    expect(run.stdout).toMatch(/^minimal .*\n.*\nsmoke .*\n.*\ndev .*\n.*\ntiny .*\n.*\nprod /);
  });

  it("a config file with an unknown key or a wrong type, or an unknown profile, exits 2 naming it", async () => {
    writeFileSync(at("unknown.json"), JSON.stringify({ model: { nLayers: 2 } }));
    writeFileSync(at("type.json"), JSON.stringify({ sft: { steps: "ten" } }));
    const unknown = await forge(["train", "--profile", "smoke", "--config", at("unknown.json")]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      `${at("unknown.json")}: unknown key "model.nLayers"; known keys in model: nLayer, nHead, nEmbd, blockSize, dropout, bias`,
    );
    const type = await forge(["train", "--profile", "smoke", "--config", at("type.json")]);
    expect(type.code).toBe(2);
    expect(type.stderr).toContain(`${at("type.json")}: "sft.steps" must be a number; got "ten"`);
    const profile = await forge(["train", "--profile", "huge"]);
    expect(profile.code).toBe(2);
    expect(profile.stderr).toMatch(/profile "huge" does not exist; profiles:\nminimal/);
  });
});

describe("forge chat and forge generate", () => {
  it("start with --system, --system-file, the model's default system prompt, or --no-system", async () => {
    const tiny = at("tiny-with-default");
    cpSync(FORGE_TINY_DIR, tiny, { recursive: true, dereference: true });
    const generation = JSON.parse(readFileSync(path.join(tiny, "generation_config.json"), "utf8"));
    writeFileSync(
      path.join(tiny, "generation_config.json"),
      JSON.stringify({ ...generation, system_prompt: "You are a pirate." }),
    );
    writeFileSync(at("robot.txt"), "You are a robot.\n");
    const ask = (...flags: string[]) =>
      forge([
        "generate",
        tiny,
        "--user",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--json",
        ...flags,
      ]);
    const system = async (...flags: string[]) => {
      const run = await ask(...flags);
      expectOk(run);
      return JSON.parse(run.stdout).messages[0];
    };
    expect(await system()).toEqual({ role: "system", content: "You are a pirate." });
    expect(await system("--system-file", at("robot.txt"))).toEqual({
      role: "system",
      content: "You are a robot.",
    });
    expect(await system("--no-system")).toEqual({
      role: "user",
      content: "What is the capital of France?",
    });
    const both = await ask("--system", "x", "--system-file", at("robot.txt"));
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("give --system or --system-file, not both");
    const chat = await forge(["chat", tiny, "--temperature", "0"], {}, "/status\n/quit\n");
    expect(chat.stdout).toMatch(/system "You are a pirate."/);
  });

  it("chat driven through stdin answers, honours /system, /status, /clear and /quit", async () => {
    const run = await forge(
      ["chat", at("model"), "--temperature", "0", "--max-new-tokens", "8"],
      {},
      "What is 12 + 30?\n/status\n/system You are a pirate.\n/status\nWhat is the capital of France?\n/clear\n/status\n/quit\nnever answered\n",
    );
    expectOk(run);
    const lines = run.stdout.replace(/\n$/, "").split("\n"); // replies may be empty (a smoke model)
    expect(lines).toHaveLength(7); // reply, status, system set, status, reply, cleared, status
    expect(lines[1]).toMatch(/context \d+\/64 tokens, 1 turns, system none, temperature 0/);
    expect(lines[2]).toBe("(system prompt set: You are a pirate.)");
    expect(lines[3]).toMatch(/0 turns, system "You are a pirate."/);
    expect(lines[5]).toBe("(conversation cleared)");
    expect(lines[6]).toMatch(/0 turns, system "You are a pirate."/);
  });

  it("generate gives one reply; a directory without config.json is a clear error", async () => {
    const run = await forge([
      "generate",
      at("model"),
      "--system",
      "You are a robot.",
      "--user",
      "Hi",
      "--temperature",
      "0",
      "--json",
    ]);
    expectOk(run);
    expect(JSON.parse(run.stdout).messages).toHaveLength(2);
    const bad = await forge(["generate", at("synth"), "--user", "Hi"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      `forge: ${at("synth")} is not a model directory: config.json is missing\n`,
    );
  });
});

describe("run manifests", () => {
  it("forge train writes manifest.json: phases, loss history, artifacts with hashes, status succeeded", async () => {
    const manifest = JSON.parse(readFileSync(at("runs", "smoke", "manifest.json"), "utf8"));
    expect(manifest.run.status).toBe("succeeded");
    expect(manifest.phases.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(["pretrain", "sft", "save"]),
    );
    expect(manifest.training.logHistory.length).toBeGreaterThanOrEqual(40);
    expect(manifest.outputs.artifacts.map((a: { path: string }) => path.basename(a.path))).toEqual([
      "model.safetensors",
      "config.json",
      "tokenizer.json",
    ]);
    const show = await forge(["manifest", "show", at("runs", "smoke"), "--section", "training"]);
    expectOk(show);
    expect(show.stdout).toMatch(/^training \(\d+ steps recorded\)\n {2}loss +[▁▂▃▄▅▆▇█]+/);
    const plot = await forge([
      "manifest",
      "plot",
      at("runs", "smoke", "manifest.json"),
      "--out",
      at("loss.svg"),
    ]);
    expectOk(plot);
    expect(readFileSync(at("loss.svg"), "utf8")).toMatch(/<svg[\s\S]*pretrain loss[\s\S]*sft loss/);
    const bad = await forge(["manifest", "show", at("runs", "smoke"), "--section", "weights"]);
    expect(bad.code).toBe(2);
  });

  it("a run killed with SIGKILL leaves a valid manifest with status running; --resume completes it", async () => {
    writeFileSync(
      at("long.json"),
      JSON.stringify({
        pretrain: { steps: 400, checkpointEvery: 10, evalEvery: 100 },
        sft: { steps: 5 },
      }),
    );
    const args = [
      "train",
      "--profile",
      "smoke",
      "--config",
      at("long.json"),
      "--data",
      at("cache"),
      "--tokenizer",
      at("tokenizer"),
      "--runs-dir",
      at("runs"),
      "--run-id",
      "killed",
    ];
    const child = spawn(process.execPath, [FORGE, ...args], { stdio: "ignore" });
    const manifestFile = at("runs", "killed", "manifest.json");
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      const steps = existsSync(manifestFile)
        ? JSON.parse(readFileSync(manifestFile, "utf8")).training.logHistory.length
        : 0;
      if (steps >= 20 && existsSync(at("runs", "killed", "checkpoints", "pretrain", "last"))) break;
    }
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const killed = JSON.parse(readFileSync(manifestFile, "utf8"));
    expect(killed.run.status).toBe("running");
    expect(killed.training.logHistory.length).toBeGreaterThan(0);
    const resumed = await forge([...args, "--resume", "--json"]);
    expectOk(resumed);
    const done = JSON.parse(readFileSync(manifestFile, "utf8"));
    expect(done.run.status).toBe("succeeded");
    expect(done.run.resumes).toHaveLength(1);
    expect(
      done.phases.find(
        (p: { name: string; status: string }) =>
          p.name === "pretrain" && p.status === "interrupted",
      ),
    ).toBeDefined();
    expect(JSON.parse(resumed.stdout).phases[0].resumedFrom).toBeGreaterThanOrEqual(10);
  }, 90_000);
});
