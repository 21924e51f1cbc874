import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { analyseRepository, languageOf } from "./analyse.js";
import {
  type CommitRecord,
  commitText,
  complexityScore,
  parseTrailers,
  scrapeHistory,
  windows,
} from "./scrape.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "forge-scrape-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const git = (...args: string[]) =>
  execFileSync("git", args, {
    cwd: dir,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "Ada",
      GIT_AUTHOR_EMAIL: "ada@example.org",
      GIT_AUTHOR_DATE: "2024-03-05T14:30:00+01:00",
      GIT_COMMITTER_NAME: "Bob",
      GIT_COMMITTER_EMAIL: "bob@example.org",
      GIT_COMMITTER_DATE: "2024-03-05T15:00:00+01:00",
    },
  }).trim();

beforeAll(() => {
  git("init", "-q", "--initial-branch=main");
  writeFileSync(path.join(dir, "a.txt"), "one\ntwo\n");
  git("add", ".");
  git("commit", "-q", "-m", "Initial commit");
  writeFileSync(path.join(dir, "a.txt"), "one\n2\nthree\n");
  writeFileSync(path.join(dir, "logo.bin"), Buffer.from([0, 1, 2, 255, 0, 3]));
  git("add", ".");
  git(
    "commit",
    "-q",
    "-m",
    "feat(cli)!: add a logo\n\nThe logo is binary.\n\nSigned-off-by: Ada <ada@example.org>\nCo-authored-by: Cy <cy@example.org>",
  );
  git("tag", "v1");
  git("checkout", "-q", "-b", "side");
  git("mv", "a.txt", "docs.txt");
  git("commit", "-q", "-m", "Rename a to docs");
  git("checkout", "-q", "main");
  writeFileSync(path.join(dir, "src.ts"), "export const x = 1;\n");
  git("add", ".");
  git("commit", "-q", "-m", "fixup! add source");
  git("merge", "-q", "--no-edit", "side");
});

describe("analyseRepository", () => {
  it("counts commits on every branch once, merges, branches, tags, authors, and files by language at HEAD", async () => {
    const stats = await analyseRepository(dir);
    expect(stats).toMatchObject({
      commits: 5,
      merges: 1,
      branches: ["main", "side"],
      headBranch: "main",
      tags: 1,
      authors: 1,
      topAuthors: [{ name: "Ada", email: "ada@example.org", commits: 5 }],
      files: 3,
    });
    expect(stats.head).toMatch(/^[0-9a-f]{40}$/);
    expect(stats.languages).toEqual({
      Text: { files: 1, bytes: 12 },
      TypeScript: { files: 1, bytes: 20 },
      other: { files: 1, bytes: 6 },
    });
    expect(stats.bytes).toBe(38);
    expect(Date.parse(stats.firstCommitDate!)).toBeLessThanOrEqual(
      Date.parse(stats.lastCommitDate!),
    );
  });

  it("a repository with no commits, and a directory that is not one is named", async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), "forge-empty-"));
    const plain = mkdtempSync(path.join(os.tmpdir(), "forge-plain-"));
    try {
      execFileSync("git", ["init", "-q"], { cwd: empty });
      await expect(analyseRepository(empty)).rejects.toThrow(`${empty} has no commits`);
      await expect(analyseRepository(plain)).rejects.toThrow(`${plain} is not a git repository`);
    } finally {
      rmSync(empty, { recursive: true, force: true });
      rmSync(plain, { recursive: true, force: true });
    }
  });

  it("names languages by extension", () => {
    expect(["a/b.tsx", "x.py", "Makefile", "README.md", "noext"].map(languageOf)).toEqual([
      "TypeScript",
      "Python",
      expect.any(String),
      "Markdown",
      "other",
    ]);
  });
});

