/**
 * The Quiet-STaR report: a Markdown page, a closing summary for the terminal (the seed
 * document's format), and the accuracy comparison as a self-contained SVG.
 */
import type { QuietStarResult } from "./run.js";

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const fixed = (x: number) => x.toFixed(3);
/** A p-value as text; 0 (below what a double resolves, or a zero-variance test) as "< 1e-16". */
const pValue = (p: number) => (p === 0 ? "< 1e-16" : p < 1e-4 ? p.toExponential(1) : p.toFixed(4));

/** The A/B lines and the closing summary, as the CLI prints them. */
export function quietStarSummary(result: QuietStarResult): string {
  const { ab } = result;
  const lines: string[] = [];
  lines.push(
    `Thought tokens ${result.added ? "added" : "present"}: ${result.tokens.start} (${result.tokens.startId}), ${result.tokens.end} (${result.tokens.endId})`,
  );
  lines.push("");
  lines.push(`A/B test with ${result.abItems} examples, ${ab.rounds.length} rounds`);
  for (const r of ab.rounds) {
    lines.push(`Round ${r.round}/${ab.rounds.length} - Baseline Accuracy: ${fixed(r.baseline)}`);
    lines.push(`Round ${r.round}/${ab.rounds.length} - Thoughts Accuracy: ${fixed(r.thoughts)}`);
  }
  lines.push("");
  lines.push("A/B Test Results:");
  lines.push(`  Baseline Accuracy: ${fixed(ab.baseline.mean)} ± ${fixed(ab.baseline.sd)}`);
  lines.push(`  Thoughts Accuracy: ${fixed(ab.thoughts.mean)} ± ${fixed(ab.thoughts.sd)}`);
  lines.push(
    `  Improvement: ${fixed(ab.improvement)}${ab.relativeImprovement === null ? "" : ` (${(ab.relativeImprovement * 100).toFixed(1)}%)`}`,
  );
  lines.push(`  P-value: ${pValue(ab.roundTest.p)} (rounds), ${pValue(itemP(result))} (items)`);
  lines.push(`  Winner: ${ab.winner}`);
  lines.push("");
  lines.push(result.decision);
  const h = result.heldOut;
  lines.push("");
  lines.push(`Held-out accuracy (${result.heldOutItems.length} items):`);
  lines.push(`  base (natural mode)     ${pct(h.base.accuracy)}`);
  lines.push(`  base + thoughts         ${pct(h.thoughts.accuracy)}`);
  if (h.baked) lines.push(`  baked (natural mode)    ${pct(h.baked.accuracy)}`);
  if (result.bakedImprovement) {
    const b = result.bakedImprovement;
    lines.push(
      `  baked − base: ${(b.delta * 100).toFixed(1)} points, ${Math.round(b.level * 100)}% CI [${(b.low * 100).toFixed(1)}, ${(b.high * 100).toFixed(1)}], p = ${pValue(b.p)}`,
    );
  }
  if (result.training)
    lines.push(
      `  training: ${result.training.steps} steps on ${result.training.trainExamples} traces (${result.training.validationExamples} validation), loss ${result.training.firstLoss.toFixed(3)} → ${result.training.finalLoss.toFixed(3)}`,
    );
  lines.push("");
  lines.push("====================================");
  lines.push("QUIET-STAR BAKING RESULTS");
  lines.push("====================================");
  lines.push(`Winner: ${ab.winner}`);
  lines.push(
    `Improvement: ${(ab.improvement * 100).toFixed(1)} points${ab.relativeImprovement === null ? "" : ` (${(ab.relativeImprovement * 100).toFixed(1)}%)`}`,
  );
  lines.push(
    result.model ? `Baked model saved to: ${result.model}` : "Baked model: none (nothing baked)",
  );
  lines.push("====================================");
  return lines.join("\n");
}

const itemP = (result: QuietStarResult) =>
  result.ab.itemTest.mcnemar?.p ?? result.ab.itemTest.tTest.p;

