/** summary.md: what the pipeline trained on, how each setting was derived, and how it went. */
import type { RepositoryStats } from "@forge/git-recipe";
import type { TrainingPlan } from "./settings.js";

const number = (n: number) => n.toLocaleString("en-US");
const loss = (n: number | null) => (n === null ? "—" : n.toFixed(4));

export function summaryMarkdown(input: {
  repository: string;
  stats: RepositoryStats;
  estimate: { estimatedSequences: number; estimatedEpochs: number; tokensPerCommit: number };
  tokenize: {
    tokenizer: string;
    vocabSize: number;
    commits: { train: number; validation: number };
    sequences: { train: number; validation: number };
    tokens: { train: number; validation: number };
    splitRule: string;
  };
  plan: TrainingPlan;
  train: {
    steps: number;
    reason: string;
    finalLoss: number;
    firstValidationLoss: number | null;
    bestValidationLoss: number | null;
    bestStep: number | null;
    seconds: number;
  };
  profile: string;
  parameters: number;
}): string {
  const { stats, tokenize, plan, train } = input;
  const languages = Object.entries(stats.languages)
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, 6)
    .map(([name, l]) => `${name} ${l.files}`)
    .join(", ");
  const rows = Object.entries(plan.parameters).map(
    ([name, p]) =>
      `| ${name} | ${typeof p.value === "number" ? Number(p.value.toPrecision(6)) : JSON.stringify(p.value)} | ${p.source} | ${p.rule ?? ""} |`,
  );
  const perplexity =
    train.bestValidationLoss === null ? "—" : Math.exp(train.bestValidationLoss).toFixed(2);
  return `# Pipeline: ${input.repository}

Profile \`${input.profile}\`, ${number(input.parameters)} parameters.

## Repository

- ${number(stats.commits)} commits on ${stats.branches.length} branch(es) (${number(stats.merges)} merges), ${number(stats.authors)} author(s), ${stats.firstCommitDate ?? "—"} to ${stats.lastCommitDate ?? "—"}
- ${number(stats.files)} files at HEAD (${number(stats.bytes)} bytes): ${languages || "none"}
- estimated before tokenizing: ${number(input.estimate.estimatedSequences)} sequences, ${input.estimate.estimatedEpochs} epochs (${input.estimate.tokensPerCommit.toFixed(0)} tokens per commit)

## Data

- tokenizer: ${tokenize.tokenizer}, ${number(tokenize.vocabSize)} ids
- training: ${number(tokenize.commits.train)} commits, ${number(tokenize.tokens.train)} tokens, ${number(tokenize.sequences.train)} sequences
- validation: ${number(tokenize.commits.validation)} commits, ${number(tokenize.tokens.validation)} tokens, ${number(tokenize.sequences.validation)} sequences (${tokenize.splitRule})

## Training parameters

| parameter | value | source | rule |
|---|---|---|---|
${rows.join("\n")}

## Result

- ${number(train.steps)} of ${number(plan.steps)} steps (${train.reason}) in ${train.seconds.toFixed(1)} s
- training loss ${loss(train.finalLoss)}; validation loss ${loss(train.firstValidationLoss)} at the first evaluation, best ${loss(train.bestValidationLoss)} at step ${train.bestStep ?? "—"} (perplexity ${perplexity})

![loss](loss.svg)
`;
}
