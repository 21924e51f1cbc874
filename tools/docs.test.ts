/**
 * The API reference build fails on what typedoc.json says it enforces (a broken {@link}, a
 * public signature using a type its package does not export) and names each module by its
 * import specifier.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { buildDocs } from "./docs.mjs";

const scratch = mkdtempSync(path.join(os.tmpdir(), "forge-docs-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function fixture(name: string, declarations: string) {
  const absolute = path.join(scratch, name);
  mkdirSync(path.join(absolute, "dist"), { recursive: true });
  const manifest = {
    name: `@fixture/${name}`,
    version: "1.0.0",
    type: "module",
    exports: {
      ".": { types: "./dist/index.d.ts", import: "./dist/index.js", default: "./dist/index.js" },
      "./extra": {
        types: "./dist/extra.d.ts",
        import: "./dist/extra.js",
        default: "./dist/extra.js",
      },
      "./internal": {
        types: "./dist/internal.d.ts",
        import: "./dist/internal.js",
        default: "./dist/internal.js",
      },
    },
  };
  writeFileSync(path.join(absolute, "package.json"), JSON.stringify(manifest));
  writeFileSync(path.join(absolute, "dist/index.d.ts"), declarations);
  writeFileSync(
    path.join(absolute, "dist/internal.d.ts"),
    "/** Plumbing. */\nexport declare function plumbing(): void;\n",
  );
  writeFileSync(
    path.join(absolute, "dist/extra.d.ts"),
    "/** Adds one. */\nexport declare function increment(value: number): number;\n",
  );
  return { name: manifest.name, dir: name, absolute, manifest };
}

async function quietly<T>(work: () => Promise<T>): Promise<{ result: T; output: string }> {
  const lines: string[] = [];
  const capture = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
  };
  const spies = (["log", "warn", "error", "info"] as const).map((method) =>
    vi.spyOn(console, method).mockImplementation(capture),
  );
  try {
    return { result: await work(), output: lines.join("\n") };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

describe("API reference build", () => {
  it("writes a module per entry point but ./internal, named by its import specifier", async () => {
    const pkg = fixture(
      "good",
      "/** Doubles. See {@link half}. */\nexport declare function double(value: number): number;\n/** Halves. */\nexport declare function half(value: number): number;\n",
    );
    const out = path.join(scratch, "good-out");
    const { result, output } = await quietly(() => buildDocs({ packages: [pkg], out }));
    expect(result, output).toBe(true);
    expect(existsSync(path.join(out, "index.html"))).toBe(true);
    const index = readFileSync(path.join(out, "index.html"), "utf8");
    expect(index).toContain("@fixture/good");
    expect(index).toContain("@fixture/good/extra");
    expect(index).not.toContain("@fixture/good/internal");
  });

  it("fails on a broken link and writes nothing", async () => {
    const pkg = fixture(
      "broken-link",
      "/** See {@link nowhere}. */\nexport declare function double(value: number): number;\n",
    );
    const out = path.join(scratch, "broken-link-out");
    const { result, output } = await quietly(() => buildDocs({ packages: [pkg], out }));
    expect(result).toBe(false);
    expect(output).toMatch(/nowhere/);
    expect(existsSync(out)).toBe(false);
  });

  it("fails when a public signature uses a type the package does not export", async () => {
    const pkg = fixture(
      "not-exported",
      "interface Hidden {\n  /** a */\n  a: number;\n}\n/** Uses a hidden type. */\nexport declare function take(value: Hidden): void;\nexport {};\n",
    );
    const out = path.join(scratch, "not-exported-out");
    const { result, output } = await quietly(() => buildDocs({ packages: [pkg], out }));
    expect(result).toBe(false);
    expect(output).toMatch(/Hidden/);
  });
});
