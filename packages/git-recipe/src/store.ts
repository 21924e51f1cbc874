/**
 * The model store: model weights live outside git, content-addressed, and recipe.yml refers to
 * them by id, `<repository>/<bake>/<step>`.
 *
 *   <root>/objects/<sha256>/...     a model directory, named by the hash of its files
 *   <root>/refs/<repo>/<bake>/<step>.json   { digest, createdAt }
 *
 * The root is `$FORGE_STORE`, else `~/.forge/store`. Writes go to a temporary directory (or a
 * uniquely named temporary file, @forge/core's `writeFileAtomic`) that is renamed into place,
 * so a killed copy leaves nothing half-written and two writers never share a temporary name;
 * identical models are stored once.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { readJsonFile, writeFileAtomic, writeJsonAtomic } from "@forge/core";
import { RecipeError } from "./errors.js";
import { NAME_PATTERN } from "./input.js";

export function defaultStoreRoot(): string {
  return process.env.FORGE_STORE ?? path.join(os.homedir(), ".forge", "store");
}

export interface StoredModel {
  id: string;
  digest: string;
  dir: string;
  createdAt: string;
}

/** Check a model id: three safe names, the last an integer step. */
export function parseModelId(id: string): { repository: string; bake: string; step: number } {
  const parts = id.split("/");
  const [repository, bake, step] = parts;
  if (
    parts.length !== 3 ||
    !NAME_PATTERN.test(repository!) ||
    !NAME_PATTERN.test(bake!) ||
    !/^\d{1,9}$/.test(step!) ||
    parts.some((p) => p.includes(".."))
  )
    throw new RecipeError(
      "E_INPUT",
      `${JSON.stringify(id)} is not a model id: expected <repository>/<bake>/<step> (names of letters, digits, ".", "_", "-"; step a number)`,
    );
  return { repository: repository!, bake: bake!, step: Number(step) };
}

async function filesOf(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await readdir(path.join(dir, prefix), { withFileTypes: true })).sort(
    (a, b) => a.name.localeCompare(b.name),
  )) {
    const rel = path.join(prefix, entry.name);
    if (entry.isDirectory()) out.push(...(await filesOf(dir, rel)));
    else if (entry.isFile()) out.push(rel);
  }
  return out;
}

/** sha256 over the directory's relative file names and contents. */
export async function digestDirectory(dir: string): Promise<string> {
  const hash = createHash("sha256");
  for (const file of await filesOf(dir)) {
    hash.update(`${file}\0`);
    hash.update(await readFile(path.join(dir, file)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

export class ModelStore {
  constructor(readonly root: string = defaultStoreRoot()) {}

  private refFile(id: string): string {
    const { repository, bake, step } = parseModelId(id);
    return path.join(this.root, "refs", repository, bake, `${step}.json`);
  }

  /** Copy `source` (a model directory) into the store under `id`. */
  async put(id: string, source: string): Promise<StoredModel> {
    const ref = this.refFile(id);
    if (!existsSync(source) || !(await stat(source)).isDirectory())
      throw new RecipeError("E_STORE", `${source} is not a directory: nothing to store as ${id}`);
    const digest = await digestDirectory(source);
    const dir = path.join(this.root, "objects", digest);
    if (!existsSync(dir)) {
      const temporary = path.join(this.root, "tmp", `${digest}.${randomBytes(4).toString("hex")}`);
      await mkdir(path.dirname(temporary), { recursive: true });
      await cp(source, temporary, { recursive: true });
      await mkdir(path.dirname(dir), { recursive: true });
      try {
        await rename(temporary, dir);
      } catch (error) {
        await rm(temporary, { recursive: true, force: true });
        if (!existsSync(dir)) throw error; // else: a concurrent put stored the same model
      }
    }
    const createdAt = new Date().toISOString();
    await writeJsonAtomic(ref, { digest, createdAt });
    return { id, digest, dir, createdAt };
  }

  /** Add a file (a run manifest, say) to a stored model's reference directory. */
  async attach(id: string, name: string, content: string): Promise<string> {
    const ref = this.refFile(id);
    if (!existsSync(ref)) throw this.missing(id);
    const file = path.join(path.dirname(ref), `${path.basename(ref, ".json")}.${name}`);
    await writeFileAtomic(file, content);
    return file;
  }

  has(id: string): boolean {
    return existsSync(this.refFile(id));
  }

  async get(id: string): Promise<StoredModel> {
    const ref = this.refFile(id);
    if (!existsSync(ref)) throw this.missing(id);
    const value = (await readJsonFile(ref)) as { digest?: unknown; createdAt?: unknown } | null;
    const digest = value?.digest;
    const createdAt = typeof value?.createdAt === "string" ? value.createdAt : "";
    if (typeof digest !== "string" || !/^[0-9a-f]{64}$/.test(digest))
      throw new RecipeError(
        "E_STORE",
        `${ref} is not a model reference (no sha256 digest): the store at ${this.root} is damaged`,
      );
    const dir = path.join(this.root, "objects", digest);
    if (!existsSync(dir))
      throw new RecipeError(
        "E_STORE",
        `model ${id} refers to ${digest}, which is missing from ${this.root}`,
      );
    return { id, digest, dir, createdAt };
  }

  /** Every stored model, sorted by id. */
  async list(): Promise<StoredModel[]> {
    const refs = path.join(this.root, "refs");
    if (!existsSync(refs)) return [];
    const out: StoredModel[] = [];
    for (const file of await filesOf(refs)) {
      if (!file.endsWith(".json")) continue;
      const id = file.slice(0, -".json".length).split(path.sep).join("/");
      try {
        out.push(await this.get(id));
      } catch {
        // a dangling reference: listed by nothing
      }
    }
    return out.sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
  }

  private missing(id: string): RecipeError {
    return new RecipeError(
      "E_STORE",
      `model ${id} is not in the store at ${this.root} (forge models lists what is; FORGE_STORE sets the store)`,
    );
  }
}
