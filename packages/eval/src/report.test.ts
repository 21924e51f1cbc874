/**
 * The XML reports parse with a strict XML 1.0 parser (saxes, which rejects what the spec
 * forbids — unlike lenient validators that accept a raw U+0001), whatever the task and model
 * names hold.
 */
import { SaxesParser } from "saxes";
import { describe, expect, it } from "vitest";
import { compareResults, evaluateGates, forgettingFromResults } from "./compare.js";
import { deltaSvg, heatmapSvg, type ReportInput, toHtml, toJUnit, toMarkdown } from "./report.js";
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

describe("the report page (toHtml) and its Markdown", () => {
  const hostile = "capitals <script>alert(1)</script> | &";
  const base = results("base", hostile, [1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]);
  const baked = results("baked", hostile, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1]);
  const prompted = results("base+prompt", "persona-pirate", [1, 1, 1, 1, 1, 1, 1, 0]);
  const bakedPersona = results("baked", "persona-pirate", [1, 1, 1, 1, 1, 0, 1, 1]);
  // synthetic drift (the demo fills it from its own measurement): two curves over 30 turns
  const drift = {
    turns: 30,
    curves: ["prompted", "baked"].map((name, k) => ({
      name,
      points: Array.from({ length: 30 }, (_, t) => {
        const mean = k === 0 ? Math.max(0, 1 - t / 12) : 1 - t / 300;
        return { turn: t + 1, mean, low: Math.max(0, mean - 0.1), high: Math.min(1, mean + 0.1) };
      }),
    })),
  };
  const input: ReportInput = {
    title: "forge demo — <pirate>",
    facts: [
      ["model", "forge-tiny"],
      ["prompt", "You are a pirate. | Arr & <b>"],
    ],
    kl: {
      before: { token: 0.1234, tokenSE: 0.0056, sequence: 4.5, sequenceSE: 0.25 },
      after: { token: 0.0062, tokenSE: 0.0004, sequence: 0.2, sequenceSE: 0.01 },
      reduction: 0.95,
      n: 128,
    },
    beforeAfter: [{ label: "pirate signature rate", base: 0, prompted: 0.993, baked: 0.98 }],
    strength: {
      label: "pirate signature rate",
      points: [0, 0.25, 0.5, 0.75, 1, 1.5].map((alpha) => ({
        alpha,
        value: Math.min(1, alpha ** 2),
      })),
    },
    drift,
    bars: [
      { name: "KL reduction ≥ 80%", value: 0.95, pass: true },
      { name: "demo ≤ 1 s", value: 90, pass: false },
    ],
    comparison: compareResults(prompted, bakedPersona),
    forgetting: forgettingFromResults(base, [baked]),
    timings: { bake: 74.61, total: 84.3 },
  };
  const html = toHtml(input);
  const body = html.slice(html.indexOf("<body>"), html.indexOf("</body>") + "</body>".length);

  it("is well-formed, loads nothing, and shows every section as HTML tables and SVG figures", () => {
    const elements = parseXml(body); // throws at an unclosed tag or an unescaped character
    expect(html).not.toMatch(/<script|src=|href=|<pre/);
    expect(html).not.toContain("|---");
    const names = elements.map((e) => e.name);
    expect(names.filter((n) => n === "h3")).toHaveLength(7); // before/after, bars, strength, drift, A/B, forgetting, timings
    expect(names.filter((n) => n === "table").length).toBe(7);
    const svgs = elements.filter((e) => e.name === "svg").map((e) => e.attributes["aria-label"]);
    expect(svgs).toEqual([
      "Half-baking: pirate signature rate vs adapter strength α",
      "Persona score over 30 turns",
      "per-task differences",
      "forgetting heatmap",
    ]);
    expect(
      elements.filter((e) => e.name === "polygon" && e.attributes.class === "band"),
    ).toHaveLength(2);
  });

  it("the before/after table holds the KL with its standard errors and the rates", () => {
    const markdown = toMarkdown(input);
    expect(markdown).toContain(
      "| KL to the prompted model, token (± SE) | 0.1234 ± 0.0056 | 0 | 0.0062 ± 0.0004 |",
    );
    expect(markdown).toContain("| pirate signature rate | 0.0% | 99.3% | 98.0% |");
    expect(markdown).toContain("KL reduction 95.0% (token level), n = 128 trajectories");
    expect(markdown).toContain("| 30 | 0.0% (0.0% … 10.0%) | 90.3% (80.3% … 100.0%) |");
    expect(html).toContain("<td>KL to the prompted model, token (± SE)</td>");
    expect(html).toContain('<td style="text-align:right">0.1234 ± 0.0056</td>');
  });

  it("names with markup or pipes stay text, in tables and figures alike", () => {
    expect(html).toContain("capitals &lt;script&gt;alert(1)&lt;/script&gt; | &amp;");
    expect(html).toContain("You are a pirate. | Arr &amp; &lt;b&gt;");
    // the forgetting table keeps one column per task although the name holds a pipe
    const markdown = toMarkdown(input);
    expect(markdown).toContain("| model | capitals <script>alert(1)</script> \\| & |");
  });

  it("sections are shown only when the run has them (no drift, no KL: neither appears)", () => {
    const { drift: _drift, kl: _kl, beforeAfter: _rows, ...rest } = input;
    const without = toHtml(rest);
    expect(without).not.toContain("Drift over");
    expect(without).not.toContain("Before and after");
    expect(without).toContain("Half-baking strength");
  });

  it("bad values: a NaN rate or KL shows as –, non-finite curve points are left out of the chart", () => {
    const html = toHtml({
      title: "bad values",
      kl: {
        before: {
          token: Number.NaN,
          tokenSE: 0,
          sequence: 1,
          sequenceSE: Number.POSITIVE_INFINITY,
        },
        after: { token: 0.1, tokenSE: 0.01, sequence: 0.5, sequenceSE: 0.1 },
        reduction: Number.NaN,
        n: 8,
      },
      strength: {
        label: "rate",
        points: [
          { alpha: 0, value: 0 },
          { alpha: 0.5, value: Number.NaN },
          { alpha: 1, value: 1 },
        ],
      },
      drift: { turns: 2, curves: [{ name: "empty", points: [] }] },
    });
    expect(html).not.toContain("NaN");
    expect(html).not.toContain("Infinity");
    expect(html).toContain('<td style="text-align:right">–</td>');
    expect(html).toContain("1.0000 ± –");
    expect(html).toContain("KL reduction – (token level)");
    const polyline = /<polyline class="series" points="([^"]+)"/.exec(html)![1]!;
    expect(polyline.split(" ")).toHaveLength(2);
    parseXml(html.slice(html.indexOf("<body>"), html.indexOf("</body>") + 7));
  });
});
