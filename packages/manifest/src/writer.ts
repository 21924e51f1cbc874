/**
 * The manifest writer: incremental and crash-safe.
 *
 * - Every flush writes the whole manifest to a temporary sibling and renames it over the file,
 *   so the file on disk is always complete, schema-valid JSON. Flushes are rate-limited
 *   (`flushIntervalMs`, default 2 s) except at phase changes and at the end.
 * - A run killed mid-way leaves `status: "running"` and its last flush; a run stopped by a
 *   signal records `status: "interrupted"` (`interrupt`). `ManifestWriter.resume` reopens
 *   either, records the resume time, and carries on in the same manifest: histories continue.
 * - A write that fails (disk full, permissions) never becomes an unhandled rejection: the
 *   failure is kept, and the next awaited call (a phase change, `succeed`, `fail`, `flush`)
 *   throws it as a ManifestError naming the file.
 * - Histories are bounded: past `maxPoints` (default 2,000) entries, every second entry is
 *   dropped (first and last always kept) and `downsampled` is set. Summaries (min / max /
 *   final / count) are kept over every value recorded, so they stay exact.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describeSystemError, writeFileAtomic } from "@forge/core";
import { ManifestError } from "./errors.js";
import { HardwareSampler } from "./hardware.js";
import { assertManifest } from "./schema.js";
import type {
  Derived,
  EvalRecord,
  HardwareSample,
  Manifest,
  PhaseStatus,
  Repository,
  Stat,
  StepRecord,
} from "./types.js";

export interface CreateOptions {
  /** What kind of run: "train", "bake", "eval", … */
  kind: string;
  /** Run id (default: derived from the file's directory and the time). */
  id?: string;
  /** The command line (default process.argv without node and the script). */
  command?: string[];
  forgeVersion: string;
  backend?: string;
  parameters?: Record<string, unknown>;
  repository?: Repository;
  /** Seconds between hardware samples (default 5; 0 disables the sampler). */
  hardwareIntervalSeconds?: number;
  flushIntervalMs?: number;
  maxPoints?: number;
}

const now = () => new Date().toISOString();

function emptyStat(): Stat {
  return { min: null, max: null, final: null, count: 0 };
}

function observe(stat: Stat | undefined, value: number | undefined): Stat | undefined {
  if (value === undefined || !Number.isFinite(value)) return stat;
  const s = stat ?? emptyStat();
  s.min = s.min === null ? value : Math.min(s.min, value);
  s.max = s.max === null ? value : Math.max(s.max, value);
  s.final = value;
  s.count++;
  return s;
}

/** Drop every second entry (keeping the first and last) while over `max`. */
export function downsample<T>(points: T[], max: number): { points: T[]; downsampled: boolean } {
  let out = points;
  let downsampled = false;
  while (out.length > max) {
    const last = out[out.length - 1]!;
    out = out.filter((_, i) => i % 2 === 0);
    if (out[out.length - 1] !== last) out.push(last);
    downsampled = true;
  }
  return { points: out, downsampled };
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function environment(): Manifest["environment"] {
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    platform: os.platform(),
    release: os.release(),
    arch: os.arch(),
    hostname: os.hostname(),
  };
}

/** The training-loop events a manifest records (structurally @forge/model's TrainEvent). */
export type TrainLoopEvent =
  | {
      type: "step-end";
      step: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokensPerSecond: number;
      elapsedSeconds: number;
    }
  | { type: "eval-end"; step: number; loss: number; perplexity: number }
  | { type: "early-stop"; step: number; bestStep: number; bestLoss: number }
  | { type: "checkpoint-saved" | "train-end" };

export class ManifestWriter {
  private lastFlush = 0;
  /** The chain of writes; each link settles (a failure is kept in `failure`, not rejected). */
  private queue: Promise<void> = Promise.resolve();
  private failure: ManifestError | undefined;
  private readonly sampler: HardwareSampler | undefined;
  private readonly started = performance.now();
  private closed = false;

  private constructor(
    readonly file: string,
    private readonly manifest: Manifest,
    private readonly options: {
      flushIntervalMs: number;
      maxPoints: number;
      hardwareIntervalSeconds: number;
    },
  ) {
    if (options.hardwareIntervalSeconds > 0) {
      this.sampler = new HardwareSampler((sample) => this.recordHardware(sample), this.started);
      this.sampler.start(options.hardwareIntervalSeconds);
    }
  }

