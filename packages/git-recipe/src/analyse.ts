/**
 * A repository at a glance, before any training: commits on every branch (each once), merges,
 * branches and tags, authors, the files at HEAD with their sizes and languages, and the span
 * of its history. The first phase of `forge pipeline` records it as `repository_stats`.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { simpleGit } from "simple-git";
import { RecipeError } from "./errors.js";

export interface RepositoryStats {
  path: string;
  /** HEAD's commit (null for a repository whose HEAD names an unborn branch). */
  head: string | null;
  headBranch: string | null;
  branches: string[];
  tags: number;
  /** Commits reachable from any ref, each counted once. */
  commits: number;
  merges: number;
  authors: number;
  /** The most active authors, by commits. */
  topAuthors: { name: string; email: string; commits: number }[];
  firstCommitDate: string | null;
  lastCommitDate: string | null;
  /** Files at HEAD. */
  files: number;
  bytes: number;
  /** Files and bytes at HEAD by language (from the extension; "other" when unknown). */
  languages: Record<string, { files: number; bytes: number }>;
}

const LANGUAGES: Record<string, string> = {
  ".ts": "TypeScript",
  ".tsx": "TypeScript",
  ".mts": "TypeScript",
  ".cts": "TypeScript",
  ".js": "JavaScript",
  ".jsx": "JavaScript",
  ".mjs": "JavaScript",
  ".cjs": "JavaScript",
  ".py": "Python",
  ".rs": "Rust",
  ".go": "Go",
  ".java": "Java",
  ".kt": "Kotlin",
  ".c": "C",
  ".h": "C",
  ".cc": "C++",
  ".cpp": "C++",
  ".hpp": "C++",
  ".cs": "C#",
  ".rb": "Ruby",
  ".php": "PHP",
  ".swift": "Swift",
  ".scala": "Scala",
  ".sh": "Shell",
  ".bash": "Shell",
  ".md": "Markdown",
  ".rst": "reStructuredText",
  ".txt": "Text",
  ".json": "JSON",
  ".yaml": "YAML",
  ".yml": "YAML",
  ".toml": "TOML",
  ".html": "HTML",
  ".css": "CSS",
  ".scss": "CSS",
  ".sql": "SQL",
  ".lua": "Lua",
  ".ex": "Elixir",
  ".exs": "Elixir",
  ".hs": "Haskell",
  ".ml": "OCaml",
  ".zig": "Zig",
};

/** The language of a path, from its extension (a few well-known names too). */
export function languageOf(file: string): string {
  const base = path.basename(file);
  if (base === "Makefile" || base === "makefile") return "Makefile";
  if (base === "Dockerfile") return "Dockerfile";
  return LANGUAGES[path.extname(file).toLowerCase()] ?? "other";
}

/** Open `repository` as a git repository (a work tree or a bare one) with at least one commit. */
async function gitOf(repository: string) {
  const dir = path.resolve(repository);
  if (!existsSync(dir))
    throw new RecipeError("E_NOT_REPO", `${dir} does not exist: give a git repository`);
  const git = simpleGit({ baseDir: dir });
  try {
    await git.revparse(["--git-dir"]);
  } catch {
    throw new RecipeError("E_NOT_REPO", `${dir} is not a git repository`);
  }
  return { dir, git };
}

export async function analyseRepository(repository: string): Promise<RepositoryStats> {
  const { dir, git } = await gitOf(repository);
  const count = Number((await git.raw(["rev-list", "--all", "--count"])).trim() || "0");
  if (count === 0)
    throw new RecipeError("E_INPUT", `${dir} has no commits: there is no history to train on`);
  const merges = Number((await git.raw(["rev-list", "--all", "--merges", "--count"])).trim());
  const head = (await git.raw(["rev-parse", "--verify", "-q", "HEAD"]).catch(() => "")).trim();
  const headBranch =
    (await git.raw(["symbolic-ref", "--short", "-q", "HEAD"]).catch(() => "")).trim() || null;
  const branches = (await git.raw(["for-each-ref", "--format=%(refname:short)", "refs/heads"]))
    .split("\n")
    .filter((b) => b !== "");
  const tags = (await git.raw(["for-each-ref", "--format=%(refname)", "refs/tags"]))
    .split("\n")
    .filter((t) => t !== "").length;

  const byAuthor = new Map<string, { name: string; email: string; commits: number }>();
  let first: number | undefined;
  let last: number | undefined;
  for (const line of (await git.raw(["log", "--all", "--format=%at%x00%aN%x00%aE"])).split("\n")) {
    if (!line) continue;
    const [time, name, email] = line.split("\0") as [string, string, string];
    const at = Number(time);
    first = first === undefined ? at : Math.min(first, at);
    last = last === undefined ? at : Math.max(last, at);
    const key = email.toLowerCase() || name;
    const author = byAuthor.get(key) ?? { name, email, commits: 0 };
    author.commits++;
    byAuthor.set(key, author);
  }

  const languages: RepositoryStats["languages"] = {};
  let files = 0;
  let bytes = 0;
  if (head) {
    // "<mode> <type> <object> <size>\t<path>", NUL-terminated; submodules have no size ("-")
    for (const entry of (await git.raw(["ls-tree", "-r", "-l", "-z", head])).split("\0")) {
      const m = /^\d+ (\w+) \w+ +(-|\d+)\t(.*)$/s.exec(entry);
      if (m === null) continue;
      const [, type, sizeText, file] = m;
      if (type !== "blob") continue;
      const size = sizeText === "-" ? 0 : Number(sizeText);
      const language = languageOf(file!);
      const slot = languages[language] ?? { files: 0, bytes: 0 };
      languages[language] = slot;
      slot.files++;
      slot.bytes += size;
      files++;
      bytes += size;
    }
  }
  const iso = (seconds: number | undefined) =>
    seconds === undefined ? null : new Date(seconds * 1000).toISOString();
  return {
    path: dir,
    head: head || null,
    headBranch,
    branches,
    tags,
    commits: count,
    merges,
    authors: byAuthor.size,
    topAuthors: [...byAuthor.values()].sort((a, b) => b.commits - a.commits).slice(0, 10),
    firstCommitDate: iso(first),
    lastCommitDate: iso(last),
    files,
    bytes,
    languages,
  };
}
