/**
 * Dense layer forward + backward on the wasm backend, with forge's matmul routing off (the
 * stock tfjs-backend-wasm kernel) and on, in the same process, against the plain 2-D matmul
 * roofline measured here too.
 *
 *   pnpm --filter @forge/model bench
 */
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/index.js";
import { probeMatMul, setWasmMatMulRouting } from "../src/internal.js";

const info = await initBackend({ backend: "wasm" });
console.log(`backend: ${info.name}, tfjs ${info.tfjsVersion}`);

interface DenseShape {
  name: string;
  rows: number;
  inputs: number;
  outputs: number;
}

function denseStep(x: tf.Variable, w: tf.Variable, b: tf.Variable): void {
  tf.tidy(() => {
    const { grads } = tf.variableGrads(() => {
      const y = tf.add(tf.matMul(x, w), b); // [rows, outputs]
      return tf.mean(tf.square(y));
    }, [x, w, b]);
    // Reading every gradient forces the whole backward pass to complete.
    for (const g of Object.values(grads)) g.dataSync();
  });
}

function measure(shape: DenseShape, routed: boolean, seconds: number): number {
  setWasmMatMulRouting(routed);
  const x = tf.variable(tf.randomNormal([shape.rows, shape.inputs], 0, 1, "float32", 1));
  const w = tf.variable(tf.randomNormal([shape.inputs, shape.outputs], 0, 0.02, "float32", 2));
  const b = tf.variable(tf.zeros([shape.outputs]));
  denseStep(x, w, b);
  let steps = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    denseStep(x, w, b);
    steps++;
  }
  const elapsed = (performance.now() - start) / 1000;
  tf.dispose([x, w, b]);
  setWasmMatMulRouting(true);
  // forward x·W, backward dX = dY·Wᵀ and dW = Xᵀ·dY: three products of 2·rows·in·out FLOPs.
  return (6 * shape.rows * shape.inputs * shape.outputs * steps) / elapsed / 1e9;
}

const shapes: DenseShape[] = [
  { name: "mlp up    [1024×128]·[128×512]", rows: 1024, inputs: 128, outputs: 512 },
  { name: "mlp down  [1024×512]·[512×128]", rows: 1024, inputs: 512, outputs: 128 },
  { name: "attn qkv  [2048×128]·[128×384]", rows: 2048, inputs: 128, outputs: 384 },
];

const roofline = probeMatMul({ seconds: 1, size: 512 });
console.log(`plain 2-D matmul 512³: ${roofline.gflops.toFixed(2)} GFLOP/s (roofline)\n`);
console.log(
  "dense forward+backward            stock GFLOP/s  routed GFLOP/s  speed-up  % of roofline",
);
for (const shape of shapes) {
  const stock = measure(shape, false, 1.5);
  const routed = measure(shape, true, 1.5);
  console.log(
    `${shape.name}  ${stock.toFixed(2).padStart(13)}  ${routed.toFixed(2).padStart(14)}  ${`${(routed / stock).toFixed(1)}×`.padStart(8)}  ${`${((100 * routed) / roofline.gflops).toFixed(0)}%`.padStart(13)}`,
  );
}
