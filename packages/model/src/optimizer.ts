/**
 * AdamW (Loshchilov & Hutter) with decoupled weight decay applied to matrices only (≥ 2-D:
 * linear weights and embeddings; biases and LayerNorm gains are not decayed), global-norm
 * gradient clipping, and a learning-rate schedule of linear warmup then cosine decay to a
 * floor — nanoGPT's recipe.
 */
import * as tf from "@tensorflow/tfjs";
import { type AdamWAttrs, FORGE_ADAMW } from "./backend/wasm-kernels.js";
import { ModelError } from "./errors.js";

let fusedAdamW = true;

/**
 * Use the one-kernel AdamW update on the wasm backend (default on); off runs the tfjs
 * composition. Tests switch it to check the two agree.
 */
export function setFusedAdamW(enabled: boolean): void {
  fusedAdamW = enabled;
}

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWConfig = {
  beta1: 0.9,
  beta2: 0.95,
  epsilon: 1e-8,
  weightDecay: 0.1,
};

export class AdamW {
  readonly config: AdamWConfig;
  /** Updates applied so far (bias correction uses it). */
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  /**
   * @param variables the variables to update, by a stable name (checkpoints use it)
   */
  constructor(
    private readonly variables: ReadonlyMap<string, tf.Variable>,
    config: Partial<AdamWConfig> = {},
  ) {
    this.config = { ...DEFAULT_ADAMW, ...config };
    for (const [name, variable] of variables) {
      const zeros = tf.zeros(variable.shape);
      this.m.set(name, tf.variable(zeros, false));
      this.v.set(name, tf.variable(zeros, false));
      zeros.dispose(); // the variables hold their own references
    }
  }

  /** Apply one update with `grads` (keyed by tfjs variable name, as variableGrads returns them). */
  apply(grads: tf.NamedTensorMap, lr: number): void {
    this.step++;
    const { beta1, beta2, epsilon, weightDecay } = this.config;
    const correction1 = 1 - beta1 ** this.step;
    const correction2 = 1 - beta2 ** this.step;
    const fused = fusedAdamW && tf.getBackend() === "wasm" && tf.getKernel(FORGE_ADAMW, "wasm");
    tf.tidy(() => {
      for (const [name, variable] of this.variables) {
        const g = grads[variable.name];
        if (!g) continue;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        if (fused) {
          const attrs: AdamWAttrs = {
            beta1,
            beta2,
            correction1,
            correction2,
            epsilon,
            lr,
            decay: weightDecay > 0 && variable.rank >= 2 ? lr * weightDecay : 0,
          };
          const [x, m2, v2] = tf
            .engine()
            .runKernel(FORGE_ADAMW, { x: variable, m, v, g }, attrs as never) as tf.Tensor[];
          m.assign(m2!);
          v.assign(v2!);
          variable.assign(x!);
          continue;
        }
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const update = tf.div(
          tf.div(m, correction1),
          tf.add(tf.sqrt(tf.div(v, correction2)), epsilon),
        );
        let next = tf.sub(variable, tf.mul(update, lr));
        if (weightDecay > 0 && variable.rank >= 2)
          next = tf.sub(next, tf.mul(variable, lr * weightDecay));
        variable.assign(next);
      }
    });
  }

  /** Moments by name (`m.<variable>`, `v.<variable>`), for checkpoints. */
  stateTensors(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const name of this.variables.keys()) {
      out.set(`m.${name}`, this.m.get(name)!);
      out.set(`v.${name}`, this.v.get(name)!);
    }
    return out;
  }

  /** Restore moments saved by `stateTensors` (validated) and the step count. */
  restore(
    state: Map<string, { shape: number[]; data: Float32Array }>,
    step: number,
    source: string,
  ): void {
    for (const [name, variable] of this.variables) {
      for (const [kind, store] of [
        ["m", this.m],
        ["v", this.v],
      ] as const) {
        const saved = state.get(`${kind}.${name}`);
        if (!saved || !tf.util.arraysEqual(saved.shape, variable.shape)) {
          throw new ModelError(
            "E_TRAINING",
            `${source}: optimizer state ${kind}.${name} is missing or has the wrong shape`,
          );
        }
        tf.tidy(() => store.get(name)!.assign(tf.tensor(saved.data, saved.shape)));
      }
    }
    this.step = step;
  }

  dispose(): void {
    tf.dispose([...this.m.values(), ...this.v.values()]);
    this.m.clear();
    this.v.clear();
  }
}

/**
 * Scale `grads` so their global L2 norm is at most `maxNorm` (0 = no clipping). Returns the
 * clipped gradients (new tensors) and the norm before clipping.
 */
export function clipByGlobalNorm(
  grads: tf.NamedTensorMap,
  maxNorm: number,
): { grads: tf.NamedTensorMap; norm: number } {
  const names = Object.keys(grads);
  const normTensor = tf.tidy(() =>
    tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n]!))))),
  );
  const norm = normTensor.dataSync()[0]!;
  normTensor.dispose();
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  const out: tf.NamedTensorMap = {};
  for (const name of names)
    out[name] = scale === 1 ? grads[name]!.clone() : tf.tidy(() => tf.mul(grads[name]!, scale));
  return { grads: out, norm };
}

export interface ScheduleSettings {
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  /** Step at which the cosine reaches the floor (usually the total steps). */
  decaySteps: number;
}

/**
 * Learning rate at 0-based `step`: linear warmup to `learningRate` over `warmupSteps`, cosine
 * decay to `minLearningRate` at `decaySteps`, then the floor (nanoGPT's get_lr).
 */
export function learningRateAt(step: number, s: ScheduleSettings): number {
  if (step < s.warmupSteps) return (s.learningRate * (step + 1)) / (s.warmupSteps + 1);
  if (step >= s.decaySteps) return s.minLearningRate;
  const progress = (step - s.warmupSteps) / Math.max(1, s.decaySteps - s.warmupSteps);
  return (
    s.minLearningRate +
    0.5 * (1 + Math.cos(Math.PI * progress)) * (s.learningRate - s.minLearningRate)
  );
}
