/**
 * Compute backend selection: native TensorFlow → wasm → pure-JS cpu, first that works.
 * `FORGE_BACKEND=tensorflow|wasm|cpu` (or `initBackend({ backend })`) forces one.
 * The wasm backend runs tfjs' single-threaded SIMD build by default and its threaded SIMD build
 * when asked for threads: `FORGE_WASM_THREADS=n` (n ≥ 2), or `wasmThreads: "auto"` — what
 * forge's training commands ask for — which uses the idle cores (at most 4). Where forge's
 * native OpenBLAS matmul builds (native-gemm.ts), products run on it, on the cores (at most 4)
 * unless a count is given, and wasm runs single-threaded.
 */
import { createRequire } from "node:module";
import os from "node:os";
import { pathToFileURL } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { ModelError } from "../errors.js";
import { loadNativeGemm, type NativeMode, parseNativeMode } from "./native-gemm.js";
import { installWasmKernels, setNativeGemm } from "./wasm-kernels.js";
import { useThreadedWasm, wasmThreadCount } from "./wasm-threads.js";

export const BACKEND_NAMES = ["tensorflow", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** One backend that was tried, and why it was or was not used. */
export interface BackendAttempt {
  name: BackendName;
  ok: boolean;
  /** Why the backend could not be used (absent when ok). */
  reason?: string;
}

export interface BackendInfo {
  /** The backend every tensor now runs on. */
  name: BackendName;
  /** True when FORGE_BACKEND or the `backend` option chose it. */
  forced: boolean;
  /** Every backend tried, in order, ending with the chosen one. */
  attempts: BackendAttempt[];
  /** Threads the backend computes with. */
  threads: number;
  /**
   * Which build of tfjs-backend-wasm runs (absent on other backends): "threaded-simd" (the
   * pthreads build over worker_threads) or "simd" (single-threaded).
   */
  wasmBuild?: "threaded-simd" | "simd";
  /** Why the threaded wasm build is not in use (absent when it is, or on other backends). */
  wasmThreadsReason?: string;
  /**
   * What runs the wasm backend's matrix products (absent on other backends): forge's native
   * OpenBLAS addon on `threads` threads, or XNNPACK inside wasm — with why the addon is not
   * in use (FORGE_NATIVE=0, no compiler, no OpenBLAS…).
   */
  matmul?: { engine: "openblas" | "xnnpack"; threads: number; library?: string; reason?: string };
  /** The tfjs version in use. */
  tfjsVersion: string;
}

export interface InitBackendOptions {
  /** Force one backend; overrides FORGE_BACKEND. */
  backend?: BackendName;
  /** Environment to read FORGE_BACKEND and FORGE_WASM_THREADS from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /**
   * Threads for the wasm backend. A number overrides FORGE_WASM_THREADS; "auto" defers to
   * FORGE_WASM_THREADS when it is set and otherwise uses `autoWasmThreads()` (the idle cores,
   * at most 4). Default 1: the single-threaded SIMD build. More runs tfjs' threaded SIMD build
   * (at most 8 threads, tfjs' pool). Where the native matmul is loaded (native-gemm.ts), wasm
   * runs single-threaded and the count sizes the matmul's pool instead: a number or
   * FORGE_WASM_THREADS as given, otherwise ("auto" or unset) the cores, at most 4. Measured on an idle 2-core machine, 2 threads train 1.7×
   * faster and decode batch 32 1.2× faster, batch 1 no faster, and start 0.4 s slower; when
   * another process keeps a core busy the pool's threads wait on each other and it is far
   * slower than one thread. So training commands ask for "auto", short ones run one thread.
   */
  wasmThreads?: number | "auto";
}

let current: BackendInfo | undefined;
let pending: Promise<BackendInfo> | undefined;

function parseBackendName(value: string, source: string): BackendName {
  const name = value.trim().toLowerCase();
  if ((BACKEND_NAMES as readonly string[]).includes(name)) return name as BackendName;
  throw new ModelError(
    "E_BACKEND_UNKNOWN",
    `${source}=${JSON.stringify(value)} is not a backend; accepted: ${BACKEND_NAMES.join(", ")}`,
  );
}

function describeNativeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string } | undefined)?.code;
  if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") {
    if (message.includes("@tensorflow/tfjs-node'") || message.includes('@tensorflow/tfjs-node"')) {
      return "@tensorflow/tfjs-node is not installed (it is an optional dependency)";
    }
  }
  // What tfjs-node throws when its install could not download libtensorflow.
  if (/native addon module \(tfjs_binding\.node\) can not be found/.test(message)) {
    return (
      "@tensorflow/tfjs-node is installed but its native addon was not built " +
      "(its install script could not download libtensorflow)"
    );
  }
  return `@tensorflow/tfjs-node failed to load: ${message.split("\n")[0]}`;
}