describe("scrapeHistory", () => {
  let commits: CommitRecord[];
  beforeAll(async () => {
    commits = [];
    for await (const c of scrapeHistory(dir, { batchSize: 2 })) commits.push(c);
  });

  it("yields every commit of every branch once, with ≥ 30 fields", () => {
    expect(commits).toHaveLength(5);
    expect(new Set(commits.map((c) => c.hash)).size).toBe(5);
    expect(Object.keys(commits[0]!).length).toBeGreaterThanOrEqual(30);
  });

  it("reads authors, dates, time zones, trailers, conventional commits, refs and file changes", () => {
    const logo = commits.find((c) => c.subject.startsWith("feat"))!;
    expect(logo).toMatchObject({
      authorName: "Ada",
      authorEmail: "ada@example.org",
      committerName: "Bob",
      authorTimezone: "+0100",
      commitLagSeconds: 1800,
      hourOfDay: 14,
      weekday: 2, // Tuesday
      conventionalType: "feat",
      conventionalScope: "cli",
      breaking: true,
      signedOffBy: ["Ada <ada@example.org>"],
      coAuthors: ["Cy <cy@example.org>"],
      tags: ["v1"],
      filesChanged: 2,
      insertions: 2,
      deletions: 1,
      binaryFiles: 1,
      parentCount: 1,
      isMerge: false,
    });
    expect(logo.body).toMatch(/^The logo is binary\./);
    expect(logo.files.find((f) => f.path === "logo.bin")).toMatchObject({
      status: "A",
      binary: true,
    });
    expect(logo.files.find((f) => f.path === "a.txt")).toMatchObject({
      status: "M",
      insertions: 2,
      deletions: 1,
    });
    const rename = commits.find((c) => c.subject.startsWith("Rename"))!;
    expect(rename.files[0]).toMatchObject({
      status: "R",
      oldPath: "a.txt",
      path: "docs.txt",
      similarity: 100,
    });
    expect(rename.renames).toBe(1);
    expect(rename.branches).toEqual(["side"]);
    const merge = commits.find((c) => c.isMerge)!;
    expect(merge.parentCount).toBe(2);
    expect(merge.branches).toEqual(["main"]);
    expect(merge.files.map((f) => f.status)).toEqual(["R"]); // against its first parent
    expect(commits.find((c) => c.subject.startsWith("fixup!"))!.isFixup).toBe(true);
    expect(commits.find((c) => c.isRoot)!.subject).toBe("Initial commit");
  });

  it("complexity follows its documented formula; text and windows for training", () => {
    expect(complexityScore(0, 0, 0, 0)).toBe(0);
    expect(complexityScore(1, 0, 1, 1)).toBe(2);
    const logo = commits.find((c) => c.subject.startsWith("feat"))!;
    expect(logo.complexity).toBeCloseTo(Math.log2(4) * (1 + Math.log2(3)), 12);
    expect(commitText(logo)).toContain("feat(cli)!: add a logo\n\nThe logo is binary.");
    expect(commitText(logo)).toContain("A logo.bin (binary)");
    const ids = Array.from({ length: 10 }, (_, i) => i);
    expect(windows(ids, 4, 1)).toEqual([
      [0, 1, 2, 3],
      [3, 4, 5, 6],
      [6, 7, 8, 9],
    ]);
    expect(windows(ids, 4, 0)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [6, 7, 8, 9],
    ]);
    expect(windows([1, 2], 4, 1)).toEqual([[1, 2]]);
    expect(() => windows(ids, 4, 4)).toThrow(/the overlap must be an integer in \[0, 3\]/);
    expect(parseTrailers("Body.\n\nNot: a trailer line\nplain words")).toEqual({});
  });

  it("a directory that is not a git repository is a clear error", async () => {
    const plain = mkdtempSync(path.join(os.tmpdir(), "forge-plain-"));
    await expect(scrapeHistory(plain).next()).rejects.toThrow(/is not a git repository/);
    rmSync(plain, { recursive: true, force: true });
  });
});
