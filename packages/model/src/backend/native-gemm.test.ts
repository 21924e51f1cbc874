import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelError } from "../errors.js";
import { loadNativeGemm, type NativeGemmModule, parseNativeMode } from "./native-gemm.js";
import { initBackend } from "./select.js";
import { activeNativeGemm, setNativeGemm } from "./wasm-kernels.js";

const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-native-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Whether this machine builds the addon at all (a compiler, Node's headers, OpenBLAS). */
const available = loadNativeGemm().module !== undefined;

/** op(A)·op(B) in float64, batch by batch, with broadcasting of a batch-1 operand. */
function reference(
  a: Float32Array,
  b: Float32Array,
  batchA: number,
  batchB: number,
  m: number,
  n: number,
  k: number,
  transposeA: boolean,
  transposeB: boolean,
): Float64Array {
  const batch = Math.max(batchA, batchB);
  const out = new Float64Array(batch * m * n);
  for (let i = 0; i < batch; i++) {
    const ao = batchA === 1 ? 0 : i * m * k;
    const bo = batchB === 1 ? 0 : i * k * n;
    for (let r = 0; r < m; r++) {
      for (let c = 0; c < n; c++) {
        let sum = 0;
        for (let p = 0; p < k; p++) {
          const x = a[ao + (transposeA ? p * m + r : r * k + p)]!;
          const y = b[bo + (transposeB ? c * k + p : p * n + c)]!;
          sum += x * y;
        }
        out[i * m * n + r * n + c] = sum;
      }
    }
  }
  return out;
}

describe("FORGE_NATIVE", () => {
  it("accepts 0/1 (and off/on, false/true) or unset, and names what is accepted otherwise", () => {
    expect(parseNativeMode(undefined)).toBe("auto");
    expect(parseNativeMode(" ")).toBe("auto");
    expect(parseNativeMode("0")).toBe("off");
    expect(parseNativeMode("off")).toBe("off");
    expect(parseNativeMode("1")).toBe("required");
    expect(parseNativeMode("TRUE")).toBe("required");
    let error: unknown;
    try {
      parseNativeMode("yes please");
    } catch (e) {
      error = e;
    }
    expect(ModelError.isInstance(error)).toBe(true);
    expect((error as ModelError).code).toBe("E_BACKEND_UNKNOWN");
    expect((error as Error).message).toBe(
      'FORGE_NATIVE="yes please" is not understood; accepted: 0 (never use the native matmul), 1 (require it), or unset (use it where it builds)',
    );
  });

  it("off loads nothing; without a compiler, auto falls back with the reason and 1 is an error naming it", () => {
    expect(loadNativeGemm({ env: { FORGE_NATIVE: "0" } })).toEqual({ reason: "FORGE_NATIVE=0" });
    const cache = path.join(scratch, "no-compiler");
    const env = { FORGE_CACHE_DIR: cache, CXX: path.join(scratch, "missing", "c++") };
    const auto = loadNativeGemm({ env });
    expect(auto.module).toBeUndefined();
    expect(auto.reason).toBe(`no C++ compiler (${env.CXX}: not found; set CXX)`);
    // Nothing half-built is left in the cache.
    expect(readdirSync(path.join(cache, "native"))).toEqual([]);
    expect(() => loadNativeGemm({ env: { ...env, FORGE_NATIVE: "1" } })).toThrow(
      `FORGE_NATIVE=1 asks for the native OpenBLAS matmul, but it is unavailable: no C++ compiler (${env.CXX}: not found; set CXX)`,
    );
  });

  it("a compiler that cannot build the addon gives the compiler's error line", () => {
    const env = { FORGE_CACHE_DIR: path.join(scratch, "false-compiler"), CXX: "false" };
    const result = loadNativeGemm({ env });
    expect(result.module).toBeUndefined();
    expect(result.reason).toMatch(
      /^OpenBLAS did not link \(-l:libopenblas\.so\.0: .*; -lopenblas: /,
    );
  });
});

describe.skipIf(!available)("the native OpenBLAS matmul", () => {
  let native: NativeGemmModule;
  let previous: NativeGemmModule | undefined;

  beforeAll(async () => {
    await initBackend({ backend: "wasm" });
    previous = activeNativeGemm();
    const cache = path.join(scratch, "cache");
    const first = loadNativeGemm({ env: { FORGE_CACHE_DIR: cache }, mode: "required" });
    expect(first.compiled).toBe(true);
    // The second load finds it in the cache, named by the source's hash.
    const second = loadNativeGemm({ env: { FORGE_CACHE_DIR: cache }, mode: "required" });
    expect(second).toMatchObject({ compiled: false, library: first.library });
    expect(readdirSync(path.join(cache, "native"))).toEqual([path.basename(first.library!)]);
    native = second.module!;
    setNativeGemm(native);
  }, 120_000);

  afterAll(() => {
    native?.threads(previous?.threads() ?? 1);
    setNativeGemm(previous);
  });

  const cases: Array<{
    name: string;
    a: number[];
    b: number[];
    transposeA?: boolean;
    transposeB?: boolean;
  }> = [
    { name: "plain 2-D", a: [37, 53], b: [53, 29] },
    { name: "transposed A", a: [53, 37], b: [53, 29], transposeA: true },
    { name: "transposed B", a: [37, 53], b: [29, 53], transposeB: true },
    { name: "both transposed", a: [53, 37], b: [29, 53], transposeA: true, transposeB: true },
    { name: "a one-row column sum", a: [1, 300], b: [300, 70] },
    { name: "batched attention scores", a: [2, 3, 40, 16], b: [2, 3, 40, 16], transposeB: true },
    { name: "a shared right-hand side", a: [5, 33, 24], b: [24, 31] },
    { name: "a shared left-hand side", a: [17, 24], b: [4, 24, 9] },
    { name: "parallel split by rows", a: [256, 128], b: [128, 96] },
    { name: "parallel split by columns", a: [1, 512], b: [512, 1024] },
    // one row: a matrix-vector product (cblas_sgemv), B either way round
    { name: "a one-row product, transposed B", a: [1, 300], b: [70, 300], transposeB: true },
    {
      name: "parallel split by columns, transposed B",
      a: [1, 512],
      b: [1024, 512],
      transposeB: true,
    },
    { name: "one-row batch items", a: [4, 1, 64], b: [4, 64, 32] },
    { name: "parallel split by batch", a: [8, 64, 64], b: [8, 64, 64], transposeA: true },
    { name: "an empty inner dimension", a: [3, 0], b: [0, 4] },
  ];

  for (const threads of [1, 2]) {
    for (const c of cases) {
      it(`${c.name} on ${threads} thread${threads === 1 ? "" : "s"} matches a float64 reference`, () => {
        native.threads(threads);
        const a = tf.randomUniform(c.a, -1, 1, "float32", 3);
        const b = tf.randomUniform(c.b, -1, 1, "float32", 4);
        const before = tf.memory().numTensors;
        const product = tf.matMul(a, b, c.transposeA, c.transposeB);
        expect(tf.memory().numTensors).toBe(before + 1);
        const rankA = c.a.length;
        const rankB = c.b.length;
        const m = c.a[c.transposeA ? rankA - 1 : rankA - 2]!;
        const k = c.a[c.transposeA ? rankA - 2 : rankA - 1]!;
        const n = c.b[c.transposeB ? rankB - 2 : rankB - 1]!;
        const batchA = c.a.slice(0, -2).reduce((x, y) => x * y, 1);
        const batchB = c.b.slice(0, -2).reduce((x, y) => x * y, 1);
        const expected = reference(
          a.dataSync() as Float32Array,
          b.dataSync() as Float32Array,
          batchA,
          batchB,
          m,
          n,
          k,
          c.transposeA ?? false,
          c.transposeB ?? false,
        );
        const actual = product.dataSync();
        expect(actual.length).toBe(expected.length);
        let worst = 0;
        for (let i = 0; i < actual.length; i++) {
          worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
        }
        expect(worst).toBeLessThan(1e-4 * Math.sqrt(Math.max(k, 1)));
        tf.dispose([a, b, product]);
      });
    }
  }

  it("gives XNNPACK's product, and the tensor count stays flat over repeated products", () => {
    native.threads(2);
    const a = tf.randomUniform([3, 64, 48], -1, 1, "float32", 5);
    const b = tf.randomUniform([3, 80, 48], -1, 1, "float32", 6);
    const onNative = tf.matMul(a, b, false, true);
    setNativeGemm(undefined);
    const onXnnpack = tf.matMul(a, b, false, true);
    setNativeGemm(native);
    expect(tf.max(tf.abs(tf.sub(onNative, onXnnpack))).dataSync()[0]).toBeLessThan(1e-5);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) tf.tidy(() => tf.matMul(a, b, false, true).sum().dataSync());
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, onNative, onXnnpack]);
  });

  it("resizing the pool between products never loses a wake-up (200 resizes, each then a parallel product)", () => {
    const heap = new Uint8Array(3 * 4 * 512 * 512);
    for (let i = 0; i < 200; i++) {
      native.threads(1 + (i % 3));
      native.gemm(heap, 0, 4 * 512 * 512, 8 * 512 * 512, 1, 512, 512, 512, 0, 0, 0, 0, 0);
    }
    expect(native.threads()).toBe(2);
  }, 60_000);

  it("exp matches Math.exp within 2 ulp, with IEEE's answers at ±∞, NaN, overflow and underflow", () => {
    const values: number[] = [-Infinity, Infinity, Number.NaN, 88.8, 100, -104, -200, 0, -0];
    for (let i = 0; i <= 2001; i++) values.push(-87 + (175 * i) / 2001); // odd count: a tail
    const x = tf.tensor1d(values);
    const y = tf.exp(x).dataSync();
    expect(y[0]).toBe(0);
    expect(y[1]).toBe(Infinity);
    expect(y[2]).toBeNaN();
    expect(y[3]).toBe(Infinity);
    expect(y[4]).toBe(Infinity);
    expect(y[5]).toBe(0);
    expect(y[6]).toBe(0);
    expect(y[7]).toBe(1);
    expect(y[8]).toBe(1);
    let worst = 0;
    for (let i = 9; i < values.length; i++) {
      const exact = Math.exp(Math.fround(values[i]!));
      worst = Math.max(worst, Math.abs(y[i]! - exact) / exact);
    }
    expect(worst).toBeLessThan(2 * 2 ** -23);
    // The addon off: the stock kernel, to the same answers.
    setNativeGemm(undefined);
    const stock = tf.exp(x).dataSync();
    setNativeGemm(native);
    for (let i = 9; i < values.length; i++)
      expect(Math.abs(stock[i]! - y[i]!) / stock[i]!).toBeLessThan(3 * 2 ** -23);
    expect(() => native.exp(new Uint8Array(64), 0, 32, 9)).toThrow(
      "exp's operands lie outside the heap",
    );
    x.dispose();
  });

  it("GELU, its gradient and LayerNorm: vector bodies, tails and pool splits match float64", () => {
    // 2^18 + 13 elements: split across two threads, with a tail after the last 8 floats
    const n = 2 ** 18 + 13;
    const heap = new Uint8Array(6 * n * 4);
    const f = new Float32Array(heap.buffer);
    const [x, y, sig, dy, dx] = [0, n, 2 * n, 3 * n, 4 * n];
    for (let i = 0; i < n; i++) {
      f[x + i] = Math.fround(Math.sin(i * 0.37) * 6);
      f[dy + i] = Math.fround(Math.cos(i * 0.11));
    }
    const c = Math.sqrt(2 / Math.PI);
    const results: Float32Array[] = [];
    const threads = native.threads();
    try {
      for (const count of [2, 1]) {
        native.threads(count);
        native.gelu(heap, x * 4, y * 4, sig * 4, n);
        native.geluGrad(heap, dy * 4, x * 4, sig * 4, dx * 4, n);
        results.push(f.slice(y, y + n), f.slice(dx, dx + n));
      }
    } finally {
      native.threads(threads);
    }
    // the split changes nothing: each element is computed alone
    expect(results[0]).toEqual(results[2]);
    expect(results[1]).toEqual(results[3]);
    let worst = 0;
    for (let i = 0; i < n; i += 97) {
      const v = f[x + i]!;
      const sigma = 1 / (1 + Math.exp(-2 * c * (v + 0.044715 * v ** 3)));
      const slope = sigma + v * sigma * (1 - sigma) * 2 * c * (1 + 3 * 0.044715 * v * v);
      worst = Math.max(
        worst,
        Math.abs(f[y + i]! - v * sigma),
        Math.abs(f[dx + i]! - f[dy + i]! * slope),
      );
    }
    expect(worst).toBeLessThan(5e-6);

    // LayerNorm over 13 columns (a vector of 8 and a tail of 5), 3 rows, then its gradient
    const [rows, cols] = [3, 13];
    const values = Array.from({ length: rows * cols }, (_, i) =>
      Math.fround(Math.sin(i) * 3 + i / 7),
    );
    const gamma = Array.from({ length: cols }, (_, i) => Math.fround(1 + i / 10));
    const beta = Array.from({ length: cols }, (_, i) => Math.fround(i / 20 - 0.3));
    const grad = Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.cos(i)));
    const at = { x: 0, g: 64, b: 96, y: 128, h: 192, r: 256, dy: 264, dx: 328 };
    f.set(values, at.x);
    f.set(gamma, at.g);
    f.set(beta, at.b);
    f.set(grad, at.dy);
    native.layerNorm(
      heap,
      at.x * 4,
      at.g * 4,
      at.b * 4,
      at.y * 4,
      at.h * 4,
      at.r * 4,
      rows,
      cols,
      1,
      1e-5,
    );
    native.layerNormGrad(heap, at.dy * 4, at.g * 4, at.h * 4, at.r * 4, at.dx * 4, rows, cols);
    for (let r = 0; r < rows; r++) {
      const row = values.slice(r * cols, (r + 1) * cols);
      const mean = row.reduce((a, b) => a + b) / cols;
      const rstd = 1 / Math.sqrt(row.reduce((a, b) => a + (b - mean) ** 2, 0) / cols + 1e-5);
      const hat = row.map((v) => (v - mean) * rstd);
      const d = hat.map((_, j) => grad[r * cols + j]! * gamma[j]!);
      const meanD = d.reduce((a, b) => a + b) / cols;
      const meanDX = d.reduce((a, b, j) => a + b * hat[j]!, 0) / cols;
      for (let j = 0; j < cols; j++) {
        expect(f[at.y + r * cols + j]).toBeCloseTo(hat[j]! * gamma[j]! + beta[j]!, 5);
        expect(f[at.dx + r * cols + j]).toBeCloseTo((d[j]! - meanD - hat[j]! * meanDX) * rstd, 5);
      }
    }
  });

  it("refuses operands outside the heap and bad arguments with a RangeError, not a crash", () => {
    const heap = new Uint8Array(1024);
    expect(() => native.gemm(heap, 0, 0, 512, 1, 16, 16, 16, 0, 0, 0, 0, 0)).toThrow(
      "gemm's operands lie outside the heap",
    );
    expect(() => native.gemm(heap, 2, 0, 0, 1, 2, 2, 2, 0, 0, 0, 0, 0)).toThrow(
      "gemm's operands lie outside the heap",
    );
    expect(() => native.gemm(heap, -4, 0, 0, 1, 2, 2, 2, 0, 0, 0, 0, 0)).toThrow(
      "gemm's offsets and sizes must be non-negative integers",
    );
    expect(() => native.threads(0)).toThrow("threads takes an integer from 1 to 64");
    // attention: 1 row, 2 heads of 4 over 8 positions needs 2 · 4 · 8 floats of keys alone
    expect(() => native.attend(heap, 0, 8, 0, 0, 0, 0, 1, 2, 1, 4, 800, 3, 0.5)).toThrow(
      "attend's operands lie outside the heap",
    );
    expect(() => native.attend(heap, 0, 8, 0, 0, 0, 0, 1, 3, 2, 4, 8, 3, 0.5)).toThrow(
      "attend's shape is inconsistent",
    );
    // causal attention: 1 sequence of 8 positions × 2 heads of 4 needs 64 floats for each of
    // q, k, v, y and 128 of probabilities
    expect(() => native.attention(heap, 0, 256, 512, 768, 900, 1, 8, 2, 2, 4, 0.5)).toThrow(
      "attention's operands lie outside the heap",
    );
    expect(() => native.attention(heap, 0, 0, 0, 0, 0, 1, 0, 2, 2, 4, 0.5)).toThrow(
      "attention's shape is inconsistent",
    );
    // 3 query heads cannot share 2 key/value heads
    expect(() => native.attention(heap, 0, 0, 0, 0, 0, 1, 2, 3, 2, 4, 0.5)).toThrow(
      "attention's shape is inconsistent",
    );
    expect(() => native.attentionGrad(heap, 0, 0, 0, 0, 0, 0, 0, 1000, 1, 8, 2, 1, 4, 0.5)).toThrow(
      "attentionGrad's operands lie outside the heap",
    );
    // In bounds: a 2×2 product written where asked.
    const view = new Float32Array(heap.buffer);
    view.set([1, 2, 3, 4], 0);
    view.set([5, 6, 7, 8], 4);
    native.gemm(heap, 0, 16, 32, 1, 2, 2, 2, 0, 0, 0, 0, 0);
    expect(Array.from(view.subarray(8, 12))).toEqual([19, 22, 43, 50]);
  });

  it("decodeStep reads its plan from the heap, and refuses a bad plan, id or slot", () => {
    // no blocks: logits = LayerNorm(wte[id] + wpe[position]) · head, the head packed in panels
    // of 16 outputs ([in, 16], zero past the last); width 4, vocabulary 3, 2 positions
    const heap = new Uint8Array(4096);
    const view = new Float32Array(heap.buffer);
    const ints = new Int32Array(heap.buffer);
    let end = 0;
    const take = (floats: number) => {
      const at = end;
      end += floats * 4;
      return at;
    };
    const x = take(4);
    const h = take(4);
    const qkv = take(12);
    const att = take(4);
    const proj = take(4);
    const hidden = take(4);
    const low = take(0);
    const update = take(0);
    const logits = take(3);
    const starts = take(1);
    const ids = take(1);
    const positions = take(1);
    const wte = take(12);
    const wpe = take(8);
    const gain = take(4);
    const bias = take(4);
    const head = take(64);
    const shape = [1, 4, 1, 4, 2, 3, 4, 0, 0, 1e-5];
    const plan = Float64Array.from([
      ...shape,
      ...[x, h, qkv, att, proj, hidden, low, update, logits, starts, ids, positions],
      ...[wte, wpe, gain, bias, head],
    ]);
    view.set([1, 2, 3, 5], wte / 4 + 4); // token 1
    view.set([0, 0, 0, 1], wpe / 4 + 4); // position 1
    view.set([1, 1, 2, 2], gain / 4);
    view.set([0, 0.5, 0, 0], bias / 4);
    const w = [
      [1, 0, -1],
      [0, 1, 0],
      [2, 0, 1],
      [0, -1, 3],
    ]; // [in, out]
    for (let i = 0; i < 4; i++) view.set(w[i]!, head / 4 + i * 16);
    ints[ids / 4] = 1;
    ints[positions / 4] = 1;
    ints[starts / 4] = 0;
    native.decodeStep(heap, plan, 1);
    const e = [1, 2, 3, 6];
    const mean = e.reduce((a, b) => a + b) / 4;
    const sd = Math.sqrt(e.reduce((a, b) => a + (b - mean) ** 2, 0) / 4 + 1e-5);
    const n = e.map((v, c) => ((v - mean) / sd) * [1, 1, 2, 2][c]! + [0, 0.5, 0, 0][c]!);
    const expected = [0, 1, 2].map((o) => n.reduce((sum, v, i) => sum + v * w[i]![o]!, 0));
    const got = Array.from(view.subarray(logits / 4, logits / 4 + 3));
    for (let o = 0; o < 3; o++) expect(got[o]).toBeCloseTo(expected[o]!, 5);

    const bad = (change: (p: Float64Array) => void) => {
      const copy = plan.slice();
      change(copy);
      return copy;
    };
    expect(() => native.decodeStep(heap, new Float32Array(plan) as never, 1)).toThrow(
      "decodeStep's plan must be a Float64Array",
    );
    expect(() => native.decodeStep(heap, plan.subarray(0, 20), 1)).toThrow(
      "decodeStep's plan is too short",
    );
    // one block declared, none given
    expect(() =>
      native.decodeStep(
        heap,
        bad((p) => (p[7] = 1)),
        1,
      ),
    ).toThrow("decodeStep's plan has an inconsistent shape");
    expect(() =>
      native.decodeStep(
        heap,
        bad((p) => (p[26] = 4090)),
        1,
      ),
    ).toThrow("decodeStep's plan names memory outside the heap");
    expect(() =>
      native.decodeStep(
        heap,
        bad((p) => (p[22] = 2)),
        1,
      ),
    ).toThrow("decodeStep's plan names memory outside the heap");
    expect(() =>
      native.decodeStep(
        heap,
        bad((p) => (p[12] = 1.5)),
        1,
      ),
    ).toThrow("decodeStep's plan holds a bad offset or size at 12");
    expect(() => native.decodeStep(heap, plan, 2)).toThrow("decodeStep: the cache is full");
    ints[ids / 4] = 3;
    expect(() => native.decodeStep(heap, plan, 1)).toThrow(
      "decodeStep: row 0's token id or position is out of range",
    );
    ints[ids / 4] = 1;
    ints[starts / 4] = 2;
    expect(() => native.decodeStep(heap, plan, 1)).toThrow(
      "decodeStep: a row starts after the new token",
    );
  });
});
