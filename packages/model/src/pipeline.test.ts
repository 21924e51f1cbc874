import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor } from "@forge/core";
import * as tf from "@tensorflow/tfjs";
import { afterAll, describe, expect, it } from "vitest";
import { TokenCacheWriter } from "./data.js";
import {
  overlaySettings,
  PROFILES,
  phaseSources,
  type RunSettings,
  resolveRunSettings,
} from "./pipeline.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-pipeline-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pretrain cache of `n` tokens drawn from [low, high). */
function cache(name: string, low: number, high: number, n = 4000): void {
  const writer = new TokenCacheWriter(path.join(dir, name), { kind: "pretrain", vocabSize: 256 });
  writer.append(Array.from({ length: n }, (_, i) => low + (i % (high - low))));
  writer.close();
}

function settings(overrides: Record<string, unknown>): RunSettings {
  const base = structuredClone(PROFILES.smoke!.settings);
  return overlaySettings(base, { data: dir, ...overrides }, "test settings");
}

async function tokensOf(
  source: Awaited<ReturnType<typeof phaseSources>>["train"],
  batches: number,
): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < batches; i++) {
    const batch = source.next();
    for (const id of batch.ids.dataSync()) seen.add(id);
    tf.dispose([batch.ids, batch.targets, ...(batch.mask ? [batch.mask] : [])]);
  }
  return seen;
}

describe("training runs: the pretraining mix and the validation source", () => {
  cache("prose", 0, 50);
  cache("code", 100, 150);
  cache("held-out", 200, 250);

  it("samples the caches mixPretrain weights above 0, and validates on validationPretrain", async () => {
    const onlyCode = await phaseSources(
      settings({ mixPretrain: { prose: 0, code: 1 }, validationPretrain: "held-out" }),
      "pretrain",
    );
    const train = await tokensOf(onlyCode.train, 20);
    expect([...train].every((id) => id >= 100 && id < 150)).toBe(true);
    const validation = await tokensOf(onlyCode.validation, 5);
    expect([...validation].every((id) => id >= 200 && id < 250)).toBe(true);

    const both = await phaseSources(
      settings({ mixPretrain: { prose: 1, code: 1 }, validationPretrain: "held-out" }),
      "pretrain",
    );
    const mixed = await tokensOf(both.train, 40);
    expect([...mixed].some((id) => id < 50)).toBe(true);
    expect([...mixed].some((id) => id >= 100)).toBe(true);
  });

  it("a config file's mix is checked: weights ≥ 0, at least one above 0, caches that exist", async () => {
    expect(() => settings({ mixPretrain: { prose: -1 } })).toThrow(
      '"mixPretrain.prose" must be a weight ≥ 0; got -1',
    );
    expect(() => settings({ mixPretrain: { prose: 0 } })).toThrow(
      '"mixPretrain" needs at least one weight above 0',
    );
    const missing = await phaseSources(settings({ mixPretrain: { nowhere: 1 } }), "pretrain").catch(
      (e: unknown) => e,
    );
    expect(exitCodeFor(missing)).toBe(2);
    expect((missing as Error).message).toContain("nowhere");
  });

  it("profiles: minimal, smoke, dev, tiny and prod; a config file overlays one", async () => {
    expect(Object.keys(PROFILES)).toEqual(["minimal", "smoke", "dev", "tiny", "prod"]);
    expect(PROFILES.prod!.settings.model).toMatchObject({ nLayer: 12, nEmbd: 768 });
    const file = path.join(dir, "config.json");
    writeFileSync(
      file,
      JSON.stringify({ mixPretrain: { commits: 0.3, "pretrain-train": 0.7 }, sft: { steps: 5 } }),
    );
    const resolved = await resolveRunSettings("minimal", file);
    expect(resolved.mixPretrain).toEqual({ commits: 0.3, "pretrain-train": 0.7 });
    expect(resolved.sft.steps).toBe(5);
    expect(resolved.pretrain.steps).toBe(PROFILES.minimal!.settings.pretrain.steps);
  });
});
