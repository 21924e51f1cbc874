/**
 * forge-tiny's quality bars on held-out items:
 *   pnpm --filter @forge/tiny run eval:tiny [model-dir]     (default: the shipped model)
 * Exits 1 when a bar fails.
 */
import { initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "../src/model.js";
import { formatQuality, measureQuality } from "../src/quality.js";

const dir = process.argv[2] ?? FORGE_TINY_DIR;
await initBackend();
const { model, tokenizer } = await loadModel(dir);
if (!tokenizer) throw new Error(`${dir} has no tokenizer`);
const started = performance.now();
const report = measureQuality(model, tokenizer);
console.log(
  `forge-tiny quality on held-out items — ${dir} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`,
);
console.log(formatQuality(report));
process.exitCode = report.pass ? 0 : 1;
