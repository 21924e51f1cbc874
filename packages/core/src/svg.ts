/**
 * Self-contained SVG line charts (no scripts, no external fonts): loss curves (@forge/manifest,
 * @forge/pipeline), the half-baking strength curve, drift curves with their intervals and the
 * score history of `forge cycle` (@forge/eval's reports, the CLI).
 *
 * Layout: the legend sits below the plot, never over it; the data is mapped into the plot's
 * inner area (a few pixels inside its frame) and the y range always includes every value, so
 * no line, marker or label leaves the viewBox. Plotted lines are `<polyline class="series">`,
 * bands `<polygon class="band">` and the legend `<g class="legend">`, so a test can check the
 * geometry in a browser.
 */

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** CSS colour (default from a palette). */
  color?: string;
  /** Dashed line. */
  dashed?: boolean;
  /** A marker on every point (default: when the series has at most 24 points). */
  markers?: boolean;
  /** An interval drawn as a shaded band behind the line: [x, low, high]. */
  band?: ReadonlyArray<readonly [number, number, number]>;
}

export interface ChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
  /**
   * The y range (default: the data's, padded). A value outside it widens it: a chart never
   * hides data.
   */
  yMin?: number;
  yMax?: number;
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

/** Text for an SVG element or attribute. */
export function escapeSvgText(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!,
  );
}

function niceTicks(min: number, max: number, count: number): number[] {
  if (min === max) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const format = (v: number) =>
  Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0)
    ? v.toExponential(1)
    : Number(v.toPrecision(3)).toString();

/** A generous estimate of a text's width at `size` px (system-ui): wider than it renders. */
const textWidth = (text: string, size: number) => Math.ceil([...text].length * size * 0.62) + 2;

const finite = (values: readonly number[]) => values.every((v) => Number.isFinite(v));

