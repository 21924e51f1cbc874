import { existsSync } from "node:fs";
import path from "node:path";
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
