/**
 * Training and generation throughput of the GPT decoder on this machine's backend, next to
 * the PyTorch CPU peer (../shared/peers/torch_gpt_bench.py) run in the same session on the
 * same configs, and next to the plain 2-D matmul roofline measured in this process.
 *
 *   pnpm --filter @forge/model bench
 *
 * forge runs as its training commands do (`wasmThreads: "auto"`: with the native kernels, their
 * pool on the cores, at most 4; without them, the wasm threaded build on the idle cores) unless
 * FORGE_WASM_THREADS is set (`pnpm bench` runs it again with FORGE_WASM_THREADS=1;
 * FORGE_NATIVE=0 measures wasm alone). Set FORGE_BENCH_QUICK=1 for the first config only. Per
 * config it prints forge against PyTorch at its best thread count (1, 2, …, the cores; best of
 * a run before and one after forge's) for training and for KV-cache generation at batch 1 and
 * 32, with the ratio. The backend line says which wasm build and which matmul run.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { describeBackend, GPT, generate, initBackend } from "../src/index.js";
import { probeMatMul } from "../src/internal.js";
import { AdamW, clipByGlobalNorm } from "../src/optimizer.js";

interface BenchConfig {
  vocab: number;
  d: number;
  layers: number;
  heads: number;
  ctx: number;
  batch: number;
}

const configs: BenchConfig[] = [
  { vocab: 512, d: 128, layers: 4, heads: 4, ctx: 128, batch: 8 },
  { vocab: 1024, d: 128, layers: 4, heads: 4, ctx: 256, batch: 16 },
];
if (process.env.FORGE_BENCH_QUICK) configs.length = 1;

// What forge's training commands run: the threaded build on the idle cores unless FORGE_WASM_THREADS
// says otherwise (`pnpm bench` runs this file with the default and with FORGE_WASM_THREADS=1).
const info = await initBackend({ wasmThreads: "auto" });
console.log(describeBackend(info));
console.log(
  `load average (1, 5, 15 min): ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(", ")}`,
);
const roofline = probeMatMul({ seconds: 2, size: 512 });
console.log(
  `plain 2-D matmul roofline (512³, this process): ${roofline.gflops.toFixed(2)} GFLOP/s\n`,
);

const peerScript = path.resolve(import.meta.dirname, "../../../../shared/peers/torch_gpt_bench.py");

interface PeerResult {
  torch: string;
  threads: number;
  train_tokens_per_s: number;
  train_step_ms: number;
  generate_tokens_per_s_batch1: number;
  generate_cached_tokens_per_s_batch1: number;
  generate_cached_tokens_per_s_batch32: number;
}

function runPeerAt(c: BenchConfig, threads: number): PeerResult | string {
  if (!existsSync(peerScript)) return "peer script not found (../shared/peers)";
  try {
    const out = execFileSync(
      "/usr/bin/python3",
      [
        peerScript,
        "--vocab",
        `${c.vocab}`,
        "--d",
        `${c.d}`,
        "--layers",
        `${c.layers}`,
        "--heads",
        `${c.heads}`,
        "--ctx",
        `${c.ctx}`,
        "--batch",
        `${c.batch}`,
      ],
      {
        env: { ...process.env, OMP_NUM_THREADS: String(threads) },
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    return JSON.parse(out.trim().split("\n").at(-1)!) as PeerResult;
  } catch (error) {
    return `PyTorch peer unavailable: ${(error as Error).message.split("\n")[0]}`;
  }
}

type Metric =
  | "train_tokens_per_s"
  | "generate_cached_tokens_per_s_batch1"
  | "generate_cached_tokens_per_s_batch32";

type PeerBest = { best: Record<Metric, { rate: number; threads: number }>; torch: string };

/** The better of two peer measurements, metric by metric (the peer runs before and after forge). */
function bestOfPeers(a: PeerBest | string, b: PeerBest | string): PeerBest | string {
  if (typeof a === "string") return b;
  if (typeof b === "string") return a;
  const best = { ...a.best };
  for (const metric of Object.keys(best) as Metric[]) {
    if (b.best[metric].rate > best[metric].rate) best[metric] = b.best[metric];
  }
  return { torch: a.torch, best };
}

