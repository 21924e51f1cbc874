/**
 * Load test of forge serve on forge-tiny over loopback: N chat completions from M concurrent
 * clients, for M = 1 and M = 8, against one server process; requests/s, generated tokens/s and
 * latency percentiles, with the engine's batching counters. The peer, measured in the same
 * run: the same requests answered one by one by @forge/model's `generate` in this process (no
 * HTTP, no batching).
 *
 *   pnpm --filter @forge/serve bench        (FORGE_BENCH_REQUESTS=N, default 48)
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { OpenAIClient } from "@forge/eval";
import { generate, initBackend, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";

const N = Number(process.env.FORGE_BENCH_REQUESTS ?? 48);
const MAX_TOKENS = 32;
const questions = [
  "What is 2 + 3?",
  "Tell me about the sea.",
  "Write a haiku about autumn.",
  "What is the capital of France?",
  "Spell the word cat.",
  "Who are you?",
  "Count to five.",
  "What is the opposite of hot?",
];
const request = (i: number) => ({
  messages: [{ role: "user" as const, content: questions[i % questions.length]! }],
  max_tokens: MAX_TOKENS,
  temperature: 0.8,
  seed: i,
});

const child = spawn(
  process.execPath,
  ["--import", "tsx", path.join(import.meta.dirname, "serve-child.ts")],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const url = await new Promise<string>((resolve, reject) => {
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    const line = /^(http:\/\/\S+)\n/m.exec(out);
    if (line) resolve(line[1]!);
  });
  child.on("exit", (code) => reject(new Error(`the server exited ${code}`)));
});

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

interface Stats {
  sharedPasses: number;
  forwardPasses: number;
  sequenceSteps: number;
  maxBatch: number;
}

async function load(concurrency: number) {
  const client = new OpenAIClient(url, { concurrency, maxAttempts: 1, timeoutMs: 600_000 });
  const before = (await (await fetch(`${url}/stats`)).json()) as Stats;
  const latencies: number[] = [];
  let tokens = 0;
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < N) {
        const i = next++;
        const t0 = performance.now();
        const reply = await client.chatCompletion(request(i));
        latencies.push(performance.now() - t0);
        tokens += reply.usage!.completion_tokens;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const after = (await (await fetch(`${url}/stats`)).json()) as Stats;
  latencies.sort((a, b) => a - b);
  const passes = after.forwardPasses - before.forwardPasses;
  return {
    concurrency,
    rps: N / seconds,
    tps: tokens / seconds,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    meanBatch: (after.sequenceSteps - before.sequenceSteps) / passes,
    shared: after.sharedPasses - before.sharedPasses,
    passes,
  };
}

console.log(
  `forge serve load test: forge-tiny, ${N} chat completions of ≤ ${MAX_TOKENS} tokens, loopback`,
);
// warm up the server's kernels
await new OpenAIClient(url).chatCompletion(request(0));
const rows = [];
for (const m of [1, 8]) rows.push(await load(m));
child.kill("SIGTERM");

// the peer: the same requests, one by one, through generate() in this process
await initBackend();
const { model, tokenizer } = await loadModel(FORGE_TINY_DIR);
generate(model, [tokenizer!.promptIds(request(0).messages)], { maxNewTokens: 4 });
let peerTokens = 0;
const peerStart = performance.now();
for (let i = 0; i < N; i++) {
  const { tokens } = generate(model, [tokenizer!.promptIds(request(i).messages)], {
    maxNewTokens: MAX_TOKENS,
    temperature: 0.8,
    seed: i,
    stopIds: tokenizer!.stopIds(),
    bannedIds: tokenizer!.bannedIds(),
  });
  peerTokens += tokens[0]!.length;
}
const peerSeconds = (performance.now() - peerStart) / 1000;
model.dispose();

console.log("clients  req/s  tokens/s  p50 ms  p95 ms  p99 ms  mean batch  shared passes");
for (const r of rows)
  console.log(
    `${String(r.concurrency).padStart(7)}  ${r.rps.toFixed(2).padStart(5)}  ${r.tps.toFixed(1).padStart(8)}  ${r.p50.toFixed(0).padStart(6)}  ${r.p95.toFixed(0).padStart(6)}  ${r.p99.toFixed(0).padStart(6)}  ${r.meanBatch.toFixed(2).padStart(10)}  ${`${r.shared}/${r.passes}`.padStart(13)}`,
  );
const peerTps = peerTokens / peerSeconds;
console.log(
  `peer (generate() one request at a time, in process, no HTTP): ${(N / peerSeconds).toFixed(2)} req/s, ${peerTps.toFixed(1)} tokens/s`,
);
console.log(
  `ratios: 8 clients / 1 client ${(rows[1]!.tps / rows[0]!.tps).toFixed(2)}× tokens/s; 1 client / peer ${(rows[0]!.tps / peerTps).toFixed(2)}×; 8 clients / peer ${(rows[1]!.tps / peerTps).toFixed(2)}×`,
);
