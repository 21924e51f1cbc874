/**
 * `runPipeline`: a model trained on a git repository's history in one call, every phase a phase
 * of one run manifest.
 *
 *   0 analyse   commits on every branch, authors, files, languages; sequences estimated from a
 *               sample of commits
 *   1 scrape    every commit → commits.jsonl (git-recipe's scraper, 30+ fields each)
 *   2 tokenize  a BPE tokenizer trained on the commits (or the one given); the commits, oldest
 *               first, as one token stream per split, cut into windows of sequenceLength + 1
 *               tokens sharing `overlap`; epochs, learning rate, warmup (and the batch size,
 *               measured when not given) derived from the real sequence count
 *   3 train     validation each epoch, early stopping, gradient clipping, a checkpoint each
 *               epoch; the best weights are the model
 *   4 report    model/, MANIFEST_DYNAMIC.json (validated), loss.svg, summary.md
 *
 * The output is claimed resumable: the run works in `<out>.partial` and renames it into place
 * at the end. A stopped run (a signal, a kill, a crash) resumes there with the settings it
 * started with; finished phases are not repeated (no re-scrape), training continues from its
 * last checkpoint.
 */
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import {
  claimOutput,
  readJsonFile,
  temporarySibling,
  writeFileAtomic,
  writeJsonAtomic,
} from "@forge/core";
import {
  analyseRepository,
  type CommitRecord,
  commitText,
  type RepositoryStats,
  scrapeHistory,
  windows,
} from "@forge/git-recipe";
import {
  assertDynamicManifest,
  type DynamicParameter,
  dynamicManifest,
  ManifestWriter,
  svgLineChart,
} from "@forge/manifest";
import {
  type BatchChoice,
  chooseBatchSize,
  fixedBatches,
  GPT,
  lmTask,
  openTokenCache,
  parameterCount,
  resolveConfig,
  SftSampler,
  TokenCacheWriter,
  type TrainEvent,
  type TrainResult,
  trainModel,
} from "@forge/model";
import { disposeBatch, loadCheckpointWeights, writeModelFiles } from "@forge/model/internal";
import { loadTokenizer, saveTokenizer, type Tokenizer, train } from "@forge/tokenizer";
import { PipelineError } from "./errors.js";
import {
  type PipelineProfile,
  pipelineProfile,
  planTraining,
  type TrainingPlan,
} from "./settings.js";
import { summaryMarkdown } from "./summary.js";

export const PHASES = ["analyse", "scrape", "tokenize", "train", "report"] as const;
export type PhaseName = (typeof PHASES)[number];

export interface PipelineOptions {
  /** The git repository (a work tree or a bare repository). */
  repository: string;
  /** The output directory (claimed: refused when it holds anything but a pipeline's output). */
  out: string;
  /** A PIPELINE_PROFILES name (default "tiny"). */
  profile?: string;
  targetTokens?: number;
  /** Fixed batch size; absent: measured (chooseBatchSize) within the profile's candidates. */
  batchSize?: number;
  sequenceLength?: number;
  overlap?: number;
  /**
   * Profile settings to replace (e.g. `{ maxEpochs: 20, patience: 5 }`, or a JSON config file's
   * contents): each key must be a profile setting of the same type.
   */
  overrides?: Record<string, unknown>;
  /** Reuse this tokenizer directory instead of training one on the commits. */
  tokenizer?: string;
  /** Seconds between hardware samples (default 5). */
  samplingIntervalSeconds?: number;
  /** Continue a stopped run in `<out>.partial`. */
  resume?: boolean;
  /** Replace an earlier pipeline output at `out` (or a stopped run's work). */
  force?: boolean;
  /** Recorded in the manifest and forge.json. */
  forgeVersion: string;
  backend?: string;
  command?: string[];
  signal?: AbortSignal;
  onEvent?: (event: PipelineEvent) => void;
}

