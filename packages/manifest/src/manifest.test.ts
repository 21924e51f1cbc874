import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ManifestError } from "./errors.js";
import { svgLineChart } from "./index.js";
import { epochsFor, scaledLearningRate, warmupSteps } from "./parameters.js";
import { validateManifest } from "./schema.js";
import { formatManifest, sparkline } from "./view.js";
import { downsample, ManifestWriter, readManifest } from "./writer.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-manifest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const read = (file: string) => JSON.parse(readFileSync(file, "utf8"));

describe("schema", () => {
  it("accepts what the writer writes and rejects a manifest missing required fields, naming the paths", async () => {
    const file = path.join(dir, "schema.json");
    const writer = await ManifestWriter.create(file, {
      kind: "train",
      forgeVersion: "0.0.0",
      hardwareIntervalSeconds: 0,
    });
    await writer.succeed();
    expect(validateManifest(read(file)).ok).toBe(true);
    const broken = read(file);
    delete broken.run.status;
    delete broken.environment;
    broken.outputs.artifacts.push({ path: "x", bytes: -1, sha256: "nope" });
    const result = validateManifest(broken);
    expect(result.ok).toBe(false);
    const paths = (result as { errors: { path: string }[] }).errors.map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "/environment",
        "/run/status",
        "/outputs/artifacts/0/bytes",
        "/outputs/artifacts/0/sha256",
      ]),
    );
    writeFileSync(path.join(dir, "broken.json"), JSON.stringify(broken));
    await expect(readManifest(path.join(dir, "broken.json"))).rejects.toThrow(
      /broken.json: not a valid run manifest — .*\/run\/status: must have required property 'status'/,
    );
  });
});

