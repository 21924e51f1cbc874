/**
 * Half-baking: a LoRA adapter's strength α is continuous — θ + α·ΔW — so a bake can be applied
 * partially (0 < α < 1), fully (α = 1) or amplified (α > 1). `strengthCurve` measures a metric
 * at each α. `halfBake` writes a bake applied at strength α — merged into the weights, or the
 * adapter with its scale — optionally on a subset of its blocks (`parseLayers`).
 */
import path from "node:path";
import { type GPT, saveAdapter, saveMergedModel } from "@forge/model";
import { BakingError } from "./errors.js";
import { loadBaked } from "./run.js";

export interface StrengthPoint {
  alpha: number;
  value: number;
}

/**
 * `metric(model)` at each adapter strength α — on every block the adapter covers, or with
 * `layers` on those blocks only; the adapter's strength and blocks are restored afterwards.
 */
export async function strengthCurve(
  model: GPT,
  alphas: readonly number[],
  metric: (model: GPT) => number | Promise<number>,
  options: { layers?: readonly number[] } = {},
): Promise<StrengthPoint[]> {
  const adapter = model.lora;
  if (!adapter)
    throw new BakingError("E_INPUT", "a strength curve needs a model with a LoRA adapter attached");
  const original = adapter.strength;
  const originalLayers = adapter.activeLayers;
  if (options.layers)
    adapter.setActiveLayers(parseLayers(options.layers.join(","), "layers", model.config.nLayer));
  const points: StrengthPoint[] = [];
  try {
    for (const alpha of alphas) {
      adapter.strength = alpha;
      points.push({ alpha, value: await metric(model) });
    }
  } finally {
    adapter.strength = original;
    adapter.setActiveLayers(originalLayers);
  }
  return points;
}

/**
 * Block indices from a layer list: "0-1", "0,2", "1-3,5" → sorted, de-duplicated. With
 * `nLayer`, every index must be < nLayer. Errors name `source` (a flag or a field).
 */
export function parseLayers(spec: string, source = "layers", nLayer?: number): number[] {
  const out = new Set<number>();
  const bad = (why: string) =>
    new BakingError(
      "E_INPUT",
      `${source} must be block indices or ranges like 0-1 or 0,2; ${why} (got ${JSON.stringify(spec)})`,
    );
  const parts = String(spec)
    .split(",")
    .map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === "")) throw bad("an entry is empty");
  for (const part of parts) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) throw bad(`${JSON.stringify(part)} is not an index or a range`);
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (to < from) throw bad(`the range ${part} runs backwards`);
    if (to - from > 4096) throw bad(`the range ${part} is too long`);
    for (let i = from; i <= to; i++) out.add(i);
  }
  const layers = [...out].sort((a, b) => a - b);
  if (nLayer !== undefined && layers.some((l) => l >= nLayer))
    throw new BakingError(
      "E_INPUT",
      `${source}: the model has ${nLayer} blocks (0…${nLayer - 1}); no block ${layers.filter((l) => l >= nLayer).join(", ")}`,
    );
  return layers;
}

export interface HalfBakeOptions {
  /** The strength α: 0 is the base model, 1 the bake, in between a partial bake, > 1 amplified. */
  alpha: number;
  /** Apply the adapter only on these blocks (default: every block it covers). */
  layers?: readonly number[];
  /** "merged" (default): base + α·ΔW folded into one model; "adapter": the adapter with its scale. */
  form?: "merged" | "adapter";
  /** Where the result goes (claimed: never a directory forge did not make, nor an input). */
  out: string;
  /** Replace a previous result forge wrote at `out`. */
  force?: boolean;
  /** The base model, when the bake's forge.json does not name one (or it moved). */
  baseModel?: string;
  /** How the caller named `out`, for messages (e.g. "--out"). */
  flag?: string;
}

export interface HalfBakeResult {
  out: string;
  /** The forge.json written with the result. */
  record: Record<string, unknown>;
}

/** The most strength `halfBake` applies: beyond it the update dwarfs the weights. */
export const MAX_HALFBAKE_ALPHA = 16;

/**
 * Apply a bake at strength α (and optionally on a subset of its blocks): writes a merged model
 * (base + α · ΔW on the chosen blocks, loadable like any model) or the adapter itself with its
 * scale (`forge_strength`) and blocks (`layers_to_transform`), loadable like any bake. α = 0 is
 * the base model.
 */
export async function halfBake(bakeDir: string, options: HalfBakeOptions): Promise<HalfBakeResult> {
  const { alpha } = options;
  if (!(Number.isFinite(alpha) && alpha >= 0 && alpha <= MAX_HALFBAKE_ALPHA))
    throw new BakingError(
      "E_INPUT",
      `alpha must be a number in [0, ${MAX_HALFBAKE_ALPHA}]; got ${JSON.stringify(alpha)}`,
    );
  const form = options.form ?? "merged";
  if (form !== "merged" && form !== "adapter")
    throw new BakingError(
      "E_INPUT",
      `form must be "merged" or "adapter"; got ${JSON.stringify(form)}`,
    );
  const loaded = await loadBaked(
    bakeDir,
    options.baseModel !== undefined ? { baseModel: options.baseModel } : {},
  );
  const { model, tokenizer, record: source } = loaded;
  try {
    const adapter = model.lora;
    if (!adapter)
      throw new BakingError(
        "E_INPUT",
        `${bakeDir} is a full fine-tune (model.safetensors), not a LoRA bake: it has no adapter to scale`,
      );
    const layers = options.layers
      ? parseLayers(options.layers.join(","), "layers", model.config.nLayer)
      : undefined;
    const covered = adapter.config.layers;
    if (layers && covered && !layers.some((l) => covered.includes(l)))
      throw new BakingError(
        "E_INPUT",
        `layers: the bake's adapter covers blocks ${covered.join(", ")}; none of ${layers.join(", ")}`,
      );
    // strength composes: a half-baked adapter half-baked again is scaled twice
    adapter.strength = adapter.strength * alpha;
    if (layers) adapter.setActiveLayers(layers);
    const baseModel = options.baseModel ?? (source.baseModel as string | null) ?? null;
    const record: Record<string, unknown> = {
      kind: "halfbake",
      source: path.resolve(bakeDir),
      baseModel,
      alpha,
      strength: adapter.strength,
      layers: layers ?? covered ?? null,
      form,
      prompt: source.prompt ?? null,
      bake: source.bake ?? null,
      createdAt: new Date().toISOString(),
    };
    const output = {
      inputs: [bakeDir, baseModel ?? undefined],
      ...(options.force ? { force: true } : {}),
      ...(options.flag ? { flag: options.flag } : {}),
    };
    if (form === "merged")
      await saveMergedModel(model, options.out, {
        ...output,
        ...(tokenizer ? { tokenizer } : {}),
        forge: record,
      });
    else
      await saveAdapter(model, options.out, {
        ...output,
        ...(baseModel ? { baseModel } : {}),
        extraFiles: { "forge.json": record },
      });
    return { out: options.out, record };
  } finally {
    model.dispose();
  }
}
