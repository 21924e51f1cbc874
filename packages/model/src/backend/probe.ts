import * as tf from "@tensorflow/tfjs";

export interface MatMulProbeResult {
  /** Square matrix size n of the n×n · n×n product. */
  size: number;
  /** Products completed. */
  iterations: number;
  /** Wall time spent, in seconds. */
  seconds: number;
  /** 2·n³ · iterations / seconds, in GFLOP/s. */
  gflops: number;
}

/**
 * Time plain 2-D float32 matMuls on the current backend for about `seconds` seconds (after
 * one warm-up product) and report the sustained GFLOP/s. The roofline every model benchmark
 * is compared against.
 */
export function probeMatMul(options: { seconds?: number; size?: number } = {}): MatMulProbeResult {
  const seconds = options.seconds ?? 1;
  const size = options.size ?? 512;
  const a = tf.randomNormal([size, size], 0, 1, "float32", 1);
  const b = tf.randomNormal([size, size], 0, 1, "float32", 2);
  const once = () => {
    // Not tf.tidy(() => ….dataSync()): tidy walks a returned typed array element by element
    // looking for tensors, which would cost more than the product.
    const product = tf.matMul(a, b);
    product.dataSync();
    product.dispose();
  };
  once();
  let iterations = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    once();
    iterations++;
    elapsed = (performance.now() - start) / 1000;
  } while (elapsed < seconds);
  a.dispose();
  b.dispose();
  return {
    size,
    iterations,
    seconds: elapsed,
    gflops: (2 * size ** 3 * iterations) / elapsed / 1e9,
  };
}