export type PipelineEvent =
  | { type: "phase-start"; phase: PhaseName; total?: number; unit?: string }
  | { type: "progress"; phase: PhaseName; done: number; note?: string }
  | { type: "phase-end"; phase: PhaseName; seconds: number; counts?: Record<string, number> }
  | { type: "phase-skipped"; phase: PhaseName }
  | { type: "plan"; plan: TrainingPlan };

interface Estimate {
  sampledCommits: number;
  tokensPerCommit: number;
  commitsPerSequence: number;
  estimatedSequences: number;
  estimatedEpochs: number;
  rule: string;
}

interface TokenizeResult {
  tokenizer: "trained" | "given";
  vocabSize: number;
  commits: { train: number; validation: number };
  sequences: { train: number; validation: number };
  tokens: { train: number; validation: number };
  splitRule: string;
}

interface TrainSummary {
  steps: number;
  reason: TrainResult["reason"];
  finalLoss: number;
  firstValidationLoss: number | null;
  bestValidationLoss: number | null;
  bestStep: number | null;
  restoredBest: boolean;
  seconds: number;
  resumedFrom?: number;
}

/** What `pipeline-state.json` keeps between runs: the settings and each finished phase's result. */
interface PipelineState {
  version: 1;
  repository: string;
  profileName: string;
  profile: PipelineProfile;
  given: Record<string, unknown>;
  analyse?: { stats: RepositoryStats; estimate: Estimate };
  scrape?: { commits: number };
  tokenize?: TokenizeResult;
  plan?: TrainingPlan;
  batchChoice?: BatchChoice;
  train?: TrainSummary;
}

export interface PipelineResult {
  /** The output directory (or the `.partial` work directory of a stopped run). */
  out: string;
  aborted: boolean;
  resumed: boolean;
  manifest: string;
  dynamicManifest: string | null;
  model: string | null;
  stats: RepositoryStats;
  tokenize: TokenizeResult | null;
  plan: TrainingPlan | null;
  train: TrainSummary | null;
  wallSeconds: number;
}

const STATE = "pipeline-state.json";
/** A commit goes to validation when its hash's first byte is below 26 (26/256 ≈ 10%). */
export const VALIDATION_RULE =
  "a commit is validation when parseInt(hash[0..2], 16) < 26 (≈10%); when none is, the commit with the smallest hash";

export function isValidationCommit(hash: string): boolean {
  return Number.parseInt(hash.slice(0, 2), 16) < 26;
}

function positiveInteger(value: number | undefined, name: string, min = 1): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= min))
    throw new PipelineError("E_INPUT", `${name} must be an integer ≥ ${min}; got ${value}`);
}

