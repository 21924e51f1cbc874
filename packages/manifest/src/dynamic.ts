/**
 * MANIFEST_DYNAMIC.json: a training pipeline's report in the shape the git-history pipeline
 * documents — `repository_stats`, `training_parameters` (each value with how it was derived),
 * `phase_results` (status and timings per phase) and `training_report` (final losses and
 * perplexity, loss / validation loss / perplexity / gradient-norm / learning-rate histories with
 * their min and max, hardware peaks). It is computed from a run manifest, which already holds
 * every number; nothing is measured twice.
 */
import { Ajv } from "ajv";
import schema from "./dynamic.schema.json" with { type: "json" };
import { ManifestError } from "./errors.js";
import type { Manifest } from "./types.js";

export { schema as dynamicManifestSchema };

export interface DynamicParameter {
  value: unknown;
  /** derived: computed by a rule; given: set by the user; default: a profile's; measured: probed. */
  source: "derived" | "given" | "default" | "measured";
  rule?: string;
  inputs?: Record<string, unknown>;
}

export interface DynamicSeries {
  min: number | null;
  max: number | null;
  final: number | null;
  history: { step: number; value: number }[];
}

export interface DynamicManifest {
  schema_version: 1;
  execution_timestamp: string;
  total_execution_time_seconds: number;
  status: Manifest["run"]["status"];
  repository_stats: Record<string, unknown>;
  training_parameters: Record<string, DynamicParameter>;
  phase_results: Record<
    string,
    {
      status: string;
      started_at?: string;
      ended_at?: string;
      duration_seconds?: number;
      counts?: Record<string, number>;
    }
  >;
  training_report: {
    training: {
      final_train_loss: number | null;
      final_val_loss: number | null;
      final_perplexity: number | null;
      best_val_loss: number | null;
      first_val_loss: number | null;
      loss: DynamicSeries;
      val_loss: DynamicSeries;
      perplexity: DynamicSeries;
      gradient_norm: DynamicSeries;
      learning_rate: DynamicSeries;
      early_stopping?: Record<string, unknown>;
      downsampled: boolean;
    };
    hardware: {
      sampling_interval_seconds: number;
      samples: number;
      peak_cpu_percent: number;
      peak_rss_bytes: number;
      peak_heap_bytes: number;
      peak_system_memory_bytes: number;
      system_memory_bytes: number;
      peak_system_memory_percent: number;
      peak_temperature_c?: number;
      peak_gpu_memory_bytes?: number;
      peak_gpu_temperature_c?: number;
      peak_gpu_utilization_percent?: number;
      cpu_model: string;
      cores: number;
    };
  };
}

function series(points: { step: number; value: number | undefined }[]): DynamicSeries {
  const history = points
    .filter((p): p is { step: number; value: number } => Number.isFinite(p.value))
    .map(({ step, value }) => ({ step, value }));
  const values = history.map((p) => p.value);
  return {
    min: values.length ? Math.min(...values) : null,
    max: values.length ? Math.max(...values) : null,
    final: values.at(-1) ?? null,
    history,
  };
}

/**
 * The dynamic report of a run: its manifest's histories, phases and hardware, with the
 * repository's statistics and the training parameters (with how each was derived).
 */
export function dynamicManifest(
  manifest: Manifest,
  extras: {
    repositoryStats: Record<string, unknown>;
    trainingParameters: Record<string, DynamicParameter>;
    /** Only these phases of the manifest (e.g. the training phase's name) feed the histories. */
    trainingPhase?: string;
  },
): DynamicManifest {
  const steps = manifest.training.logHistory.filter(
    (s) => extras.trainingPhase === undefined || s.phase === extras.trainingPhase,
  );
  const evals = manifest.training.evalHistory.filter(
    (e) => extras.trainingPhase === undefined || e.phase === extras.trainingPhase,
  );
  const val = series(evals.map((e) => ({ step: e.step, value: e.loss })));
  const peaks = manifest.hardware.peaks;
  const memory = manifest.environment.memoryBytes;
  const ended = manifest.run.endedAt ? Date.parse(manifest.run.endedAt) : Date.now();
  return {
    schema_version: 1,
    execution_timestamp: manifest.run.startedAt,
    total_execution_time_seconds:
      manifest.run.durationSeconds ?? (ended - Date.parse(manifest.run.startedAt)) / 1000,
    status: manifest.run.status,
    repository_stats: extras.repositoryStats,
    training_parameters: extras.trainingParameters,
    phase_results: Object.fromEntries(
      manifest.phases.map((p) => [
        p.name,
        {
          status: p.status,
          started_at: p.startedAt,
          ...(p.endedAt ? { ended_at: p.endedAt } : {}),
          ...(p.durationSeconds !== undefined ? { duration_seconds: p.durationSeconds } : {}),
          ...(p.counts ? { counts: p.counts } : {}),
        },
      ]),
    ),
    training_report: {
      training: {
        final_train_loss: steps.at(-1)?.loss ?? null,
        final_val_loss: val.final,
        final_perplexity: val.final === null ? null : Math.exp(val.final),
        best_val_loss: val.min,
        first_val_loss: val.history[0]?.value ?? null,
        loss: series(steps.map((s) => ({ step: s.step, value: s.loss }))),
        val_loss: val,
        perplexity: series(
          evals.map((e) => ({ step: e.step, value: e.perplexity ?? Math.exp(e.loss) })),
        ),
        gradient_norm: series(steps.map((s) => ({ step: s.step, value: s.gradNorm }))),
        learning_rate: series(steps.map((s) => ({ step: s.step, value: s.learningRate }))),
        ...(manifest.training.earlyStopping
          ? { early_stopping: { ...manifest.training.earlyStopping } }
          : {}),
        downsampled: manifest.training.downsampled,
      },
      hardware: {
        sampling_interval_seconds: manifest.hardware.intervalSeconds,
        samples: manifest.hardware.samples.length,
        peak_cpu_percent: peaks.cpuPercent,
        peak_rss_bytes: peaks.rssBytes,
        peak_heap_bytes: peaks.heapUsedBytes,
        peak_system_memory_bytes: peaks.systemUsedBytes,
        system_memory_bytes: memory,
        peak_system_memory_percent: memory > 0 ? (100 * peaks.systemUsedBytes) / memory : 0,
        ...(peaks.temperatureC !== undefined ? { peak_temperature_c: peaks.temperatureC } : {}),
        ...(peaks.gpuMemoryBytes !== undefined
          ? { peak_gpu_memory_bytes: peaks.gpuMemoryBytes }
          : {}),
        ...(peaks.gpuTemperatureC !== undefined
          ? { peak_gpu_temperature_c: peaks.gpuTemperatureC }
          : {}),
        ...(peaks.gpuUtilizationPercent !== undefined
          ? { peak_gpu_utilization_percent: peaks.gpuUtilizationPercent }
          : {}),
        cpu_model: manifest.environment.cpuModel,
        cores: manifest.environment.cores,
      },
    },
  };
}

const validator = new Ajv({ allErrors: true, strict: false }).compile(schema);

/** Check a value against the MANIFEST_DYNAMIC.json schema; throws naming every problem. */
export function assertDynamicManifest(value: unknown, source: string): DynamicManifest {
  if (validator(value)) return value as unknown as DynamicManifest;
  const list = (validator.errors ?? [])
    .map((e) => `${e.instancePath || "(root)"}: ${e.message ?? "invalid"}`)
    .join("; ");
  throw new ManifestError(
    "E_SCHEMA",
    `${source} does not match the dynamic manifest schema: ${list}`,
  );
}
