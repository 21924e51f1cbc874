/**
 * The SVG line chart's geometry: the legend sits below the plot area, never over the data; the
 * data stays inside the plot area; nothing leaves the viewBox, whatever the title's length or
 * where the curve goes (the old legend, top right, lay over a strength curve ending at 1).
 */
import { describe, expect, it } from "vitest";
import { svgLineChart } from "./svg.js";

const attribute = (tag: string, name: string) =>
  Number(new RegExp(`\\s${name}="([^"]+)"`).exec(tag)![1]);

function geometry(svg: string) {
  const [, width, height] = /viewBox="0 0 ([\d.]+) ([\d.]+)"/.exec(svg)!.map(Number);
  const plot = /<rect class="plot-area"[^>]*>/.exec(svg)![0];
  const area = {
    x: attribute(plot, "x"),
    y: attribute(plot, "y"),
    width: attribute(plot, "width"),
    height: attribute(plot, "height"),
  };
  const points = [
    ...svg.matchAll(/<(?:polyline|polygon) class="(?:series|band)" points="([^"]+)"/g),
  ]
    .flatMap((m) => m[1]!.split(" "))
    .map((p) => p.split(",").map(Number) as [number, number]);
  const legend = /<g class="legend">([\s\S]*?)<\/g>/.exec(svg)?.[1] ?? "";
  const legendYs = [...legend.matchAll(/\sy\d?="([\d.-]+)"/g)].map((m) => Number(m[1]));
  const texts = [...svg.matchAll(/<text x="([\d.-]+)" y="([\d.-]+)"/g)].map((m) => [
    Number(m[1]),
    Number(m[2]),
  ]);
  return { width: width!, height: height!, area, points, legendYs, texts };
}

describe("svgLineChart", () => {
  it("the legend is below the plot area, and the data (ending at the top right) inside it", () => {
    const svg = svgLineChart(
      [
        {
          name: "pirate signature rate",
          points: [
            [0, 0],
            [0.5, 0.05],
            [0.75, 0.87],
            [1, 0.99],
            [1.5, 1],
          ],
        },
      ],
      { title: "strength", xLabel: "α", yLabel: "rate", yMin: 0, yMax: 1 },
    );
    const g = geometry(svg);
    expect(g.points).toHaveLength(5);
    for (const [x, y] of g.points) {
      expect(x).toBeGreaterThan(g.area.x);
      expect(x).toBeLessThan(g.area.x + g.area.width);
      expect(y).toBeGreaterThan(g.area.y);
      expect(y).toBeLessThan(g.area.y + g.area.height);
    }
    expect(g.legendYs.length).toBeGreaterThan(0);
    // the legend's swatch and text (whose glyphs rise ~10 px above y) are below the x axis
    for (const y of g.legendYs) expect(y - 10).toBeGreaterThan(g.area.y + g.area.height);
    for (const [x, y] of g.texts) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(g.width);
      expect(y).toBeLessThanOrEqual(g.height);
    }
    expect(svg).toContain('<circle cx="'); // markers on a short curve
  });

  it("values outside a fixed y range widen it: no point is drawn outside the plot", () => {
    const g = geometry(
      svgLineChart(
        [
          {
            name: "a",
            points: [
              [0, -0.5],
              [1, 1.4],
            ],
          },
        ],
        { yMin: 0, yMax: 1 },
      ),
    );
    for (const [, y] of g.points) {
      expect(y).toBeGreaterThan(g.area.y);
      expect(y).toBeLessThan(g.area.y + g.area.height);
    }
  });

  it("many and long legend names wrap onto rows and grow the chart; a long title widens it", () => {
    const series = Array.from({ length: 6 }, (_, i) => ({
      name: `a rather long series name number ${i}`,
      points: [
        [0, i],
        [1, i + 1],
      ] as [number, number][],
    }));
    const title = "T".repeat(120);
    const g = geometry(svgLineChart(series, { title, width: 400, height: 200 }));
    expect(g.width).toBeGreaterThan(120 * 14 * 0.6);
    expect(new Set(g.legendYs).size).toBeGreaterThan(1);
    expect(Math.max(...g.legendYs)).toBeLessThanOrEqual(g.height - 4);
  });

  it("bands are shaded polygons; unnamed series stay off the legend; names are escaped", () => {
    const svg = svgLineChart([
      {
        name: "baked <b>",
        points: [
          [1, 0.9],
          [2, 0.8],
        ],
        band: [
          [1, 0.8, 1],
          [2, 0.7, 0.9],
        ],
      },
      {
        name: "",
        points: [
          [1, 0.5],
          [2, 0.4],
        ],
      },
    ]);
    expect(svg).toContain('<polygon class="band"');
    expect(svg).toContain("baked &lt;b&gt;");
    expect(
      [...svg.matchAll(/<text x="[^"]+" y="[^"]+">([^<]*)<\/text>/g)].map((m) => m[1]),
    ).not.toContain("");
    expect(svg).not.toMatch(/<script|href=/);
  });
});