function resolveProfile(options: PipelineOptions): {
  profile: PipelineProfile;
  given: Record<string, unknown>;
} {
  const profile = pipelineProfile(options.profile ?? "tiny");
  positiveInteger(options.targetTokens, "targetTokens");
  positiveInteger(options.batchSize, "batchSize");
  positiveInteger(options.sequenceLength, "sequenceLength", 8);
  if (options.sequenceLength !== undefined && options.sequenceLength > 8192)
    throw new PipelineError(
      "E_INPUT",
      `sequenceLength must be at most 8192; got ${options.sequenceLength}`,
    );
  if (options.samplingIntervalSeconds !== undefined && !(options.samplingIntervalSeconds > 0))
    throw new PipelineError(
      "E_INPUT",
      `samplingIntervalSeconds must be above 0; got ${options.samplingIntervalSeconds}`,
    );
  const given: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options.overrides ?? {})) {
    const current = (profile as unknown as Record<string, unknown>)[key];
    if (key === "description" || current === undefined)
      throw new PipelineError(
        "E_INPUT",
        `unknown setting "${key}"; settings: ${Object.keys(profile)
          .filter((k) => k !== "description")
          .join(", ")}`,
      );
    const same =
      typeof current === "object"
        ? typeof value === "object" &&
          value !== null &&
          Array.isArray(value) === Array.isArray(current)
        : typeof value === typeof current;
    if (!same || (typeof value === "number" && !Number.isFinite(value)))
      throw new PipelineError(
        "E_INPUT",
        `setting "${key}" must be ${Array.isArray(current) ? "a list" : `a ${typeof current}`} like ${JSON.stringify(current)}; got ${JSON.stringify(value)}`,
      );
    (profile as unknown as Record<string, unknown>)[key] =
      typeof current === "object" && !Array.isArray(current)
        ? { ...(current as object), ...(value as object) }
        : value;
    given[key] = value;
  }
  if (profile.minEpochs > profile.maxEpochs || profile.minEpochs < 1)
    throw new PipelineError(
      "E_INPUT",
      `minEpochs must be in [1, maxEpochs]; got minEpochs ${profile.minEpochs}, maxEpochs ${profile.maxEpochs}`,
    );
  if (options.sequenceLength !== undefined) {
    profile.sequenceLength = options.sequenceLength;
    profile.model.blockSize = options.sequenceLength;
    profile.overlap = Math.min(profile.overlap, Math.floor(options.sequenceLength / 8));
    given.sequence_length = options.sequenceLength;
  }
  if (options.overlap !== undefined) {
    if (
      !Number.isInteger(options.overlap) ||
      options.overlap < 0 ||
      options.overlap >= profile.sequenceLength
    )
      throw new PipelineError(
        "E_INPUT",
        `overlap must be an integer in [0, ${profile.sequenceLength - 1}]; got ${options.overlap}`,
      );
    profile.overlap = options.overlap;
    given.overlap = options.overlap;
  }
  if (options.targetTokens !== undefined) given.target_tokens = options.targetTokens;
  if (options.batchSize !== undefined) given.batch_size = options.batchSize;
  if (options.profile !== undefined) given.profile = options.profile;
  if (options.tokenizer !== undefined) given.tokenizer = path.resolve(options.tokenizer);
  return { profile, given };
}

