/**
 * The JS decode step's WebAssembly kernels, assembled here byte by byte (no toolchain):
 *
 *   matmul(w, x, y, nBytes, m, rows, wStride):  y[r, o] = Σᵢ x[r, i] · w[o, i]   (float32)
 *
 * for o < m, r < rows, i < n = nBytes / 4, with w's rows `wStride` bytes apart (n · 4 for a
 * dense [m, n] matrix), x [rows, n], y [rows, m], all byte offsets into the imported memory.
 * Rows go four at a time (one load of w's vector serves four rows, four f32x4 accumulators),
 * the rest one at a time (8 floats a turn into two accumulators); the last floats of a row
 * that do not fill a vector one at a time. `matmul2x4` (see `assembleBlocked`) takes two
 * outputs by four rows at a time where the shape allows.
 * Measured on the shared 2-core machine: ~5 G multiply-adds/s for a 128 × 512 matrix-vector
 * product (~0.5 G for the best plain JavaScript loop: V8 does not vectorise); 7–8 G at 8–32
 * rows, 10–11 G with `matmul2x4`.
 */

/** y = x·wᵀ over byte offsets in the instance's memory (see the module doc). */
export type MatMulKernel = (
  w: number,
  x: number,
  y: number,
  nBytes: number,
  m: number,
  rows: number,
  wStride: number,
) => void;

/** The parts of the WebAssembly API used here (this package's TypeScript libs do not declare it). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** WebAssembly memory pages (64 KiB). */
export const WASM_PAGE = 65_536;

/** A fresh memory of at least `bytes`. */
export function wasmMemory(bytes: number): WasmMemory {
  if (!wasmApi) throw new Error("WebAssembly is not available");
  return new wasmApi.Memory({ initial: Math.max(1, Math.ceil(bytes / WASM_PAGE)) });
}

const uleb = (value: number): number[] => {
  const out: number[] = [];
  let n = value;
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
};
const sleb = (value: number): number[] => {
  const out: number[] = [];
  let n = value;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && byte & 0x40)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
};
const name = (s: string): number[] => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const section = (id: number, bytes: number[]): number[] => [id, ...uleb(bytes.length), ...bytes];

// The instructions both kernels use (WebAssembly's binary encoding).
const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const get = (l: number) => [0x20, l]; // local.get
const set = (l: number) => [0x21, l]; // local.set
const i32 = (v: number) => [0x41, ...sleb(v)]; // i32.const
const ADD = 0x6a;
const AND = 0x71;
const MUL = 0x6c;
const SHL = 0x74;
const GE_U = 0x4f;
const GT_U = 0x4b;
const F32_ADD = 0x92;
const F32_MUL = 0x94;
const f32Load = [0x2a, 2, 0];
const simd = (op: number, ...immediates: number[]) => [0xfd, ...uleb(op), ...immediates];
const zero = simd(0x0c, ...new Array<number>(16).fill(0)); // v128.const 0
const add4 = simd(0xe4); // f32x4.add
const mul4 = simd(0xe6); // f32x4.mul
const lane = (k: number) => simd(0x1f, k); // f32x4.extract_lane
const BLOCK = [0x02, 0x40];
const LOOP = [0x03, 0x40];
const END = 0x0b;
const ZERO_F32 = [0x43, 0, 0, 0, 0]; // f32.const 0
const f32Store = (offset: number) => [0x38, 2, offset];
const v128Load = (offset: number) => simd(0x00, 4, offset); // align=16
const br = (depth: number) => [0x0c, depth];
const brIf = (depth: number) => [0x0d, depth];

