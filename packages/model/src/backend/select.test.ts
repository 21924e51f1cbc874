import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { ModelError } from "../errors.js";
import { autoWasmThreads, describeBackend, initBackend, resolveWasmThreads } from "./select.js";

describe("initBackend", () => {
  it("rejects an unknown FORGE_BACKEND naming the accepted values", async () => {
    const error = await initBackend({ env: { FORGE_BACKEND: "gpu" } }).catch((e: unknown) => e);
    expect(ModelError.isInstance(error)).toBe(true);
    expect((error as ModelError).code).toBe("E_BACKEND_UNKNOWN");
    expect((error as Error).message).toBe(
      'FORGE_BACKEND="gpu" is not a backend; accepted: tensorflow, wasm, cpu',
    );
  });

  it("falls through the backends in order and says why each faster one was skipped", async () => {
    const info = await initBackend({ env: {} });
    expect(tf.getBackend()).toBe(info.name);
    expect(info.forced).toBe(false);
    const names = info.attempts.map((a) => a.name);
    expect(["tensorflow", "wasm", "cpu"].slice(0, names.length)).toEqual(names);
    expect(info.attempts.at(-1)!.ok).toBe(true);
    for (const skipped of info.attempts.slice(0, -1)) {
      expect(skipped.ok).toBe(false);
      expect(skipped.reason).toBeTruthy();
    }
    if (info.attempts[0]!.ok === false) {
      // On machines where libtensorflow cannot be downloaded (this project's CI machines).
      expect(info.attempts[0]!.reason).toMatch(
        /tfjs-node is not installed|native addon was not built|tfjs-node failed to load/,
      );
    }
    expect(describeBackend(info)).toContain(`backend ${info.name} (auto`);
  });

  it("returns the same backend on later calls and refuses to switch", async () => {
    const info = await initBackend({ env: {} });
    await expect(initBackend({ env: {} })).resolves.toBe(info);
    const other = info.name === "cpu" ? "wasm" : "cpu";
    await expect(initBackend({ backend: other })).rejects.toMatchObject({
      code: "E_BACKEND_LOCKED",
    });
  });
});

describe("wasm threads", () => {
  it('"auto" (training commands) uses the idle cores — the cores less the whole part of the load — from 1 to 4', () => {
    expect(autoWasmThreads(0, 2)).toBe(2);
    expect(autoWasmThreads(0.9, 2)).toBe(2);
    expect(autoWasmThreads(1.02, 2)).toBe(1); // one other busy process
    expect(autoWasmThreads(7, 2)).toBe(1);
    expect(autoWasmThreads(0, 1)).toBe(1);
    expect(autoWasmThreads(0.5, 16)).toBe(4);
    expect(autoWasmThreads(13.5, 16)).toBe(3);
    expect(resolveWasmThreads("auto", {}).threads).toBe(autoWasmThreads());
    expect(resolveWasmThreads("auto", {}).explicit).toBe(false);
    expect(resolveWasmThreads("auto", { FORGE_WASM_THREADS: "1" })).toEqual({
      threads: 1,
      oneThreadReason: "FORGE_WASM_THREADS is 1",
      explicit: true,
    });
    expect(resolveWasmThreads("auto", { FORGE_WASM_THREADS: "3" }).threads).toBe(3);
  });

  it("short commands run one thread unless asked; a number overrides the environment", () => {
    expect(resolveWasmThreads(undefined, {})).toEqual({
      threads: 1,
      oneThreadReason:
        "one thread is the default for short commands (training commands use the idle cores)",
      explicit: false,
    });
    expect(resolveWasmThreads(undefined, { FORGE_WASM_THREADS: "2" }).threads).toBe(2);
    expect(resolveWasmThreads(1, { FORGE_WASM_THREADS: "2" })).toEqual({
      threads: 1,
      oneThreadReason: "wasmThreads is 1",
      explicit: true,
    });
    expect(() => resolveWasmThreads("auto", { FORGE_WASM_THREADS: "0" })).toThrow(
      'FORGE_WASM_THREADS="0" is not a thread count; accepted: an integer from 1 to 8',
    );
  });
});