/** Train on a repository's history: analyse, scrape, tokenize, train, report. */
export async function runPipeline(options: PipelineOptions): Promise<PipelineResult> {
  const started = performance.now();
  const repository = path.resolve(options.repository);
  const emit = options.onEvent ?? (() => undefined);
  const fresh = resolveProfile(options);
  if (!existsSync(repository))
    throw new PipelineError("E_INPUT", `the repository ${repository} does not exist`);
  const claim = await claimOutput(options.out, {
    kind: "pipeline",
    resumable: true,
    inputs: [repository, options.tokenizer],
    flag: "--out",
    ...(options.resume ? { resume: true } : {}),
    ...(options.force ? { force: true } : {}),
    command: (options.command ?? process.argv.slice(2)).join(" "),
  });
  let manifest: ManifestWriter | undefined;
  try {
    const work = claim.work;
    const stateFile = path.join(work, STATE);
    const manifestFile = path.join(work, "manifest.json");
    let state: PipelineState;
    if (claim.resumed && existsSync(stateFile)) {
      state = (await readJsonFile(stateFile)) as PipelineState;
      if (state.version !== 1 || state.repository !== repository)
        throw new PipelineError(
          "E_STATE",
          `${stateFile}: this stopped run trained on ${state.repository}, not ${repository}; resume with --repo ${state.repository}, or start again with --force`,
        );
    } else {
      state = {
        version: 1,
        repository,
        profileName: options.profile ?? "tiny",
        profile: fresh.profile,
        given: fresh.given,
      };
    }
    const save = () => writeJsonAtomic(stateFile, state);
    await save();
    manifest = await ManifestWriter.open(manifestFile, {
      resume: claim.resumed,
      kind: "pipeline",
      id: `pipeline-${path.basename(claim.target)}`,
      forgeVersion: options.forgeVersion,
      ...(options.backend ? { backend: options.backend } : {}),
      ...(options.command ? { command: options.command } : {}),
      ...(options.samplingIntervalSeconds
        ? { hardwareIntervalSeconds: options.samplingIntervalSeconds }
        : {}),
      parameters: { repository, profile: state.profileName, given: state.given },
    });
    const m = manifest;
    const phase = async <T>(
      name: PhaseName,
      done: T | undefined,
      body: () => Promise<{ value: T; counts?: Record<string, number> }>,
    ): Promise<T> => {
      if (done !== undefined) {
        emit({ type: "phase-skipped", phase: name });
        return done;
      }
      const t0 = performance.now();
      await m.phaseStart(name);
      const { value, counts } = await body();
      const interrupted = options.signal?.aborted === true;
      await m.phaseEnd(name, interrupted ? "interrupted" : "succeeded", counts);
      emit({
        type: "phase-end",
        phase: name,
        seconds: (performance.now() - t0) / 1000,
        ...(counts ? { counts } : {}),
      });
      return value;
    };
    const { profile } = state;
    const stopped = () => options.signal?.aborted === true;

    // 0 — analyse
    state.analyse = await phase("analyse", state.analyse, async () => {
      emit({ type: "phase-start", phase: "analyse" });
      const stats = await analyseRepository(repository);
      // a repository with no commits is refused by analyseRepository, naming it
      if (stats.commits < 2)
        throw new PipelineError(
          "E_INPUT",
          `${repository} has 1 commit; the pipeline needs at least 2 (one to train on, one to validate on)`,
        );
      const estimate = await estimateSequences(repository, stats.commits, profile, state, options);
      m.setRepository({
        commit: stats.head ?? "",
        branch: stats.headBranch,
        commitCount: stats.commits,
        branchCount: stats.branches.length,
      });
      return {
        value: { stats, estimate },
        counts: { commits: stats.commits, authors: stats.authors, files: stats.files },
      };
    });
    await save();
    const stats = state.analyse.stats;
    const commitsFile = path.join(work, "commits.jsonl");

    // 1 — scrape
    state.scrape = await phase("scrape", state.scrape, async () => {
      emit({ type: "phase-start", phase: "scrape", total: stats.commits, unit: "commits" });
      const temporary = temporarySibling(commitsFile);
      const stream = createWriteStream(temporary);
      let count = 0;
      try {
        for await (const commit of scrapeHistory(repository)) {
          if (!stream.write(`${JSON.stringify(commit)}\n`))
            await new Promise<void>((resolve) => stream.once("drain", () => resolve()));
          count++;
          if (count % 25 === 0) emit({ type: "progress", phase: "scrape", done: count });
        }
        await new Promise<void>((resolve, reject) =>
          stream.end((error?: Error | null) => (error ? reject(error) : resolve())),
        );
        await rename(temporary, commitsFile);
      } catch (error) {
        stream.destroy();
        await rm(temporary, { force: true });
        throw error;
      }
      emit({ type: "progress", phase: "scrape", done: count });
      await m.addArtifact(commitsFile, "commits");
      return { value: { commits: count }, counts: { commits: count } };
    });
    await save();
    if (stopped()) return finish(true);

    // 2 — tokenize
    const tokenizerDir = path.join(work, "tokenizer");
    const dataDir = path.join(work, "data");
    state.tokenize = await phase("tokenize", state.tokenize, async () => {
      emit({
        type: "phase-start",
        phase: "tokenize",
        total: state.scrape!.commits,
        unit: "commits",
      });
      const commits = (await readFile(commitsFile, "utf8"))
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as CommitRecord)
        .reverse(); // the scraper walks newest first; the stream runs oldest first
      const tokenizer = options.tokenizer
        ? await loadTokenizer(options.tokenizer)
        : train(
            commits.map((c) => commitText(c)),
            { vocabSize: profile.vocabSize },
          );
      await saveTokenizer(tokenizer, tokenizerDir);
      const result = await writeWindows(commits, tokenizer, profile, dataDir, (done) =>
        emit({ type: "progress", phase: "tokenize", done }),
      );
      return {
        value: { ...result, tokenizer: options.tokenizer ? "given" : "trained" },
        counts: {
          trainSequences: result.sequences.train,
          validationSequences: result.sequences.validation,
          trainTokens: result.tokens.train,
        },
      };
    });
    await save();
    const tokenized = state.tokenize;

    // the plan: batch size (measured unless given), then epochs, learning rate and warmup
    const tokenizer = await loadTokenizer(tokenizerDir);
    const config = resolveConfig(
      { ...profile.model, vocabSize: tokenizer.vocabSize, layerNormEpsilon: 1e-5 },
      `profile ${state.profileName}`,
    );
    if (!state.plan) {
      const given = state.given.batch_size as number | undefined;
      let batchSize = given;
      if (batchSize === undefined) {
        emit({ type: "progress", phase: "tokenize", done: 0, note: "measuring batch sizes" });
        const candidates = profile.batchCandidates.filter((b) => b <= tokenized.sequences.train);
        state.batchChoice = await chooseBatchSize(config, {
          candidates: candidates.length > 0 ? candidates : [1],
          seed: profile.seed,
        });
        batchSize = state.batchChoice.batchSize;
      }
      state.plan = planTraining({
        profile,
        trainSequences: tokenized.sequences.train,
        batchSize,
        batchSource: given === undefined ? "measured" : "given",
        ...(state.given.target_tokens !== undefined
          ? { targetTokens: state.given.target_tokens as number }
          : {}),
        ...(state.batchChoice
          ? {
              batchProbe: {
                reason: state.batchChoice.reason,
                budgetBytes: state.batchChoice.budgetBytes,
                probes: state.batchChoice.probes,
              },
            }
          : {}),
      });
      for (const key of ["sequence_length", "overlap"])
        if (state.given[key] !== undefined) state.plan.parameters[key]!.source = "given";
      for (const [name, value] of Object.entries(state.plan.parameters))
        if (value.source === "derived" && value.rule)
          m.derive({
            name,
            value: value.value as number,
            rule: value.rule,
            inputs: value.inputs ?? {},
          });
      await save();
    }
    const plan = state.plan;
    emit({ type: "plan", plan });

    // 3 — train
    const modelDir = path.join(work, "model");
    state.train = await phase("train", state.train, async () => {
      emit({ type: "phase-start", phase: "train", total: plan.steps, unit: "steps" });
      const summary = await trainPhase({
        work,
        config,
        profile,
        plan,
        tokenizer,
        modelDir,
        resume: claim.resumed,
        manifest: m,
        options,
        forge: {
          createdBy: `forge pipeline`,
          repository,
          profile: state.profileName,
          head: stats.head,
          parameters: parameterCount(config),
        },
        emit,
      });
      return {
        value: summary.reason === "aborted" ? undefined : summary,
        counts: { steps: summary.steps },
      };
    });
    if (!state.train || stopped()) {
      delete state.train;
      await save();
      return finish(true);
    }
    await save();

    // 4 — report
    const trained = state.train;
    await phase("report", undefined as true | undefined, async () => {
      emit({ type: "phase-start", phase: "report" });
      const current = m.current;
      const steps = current.training.logHistory.filter((s) => s.phase === "train");
      const evals = current.training.evalHistory.filter((e) => e.phase === "train");
      const chart = svgLineChart(
        [
          { name: "training loss", points: steps.map((s) => [s.step, s.loss] as const) },
          { name: "validation loss", points: evals.map((e) => [e.step, e.loss] as const) },
        ],
        { title: `loss: ${path.basename(repository)}`, xLabel: "step", yLabel: "loss" },
      );
      await writeFileAtomic(path.join(work, "loss.svg"), chart);
      await writeFileAtomic(
        path.join(work, "summary.md"),
        summaryMarkdown({
          repository,
          stats,
          estimate: state.analyse!.estimate,
          tokenize: tokenized,
          plan,
          train: trained,
          profile: state.profileName,
          parameters: parameterCount(config),
        }),
      );
      for (const file of ["model.safetensors", "config.json", "tokenizer.json"])
        await m.addArtifact(path.join(modelDir, file), "model");
      await m.addArtifact(path.join(work, "loss.svg"), "chart");
      m.link("model", path.join(claim.target, "model"));
      m.setMetric("train.finalLoss", trained.finalLoss);
      if (trained.bestValidationLoss !== null)
        m.setMetric("train.bestValidationLoss", trained.bestValidationLoss);
      return { value: true };
    });
    await m.succeed();
    const dynamic = assertDynamicManifest(
      dynamicManifest(m.current as Parameters<typeof dynamicManifest>[0], {
        repositoryStats: repositoryStats(stats, state.analyse!.estimate, tokenized),
        trainingParameters: trainingParameters(state, plan),
        trainingPhase: "train",
      }),
      "MANIFEST_DYNAMIC.json",
    );
    await writeJsonAtomic(path.join(work, "MANIFEST_DYNAMIC.json"), dynamic);
    await rm(path.join(work, "checkpoints", "last"), { recursive: true, force: true });
    await claim.commit();
    manifest = undefined;
    return result(false, claim.target);

    function result(aborted: boolean, out: string): PipelineResult {
      const at = (name: string) => path.join(out, name);
      return {
        out,
        aborted,
        resumed: claim.resumed,
        manifest: at("manifest.json"),
        dynamicManifest: aborted ? null : at("MANIFEST_DYNAMIC.json"),
        model: aborted ? null : at("model"),
        stats,
        tokenize: state.tokenize ?? null,
        plan: state.plan ?? null,
        train: state.train ?? null,
        wallSeconds: (performance.now() - started) / 1000,
      };
    }
    async function finish(aborted: boolean): Promise<PipelineResult> {
      await m.interrupt("stopped by a signal; continue with --resume");
      manifest = undefined;
      await claim.release({ keepWork: true });
      return result(aborted, work);
    }
  } catch (error) {
    // a failed run keeps its work directory: the finished phases resume
    await manifest?.fail(error as Error).catch(() => undefined);
    await claim.release({ keepWork: true });
    throw error;
  }
}

