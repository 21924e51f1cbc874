/**
 * Git history as training data. `scrapeHistory` streams every commit reachable from any ref
 * once (newest first, topological), in batches, with its metadata, message, trailers and
 * per-file changes; `commitText` renders one as text and `windows` cuts token ids into
 * fixed-length, overlapping training sequences.
 *
 * Merge commits are diffed against their first parent. Binary files count as changed with no
 * line counts.
 *
 * complexity (a rough size-of-change score, documented so it can be compared across repos):
 *   log2(1 + insertions + deletions) × (1 + log2(1 + filesChanged)) + (directories − 1)
 * where directories is the number of distinct top-level directories touched (0 for an empty
 * commit). An empty commit scores 0; a one-line change to one file scores 2.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { simpleGit } from "simple-git";
import { RecipeError } from "./errors.js";

export interface FileChange {
  path: string;
  oldPath?: string;
  /** A added, M modified, D deleted, R renamed, C copied, T type changed. */
  status: string;
  /** Similarity for renames and copies (0–100). */
  similarity?: number;
  insertions: number;
  deletions: number;
  binary: boolean;
}

export interface CommitRecord {
  hash: string;
  shortHash: string;
  tree: string;
  parents: string[];
  parentCount: number;
  isMerge: boolean;
  isRoot: boolean;
  authorName: string;
  authorEmail: string;
  authorDate: string;
  authorTimestamp: number;
  authorTimezone: string;
  committerName: string;
  committerEmail: string;
  committerDate: string;
  committerTimestamp: number;
  committerTimezone: string;
  /** Seconds between authoring and committing (rebases and amends make it large). */
  commitLagSeconds: number;
  /** The author's local hour (0–23) and weekday (0 = Sunday). */
  hourOfDay: number;
  weekday: number;
  subject: string;
  body: string;
  subjectLength: number;
  messageLength: number;
  bodyLines: number;
  trailers: Record<string, string[]>;
  signedOffBy: string[];
  coAuthors: string[];
  isRevert: boolean;
  isFixup: boolean;
  /** Conventional-commit type, scope and breaking flag ("feat(cli)!: …"), when the subject has one. */
  conventionalType: string | null;
  conventionalScope: string | null;
  breaking: boolean;
  refs: string[];
  branches: string[];
  tags: string[];
  files: FileChange[];
  filesChanged: number;
  insertions: number;
  deletions: number;
  binaryFiles: number;
  renames: number;
  /** Files changed per extension ("" for none). */
  extensions: Record<string, number>;
  directories: number;
  complexity: number;
}

const FIELDS = [
  "%H",
  "%h",
  "%T",
  "%P",
  "%an",
  "%ae",
  "%aI",
  "%at",
  "%cn",
  "%ce",
  "%cI",
  "%ct",
  "%D",
  "%s",
  "%b",
];
const FORMAT = `%x1e${FIELDS.join("%x1f")}%x1d`;

function timezoneOf(iso: string): string {
  const m = /([+-]\d{2}):?(\d{2})$/.exec(iso);
  return m ? `${m[1]}${m[2]}` : "+0000";
}

/** Trailers: the last paragraph of the body when every line is `Key: value`. */
export function parseTrailers(body: string): Record<string, string[]> {
  const paragraphs = body.trim().split(/\n\s*\n/);
  const last = paragraphs.at(-1) ?? "";
  const lines = last.split("\n").filter((l) => l.trim() !== "");
  if (lines.length === 0 || !lines.every((l) => /^[A-Za-z][A-Za-z0-9-]*:\s+\S/.test(l))) return {};
  const out: Record<string, string[]> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    const key = line.slice(0, i).trim();
    out[key] = [...(out[key] ?? []), line.slice(i + 1).trim()];
  }
  return out;
}

export function complexityScore(
  insertions: number,
  deletions: number,
  files: number,
  directories: number,
): number {
  if (files === 0) return 0;
  return (
    Math.log2(1 + insertions + deletions) * (1 + Math.log2(1 + files)) +
    Math.max(0, directories - 1)
  );
}

