/**
 * forge's native kernels: OpenBLAS' sgemm, and a few AVX2 loops, called on the tfjs wasm
 * backend's own memory.
 *
 * XNNPACK's wasm SIMD matmul tops out at ~20 GFLOP/s per core here (wasm has no FMA and no
 * 256-bit vectors); OpenBLAS with AVX2+FMA runs 3–5× faster on the same core. When a C++
 * compiler, Node's headers and OpenBLAS are on the machine, forge compiles
 * `native/forge_gemm.cc` (a Node-API addon of ~500 lines) once into its cache
 * (`$FORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/forge`, else `~/.cache/forge`; the file name
 * carries a hash of the source, the compiler flags and Node's ABI). Then the wasm backend's
 * `BatchMatMul` hands every float32 product to it — operands and result stay where tfjs put
 * them, in wasm memory, so nothing is copied — and so do `Exp` (the wasm kernel calls the C
 * library per element), training's GELU, LayerNorm and causal softmax (forward and backward,
 * one pass each where the compositions run 4–9 kernels), AdamW's update, and the JS decode
 * step's products, GELU and attention. Everything else still runs on wasm.
 *
 * `FORGE_NATIVE`: unset — use it where it builds, else XNNPACK, and say why; `0` — never;
 * `1` — require it (an error says what is missing). Linux only so far.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ModelError } from "../errors.js";

/** The addon's functions (see native/forge_gemm.cc). */
export interface NativeGemmModule {
  /**
   * C[i] = op(A[i])·op(B[i]) for i < batch; offsets are bytes into `heap`, strides floats
   * between batch items (0: shared). Flags are 0 or 1.
   */
  gemm(
    heap: Uint8Array,
    aOffset: number,
    bOffset: number,
    cOffset: number,
    batch: number,
    m: number,
    n: number,
    k: number,
    transposeA: number,
    transposeB: number,
    strideA: number,
    strideB: number,
    strideC: number,
  ): void;
  /** Set the pool's size (1–64) when given; returns it. */
  threads(count?: number): number;
  /** out[i] = e^in[i] for i < count (float32, byte offsets into `heap`). */
  exp(heap: Uint8Array, inOffset: number, outOffset: number, count: number): void;
  /** Causal softmax of scores [rows = B·H·T, tk] (row r sees keys ≤ r mod t + tk − t). */
  causalSoftmax(heap: Uint8Array, s: number, p: number, rows: number, t: number, tk: number): void;
  /** Softmax's gradient row by row: dx = p ⊙ (dy − Σ p ⊙ dy). */
  softmaxGrad(
    heap: Uint8Array,
    dy: number,
    p: number,
    dx: number,
    rows: number,
    cols: number,
  ): void;
  /** Training LayerNorm over the last axis: y, and x̂ and 1/σ per row for the gradient. */
  layerNorm(
    heap: Uint8Array,
    x: number,
    gamma: number,
    beta: number,
    y: number,
    xhat: number,
    rstd: number,
    rows: number,
    cols: number,
    hasBeta: number,
    epsilon: number,
  ): void;
  /** LayerNorm's input gradient: rstd·(d − mean(d) − x̂·mean(d·x̂)), d = dy·γ. */
  layerNormGrad(
    heap: Uint8Array,
    dy: number,
    gamma: number,
    xhat: number,
    rstd: number,
    dx: number,
    rows: number,
    cols: number,
  ): void;
  /**
   * One AdamW update into x2, m2, v2 (float32, byte offsets): constants β1, β2, 1−β1^t,
   * 1−β2^t, ε, lr, lr·decay, as optimizer.ts computes them.
   */
  adamw(
    heap: Uint8Array,
    x: number,
    m: number,
    v: number,
    g: number,
    x2: number,
    m2: number,
    v2: number,
    count: number,
    beta1: number,
    beta2: number,
    correction1: number,
    correction2: number,
    epsilon: number,
    lr: number,
    decay: number,
  ): void;
  /** Training tanh-GELU: y = x·σ(2u) and σ(2u) into s (float32, byte offsets). */
  gelu(heap: Uint8Array, x: number, y: number, s: number, count: number): void;
  /** Its gradient: dx = dy·(σ + x·σ(1−σ)·2c(1 + 3k·x²)), from x and the saved σ. */
  geluGrad(heap: Uint8Array, dy: number, x: number, s: number, dx: number, count: number): void;
  /**
   * One decode step's attention for every row (starts[r] ≥ 0) and head of the JS decode
   * step's cache: see native/forge_gemm.cc `Attend` for the layout. Offsets in bytes; `qRow`
   * in floats.
   */
  attend(
    heap: Uint8Array,
    q: number,
    qRow: number,
    keys: number,
    values: number,
    out: number,
    starts: number,
    batch: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    capacity: number,
    end: number,
    scale: number,
  ): void;
  /**
   * One token per row through a whole GPT-2 model for the JS decode step, its new keys and
   * values written at cache slot `slot`: `plan` is the layout src/fast-decode.ts `stepPlan`
   * builds (native/forge_gemm.cc `DecodeStep` reads it). Rows run split across the pool when
   * the batch is large enough.
   */
  decodeStep(heap: Uint8Array, plan: Float64Array, slot: number): void;
  /**
   * Causal self-attention on q and y [batch·time, heads·headDim] and k, v [batch·time,
   * kvHeads·headDim] (byte offsets): P = softmax(scale·Q·Kᵀ) per sequence and query head into
   * p [batch, heads, time, time], and Y = P·V.
   */
  attention(
    heap: Uint8Array,
    q: number,
    k: number,
    v: number,
    y: number,
    p: number,
    batch: number,
    time: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
  ): void;
  /** Its gradients into dq, dk, dv from dy, q, k, v and the saved p. */
  attentionGrad(
    heap: Uint8Array,
    dy: number,
    q: number,
    k: number,
    v: number,
    p: number,
    dq: number,
    dk: number,
    dv: number,
    batch: number,
    time: number,
    heads: number,
    kvHeads: number,
    headDim: number,
    scale: number,
  ): void;
}

