/**
 * Render an HTML report in headless Chromium (Debian's `chromium`), fail on console errors or
 * a layout problem, and save a screenshot:
 *   pnpm --filter @forge/cli exec tsx scripts/render-report.ts report.html shot.png
 * The eval tests call renderReport() when /usr/bin/chromium exists (.ci/run installs it).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.FORGE_CHROMIUM ?? "/usr/bin/chromium";

/** What the page's layout looks like, measured in the browser. */
export interface ReportLayout {
  /** Body and containers (html, body, section, figure, table, pre) wider than their box. */
  overflowing: string[];
  /** SVG text, lines, bands, markers and legends whose box leaves their SVG's viewBox. */
  outsideViewBox: string[];
  /** Legends whose box holds a point of a plotted line or band (or a segment between two). */
  legendOverlaps: string[];
  /** Charts (SVGs with a plotted line) without a legend, by aria-label. */
  chartsWithoutLegend: string[];
  /** Every table's rows (header first) as cell texts. */
  tables: string[][][];
  headings: string[];
  /** Requests for anything but the page itself. */
  externalRequests: string[];
}

export interface RenderedReport {
  consoleErrors: string[];
  svgCount: number;
  title: string;
  layout: ReportLayout;
}

/** Layout problems as sentences (empty when none): overflow, clipping, legend over data. */
export function layoutProblems(layout: ReportLayout): string[] {
  return [
    ...layout.overflowing.map((e) => `overflows its box: ${e}`),
    ...layout.outsideViewBox.map((e) => `outside its SVG's viewBox: ${e}`),
    ...layout.legendOverlaps.map((e) => `legend over plotted data: ${e}`),
    ...layout.externalRequests.map((e) => `loads an external resource: ${e}`),
  ];
}

export async function renderReport(htmlFile: string, screenshot: string): Promise<RenderedReport> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set FORGE_CHROMIUM)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const consoleErrors: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(error.message));
    const href = pathToFileURL(path.resolve(htmlFile)).href;
    const externalRequests: string[] = [];
    page.on("request", (request) => {
      if (request.url() !== href) externalRequests.push(request.url());
    });
    await page.goto(href);
    const svgCount = await page.locator("svg").count();
    const measured = (await page.evaluate(MEASURE)) as Omit<ReportLayout, "externalRequests">;
    const layout: ReportLayout = { ...measured, externalRequests };
    await page.screenshot({ path: screenshot, fullPage: true });
    return { consoleErrors, svgCount, title: await page.title(), layout };
  } finally {
    await browser.close();
  }
}

/** Runs in the page (a string, so the bundler leaves it alone). */
const MEASURE = `(() => {
  const name = (el) => {
    const label = el.closest("svg")?.getAttribute("aria-label");
    const text = (el.textContent || "").trim().slice(0, 40);
    return el.tagName.toLowerCase() + (el.getAttribute("class") ? "." + el.getAttribute("class") : "") +
      (label ? " in " + JSON.stringify(label) : "") + (text ? " " + JSON.stringify(text) : "");
  };
  const overflowing = [];
  for (const el of [document.documentElement, document.body, ...document.querySelectorAll("section, figure, table, pre, div")])
    if (el.scrollWidth > el.clientWidth + 1) overflowing.push(name(el) + " (" + el.scrollWidth + " > " + el.clientWidth + ")");
  const outsideViewBox = [];
  const legendOverlaps = [];
  const chartsWithoutLegend = [];
  for (const svg of document.querySelectorAll("svg")) {
    const vb = svg.viewBox.baseVal;
    const box = svg.getBoundingClientRect();
    const sx = vb.width / box.width, sy = vb.height / box.height;
    for (const el of svg.querySelectorAll("text, polyline, polygon, circle, line, g.legend")) {
      const r = el.getBoundingClientRect();
      const x0 = (r.left - box.left) * sx, x1 = (r.right - box.left) * sx;
      const y0 = (r.top - box.top) * sy, y1 = (r.bottom - box.top) * sy;
      if (x0 < -0.5 || y0 < -0.5 || x1 > vb.width + 0.5 || y1 > vb.height + 0.5)
        outsideViewBox.push(name(el) + " [" + [x0, y0, x1, y1].map((v) => v.toFixed(1)).join(", ") + "] in 0 0 " + vb.width + " " + vb.height);
    }
    const lines = [...svg.querySelectorAll("polyline.series, polygon.band")];
    const legend = svg.querySelector("g.legend");
    if (lines.length && !legend) chartsWithoutLegend.push(svg.getAttribute("aria-label") || "svg");
    if (!legend) continue;
    const b = legend.getBBox();
    const inside = (x, y) => x >= b.x && x <= b.x + b.width && y >= b.y && y <= b.y + b.height;
    for (const line of lines) {
      const points = [...line.points].map((p) => [p.x, p.y]);
      if (line.tagName === "polygon" && points.length) points.push(points[0]);
      let hit = points.findIndex(([x, y]) => inside(x, y));
      for (let i = 1; hit < 0 && i < points.length; i++)
        for (let t = 0.05; t < 1; t += 0.05) {
          const [ax, ay] = points[i - 1], [bx, by] = points[i];
          if (inside(ax + (bx - ax) * t, ay + (by - ay) * t)) { hit = i; break; }
        }
      if (hit >= 0) legendOverlaps.push(name(line) + " at point " + hit);
    }
  }
  const tables = [...document.querySelectorAll("table")].map((t) =>
    [...t.rows].map((row) => [...row.cells].map((c) => c.textContent.trim())));
  const headings = [...document.querySelectorAll("h1, h2, h3, h4")].map((h) => h.textContent.trim());
  return { overflowing, outsideViewBox, legendOverlaps, chartsWithoutLegend, tables, headings };
})()`;

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [html, shot] = process.argv.slice(2);
  if (!html || !shot) throw new Error("usage: render-report.ts <report.html> <screenshot.png>");
  const result = await renderReport(html, shot);
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = result.consoleErrors.length || layoutProblems(result.layout).length ? 1 : 0;
}
