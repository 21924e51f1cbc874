import { describe, expect, it } from "vitest";
import { terminalChart } from "./chart.js";

describe("terminalChart", () => {
  it("places each value on its row, marks shared cells with * and labels every fifth turn", () => {
    const chart = terminalChart(
      [
        { name: "prompted", marker: "p", values: [1, 1, 0.5, 0, 0, 0, 0, 0, 0, 0] },
        { name: "baked", marker: "b", values: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1] },
      ],
      { height: 2, xLabel: "turn" },
    );
    const lines = chart.split("\n");
    expect(lines[0]).toBe("  1.00 │**bbbbbbbb");
    expect(lines[1]).toBe("  0.50 │  p       ");
    expect(lines[2]).toBe("  0.00 │   ppppppp");
    expect(lines[4]).toBe("            5    10  turn");
    expect(lines[5]).toBe("        p prompted   b baked   * both");
  });
});
