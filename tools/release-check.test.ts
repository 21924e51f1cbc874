/**
 * The release rehearsal's own arithmetic: bumps, changeset parsing, and the pending changesets
 * naming only packages that exist (the full rehearsal — changeset version and a dry-run
 * publish on a scratch copy — runs in CI as tools/release-check.mjs).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { publicPackages } from "./lib/workspace.mjs";
import { bumpVersion, parseChangeset } from "./release-check.mjs";

const root = path.resolve(fileURLToPath(import.meta.url), "../..");

describe("release rehearsal", () => {
  it("bumps as semver says, 0.x included", () => {
    expect(bumpVersion("0.0.0", "patch")).toBe("0.0.1");
    expect(bumpVersion("0.0.0", "minor")).toBe("0.1.0");
    expect(bumpVersion("0.3.4", "major")).toBe("1.0.0");
    expect(bumpVersion("1.2.3", "minor")).toBe("1.3.0");
    expect(() => bumpVersion("1.0.0-beta.1", "patch")).toThrow(/pre-release/);
  });

  it("reads a changeset's releases and summary, and refuses a malformed one", () => {
    const parsed = parseChangeset(
      "---\n\"@forge/core\": minor\n'@forge/cli': patch\n---\n\nA change.\n\nMore.\n",
      "x.md",
    );
    expect(parsed.releases).toEqual({ "@forge/core": "minor", "@forge/cli": "patch" });
    expect(parsed.summary).toBe("A change.\n\nMore.");
    expect(() => parseChangeset("no front matter", "y.md")).toThrow(/front matter/);
    expect(() => parseChangeset('---\n"@forge/core": huge\n---\nx\n', "z.md")).toThrow(
      /cannot read/,
    );
  });

  it("every pending changeset names public packages and says something", () => {
    const names = new Set(publicPackages().map((pkg: { name: string }) => pkg.name));
    const folder = path.join(root, ".changeset");
    const files = readdirSync(folder).filter(
      (file) => file.endsWith(".md") && file !== "README.md",
    );
    for (const file of files) {
      const { releases, summary } = parseChangeset(
        readFileSync(path.join(folder, file), "utf8"),
        file,
      );
      expect(Object.keys(releases).length, file).toBeGreaterThan(0);
      for (const name of Object.keys(releases))
        expect(names.has(name), `${file}: ${name}`).toBe(true);
      expect(summary.length, file).toBeGreaterThan(20);
    }
  });
});
