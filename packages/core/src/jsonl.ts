/**
 * JSON Lines: one JSON value per line. Reading checks every line and names the file and line of
 * a bad one — never its content (a file given by mistake must not leak into a message).
 */
import { ForgeError } from "./errors.js";
import { parseJson, readTextFile } from "./fs.js";

/** Records as JSONL text: one line each, a final newline when there are any. */
export function toJsonl(records: readonly unknown[]): string {
  return records.map((record) => JSON.stringify(record)).join("\n") + (records.length ? "\n" : "");
}

/**
 * The values of JSONL text, blank lines skipped. `check` validates (and may convert) each value
 * and throws for a bad one; a value that is not a JSON object is refused unless `check` is given.
 */
export function parseJsonl<T = Record<string, unknown>>(
  text: string,
  source: string,
  check?: (value: unknown, line: number) => T,
): T[] {
  const out: T[] = [];
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    const value = parseJson(line, source, index + 1);
    if (check) out.push(check(value, index + 1));
    else if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new ForgeError("E_FORMAT", `${source}:${index + 1}: expected a JSON object`);
    else out.push(value as T);
  }
  return out;
}

/** Read a JSONL file (see parseJsonl); a missing or unreadable file names it. */
export async function readJsonl<T = Record<string, unknown>>(
  file: string,
  check?: (value: unknown, line: number) => T,
): Promise<T[]> {
  return parseJsonl(await readTextFile(file), file, check);
}
