export {
  crossEntropy,
  type DivergenceOptions,
  distillation,
  forwardKL,
  type GeneralizedJSDOptions,
  generalizedJSD,
  jensenShannon,
  klFromLogProbs,
  type ReduceOptions,
  type Reduction,
  reduceTokens,
  reverseKL,
  type TeacherTopK,
  TOPK_DIVERGENCES,
  TOPK_TAIL_FLOOR,
  type TopKDivergenceKind,
  teacherTopK,
  topKDivergence,
  topKForwardKL,
} from "./divergences.js";
export { LossError, type LossErrorCode } from "./errors.js";
export { type KLEstimate, sequenceKL, tokenLevelKL } from "./monte-carlo.js";
export * as reference from "./reference.js";
