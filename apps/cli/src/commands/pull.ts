/**
 * `forge pull <org/name>`: download a model from the Hugging Face hub into the hub's cache, so
 * `--model org/name` works in every command (offline, once pulled).
 */
import type { PullResult } from "@forge/model";
import type { CAC } from "cac";
import pc from "picocolors";
import { UsageError } from "../errors.js";
import { formatBytes, pullWithProgress } from "../models.js";

interface PullCommandOptions {
  revision?: string;
  include?: string | string[];
  lockTimeout?: string | number;
  json?: boolean;
}

function render(result: PullResult): string {
  const width = Math.max(...result.files.map((f) => f.path.length), 4);
  const lines = [
    `${pc.bold(result.repo)}@${result.revision} (commit ${result.commit.slice(0, 12)})`,
    ...result.files.map(
      (f) =>
        `  ${f.path.padEnd(width)}  ${formatBytes(f.size).padStart(9)}  ${f.cached ? pc.dim("cached") : "downloaded"}`,
    ),
  ];
  const total = result.files.reduce((sum, f) => sum + f.size, 0);
  lines.push(
    `${result.files.length} file${result.files.length === 1 ? "" : "s"}, ${formatBytes(total)}: ${formatBytes(result.downloadedBytes)} downloaded`,
    `in ${result.dir}`,
    `use it: forge chat ${result.repo}${result.revision === "main" ? "" : `@${result.revision}`}`,
  );
  return lines.join("\n");
}

async function pullCommand(repo: string | undefined, options: PullCommandOptions): Promise<number> {
  if (repo === undefined) throw new UsageError("forge pull needs a model id: forge pull org/name");
  const include =
    options.include === undefined
      ? undefined
      : (Array.isArray(options.include) ? options.include : [options.include]).map(String);
  const lockTimeout = options.lockTimeout === undefined ? undefined : Number(options.lockTimeout);
  if (lockTimeout !== undefined && !(Number.isFinite(lockTimeout) && lockTimeout >= 0))
    throw new UsageError(
      `--lock-timeout must be a number of seconds ≥ 0; got ${JSON.stringify(options.lockTimeout)}`,
    );
  const result = await pullWithProgress(repo, {
    ...(lockTimeout !== undefined ? { lockTimeoutMs: lockTimeout * 1000 } : {}),
    ...(options.revision !== undefined ? { revision: String(options.revision) } : {}),
    ...(include ? { include } : {}),
  });
  process.stdout.write(
    options.json ? `${JSON.stringify(result, null, 2)}\n` : `${render(result)}\n`,
  );
  return 0;
}

export function register(cli: CAC): void {
  cli
    .command(
      "[repo]",
      "Download a model from the Hugging Face hub into its cache (HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_OFFLINE)",
    )
    .option("--revision <revision>", "Branch, tag or commit (default main; also org/name@revision)")
    .option(
      "--include <glob>",
      "Files to download, a glob (repeatable; default: config, tokenizer, generation config, *.safetensors, adapter files)",
    )
    .option(
      "--lock-timeout <seconds>",
      "While another process pulls the same model, wait this long for it (default 3600; 0: fail at once)",
    )
    .option("--json", "Print the result as JSON")
    .example("forge pull HuggingFaceTB/SmolLM2-135M-Instruct")
    .example("forge pull Qwen/Qwen2.5-0.5B-Instruct --revision main --include '*.json'")
    .action((repo: string | undefined, options: PullCommandOptions) => pullCommand(repo, options));
}