export function svgLineChart(series: readonly Series[], options: ChartOptions = {}): string {
  const fontSize = 11;
  const lines = series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length]!,
    points: s.points.filter((p) => finite(p)),
    band: (s.band ?? []).filter((b) => finite(b)),
  }));
  const xs = lines.flatMap((s) => [...s.points.map(([x]) => x), ...s.band.map(([x]) => x)]);
  const ys = lines.flatMap((s) => [
    ...s.points.map(([, y]) => y),
    ...s.band.flatMap(([, low, high]) => [low, high]),
  ]);
  let xMin = xs.length ? Math.min(...xs) : 0;
  let xMax = xs.length ? Math.max(...xs) : 1;
  const dataYMin = ys.length ? Math.min(...ys) : 0;
  const dataYMax = ys.length ? Math.max(...ys) : 1;
  let yMin = Math.min(options.yMin ?? dataYMin, dataYMin);
  let yMax = Math.max(options.yMax ?? dataYMax, dataYMax);
  if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
  if (yMin === yMax) [yMin, yMax] = [yMin - 1, yMax + 1];
  const pad = (yMax - yMin) * 0.05;
  if (options.yMin === undefined || yMin < options.yMin) yMin -= pad;
  if (options.yMax === undefined || yMax > options.yMax) yMax += pad;
  const yTicks = niceTicks(yMin, yMax, 5);
  const xTicks = niceTicks(xMin, xMax, 6);

  const yTickWidth = Math.max(...yTicks.map((t) => textWidth(format(t), fontSize)));
  const left = (options.yLabel ? 24 : 6) + yTickWidth + 8;
  // the last x tick's label is centred on the plot's right edge: half of it must fit
  const right = Math.max(16, Math.ceil(textWidth(format(xTicks.at(-1) ?? xMax), fontSize) / 2) + 4);
  const top = options.title ? 36 : 16;
  const legendItemWidth = (name: string) => 26 + textWidth(name, fontSize) + 16;
  // wide enough for the title and for the widest legend item on a row of its own
  const width = Math.max(
    options.width ?? 640,
    options.title ? textWidth(options.title, 14) + 24 : 0,
    ...lines.map((s) => left + legendItemWidth(s.name) + 8),
  );
  const plotW = width - left - right;
  const axisBottom = 22 + (options.xLabel ? 18 : 0);

  // The legend: rows of swatch + name below the axis, wrapped to the chart's width.
  const entries = lines.filter((s) => s.name !== "" && (s.points.length || s.band.length));
  const legendRows: { entry: (typeof entries)[number]; x: number }[][] = [];
  let row: { entry: (typeof entries)[number]; x: number }[] = [];
  let cursor = 0;
  for (const entry of entries) {
    const itemWidth = legendItemWidth(entry.name);
    if (row.length && cursor + itemWidth > width - left - 8) {
      legendRows.push(row);
      row = [];
      cursor = 0;
    }
    row.push({ entry, x: cursor });
    cursor += itemWidth;
  }
  if (row.length) legendRows.push(row);
  const legendHeight = legendRows.length ? legendRows.length * 16 + 8 : 0;
  const height = Math.max(options.height ?? 320, top + 120 + axisBottom + legendHeight + 8);
  const plotH = height - top - axisBottom - legendHeight - 8;
  const inset = 6; // data stays this far inside the frame: markers and thick lines fit
  const sx = (x: number) => left + inset + ((x - xMin) / (xMax - xMin)) * (plotW - 2 * inset);
  const sy = (y: number) =>
    top + inset + (plotH - 2 * inset) - ((y - yMin) / (yMax - yMin)) * (plotH - 2 * inset);
  const n = (v: number) => v.toFixed(1);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="${fontSize}" role="img" aria-label="${escapeSvgText(options.title ?? "line chart")}">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (options.title)
    parts.push(
      `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${escapeSvgText(options.title)}</text>`,
    );
  for (const t of yTicks) {
    parts.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${n(sy(t))}" y2="${n(sy(t))}" stroke="#e5e7eb"/>`,
      `<text x="${left - 6}" y="${n(sy(t) + 4)}" text-anchor="end" fill="#374151">${format(t)}</text>`,
    );
  }
  for (const t of xTicks)
    parts.push(
      `<text x="${n(sx(t))}" y="${top + plotH + 16}" text-anchor="middle" fill="#374151">${format(t)}</text>`,
    );
  parts.push(
    `<rect class="plot-area" x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#9ca3af"/>`,
  );
  if (options.xLabel)
    parts.push(
      `<text x="${left + plotW / 2}" y="${top + plotH + 34}" text-anchor="middle">${escapeSvgText(options.xLabel)}</text>`,
    );
  if (options.yLabel)
    parts.push(
      `<text transform="translate(14 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeSvgText(options.yLabel)}</text>`,
    );
  for (const s of lines) {
    if (s.band.length < 2) continue;
    const outline = [
      ...s.band.map(([x, , high]) => `${n(sx(x))},${n(sy(high))}`),
      ...[...s.band].reverse().map(([x, low]) => `${n(sx(x))},${n(sy(low))}`),
    ];
    parts.push(
      `<polygon class="band" points="${outline.join(" ")}" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`,
    );
  }
  for (const s of lines) {
    if (s.points.length === 0) continue;
    const dash = s.dashed ? ' stroke-dasharray="5 3"' : "";
    parts.push(
      `<polyline class="series" points="${s.points.map(([x, y]) => `${n(sx(x))},${n(sy(y))}`).join(" ")}" fill="none" stroke="${s.color}" stroke-width="1.6"${dash}><title>${escapeSvgText(s.name)}</title></polyline>`,
    );
    if (s.markers ?? (s.points.length <= 24 || s.points.length === 1))
      for (const [x, y] of s.points)
        parts.push(
          `<circle cx="${n(sx(x))}" cy="${n(sy(y))}" r="2.5" fill="${s.color}"><title>${escapeSvgText(`${s.name ? `${s.name}: ` : ""}${format(x)}, ${format(y)}`)}</title></circle>`,
        );
  }
  if (legendRows.length) {
    parts.push('<g class="legend">');
    legendRows.forEach((items, r) => {
      const y = top + plotH + axisBottom + 8 + r * 16 + 8;
      for (const { entry, x } of items) {
        const x0 = left + x;
        if (entry.band.length && !entry.points.length)
          parts.push(
            `<rect x="${x0}" y="${y - 9}" width="20" height="10" fill="${entry.color}" fill-opacity="0.15" stroke="${entry.color}" stroke-width="0.5"/>`,
          );
        else {
          if (entry.band.length)
            parts.push(
              `<rect x="${x0}" y="${y - 9}" width="20" height="10" fill="${entry.color}" fill-opacity="0.15"/>`,
            );
          parts.push(
            `<line x1="${x0}" x2="${x0 + 20}" y1="${y - 4}" y2="${y - 4}" stroke="${entry.color}" stroke-width="2"${entry.dashed ? ' stroke-dasharray="5 3"' : ""}/>`,
          );
        }
        parts.push(`<text x="${x0 + 26}" y="${y}">${escapeSvgText(entry.name)}</text>`);
      }
    });
    parts.push("</g>");
  }
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