/** Tokens per commit from a sample of up to 100 commits, and the sequences and epochs they imply. */
async function estimateSequences(
  repository: string,
  commits: number,
  profile: PipelineProfile,
  state: PipelineState,
  options: PipelineOptions,
): Promise<Estimate> {
  const tokenizer = options.tokenizer ? await loadTokenizer(options.tokenizer) : undefined;
  let sampled = 0;
  let tokens = 0;
  for await (const commit of scrapeHistory(repository, { batchSize: 100 })) {
    const text = commitText(commit);
    // with no tokenizer yet: a trained byte-level BPE averages about 3 bytes per token on
    // commit text (measured on this project's history); the tokenize phase counts exactly
    tokens += tokenizer
      ? tokenizer.encode(text, { disallowedSpecial: "none" }).length + 1
      : Buffer.byteLength(text) / 3 + 1;
    if (++sampled >= 100) break;
  }
  const tokensPerCommit = tokens / Math.max(1, sampled);
  const stride = profile.sequenceLength + 1 - profile.overlap;
  const commitsPerSequence = stride / tokensPerCommit;
  const estimatedSequences = Math.max(1, Math.ceil((commits * tokensPerCommit) / stride));
  const target = (state.given.target_tokens as number | undefined) ?? profile.targetTokens;
  const estimatedEpochs = Math.min(
    profile.maxEpochs,
    Math.max(
      profile.minEpochs,
      Math.floor(target / (estimatedSequences * 0.9 * profile.sequenceLength)),
    ),
  );
  return {
    sampledCommits: sampled,
    tokensPerCommit,
    commitsPerSequence,
    estimatedSequences,
    estimatedEpochs,
    rule: tokenizer
      ? "tokens per commit counted with the given tokenizer on the sample"
      : "tokens per commit ≈ bytes / 3 on the sample (no tokenizer yet)",
  };
}

