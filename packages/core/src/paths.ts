/**
 * Paths that come from files (input.yml, task files) are untrusted: they resolve inside their
 * root — the repository, the task file's directory — or they are refused, unless the user
 * allowed more. Symbolic links are followed before the check, so a link cannot escape either.
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { ForgeError } from "./errors.js";

/** `file` is `root` itself or lies below it (both absolute, compared as given). */
export function isInside(root: string, file: string): boolean {
  const relative = path.relative(root, file);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

/** The real path of `file`, or of its nearest existing ancestor joined with the rest. */
export function realPath(file: string): string {
  const absolute = path.resolve(file);
  try {
    return realpathSync(absolute);
  } catch {
    const parent = path.dirname(absolute);
    if (parent === absolute) return absolute;
    return path.join(realPath(parent), path.basename(absolute));
  }
}

export interface InsideOptions {
  /** Allow any path (the user passed a flag such as --allow-outside). */
  allowOutside?: boolean;
  /** Where the path was read from, for the message (e.g. "input.yml:12:11"). */
  source: string;
  /** What the path is, for the message (e.g. "TARGET.generators[0].path"). */
  what: string;
  /** How to allow it, for the message (e.g. "pass --allow-outside"). */
  allowHint?: string;
}

/**
 * Resolve `relative` against `root`, refusing a result outside `root` (after following links).
 * The refusal names the source and the path, never the content of what it points at.
 */
export function resolveInside(root: string, relative: string, options: InsideOptions): string {
  const resolved = path.resolve(root, relative);
  if (options.allowOutside) return resolved;
  if (!isInside(realPath(root), realPath(resolved)))
    throw new ForgeError(
      "E_OUTSIDE",
      `${options.source}: ${options.what} ${JSON.stringify(relative)} resolves outside ${root}; forge reads only files inside it${options.allowHint ? ` (${options.allowHint} to allow it)` : ""}`,
    );
  return resolved;
}