/**
 * Where to load `@tensorflow/tfjs-node` from. The application installs it if it wants native
 * TensorFlow (the forge CLI does, as an optional dependency; its install downloads
 * libtensorflow). Resolved from this package first, then from the application's entry script,
 * whose dependencies a strict layout (pnpm) hides from this package.
 */
function nativeBackendLocation(): string {
  // A variable specifier: the package is optional, so neither TypeScript nor the bundler may
  // resolve it at build time.
  const specifier = "@tensorflow/tfjs-node";
  for (const from of [import.meta.url, process.argv[1]]) {
    if (!from) continue;
    try {
      return pathToFileURL(createRequire(from).resolve(specifier)).href;
    } catch {
      // not installed there
    }
  }
  return specifier; // not found anywhere: importing it says so
}

async function tryTensorflow(): Promise<BackendAttempt> {
  try {
    await import(nativeBackendLocation());
  } catch (error) {
    return { name: "tensorflow", ok: false, reason: describeNativeFailure(error) };
  }
  if (!tf.findBackendFactory("tensorflow")) {
    return {
      name: "tensorflow",
      ok: false,
      reason: "@tensorflow/tfjs-node loaded but registered with a different copy of tfjs-core",
    };
  }
  const ok = await tf.setBackend("tensorflow");
  return ok
    ? { name: "tensorflow", ok: true }
    : { name: "tensorflow", ok: false, reason: "the tensorflow backend failed to initialise" };
}

async function tryWasm(
  threads: number,
  nativeThreads: number,
  oneThreadReason: string,
  wasm: WasmState,
  env: Record<string, string | undefined>,
  nativeMode: NativeMode,
): Promise<BackendAttempt> {
  // Throws only when FORGE_NATIVE=1 and the addon cannot be had.
  const native = loadNativeGemm({ env, mode: nativeMode });
  try {
    const wasmModule = await import("@tensorflow/tfjs-backend-wasm");
    installWasmKernels();
    setNativeGemm(native.module);
    if (native.module) {
      // The products are most of the work and run on the addon's pool; wasm's own threaded
      // build would only add workers that wait on each other between the small kernels.
      native.module.threads(nativeThreads);
      wasm.matmul = { engine: "openblas", threads: nativeThreads, library: native.library! };
      wasm.reason = nativeThreads > 1 ? "the native matmul runs on the threads" : oneThreadReason;
    } else if (threads > 1) {
      const reason = await useThreadedWasm(wasmModule, threads);
      if (reason) wasm.reason = reason;
      else wasm.build = "threaded-simd";
    } else {
      wasm.reason = oneThreadReason;
    }
    wasm.matmul ??= { engine: "xnnpack", threads: 0, reason: native.reason! };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return {
      name: "wasm",
      ok: false,
      reason: `@tensorflow/tfjs-backend-wasm failed to load: ${message}`,
    };
  }
  const ok = await tf.setBackend("wasm").catch(() => false);
  return ok
    ? { name: "wasm", ok: true }
    : {
        name: "wasm",
        ok: false,
        reason: "the wasm backend failed to initialise (WebAssembly unavailable?)",
      };
}

