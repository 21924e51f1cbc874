import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { ModelError } from "../errors.js";
import { describeBackend, initBackend } from "./select.js";

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