  /** Start a new manifest at `file` (status running) and write it. */
  static async create(file: string, options: CreateOptions): Promise<ManifestWriter> {
    const startedAt = now();
    const manifest: Manifest = {
      schemaVersion: 1,
      run: {
        id: options.id ?? `${path.basename(path.dirname(path.resolve(file)))}-${startedAt}`,
        kind: options.kind,
        command: options.command ?? process.argv.slice(2),
        startedAt,
        status: "running",
        forgeVersion: options.forgeVersion,
        ...(options.backend ? { backend: options.backend } : {}),
        nodeVersion: process.version,
      },
      environment: environment(),
      ...(options.repository ? { repository: options.repository } : {}),
      parameters: { resolved: options.parameters ?? {}, derived: [] },
      phases: [],
      training: { logHistory: [], evalHistory: [], summary: {}, downsampled: false },
      hardware: {
        intervalSeconds: options.hardwareIntervalSeconds || 5,
        samples: [],
        peaks: { cpuPercent: 0, rssBytes: 0, heapUsedBytes: 0, systemUsedBytes: 0 },
        downsampled: false,
      },
      outputs: { artifacts: [], metrics: {}, links: [] },
    };
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    const writer = new ManifestWriter(file, manifest, {
      flushIntervalMs: options.flushIntervalMs ?? 2000,
      maxPoints: options.maxPoints ?? 2000,
      hardwareIntervalSeconds: options.hardwareIntervalSeconds ?? 5,
    });
    await writer.flush(true);
    return writer;
  }

  /**
   * Reopen a manifest left by an interrupted run: status goes back to running, the resume
   * time is recorded, phases left running are marked interrupted, histories continue.
   */
  static async resume(
    file: string,
    options: Partial<
      Pick<CreateOptions, "hardwareIntervalSeconds" | "flushIntervalMs" | "maxPoints" | "backend">
    > = {},
  ): Promise<ManifestWriter> {
    const manifest = await readManifest(file);
    manifest.run.status = "running";
    delete manifest.run.error;
    delete manifest.run.endedAt;
    delete manifest.run.durationSeconds;
    manifest.run.resumes = [...(manifest.run.resumes ?? []), now()];
    if (options.backend) manifest.run.backend = options.backend;
    for (const phase of manifest.phases)
      if (phase.status === "running") phase.status = "interrupted";
    const writer = new ManifestWriter(file, manifest, {
      flushIntervalMs: options.flushIntervalMs ?? 2000,
      maxPoints: options.maxPoints ?? 2000,
      hardwareIntervalSeconds: options.hardwareIntervalSeconds ?? manifest.hardware.intervalSeconds,
    });
    await writer.flush(true);
    return writer;
  }

  /**
   * The run's manifest: `resume` continues the one at `file` when there is one (a stopped run),
   * else a new one is created with `options`.
   */
  static async open(
    file: string,
    options: CreateOptions & { resume?: boolean },
  ): Promise<ManifestWriter> {
    if (!(options.resume && existsSync(file))) return ManifestWriter.create(file, options);
    const { backend, hardwareIntervalSeconds, flushIntervalMs, maxPoints } = options;
    return ManifestWriter.resume(file, {
      ...(backend !== undefined ? { backend } : {}),
      ...(hardwareIntervalSeconds !== undefined ? { hardwareIntervalSeconds } : {}),
      ...(flushIntervalMs !== undefined ? { flushIntervalMs } : {}),
      ...(maxPoints !== undefined ? { maxPoints } : {}),
    });
  }

  /** The manifest as it stands (a live object: do not mutate). */
  get current(): Readonly<Manifest> {
    return this.manifest;
  }

  setBackend(backend: string): void {
    this.manifest.run.backend = backend;
  }

  setParameters(resolved: Record<string, unknown>): void {
    this.manifest.parameters.resolved = resolved;
  }

  /** Record a derived parameter (from epochsFor, scaledLearningRate, warmupSteps, …). */
  derive(derived: Derived): void {
    const list = this.manifest.parameters.derived.filter((d) => d.name !== derived.name);
    list.push(derived);
    this.manifest.parameters.derived = list;
  }

  setRepository(repository: Repository): void {
    this.manifest.repository = repository;
  }

  async phaseStart(name: string): Promise<void> {
    this.manifest.phases.push({ name, startedAt: now(), status: "running" });
    await this.flush(true);
  }

