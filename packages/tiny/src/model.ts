import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The shipped forge-tiny model directory: config.json, model.safetensors, tokenizer.json,
 * generation_config.json, forge.json (how it was made), and `tasks/` (its held-out task files).
 * It lies inside this package, so it is found wherever the package is installed.
 */
export const FORGE_TINY_DIR = fileURLToPath(new URL("../model", import.meta.url));

/** forge-tiny's task files: the held-out tasks and each persona's signature check. */
export const FORGE_TINY_TASKS = path.join(FORGE_TINY_DIR, "tasks");