export type NativeMode = "auto" | "off" | "required";

export interface NativeGemmLoad {
  /** The loaded addon, absent when it is off or could not be built. */
  module?: NativeGemmModule;
  /** The compiled addon's path (absent when not loaded). */
  library?: string;
  /** True when this call compiled it (false: found in the cache). */
  compiled?: boolean;
  /** Why it is not in use (absent when it is). */
  reason?: string;
}

const SOURCE_NAME = "forge_gemm.cc";
/** Link lines tried in order; the first that links wins. */
const BLAS_LINK_LINES = [["-l:libopenblas.so.0"], ["-lopenblas"]];

/** FORGE_NATIVE's value as a mode; anything else is E_BACKEND_UNKNOWN naming what is accepted. */
export function parseNativeMode(value: string | undefined): NativeMode {
  const v = value?.trim().toLowerCase();
  if (!v) return "auto";
  if (v === "0" || v === "off" || v === "false") return "off";
  if (v === "1" || v === "on" || v === "true") return "required";
  throw new ModelError(
    "E_BACKEND_UNKNOWN",
    `FORGE_NATIVE=${JSON.stringify(value)} is not understood; accepted: 0 (never use the native matmul), 1 (require it), or unset (use it where it builds)`,
  );
}

/** forge's cache root: FORGE_CACHE_DIR, else $XDG_CACHE_HOME/forge, else ~/.cache/forge. */
export function forgeCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.FORGE_CACHE_DIR?.trim()) return path.resolve(env.FORGE_CACHE_DIR);
  return path.join(env.XDG_CACHE_HOME?.trim() || path.join(os.homedir(), ".cache"), "forge");
}

/** The addon's source: beside dist/ when published, two levels up from src/backend in the repo. */
function sourcePath(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.resolve(here, "../native", SOURCE_NAME),
    path.resolve(here, "../../native", SOURCE_NAME),
  ];
  return candidates.find((p) => existsSync(p));
}