async function tryCpu(): Promise<BackendAttempt> {
  // @tensorflow/tfjs registers the cpu backend (and every gradient) when imported.
  const ok = await tf.setBackend("cpu");
  return ok ? { name: "cpu", ok: true } : { name: "cpu", ok: false, reason: "cpu backend failed" };
}

interface WasmState {
  build: "threaded-simd" | "simd";
  reason?: string;
  matmul?: BackendInfo["matmul"];
}

/** Threads the wasm backend runs with unless FORGE_WASM_THREADS says otherwise. */
export const DEFAULT_WASM_THREADS = 1;

/** The largest pool tfjs-backend-wasm's threaded build creates (its PTHREAD_POOL_SIZE). */
export const MAX_WASM_THREADS = 8;

/** The most threads forge picks by itself. */
export const MAX_AUTO_THREADS = 4;

/**
 * Threads `wasmThreads: "auto"` uses: the cores no other process keeps busy (the cores less the
 * whole part of the 1-minute load average), at least 1 and at most 4. The threaded build's
 * workers wait for each other at every kernel: on an idle 2-core machine 2 threads train 1.7×
 * faster, but with one other busy process they trained 2.3× slower than one thread and decoded
 * 10× slower (measured here), so busy cores are left alone.
 */
export function autoWasmThreads(
  load: number = os.loadavg()[0] ?? 0,
  cores: number = os.availableParallelism(),
): number {
  return Math.max(1, Math.min(MAX_AUTO_THREADS, cores - Math.floor(load)));
}

function parseWasmThreads(value: string | number, source: string): number {
  const n = typeof value === "number" ? value : Number(value.trim());
  if (Number.isInteger(n) && n >= 1 && n <= MAX_WASM_THREADS) return n;
  throw new ModelError(
    "E_BACKEND_THREADS",
    `${source}=${JSON.stringify(value)} is not a thread count; accepted: an integer from 1 to ${MAX_WASM_THREADS}`,
  );
}

/**
 * The wasm thread count for `wasmThreads` and the environment: a number wins, then
 * FORGE_WASM_THREADS, then "auto"'s `autoWasmThreads()`, else 1 — and, for one thread, why.
 */
export function resolveWasmThreads(
  wanted: InitBackendOptions["wasmThreads"],
  env: Record<string, string | undefined> = process.env,
): { threads: number; oneThreadReason: string; explicit: boolean } {
  const fromEnv = env.FORGE_WASM_THREADS?.trim()
    ? parseWasmThreads(env.FORGE_WASM_THREADS, "FORGE_WASM_THREADS")
    : undefined;
  const load = os.loadavg()[0] ?? 0;
  const cores = os.availableParallelism();
  const threads =
    wanted === "auto"
      ? (fromEnv ?? autoWasmThreads(load, cores))
      : wanted !== undefined
        ? parseWasmThreads(wanted, "wasmThreads")
        : (fromEnv ?? DEFAULT_WASM_THREADS);
  const oneThreadReason =
    wanted === 1
      ? "wasmThreads is 1"
      : fromEnv === 1
        ? "FORGE_WASM_THREADS is 1"
        : wanted === "auto"
          ? cores === 1
            ? "this machine has one core"
            : `the other cores are busy (load average ${load.toFixed(2)} on ${cores} cores)`
          : "one thread is the default for short commands (training commands use the idle cores)";
  return {
    threads,
    oneThreadReason,
    explicit: typeof wanted === "number" || fromEnv !== undefined,
  };
}

