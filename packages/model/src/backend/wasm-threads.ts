/**
 * tfjs-backend-wasm's threaded SIMD build under Node.
 *
 * tfjs 4.22 ships `tfjs-backend-wasm-threaded-simd.wasm` (emscripten pthreads, XNNPACK's
 * pthreadpool) but never picks it in Node: its `WASM_HAS_MULTITHREAD_SUPPORT` flag returns
 * false when `IS_NODE` (tensorflow/tfjs#3830), and even when forced true its loader hands
 * emscripten a `blob:` URL for the pthread worker script, which Node's `worker_threads` refuses
 * (ERR_WORKER_PATH). The emscripten glue itself supports Node (it uses `worker_threads`).
 *
 * So forge registers the "wasm" backend itself with the threaded factory:
 * - the worker script (tfjs exports it as a string) is given as a `data:` URL wrapped in
 *   `new URL` (which Node accepts, as an ES module), prefixed with the `require` and
 *   `__filename` that emscripten's worker expects from CommonJS; nothing is written to disk;
 * - the pthreads load the main script from its file in the installed package;
 * - tfjs sizes its pool as min(requested, logical cores / 2) — it assumes two hyperthreads per
 *   core — so a 2-core machine would get one thread; forge answers emscripten's core-count
 *   import with 2 × the requested count through emscripten's `instantiateWasm` hook, so the
 *   requested count is what runs.
 * Everything else (kernels, memory, BackendWasm) is tfjs' own.
 */
import { createRequire } from "node:module";
import path from "node:path";
import * as tf from "@tensorflow/tfjs";

type WasmPackage = typeof import("@tensorflow/tfjs-backend-wasm");

interface EmscriptenModule {
  PThread?: { runningWorkers?: Array<{ unref?: () => void }> };
  cwrap(
    name: string,
    returnType: string | null,
    argTypes: string[],
  ): (...args: number[]) => unknown;
  tfjs?: Record<string, unknown>;
}

/** The part of the WebAssembly global used here (this package's lib has no DOM types). */
interface WebAssemblyApi {
  instantiate(bytes: Uint8Array, imports: unknown): Promise<{ instance: unknown; module: unknown }>;
}

type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

let threadCount = 1;

/** Threads the threaded build's pool actually runs (1 before it is initialised). */
export function wasmThreadCount(): number {
  return threadCount;
}

/** Where the installed tfjs-backend-wasm keeps its emscripten outputs. */
function wasmOut(): { dir: string; require: NodeJS.Require } {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("@tensorflow/tfjs-backend-wasm/package.json");
  return { dir: path.join(path.dirname(pkg), "wasm-out"), require: createRequire(pkg) };
}

/** The pthread worker script as a URL Node's worker_threads accepts. */
function workerUrl(dir: string, contents: string): URL {
  const preamble =
    `import { createRequire } from "node:module";` +
    `const require = createRequire(${JSON.stringify(path.join(dir, "worker.cjs"))});` +
    `const __filename = ${JSON.stringify(path.join(dir, "tfjs-backend-wasm-threaded-simd.worker.js"))};\n`;
  // tfjs keeps the script in a template literal whose "\n" escapes became newlines inside
  // string literals; escape them back, as tfjs' own loader does.
  return new URL(
    `data:text/javascript,${encodeURIComponent(preamble + contents.replace(/\n/g, "\\n"))}`,
  );
}

/**
 * Replace the registered "wasm" backend with the threaded SIMD build at `threads` threads.
 * Returns undefined when it initialised, or why it could not (the single-threaded build is
 * registered again then).
 */
export async function useThreadedWasm(
  wasm: WasmPackage,
  threads: number,
): Promise<string | undefined> {
  const original = tf.findBackendFactory("wasm");
  let factory: Factory;
  let workerSource: string;
  let dir: string;
  try {
    const out = wasmOut();
    dir = out.dir;
    factory = out.require(path.join(dir, "tfjs-backend-wasm-threaded-simd.js")) as Factory;
    workerSource = (
      out.require(path.join(dir, "tfjs-backend-wasm-threaded-simd.worker.js")) as {
        wasmWorkerContents: string;
      }
    ).wasmWorkerContents;
  } catch (error) {
    return `the threaded build could not be loaded: ${(error as Error).message.split("\n")[0]}`;
  }
  const mainScript = path.join(dir, "tfjs-backend-wasm-threaded-simd.js");
  const binary = path.join(dir, "tfjs-backend-wasm-threaded-simd.wasm");
  const worker = workerUrl(dir, workerSource);
  wasm.setThreadsCount(threads);

  tf.removeBackend("wasm");
  tf.registerBackend(
    "wasm",
    async () => {
      const { readFile } = await import("node:fs/promises");
      const bytes = await readFile(binary);
      const module = await factory({
        locateFile: (file: string, prefix: string) =>
          file.endsWith(".worker.js") ? worker : file.endsWith(".wasm") ? binary : prefix + file,
        mainScriptUrlOrBlob: mainScript,
        instantiateWasm: (
          imports: { env: Record<string, unknown> },
          receive: (instance: unknown, module: unknown) => void,
        ) => {
          // tfjs caps its pool at logical cores / 2; report enough cores for `threads`.
          imports.env.emscripten_num_logical_cores = () => 2 * threads;
          (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly.instantiate(
            bytes,
            imports,
          ).then(
            (result) => receive(result.instance, result.module),
            (error: unknown) => {
              throw error;
            },
          );
          return {};
        },
      });
      module.tfjs = {
        init: module.cwrap("init", null, []),
        initWithThreadsCount: module.cwrap("init_with_threads_count", null, ["number"]),
        getThreadsCount: module.cwrap("get_threads_count", "number", []),
        registerTensor: module.cwrap("register_tensor", null, ["number", "number", "number"]),
        disposeData: module.cwrap("dispose_data", null, ["number"]),
        dispose: module.cwrap("dispose", null, []),
      };
      // biome-ignore lint/suspicious/noExplicitAny: BackendWasm's module type is tfjs-internal
      const backend = new wasm.BackendWasm(module as any);
      // The pool's threads run for the life of the process; emscripten keeps running pthreads
      // referenced, which would keep a finished command from exiting.
      for (const running of module.PThread?.runningWorkers ?? []) running.unref?.();
      return backend;
    },
    2,
  );
  const ok = await tf.setBackend("wasm").catch(() => false);
  if (ok) {
    threadCount = wasm.getThreadsCount();
    return undefined;
  }
  tf.removeBackend("wasm");
  if (original) tf.registerBackend("wasm", original, 2);
  wasm.setThreadsCount(1);
  return "the threaded build failed to initialise";
}
