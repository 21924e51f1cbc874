/**
 * The decoder's operations with hand-written gradients: each backward pass uses fewer,
 * cheaper kernels than tfjs' autodiff of the same composition would.
 *
 * - GELU is computed as x·σ(2u) (= 0.5·x·(1 + tanh u)): the wasm backend's sigmoid is
 *   vectorised (XNNPACK, ~1 ns/element) where its tanh is scalar libm (~22 ns/element).
 * - LayerNorm's backward is the closed form; its parameter gradients and every bias gradient
 *   are 1ᵀ·dY products (a plain matmul) instead of column reductions (a transpose + sum).
 * - A linear layer's backward is exactly three plain matmuls.
 * - Softmax cross-entropy's backward is softmax − one-hot.
 *
 * Measured on wasm (this repo's model bench): these take a training step of the reference
 * config from 870 ms to the figure the bench prints. Tests hold every gradient here to
 * tfjs' autodiff of the plain composition.
 */
import * as tf from "@tensorflow/tfjs";
import {
  activeNativeGemm,
  FORGE_ATTENTION,
  FORGE_ATTENTION_GRAD,
  FORGE_CAUSAL_SOFTMAX,
  FORGE_GELU,
  FORGE_GELU_GRAD,
  FORGE_GELU_TRAIN,
  FORGE_LAYER_NORM,
  FORGE_LAYER_NORM_GRAD,
  FORGE_LAYER_NORM_TRAIN,
  FORGE_SOFTMAX_GRAD,
  FUSED_GELU_MAX_ELEMENTS,
  GELU_C,
  GELU_K,
  withStockMatMul,
} from "./wasm-kernels.js";

type Saver = (tensors: tf.Tensor[]) => void;
/** A gradient, or a thunk computing it: only the inputs the tape differentiates are computed. */
type Gradient = tf.Tensor | (() => tf.Tensor);
type GradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => Gradient | Gradient[];

interface KernelFuncEngine {
  runKernelFunc(params: {
    forwardFunc: (backend: unknown, save: Saver) => tf.Tensor;
    backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<string, () => tf.Tensor>;
    inputs: Record<string, tf.Tensor>;
  }): tf.Tensor;
}

/**
 * `tf.customGrad` whose gradients may be thunks. tfjs' customGrad computes every input's
 * gradient when its node is reached; the tape only asks for the inputs that lead to the
 * variables being differentiated, so a thunk for a frozen weight (every base weight of a LoRA
 * bake) is never run — the weight-gradient matmuls and bias sums a LoRA step does not need.
 * This is customGrad's own mechanism (engine.runKernelFunc with a backwardsFunc), with lazy
 * gradients.
 */
function custom(
  fn: (inputs: tf.Tensor[], save: Saver) => { value: tf.Tensor; gradFunc: GradFunc },
): (...inputs: tf.Tensor[]) => tf.Tensor {
  return (...inputs: tf.Tensor[]) => {
    let gradFunc: GradFunc | undefined;
    return (tf.engine() as unknown as KernelFuncEngine).runKernelFunc({
      forwardFunc: (_backend, save) => {
        const result = fn(inputs, save);
        gradFunc = result.gradFunc;
        return result.value;
      },
      backwardsFunc: (dy, saved) => {
        const result = gradFunc!(dy, saved);
        const grads = Array.isArray(result) ? result : [result];
        if (grads.length !== inputs.length)
          throw new Error(
            `a fused op returned ${grads.length} gradients for ${inputs.length} inputs`,
          );
        const map: Record<string, () => tf.Tensor> = {};
        grads.forEach((grad, i) => {
          map[i] = typeof grad === "function" ? grad : () => grad;
        });
        return map;
      },
      inputs: Object.fromEntries(inputs.entries()),
    });
  };
}