function firstLine(error: unknown): string {
  const e = error as { stderr?: Buffer | string; message?: string; code?: string };
  if (e.code === "ENOENT") return "not found";
  const text = (e.stderr?.toString() || e.message || String(error)).trim();
  const line = text.split("\n").find((l) => /error/i.test(l)) ?? text.split("\n")[0] ?? "";
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

function compile(
  compiler: string,
  source: string,
  include: string,
  target: string,
): { ok: true } | { ok: false; reason: string } {
  const failures: string[] = [];
  for (const link of BLAS_LINK_LINES) {
    const temporary = `${target}.${process.pid}.${Date.now()}.tmp`;
    try {
      execFileSync(
        compiler,
        [
          "-O2",
          "-std=c++17",
          "-shared",
          "-fPIC",
          "-pthread",
          `-I${include}`,
          source,
          "-o",
          temporary,
          ...link,
        ],
        { stdio: ["ignore", "ignore", "pipe"], timeout: 120_000 },
      );
      renameSync(temporary, target);
      return { ok: true };
    } catch (error) {
      // Only the temporary this attempt created is removed.
      rmSync(temporary, { force: true });
      failures.push(`${link.join(" ")}: ${firstLine(error)}`);
      if ((error as { code?: string }).code === "ENOENT") {
        return { ok: false, reason: `no C++ compiler (${compiler}: not found; set CXX)` };
      }
    }
  }
  return { ok: false, reason: `OpenBLAS did not link (${failures.join("; ")})` };
}

/**
 * Find, build if needed, and load the native matmul. Never throws in "auto" mode (the reason
 * comes back instead); in "required" mode a failure is E_BACKEND_UNAVAILABLE naming what is missing.
 */
export function loadNativeGemm(
  options: { env?: Record<string, string | undefined>; mode?: NativeMode } = {},
): NativeGemmLoad {
  const env = options.env ?? process.env;
  const mode = options.mode ?? parseNativeMode(env.FORGE_NATIVE);
  if (mode === "off") return { reason: "FORGE_NATIVE=0" };
  const result = tryLoad(env);
  if (!result.module && mode === "required") {
    throw new ModelError(
      "E_BACKEND_UNAVAILABLE",
      `FORGE_NATIVE=1 asks for the native OpenBLAS matmul, but it is unavailable: ${result.reason}`,
    );
  }
  return result;
}

function tryLoad(env: Record<string, string | undefined>): NativeGemmLoad {
  if (process.platform !== "linux") {
    return {
      reason: `the native matmul is built on Linux only so far (this is ${process.platform})`,
    };
  }
  const source = sourcePath();
  if (!source) return { reason: `${SOURCE_NAME} is missing from @forge/model's files` };
  const include = path.resolve(path.dirname(process.execPath), "../include/node");
  if (!existsSync(path.join(include, "node_api.h"))) {
    return { reason: `Node's headers are not at ${include} (node_api.h)` };
  }
  const compiler = env.CXX?.trim() || "c++";
  const text = readFileSync(source);
  const key = createHash("sha256")
    .update(text)
    .update(
      JSON.stringify([compiler, BLAS_LINK_LINES, process.versions.modules, process.arch, "v1"]),
    )
    .digest("hex")
    .slice(0, 16);
  const directory = path.join(forgeCacheDir(env), "native");
  const target = path.join(directory, `forge_gemm-${key}.node`);
  const load = (): NativeGemmModule => createRequire(import.meta.url)(target) as NativeGemmModule;
  if (existsSync(target)) {
    try {
      return { module: load(), library: target, compiled: false };
    } catch {
      // A cached addon that no longer loads (its OpenBLAS was removed): build it again.
    }
  }
  try {
    mkdirSync(directory, { recursive: true });
  } catch (error) {
    return { reason: `cannot create the cache directory ${directory}: ${firstLine(error)}` };
  }
  const built = compile(compiler, source, include, target);
  if (!built.ok) return { reason: built.reason };
  try {
    return { module: load(), library: target, compiled: true };
  } catch (error) {
    return { reason: `the compiled addon ${target} did not load: ${firstLine(error)}` };
  }
}
