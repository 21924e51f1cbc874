/**
 * `pnpm forge`'s wrapper: it announces a build before the silent minutes of the first one,
 * and passes arguments and the exit code through to the built CLI.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { buildMessage } from "./forge.mjs";

const root = path.join(import.meta.dirname, "..");
/** `pnpm forge …` for real: turbo needs pnpm's script environment. */
const pnpmForge = (...args: string[]) =>
  spawnSync("npx", ["-y", "pnpm@10", "--silent", "forge", ...args], {
    cwd: root,
    encoding: "utf8",
  });

describe("pnpm forge", () => {
  it("says it is building, with a time estimate, on the first run", () => {
    expect(buildMessage(true)).toBe("building forge (first run, ~3 min on 2 cores)…");
    expect(buildMessage(false)).toBe("building forge (sources changed since the last build)…");
  });

  it("runs the built CLI with the arguments given and passes its exit code through", () => {
    const ok = pnpmForge("--version");
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/\d+\.\d+\.\d+/);
    expect(ok.stderr).not.toContain("first run"); // built already: no first-run line
    const bad = pnpmForge("doctor", "--fast");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("Unknown option `--fast`");
  });
});
