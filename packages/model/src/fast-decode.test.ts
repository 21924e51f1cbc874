import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { NativeGemmModule } from "./backend/native-gemm.js";
import { initBackend } from "./backend/select.js";
import { activeNativeGemm, setNativeGemm } from "./backend/wasm-kernels.js";
import type { GPTConfig } from "./config.js";
import {
  expApprox,
  JS_DECODE_MAX_BATCH_WIDTH2,
  JS_DECODE_MAX_PARAMETERS,
  jsDecodePays,
} from "./fast-decode.js";
import { type GenerateOptions, type Generation, generate } from "./generate.js";
import { GPT } from "./gpt.js";
import { attachLora } from "./lora.js";

beforeAll(async () => {
  await initBackend({ backend: "wasm" });
});

/** Generate with one decoder, keeping every step's logits of the unfinished rows. */
function traced(
  model: GPT,
  prompts: number[][],
  options: GenerateOptions,
  decoder: "js" | "tfjs",
): { out: Generation; logits: (Float32Array | undefined)[][] } {
  const logits: (Float32Array | undefined)[][] = [];
  const V = model.config.vocabSize;
  const done = prompts.map(() => false);
  const out = generate(model, prompts, {
    ...options,
    decoder,
    onLogits: (_step, values) => {
      logits.push(prompts.map((_, b) => (done[b] ? undefined : values.slice(b * V, (b + 1) * V))));
    },
    onStep: (_step, tokens) => {
      tokens.forEach((t, b) => {
        if (t !== null && options.stopIds?.includes(t)) done[b] = true;
      });
    },
  });
  return { out, logits };
}

/** Both decoders on the same prompts: logits within 1e-4 every step, same tokens. */
function expectSame(model: GPT, prompts: number[][], options: GenerateOptions): Generation {
  const js = traced(model, prompts, { ...options, logprobs: true }, "js");
  const ref = traced(model, prompts, { ...options, logprobs: true }, "tfjs");
  expect(js.out.tokens).toEqual(ref.out.tokens);
  expect(js.out.finishReasons).toEqual(ref.out.finishReasons);
  expect(js.logits.length).toBe(ref.logits.length);
  let worst = 0;
  for (const [step, rows] of js.logits.entries()) {
    for (const [b, row] of rows.entries()) {
      const other = ref.logits[step]![b];
      expect(row === undefined).toBe(other === undefined);
      if (!row || !other) continue;
      for (let i = 0; i < row.length; i++) worst = Math.max(worst, Math.abs(row[i]! - other[i]!));
    }
  }
  expect(worst).toBeLessThan(1e-4);
  let logprobGap = 0;
  for (const [b, row] of js.out.logprobs!.entries())
    for (const [i, lp] of row.entries())
      logprobGap = Math.max(logprobGap, Math.abs(lp - ref.out.logprobs![b]![i]!));
  expect(logprobGap).toBeLessThan(1e-4);
  return js.out;
}

/** A model whose output distribution is sharp (greedy far from ties), as generate.test does. */
function sharpened(config: Parameters<typeof GPT.create>[0], seed: number): GPT {
  const model = GPT.create(config, { seed });
  const embedding = model.params.has("wte.weight") ? "wte.weight" : "embed_tokens.weight";
  tf.tidy(() => model.param(embedding).assign(tf.mul(model.param(embedding), 20)));
  // non-zero biases and gains, so they are exercised
  tf.tidy(() => {
    for (const [name, p] of model.params)
      if (name.endsWith(".bias") || /norm|ln_/.test(name))
        p.assign(tf.add(p, tf.randomUniform(p.shape, -0.2, 0.2, "float32", name.length)));
  });
  return model;
}

const LLAMA: Omit<GPTConfig, "llama"> & { llama: NonNullable<GPTConfig["llama"]> } = {
  architecture: "llama",
  vocabSize: 80,
  blockSize: 24,
  nLayer: 2,
  nHead: 4,
  nEmbd: 32,
  dropout: 0,
  bias: false,
  layerNormEpsilon: 1e-5,
  llama: {
    nKvHead: 2,
    headDim: 8,
    intermediateSize: 56,
    ropeTheta: 10_000,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 16,
    },
    tieWordEmbeddings: false,
    qkvBias: true,
    oBias: true,
    mlpBias: true,
  },
};

