/**
 * Training elsewhere (docs/scale-out.md): `forge export-bake <bake-dir> --format jsonl` writes a
 * bake's student inputs, trajectories and teacher top-K for a PyTorch/TRL distillation job;
 * `forge import-adapter <peft-dir> --out <dir>` installs the PEFT adapter it returns as a bake.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  EXPORT_SCHEMA,
  exportRecords,
  importAdapter,
  readBakeFiles,
  streamExport,
  tokenizerHash,
  writeExport,
} from "@forge/baking";
import { initBackend } from "@forge/model";
import type { CAC } from "cac";
import { UsageError } from "../errors.js";
import { loadBase, resolveModelLocation } from "../models.js";
import { ProgressBar } from "../progress.js";

interface ExportOptions {
  format?: string;
  out?: string;
  topK?: string | number;
  model?: string;
  force?: boolean;
}

/** Whether `file` is an export forge wrote (its first line is an export header). */
function isForgeExport(file: string): boolean {
  try {
    const first = readFileSync(file, "utf8").split("\n", 1)[0]!;
    return (JSON.parse(first) as { schema?: unknown }).schema === EXPORT_SCHEMA;
  } catch {
    return false;
  }
}

async function exportCommand(dir: string | undefined, options: ExportOptions): Promise<number> {
  if (dir === undefined)
    throw new UsageError("forge export-bake needs a bake directory: forge export-bake <bake-dir>");
  const format = options.format ?? "jsonl";
  if (format !== "jsonl")
    throw new UsageError(`--format ${format} is not supported; accepted: jsonl`);
  const k = options.topK === undefined ? undefined : Number(options.topK);
  if (k !== undefined && (!Number.isInteger(k) || k < 1))
    throw new UsageError(`--top-k must be a positive integer; got ${options.topK}`);
  if (options.out !== undefined && existsSync(options.out)) {
    if (!isForgeExport(options.out))
      throw new UsageError(
        `--out ${options.out} already exists and is not a forge export; forge never replaces what it did not create: choose another --out`,
      );
    if (!options.force)
      throw new UsageError(
        `--out ${options.out} holds a previous export; pass --force to replace it`,
      );
  }
  if (!existsSync(path.join(dir, "forge.json")))
    throw new UsageError(`${dir} is not a bake output: forge.json is missing`);
  const record = JSON.parse(readFileSync(path.join(dir, "forge.json"), "utf8")) as {
    baseModel?: string | null;
  };
  const modelDir =
    options.model !== undefined
      ? await resolveModelLocation(options.model)
      : (record.baseModel ?? undefined);
  if (!modelDir)
    throw new UsageError(`${dir}/forge.json names no base model; give it with --model <dir>`);
  await initBackend();
  const { model, tokenizer } = await loadBase(modelDir);
  try {
    const bake = await readBakeFiles(dir, model.config.vocabSize);
    const bar = new ProgressBar("teacher top-K", {
      total: bake.trajectories.length,
      unit: "trajectories",
    });
    const records = exportRecords(bake, model, tokenizer, {
      ...(k !== undefined ? { k } : {}),
      tokenizerSha256: await tokenizerHash(modelDir),
      onProgress: (done) => bar.update(done),
    });
    bar.stop();
    if (options.out === undefined) await streamExport(process.stdout, records);
    else {
      await writeExport(options.out, records);
      const header = records[0];
      process.stderr.write(
        `${header.trajectories} trajectories, top-${header.k} (${header.topKSource}) → ${options.out}\n`,
      );
    }
    return 0;
  } finally {
    model.dispose();
  }
}

interface ImportOptions {
  out?: string;
  bake?: string;
  model?: string;
  force?: boolean;
  json?: boolean;
}

async function importCommand(peftDir: string | undefined, options: ImportOptions): Promise<number> {
  if (peftDir === undefined)
    throw new UsageError(
      "forge import-adapter needs a PEFT adapter directory: forge import-adapter <peft-dir> --out <dir>",
    );
  if (!options.out) throw new UsageError("--out <dir> is required: where the imported bake goes");
  let fromBake: { dir: string; record: Record<string, unknown> } | undefined;
  if (options.bake !== undefined) {
    const file = path.join(options.bake, "forge.json");
    if (!existsSync(file))
      throw new UsageError(`--bake ${options.bake} is not a bake output: forge.json is missing`);
    fromBake = {
      dir: options.bake,
      record: JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>,
    };
  }
  const base =
    options.model !== undefined
      ? await resolveModelLocation(options.model)
      : ((fromBake?.record.baseModel as string | null | undefined) ?? undefined);
  if (!base)
    throw new UsageError(
      "give the base model: --model <dir> (or --bake <bake-dir>, whose forge.json names it)",
    );
  await initBackend();
  const { model } = await loadBase(base);
  try {
    const result = await importAdapter(peftDir, model, {
      out: options.out,
      baseModel: path.resolve(base),
      ...(fromBake ? { fromBake } : {}),
      ...(options.force ? { force: true } : {}),
    });
    const summary = {
      out: result.out,
      r: result.r,
      alpha: result.alpha,
      targetModules: result.targetModules,
      layers: result.layers,
      tensors: result.tensors,
      baseModel: path.resolve(base),
    };
    process.stdout.write(
      options.json
        ? `${JSON.stringify(summary, null, 2)}\n`
        : `imported a LoRA adapter (r ${result.r}, ${result.targetModules.join(", ")} on ${result.layers.length} blocks) as a bake in ${result.out}\n`,
    );
    return 0;
  } finally {
    model.dispose();
  }
}

export function registerExport(cli: CAC): void {
  cli
    .command(
      "[bake-dir]",
      "Export a bake for distributed training: student input, trajectory and teacher top-K per record (JSONL)",
    )
    .option("--format <format>", "Output format: jsonl (the only one)")
    .option("--out <file>", "Write to this file (default: stdout)")
    .option(
      "--top-k <K>",
      "Teacher log-probabilities per position (default: the rollout's cached K, else 20; recomputed with the teacher when above the cache)",
    )
    .option("--model <dir>", "The base model (default: the one the bake's forge.json names)")
    .option("--force", "Replace a previous export at --out")
    .example("forge export-bake baked/pirate --format jsonl --out pirate.jsonl")
    .action((dir: string | undefined, options: ExportOptions) => exportCommand(dir, options));
}

export function registerImport(cli: CAC): void {
  cli
    .command(
      "[peft-dir]",
      "Install a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) as a forge bake, checked against the base model",
    )
    .option("--out <dir>", "The bake directory to create")
    .option(
      "--bake <dir>",
      "The bake the adapter was trained from (its export): base model, prompt and settings for lineage",
    )
    .option("--model <dir>", "The base model (default: the one --bake's forge.json names)")
    .option("--force", "Replace a previous bake at --out")
    .option("--json", "Print the result as JSON")
    .example("forge import-adapter ./peft-out --bake baked/pirate --out baked/pirate-cluster")
    .action((dir: string | undefined, options: ImportOptions) => importCommand(dir, options));
}
