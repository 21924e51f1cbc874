/** Terminal views of a manifest: sparklines and a sectioned summary. */
import type { Manifest, Stat } from "./types.js";

const BARS = "▁▂▃▄▅▆▇█";

/** A one-line chart of `values` (resampled to `width` columns by averaging). */
export function sparkline(values: readonly number[], width = 40): string {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return "";
  const columns = Math.min(width, finite.length);
  const buckets = Array.from({ length: columns }, (_, c) => {
    const from = Math.floor((c * finite.length) / columns);
    const to = Math.max(from + 1, Math.floor(((c + 1) * finite.length) / columns));
    const slice = finite.slice(from, to);
    return slice.reduce((a, b) => a + b, 0) / slice.length;
  });
  const min = Math.min(...buckets);
  const max = Math.max(...buckets);
  return buckets
    .map((v) => BARS[max === min ? 3 : Math.round(((v - min) / (max - min)) * (BARS.length - 1))])
    .join("");
}

export type Section = "run" | "parameters" | "timeline" | "training" | "hardware" | "outputs";
export const SECTIONS: Section[] = [
  "run",
  "parameters",
  "timeline",
  "training",
  "hardware",
  "outputs",
];

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const num = (v: number | null | undefined, digits = 4) =>
  v === null || v === undefined ? "–" : Number(v.toPrecision(digits)).toString();
const statLine = (name: string, s: Stat | undefined) =>
  s
    ? `  ${name.padEnd(16)} min ${num(s.min)}  max ${num(s.max)}  final ${num(s.final)}  (${s.count} values)`
    : undefined;

export function formatManifest(m: Manifest, sections: readonly Section[] = SECTIONS): string {
  const out: string[] = [];
  if (sections.includes("run")) {
    const r = m.run;
    out.push(
      `run ${r.id} (${r.kind}) — ${r.status}${r.durationSeconds !== undefined ? ` in ${r.durationSeconds.toFixed(1)} s` : ""}`,
    );
    out.push(`  command    forge ${r.command.join(" ")}`);
    out.push(
      `  started    ${r.startedAt}${r.endedAt ? `, ended ${r.endedAt}` : ""}${r.resumes?.length ? `, resumed ${r.resumes.length}×` : ""}`,
    );
    out.push(`  forge ${r.forgeVersion}, node ${r.nodeVersion}, backend ${r.backend ?? "–"}`);
    out.push(
      `  machine    ${m.environment.cpuModel}, ${m.environment.cores} cores, ${mib(m.environment.memoryBytes)}, ${m.environment.platform} ${m.environment.arch}`,
    );
    if (m.repository)
      out.push(
        `  repository ${m.repository.commit.slice(0, 12)}${m.repository.branch ? ` on ${m.repository.branch}` : ""}${m.repository.dirty ? " (dirty)" : ""}`,
      );
    if (r.error) out.push(`  error      ${r.error.message}`);
  }
  if (sections.includes("parameters")) {
    out.push("parameters");
    out.push(
      ...JSON.stringify(m.parameters.resolved, null, 2)
        .split("\n")
        .map((l) => `  ${l}`),
    );
    for (const d of m.parameters.derived)
      out.push(
        `  derived ${d.name} = ${JSON.stringify(d.value)}  (${d.rule}; ${JSON.stringify(d.inputs)})`,
      );
  }
  if (sections.includes("timeline")) {
    out.push("timeline");
    for (const p of m.phases) {
      const counts = p.counts
        ? `  ${Object.entries(p.counts)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}`
        : "";
      out.push(
        `  ${p.name.padEnd(14)} ${p.status.padEnd(11)} ${p.durationSeconds !== undefined ? `${p.durationSeconds.toFixed(1)} s` : "…"}${counts}`,
      );
    }
  }
  if (sections.includes("training")) {
    const t = m.training;
    out.push(
      `training (${t.logHistory.length} steps recorded${t.downsampled ? ", downsampled" : ""})`,
    );
    if (t.logHistory.length)
      out.push(`  loss        ${sparkline(t.logHistory.map((s) => s.loss))}`);
    if (t.evalHistory.length)
      out.push(`  eval loss   ${sparkline(t.evalHistory.map((s) => s.loss))}`);
    for (const line of [
      statLine("loss", t.summary.loss),
      statLine("eval loss", t.summary.evalLoss),
      statLine("eval perplexity", t.summary.evalPerplexity),
      statLine("learning rate", t.summary.learningRate),
      statLine("grad norm", t.summary.gradNorm),
      statLine("tokens/s", t.summary.tokensPerSecond),
    ])
      if (line) out.push(line);
    if (t.earlyStopping)
      out.push(
        `  early stopping: ${t.earlyStopping.stopped ? `stopped at step ${t.earlyStopping.step} (best ${num(t.earlyStopping.bestLoss)} at ${t.earlyStopping.bestStep})` : "not triggered"}`,
      );
  }
  if (sections.includes("hardware")) {
    const h = m.hardware;
    out.push(
      `hardware (${h.samples.length} samples every ${h.intervalSeconds} s${h.downsampled ? ", downsampled" : ""})`,
    );
    if (h.samples.length) {
      out.push(
        `  cpu %       ${sparkline(h.samples.map((s) => s.cpuPercent))}  peak ${h.peaks.cpuPercent.toFixed(0)}%`,
      );
      out.push(
        `  rss         ${sparkline(h.samples.map((s) => s.rssBytes))}  peak ${mib(h.peaks.rssBytes)}`,
      );
      out.push(
        `  heap peak ${mib(h.peaks.heapUsedBytes)}, system memory in use peak ${mib(h.peaks.systemUsedBytes)}`,
      );
    }
  }
  if (sections.includes("outputs")) {
    out.push("outputs");
    for (const a of m.outputs.artifacts)
      out.push(`  ${a.path}  ${a.bytes} bytes  sha256 ${a.sha256.slice(0, 16)}…`);
    for (const [k, v] of Object.entries(m.outputs.metrics))
      out.push(`  metric ${k} = ${JSON.stringify(v)}`);
    for (const l of m.outputs.links) out.push(`  ${l.kind}: ${l.path}`);
  }
  return out.join("\n");
}