  async phaseEnd(
    name: string,
    status: Exclude<PhaseStatus, "running"> = "succeeded",
    counts?: Record<string, number>,
  ): Promise<void> {
    const phase = [...this.manifest.phases]
      .reverse()
      .find((p) => p.name === name && p.status === "running");
    if (!phase)
      throw new ManifestError(
        "E_INPUT",
        `phase ${JSON.stringify(name)} was not started (or already ended)`,
      );
    phase.endedAt = now();
    phase.durationSeconds = (Date.parse(phase.endedAt) - Date.parse(phase.startedAt)) / 1000;
    phase.status = status;
    if (counts) phase.counts = counts;
    await this.flush(true);
  }

  /**
   * A training loop's event (the shape @forge/model's trainer emits) recorded under `phase`:
   * steps, evaluations and an early stop; other events are ignored.
   */
  recordTrainEvent(phase: string, event: TrainLoopEvent): void {
    if (event.type === "step-end")
      this.recordStep({
        phase,
        step: event.step,
        loss: event.loss,
        learningRate: event.lr,
        gradNorm: event.gradNorm,
        tokensPerSecond: event.tokensPerSecond,
        elapsedSeconds: event.elapsedSeconds,
      });
    else if (event.type === "eval-end")
      this.recordEval({ phase, step: event.step, loss: event.loss, perplexity: event.perplexity });
    else if (event.type === "early-stop")
      this.earlyStopping({
        stopped: true,
        phase,
        step: event.step,
        bestStep: event.bestStep,
        bestLoss: event.bestLoss,
        reason: "validation loss stopped improving",
      });
  }

  /** One training step (HF trainer_state log_history vocabulary). Flushes at the bounded rate. */
  recordStep(record: StepRecord): void {
    const t = this.manifest.training;
    const bounded = downsample([...t.logHistory, record], this.options.maxPoints);
    t.logHistory = bounded.points;
    t.downsampled ||= bounded.downsampled;
    t.summary.loss = observe(t.summary.loss, record.loss);
    t.summary.learningRate = observe(t.summary.learningRate, record.learningRate);
    t.summary.gradNorm = observe(t.summary.gradNorm, record.gradNorm);
    t.summary.tokensPerSecond = observe(t.summary.tokensPerSecond, record.tokensPerSecond);
    this.flushLater();
  }

  recordEval(record: EvalRecord): void {
    const t = this.manifest.training;
    const withPerplexity = { ...record, perplexity: record.perplexity ?? Math.exp(record.loss) };
    const bounded = downsample([...t.evalHistory, withPerplexity], this.options.maxPoints);
    t.evalHistory = bounded.points;
    t.downsampled ||= bounded.downsampled;
    t.summary.evalLoss = observe(t.summary.evalLoss, record.loss);
    t.summary.evalPerplexity = observe(t.summary.evalPerplexity, withPerplexity.perplexity);
    this.flushLater();
  }

  earlyStopping(decision: NonNullable<Manifest["training"]["earlyStopping"]>): void {
    this.manifest.training.earlyStopping = decision;
  }

  private recordHardware(sample: HardwareSample): void {
    const h = this.manifest.hardware;
    const bounded = downsample([...h.samples, sample], this.options.maxPoints);
    h.samples = bounded.points;
    h.downsampled ||= bounded.downsampled;
    h.peaks.cpuPercent = Math.max(h.peaks.cpuPercent, sample.cpuPercent);
    h.peaks.rssBytes = Math.max(h.peaks.rssBytes, sample.rssBytes);
    h.peaks.heapUsedBytes = Math.max(h.peaks.heapUsedBytes, sample.heapUsedBytes);
    h.peaks.systemUsedBytes = Math.max(h.peaks.systemUsedBytes, sample.systemUsedBytes);
    for (const key of [
      "temperatureC",
      "gpuMemoryBytes",
      "gpuTemperatureC",
      "gpuUtilizationPercent",
    ] as const) {
      const value = sample[key];
      if (value !== undefined) h.peaks[key] = Math.max(h.peaks[key] ?? value, value);
    }
    this.flushLater();
  }

  /** Take a hardware sample now (the sampler also samples on its own timer). */
  sampleHardware(): void {
    this.sampler?.sample();
  }

