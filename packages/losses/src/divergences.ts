/**
 * Divergences between the next-token distributions of a teacher and a student, on logits.
 *
 * Every function takes logits of shape [..., V] (any leading shape, vocabulary last), works
 * from `logSoftmax`, and returns per-token values of shape [...] reduced as asked. Entries of
 * −Infinity (a masked vocabulary) and logits of magnitude 1e4 are handled: a zero-probability
 * teacher entry contributes exactly 0 (never 0·∞ = NaN), and gradients stay finite.
 *
 * Everything runs inside `tf.tidy`: the only tensor left is the result.
 */
import * as tf from "@tensorflow/tfjs";
import { LossError } from "./errors.js";

/**
 * How per-token values become the result:
 * - `"none"`: per-token values, shape = logits.shape without the last axis (masked → 0);
 * - `"sum"`: the sum over unmasked tokens;
 * - `"mean"`: the sum over unmasked tokens ÷ their count (0 when every token is masked);
 * - `"batchmean"`: the sum over unmasked tokens ÷ the batch size (the first axis) — PyTorch's
 *   `KLDivLoss(reduction="batchmean")`, which the Prompt Baking paper's code uses.
 */
export type Reduction = "none" | "sum" | "mean" | "batchmean";

export interface ReduceOptions {
  /** 1 (or true) where a token counts, 0 where it does not; shape = logits.shape[:-1]. */
  mask?: tf.Tensor;
  /** Default "mean". */
  reduction?: Reduction;
}

export interface DivergenceOptions extends ReduceOptions {
  /** Divide both logits by this before the softmax (default 1). */
  temperature?: number;
}

const REDUCTIONS: readonly Reduction[] = ["none", "sum", "mean", "batchmean"];

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

export function checkLogits(name: string, logits: tf.Tensor): void {
  if (!(logits instanceof tf.Tensor)) {
    throw new LossError("E_INPUT", `${name} must be a tf.Tensor`);
  }
  if (logits.dtype !== "float32") {
    throw new LossError("E_DTYPE", `${name} has dtype ${logits.dtype}; logits must be float32`);
  }
  if (logits.rank < 1 || logits.shape[logits.rank - 1]! < 1) {
    throw new LossError(
      "E_SHAPE",
      `${name} has shape ${shapeText(logits.shape)}; expected [..., vocabulary] with a vocabulary of at least 1`,
    );
  }
}

function checkPair(teacher: tf.Tensor, student: tf.Tensor): void {
  checkLogits("teacher logits", teacher);
  checkLogits("student logits", student);
  if (!tf.util.arraysEqual(teacher.shape, student.shape)) {
    throw new LossError(
      "E_SHAPE",
      `teacher logits ${shapeText(teacher.shape)} and student logits ${shapeText(student.shape)} must have the same shape`,
    );
  }
}

function checkReduce(options: ReduceOptions, tokenShape: readonly number[]): void {
  const reduction = options.reduction ?? "mean";
  if (!REDUCTIONS.includes(reduction)) {
    throw new LossError(
      "E_INPUT",
      `reduction ${JSON.stringify(reduction)} is not one of ${REDUCTIONS.join(", ")}`,
    );
  }
  const mask = options.mask;
  if (mask === undefined) return;
  if (!(mask instanceof tf.Tensor)) throw new LossError("E_INPUT", "mask must be a tf.Tensor");
  if (mask.dtype === "string" || mask.dtype === "complex64") {
    throw new LossError("E_DTYPE", `mask has dtype ${mask.dtype}; accepted: bool, int32, float32`);
  }
  if (!tf.util.arraysEqual(mask.shape, [...tokenShape])) {
    throw new LossError(
      "E_SHAPE",
      `mask ${shapeText(mask.shape)} must have the token shape ${shapeText(tokenShape)} (the logits' shape without the vocabulary axis)`,
    );
  }
}

function checkTemperature(temperature: number | undefined): number {
  const t = temperature ?? 1;
  if (!Number.isFinite(t) || t <= 0)
    throw new LossError("E_INPUT", `temperature must be a positive number; got ${temperature}`);
  return t;
}