function parseNumstat(
  text: string,
): Map<string, { insertions: number; deletions: number; binary: boolean }> {
  const out = new Map<string, { insertions: number; deletions: number; binary: boolean }>();
  const parts = text.split("\0");
  for (let i = 0; i < parts.length; i++) {
    const entry = parts[i]!.replace(/^\n+/, "");
    if (!entry) continue;
    const m = /^(-|\d+)\t(-|\d+)\t(.*)$/s.exec(entry);
    if (!m) continue;
    let file = m[3]!;
    if (file === "") {
      i += 2; // rename: old, new follow
      file = parts[i] ?? "";
    }
    const binary = m[1] === "-";
    out.set(file, {
      insertions: binary ? 0 : Number(m[1]),
      deletions: binary ? 0 : Number(m[2]),
      binary,
    });
  }
  return out;
}

function parseNameStatus(
  text: string,
): { status: string; similarity?: number; path: string; oldPath?: string }[] {
  const parts = text.split("\0").map((p) => p.replace(/^\n+/, ""));
  const out: { status: string; similarity?: number; path: string; oldPath?: string }[] = [];
  for (let i = 0; i < parts.length; i++) {
    const code = parts[i]!;
    if (!/^[ACDMRTUXB]\d*$/.test(code)) continue;
    const status = code[0]!;
    if (status === "R" || status === "C") {
      out.push({
        status,
        similarity: Number(code.slice(1) || 100),
        oldPath: parts[i + 1]!,
        path: parts[i + 2]!,
      });
      i += 2;
    } else {
      out.push({ status, path: parts[i + 1]! });
      i += 1;
    }
  }
  return out;
}

/** Split `git log` output with FORMAT into header fields and the diff text after each. */
function splitLog(text: string): { fields: string[]; rest: string }[] {
  return text
    .split("\x1e")
    .filter((chunk) => chunk.includes("\x1d"))
    .map((chunk) => {
      const end = chunk.indexOf("\x1d");
      return { fields: chunk.slice(0, end).split("\x1f"), rest: chunk.slice(end + 1) };
    });
}

function record(fields: string[], numstat: string, nameStatus: string): CommitRecord {
  const [
    hash,
    shortHash,
    tree,
    parentText,
    an,
    ae,
    aI,
    at,
    cn,
    ce,
    cI,
    ct,
    decorations,
    subject,
    rawBody,
  ] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const parents = parentText.trim() ? parentText.trim().split(" ") : [];
  const body = (rawBody ?? "").trim();
  const counts = parseNumstat(numstat);
  const files: FileChange[] = parseNameStatus(nameStatus).map((f) => {
    const c = counts.get(f.path) ?? { insertions: 0, deletions: 0, binary: false };
    return {
      path: f.path,
      ...(f.oldPath ? { oldPath: f.oldPath } : {}),
      status: f.status,
      ...(f.similarity !== undefined ? { similarity: f.similarity } : {}),
      ...c,
    };
  });
  const refs = decorations
    .split(",")
    .map((d) => d.trim())
    .filter((d) => d !== "");
  const branches = refs
    .map((r) => r.replace(/^HEAD -> /, ""))
    .filter((r) => r !== "HEAD" && !r.startsWith("tag: ") && !r.includes("/"));
  const tags = refs.filter((r) => r.startsWith("tag: ")).map((r) => r.slice(5));
  const trailers = parseTrailers(body);
  const conventional = /^(\w+)(?:\(([^)]+)\))?(!)?:\s/.exec(subject);
  const insertions = files.reduce((a, f) => a + f.insertions, 0);
  const deletions = files.reduce((a, f) => a + f.deletions, 0);
  const extensions: Record<string, number> = {};
  for (const f of files) {
    const ext = path.extname(f.path).toLowerCase();
    extensions[ext] = (extensions[ext] ?? 0) + 1;
  }
  const directories = new Set(files.map((f) => (f.path.includes("/") ? f.path.split("/")[0] : ".")))
    .size;
  const local = new Date(Date.parse(aI) + tzMinutes(timezoneOf(aI)) * 60_000);
  return {
    hash,
    shortHash,
    tree,
    parents,
    parentCount: parents.length,
    isMerge: parents.length > 1,
    isRoot: parents.length === 0,
    authorName: an,
    authorEmail: ae,
    authorDate: aI,
    authorTimestamp: Number(at),
    authorTimezone: timezoneOf(aI),
    committerName: cn,
    committerEmail: ce,
    committerDate: cI,
    committerTimestamp: Number(ct),
    committerTimezone: timezoneOf(cI),
    commitLagSeconds: Number(ct) - Number(at),
    hourOfDay: local.getUTCHours(),
    weekday: local.getUTCDay(),
    subject,
    body,
    subjectLength: subject.length,
    messageLength: subject.length + (body ? body.length + 2 : 0),
    bodyLines: body ? body.split("\n").length : 0,
    trailers,
    signedOffBy: trailers["Signed-off-by"] ?? [],
    coAuthors: trailers["Co-authored-by"] ?? [],
    isRevert: /^Revert "/.test(subject),
    isFixup: /^(fixup|squash|amend)! /.test(subject),
    conventionalType: conventional ? conventional[1]!.toLowerCase() : null,
    conventionalScope: conventional?.[2] ?? null,
    breaking: Boolean(conventional?.[3]) || "BREAKING CHANGE" in trailers,
    refs,
    branches,
    tags,
    files,
    filesChanged: files.length,
    insertions,
    deletions,
    binaryFiles: files.filter((f) => f.binary).length,
    renames: files.filter((f) => f.status === "R").length,
    extensions,
    directories,
    complexity: complexityScore(insertions, deletions, files.length, directories),
  };
}

