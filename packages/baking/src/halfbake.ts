/**
 * Half-baking: a LoRA adapter's strength α is continuous — θ + α·ΔW — so a bake can be applied
 * partially (0 < α < 1), fully (α = 1) or amplified (α > 1). `strengthCurve` measures a metric
 * at each α.
 */
import type { GPT } from "@forge/model";
import { BakingError } from "./errors.js";

export interface StrengthPoint {
  alpha: number;
  value: number;
}

/** `metric(model)` at each adapter strength α; the adapter's strength is restored afterwards. */
export async function strengthCurve(
  model: GPT,
  alphas: readonly number[],
  metric: (model: GPT) => number | Promise<number>,
): Promise<StrengthPoint[]> {
  const adapter = model.lora;
  if (!adapter)
    throw new BakingError("E_INPUT", "a strength curve needs a model with a LoRA adapter attached");
  const original = adapter.strength;
  const points: StrengthPoint[] = [];
  try {
    for (const alpha of alphas) {
      adapter.strength = alpha;
      points.push({ alpha, value: await metric(model) });
    }
  } finally {
    adapter.strength = original;
  }
  return points;
}