/** Apply mask and reduction to per-token values (inside a tidy). */
export function reduceTokens(perToken: tf.Tensor, options: ReduceOptions): tf.Tensor {
  const reduction = options.reduction ?? "mean";
  const keep = options.mask ? tf.notEqual(options.mask, 0) : undefined;
  // where, not multiply: a masked +∞ must become 0, not NaN
  const values = keep ? tf.where(keep, perToken, tf.zerosLike(perToken)) : perToken;
  if (reduction === "none") return values;
  const total = tf.sum(values);
  if (reduction === "sum") return total;
  if (reduction === "batchmean") return tf.div(total, perToken.rank === 0 ? 1 : perToken.shape[0]!);
  const count = keep ? tf.sum(tf.cast(keep, "float32")) : tf.scalar(perToken.size);
  return tf.div(total, tf.maximum(count, 1));
}

/**
 * x > 0 as a bool tensor, through `step` rather than `greater`: tfjs has a (zero) gradient
 * for step but none for comparisons, and a comparison on the gradient path fails backprop.
 */
function positive(x: tf.Tensor): tf.Tensor {
  return tf.cast(tf.step(x, 0), "bool");
}

/** Per-token KL(p ‖ q) from log-probabilities [..., V] → [...]. */
export function klFromLogProbs(logP: tf.Tensor, logQ: tf.Tensor): tf.Tensor {
  const p = tf.exp(logP);
  const support = positive(p);
  const gap = tf.where(support, tf.sub(logP, logQ), tf.zerosLike(logP));
  return tf.sum(tf.mul(p, gap), -1);
}

function scaled(logits: tf.Tensor, temperature: number): tf.Tensor {
  return temperature === 1 ? logits : tf.div(logits, temperature);
}

/** KL(P_teacher ‖ P_student): the prompt-baking loss (the student matches the teacher's support). */
export function forwardKL(
  teacherLogits: tf.Tensor,
  studentLogits: tf.Tensor,
  options: DivergenceOptions = {},
): tf.Tensor {
  checkPair(teacherLogits, studentLogits);
  checkReduce(options, teacherLogits.shape.slice(0, -1));
  const t = checkTemperature(options.temperature);
  return tf.tidy(() => {
    const logP = tf.logSoftmax(scaled(teacherLogits, t));
    const logQ = tf.logSoftmax(scaled(studentLogits, t));
    return reduceTokens(klFromLogProbs(logP, logQ), options);
  });
}

/** KL(P_student ‖ P_teacher): mode-seeking. */
export function reverseKL(
  teacherLogits: tf.Tensor,
  studentLogits: tf.Tensor,
  options: DivergenceOptions = {},
): tf.Tensor {
  checkPair(teacherLogits, studentLogits);
  checkReduce(options, teacherLogits.shape.slice(0, -1));
  const t = checkTemperature(options.temperature);
  return tf.tidy(() => {
    const logP = tf.logSoftmax(scaled(teacherLogits, t));
    const logQ = tf.logSoftmax(scaled(studentLogits, t));
    return reduceTokens(klFromLogProbs(logQ, logP), options);
  });
}

export interface GeneralizedJSDOptions extends DivergenceOptions {
  /** Weight of the teacher in the mixture, in [0, 1] (default 0.5). */
  beta?: number;
}

/**
 * Generalised Jensen–Shannon divergence as in GKD (Agarwal et al.) and TRL's GKDTrainer:
 * with M = β·P_teacher + (1−β)·P_student (mixed in log space with logsumexp),
 * JSD_β = β·KL(P_teacher ‖ M) + (1−β)·KL(P_student ‖ M). β = 0 is forward KL and β = 1 is
 * reverse KL, by definition (as in TRL).
 */
export function generalizedJSD(
  teacherLogits: tf.Tensor,
  studentLogits: tf.Tensor,
  options: GeneralizedJSDOptions = {},
): tf.Tensor {
  const beta = options.beta ?? 0.5;
  if (!Number.isFinite(beta) || beta < 0 || beta > 1) {
    throw new LossError("E_INPUT", `beta must be in [0, 1]; got ${options.beta}`);
  }
  if (beta === 0) return forwardKL(teacherLogits, studentLogits, options);
  if (beta === 1) return reverseKL(teacherLogits, studentLogits, options);
  checkPair(teacherLogits, studentLogits);
  checkReduce(options, teacherLogits.shape.slice(0, -1));
  const t = checkTemperature(options.temperature);
  return tf.tidy(() => {
    const logP = tf.logSoftmax(scaled(teacherLogits, t));
    const logQ = tf.logSoftmax(scaled(studentLogits, t));
    return reduceTokens(jsdFromLogProbs(logP, logQ, beta), options);
  });
}

