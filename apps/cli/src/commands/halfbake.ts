/**
 * `forge halfbake --model <bake> --alpha 0.5 --out <dir>`: a bake applied at strength α — merged
 * into the base weights (a model directory, the default) or, with `--adapter`, the adapter with
 * its scale — optionally on chosen blocks only (`--layers 0-1`). α = 0 is the base model.
 */
import { halfBake, MAX_HALFBAKE_ALPHA } from "@forge/baking";
import { describeBackend, initBackend } from "@forge/model";
import type { CAC } from "cac";
import { layersOption } from "../bake-run.js";
import { UsageError } from "../errors.js";
import { resolveModelLocation } from "../models.js";
import { numberOption } from "../options.js";

interface HalfBakeCommandOptions {
  model?: string;
  alpha?: string;
  layers?: string;
  adapter?: boolean;
  base?: string;
  out?: string;
  force?: boolean;
  json?: boolean;
}

async function halfbakeCommand(options: HalfBakeCommandOptions): Promise<number> {
  if (!options.model) throw new UsageError("--model <bake> is required: the bake output to apply");
  if (!options.out)
    throw new UsageError("--out <dir> is required: where the half-baked model goes");
  const alpha = numberOption(
    options.alpha,
    "alpha",
    (n) => n >= 0 && n <= MAX_HALFBAKE_ALPHA,
    `a number in [0, ${MAX_HALFBAKE_ALPHA}]`,
  );
  if (alpha === undefined) throw new UsageError("--alpha <a> is required: the strength, e.g. 0.5");
  const layers = options.layers !== undefined ? layersOption(options.layers, "layers") : undefined;
  const bakeDir = await resolveModelLocation(options.model);
  const backend = await initBackend({ wasmThreads: "auto" });
  if (!options.json) process.stderr.write(`${describeBackend(backend)}\n`);
  const result = await halfBake(bakeDir, {
    alpha,
    ...(layers ? { layers } : {}),
    form: options.adapter ? "adapter" : "merged",
    out: options.out,
    ...(options.force ? { force: true } : {}),
    ...(options.base ? { baseModel: options.base } : {}),
    flag: "--out",
  });
  const { record } = result;
  if (options.json) process.stdout.write(`${JSON.stringify({ out: result.out, ...record })}\n`);
  else
    process.stdout.write(
      `${record.form === "merged" ? "merged model" : "adapter"} at α = ${alpha}${layers ? ` on blocks ${layers.join(", ")}` : ""} (strength ${record.strength}) → ${result.out}\n`,
    );
  return 0;
}

export function register(cli: CAC): void {
  cli
    .command("", "Apply a bake at strength α: merged into the weights, or the adapter scaled")
    .option("--model <bake>", "The bake output (a LoRA adapter with forge.json)")
    .option("--alpha <a>", "Strength: 0 is the base model, 1 the bake, 0.5 half-baked")
    .option("--layers <list>", "Apply the adapter on these blocks only, e.g. 0-1 or 0,2")
    .option("--adapter", "Write the adapter with its scale instead of a merged model")
    .option("--base <dir>", "The base model, if the bake's forge.json names none or it moved")
    .option("--out <dir>", "Where the result goes")
    .option("--force", "Replace a previous halfbake output in --out")
    .option("--json", "Print a JSON summary")
    .example("forge halfbake --model bakes/pirate --alpha 0.5 --out bakes/pirate-half")
    .action((options: HalfBakeCommandOptions) => halfbakeCommand(options));
}
