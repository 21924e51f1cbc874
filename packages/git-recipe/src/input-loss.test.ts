/** BAKE.loss and its parameters in input.yml: every accepted loss parses; a bad one is exit 2 naming the field. */
import { exitCodeFor } from "@forge/core";
import { describe, expect, it } from "vitest";
import { BAKE_LOSSES, parseInput } from "./input.js";

const input = (bake: string, rollout = "{ samples: 2 }") => `PROMPT:
  teacher:
    - { role: system, content: "You are a pirate." }
  student: []
TARGET:
  generators:
    - { type: persona, count: 5 }
  rollout: ${rollout}
BAKE:
  epochs: 2
${bake}`;

describe("BAKE.loss", () => {
  it("accepts every loss a bake trains on, with its β or temperature", () => {
    for (const loss of BAKE_LOSSES)
      expect(parseInput(input(`  loss: ${loss}\n`)).bake!.loss).toBe(loss);
    expect(parseInput(input("  loss: jsd\n  lossBeta: 0.3\n")).bake).toMatchObject({
      loss: "jsd",
      lossBeta: 0.3,
    });
    expect(
      parseInput(input("  loss: distillation\n  lossTemperature: 2\n")).bake!.lossTemperature,
    ).toBe(2);
    expect(
      parseInput(input("  loss: topk-js\n", "{ samples: 2, cacheTopK: 16 }")).target!.rollout
        .cacheTopK,
    ).toBe(16);
  });

  it("an unknown loss is exit 2 naming the file, line, field and the accepted values", () => {
    let error: unknown;
    try {
      parseInput(input("  loss: kl\n"), "input.yml");
    } catch (e) {
      error = e;
    }
    expect(exitCodeFor(error)).toBe(2);
    expect(String(error)).toMatch(
      /input\.yml:\d+:\d+: BAKE\.loss: BAKE\.loss must be one of forward-kl, reverse-kl, js, jsd, distillation, topk, topk-reverse-kl, topk-js, topk-jsd, full; got "kl"/,
    );
  });
});