/** Per-token JSD_β of log-probabilities [..., C] → [...] (0 < β < 1; inside a tidy). */
function jsdFromLogProbs(logP: tf.Tensor, logQ: tf.Tensor, beta: number): tf.Tensor {
  // −∞ floored to −1e30 for the mixture only: where both models mask an entry, logsumexp
  // of two −∞ would be NaN (and poison the gradient); there M is ~0 and p = q = 0 anyway.
  const floorP = tf.maximum(logP, -1e30);
  const floorQ = tf.maximum(logQ, -1e30);
  const logM = tf.logSumExp(
    tf.stack([tf.add(floorP, Math.log(beta)), tf.add(floorQ, Math.log(1 - beta))]),
    0,
  );
  return tf.add(
    tf.mul(klFromLogProbs(logP, logM), beta),
    tf.mul(klFromLogProbs(logQ, logM), 1 - beta),
  );
}

/** Jensen–Shannon divergence: symmetric, bounded by ln 2. `generalizedJSD` with β = 0.5. */
export function jensenShannon(
  teacherLogits: tf.Tensor,
  studentLogits: tf.Tensor,
  options: DivergenceOptions = {},
): tf.Tensor {
  return generalizedJSD(teacherLogits, studentLogits, { ...options, beta: 0.5 });
}

/**
 * Hinton et al.'s distillation loss: T² · KL(softmax(teacher/T) ‖ softmax(student/T)). The T²
 * keeps gradient magnitudes comparable across temperatures.
 */
export function distillation(
  teacherLogits: tf.Tensor,
  studentLogits: tf.Tensor,
  options: ReduceOptions & { temperature: number },
): tf.Tensor {
  const t = checkTemperature(options.temperature);
  if (t === 1) return forwardKL(teacherLogits, studentLogits, options);
  return tf.tidy(() => tf.mul(forwardKL(teacherLogits, studentLogits, options), t * t));
}

/** Validate integer ids of shape `tokenShape` (and `[..., K]` for top-K) against a vocabulary. */
function checkIds(
  name: string,
  ids: tf.Tensor,
  expectedShape: readonly number[],
  vocabulary: number,
): void {
  if (!(ids instanceof tf.Tensor)) throw new LossError("E_INPUT", `${name} must be a tf.Tensor`);
  if (ids.dtype !== "int32")
    throw new LossError("E_DTYPE", `${name} has dtype ${ids.dtype}; ids must be int32`);
  if (!tf.util.arraysEqual(ids.shape, [...expectedShape])) {
    throw new LossError(
      "E_SHAPE",
      `${name} ${shapeText(ids.shape)} must have shape ${shapeText(expectedShape)}`,
    );
  }
  const values = ids.dataSync();
  for (let i = 0; i < values.length; i++) {
    const id = values[i]!;
    if (id < 0 || id >= vocabulary) {
      throw new LossError(
        name.includes("top") ? "E_TOPK" : "E_INPUT",
        `${name} holds ${id} at flat index ${i}; ids must be in [0, ${vocabulary})`,
      );
    }
  }
}

/** logProbs [N, V] (flattened leading axes) gathered at ids [N, K] → [N, K]. */
function gatherLast(logProbs: tf.Tensor2D, ids: tf.Tensor2D): tf.Tensor2D {
  const [n, v] = logProbs.shape;
  const k = ids.shape[1];
  const rowOffsets = tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(v, "int32")).reshape([n, 1]);
  const flat = tf.add(ids, rowOffsets).reshape([n * k]);
  return tf.gather(logProbs.reshape([n * v]), flat).reshape([n, k]);
}

/** Cross-entropy of integer targets (shape = logits.shape[:-1]) under the logits. */
export function crossEntropy(
  logits: tf.Tensor,
  targets: tf.Tensor,
  options: ReduceOptions = {},
): tf.Tensor {
  checkLogits("logits", logits);
  const tokenShape = logits.shape.slice(0, -1);
  const vocabulary = logits.shape[logits.rank - 1]!;
  checkIds("targets", targets, tokenShape, vocabulary);
  checkReduce(options, tokenShape);
  return tf.tidy(() => {
    const n = targets.size;
    const logProbs = tf.logSoftmax(logits).reshape([n, vocabulary]) as tf.Tensor2D;
    const picked = gatherLast(logProbs, targets.reshape([n, 1]) as tf.Tensor2D);
    return reduceTokens(tf.neg(picked).reshape(tokenShape), options);
  });
}