  /**
   * Record an output file with its size and SHA-256. `recordAs` is the path to record when the
   * file is read from somewhere else than where it will stay (a work directory renamed into
   * place when the run ends).
   */
  async addArtifact(file: string, kind?: string, recordAs?: string): Promise<void> {
    const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
      throw new ManifestError("E_IO", `artifact ${file}: ${error.code ?? error.message}`, {
        cause: error,
      });
    });
    const entry = {
      path: recordAs ?? file,
      bytes: info.size,
      sha256: await sha256File(file),
      ...(kind ? { kind } : {}),
    };
    this.manifest.outputs.artifacts = [
      ...this.manifest.outputs.artifacts.filter((a) => a.path !== entry.path),
      entry,
    ];
  }

  setMetric(name: string, value: unknown): void {
    this.manifest.outputs.metrics[name] = value;
  }

  link(kind: string, target: string): void {
    this.manifest.outputs.links.push({ kind, path: target });
  }

  /**
   * Write the manifest (atomically). Without `force`, at most once per flush interval. Writes
   * are serialised: a flush never races another. Rejects with the first failed write (this
   * one's or an earlier one's), naming the file.
   */
  flush(force = false): Promise<void> {
    const time = performance.now();
    if (force || time - this.lastFlush >= this.options.flushIntervalMs) {
      this.lastFlush = time;
      const snapshot = JSON.stringify(
        assertManifest(structuredClone(this.manifest), this.file),
        null,
        2,
      );
      this.queue = this.queue.then(() => this.write(`${snapshot}\n`));
    }
    return this.queue.then(() => {
      if (this.failure) throw this.failure;
    });
  }

  /** A flush nobody awaits (a step record): a failure surfaces at the next awaited call. */
  private flushLater(): void {
    this.flush().catch(() => undefined);
  }

  private async write(text: string): Promise<void> {
    if (this.failure) return; // the disk refused once: stop trying until someone hears of it
    try {
      await writeFileAtomic(this.file, text);
    } catch (error) {
      this.failure = new ManifestError(
        "E_IO",
        `cannot write the run manifest ${this.file}: ${describeSystemError((error as Error).cause ?? error)}`,
        { cause: error },
      );
    }
  }

  private async finish(
    status: "succeeded" | "failed" | "interrupted",
    error?: unknown,
  ): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sampler?.sample();
    this.sampler?.stop();
    const run = this.manifest.run;
    run.status = status;
    run.endedAt = now();
    run.durationSeconds = (Date.parse(run.endedAt) - Date.parse(run.startedAt)) / 1000;
    if (error !== undefined) {
      const e = error as { message?: string; code?: unknown; name?: string };
      run.error = {
        message: e?.message ?? String(error),
        ...(typeof e?.code === "string" ? { code: e.code } : {}),
        ...(typeof e?.name === "string" ? { name: e.name } : {}),
      };
    }
    for (const phase of this.manifest.phases) {
      if (phase.status === "running") {
        phase.status = status;
        phase.endedAt = run.endedAt;
        phase.durationSeconds = (Date.parse(phase.endedAt) - Date.parse(phase.startedAt)) / 1000;
      }
    }
    await this.flush(true);
  }

  /** The run succeeded: final flush, sampler stopped. */
  succeed(): Promise<void> {
    return this.finish("succeeded");
  }

  /**
   * The run failed with `error`: recorded, final flush, sampler stopped. Best effort: the run's
   * own error matters more than a manifest that cannot be written (a full disk), so this never
   * rejects.
   */
  fail(error: unknown): Promise<void> {
    return this.finish("failed", error).catch(() => undefined);
  }

  /**
   * The run was stopped by a signal and can resume: status "interrupted", running phases
   * marked interrupted, `reason` recorded as the run's error message.
   */
  interrupt(reason: string): Promise<void> {
    return this.finish("interrupted", { message: reason, code: "E_INTERRUPTED" }).catch(
      () => undefined,
    );
  }

  /** Stop sampling without finishing (a run interrupted on purpose stays "running"). */
  async detach(): Promise<void> {
    this.closed = true;
    this.sampler?.stop();
    await this.flush(true);
  }
}

/** Read and validate a manifest file (or `manifest.json` inside a directory). */
export async function readManifest(location: string): Promise<Manifest> {
  const info = await stat(location).catch(() => undefined);
  const file = info?.isDirectory() ? path.join(location, "manifest.json") : location;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ManifestError(
      "E_IO",
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ManifestError("E_SCHEMA", `${file}: not valid JSON (${(error as Error).message})`, {
      cause: error,
    });
  }
  return assertManifest(parsed, file);
}
