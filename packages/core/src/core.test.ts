import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  EXIT_CODES,
  exitCodeFor,
  ForgeError,
  formatError,
  GateError,
  InterruptedError,
  ioError,
  packageError,
  UsageError,
} from "./errors.js";
import { parseJson, writeFileAtomic } from "./fs.js";
import {
  acquireLock,
  acquireLockWaiting,
  type LockInfo,
  processAlive,
  transferLock,
} from "./lock.js";
import { resolveInside } from "./paths.js";
import { parseYaml } from "./yaml.js";

const tmp = () => mkdtempSync(path.join(os.tmpdir(), "forge-core-"));

describe("errors", () => {
  it("the category decides the exit code, in one place", () => {
    expect(exitCodeFor(new GateError("regression"))).toBe(1);
    expect(exitCodeFor(new UsageError("--x"))).toBe(2);
    expect(exitCodeFor(new ForgeError("E_FORMAT", "bad line"))).toBe(2);
    expect(exitCodeFor(new ForgeError("E_IO", "disk"))).toBe(2);
    expect(exitCodeFor(new InterruptedError("SIGINT"))).toBe(130);
    expect(exitCodeFor(new ForgeError("E_NAN", "loss", { category: "internal" }))).toBe(3);
    expect(exitCodeFor(new TypeError("x is undefined"))).toBe(3);
    expect(EXIT_CODES.gate).toBe(1);
    // each kind is recognised as itself only
    expect(InterruptedError.isInstance(new ForgeError("E_IO", "disk"))).toBe(false);
    expect(InterruptedError.isInstance(new InterruptedError("SIGINT"))).toBe(true);
    expect(GateError.isInstance(new UsageError("x"))).toBe(false);
    expect(UsageError.isInstance(new UsageError("x"))).toBe(true);
  });

  it("a system refusal is one line naming the path, exit 2, never a stack", () => {
    const enospc = Object.assign(new Error("ENOSPC: no space left on device, write"), {
      code: "ENOSPC",
      syscall: "write",
      path: "/mnt/small/out/model.safetensors",
    });
    expect(exitCodeFor(enospc)).toBe(2);
    const line = formatError(enospc);
    expect(line).toBe(
      "forge: cannot write /mnt/small/out/model.safetensors: no space left on the device (ENOSPC)",
    );
    const wrapped = ioError(enospc, "/mnt/small/out/model.safetensors");
    expect(wrapped.category).toBe("io");
    expect(wrapped.message).toContain("no space left on the device (ENOSPC)");
    expect(formatError(new TypeError("boom"))).toContain("FORGE_DEBUG=1");
  });

  it("a package's error class names the package, keeps its code and category", () => {
    const PackError = packageError<"E_INPUT" | "E_IO">("PackError");
    const error = new PackError("E_IO", "cannot write x", { cause: new Error("disk") });
    expect(error).toBeInstanceOf(ForgeError);
    expect(error.name).toBe("PackError");
    expect(error.code).toBe("E_IO");
    expect(exitCodeFor(error)).toBe(2);
    expect(PackError.isInstance(error)).toBe(true);
    expect(PackError.isInstance(new ForgeError("E_IO", "other"))).toBe(false);
    const copy = Object.assign(new Error("x"), {
      name: "PackError",
      [Symbol.for("forge.error")]: true,
    });
    expect(PackError.isInstance(copy)).toBe(true); // another installed copy of the package
  });

  it("isInstance holds across copies (it checks a registry symbol)", () => {
    const foreign = { [Symbol.for("forge.error")]: true, category: "gate", message: "x" };
    expect(ForgeError.isInstance(foreign)).toBe(true);
    expect(exitCodeFor(foreign)).toBe(1);
  });
});