/** What a cached or remote teacher provides per response position. */
export interface TeacherTopK {
  /** The teacher's K largest log-probabilities, [..., K] float32. */
  logprobs: tf.Tensor;
  /** Their token ids, [..., K] int32, distinct within a position. */
  ids: tf.Tensor;
}

/**
 * KL(teacher ‖ student) over K + 1 categories: the teacher's top-K tokens plus one bucket for
 * the rest of the vocabulary. The teacher's bucket holds 1 − Σ p_k; the student's holds the
 * exact logsumexp of its logits outside the top K. With K = V the bucket is empty and this
 * equals `forwardKL` exactly.
 */
export function topKForwardKL(
  teacher: TeacherTopK,
  studentLogits: tf.Tensor,
  options: ReduceOptions = {},
): tf.Tensor {
  const tokenShape = checkTopK(teacher, studentLogits);
  checkReduce(options, tokenShape);
  return tf.tidy(() => {
    const { pk, logPk, logQk, tail } = topKCategories(teacher, studentLogits);
    const headGap = tf.where(positive(pk), tf.sub(logPk, logQk), tf.zerosLike(logPk));
    let perToken = tf.sum(tf.mul(pk, headGap), -1);
    if (tail) {
      const tailGap = tf.where(
        positive(tail.p),
        tf.sub(tf.log(tail.p), tail.logQ),
        tf.zerosLike(tail.p),
      );
      perToken = tf.add(perToken, tf.mul(tail.p, tailGap));
    }
    return reduceTokens(perToken.reshape(tokenShape), options);
  });
}

/** The divergences that have a top-K + tail form. */
export const TOPK_DIVERGENCES = ["forward-kl", "reverse-kl", "jsd"] as const;
export type TopKDivergenceKind = (typeof TOPK_DIVERGENCES)[number];

/**
 * The teacher's tail bucket is floored at this mass for the reverse KL and the JSD over top-K +
 * tail: a float32 sum of very peaked top-K probabilities can round to 1, which would leave the
 * student's (always positive) tail an infinite reverse KL.
 */
export const TOPK_TAIL_FLOOR = 1e-6;

/**
 * A divergence over the K + 1 categories of `topKForwardKL` (the teacher's top-K tokens and one
 * bucket for the rest): forward KL (exactly `topKForwardKL`), reverse KL, or generalised JSD(β).
 * Each is the divergence of the two distributions coarse-grained to those categories, so a
 * lower bound of the full-vocabulary one (data processing). For reverse KL and JSD the teacher's
 * tail bucket is floored at `TOPK_TAIL_FLOOR` when K is below the vocabulary size.
 */
export function topKDivergence(
  teacher: TeacherTopK,
  studentLogits: tf.Tensor,
  options: ReduceOptions & { divergence?: TopKDivergenceKind; beta?: number } = {},
): tf.Tensor {
  const divergence = options.divergence ?? "forward-kl";
  if (!TOPK_DIVERGENCES.includes(divergence))
    throw new LossError(
      "E_INPUT",
      `divergence ${JSON.stringify(divergence)} has no top-K form; accepted: ${TOPK_DIVERGENCES.join(", ")}`,
    );
  const beta = divergence === "jsd" ? (options.beta ?? 0.5) : undefined;
  if (beta !== undefined && (!Number.isFinite(beta) || beta < 0 || beta > 1))
    throw new LossError("E_INPUT", `beta must be in [0, 1]; got ${options.beta}`);
  if (divergence === "forward-kl" || beta === 0)
    return topKForwardKL(teacher, studentLogits, options);
  const tokenShape = checkTopK(teacher, studentLogits);
  checkReduce(options, tokenShape);
  return tf.tidy(() => {
    const { logPk, logQk, tail } = topKCategories(teacher, studentLogits);
    let logP: tf.Tensor = logPk;
    let logQ: tf.Tensor = logQk;
    if (tail) {
      const n = logPk.shape[0]!;
      logP = tf.concat([logPk, tf.log(tf.maximum(tail.p, TOPK_TAIL_FLOOR)).reshape([n, 1])], 1);
      logQ = tf.concat([logQk, tail.logQ.reshape([n, 1])], 1);
    }
    const perToken =
      divergence === "reverse-kl" || beta === 1
        ? klFromLogProbs(logQ, logP)
        : jsdFromLogProbs(logP, logQ, beta!);
    return reduceTokens(perToken.reshape(tokenShape), options);
  });
}

