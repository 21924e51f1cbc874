/**
 * Where a command finds a model: a directory, a model id in the bake repositories' store
 * (`<repository>/<bake>/<step>`), a Hugging Face hub id (`org/name`, `org/name@revision`: its
 * snapshot in the hub's cache, downloaded first when it is not there), or `forge-tiny` — the
 * shipped model, found through the @forge/tiny package wherever forge is installed (also the
 * default).
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { loadBaked } from "@forge/baking";
import { ForgeError } from "@forge/core";
import { ModelStore } from "@forge/git-recipe";
import {
  cachedSnapshot,
  evalModel,
  formatBytes,
  type GPT,
  hubCacheDir,
  isHubRepoId,
  type LocalEvalModel,
  loadModel,
  type PullEvent,
  type PullOptions,
  type PullResult,
  parseHubRepoId,
  pullModel,
} from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import type { Tokenizer } from "@forge/tokenizer";
import { UsageError } from "./errors.js";
import "./load-plan.js";
import { ProgressBar } from "./progress.js";

/** The model every command uses when none is given: the shipped forge-tiny. */
export const DEFAULT_MODEL = FORGE_TINY_DIR;

/** A location as typed → a directory to load. */
export async function resolveModelLocation(location: string | undefined): Promise<string> {
  if (location === undefined || location === "forge-tiny") return DEFAULT_MODEL;
  if (existsSync(location)) return location;
  if (/^[^/]+\/[^/]+\/\d+$/.test(location)) {
    const store = new ModelStore();
    if (store.has(location)) return (await store.get(location)).dir;
    throw new UsageError(
      `${location} is neither a directory nor a model in the store at ${store.root} (forge models lists them)`,
    );
  }
  if (isHubRepoId(location)) {
    const { repo, revision } = parseHubRepoId(location);
    const cached = cachedSnapshot(repo, revision ?? "main");
    if (cached) return cached;
    process.stderr.write(
      `${location} is not a directory: downloading it from the Hugging Face hub into ${hubCacheDir()}\n`,
    );
    try {
      return (await pullWithProgress(repo, { ...(revision ? { revision } : {}) })).dir;
    } catch (error) {
      if (!ForgeError.isInstance(error)) throw error;
      throw new ForgeError(
        error.code,
        `${location} is not a directory, and as a Hugging Face model: ${error.message}`,
        { cause: error, category: error.category },
      );
    }
  }
  return location;
}

const MB = 1e6;

export { formatBytes };

/** pullModel with a progress bar in megabytes on stderr (drawn only on a terminal). */
export async function pullWithProgress(
  repo: string,
  options: PullOptions = {},
): Promise<PullResult> {
  const bar = new ProgressBar(`pull ${repo}`, { unit: "MB" });
  let total = 0;
  let done = 0;
  const show = (file: string) =>
    bar.update(Math.round(done / (MB / 10)) / 10, Math.round(total / (MB / 10)) / 10, file);
  const onProgress = (event: PullEvent) => {
    if (event.type === "waiting")
      process.stderr.write(
        `waiting for pid ${event.pid} (${event.command}, since ${event.since}), which is pulling ${repo} into the same cache…\n`,
      );
    else if (event.type === "listed") {
      total = event.bytes;
      done = event.cachedBytes;
    } else if (event.type === "file-start") done += event.resumeFrom;
    else if (event.type === "bytes") done += event.bytes;
    else if (event.type === "discarded") done -= event.bytes;
    else if (event.type === "retry")
      process.stderr.write(
        `\r\x1b[2K${event.path}: ${event.reason}; retrying in ${(event.delayMs / 1000).toFixed(1)} s\n`,
      );
    if ("path" in event) show(event.path);
    options.onProgress?.(event);
  };
  try {
    return await pullModel(repo, { ...options, onProgress });
  } finally {
    bar.stop();
  }
}

/** Load a model and its tokenizer, naming the directory when it is not one. */
export async function loadBase(dir: string): Promise<{ model: GPT; tokenizer: Tokenizer }> {
  const loaded = await loadModel(dir);
  if (!loaded.tokenizer) {
    loaded.model.dispose();
    throw new UsageError(`${dir} has no tokenizer.json; forge needs the model's tokenizer`);
  }
  return { model: loaded.model, tokenizer: loaded.tokenizer };
}

/** A model for evaluation: a model directory, or a bake output (its base with the adapter). */
export async function loadEvalModel(location: string): Promise<LocalEvalModel> {
  const dir = await resolveModelLocation(location);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new UsageError(`${location} is not a directory: give a model directory or a bake output`);
  const baked =
    existsSync(path.join(dir, "forge.json")) && existsSync(path.join(dir, "adapter_config.json"));
  const loaded = baked ? await loadBaked(dir) : await loadModel(dir);
  if (!loaded.tokenizer) {
    loaded.model.dispose();
    throw new UsageError(`${location} has no tokenizer.json`);
  }
  const name =
    location === "forge-tiny" || (isHubRepoId(location) && !existsSync(location))
      ? location
      : path.basename(path.resolve(dir));
  return evalModel(loaded.model, loaded.tokenizer, { name });
}
