/**
 * A Llama-family model at real scale: a random-weight checkpoint with SmolLM2-135M's exact
 * shapes (bf16, the Hugging Face layout), loaded and run by forge and by the PyTorch peer
 * (bench/torch_llama_peer.py, written from the architecture, at its best of 1 and 2 threads)
 * in the same run: load time and memory, a forward pass, KV-cache generation at batch 1, one
 * LoRA step (r 8 on q/v, batch 1 × 128 by default: 4 × 128 exceeds the wasm heap here), and the time a bake with the demo's settings would take.
 *
 *   pnpm --filter @forge/model bench:llama    (needs /usr/bin/python3 with torch)
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import {
  attachLora,
  generate,
  initBackend,
  lmTask,
  loadModel,
  parameterCount,
  trainModel,
} from "../src/index.js";

const TOKENS = 128;
const PROMPT = 16;
const GENERATED = 32;
const BATCH = Number(process.env.FORGE_LLAMA_BENCH_BATCH ?? 1);
const dir = process.env.FORGE_LLAMA_BENCH_DIR ?? path.join(os.tmpdir(), "forge-smollm2-135m-shape");
mkdirSync(dir, { recursive: true });

const peerScript = fileURLToPath(new URL("./torch_llama_peer.py", import.meta.url));
if (!existsSync("/usr/bin/python3")) throw new Error("the peer needs /usr/bin/python3 with torch");
const peer = JSON.parse(
  execFileSync(
    "/usr/bin/python3",
    [
      peerScript,
      "--out",
      dir,
      "--tokens",
      `${TOKENS}`,
      "--prompt",
      `${PROMPT}`,
      "--gen",
      `${GENERATED}`,
      "--batch",
      `${BATCH}`,
    ],
    { encoding: "utf8", maxBuffer: 1 << 24 },
  ).trim(),
);

const info = await initBackend();
const rssBefore = process.memoryUsage().rss;
let start = performance.now();
const { model } = await loadModel(dir, {
  onPlan: (plan) =>
    console.error(
      `before allocating: ${plan.parameters.toLocaleString("en-US")} parameters, ${(plan.weightBytes / 2 ** 20).toFixed(0)} MiB as float32 (${(plan.storedBytes / 2 ** 20).toFixed(0)} MiB ${plan.dtypes.join("/")} on disk)`,
    ),
});
const loadSeconds = (performance.now() - start) / 1000;
console.error(
  `loaded in ${loadSeconds.toFixed(1)} s; wasm heap ${(tf.memory().numBytes / 2 ** 20).toFixed(0)} MiB in tensors`,
);
const rssAfterLoad = process.memoryUsage().rss;
const peakRss = process.resourceUsage().maxRSS * 1024;
const weightBytes = parameterCount(model.config) * 4;

const ids = Array.from({ length: TOKENS }, (_, i) => (i * 7919) % model.config.vocabSize);
const forward = (n: number) => {
  const input = tf.tensor2d([ids.slice(0, n)], undefined, "int32");
  const logits = model.forward(input);
  logits.dataSync();
  tf.dispose([input, logits]);
};
forward(8);
start = performance.now();
forward(TOKENS);
const forwardTps = TOKENS / ((performance.now() - start) / 1000);
console.error(`forward: ${forwardTps.toFixed(1)} tok/s`);

generate(model, [ids.slice(0, PROMPT)], { maxNewTokens: 2, temperature: 0 });
let prefillDone = 0;
start = performance.now();
generate(model, [ids.slice(0, PROMPT)], {
  maxNewTokens: GENERATED + 1,
  temperature: 0,
  onStep: (step) => {
    if (step === 0) prefillDone = performance.now();
  },
});
const generateTps = GENERATED / ((performance.now() - prefillDone) / 1000);
console.error(`generate: ${generateTps.toFixed(1)} tok/s`);

attachLora(model, { r: 8, alpha: 16 });
const batch = () => ({
  ids: tf.tensor2d(
    Array.from({ length: BATCH }, (_, b) => ids.map((id) => (id + b) % model.config.vocabSize)),
    undefined,
    "int32",
  ),
  targets: tf.tensor2d(
    Array.from({ length: BATCH }, (_, b) => ids.map((id) => (id + b + 1) % model.config.vocabSize)),
    undefined,
    "int32",
  ),
  tokens: BATCH * TOKENS,
});
const stepSeconds: number[] = [];
await trainModel(
  lmTask(model, { next: batch, state: () => 0, restore: () => undefined }),
  { steps: 2, learningRate: 1e-3, warmupSteps: 0, evalEvery: 0, checkpointEvery: 0 },
  {
    onEvent: (e) => {
      if (e.type === "step-end") stepSeconds.push(e.elapsedSeconds);
    },
  },
);
const loraStep = stepSeconds[1]! - stepSeconds[0]!;
model.dispose();

// forge demo's bake, scaled to this model: 24 stimuli × 2 rollouts of up to 48 tokens, the
// teacher's and student's forward over each (prompt ≈ 48 + reply 48), 4 epochs at batch 16
const rollouts = 24 * 2;
const replyTokens = 48;
const projected =
  (rollouts * replyTokens) / generateTps + // rollout (batch 1 generation: an upper bound)
  (2 * rollouts * 96) / forwardTps + // teacher and student forwards for the KL target
  Math.ceil(rollouts / 16) * 4 * loraStep * ((16 * 96) / (BATCH * TOKENS)); // training
const torchProjected =
  (rollouts * replyTokens) / peer.best.generate_tokens_per_second +
  (2 * rollouts * 96) / peer.best.forward_tokens_per_second +
  Math.ceil(rollouts / 16) * 4 * peer.best.lora_step_seconds * ((16 * 96) / (BATCH * TOKENS));

const row = (name: string, forge: number, torch: number, unit: string, higher = true) =>
  console.log(
    `${name.padEnd(34)} forge ${forge.toFixed(2).padStart(9)} ${unit.padEnd(6)} torch ${torch.toFixed(2).padStart(9)} ${unit.padEnd(6)} ratio ${(higher ? forge / torch : torch / forge).toFixed(2)}×`,
  );
console.log(
  `SmolLM2-135M shapes, random bf16 weights: ${parameterCount(model.config).toLocaleString("en-US")} parameters (${(weightBytes / 2 ** 20).toFixed(0)} MiB as float32); forge on ${info.name}, PyTorch ${peer.torch} at its best of 1 and 2 threads`,
);
row("load (safetensors → float32)", loadSeconds, peer.load_seconds, "s", false);
console.log(
  `${"memory".padEnd(34)} forge RSS +${((rssAfterLoad - rssBefore) / 2 ** 20).toFixed(0)} MiB after load, peak ${(peakRss / 2 ** 20).toFixed(0)} MiB; torch peak ${(peer.peak_rss_after_load_bytes / 2 ** 20).toFixed(0)} MiB`,
);
row(`forward, ${TOKENS} tokens`, forwardTps, peer.best.forward_tokens_per_second, "tok/s");
row("KV-cache generation, batch 1", generateTps, peer.best.generate_tokens_per_second, "tok/s");
row(`LoRA step (r 8 q/v, ${BATCH}×${TOKENS})`, loraStep, peer.best.lora_step_seconds, "s", false);
row("projected forge-demo bake", projected, torchProjected, "s", false);