/**
 * The commits as two token streams (training and validation, by VALIDATION_RULE), each commit
 * followed by <|eot|>, cut into windows of sequenceLength + 1 tokens (inputs and their next
 * tokens) sharing `overlap` tokens, stored as token caches whose every token is learned.
 */
async function writeWindows(
  commits: CommitRecord[],
  tokenizer: Tokenizer,
  profile: PipelineProfile,
  dataDir: string,
  progress: (done: number) => void,
): Promise<Omit<TokenizeResult, "tokenizer">> {
  const eot = tokenizer.specialTokenId("<|eot|>");
  let validation = commits.filter((c) => isValidationCommit(c.hash));
  if (validation.length === 0) validation = [commits.reduce((a, b) => (a.hash < b.hash ? a : b))];
  const chosen = new Set(validation.map((c) => c.hash));
  const streams = { train: [] as number[], validation: [] as number[] };
  commits.forEach((commit, i) => {
    const ids = tokenizer.encode(commitText(commit), { disallowedSpecial: "none" });
    const stream = chosen.has(commit.hash) ? streams.validation : streams.train;
    for (const id of ids) stream.push(id);
    stream.push(eot);
    if ((i + 1) % 50 === 0) progress(i + 1);
  });
  progress(commits.length);
  await mkdir(dataDir, { recursive: true });
  const sequences = { train: 0, validation: 0 };
  for (const split of ["train", "validation"] as const) {
    const writer = new TokenCacheWriter(path.join(dataDir, split), {
      kind: "sft",
      vocabSize: tokenizer.vocabSize,
      info: {
        split,
        sequenceLength: profile.sequenceLength,
        overlap: profile.overlap,
        rule: VALIDATION_RULE,
      },
    });
    try {
      for (const w of windows(streams[split], profile.sequenceLength + 1, profile.overlap)) {
        writer.append(w, new Uint8Array(w.length).fill(1));
        sequences[split]++;
      }
      writer.close();
    } catch (error) {
      writer.abort();
      throw error;
    }
  }
  return {
    vocabSize: tokenizer.vocabSize,
    commits: { train: commits.length - chosen.size, validation: chosen.size },
    sequences,
    tokens: { train: streams.train.length, validation: streams.validation.length },
    splitRule: VALIDATION_RULE,
  };
}