/** The first step's logits of one prompt (what a change of weights must move). */
function firstLogits(model: GPT, decoder: "js" | "tfjs"): Float32Array {
  let out = new Float32Array(0);
  generate(model, [[1, 2, 3]], {
    maxNewTokens: 2,
    temperature: 0,
    decoder,
    onLogits: (step, values) => {
      if (step === 1) out = values.slice();
    },
  });
  return out;
}

const moved = (a: Float32Array, b: Float32Array) =>
  Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));

const RAGGED = [[1, 2, 3, 4, 5, 6, 7], [9], [10, 11, 12]];

describe("expApprox (the JS step's exponential)", () => {
  it("is e^y within 1e-8 relative over [−87, 88], and clamps outside", () => {
    let worst = 0;
    for (let y = -87; y <= 88; y += 0.0137)
      worst = Math.max(worst, Math.abs(expApprox(y) / Math.exp(y) - 1));
    for (const y of [-1e-9, 0, 1e-9, 0.5 * Math.LN2, -0.5 * Math.LN2, 1, -1])
      worst = Math.max(worst, Math.abs(expApprox(y) / Math.exp(y) - 1));
    expect(worst).toBeLessThan(1e-8);
    expect(expApprox(-1000)).toBe(expApprox(-87));
    expect(expApprox(1000)).toBe(expApprox(88));
    expect(Number.isFinite(expApprox(1000))).toBe(true);
  });
});

// With the native addon (where it builds) a GPT-2 step runs there whole, and a Llama step's
// products of 4+ rows and its attention; without it, on the SIMD kernels and JS loops.
const addon = await initBackend({ backend: "wasm" }).then(() => activeNativeGemm());
const engines = addon
  ? [
      ["with the native addon", addon],
      ["on the SIMD kernels", undefined],
    ]
  : [["on the SIMD kernels", undefined]];