/** True while a gradient tape records (inside tf.grad / variableGrads / minimize). */
export function recording(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

let handWritten = true;
let fusedInference = true;

/** Use forge's fused inference kernels (wasm) where they exist; false: tfjs compositions (tests). */
export function setFusedInference(enabled: boolean): void {
  fusedInference = enabled;
}
/** Use tfjs' autodiff of the plain compositions instead (tests compare the two). */
export function setHandWrittenGradients(enabled: boolean): void {
  handWritten = enabled;
}

// ---------------------------------------------------------------------------------------
// tanh-GELU (GPT-2's "gelu_new"): 0.5·x·(1 + tanh(c·(x + k·x³))) = x·σ(2c·(x + k·x³))

function geluPlain(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), GELU_K)), GELU_C);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

const geluCustom = custom(([x], save) => {
  const x2 = tf.mul(x!, x!);
  const s = tf.sigmoid(tf.mul(x!, tf.add(tf.mul(x2, 2 * GELU_C * GELU_K), 2 * GELU_C))); // σ(2u)
  save([x!, x2, s]);
  return {
    value: tf.mul(x!, s),
    gradFunc: (dy, saved) => {
      const [xs, x2s, ss] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      // d/dx [x·σ(2u)] = σ + x·σ(1−σ)·2u',  2u' = 2c(1 + 3k·x²)
      const du = tf.add(tf.mul(x2s, 6 * GELU_C * GELU_K), 2 * GELU_C);
      const slope = tf.add(ss, tf.mul(tf.mul(xs, tf.mul(ss, tf.sub(1, ss))), du));
      return tf.mul(dy as tf.Tensor, slope);
    },
  };
});

/** geluCustom with both passes on the native addon (wasm only, where it is loaded). */
const geluNative = custom(([x], save) => {
  const [y, s] = tf.engine().runKernel(FORGE_GELU_TRAIN, { x: x! }, {}) as tf.Tensor[];
  save([x!, s!]);
  return {
    value: y!,
    gradFunc: (dy, saved) =>
      tf.engine().runKernel(FORGE_GELU_GRAD, { dy, x: saved[0]!, s: saved[1]! }, {}) as tf.Tensor,
  };
});

function geluForward(x: tf.Tensor): tf.Tensor {
  return tf.mul(
    x,
    tf.sigmoid(tf.mul(x, tf.add(tf.mul(tf.mul(x, x), 2 * GELU_C * GELU_K), 2 * GELU_C))),
  );
}

/** tanh-GELU. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (!recording()) {
    if (
      fusedInference &&
      (x.size <= FUSED_GELU_MAX_ELEMENTS || activeNativeGemm()) &&
      tf.getBackend() === "wasm" &&
      tf.getKernel(FORGE_GELU, "wasm")
    ) {
      return tf.engine().runKernel(FORGE_GELU, { x }, {}) as tf.Tensor;
    }
    return geluForward(x);
  }
  if (!handWritten) return geluPlain(x);
  return tf.getBackend() === "wasm" && activeNativeGemm() ? geluNative(x) : geluCustom(x);
}

// ---------------------------------------------------------------------------------------
// Column sums as a matmul: 1ᵀ·Y

function columnSums(y: tf.Tensor2D): tf.Tensor1D {
  return withStockMatMul(() => tf.matMul(tf.ones([1, y.shape[0]]), y)).reshape([
    y.shape[1],
  ]) as tf.Tensor1D;
}

// ---------------------------------------------------------------------------------------
// LayerNorm over the last axis of x [N, C]

function layerNormPlain(
  x: tf.Tensor2D,
  gamma: tf.Tensor,
  beta: tf.Tensor | undefined,
  epsilon: number,
): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  const scaled = tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon))), gamma);
  return (beta ? tf.add(scaled, beta) : scaled) as tf.Tensor2D;
}

function normalise(x: tf.Tensor2D, epsilon: number): { xhat: tf.Tensor2D; rstd: tf.Tensor2D } {
  const mean = tf.mean(x, -1, true);
  const centred = tf.sub(x, mean);
  const rstd = tf.rsqrt(
    tf.add(tf.mean(tf.mul(centred, centred), -1, true), epsilon),
  ) as tf.Tensor2D;
  return { xhat: tf.mul(centred, rstd) as tf.Tensor2D, rstd };
}

/** dX from dX̂ (the closed form): rstd·(dX̂ − mean(dX̂) − X̂·mean(dX̂·X̂)). */
function normaliseGrad(dxhat: tf.Tensor2D, xhat: tf.Tensor2D, rstd: tf.Tensor2D): tf.Tensor2D {
  const meanD = tf.mean(dxhat, -1, true);
  const meanDX = tf.mean(tf.mul(dxhat, xhat), -1, true);
  return tf.mul(tf.sub(tf.sub(dxhat, meanD), tf.mul(xhat, meanDX)), rstd) as tf.Tensor2D;
}

