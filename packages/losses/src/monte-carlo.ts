/**
 * Monte-Carlo estimates of the KL between the prompted teacher and the baked student
 * (Prompt Baking, Eq. 3), from N trajectories y_i sampled from the teacher:
 *
 *   sequence level:  D ≈ (1/N) Σ_i [log P_θ(y_i | u, x_i) − log P_θu(y_i | x_i)]
 *   token level:     D ≈ (1/N) Σ_i Σ_t KL(P_θ(·| u, x_i, y_i,<t) ‖ P_θu(·| x_i, y_i,<t))
 *
 * Both are unbiased for the same sequence-level KL; the token level sums exact per-position
 * KLs along the same trajectories (Rao–Blackwellised), so its variance is lower. Each comes
 * with its standard error (sample standard deviation / √N) and a normal 95% interval.
 */
import { LossError } from "./errors.js";

export interface KLEstimate {
  /** The estimate, in nats per trajectory. */
  estimate: number;
  /** Standard error of the estimate. */
  standardError: number;
  /** estimate ± 1.96 standard errors. */
  ci95: [number, number];
  /** Trajectories used. */
  n: number;
  /** Per-trajectory values whose mean is the estimate. */
  samples: number[];
}

function summarise(samples: number[]): KLEstimate {
  const n = samples.length;
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const variance = samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  const standardError = Math.sqrt(variance / n);
  return {
    estimate: mean,
    standardError,
    ci95: [mean - 1.96 * standardError, mean + 1.96 * standardError],
    n,
    samples,
  };
}

function checkFinite(values: ArrayLike<number>, name: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]))
      throw new LossError(
        "E_INPUT",
        `${name}[${i}] is ${values[i]}; log-probabilities must be finite`,
      );
  }
}

/**
 * Eq. 3: from the teacher's and the student's total log-probability of each sampled
 * trajectory (summed over its response tokens).
 */
export function sequenceKL(
  teacherLogProbs: ArrayLike<number>,
  studentLogProbs: ArrayLike<number>,
): KLEstimate {
  if (teacherLogProbs.length !== studentLogProbs.length) {
    throw new LossError(
      "E_SHAPE",
      `teacherLogProbs has ${teacherLogProbs.length} trajectories and studentLogProbs ${studentLogProbs.length}; they must match`,
    );
  }
  if (teacherLogProbs.length < 2) {
    throw new LossError(
      "E_INPUT",
      `a standard error needs at least 2 trajectories; got ${teacherLogProbs.length}`,
    );
  }
  checkFinite(teacherLogProbs, "teacherLogProbs");
  checkFinite(studentLogProbs, "studentLogProbs");
  return summarise(Array.from(teacherLogProbs, (t, i) => t - studentLogProbs[i]!));
}

/** The token-level estimate: per trajectory, the exact KL at each response position. */
export function tokenLevelKL(perPositionKL: ReadonlyArray<ArrayLike<number>>): KLEstimate {
  if (perPositionKL.length < 2) {
    throw new LossError(
      "E_INPUT",
      `a standard error needs at least 2 trajectories; got ${perPositionKL.length}`,
    );
  }
  return summarise(
    perPositionKL.map((positions, i) => {
      let total = 0;
      for (let t = 0; t < positions.length; t++) {
        const kl = positions[t]!;
        if (!(kl >= -1e-6) || !Number.isFinite(kl)) {
          throw new LossError(
            "E_INPUT",
            `perPositionKL[${i}][${t}] is ${kl}; a KL is finite and ≥ 0`,
          );
        }
        total += kl;
      }
      return total;
    }),
  );
}