describe.each(engines as [string, NativeGemmModule | undefined][])(
  "the JS decode step %s",
  (_, engine) => {
    let gpt: GPT;
    let llama: GPT;
    let qwen: GPT;
    beforeAll(() => {
      setNativeGemm(engine);
      gpt = sharpened({ vocabSize: 64, blockSize: 24, nLayer: 2, nHead: 2, nEmbd: 32 }, 11);
      llama = sharpened(LLAMA, 5);
      qwen = sharpened(
        {
          ...LLAMA,
          architecture: "qwen2",
          nHead: 2,
          llama: {
            ...LLAMA.llama,
            nKvHead: 1,
            headDim: 16,
            ropeScaling: null,
            tieWordEmbeddings: true,
            oBias: false,
            mlpBias: false,
          },
        },
        6,
      );
    });
    afterAll(() => {
      for (const m of [gpt, llama, qwen]) m.dispose();
      setNativeGemm(addon);
    });

    it("GPT-2: a ragged batch past the window (re-encodes) gives tfjs' logits, tokens and logprobs, greedy and sampled", () => {
      const greedy = expectSame(gpt, RAGGED, { maxNewTokens: 60, temperature: 0 });
      expect(greedy.tokens.every((t) => t.length === 60)).toBe(true);
      expectSame(gpt, RAGGED, {
        maxNewTokens: 50,
        temperature: 1.1,
        topK: 30,
        topP: 0.95,
        seed: 4,
      });
      // six rows: the two-by-four kernel, and the rows after it
      expectSame(gpt, [...RAGGED, [5, 6], [7, 8, 9, 10, 11], [2]], {
        maxNewTokens: 30,
        temperature: 0,
      });
    });

    it("Llama (grouped-query attention, rotary with llama3 scaling, untied head, biases) and qwen2 (tied head) match tfjs past the window", () => {
      expectSame(llama, RAGGED, { maxNewTokens: 50, temperature: 0 });
      expectSame(llama, RAGGED, { maxNewTokens: 40, temperature: 0.9, seed: 2 });
      expectSame(qwen, RAGGED, { maxNewTokens: 50, temperature: 0 });
    });

    it("stops sequences at their stop ids as the tfjs step does (finished rows are not computed)", () => {
      const free = generate(gpt, RAGGED, { maxNewTokens: 20, temperature: 0, decoder: "tfjs" });
      const stopIds = [free.tokens[1]![2]!, free.tokens[2]![6]!];
      const out = expectSame(gpt, RAGGED, { maxNewTokens: 20, temperature: 0, stopIds });
      expect(out.finishReasons).toContain("stop");
    });

    it("widths that fill no SIMD vector (head size 4, width 12) and a GPT without biases", () => {
      const odd = sharpened(
        { vocabSize: 51, blockSize: 20, nLayer: 2, nHead: 3, nEmbd: 12, bias: false },
        3,
      );
      expectSame(odd, RAGGED, { maxNewTokens: 30, temperature: 0 });
      // five rows of an odd vocabulary: the last output column after the two-by-four kernel
      expectSame(odd, [...RAGGED, [4, 5], [6]], { maxNewTokens: 30, temperature: 0 });
      odd.dispose();
    });

    it.runIf(engine !== undefined)(
      "GPT-2 on the addon's whole step: a batch split across the pool's two threads matches tfjs",
      () => {
        // 24 rows of a width-128 model: past the step's split (4+ rows a thread, 2^22
        // multiply-adds), so each thread runs 12 rows through every layer
        const wide = sharpened(
          { vocabSize: 200, blockSize: 40, nLayer: 2, nHead: 4, nEmbd: 128 },
          8,
        );
        const prompts = Array.from({ length: 24 }, (_, b) =>
          Array.from({ length: 1 + (b % 7) }, (_, i) => (b * 31 + i * 7) % 200),
        );
        const threads = engine!.threads();
        try {
          for (const count of [2, 1]) {
            engine!.threads(count);
            expectSame(wide, prompts, { maxNewTokens: 45, temperature: 0 });
          }
        } finally {
          engine!.threads(threads);
          wide.dispose();
        }
      },
    );

    it("applies a LoRA adapter (every target, a layer subset, a strength) as tfjs does", () => {
      for (const [model, targets, r] of [
        [gpt, ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], 4],
        [llama, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 8],
      ] as const) {
        const base = firstLogits(model, "tfjs");
        const adapter = attachLora(model, {
          r,
          alpha: 2 * r,
          targetModules: [...targets] as never,
        });
        tf.tidy(() => {
          for (const b of adapter.b.values())
            b.assign(tf.randomNormal(b.shape, 0, 0.3, "float32", b.shape[1]));
        });
        expectSame(model, RAGGED, { maxNewTokens: 30, temperature: 0 });
        expect(moved(firstLogits(model, "js"), base)).toBeGreaterThan(1e-2);
        adapter.strength = 0.6;
        adapter.setActiveLayers([1]);
        expectSame(model, RAGGED, { maxNewTokens: 30, temperature: 0 });
        adapter.strength = 0;
        expectSame(model, RAGGED, { maxNewTokens: 12, temperature: 0 });
        model.lora = undefined;
        adapter.dispose();
      }
    });

    it("sees weights that changed between generate calls (training, baking)", () => {
      const model = sharpened({ vocabSize: 64, blockSize: 24, nLayer: 2, nHead: 2, nEmbd: 32 }, 2);
      const before = firstLogits(model, "js");
      tf.tidy(() => {
        const w = model.param("h.1.mlp.c_fc.weight");
        w.assign(tf.mul(w, -3));
      });
      expectSame(model, RAGGED, { maxNewTokens: 10, temperature: 0 });
      expect(moved(firstLogits(model, "js"), before)).toBeGreaterThan(1e-2);
      model.dispose();
    });

    it("runs no model.run per token (only the prefill and re-encodes), and keeps the tensor count flat", () => {
      const run = vi.spyOn(gpt, "run");
      try {
        generate(gpt, [[1, 2, 3, 4, 5]], { maxNewTokens: 70, temperature: 0, decoder: "js" });
        // the prompt, then re-encodes after new tokens 20, 33, 46 and 59 (generate.test.ts)
        expect(run.mock.calls.length).toBe(5);
      } finally {
        run.mockRestore();
      }
      generate(gpt, RAGGED, { maxNewTokens: 40, temperature: 0.8, decoder: "js" });
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++)
        generate(gpt, RAGGED, { maxNewTokens: 40, temperature: 0.8, seed: i, decoder: "js" });
      expect(tf.memory().numTensors).toBe(before);
    });

    it("a generate call inside another's onStep (same model) decodes on its own copy", () => {
      const inner: number[][][] = [];
      const outer = generate(gpt, [[1, 2, 3]], {
        maxNewTokens: 6,
        temperature: 0,
        decoder: "js",
        onStep: () => {
          inner.push(
            generate(gpt, [[4, 5]], { maxNewTokens: 5, temperature: 0, decoder: "js" }).tokens,
          );
        },
      });
      const alone = generate(gpt, [[4, 5]], { maxNewTokens: 5, temperature: 0, decoder: "tfjs" });
      for (const tokens of inner) expect(tokens).toEqual(alone.tokens);
      expect(outer.tokens).toEqual(
        generate(gpt, [[1, 2, 3]], { maxNewTokens: 6, temperature: 0, decoder: "tfjs" }).tokens,
      );
    });

    it("auto picks the JS step for small widths and batches; FORGE_DECODE and the option choose", () => {
      const fits = JS_DECODE_MAX_BATCH_WIDTH2 / 32 ** 2; // gpt's width is 32
      expect(jsDecodePays(gpt, 1)).toBe(true);
      expect(jsDecodePays(gpt, fits)).toBe(true);
      expect(jsDecodePays(gpt, fits + 1)).toBe(false);
      // forge-tiny's shape: batch 128 at most
      const tiny = {
        config: { ...gpt.config, vocabSize: 1024, blockSize: 256, nLayer: 4, nEmbd: 128 },
      } as GPT;
      expect(jsDecodePays(tiny, 128)).toBe(true);
      expect(jsDecodePays(tiny, 129)).toBe(false);
      const large = { config: { ...gpt.config, vocabSize: 50_257, nLayer: 12, nEmbd: 768 } } as GPT;
      expect(large.config.nEmbd ** 2).toBeLessThan(JS_DECODE_MAX_BATCH_WIDTH2);
      expect(JS_DECODE_MAX_PARAMETERS).toBeLessThan(124e6); // GPT-2 small stays on tfjs
      expect(jsDecodePays(large, 1)).toBe(false);
      const run = vi.spyOn(gpt, "run");
      const saved = process.env.FORGE_DECODE;
      try {
        process.env.FORGE_DECODE = "tfjs";
        generate(gpt, [[1, 2]], { maxNewTokens: 5, temperature: 0 });
        expect(run.mock.calls.length).toBe(5);
        run.mockClear();
        generate(gpt, [[1, 2]], { maxNewTokens: 5, temperature: 0, decoder: "js" });
        expect(run.mock.calls.length).toBe(1);
        run.mockClear();
        delete process.env.FORGE_DECODE;
        generate(gpt, [[1, 2]], { maxNewTokens: 5, temperature: 0 });
        expect(run.mock.calls.length).toBe(1);
      } finally {
        run.mockRestore();
        if (saved === undefined) delete process.env.FORGE_DECODE;
        else process.env.FORGE_DECODE = saved;
      }
    });

    it("rejects an unknown decoder, as an option or in FORGE_DECODE", () => {
      expect(() => generate(gpt, [[1]], { maxNewTokens: 1, decoder: "gpu" as never })).toThrow(
        'decoder must be one of auto, js, tfjs; got "gpu"',
      );
      const saved = process.env.FORGE_DECODE;
      try {
        process.env.FORGE_DECODE = "fast";
        expect(() => generate(gpt, [[1]], { maxNewTokens: 1 })).toThrow(
          'FORGE_DECODE must be one of auto, js, tfjs; got "fast"',
        );
      } finally {
        if (saved === undefined) delete process.env.FORGE_DECODE;
        else process.env.FORGE_DECODE = saved;
      }
    });
  },
);