/** PyTorch at each thread count from 1 to the cores; the best count per metric. */
function runPeer(c: BenchConfig): PeerBest | string {
  const counts = [
    ...new Set([1, Math.min(2, os.availableParallelism()), os.availableParallelism()]),
  ];
  const runs: PeerResult[] = [];
  for (const threads of counts) {
    const run = runPeerAt(c, threads);
    if (typeof run === "string") return run;
    runs.push(run);
  }
  const bestOf = (metric: Metric) => {
    const top = runs.reduce((a, b) => (b[metric] > a[metric] ? b : a));
    return { rate: top[metric], threads: top.threads };
  };
  return {
    torch: runs[0]!.torch,
    best: {
      train_tokens_per_s: bestOf("train_tokens_per_s"),
      generate_cached_tokens_per_s_batch1: bestOf("generate_cached_tokens_per_s_batch1"),
      generate_cached_tokens_per_s_batch32: bestOf("generate_cached_tokens_per_s_batch32"),
    },
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function trainThroughput(c: BenchConfig): {
  stepMs: number;
  tokensPerSecond: number;
  gflops: number;
  params: number;
} {
  const model = GPT.create({
    vocabSize: c.vocab,
    blockSize: c.ctx,
    nLayer: c.layers,
    nHead: c.heads,
    nEmbd: c.d,
  });
  const parameters = model.trainableParameters();
  const optimizer = new AdamW(parameters);
  const ids = tf.randomUniform([c.batch, c.ctx], 0, c.vocab, "int32", 1) as tf.Tensor2D;
  const targets = tf.randomUniform([c.batch, c.ctx], 0, c.vocab, "int32", 2) as tf.Tensor2D;
  const step = () => {
    const { value, grads } = tf.variableGrads(
      () => model.lossUnchecked(ids, targets, undefined, { training: true }),
      [...parameters.values()],
    );
    value.dataSync();
    value.dispose();
    const clipped = clipByGlobalNorm(grads, 1);
    tf.dispose(Object.values(grads));
    optimizer.apply(clipped.grads, 1e-3);
    tf.dispose(Object.values(clipped.grads));
  };
  step();
  step();
  const times: number[] = [];
  const steps = c.ctx * c.batch > 2048 ? 5 : 10;
  for (let i = 0; i < steps; i++) {
    const start = performance.now();
    step();
    times.push(performance.now() - start);
  }
  const stepMs = median(times);
  const tokens = c.batch * c.ctx;
  // nanoGPT's estimate: 6 FLOPs per parameter per token, plus 12·L·C·T for attention
  const flopsPerToken = 6 * model.parameterCount + 12 * c.layers * c.d * c.ctx;
  const result = {
    stepMs,
    tokensPerSecond: tokens / (stepMs / 1000),
    gflops: (flopsPerToken * tokens) / (stepMs / 1000) / 1e9,
    params: model.parameterCount,
  };
  tf.dispose([ids, targets]);
  optimizer.dispose();
  model.dispose();
  return result;
}

function generationThroughput(c: BenchConfig, batch: number, useCache: boolean): number {
  const model = GPT.create({
    vocabSize: c.vocab,
    blockSize: c.ctx,
    nLayer: c.layers,
    nHead: c.heads,
    nEmbd: c.d,
  });
  const prompts = Array.from({ length: batch }, (_, b) =>
    Array.from({ length: 8 }, (_, i) => (b * 13 + i) % c.vocab),
  );
  const newTokens = 64;
  // warm-up: one whole run, as the peer's (generate_cached(1) before its timed runs), so both
  // time compiled code (V8's JIT and the decode kernel's tier-up); forge's timed run still
  // includes its prefill, the peer's does not
  generate(model, prompts, { maxNewTokens: newTokens, temperature: 0, useCache });
  const start = performance.now();
  generate(model, prompts, { maxNewTokens: newTokens, temperature: 0, useCache });
  const seconds = (performance.now() - start) / 1000;
  model.dispose();
  return (batch * newTokens) / seconds;
}

for (const c of configs) {
  console.log(`config V=${c.vocab} d=${c.d} L=${c.layers} H=${c.heads} T=${c.ctx} B=${c.batch}`);
  // The peer runs before and after forge and keeps its better figure per row: on a shared
  // machine the load moves, and the comparison should not flatter forge.
  const peerBefore = runPeer(c);
  const train = trainThroughput(c);
  console.log(`  params ${train.params}`);
  console.log(
    `  train     forge ${train.tokensPerSecond.toFixed(0)} tok/s (${train.stepMs.toFixed(0)} ms/step), ${train.gflops.toFixed(2)} GFLOP/s = ${((100 * train.gflops) / roofline.gflops).toFixed(0)}% of the matmul roofline`,
  );
  const generation = [
    [1, true],
    [1, false],
    [32, true],
    [32, false],
  ].map(([batch, cache]) => ({
    batch: batch as number,
    cache: cache as boolean,
    rate: generationThroughput(c, batch as number, cache as boolean),
  }));
  for (const g of generation) {
    console.log(
      `  generate  batch ${String(g.batch).padStart(2)} ${g.cache ? "with   " : "without"} cache: ${g.rate.toFixed(0)} tok/s`,
    );
  }
  const peer = bestOfPeers(peerBefore, runPeer(c));
  if (typeof peer === "string") {
    console.log(`  peer: ${peer}`);
  } else {
    const ours: Record<Metric, number> = {
      train_tokens_per_s: train.tokensPerSecond,
      generate_cached_tokens_per_s_batch1: generation[0]!.rate,
      generate_cached_tokens_per_s_batch32: generation[2]!.rate,
    };
    const label: Record<Metric, string> = {
      train_tokens_per_s: "train                    ",
      generate_cached_tokens_per_s_batch1: "generate (cache) batch 1 ",
      generate_cached_tokens_per_s_batch32: "generate (cache) batch 32",
    };
    console.log(
      `  PyTorch ${peer.torch} at its best thread count per row (best of a run before and after forge's):`,
    );
    for (const metric of Object.keys(label) as Metric[]) {
      const best = peer.best[metric];
      console.log(
        `  ${label[metric]}  forge ${ours[metric].toFixed(0).padStart(6)} tok/s  PyTorch ${best.rate.toFixed(0).padStart(6)} tok/s (${best.threads} thread${best.threads === 1 ? "" : "s"})  ratio ${(ours[metric] / best.rate).toFixed(2)}×`,
      );
    }
  }
  console.log("");
}