function assemble(): Uint8Array {
  // params: 0 w, 1 x, 2 y, 3 nBytes, 4 m, 5 rows, 6 wStride
  // locals: 7 o, 8 r, 9 i, 10 wRow, 11 xRow, 12 yAt, 13 simdEnd (i32); 14 tail (f32);
  // 15, 16 accumulators (v128)
  const product = (acc: number, offset: number) => [
    ...get(acc),
    ...[...get(10), ...get(9), ADD, ...v128Load(offset)],
    ...[...get(11), ...get(9), ADD, ...v128Load(offset)],
    ...mul4,
    ...add4,
    ...set(acc),
  ];
  // four rows at a time: one load of w's vector serves four x rows
  // locals: 17 simdEnd16, 18 x1, 19 x2, 20 x3, 21 mBytes (i32); 22 t1, 23 t2, 24 t3, 25 ws
  // (f32); 26 wv, 27 acc2, 28 acc3 (v128); acc0, acc1, t0 are 15, 16, 14
  const fused = (acc: number, xAt: number) => [
    ...get(acc),
    ...get(26),
    ...[...get(xAt), ...get(9), ADD, ...v128Load(0)],
    ...mul4,
    ...add4,
    ...set(acc),
  ];
  const scalar = (t: number, xAt: number) => [
    ...get(t),
    ...get(25),
    ...[...get(xAt), ...get(9), ADD, ...f32Load],
    ...[F32_MUL, F32_ADD, ...set(t)],
  ];
  const sum = (acc: number, t: number) => [
    ...[...get(acc), ...lane(0), ...get(acc), ...lane(1), F32_ADD],
    ...[...get(acc), ...lane(2), F32_ADD, ...get(acc), ...lane(3), F32_ADD],
    ...[...get(t), F32_ADD],
  ];
  const fourRows = [
    ...[...BLOCK, ...LOOP], // while r + 4 <= rows
    ...[...get(8), ...i32(4), ADD, ...get(5), GT_U, ...brIf(1)],
    ...[...zero, ...set(15), ...zero, ...set(16), ...zero, ...set(27), ...zero, ...set(28)],
    ...[...ZERO_F32, ...set(14), ...ZERO_F32, ...set(22), ...ZERO_F32, ...set(23)],
    ...[...ZERO_F32, ...set(24), ...i32(0), ...set(9)],
    ...[...get(11), ...get(3), ADD, ...set(18)],
    ...[...get(18), ...get(3), ADD, ...set(19)],
    ...[...get(19), ...get(3), ADD, ...set(20)],
    ...[...BLOCK, ...LOOP], // for i < simdEnd16, 16 bytes a turn
    ...[...get(9), ...get(17), GE_U, ...brIf(1)],
    ...[...get(10), ...get(9), ADD, ...v128Load(0), ...set(26)],
    ...fused(15, 11),
    ...fused(16, 18),
    ...fused(27, 19),
    ...fused(28, 20),
    ...[...get(9), ...i32(16), ADD, ...set(9), ...br(0)],
    END,
    END,
    ...[...BLOCK, ...LOOP], // for i < nBytes, one float a turn
    ...[...get(9), ...get(3), GE_U, ...brIf(1)],
    ...[...get(10), ...get(9), ADD, ...f32Load, ...set(25)],
    ...scalar(14, 11),
    ...scalar(22, 18),
    ...scalar(23, 19),
    ...scalar(24, 20),
    ...[...get(9), ...i32(4), ADD, ...set(9), ...br(0)],
    END,
    END,
    ...[...get(12), ...sum(15, 14), ...f32Store(0)],
    ...[...get(12), ...get(21), ADD, ...sum(16, 22), ...f32Store(0)],
    ...[...get(12), ...get(21), ...i32(1), SHL, ADD, ...sum(27, 23), ...f32Store(0)],
    ...[...get(12), ...get(21), ...i32(3), MUL, ADD, ...sum(28, 24), ...f32Store(0)],
    ...[...get(12), ...get(21), ...i32(2), SHL, ADD, ...set(12)],
    ...[...get(20), ...get(3), ADD, ...set(11)],
    ...[...get(8), ...i32(4), ADD, ...set(8), ...br(0)],
    END,
    END,
  ];
  const body = [
    ...[...get(3), ...i32(-32), AND, ...set(13)],
    ...[...get(3), ...i32(-16), AND, ...set(17)],
    ...[...get(4), ...i32(2), SHL, ...set(21)],
    ...[...get(0), ...set(10), ...i32(0), ...set(7)],
    ...[...BLOCK, ...LOOP], // for o < m
    ...[...get(7), ...get(4), GE_U, ...brIf(1)],
    ...[...i32(0), ...set(8), ...get(1), ...set(11)],
    ...[...get(2), ...get(7), ...i32(2), SHL, ADD, ...set(12)],
    ...fourRows,
    ...[...BLOCK, ...LOOP], // for the remaining r < rows
    ...[...get(8), ...get(5), GE_U, ...brIf(1)],
    ...[...zero, ...set(15), ...zero, ...set(16), ...i32(0), ...set(9)],
    ...[...BLOCK, ...LOOP], // for i < simdEnd, 32 bytes a turn
    ...[...get(9), ...get(13), GE_U, ...brIf(1)],
    ...product(15, 0),
    ...product(16, 16),
    ...[...get(9), ...i32(32), ADD, ...set(9), ...br(0)],
    END,
    END,
    ...[...ZERO_F32, ...set(14)], // tail = 0
    ...[...BLOCK, ...LOOP], // for i < nBytes, one float a turn
    ...[...get(9), ...get(3), GE_U, ...brIf(1)],
    ...get(14),
    ...[...get(10), ...get(9), ADD, ...f32Load],
    ...[...get(11), ...get(9), ADD, ...f32Load],
    ...[F32_MUL, F32_ADD, ...set(14)],
    ...[...get(9), ...i32(4), ADD, ...set(9), ...br(0)],
    END,
    END,
    ...[...get(15), ...get(16), ...add4, ...set(15)],
    ...[...get(12), ...sum(15, 14), ...f32Store(0)], // f32.store
    ...[...get(11), ...get(3), ADD, ...set(11)],
    ...[...get(12), ...get(21), ADD, ...set(12)],
    ...[...get(8), ...i32(1), ADD, ...set(8), ...br(0)],
    END,
    END,
    ...[...get(10), ...get(6), ADD, ...set(10)],
    ...[...get(7), ...i32(1), ADD, ...set(7), ...br(0)],
    END,
    END,
    END,
  ];
  const code = [6, 7, I32, 1, F32, 2, V128, 5, I32, 4, F32, 3, V128, ...body];
  const blocked = assembleBlocked();
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
    ...section(1, [
      2,
      ...[0x60, 7, I32, I32, I32, I32, I32, I32, I32, 0],
      ...[0x60, 8, I32, I32, I32, I32, I32, I32, I32, I32, 0],
    ]),
    ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x00, 1]),
    ...section(3, [2, 0, 1]),
    ...section(7, [2, ...name("matmul"), 0x00, 0, ...name("matmul2x4"), 0x00, 1]),
    ...section(10, [2, ...uleb(code.length), ...code, ...uleb(blocked.length), ...blocked]),
  ]);
}

