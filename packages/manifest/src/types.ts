/** The run manifest (schema version 1); `manifest.schema.json` is the authoritative form. */

export type RunStatus = "running" | "succeeded" | "failed" | "interrupted";
export type PhaseStatus = "running" | "succeeded" | "failed" | "skipped" | "interrupted";

export interface Stat {
  min: number | null;
  max: number | null;
  final: number | null;
  count: number;
}

export interface StepRecord {
  phase?: string;
  step: number;
  loss: number;
  learningRate?: number;
  gradNorm?: number;
  tokensPerSecond?: number;
  elapsedSeconds?: number;
}

export interface EvalRecord {
  phase?: string;
  step: number;
  loss: number;
  perplexity?: number;
}

export interface HardwareSample {
  /** Seconds since the run started. */
  t: number;
  cpuPercent: number;
  rssBytes: number;
  heapUsedBytes: number;
  systemUsedBytes: number;
  /** The hottest thermal zone the kernel exposes (/sys/class/thermal), where there is one. */
  temperatureC?: number;
  /** The GPU's memory in use, temperature and utilisation (nvidia-smi), where there is a GPU. */
  gpuMemoryBytes?: number;
  gpuTemperatureC?: number;
  gpuUtilizationPercent?: number;
}

/** Optional readings a machine may not expose. */
export type OptionalReading =
  | "temperatureC"
  | "gpuMemoryBytes"
  | "gpuTemperatureC"
  | "gpuUtilizationPercent";

export interface Derived {
  name: string;
  value: unknown;
  rule: string;
  inputs: Record<string, unknown>;
}

export interface Repository {
  commit: string;
  branch?: string | null;
  dirty?: boolean;
  commitCount?: number;
  branchCount?: number;
}

export interface Phase {
  name: string;
  startedAt: string;
  endedAt?: string;
  durationSeconds?: number;
  status: PhaseStatus;
  counts?: Record<string, number>;
}

export interface Manifest {
  schemaVersion: 1;
  run: {
    id: string;
    kind: string;
    command: string[];
    startedAt: string;
    endedAt?: string;
    durationSeconds?: number;
    status: RunStatus;
    error?: { message: string; code?: string; name?: string };
    resumes?: string[];
    forgeVersion: string;
    backend?: string;
    nodeVersion: string;
  };
  environment: {
    cpuModel: string;
    cores: number;
    memoryBytes: number;
    platform: string;
    release: string;
    arch: string;
    hostname?: string;
  };
  repository?: Repository;
  parameters: { resolved: Record<string, unknown>; derived: Derived[] };
  phases: Phase[];
  training: {
    logHistory: StepRecord[];
    evalHistory: EvalRecord[];
    summary: {
      loss?: Stat;
      learningRate?: Stat;
      gradNorm?: Stat;
      tokensPerSecond?: Stat;
      evalLoss?: Stat;
      evalPerplexity?: Stat;
    };
    earlyStopping?: {
      stopped: boolean;
      phase?: string;
      step?: number;
      bestStep?: number;
      bestLoss?: number;
      reason?: string;
    };
    downsampled: boolean;
  };
  hardware: {
    intervalSeconds: number;
    samples: HardwareSample[];
    peaks: {
      cpuPercent: number;
      rssBytes: number;
      heapUsedBytes: number;
      systemUsedBytes: number;
    } & Partial<Record<OptionalReading, number>>;
    downsampled: boolean;
  };
  outputs: {
    artifacts: { path: string; bytes: number; sha256: string; kind?: string }[];
    metrics: Record<string, unknown>;
    links: { kind: string; path: string }[];
  };
}
