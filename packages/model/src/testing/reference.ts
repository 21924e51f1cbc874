/**
 * An independent Float64 forward pass of the GPT-2 decoder on plain arrays (test support): it
 * shares nothing with gpt.ts but the parameter names.
 */
export type Weights = Map<string, { shape: number[]; data: Float64Array }>;

export interface ReferenceConfig {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  vocabSize: number;
  eps: number;
  bias: boolean;
}

function layerNorm(x: Float64Array, w: Weights, name: string, c: ReferenceConfig): Float64Array {
  const g = w.get(`${name}.weight`)!.data;
  const b = c.bias ? w.get(`${name}.bias`)!.data : new Float64Array(x.length);
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  variance /= x.length;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++)
    out[i] = ((x[i]! - mean) / Math.sqrt(variance + c.eps)) * g[i]! + b[i]!;
  return out;
}

function linear(x: Float64Array, w: Weights, name: string, c: ReferenceConfig): Float64Array {
  const { shape, data } = w.get(`${name}.weight`)!;
  const [rows, cols] = shape as [number, number];
  const out = new Float64Array(cols);
  if (c.bias) out.set(w.get(`${name}.bias`)!.data);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) out[j]! += x[i]! * data[i * cols + j]!;
  return out;
}

const gelu = (v: number) =>
  0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** Logits [T][V] of one sequence. */
export function referenceForward(ids: number[], w: Weights, c: ReferenceConfig): number[][] {
  const C = c.nEmbd;
  const hs = C / c.nHead;
  const wte = w.get("wte.weight")!.data;
  const wpe = w.get("wpe.weight")!.data;
  let xs = ids.map((id, t) =>
    Float64Array.from({ length: C }, (_, j) => wte[id * C + j]! + wpe[t * C + j]!),
  );
  for (let l = 0; l < c.nLayer; l++) {
    const qkv = xs.map((x) =>
      linear(layerNorm(x, w, `h.${l}.ln_1`, c), w, `h.${l}.attn.c_attn`, c),
    );
    const attended = xs.map((_, t) => {
      const y = new Float64Array(C);
      for (let h = 0; h < c.nHead; h++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let d = 0; d < hs; d++) dot += qkv[t]![h * hs + d]! * qkv[s]![C + h * hs + d]!;
          scores.push(dot / Math.sqrt(hs));
        }
        const max = Math.max(...scores);
        const e = scores.map((v) => Math.exp(v - max));
        const total = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++)
          for (let d = 0; d < hs; d++)
            y[h * hs + d]! += (e[s]! / total) * qkv[s]![2 * C + h * hs + d]!;
      }
      return linear(y, w, `h.${l}.attn.c_proj`, c);
    });
    xs = xs.map((x, t) => x.map((v, j) => v + attended[t]![j]!));
    xs = xs.map((x) => {
      const hidden = linear(layerNorm(x, w, `h.${l}.ln_2`, c), w, `h.${l}.mlp.c_fc`, c).map(gelu);
      const out = linear(hidden, w, `h.${l}.mlp.c_proj`, c);
      return x.map((v, j) => v + out[j]!);
    });
  }
  return xs.map((x) => {
    const h = layerNorm(x, w, "ln_f", c);
    return Array.from({ length: c.vocabSize }, (_, v) => {
      let dot = 0;
      for (let j = 0; j < C; j++) dot += h[j]! * wte[v * C + j]!;
      return dot;
    });
  });
}