const layerNormWithBias = (epsilon: number) =>
  custom(([xIn, gIn, bIn], save) => {
    const { xhat, rstd } = normalise(xIn as tf.Tensor2D, epsilon);
    save([xhat, rstd, gIn!]);
    return {
      value: tf.add(tf.mul(xhat, gIn!), bIn!),
      gradFunc: (dy, saved) => {
        const [xh, rs, g] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const d = dy as tf.Tensor2D;
        return [
          () => normaliseGrad(tf.mul(d, g) as tf.Tensor2D, xh, rs),
          () => columnSums(tf.mul(d, xh) as tf.Tensor2D),
          () => columnSums(d),
        ];
      },
    };
  });

const layerNormNoBias = (epsilon: number) =>
  custom(([xIn, gIn], save) => {
    const { xhat, rstd } = normalise(xIn as tf.Tensor2D, epsilon);
    save([xhat, rstd, gIn!]);
    return {
      value: tf.mul(xhat, gIn!),
      gradFunc: (dy, saved) => {
        const [xh, rs, g] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const d = dy as tf.Tensor2D;
        return [
          () => normaliseGrad(tf.mul(d, g) as tf.Tensor2D, xh, rs),
          () => columnSums(tf.mul(d, xh) as tf.Tensor2D),
        ];
      },
    };
  });

/** LayerNorm with both passes on the native addon (wasm only, where it is loaded). */
const layerNormNative = (epsilon: number, withBias: boolean) =>
  custom((inputs, save) => {
    const [x, gamma, beta] = inputs as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D | undefined];
    const [y, xhat, rstd] = tf
      .engine()
      .runKernel(FORGE_LAYER_NORM_TRAIN, beta ? { x, gamma, beta } : { x, gamma }, {
        epsilon,
      } as never) as tf.Tensor[];
    save([xhat!, rstd!, gamma]);
    return {
      value: y!,
      gradFunc: (dy, saved) => {
        const [xh, rs, g] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const d = dy as tf.Tensor2D;
        const grads = [
          () =>
            tf
              .engine()
              .runKernel(
                FORGE_LAYER_NORM_GRAD,
                { dy: d, gamma: g, xhat: xh, rstd: rs },
                {},
              ) as tf.Tensor,
          () => columnSums(tf.mul(d, xh) as tf.Tensor2D),
        ];
        if (withBias) grads.push(() => columnSums(d));
        return grads;
      },
    };
  });

const layerNormOps = new Map<string, (...inputs: tf.Tensor[]) => tf.Tensor>();

/** LayerNorm over the last axis of x [N, C] with gain (and bias). */
export function layerNorm(
  x: tf.Tensor2D,
  gamma: tf.Tensor,
  beta: tf.Tensor | undefined,
  epsilon: number,
): tf.Tensor2D {
  if (!recording()) {
    if (fusedInference && tf.getBackend() === "wasm" && tf.getKernel(FORGE_LAYER_NORM, "wasm")) {
      const inputs: tf.NamedTensorMap = beta ? { x, gamma, beta } : { x, gamma };
      return tf.engine().runKernel(FORGE_LAYER_NORM, inputs, { epsilon }) as tf.Tensor2D;
    }
    const scaled = tf.mul(normalise(x, epsilon).xhat, gamma);
    return (beta ? tf.add(scaled, beta) : scaled) as tf.Tensor2D;
  }
  if (!handWritten) return layerNormPlain(x, gamma, beta, epsilon);
  const native = tf.getBackend() === "wasm" && activeNativeGemm() !== undefined;
  const key = `${native ? "native" : "tfjs"}${beta ? "b" : "n"}${epsilon}`;
  let op = layerNormOps.get(key);
  if (!op) {
    if (native) op = layerNormNative(epsilon, beta !== undefined);
    else op = beta ? layerNormWithBias(epsilon) : layerNormNoBias(epsilon);
    layerNormOps.set(key, op);
  }
  return (beta ? op(x, gamma, beta) : op(x, gamma)) as tf.Tensor2D;
}

