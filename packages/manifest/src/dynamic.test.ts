import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { assertDynamicManifest, dynamicManifest } from "./dynamic.js";
import { readGpu, readTemperature } from "./hardware.js";
import { ManifestWriter, readManifest } from "./writer.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-dynamic-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hardware beyond CPU and memory", () => {
  it("reads the hottest thermal zone, and nothing where there is none", () => {
    const root = path.join(dir, "thermal");
    for (const [zone, milli] of [
      ["thermal_zone0", "41000"],
      ["thermal_zone1", "57500"],
      ["cooling_device0", "3"],
    ] as const) {
      mkdirSync(path.join(root, zone), { recursive: true });
      writeFileSync(path.join(root, zone, "temp"), `${milli}\n`);
    }
    mkdirSync(path.join(root, "thermal_zone2")); // no temp file: skipped
    expect(readTemperature(root)).toBe(57.5);
    expect(readTemperature(path.join(dir, "absent"))).toBeUndefined();
  });

  it("reads the first GPU's memory, temperature and utilisation from nvidia-smi's CSV", () => {
    const fake = path.join(dir, "fake-nvidia-smi");
    writeFileSync(fake, "#!/bin/sh\necho '2048, 63, 87'\necho '10, 30, 0'\n");
    chmodSync(fake, 0o755);
    expect(readGpu(fake)).toEqual({
      gpuMemoryBytes: 2048 * 2 ** 20,
      gpuTemperatureC: 63,
      gpuUtilizationPercent: 87,
    });
    expect(readGpu(path.join(dir, "no-such-command"))).toBeUndefined();
    const garbled = path.join(dir, "garbled");
    writeFileSync(garbled, "#!/bin/sh\necho 'N/A, N/A, N/A'\n");
    chmodSync(garbled, 0o755);
    expect(readGpu(garbled)).toBeUndefined();
  });
});

describe("MANIFEST_DYNAMIC.json", () => {
  it("is computed from a run manifest: repository, parameters, phases with timings, histories and peaks", async () => {
    const file = path.join(dir, "run", "manifest.json");
    const writer = await ManifestWriter.create(file, {
      kind: "pipeline",
      forgeVersion: "test",
      hardwareIntervalSeconds: 0.05,
    });
    await writer.phaseStart("scrape");
    await writer.phaseEnd("scrape", "succeeded", { commits: 12 });
    await writer.phaseStart("train");
    for (let step = 1; step <= 6; step++)
      writer.recordStep({
        phase: "train",
        step,
        loss: 5 - step * 0.5,
        learningRate: step < 3 ? step * 1e-3 : 3e-3,
        gradNorm: 1 + (step % 2),
        tokensPerSecond: 100,
        elapsedSeconds: step,
      });
    writer.recordEval({ phase: "train", step: 3, loss: 4.2, perplexity: Math.exp(4.2) });
    writer.recordEval({ phase: "train", step: 6, loss: 3.9, perplexity: Math.exp(3.9) });
    await new Promise((r) => setTimeout(r, 150));
    await writer.phaseEnd("train", "succeeded", { steps: 6 });
    await writer.succeed();
    const manifest = await readManifest(file);
    const dynamic = assertDynamicManifest(
      dynamicManifest(manifest, {
        repositoryStats: { total_commits: 12 },
        trainingParameters: {
          epochs: { value: 3, source: "derived", rule: "clamp(…)", inputs: { totalTokens: 1 } },
        },
        trainingPhase: "train",
      }),
      "test",
    );
    expect(dynamic.status).toBe("succeeded");
    expect(dynamic.phase_results.scrape).toMatchObject({
      status: "succeeded",
      counts: { commits: 12 },
    });
    expect(dynamic.phase_results.train!.duration_seconds).toBeGreaterThan(0.1);
    const t = dynamic.training_report.training;
    expect(t.final_train_loss).toBe(2);
    expect(t.first_val_loss).toBe(4.2);
    expect(t.best_val_loss).toBe(3.9);
    expect(t.final_perplexity).toBeCloseTo(Math.exp(3.9), 9);
    expect([t.gradient_norm.min, t.gradient_norm.max]).toEqual([1, 2]);
    expect([t.learning_rate.min, t.learning_rate.max]).toEqual([1e-3, 3e-3]);
    expect(t.loss.history).toHaveLength(6);
    const hw = dynamic.training_report.hardware;
    expect(hw.samples).toBeGreaterThan(0);
    expect(hw.peak_rss_bytes).toBeGreaterThan(0);
    expect(hw.sampling_interval_seconds).toBe(0.05);
  });

  it("the schema names what is missing or wrong", () => {
    expect(() => assertDynamicManifest({ schema_version: 1 }, "MANIFEST_DYNAMIC.json")).toThrow(
      /MANIFEST_DYNAMIC.json.*must have required property 'repository_stats'/,
    );
    expect(() =>
      assertDynamicManifest(
        {
          schema_version: 1,
          execution_timestamp: "x",
          total_execution_time_seconds: -1,
          status: "succeeded",
          repository_stats: {},
          training_parameters: { epochs: { value: 3, source: "guessed" } },
          phase_results: {},
          training_report: {},
        },
        "m.json",
      ),
    ).toThrow(/source/);
  });
});
