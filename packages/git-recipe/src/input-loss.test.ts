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

describe("BAKE.layers and BAKE.progressive", () => {
  it("accept block lists, range strings and a ramp; bad values are exit 2 naming the field", () => {
    expect(parseInput(input("  layers: [0, 1]\n")).bake!.layers).toEqual([0, 1]);
    expect(parseInput(input('  layers: "0-1,3"\n')).bake!.layers).toBe("0-1,3");
    expect(
      parseInput(input("  progressive: { from: 0.2, fraction: 0.5 }\n")).bake!.progressive,
    ).toEqual({ from: 0.2, fraction: 0.5 });
    expect(parseInput(input("  progressive: { from: 0 }\n")).bake!.progressive).toEqual({
      from: 0,
    });
    const failure = (bake: string) => {
      try {
        parseInput(input(bake), "input.yml");
      } catch (error) {
        expect(exitCodeFor(error)).toBe(2);
        return String(error);
      }
      throw new Error(`accepted: ${bake}`);
    };
    expect(failure("  layers: [-1]\n")).toMatch(
      /input\.yml:\d+:\d+: BAKE\.layers: BAKE\.layers must be a list of block indices ≥ 0, or ranges like "0-1,3"; got \[-1\]/,
    );
    expect(failure('  layers: "zero"\n')).toMatch(/BAKE\.layers must be/);
    expect(failure("  progressive: { from: 2 }\n")).toMatch(
      /BAKE\.progressive must be \{from: a number in \[0, 1\], fraction: a number in \(0, 1\] \(default 0\.5\)\}; got \{"from":2\}/,
    );
    expect(failure("  progressive: { from: 0.2, speed: 1 }\n")).toMatch(
      /BAKE\.progressive must be/,
    );
  });
});

describe("TARGET without generators", () => {
  it("is the default stimulus mix (an empty list); an empty list given is still refused", () => {
    const text = `PROMPT:
  teacher:
    - { role: system, content: "You are a pirate." }
  student: []
TARGET:
  rollout: { samples: 2 }
`;
    expect(parseInput(text).target!.generators).toEqual([]);
    expect(() => parseInput(text.replace("TARGET:\n", "TARGET:\n  generators: []\n"))).toThrow(
      /TARGET\.generators must be a non-empty list/,
    );
  });
});

describe("BAKE.patience", () => {
  it("takes an integer ≥ 0 (0: train every epoch); anything else is exit 2 naming the field", () => {
    expect(parseInput(input("  patience: 0\n")).bake!.patience).toBe(0);
    expect(parseInput(input("  patience: 3\n")).bake!.patience).toBe(3);
    for (const bad of ["-1", "1.5", '"two"']) {
      let message = "";
      try {
        parseInput(input(`  patience: ${bad}\n`), "input.yml");
      } catch (error) {
        expect(exitCodeFor(error)).toBe(2);
        message = String(error);
      }
      expect(message).toMatch(
        /input\.yml:\d+:\d+: BAKE\.patience: BAKE\.patience must be an integer ≥ 0 \(0: train every epoch\)/,
      );
    }
  });
});
