import { existsSync } from "node:fs";
import path from "node:path";
import { loadTask, type Task, type TaskOptions } from "@forge/eval";
import { FORGE_TINY_TASKS } from "@forge/tiny";
import { glob } from "tinyglobby";
import { UsageError } from "./errors.js";

/** Expand globs and literal paths into files; a pattern that matches nothing is an error. */
export async function expandInputs(patterns: string[], flag = "--input"): Promise<string[]> {
  if (patterns.length === 0)
    throw new UsageError(`give at least one input file or glob (${flag} <glob>)`);
  const files: string[] = [];
  for (const pattern of patterns) {
    const matches = existsSync(pattern)
      ? [path.resolve(pattern)]
      : await glob(pattern, { absolute: true, onlyFiles: true });
    if (matches.length === 0)
      throw new UsageError(`${flag} ${JSON.stringify(pattern)} matches no files`);
    files.push(...matches.sort());
  }
  return [...new Set(files)];
}

/**
 * Load task files (globs or paths; `forge-tiny` names all of the shipped model's task files,
 * `forge-tiny:<name>` one of them, e.g. `forge-tiny:persona-pirate`). Their
 * `data:` and js scorer modules stay inside each task file's directory and js scorers are
 * refused, unless `options` allow them (--allow-outside, --allow-code).
 */
export async function loadTasks(
  patterns: string[],
  options: TaskOptions = {},
  flag = "--tasks",
): Promise<Task[]> {
  const expanded = patterns.map((p) =>
    p === "forge-tiny"
      ? path.join(FORGE_TINY_TASKS, "*.yaml")
      : p.startsWith("forge-tiny:")
        ? path.join(FORGE_TINY_TASKS, `${p.slice("forge-tiny:".length)}.yaml`)
        : p,
  );
  return Promise.all((await expandInputs(expanded, flag)).map((file) => loadTask(file, options)));
}
