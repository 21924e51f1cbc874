/**
 * Where a command finds a model: a directory, a model id in the bake repositories' store
 * (`<repository>/<bake>/<step>`), or `forge-tiny` — the shipped model, found through the
 * @forge/tiny package wherever forge is installed (also the default).
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { loadBaked } from "@forge/baking";
import { ModelStore } from "@forge/git-recipe";
import { evalModel, type GPT, type LocalEvalModel, loadModel } from "@forge/model";
import { FORGE_TINY_DIR } from "@forge/tiny";
import type { Tokenizer } from "@forge/tokenizer";
import { UsageError } from "./errors.js";

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
  return location;
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
  const name = location === "forge-tiny" ? location : path.basename(path.resolve(dir));
  return evalModel(loaded.model, loaded.tokenizer, { name });
}