describe("ManifestWriter", () => {
  it("is complete valid JSON from the first write; status goes running → succeeded; phases get durations", async () => {
    const file = path.join(dir, "run", "manifest.json");
    const writer = await ManifestWriter.create(file, {
      kind: "train",
      forgeVersion: "1.2.3",
      backend: "wasm",
      parameters: { lr: 0.001 },
      repository: {
        commit: "abc123",
        branch: "main",
        dirty: false,
        commitCount: 4,
        branchCount: 1,
      },
      hardwareIntervalSeconds: 0.02,
    });
    expect(read(file).run.status).toBe("running");
    await writer.phaseStart("pretrain");
    for (let step = 1; step <= 10; step++)
      writer.recordStep({
        phase: "pretrain",
        step,
        loss: 5 / step,
        learningRate: 1e-3,
        gradNorm: 1,
        tokensPerSecond: 1000,
      });
    writer.recordEval({ phase: "pretrain", step: 10, loss: 0.7 });
    await new Promise((r) => setTimeout(r, 80));
    await writer.phaseEnd("pretrain", "succeeded", { steps: 10 });
    writer.derive(
      epochsFor({ targetTokens: 2e7, totalTokens: 78 * 2048, minEpochs: 3, maxEpochs: 10 }),
    );
    const artifact = path.join(dir, "weights.bin");
    writeFileSync(artifact, "hello");
    await writer.addArtifact(artifact, "weights");
    writer.setMetric("finalLoss", 0.5);
    writer.link("model", path.join(dir, "model"));
    await writer.succeed();
    const m = await readManifest(file);
    expect(m.run).toMatchObject({
      status: "succeeded",
      kind: "train",
      backend: "wasm",
      forgeVersion: "1.2.3",
    });
    expect(m.run.durationSeconds).toBeGreaterThan(0);
    expect(m.phases[0]).toMatchObject({
      name: "pretrain",
      status: "succeeded",
      counts: { steps: 10 },
    });
    expect(m.training.summary.loss).toEqual({ min: 0.5, max: 5, final: 0.5, count: 10 });
    expect(m.training.evalHistory[0]!.perplexity).toBeCloseTo(Math.exp(0.7));
    expect(m.outputs.artifacts[0]).toEqual({
      path: artifact,
      bytes: 5,
      sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
      kind: "weights",
    });
    expect(m.parameters.derived[0]).toMatchObject({ name: "epochs", value: 10 });
    expect(m.hardware.samples.length).toBeGreaterThan(0);
    expect(m.hardware.peaks.rssBytes).toBeGreaterThan(0);
    expect(formatManifest(m)).toMatch(
      /run .* \(train\) — succeeded[\s\S]*loss +[▁▂▃▄▅▆▇█]+[\s\S]*min 0.5 +max 5 +final 0.5/,
    );
  });

  it("records a failure with the error, and closes running phases as failed", async () => {
    const file = path.join(dir, "failed.json");
    const writer = await ManifestWriter.create(file, {
      kind: "bake",
      forgeVersion: "0",
      hardwareIntervalSeconds: 0,
    });
    await writer.phaseStart("rollout");
    await writer.fail(Object.assign(new Error("out of memory"), { code: "E_OOM" }));
    const m = read(file);
    expect(m.run).toMatchObject({
      status: "failed",
      error: { message: "out of memory", code: "E_OOM", name: "Error" },
    });
    expect(m.phases[0].status).toBe("failed");
  });

  it("bounds the flush rate: steps between flushes are not written until the next flush", async () => {
    const file = path.join(dir, "rate.json");
    const writer = await ManifestWriter.create(file, {
      kind: "train",
      forgeVersion: "0",
      flushIntervalMs: 60_000,
      hardwareIntervalSeconds: 0,
    });
    for (let step = 1; step <= 50; step++) writer.recordStep({ step, loss: 1 });
    expect(read(file).training.logHistory).toHaveLength(0);
    await writer.flush(true);
    expect(read(file).training.logHistory).toHaveLength(50);
    await writer.succeed();
  });

  it("downsamples long histories for the file while min/max/final stay exact", async () => {
    const file = path.join(dir, "long.json");
    const writer = await ManifestWriter.create(file, {
      kind: "train",
      forgeVersion: "0",
      maxPoints: 100,
      hardwareIntervalSeconds: 0,
    });
    for (let step = 1; step <= 1000; step++)
      writer.recordStep({ step, loss: step === 333 ? -7 : Math.sin(step) + 2 });
    await writer.succeed();
    const m = read(file);
    expect(m.training.logHistory.length).toBeLessThanOrEqual(100);
    expect(m.training.logHistory[0].step).toBe(1);
    expect(m.training.logHistory.at(-1).step).toBe(1000);
    expect(m.training.downsampled).toBe(true);
    expect(m.training.summary.loss.min).toBe(-7); // the point itself may be dropped; the summary keeps it
    expect(m.training.summary.loss.count).toBe(1000);
    expect(downsample([1, 2, 3, 4, 5], 3).points).toEqual([1, 3, 5]);
  });

  it("resumes a manifest a killed run left behind: status running again, the resume recorded, history kept", async () => {
    const file = path.join(dir, "resume.json");
    const first = await ManifestWriter.create(file, {
      kind: "train",
      forgeVersion: "0",
      hardwareIntervalSeconds: 0,
    });
    await first.phaseStart("sft");
    first.recordStep({ step: 1, loss: 3 });
    await first.detach(); // as if killed: no end written
    expect(read(file).run.status).toBe("running");
    const second = await ManifestWriter.resume(file, { hardwareIntervalSeconds: 0 });
    expect(read(file).phases[0].status).toBe("interrupted");
    await second.phaseStart("sft");
    second.recordStep({ step: 2, loss: 2 });
    await second.succeed();
    const m = read(file);
    expect(m.run.status).toBe("succeeded");
    expect(m.run.resumes).toHaveLength(1);
    expect(m.training.logHistory.map((s: { step: number }) => s.step)).toEqual([1, 2]);
    await expect(ManifestWriter.resume(path.join(dir, "absent.json"))).rejects.toThrow(
      /cannot read .*absent.json: ENOENT/,
    );
  });

  it("an interrupted run says so; --resume continues the same manifest with its steps appended", async () => {
    const file = path.join(dir, "interrupted.json");
    const first = await ManifestWriter.create(file, {
      kind: "bake",
      forgeVersion: "0",
      hardwareIntervalSeconds: 0,
    });
    await first.phaseStart("bake");
    first.recordStep({ step: 1, loss: 3 });
    first.recordStep({ step: 2, loss: 2.5 });
    await first.interrupt("SIGINT at step 2; resume with --resume");
    const stopped = read(file);
    expect(stopped.run.status).toBe("interrupted");
    expect(stopped.phases[0].status).toBe("interrupted");
    expect(stopped.run.error.message).toContain("SIGINT");
    const second = await ManifestWriter.resume(file, { hardwareIntervalSeconds: 0 });
    await second.phaseStart("bake");
    second.recordStep({ step: 3, loss: 2 });
    await second.succeed();
    const m = read(file);
    expect(m.run.status).toBe("succeeded");
    expect(m.run.error).toBeUndefined();
    expect(m.training.logHistory.map((s: { step: number }) => s.step)).toEqual([1, 2, 3]);
    expect(validateManifest(m).ok).toBe(true);
  });

  it("a write the disk refuses is no unhandled rejection: the next awaited call names the file", async () => {
    const runDir = mkdtempSync(path.join(dir, "gone-"));
    const file = path.join(runDir, "manifest.json");
    const writer = await ManifestWriter.create(file, {
      kind: "train",
      forgeVersion: "0",
      hardwareIntervalSeconds: 0,
      flushIntervalMs: 0,
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      rmSync(runDir, { recursive: true, force: true });
      writeFileSync(runDir, "now a file: every write under it fails");
      for (let step = 1; step <= 5; step++) writer.recordStep({ step, loss: 1 / step });
      const error = await writer.phaseStart("sft").catch((e: unknown) => e);
      expect(ManifestError.isInstance(error)).toBe(true);
      expect((error as ManifestError).code).toBe("E_IO");
      expect((error as Error).message).toContain(`cannot write the run manifest ${file}`);
      await writer.fail(new Error("the run's own error")); // best effort: never rejects
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      rmSync(runDir, { force: true });
    }
  });

  it("the hardware sampler never keeps a process alive, and stops when the run ends", async () => {
    const distIndex = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const script = path.join(dir, "sampler.mjs");
    writeFileSync(
      script,
      `import { ManifestWriter } from ${JSON.stringify(distIndex)};
const w = await ManifestWriter.create(${JSON.stringify(path.join(dir, "child.json"))}, { kind: "x", forgeVersion: "0", hardwareIntervalSeconds: 0.05 });
w.recordStep({ step: 1, loss: 1 });
if (process.argv[2] === "finish") await w.succeed();
`,
    );
    for (const mode of ["finish", "abandon"]) {
      const started = Date.now();
      await new Promise<void>((resolve, reject) =>
        execFile(process.execPath, [script, mode], { timeout: 10_000 }, (error) =>
          error ? reject(error) : resolve(),
        ),
      );
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });
});

describe("parameter helpers", () => {
  it("epochs: the seed pipeline's table", () => {
    expect(
      epochsFor({ targetTokens: 20_000_000, totalTokens: 78 * 2048, minEpochs: 3, maxEpochs: 10 })
        .value,
    ).toBe(10);
    expect(
      epochsFor({
        targetTokens: 20_000_000,
        totalTokens: 10_000 * 2048,
        minEpochs: 3,
        maxEpochs: 10,
      }).value,
    ).toBe(3);
    expect(
      epochsFor({ targetTokens: 20_000_000, totalTokens: 2_500_000, minEpochs: 3, maxEpochs: 10 })
        .value,
    ).toBe(8);
    expect(() =>
      epochsFor({ targetTokens: 1, totalTokens: 0, minEpochs: 1, maxEpochs: 2 }),
    ).toThrow(ManifestError);
  });

  it("warmup steps are bounded to [min, max]; learning rates scale with batch size", () => {
    expect(warmupSteps({ fraction: 0.05, totalSteps: 100, min: 10, max: 200 }).value).toBe(10);
    expect(warmupSteps({ fraction: 0.05, totalSteps: 10_000, min: 10, max: 200 }).value).toBe(200);
    expect(warmupSteps({ fraction: 0.05, totalSteps: 1000, min: 10, max: 200 }).value).toBe(50);
    expect(
      scaledLearningRate({ baseLearningRate: 1e-3, baseBatchSize: 8, batchSize: 32 }).value,
    ).toBeCloseTo(4e-3);
    expect(
      scaledLearningRate({ baseLearningRate: 1e-3, baseBatchSize: 8, batchSize: 32, rule: "sqrt" })
        .value,
    ).toBeCloseTo(2e-3);
    expect(() => warmupSteps({ fraction: 2, totalSteps: 1, min: 0, max: 1 })).toThrow(
      "fraction must be in [0, 1]; got 2",
    );
  });
});

describe("views", () => {
  it("sparklines span the range; SVG charts are self-contained", () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe("▁▂▃▄▅▆▇█");
    expect(sparkline([])).toBe("");
    const svg = svgLineChart(
      [
        {
          name: "loss <train>",
          points: [
            [1, 3],
            [2, 2],
            [3, 1],
          ],
        },
      ],
      { title: "Loss", xLabel: "step" },
    );
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain("loss &lt;train&gt;");
    expect(svg).not.toMatch(/<script|href=/);
  });
});