/**
 * matmul2x4(w, x, y, nBytes, m, rows, wStride, yStride): the same product for m even, rows a
 * multiple of 4 and n a multiple of 4, two outputs by four rows at a time (eight f32x4
 * accumulators: each vector load of w serves four rows, each of x two outputs); y's rows are
 * `yStride` bytes apart. The function body (locals and code).
 */
function assembleBlocked(): number[] {
  // params: 0 w, 1 x, 2 y, 3 nBytes, 4 m, 5 rows, 6 wStride, 7 yStride
  // locals: 8 o, 9 r, 10 i, 11 w0, 12 w1, 13 x0, 14 x1, 15 x2, 16 x3, 17 yAt (i32);
  // 18–21 accumulators of output o (rows r..r+3), 22–25 of output o+1, 26 wv0, 27 wv1, 28 xv
  const fma = (acc: number, wv: number) => [
    ...get(acc),
    ...get(wv),
    ...get(28),
    ...mul4,
    ...add4,
    ...set(acc),
  ];
  const row = (k: number) => [
    ...[...get(13 + k), ...get(10), ADD, ...v128Load(0), ...set(28)],
    ...fma(18 + k, 26),
    ...fma(22 + k, 27),
  ];
  const sum = (acc: number) => [
    ...[...get(acc), ...lane(0), ...get(acc), ...lane(1), F32_ADD],
    ...[...get(acc), ...lane(2), F32_ADD, ...get(acc), ...lane(3), F32_ADD],
  ];
  /** y[r + k][o] and y[r + k][o + 1]. */
  const store = (k: number) => {
    const at =
      k === 0 ? get(17) : [...get(17), ...get(7), ...(k === 1 ? [] : [...i32(k), MUL]), ADD];
    return [...at, ...sum(18 + k), ...f32Store(0), ...at, ...sum(22 + k), ...f32Store(4)];
  };
  const body = [
    ...[...get(0), ...set(11), ...i32(0), ...set(8)],
    ...[...BLOCK, ...LOOP], // for o < m, two a turn
    ...[...get(8), ...get(4), GE_U, ...brIf(1)],
    ...[...get(11), ...get(6), ADD, ...set(12)],
    ...[...i32(0), ...set(9), ...get(1), ...set(13)],
    ...[...get(2), ...get(8), ...i32(2), SHL, ADD, ...set(17)],
    ...[...BLOCK, ...LOOP], // for r < rows, four a turn
    ...[...get(9), ...get(5), GE_U, ...brIf(1)],
    ...[...get(13), ...get(3), ADD, ...set(14)],
    ...[...get(14), ...get(3), ADD, ...set(15)],
    ...[...get(15), ...get(3), ADD, ...set(16)],
    ...[18, 19, 20, 21, 22, 23, 24, 25].flatMap((acc) => [...zero, ...set(acc)]),
    ...[...i32(0), ...set(10)],
    ...[...BLOCK, ...LOOP], // for i < nBytes, 16 bytes a turn
    ...[...get(10), ...get(3), GE_U, ...brIf(1)],
    ...[...get(11), ...get(10), ADD, ...v128Load(0), ...set(26)],
    ...[...get(12), ...get(10), ADD, ...v128Load(0), ...set(27)],
    ...row(0),
    ...row(1),
    ...row(2),
    ...row(3),
    ...[...get(10), ...i32(16), ADD, ...set(10), ...br(0)],
    END,
    END,
    ...store(0),
    ...store(1),
    ...store(2),
    ...store(3),
    ...[...get(17), ...get(7), ...i32(2), SHL, ADD, ...set(17)],
    ...[...get(16), ...get(3), ADD, ...set(13)],
    ...[...get(9), ...i32(4), ADD, ...set(9), ...br(0)],
    END,
    END,
    ...[...get(12), ...get(6), ADD, ...set(11)],
    ...[...get(8), ...i32(2), ADD, ...set(8), ...br(0)],
    END,
    END,
    END,
  ];
  return [2, 10, I32, 11, V128, ...body];
}

