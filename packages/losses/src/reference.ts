/**
 * Plain Float64 reference implementations: arrays in, numbers out, no tfjs. Rows are one
 * position's logits over the vocabulary. Slow and obviously right; the tfjs functions are
 * tested against these, and they are handy for checking a result by hand.
 */
import type { Reduction } from "./divergences.js";

export type Row = readonly number[];

/** log softmax of one row, stable (max subtracted); −∞ entries stay −∞. */
export function logSoftmax(row: Row): number[] {
  const max = Math.max(...row);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return row.map((x) => x - lse);
}

/** KL(p ‖ q) of two log-probability rows; a zero-probability p entry contributes 0. */
export function klLogProbs(logP: Row, logQ: Row): number {
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]!);
    if (p > 0) kl += p * (logP[i]! - logQ[i]!);
  }
  return kl;
}

const scale = (row: Row, temperature: number) => row.map((x) => x / temperature);

export function forwardKL(teacher: Row, student: Row, temperature = 1): number {
  return klLogProbs(
    logSoftmax(scale(teacher, temperature)),
    logSoftmax(scale(student, temperature)),
  );
}

export function reverseKL(teacher: Row, student: Row, temperature = 1): number {
  return klLogProbs(
    logSoftmax(scale(student, temperature)),
    logSoftmax(scale(teacher, temperature)),
  );
}

export function generalizedJSD(teacher: Row, student: Row, beta: number, temperature = 1): number {
  if (beta === 0) return forwardKL(teacher, student, temperature);
  if (beta === 1) return reverseKL(teacher, student, temperature);
  const logP = logSoftmax(scale(teacher, temperature));
  const logQ = logSoftmax(scale(student, temperature));
  const logM = logP.map((lp, i) => Math.log(beta * Math.exp(lp) + (1 - beta) * Math.exp(logQ[i]!)));
  return beta * klLogProbs(logP, logM) + (1 - beta) * klLogProbs(logQ, logM);
}

export function jensenShannon(teacher: Row, student: Row): number {
  return generalizedJSD(teacher, student, 0.5);
}

export function distillation(teacher: Row, student: Row, temperature: number): number {
  return temperature * temperature * forwardKL(teacher, student, temperature);
}

export function crossEntropy(logits: Row, target: number): number {
  return -logSoftmax(logits)[target]!;
}

/** KL over the teacher's top-K ids plus one bucket for everything else. */
export function topKForwardKL(
  teacherLogProbs: Row,
  teacherIds: readonly number[],
  student: Row,
): number {
  const logQ = logSoftmax(student);
  const inTop = new Set(teacherIds);
  let kl = 0;
  let head = 0;
  teacherIds.forEach((id, k) => {
    const p = Math.exp(teacherLogProbs[k]!);
    head += p;
    if (p > 0) kl += p * (teacherLogProbs[k]! - logQ[id]!);
  });
  if (inTop.size < student.length) {
    let tailQ = 0;
    logQ.forEach((lq, i) => {
      if (!inTop.has(i)) tailQ += Math.exp(lq);
    });
    const tailP = Math.max(0, 1 - head);
    if (tailP > 0) kl += tailP * (Math.log(tailP) - Math.log(tailQ));
  }
  return kl;
}

/**
 * A divergence over the teacher's top-K ids plus one tail bucket (see `topKDivergence`): the
 * teacher's tail is floored at `floor` for reverse KL and JSD when K < V.
 */
export function topKDivergence(
  teacherLogProbs: Row,
  teacherIds: readonly number[],
  student: Row,
  divergence: "forward-kl" | "reverse-kl" | "jsd",
  beta = 0.5,
  floor = 1e-6,
): number {
  if (divergence === "forward-kl" || (divergence === "jsd" && beta === 0))
    return topKForwardKL(teacherLogProbs, teacherIds, student);
  const logQ = logSoftmax(student);
  const inTop = new Set(teacherIds);
  const logP = [...teacherLogProbs];
  const logQc = teacherIds.map((id) => logQ[id]!);
  if (inTop.size < student.length) {
    const head = teacherLogProbs.reduce((a, lp) => a + Math.exp(lp), 0);
    let tailQ = 0;
    logQ.forEach((lq, i) => {
      if (!inTop.has(i)) tailQ += Math.exp(lq);
    });
    logP.push(Math.log(Math.max(1 - head, floor)));
    logQc.push(Math.log(tailQ));
  }
  if (divergence === "reverse-kl" || beta === 1) return klLogProbs(logQc, logP);
  const logM = logP.map((lp, i) =>
    Math.log(beta * Math.exp(lp) + (1 - beta) * Math.exp(logQc[i]!)),
  );
  return beta * klLogProbs(logP, logM) + (1 - beta) * klLogProbs(logQc, logM);
}

/** The same reductions as the tfjs functions, on per-token values in row order. */
export function reduce(
  values: readonly number[],
  options: { mask?: readonly number[]; reduction?: Reduction; batchSize?: number },
): number | number[] {
  const reduction = options.reduction ?? "mean";
  const kept = values.map((v, i) => (options.mask && options.mask[i] === 0 ? 0 : v));
  if (reduction === "none") return kept;
  const total = kept.reduce((a, b) => a + b, 0);
  if (reduction === "sum") return total;
  if (reduction === "batchmean") return total / (options.batchSize ?? values.length);
  const count = options.mask ? options.mask.filter((m) => m !== 0).length : values.length;
  return total / Math.max(count, 1);
}