// ---------------------------------------------------------------------------------------
// Linear layer x [N, in] · W [in, out] + b, backward as three plain matmuls

const linearWithBias = custom(([x, w, b], save) => {
  save([x!, w!]);
  return {
    value: tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b!),
    gradFunc: (dy, saved) => {
      const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
      const g = dy as tf.Tensor2D;
      return [
        () => tf.matMul(g, ws, false, true), // dX = dY·Wᵀ
        () => tf.matMul(xs, g, true, false), // dW = Xᵀ·dY
        () => columnSums(g), // db = 1ᵀ·dY
      ];
    },
  };
});

/** x [N, in] · W [in, out] (+ b). */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  if (!b) return tf.matMul(x, w);
  return (
    handWritten && recording() ? linearWithBias(x, w, b) : tf.add(tf.matMul(x, w), b)
  ) as tf.Tensor2D;
}

// ---------------------------------------------------------------------------------------
// Softmax cross-entropy: logits [N, V], integer targets [N] → per-row −log p(target)

/** −log softmax(logits)[target] per row: logits [N, V], targets [N] int32 → [N]. */
export function crossEntropyRows(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const [n, v] = logits.shape;
  const pick = (values: tf.Tensor, negate = true) => {
    const picked = tf.gather(
      values.reshape([n * v]),
      tf.add(tf.mul(tf.range(0, n, 1, "int32"), tf.scalar(v, "int32")), targets),
    );
    return negate ? tf.neg(picked) : picked;
  };
  if (!handWritten || !recording()) return pick(tf.logSoftmax(logits)) as tf.Tensor1D;
  const op = custom(([x], save) => {
    // softmax is one vectorised kernel; the loss is −log p[target] with p floored at 1e-30
    // (a loss above 69 nats reads as 69). The gradient, softmax − one-hot, is exact.
    const probs = tf.softmax(x as tf.Tensor2D);
    save([probs]);
    return {
      value: tf.neg(tf.log(tf.maximum(pick(probs, false), 1e-30))),
      gradFunc: (dy, saved) =>
        tf.mul(tf.sub(saved[0]!, tf.oneHot(targets, v)), (dy as tf.Tensor).reshape([n, 1])),
    };
  });
  return op(logits) as tf.Tensor1D;
}

// ---------------------------------------------------------------------------------------
// Attention helpers

/** x [B·T, H·hs] → [B, H, T, hs]. */
export function toHeads(x: tf.Tensor2D, time: number, heads: number): tf.Tensor4D {
  const [rows, width] = x.shape;
  // one position (decoding): [B, 1, H, hs] and [B, H, 1, hs] share one memory order
  if (time === 1) return x.reshape([rows, heads, 1, width / heads]) as tf.Tensor4D;
  return x
    .reshape([rows / time, time, heads, width / heads])
    .transpose([0, 2, 1, 3]) as tf.Tensor4D;
}

/** y [B, H, T, hs] → [B·T, H·hs]. */
export function fromHeads(y: tf.Tensor4D): tf.Tensor2D {
  const [batch, heads, time, headSize] = y.shape;
  if (time === 1) return y.reshape([batch, heads * headSize]) as tf.Tensor2D;
  return y.transpose([0, 2, 1, 3]).reshape([batch * time, heads * headSize]) as tf.Tensor2D;
}

const causalMasks = new Map<string, tf.Tensor>();