async function select(options: InitBackendOptions): Promise<BackendInfo> {
  const env = options.env ?? process.env;
  const {
    threads: wasmThreads,
    oneThreadReason,
    explicit,
  } = resolveWasmThreads(options.wasmThreads, env);
  const nativeMode = parseNativeMode(env.FORGE_NATIVE);
  const wasm: WasmState = { build: "simd" };
  // The native matmul's pool: the count asked for (a number, FORGE_WASM_THREADS), else the
  // cores, at most 4, for every command. Its threads sleep between products, so unlike the
  // wasm threaded build's they cost nothing when another process is busy (measured: training
  // with `yes` on the other core ran at the same speed on 1 and 2 threads).
  const nativeThreads = explicit
    ? wasmThreads
    : Math.min(MAX_AUTO_THREADS, os.availableParallelism());
  const TRY: Record<BackendName, () => Promise<BackendAttempt>> = {
    tensorflow: tryTensorflow,
    wasm: () => tryWasm(wasmThreads, nativeThreads, oneThreadReason, wasm, env, nativeMode),
    cpu: tryCpu,
  };
  let forcedName: BackendName | undefined = options.backend;
  if (forcedName) forcedName = parseBackendName(forcedName, "backend");
  else if (env.FORGE_BACKEND?.trim())
    forcedName = parseBackendName(env.FORGE_BACKEND, "FORGE_BACKEND");

  // tfjs prints advice to install tfjs-node through its logger; forge reports that itself.
  tf.env().set("PROD", true);

  const order: BackendName[] = forcedName ? [forcedName] : [...BACKEND_NAMES];
  const attempts: BackendAttempt[] = [];
  for (const name of order) {
    const attempt = await TRY[name]();
    attempts.push(attempt);
    if (attempt.ok) {
      await tf.ready();
      const info: BackendInfo = {
        name,
        forced: forcedName !== undefined,
        attempts,
        // Native TensorFlow uses every core; the pure-JS cpu backend one.
        threads: name === "tensorflow" ? os.availableParallelism() : 1,
        tfjsVersion: tf.version_core,
      };
      if (name === "wasm") {
        info.threads = wasm.build === "threaded-simd" ? wasmThreadCount() : 1;
        info.wasmBuild = wasm.build;
        if (wasm.reason) info.wasmThreadsReason = wasm.reason;
        const matmul = wasm.matmul!;
        if (matmul.engine === "xnnpack") matmul.threads = info.threads;
        else info.threads = matmul.threads;
        info.matmul = matmul;
      }
      return info;
    }
  }
  const last = attempts[attempts.length - 1]!;
  throw new ModelError(
    "E_BACKEND_UNAVAILABLE",
    forcedName
      ? `backend "${forcedName}" was forced (FORGE_BACKEND or --backend) but is unavailable: ${last.reason}`
      : `no compute backend could be initialised: ${attempts.map((a) => `${a.name}: ${a.reason}`).join("; ")}`,
  );
}

/**
 * Select and initialise the tfjs backend once per process. Later calls return the same
 * result; asking for a different backend after one is initialised is an error (tensors
 * already created live on the first one).
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  if (current) {
    const wanted = options.backend ?? (options.env ?? process.env).FORGE_BACKEND?.trim();
    if (wanted && parseBackendName(wanted, "backend") !== current.name) {
      throw new ModelError(
        "E_BACKEND_LOCKED",
        `backend "${current.name}" is already initialised in this process; cannot switch to "${wanted}"`,
      );
    }
    return current;
  }
  pending ??= select(options).then(
    (info) => {
      current = info;
      return info;
    },
    (error: unknown) => {
      pending = undefined;
      throw error;
    },
  );
  return pending;
}

/** The initialised backend, or undefined before `initBackend()`. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/** One line for logs: which backend, and why the faster ones were not used. */
export function describeBackend(info: BackendInfo): string {
  const skipped = info.attempts.filter((a) => !a.ok);
  const why = skipped.map((a) => `${a.name}: ${a.reason}`).join("; ");
  const how = info.forced ? "forced" : "auto";
  const build = info.wasmBuild ? `, ${info.wasmBuild} build` : "";
  const matmul = !info.matmul
    ? ""
    : info.matmul.engine === "openblas"
      ? "; matmul: native OpenBLAS"
      : `; matmul: XNNPACK (native OpenBLAS not used: ${info.matmul.reason})`;
  return `backend ${info.name} (${how}, ${info.threads} thread${info.threads === 1 ? "" : "s"}${build}${matmul})${why ? ` — not used: ${why}` : ""}`;
}
