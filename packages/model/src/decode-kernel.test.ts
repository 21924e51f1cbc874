import { describe, expect, it } from "vitest";
import { matmulKernel, matmulKernels, matmulPlain, wasmMemory } from "./decode-kernel.js";

describe("the decode step's matmul kernel", () => {
  it("computes y = x·wᵀ (strided rows, any width) as the plain loop and a float64 reference do", () => {
    const memory = wasmMemory(1 << 20);
    const kernel = matmulKernel(memory);
    expect(kernel).toBeDefined(); // Node ≥ 20 has WebAssembly SIMD
    const view = new Float32Array(memory.buffer);
    let seed = 1;
    const random = () => {
      seed = (seed * 16_807) % 2_147_483_647;
      return seed / 2_147_483_647 - 0.5;
    };
    for (const [n, m, rows, stride] of [
      [32, 20, 1, 32],
      [128, 7, 3, 128],
      [13, 5, 2, 13],
      [3, 4, 4, 3],
      [19, 6, 2, 40],
      [1, 3, 1, 1],
      [16, 9, 9, 16],
      [37, 5, 6, 37],
      [8, 3, 4, 24],
    ] as const) {
      const w = 0;
      const x = 4 * 1024;
      const y = 8 * 1024;
      const yPlain = 12 * 1024;
      for (let i = 0; i < 4 * 1024 * 4; i++) view[i] = random();
      kernel!(w * 4, x * 4, y * 4, n * 4, m, rows, stride * 4);
      matmulPlain(view, w, x, yPlain, n, m, rows, stride);
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < m; o++) {
          let s = 0;
          for (let i = 0; i < n; i++) s += view[x + r * n + i]! * view[w + o * stride + i]!;
          expect(Math.abs(view[y + r * m + o]! - s)).toBeLessThan(1e-5);
          expect(Math.abs(view[yPlain + r * m + o]! - s)).toBeLessThan(1e-5);
        }
    }
  });

  it("the two-by-four kernel matches the reference (row strides of w and y)", () => {
    const memory = wasmMemory(1 << 20);
    const { matmul2x4 } = matmulKernels(memory)!;
    const view = new Float32Array(memory.buffer);
    for (let i = 0; i < 16 * 1024; i++) view[i] = Math.sin(i * 0.37);
    for (const [n, m, rows, wStride, yStride] of [
      [4, 2, 4, 4, 2],
      [36, 6, 8, 36, 6],
      [128, 10, 12, 128, 11],
      [16, 4, 4, 40, 7],
    ] as const) {
      const [w, x, y] = [0, 6 * 1024, 12 * 1024];
      view.fill(-7, y, y + rows * yStride);
      matmul2x4(w * 4, x * 4, y * 4, n * 4, m, rows, wStride * 4, yStride * 4);
      for (let r = 0; r < rows; r++)
        for (let o = 0; o < yStride; o++) {
          if (o >= m) {
            expect(view[y + r * yStride + o]).toBe(-7); // outside the product: untouched
            continue;
          }
          let s = 0;
          for (let i = 0; i < n; i++) s += view[x + r * n + i]! * view[w + o * wStride + i]!;
          expect(Math.abs(view[y + r * yStride + o]! - s)).toBeLessThan(1e-4);
        }
    }
  });
});