let compiled: object | null | undefined;

/** The compiled module, or null where WebAssembly SIMD is not available. */
function kernelModule(): object | null {
  if (compiled === undefined) {
    try {
      const bytes = assemble();
      compiled = wasmApi?.validate(bytes) ? new wasmApi.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** y = x·wᵀ, two outputs by four rows at a time (see `assembleBlocked`). */
export type BlockedMatMulKernel = (
  w: number,
  x: number,
  y: number,
  nBytes: number,
  m: number,
  rows: number,
  wStride: number,
  yStride: number,
) => void;

/** The kernels bound to `memory`, or undefined without WebAssembly SIMD. */
export function matmulKernels(
  memory: WasmMemory,
): { matmul: MatMulKernel; matmul2x4: BlockedMatMulKernel } | undefined {
  const module = kernelModule();
  if (!module || !wasmApi) return undefined;
  const instance = new wasmApi.Instance(module, { env: { memory } });
  return {
    matmul: instance.exports.matmul as MatMulKernel,
    matmul2x4: instance.exports.matmul2x4 as BlockedMatMulKernel,
  };
}

/** The general kernel bound to `memory`, or undefined without WebAssembly SIMD. */
export function matmulKernel(memory: WasmMemory): MatMulKernel | undefined {
  return matmulKernels(memory)?.matmul;
}

/** The same product in plain JavaScript on a float32 view (offsets and stride in floats). */
export function matmulPlain(
  view: Float32Array,
  w: number,
  x: number,
  y: number,
  n: number,
  m: number,
  rows: number,
  wStride = n,
): void {
  for (let o = 0; o < m; o++) {
    const base = w + o * wStride;
    for (let r = 0; r < rows; r++) {
      const xb = x + r * n;
      let s0 = 0;
      let s1 = 0;
      let i = 0;
      for (; i + 1 < n; i += 2) {
        s0 += view[xb + i]! * view[base + i]!;
        s1 += view[xb + i + 1]! * view[base + i + 1]!;
      }
      if (i < n) s0 += view[xb + i]! * view[base + i]!;
      view[y + r * m + o] = s0 + s1;
    }
  }
}
