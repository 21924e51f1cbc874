/**
 * Render an HTML report in headless Chromium (Debian's `chromium`), fail on console errors,
 * and save a screenshot:
 *   pnpm --filter @forge/cli exec tsx scripts/render-report.ts report.html shot.png
 * The eval tests call renderReport() when /usr/bin/chromium exists (.ci/run installs it).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.FORGE_CHROMIUM ?? "/usr/bin/chromium";

export async function renderReport(
  htmlFile: string,
  screenshot: string,
): Promise<{ consoleErrors: string[]; svgCount: number; title: string }> {
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
    await page.goto(pathToFileURL(path.resolve(htmlFile)).href);
    const svgCount = await page.locator("svg").count();
    await page.screenshot({ path: screenshot, fullPage: true });
    return { consoleErrors, svgCount, title: await page.title() };
  } finally {
    await browser.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [html, shot] = process.argv.slice(2);
  if (!html || !shot) throw new Error("usage: render-report.ts <report.html> <screenshot.png>");
  const result = await renderReport(html, shot);
  console.log(JSON.stringify(result, null, 2));
  process.exitCode = result.consoleErrors.length ? 1 : 0;
}