async function trainPhase(context: {
  work: string;
  config: ReturnType<typeof resolveConfig>;
  profile: PipelineProfile;
  plan: TrainingPlan;
  tokenizer: Tokenizer;
  modelDir: string;
  resume: boolean;
  manifest: ManifestWriter;
  options: PipelineOptions;
  forge: Record<string, unknown>;
  emit: (event: PipelineEvent) => void;
}): Promise<TrainSummary> {
  const { work, config, profile, plan, manifest, emit } = context;
  const blockSize = profile.sequenceLength;
  const trainCache = await openTokenCache(path.join(work, "data", "train"));
  const validationCache = await openTokenCache(path.join(work, "data", "validation"));
  const trainSource = new SftSampler(trainCache, {
    batchSize: plan.batchSize,
    blockSize,
    seed: profile.seed,
  });
  const validationSource = new SftSampler(validationCache, {
    batchSize: plan.batchSize,
    blockSize,
    seed: 4242,
  });
  // the whole validation set (up to evalBatches batches), the same batches each evaluation
  const validation = fixedBatches(
    validationSource,
    Math.max(1, Math.min(profile.evalBatches, Math.ceil(validationSource.size / plan.batchSize))),
  );
  const model = GPT.create(config, { seed: profile.seed });
  const checkpointDir = path.join(work, "checkpoints");
  const started = performance.now();
  let firstValidationLoss: number | null = null;
  try {
    const result = await trainModel(
      lmTask(model, trainSource, { batches: validation }),
      {
        steps: plan.steps,
        learningRate: plan.learningRate,
        minLearningRate: plan.learningRate / 10,
        warmupSteps: plan.warmupSteps,
        weightDecay: profile.weightDecay,
        gradClip: profile.gradClip,
        evalEvery: plan.stepsPerEpoch,
        checkpointEvery: plan.stepsPerEpoch,
        earlyStopping: { patience: profile.patience, minDelta: profile.minDelta },
        seed: profile.seed,
      },
      {
        checkpointDir,
        resume: context.resume,
        ...(context.options.signal ? { signal: context.options.signal } : {}),
        onEvent: (event: TrainEvent) => {
          manifest.recordTrainEvent("train", event);
          if (event.type === "step-end")
            emit({
              type: "progress",
              phase: "train",
              done: event.step,
              note: `loss ${event.loss.toFixed(3)}`,
            });
          else if (event.type === "eval-end")
            emit({
              type: "progress",
              phase: "train",
              done: event.step,
              note: `val ${event.loss.toFixed(3)}`,
            });
        },
      },
    );
    const evals = manifest.current.training.evalHistory.filter((e) => e.phase === "train");
    firstValidationLoss = evals[0]?.loss ?? null;
    const summary: TrainSummary = {
      steps: result.step,
      reason: result.reason,
      finalLoss: result.finalLoss,
      firstValidationLoss,
      bestValidationLoss: result.bestLoss ?? null,
      bestStep: result.bestStep ?? null,
      restoredBest: false,
      seconds: (performance.now() - started) / 1000,
      ...(result.resumedFrom !== undefined ? { resumedFrom: result.resumedFrom } : {}),
    };
    if (result.reason === "aborted") return summary;
    // the model is the best validation loss's weights, as early stopping promises
    const best = path.join(checkpointDir, "best");
    if (result.bestStep !== undefined && existsSync(path.join(best, "weights.safetensors"))) {
      await loadCheckpointWeights(best, model.trainableParameters());
      summary.restoredBest = result.bestStep !== result.step;
    }
    await mkdir(context.modelDir, { recursive: true });
    await writeModelFiles(model, context.modelDir, {
      tokenizer: context.tokenizer,
      generationConfig: {
        eos_token_id: context.tokenizer.specialTokenId("<|eot|>"),
        temperature: 0.7,
        top_k: 40,
        max_new_tokens: 128,
      },
      forge: { ...context.forge, training: summary },
    });
    return summary;
  } finally {
    for (const batch of validation) disposeBatch(batch);
    model.dispose();
  }
}

