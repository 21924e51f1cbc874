/**
 * Prints, as one JSON line, the backend this process runs and a small GPT's logits, loss and
 * gradients at a fixed seed: wasm-threads.test.ts runs it in child processes under
 * FORGE_WASM_THREADS and FORGE_NATIVE (the backend is chosen once per process) and compares.
 */
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../backend/select.js";
import { GPT } from "../gpt.js";

export async function probe(): Promise<{
  backend: string;
  threads: number;
  wasmBuild: string | undefined;
  matmul: string | undefined;
  logits: number[];
  loss: number;
  grads: Record<string, number[]>;
  generated: number[];
}> {
  const info = await initBackend({ backend: "wasm" });
  const model = GPT.create(
    { vocabSize: 96, blockSize: 32, nLayer: 2, nHead: 4, nEmbd: 64 },
    { seed: 7 },
  );
  const ids = tf.tensor2d(
    Array.from({ length: 4 * 32 }, (_, i) => (i * 37 + 11) % 96),
    [4, 32],
    "int32",
  );
  const targets = tf.tensor2d(
    Array.from({ length: 4 * 32 }, (_, i) => (i * 53 + 5) % 96),
    [4, 32],
    "int32",
  );
  const logits = tf.tidy(() => model.run(ids).logits);
  const parameters = model.trainableParameters();
  const { value, grads } = tf.variableGrads(
    () => model.lossUnchecked(ids, targets, undefined, { training: false }),
    [...parameters.values()],
  );
  const names = new Map([...parameters].map(([name, v]) => [v.name, name]));
  const result = {
    backend: info.name,
    threads: info.threads,
    wasmBuild: info.wasmBuild,
    matmul: info.matmul?.engine,
    logits: Array.from(logits.dataSync()),
    loss: value.dataSync()[0]!,
    grads: Object.fromEntries(
      Object.entries(grads).map(([id, g]) => [names.get(id) ?? id, Array.from(g.dataSync())]),
    ),
    generated: [] as number[],
  };
  tf.dispose([logits, value, ids, targets, ...Object.values(grads)]);
  const { generate } = await import("../generate.js");
  result.generated = generate(model, [[1, 2, 3]], { maxNewTokens: 40, temperature: 0 }).tokens[0]!;
  model.dispose();
  return result;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) {
  process.stdout.write(`${JSON.stringify(await probe())}\n`);
}
