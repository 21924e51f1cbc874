/**
 * A plain-text line chart for the terminal: one column per x, one marker per series, rows from
 * yMax down to yMin. Where series land on the same cell it shows `*` (the legend says so).
 */
export interface TerminalSeries {
  name: string;
  values: readonly number[];
  marker: string;
}

export function terminalChart(
  series: readonly TerminalSeries[],
  options: { height?: number; yMin?: number; yMax?: number; xLabel?: string } = {},
): string {
  const height = options.height ?? 10;
  const yMin = options.yMin ?? 0;
  const yMax = options.yMax ?? 1;
  const width = Math.max(0, ...series.map((s) => s.values.length));
  const grid = Array.from({ length: height + 1 }, () => Array<string>(width).fill(" "));
  let overlap = false;
  for (const s of series) {
    s.values.forEach((v, x) => {
      if (!Number.isFinite(v)) return;
      const clamped = Math.min(yMax, Math.max(yMin, v));
      const row = Math.round(((yMax - clamped) / (yMax - yMin || 1)) * height);
      const cell = grid[row]![x]!;
      overlap ||= cell !== " " && cell !== s.marker;
      grid[row]![x] = cell === " " || cell === s.marker ? s.marker : "*";
    });
  }
  const label = (row: number) => {
    const y = yMax - (row / height) * (yMax - yMin);
    return row % Math.max(1, Math.round(height / 4)) === 0 ? y.toFixed(2).padStart(6) : "      ";
  };
  const lines = grid.map((cells, row) => `${label(row)} │${cells.join("")}`);
  const ticks = Array.from({ length: width }, (_, x) => ((x + 1) % 5 === 0 ? "┴" : "─")).join("");
  lines.push(`       └${ticks}`);
  const numbers = Array(width + 2).fill(" ");
  for (let x = 4; x < width; x += 5) {
    const text = String(x + 1);
    for (let i = 0; i < text.length; i++) numbers[x + i] = text[i];
  }
  lines.push(
    `        ${numbers.join("").trimEnd().padEnd(width)}${options.xLabel ? `  ${options.xLabel}` : ""}`,
  );
  const legend = series.map((s) => `${s.marker} ${s.name}`);
  if (overlap) legend.push("* both");
  lines.push(`        ${legend.join("   ")}`);
  return lines.join("\n");
}