/** Validate a top-K teacher against student logits; returns the token shape. */
function checkTopK(teacher: TeacherTopK, studentLogits: tf.Tensor): number[] {
  checkLogits("student logits", studentLogits);
  const vocabulary = studentLogits.shape[studentLogits.rank - 1]!;
  const tokenShape = studentLogits.shape.slice(0, -1);
  if (!(teacher.logprobs instanceof tf.Tensor))
    throw new LossError("E_INPUT", "teacher top-K logprobs must be a tf.Tensor");
  checkLogits("teacher top-K logprobs", teacher.logprobs);
  const k = teacher.logprobs.shape[teacher.logprobs.rank - 1]!;
  if (k > vocabulary) {
    throw new LossError(
      "E_TOPK",
      `teacher top-K has K = ${k}, larger than the student's vocabulary of ${vocabulary}`,
    );
  }
  if (!tf.util.arraysEqual(teacher.logprobs.shape.slice(0, -1), tokenShape)) {
    throw new LossError(
      "E_SHAPE",
      `teacher top-K logprobs ${shapeText(teacher.logprobs.shape)} must have the token shape ${shapeText(tokenShape)} plus K`,
    );
  }
  checkIds("teacher top-K ids", teacher.ids, teacher.logprobs.shape, vocabulary);
  return tokenShape;
}

/**
 * The K + 1 categories, flattened to [N, K] (+ the tail [N] when K < V): the teacher's top-K
 * probabilities and log-probabilities, the student's log-probabilities at the same ids, and the
 * tail — the teacher's 1 − Σ p_k and the student's exact log-mass outside the top K.
 */
function topKCategories(
  teacher: TeacherTopK,
  studentLogits: tf.Tensor,
): {
  pk: tf.Tensor2D;
  logPk: tf.Tensor2D;
  logQk: tf.Tensor2D;
  tail?: { p: tf.Tensor1D; logQ: tf.Tensor1D };
} {
  const vocabulary = studentLogits.shape[studentLogits.rank - 1]!;
  const k = teacher.logprobs.shape[teacher.logprobs.rank - 1]!;
  const n = studentLogits.size / vocabulary;
  const logQ = tf.logSoftmax(studentLogits).reshape([n, vocabulary]) as tf.Tensor2D;
  const ids = teacher.ids.reshape([n, k]) as tf.Tensor2D;
  const logPk = teacher.logprobs.reshape([n, k]) as tf.Tensor2D;
  const logQk = gatherLast(logQ, ids);
  const pk = tf.exp(logPk) as tf.Tensor2D;
  if (k >= vocabulary) return { pk, logPk, logQk };
  // Student tail: logsumexp of the log-probabilities outside the top K, computed exactly.
  const rows = tf.range(0, n, 1, "int32").reshape([n, 1]).tile([1, k]);
  const coordinates = tf.stack([rows.reshape([n * k]), ids.reshape([n * k])], 1);
  const inTopK = tf.greater(tf.scatterND(coordinates, tf.ones([n * k]), [n, vocabulary]), 0);
  const tailLogQ = tf.logSumExp(
    tf.where(inTopK, tf.fill([n, vocabulary], Number.NEGATIVE_INFINITY), logQ),
    -1,
  ) as tf.Tensor1D;
  const tailP = tf.relu(tf.sub(1, tf.sum(pk, -1))) as tf.Tensor1D;
  return { pk, logPk, logQk, tail: { p: tailP, logQ: tailLogQ } };
}

/**
 * The teacher's top-K log-probabilities and ids from its logits (what a rollout caches).
 * Returns new tensors; the caller disposes them.
 */
export function teacherTopK(teacherLogits: tf.Tensor, k: number): TeacherTopK {
  checkLogits("teacher logits", teacherLogits);
  const vocabulary = teacherLogits.shape[teacherLogits.rank - 1]!;
  if (!Number.isInteger(k) || k < 1 || k > vocabulary) {
    throw new LossError("E_TOPK", `K must be an integer in [1, ${vocabulary}]; got ${k}`);
  }
  return tf.tidy(() => {
    const { values, indices } = tf.topk(tf.logSoftmax(teacherLogits), k);
    return { logprobs: values, ids: indices };
  });
}
