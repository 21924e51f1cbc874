/**
 * The XML reports parse with a strict XML 1.0 parser (saxes, which rejects what the spec
 * forbids — unlike lenient validators that accept a raw U+0001), whatever the task and model
 * names hold.
 */
import { SaxesParser } from "saxes";
import { describe, expect, it } from "vitest";
import { compareResults, evaluateGates, forgettingFromResults } from "./compare.js";
import { deltaSvg, heatmapSvg, toJUnit } from "./report.js";
import type { EvalResults } from "./runner.js";

/** Parse strictly; returns every element with its attributes, or throws at the first error. */
function parseXml(text: string): { name: string; attributes: Record<string, string> }[] {
  const elements: { name: string; attributes: Record<string, string> }[] = [];
  const parser = new SaxesParser();
  parser.on("error", (error) => {
    throw error;
  });
  parser.on("opentag", (tag) =>
    elements.push({ name: tag.name, attributes: tag.attributes as Record<string, string> }),
  );
  parser.write(text).close();
  return elements;
}

const results = (model: string, task: string, scores: number[]): EvalResults => ({
  schemaVersion: 1,
  kind: "forge-eval-results",
  model: { name: model, hash: model },
  createdAt: "",
  settings: { seed: 0 },
  tasks: [
    {
      name: task,
      hash: "h",
      tags: [],
      scorer: "contains",
      rounds: 1,
      n: scores.length,
      mean: scores.reduce((a, b) => a + b, 0) / scores.length,
      records: scores.map((score, i) => ({
        id: `i${i}`,
        round: 0,
        seed: 0,
        input: [],
        output: "",
        score,
      })),
    },
  ],
});

describe("JUnit and SVG with names XML cannot hold", () => {
  const task = "colour\u001b[31m red\u0001 <b> & \"q\" 'a'\ttab\nline\uFFFE \uD800 😀";
  const model = "base\u0000\u0008";
  const a = results(model, task, [1, 1, 0, 1, 1, 1, 0, 1, 1, 1]);
  const b = results("baked\u000b", task, [1, 0, 0, 1, 0, 1, 0, 1, 0, 1]);
  const comparison = compareResults(a, b);
  const forgetting = forgettingFromResults(a, [b]);
  const gates = evaluateGates(["regression", "forgetting"], comparison, forgetting);

  it("the raw report is refused by the strict parser (the test can fail)", () => {
    expect(() => parseXml(`<a name="${task}"/>`)).toThrow(/disallowed character/);
  });

  it("JUnit parses, and each name keeps what XML can hold with the rest shown as its code", () => {
    const xml = toJUnit({ title: `forge\u0007 eval`, results: [a, b], comparison, gates });
    const elements = parseXml(xml);
    expect(elements.find((e) => e.name === "testsuites")!.attributes.name).toBe(
      "forge\\u0007 eval",
    );
    const cases = elements.filter((e) => e.name === "testcase");
    expect(cases).toHaveLength(2 + 1 + gates.length);
    const expected = "colour\\u001b[31m red\\u0001 <b> & \"q\" 'a'\ttab\nline\\ufffe \\ud800 😀";
    expect(cases[0]!.attributes).toMatchObject({
      classname: "forge.eval.base\\u0000\\u0008",
      name: expected,
    });
    expect(cases[1]!.attributes.classname).toBe("forge.eval.baked\\u000b");
    expect(cases[2]!.attributes.name).toBe(expected);
    expect(elements.some((e) => e.name === "failure")).toBe(true);
  });

  it("the SVG plots parse too", () => {
    // background, two score cells, and the outline of the baked cell that fails (−37.5%)
    const svg = heatmapSvg(forgetting);
    expect(parseXml(svg).filter((e) => e.name === "rect").length).toBe(4);
    expect(svg).toContain("−37.5%");
    expect(svg).toContain("max −37.5% · 0/1 passed");
    expect(parseXml(deltaSvg(comparison)).some((e) => e.name === "circle")).toBe(true);
  });
});
