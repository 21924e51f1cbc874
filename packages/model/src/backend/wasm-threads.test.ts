import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ModelError } from "../errors.js";
import type { probe } from "../testing/threads-probe.js";
import { loadNativeGemm } from "./native-gemm.js";
import { initBackend } from "./select.js";

const probeScript = path.join(import.meta.dirname, "../testing/threads-probe.ts");

/** The probe in a fresh process (one backend per process) under FORGE_WASM_THREADS/FORGE_NATIVE. */
function probeIn(threads: string, native: "0" | "1"): Awaited<ReturnType<typeof probe>> {
  const out = execFileSync("npx", ["tsx", probeScript], {
    env: { ...process.env, FORGE_WASM_THREADS: threads, FORGE_BACKEND: "", FORGE_NATIVE: native },
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

/** Whether this machine builds the native matmul (a compiler, Node's headers, OpenBLAS). */
const nativeAvailable = loadNativeGemm().module !== undefined;

function maxDifference(a: number[], b: number[]): number {
  expect(a).toHaveLength(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe("tfjs-backend-wasm's threaded SIMD build", () => {
  it("rejects a FORGE_WASM_THREADS that is not a thread count, naming what is accepted", async () => {
    for (const value of ["x", "0", "1.5", "9"]) {
      const error = await initBackend({ env: { FORGE_WASM_THREADS: value } }).catch(
        (e: unknown) => e,
      );
      expect(ModelError.isInstance(error)).toBe(true);
      expect((error as ModelError).code).toBe("E_BACKEND_THREADS");
      expect((error as Error).message).toBe(
        `FORGE_WASM_THREADS=${JSON.stringify(value)} is not a thread count; accepted: an integer from 1 to 8`,
      );
    }
  });

  it("runs on 2 threads in Node and gives the single-threaded build's logits, gradients and tokens", async () => {
    const threaded = probeIn("2", "0");
    expect(threaded).toMatchObject({
      backend: "wasm",
      threads: 2,
      wasmBuild: "threaded-simd",
      matmul: "xnnpack",
    });
    const single = probeIn("1", "0");
    expect(single).toMatchObject({ backend: "wasm", threads: 1, wasmBuild: "simd" });
    expect(single.matmul).toBe("xnnpack");
    expect(maxDifference(threaded.logits, single.logits)).toBeLessThan(1e-5);
    expect(Math.abs(threaded.loss - single.loss)).toBeLessThan(1e-6);
    expect(Object.keys(threaded.grads).sort()).toEqual(Object.keys(single.grads).sort());
    for (const [name, grad] of Object.entries(single.grads)) {
      expect(maxDifference(threaded.grads[name]!, grad), name).toBeLessThan(1e-5);
    }
    expect(threaded.generated).toEqual(single.generated);
  }, 600_000);

  it.skipIf(!nativeAvailable)(
    "with the native matmul, 2 threads run on its pool (wasm's single-threaded build) and give XNNPACK's logits, gradients and tokens",
    async () => {
      const native = probeIn("2", "1");
      expect(native).toMatchObject({
        backend: "wasm",
        threads: 2,
        wasmBuild: "simd",
        matmul: "openblas",
      });
      const single = probeIn("1", "0");
      expect(single.matmul).toBe("xnnpack");
      expect(maxDifference(native.logits, single.logits)).toBeLessThan(1e-5);
      expect(Math.abs(native.loss - single.loss)).toBeLessThan(1e-6);
      for (const [name, grad] of Object.entries(single.grads)) {
        expect(maxDifference(native.grads[name]!, grad), name).toBeLessThan(1e-5);
      }
      expect(native.generated).toEqual(single.generated);
    },
    600_000,
  );
});