function repositoryStats(
  stats: RepositoryStats,
  estimate: Estimate,
  tokenized: TokenizeResult,
): Record<string, unknown> {
  return {
    path: stats.path,
    head: stats.head,
    head_branch: stats.headBranch,
    total_commits: stats.commits,
    merges: stats.merges,
    branches: stats.branches.length,
    branch_names: stats.branches,
    tags: stats.tags,
    unique_authors: stats.authors,
    top_authors: stats.topAuthors,
    first_commit_date: stats.firstCommitDate,
    last_commit_date: stats.lastCommitDate,
    files: stats.files,
    bytes: stats.bytes,
    languages: stats.languages,
    estimate: {
      sampled_commits: estimate.sampledCommits,
      tokens_per_commit: estimate.tokensPerCommit,
      commits_per_sequence: estimate.commitsPerSequence,
      estimated_sequences: estimate.estimatedSequences,
      estimated_epochs: estimate.estimatedEpochs,
      rule: estimate.rule,
    },
    actual: {
      sequences: tokenized.sequences,
      tokens: tokenized.tokens,
      commits: tokenized.commits,
      split_rule: tokenized.splitRule,
      tokenizer: tokenized.tokenizer,
      vocab_size: tokenized.vocabSize,
    },
  };
}

function trainingParameters(
  state: PipelineState,
  plan: TrainingPlan,
): Record<string, DynamicParameter> {
  const given = Object.fromEntries(
    Object.entries(state.given)
      .filter(([key]) => !(key in plan.parameters))
      .map(([key, value]) => [key, { value, source: "given" as const }]),
  );
  return {
    ...given,
    ...plan.parameters,
    profile: { value: state.profileName, source: state.given.profile ? "given" : "default" },
    model: { value: state.profile.model, source: "default" },
    base_learning_rate: { value: state.profile.baseLearningRate, source: "default" },
    base_batch_size: { value: state.profile.baseBatchSize, source: "default" },
  };
}
