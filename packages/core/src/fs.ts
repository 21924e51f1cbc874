/**
 * Writes that never leave half a file: content goes to a uniquely named temporary sibling
 * (pid + random suffix, so two writers never share one), which is renamed over the target. A
 * failed write removes its temporary file and reports the target path in one line.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { ForgeError, ioError } from "./errors.js";

/** A temporary sibling name for `file`, unique to this process and call. */
export function temporarySibling(file: string, tag = "tmp"): string {
  const dir = path.dirname(file);
  return path.join(
    dir,
    `.${path.basename(file)}.${tag}-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
}

/** Write a file atomically (creating its directory). Errors are forge io errors naming `file`. */
export async function writeFileAtomic(file: string, content: string | Uint8Array): Promise<void> {
  const temporary = temporarySibling(file);
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(temporary, content);
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw ioError(error, file);
  }
}

/** Write a value as pretty JSON (two spaces, trailing newline), atomically. */
export function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  return writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Read a text file; a failure is a forge io error naming it (`what` prefixes the path). */
export async function readTextFile(file: string, what = ""): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw ioError(error, `${what}${file}`, "read");
  }
}

/**
 * `JSON.parse` whose error names the file and position but never echoes the content: a file
 * forge was pointed at by mistake (or on purpose) must not leak into an error message.
 */
export function parseJson(text: string, source: string, line?: number): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const position = /at position (\d+)/.exec(message)?.[1];
    const where = line !== undefined ? `${source}:${line}` : source;
    const detail =
      text.trim() === ""
        ? "empty where JSON was expected"
        : position !== undefined
          ? `invalid JSON at character ${Number(position) + 1}`
          : /Unexpected end/.test(message)
            ? "the JSON ends too early"
            : "not valid JSON";
    throw new ForgeError("E_FORMAT", `${where}: ${detail}`, { cause: error });
  }
}

/** Read and parse a JSON file (errors name the file, never its content). */
export async function readJsonFile(file: string, what = ""): Promise<unknown> {
  return parseJson(await readTextFile(file, what), `${what}${file}`);
}