/** report.md */
export function quietStarMarkdown(result: QuietStarResult): string {
  const { ab, quality } = result;
  const out: string[] = ["# Quiet-STaR bake", ""];
  out.push(`**${result.decision}**`, "");
  out.push(
    `Thought tokens: \`${result.tokens.start}\` (${result.tokens.startId}), \`${result.tokens.end}\` (${result.tokens.endId})${result.added ? ", added by this run" : ""}.`,
    "",
  );
  out.push(`## A/B test (${result.abItems} items, ${ab.rounds.length} rounds)`, "");
  out.push("| round | seed | baseline | thoughts |", "|---|---|---|---|");
  for (const r of ab.rounds)
    out.push(`| ${r.round} | ${r.seed} | ${fixed(r.baseline)} | ${fixed(r.thoughts)} |`);
  out.push("");
  out.push(
    `- baseline ${fixed(ab.baseline.mean)} ± ${fixed(ab.baseline.sd)}, thoughts ${fixed(ab.thoughts.mean)} ± ${fixed(ab.thoughts.sd)} (mean ± sd over rounds)`,
    `- improvement ${fixed(ab.improvement)}; paired t-test across rounds t = ${ab.roundTest.t.toFixed(3)}, df = ${ab.roundTest.df}, p = ${pValue(ab.roundTest.p)}`,
    `- per item (@forge/eval paired comparison): delta ${fixed(ab.itemTest.delta)}, ${Math.round(ab.itemTest.bootstrap.level * 100)}% CI [${fixed(ab.itemTest.bootstrap.low)}, ${fixed(ab.itemTest.bootstrap.high)}], p = ${pValue(itemP(result))}`,
    `- winner: **${ab.winner}** (threshold ${ab.threshold}, alpha ${ab.alpha}): ${ab.reason}`,
    "",
  );
  out.push("## Trace quality (thoughts arm, all rounds)", "");
  out.push(
    `- traces with thoughts: ${quality.withThoughts} of ${quality.traces}; correct among them: ${pct(quality.correctShare)}`,
    `- mean quality ${fixed(quality.meanQuality)}, mean thought length ${quality.meanLength.toFixed(1)} tokens, mean repetition ${fixed(quality.meanRepetition)}, closed by the model ${pct(quality.closedShare)}, answer in the thought ${pct(quality.groundedShare)}`,
    `- quality histogram (0–0.1 … 0.9–1): ${quality.histogram.join(" ")}`,
    `- usable for baking (correct, quality ≥ bar): ${quality.usable}`,
    "",
  );
  out.push(`## Held-out accuracy (${result.heldOutItems.length} items)`, "");
  out.push("| model | accuracy |", "|---|---|");
  out.push(`| base (natural mode) | ${pct(result.heldOut.base.accuracy)} |`);
  out.push(`| base + injected thoughts | ${pct(result.heldOut.thoughts.accuracy)} |`);
  if (result.heldOut.baked)
    out.push(`| baked (natural mode) | ${pct(result.heldOut.baked.accuracy)} |`);
  out.push("");
  if (result.bakedImprovement) {
    const b = result.bakedImprovement;
    out.push(
      `Baked − base: ${(b.delta * 100).toFixed(1)} points, ${Math.round(b.level * 100)}% bootstrap CI [${(b.low * 100).toFixed(1)}, ${(b.high * 100).toFixed(1)}], p = ${pValue(b.p)}.`,
      "",
    );
  }
  if (result.training) {
    const t = result.training;
    out.push("## Bake", "");
    out.push(
      `${t.steps} steps on ${t.trainExamples} traces (${t.validationExamples} validation, ${t.tooLong} too long for the context); training loss ${t.firstLoss.toFixed(4)} → ${t.finalLoss.toFixed(4)}; validation ${t.validationBefore?.toFixed(4) ?? "—"} → ${t.validationBest?.toFixed(4) ?? "—"}${t.resumedFrom !== null ? `; resumed from step ${t.resumedFrom}` : ""}.`,
      "",
      `Model: \`${result.model}\``,
      "",
    );
  }
  out.push("![accuracy](accuracy.svg)", "");
  return out.join("\n");
}

const escapeXml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** accuracy.svg: A/B accuracies per round and held-out accuracies, as bars. */
export function accuracySvg(result: QuietStarResult): string {
  const bars: { label: string; value: number; colour: string }[] = [];
  for (const r of result.ab.rounds) {
    bars.push({ label: `round ${r.round} baseline`, value: r.baseline, colour: "#8a8f98" });
    bars.push({ label: `round ${r.round} thoughts`, value: r.thoughts, colour: "#2f7ed8" });
  }
  bars.push({ label: "held-out base", value: result.heldOut.base.accuracy, colour: "#8a8f98" });
  bars.push({
    label: "held-out base + thoughts",
    value: result.heldOut.thoughts.accuracy,
    colour: "#2f7ed8",
  });
  if (result.heldOut.baked)
    bars.push({ label: "held-out baked", value: result.heldOut.baked.accuracy, colour: "#d9822b" });
  const rowHeight = 22;
  const width = 560;
  const labelWidth = 190;
  const barWidth = width - labelWidth - 70;
  const height = 40 + bars.length * rowHeight;
  const rows = bars
    .map((b, i) => {
      const y = 30 + i * rowHeight;
      const w = Math.max(0, Math.min(1, b.value)) * barWidth;
      return [
        `<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${escapeXml(b.label)}</text>`,
        `<rect x="${labelWidth}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowHeight - 6}" fill="${b.colour}"/>`,
        `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 14}">${(b.value * 100).toFixed(1)}%</text>`,
      ].join("");
    })
    .join("\n");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<title>reasoning accuracy: baseline vs thoughts, and held-out base / thoughts / baked</title>
<text x="10" y="18" font-weight="bold">reasoning accuracy</text>
${rows}
</svg>
`;
}