describe("files", () => {
  it("writeFileAtomic leaves the old file whole when the write fails, and no temporary", async () => {
    const dir = tmp();
    const file = path.join(dir, "state.json");
    await writeFileAtomic(file, "old");
    mkdirSync(path.join(dir, "blocked"));
    // a directory where the file should be: the rename fails
    const error = await writeFileAtomic(path.join(dir, "blocked"), "new").catch((e) => e);
    expect(ForgeError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(path.join(dir, "blocked"));
    expect(readFileSync(file, "utf8")).toBe("old");
    expect(readdirSync(dir).sort()).toEqual(["blocked", "state.json"]);
  });

  it("parseJson names the file and line but never echoes the content", () => {
    const secret = "root:x:0:0:root:/root:/bin/bash";
    const error = (() => {
      try {
        parseJson(secret, "/etc/passwd", 1);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error?.message).toBe("/etc/passwd:1: not valid JSON");
    expect(error?.message).not.toContain("root");
    expect(() => parseJson('{"a": 1,}', "x.json")).toThrow("x.json: invalid JSON at character 9");
  });
});

describe("locks", () => {
  it("refuses a second holder naming the pid; release frees it; a transferred lock names the new pid", () => {
    const file = path.join(tmp(), "run.lock");
    const lock = acquireLock(file, "forge run bake");
    expect(() => acquireLock(file, "forge run bake")).toThrow(`pid ${process.pid}`);
    transferLock(lock, process.ppid, "job");
    expect(() => acquireLock(file, "x")).toThrow(`pid ${process.ppid}`);
    transferLock(lock, process.pid, "back");
    lock.release();
    acquireLock(file, "again").release();
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(-1)).toBe(false);
  });

  it("a waiting acquirer names the holder once, takes the lock when it is released, gives up at its timeout", async () => {
    const file = path.join(tmp(), "pull.lock");
    const held = acquireLock(file, "forge pull a/b");
    const heard: LockInfo[] = [];
    await expect(acquireLockWaiting(file, "second", { timeoutMs: 0 })).rejects.toThrow(
      `held by another forge process: pid ${process.pid}`,
    );
    await expect(
      acquireLockWaiting(file, "second", {
        timeoutMs: 250,
        pollMs: 20,
        onWait: (h) => heard.push(h),
      }),
    ).rejects.toThrow(
      new RegExp(
        `still held by another forge process after \\d+ s: pid ${process.pid} \\(forge pull a/b`,
      ),
    );
    expect(heard.map((h) => [h.pid, h.command])).toEqual([[process.pid, "forge pull a/b"]]);
    setTimeout(() => held.release(), 100);
    const next = await acquireLockWaiting(file, "second", { timeoutMs: 60_000, pollMs: 20 });
    expect(JSON.parse(readFileSync(file, "utf8")).command).toBe("second");
    next.release();
  });
});

describe("paths from files", () => {
  it("resolve inside their root; ../ and links out are refused naming the source", () => {
    const root = tmp();
    mkdirSync(path.join(root, "data"));
    writeFileSync(path.join(root, "data", "q.txt"), "hi");
    const options = { source: "input.yml:12:11", what: "path", allowHint: "pass --allow-outside" };
    expect(resolveInside(root, "data/q.txt", options)).toBe(path.join(root, "data", "q.txt"));
    expect(() => resolveInside(root, "../../etc/passwd", options)).toThrow(
      /input.yml:12:11: path "..\/..\/etc\/passwd" resolves outside .*pass --allow-outside/,
    );
    expect(() => resolveInside(root, "/etc/passwd", options)).toThrow("resolves outside");
    symlinkSync("/etc", path.join(root, "etc-link"));
    expect(() => resolveInside(root, "etc-link/passwd", options)).toThrow("resolves outside");
    expect(resolveInside(root, "/etc/passwd", { ...options, allowOutside: true })).toBe(
      "/etc/passwd",
    );
  });
});

describe("bounded YAML", () => {
  it("an alias bomb is an input error naming the file, in well under a second", () => {
    let bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    let previous = "a";
    for (let i = 0; i < 9; i++) {
      const name = `b${i}`;
      bomb += `${name}: &${name} [${Array(9).fill(`*${previous}`).join(", ")}]\n`;
      previous = name;
    }
    const started = performance.now();
    const error = (() => {
      try {
        parseYaml(bomb, "input.yml");
      } catch (e) {
        return e;
      }
    })();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(exitCodeFor(error)).toBe(2);
    expect((error as Error).message).toMatch(/^input.yml:\d+:\d+: \(yaml\): \d+ aliases/);
    // fewer aliases, exponential expansion: also refused
    let doubling = "a: &a [x, x]\n";
    previous = "a";
    for (let i = 0; i < 30; i++) {
      doubling += `b${i}: &b${i} [*${previous}, *${previous}]\n`;
      previous = `b${i}`;
    }
    expect(() => parseYaml(doubling, "t.yaml")).toThrow(/t.yaml: \(yaml\): cannot be read/);
  });

  it("refuses deep nesting and oversized files; reports syntax errors with line:column", () => {
    const deep = `a: ${"[".repeat(200)}${"]".repeat(200)}`;
    expect(() => parseYaml(deep, "d.yml")).toThrow("nested more than 64 levels");
    // deep enough to overflow the parser's stack (or abort V8): refused by the scan first
    for (const text of [
      `a: ${"[".repeat(20_000)}`,
      `- ${"- ".repeat(5000)}x`,
      `${"]".repeat(5000)}`,
      `a:\n${" ".repeat(1000)}b: 1`,
    ]) {
      const started = performance.now();
      expect(() => parseYaml(text, "n.yml")).toThrow(/^n.yml:\d+:\d+: \(yaml\)/);
      expect(performance.now() - started).toBeLessThan(2000);
    }
    expect(() => parseYaml("a: 1\n".repeat(10), "big.yml", { maxBytes: 20 })).toThrow(
      "big.yml: (file): 50 bytes is more than the 20 accepted",
    );
    expect(() => parseYaml("a: [1, 2\nb: 3\n", "s.yml")).toThrow(/^s.yml:\d+:\d+: \(yaml\)/);
    const parsed = parseYaml("PROMPT:\n  teacher: []\n", "ok.yml");
    expect(parsed.value).toEqual({ PROMPT: { teacher: [] } });
  });
});