/** Additive mask [1, 1, T, Tk]: query i sees keys up to i + Tk − T. Cached, kept. */
export function causalMask(t: number, tk: number): tf.Tensor4D {
  const key = `${t}x${tk}`;
  let mask = causalMasks.get(key);
  if (!mask) {
    mask = tf.tidy(() => {
      const row = tf.range(0, t, 1, "int32").reshape([t, 1]);
      const column = tf.range(0, tk, 1, "int32").reshape([1, tk]);
      const hidden = tf.greater(column, tf.add(row, tf.scalar(tk - t, "int32")));
      return tf.mul(tf.cast(hidden, "float32"), -1e9).reshape([1, 1, t, tk]);
    });
    tf.keep(mask);
    causalMasks.set(key, mask);
  }
  return mask as tf.Tensor4D;
}

/** causalSoftmax on the native addon, forward and backward (wasm only, where it is loaded). */
const causalSoftmaxNative = custom(([scores], save) => {
  const p = tf.engine().runKernel(FORGE_CAUSAL_SOFTMAX, { x: scores! }, {}) as tf.Tensor;
  save([p]);
  return {
    value: p,
    gradFunc: (dy, saved) =>
      tf.engine().runKernel(FORGE_SOFTMAX_GRAD, { dy, p: saved[0]! }, {}) as tf.Tensor,
  };
});

const attentionOps = new Map<string, (...inputs: tf.Tensor[]) => tf.Tensor>();

/** Causal self-attention with both passes on the native addon (B sequences, H and KV heads). */
function attentionNative(
  batch: number,
  heads: number,
  kvHeads: number,
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const key = `${batch}×${heads}×${kvHeads}`;
  let op = attentionOps.get(key);
  if (!op) {
    const attrs = { batch, heads, kvHeads } as never;
    op = custom(([q, k, v], save) => {
      const [y, p] = tf.engine().runKernel(FORGE_ATTENTION, { q: q!, k: k!, v: v! }, attrs) as [
        tf.Tensor,
        tf.Tensor,
      ];
      save([q!, k!, v!, p]);
      return {
        value: y,
        gradFunc: (dy, saved) => {
          const [qs, ks, vs, ps] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
          const inputs = { dy: dy as tf.Tensor, q: qs, k: ks, v: vs, p: ps };
          return tf.engine().runKernel(FORGE_ATTENTION_GRAD, inputs, attrs) as tf.Tensor[];
        },
      };
    });
    attentionOps.set(key, op);
  }
  return op;
}

/**
 * Causal self-attention of q [B·T, H·d] (unscaled) over k, v [B·T, KV·d] → [B·T, H·d], where
 * each position sees itself and those before it and query head h reads key/value head
 * h / (H / KV): on the native addon in one kernel per pass (no head transposes, no
 * [B, H, T, T] scores tensor between kernels); undefined where it does not run (no addon,
 * another backend, the fused kernels off, or tfjs' own gradients asked for).
 */
export function fusedCausalAttention(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  batch: number,
  heads: number,
  kvHeads = heads,
): tf.Tensor2D | undefined {
  if (!fusedAttentionRuns()) return undefined;
  return attentionNative(batch, heads, kvHeads)(q, k, v) as tf.Tensor2D;
}

/** Whether `fusedCausalAttention` runs here and now. */
export function fusedAttentionRuns(): boolean {
  return (
    fusedInference &&
    tf.getBackend() === "wasm" &&
    activeNativeGemm() !== undefined &&
    !(recording() && !handWritten)
  );
}

/** Softmax of attention scores [B, H, T, Tk] where query i sees keys up to i + Tk − T. */
export function causalSoftmax(scores: tf.Tensor4D): tf.Tensor4D {
  if (fusedInference && tf.getBackend() === "wasm" && activeNativeGemm()) {
    return causalSoftmaxNative(scores) as tf.Tensor4D;
  }
  const [, , t, tk] = scores.shape;
  return tf.softmax(tf.add(scores, causalMask(t, tk))) as tf.Tensor4D;
}