function tzMinutes(tz: string): number {
  const sign = tz.startsWith("-") ? -1 : 1;
  return sign * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(3, 5)));
}

export interface ScrapeOptions {
  /** Commits read per `git log` call (default 200). */
  batchSize?: number;
}

/** Every commit reachable from any ref, once each, streamed in batches of `batchSize`. */
export async function* scrapeHistory(
  repository: string,
  options: ScrapeOptions = {},
): AsyncGenerator<CommitRecord> {
  const dir = path.resolve(repository);
  if (!existsSync(dir)) throw new RecipeError("E_INPUT", `${dir} does not exist`);
  const git = simpleGit({ baseDir: dir });
  let hashes: string[];
  try {
    await git.revparse(["--git-dir"]);
    hashes = (await git.raw(["rev-list", "--all", "--topo-order"]))
      .split("\n")
      .filter((h) => h !== "");
  } catch (error) {
    throw new RecipeError(
      "E_NOT_REPO",
      `${dir} is not a git repository (${(error as Error).message.trim().split("\n")[0]})`,
    );
  }
  const size = options.batchSize ?? 200;
  for (let start = 0; start < hashes.length; start += size) {
    const batch = hashes.slice(start, start + size);
    const common = [
      "log",
      "--no-walk=unsorted",
      "--diff-merges=first-parent",
      "-z",
      `--format=${FORMAT}`,
    ];
    const numstat = splitLog(await git.raw([...common, "--numstat", ...batch]));
    const names = splitLog(await git.raw([...common, "--name-status", ...batch]));
    const byHash = new Map(names.map((n) => [n.fields[0], n.rest]));
    for (const entry of numstat)
      yield record(entry.fields, entry.rest, byHash.get(entry.fields[0]!) ?? "");
  }
}

/** A commit as training text. */
export function commitText(c: CommitRecord): string {
  const files = c.files
    .map(
      (f) =>
        `${f.status} ${f.oldPath ? `${f.oldPath} -> ` : ""}${f.path}${f.binary ? " (binary)" : ` (+${f.insertions} -${f.deletions})`}`,
    )
    .join("\n");
  return `commit ${c.hash}\nAuthor: ${c.authorName} <${c.authorEmail}>\nDate: ${c.authorDate}\n\n${c.subject}\n${c.body ? `\n${c.body}\n` : ""}${files ? `\n${files}\n` : ""}`;
}

/**
 * Fixed-length windows over `ids`: `length` tokens each, consecutive windows sharing `overlap`
 * tokens (stride length − overlap); a tail shorter than a stride gets one more window ending at
 * the last token. Fewer than `length` ids give one short window.
 */
export function windows(ids: readonly number[], length: number, overlap: number): number[][] {
  if (!Number.isInteger(length) || length < 2)
    throw new RecipeError("E_INPUT", `the window length must be an integer ≥ 2; got ${length}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= length)
    throw new RecipeError(
      "E_INPUT",
      `the overlap must be an integer in [0, ${length - 1}]; got ${overlap}`,
    );
  if (ids.length === 0) return [];
  if (ids.length <= length) return [[...ids]];
  const stride = length - overlap;
  const out: number[][] = [];
  let start = 0;
  for (; start + length <= ids.length; start += stride) out.push(ids.slice(start, start + length));
  if (start - stride + length < ids.length) out.push(ids.slice(ids.length - length));
  return out;
}
