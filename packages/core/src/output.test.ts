import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { exitCodeFor, ForgeError } from "./errors.js";
import { claimOutput, OUTPUT_MARKER, readOutputMarker } from "./output.js";

let dir: string;
let cwd: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "forge-output-"));
  cwd = process.cwd();
});
afterEach(() => process.chdir(cwd));

const refusal = async (promise: Promise<unknown>) => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(ForgeError.isInstance(error), String(error)).toBe(true);
  expect(exitCodeFor(error)).toBe(2);
  return (error as Error).message;
};

describe("claimOutput", () => {
  it("writes into a work directory and renames it into place on commit", async () => {
    const out = path.join(dir, "out");
    const claim = await claimOutput(out, { kind: "test" });
    expect(existsSync(out)).toBe(false);
    writeFileSync(path.join(claim.work, "result.txt"), "done");
    await claim.commit();
    expect(readFileSync(path.join(out, "result.txt"), "utf8")).toBe("done");
    expect(readOutputMarker(out)?.kind).toBe("test");
    // nothing left beside it: no lock, no work directory
    expect(readdirSync(dir)).toEqual(["out"]);
  });

  it("never touches a directory it did not create, and says what is in it", async () => {
    const out = path.join(dir, "mine");
    mkdirSync(out);
    writeFileSync(path.join(out, "thesis.tex"), "years of work");
    for (const force of [false, true]) {
      const message = await refusal(claimOutput(out, { kind: "test", force }));
      expect(message).toContain("thesis.tex");
      expect(message).toContain("not forge's output");
    }
    expect(readFileSync(path.join(out, "thesis.tex"), "utf8")).toBe("years of work");
    expect(readdirSync(dir)).toEqual(["mine"]);
  });

  it("refuses a file, a symbolic link, and another kind of forge output", async () => {
    writeFileSync(path.join(dir, "file"), "x");
    expect(await refusal(claimOutput(path.join(dir, "file"), { kind: "test" }))).toContain(
      "a file",
    );
    mkdirSync(path.join(dir, "real"));
    const { symlinkSync } = await import("node:fs");
    symlinkSync(path.join(dir, "real"), path.join(dir, "link"));
    expect(await refusal(claimOutput(path.join(dir, "link"), { kind: "test" }))).toContain(
      "symbolic link",
    );
    const other = await claimOutput(path.join(dir, "other"), { kind: "eval" });
    await other.commit();
    expect(
      await refusal(claimOutput(path.join(dir, "other"), { kind: "test", force: true })),
    ).toContain("eval output");
  });

  it("uses an empty directory as if it were absent", async () => {
    const out = path.join(dir, "empty");
    mkdirSync(out);
    const claim = await claimOutput(out, { kind: "test" });
    writeFileSync(path.join(claim.work, "a"), "1");
    await claim.commit();
    expect(readFileSync(path.join(out, "a"), "utf8")).toBe("1");
  });

  it("replaces its own previous output only with force", async () => {
    const out = path.join(dir, "out");
    const first = await claimOutput(out, { kind: "test" });
    writeFileSync(path.join(first.work, "v"), "1");
    await first.commit();
    expect(await refusal(claimOutput(out, { kind: "test" }))).toContain("pass --force");
    const second = await claimOutput(out, { kind: "test", force: true });
    writeFileSync(path.join(second.work, "v"), "2");
    expect(readFileSync(path.join(out, "v"), "utf8")).toBe("1"); // intact until commit
    await second.commit();
    expect(readFileSync(path.join(out, "v"), "utf8")).toBe("2");
    expect(readdirSync(dir)).toEqual(["out"]);
  });

  it("never takes the working directory, an input, or an ancestor of either", async () => {
    const model = path.join(dir, "models", "base");
    mkdirSync(model, { recursive: true });
    writeFileSync(path.join(model, "config.json"), "{}");
    process.chdir(path.join(dir, "models"));
    expect(await refusal(claimOutput(".", { kind: "test", force: true }))).toContain(
      "working directory",
    );
    expect(await refusal(claimOutput("..", { kind: "test", force: true }))).toContain(
      "working directory",
    );
    process.chdir(cwd);
    expect(
      await refusal(claimOutput(model, { kind: "test", force: true, inputs: [model] })),
    ).toContain("is the input");
    expect(
      await refusal(
        claimOutput(path.join(dir, "models"), { kind: "test", force: true, inputs: [model] }),
      ),
    ).toContain("contains the input");
    expect(readFileSync(path.join(model, "config.json"), "utf8")).toBe("{}");
  });

  it("release removes only the work directory; keepWork leaves it to resume", async () => {
    const out = path.join(dir, "out");
    const claim = await claimOutput(out, { kind: "test" });
    await claim.release();
    expect(readdirSync(dir)).toEqual([]);
    const resumable = await claimOutput(out, { kind: "test", resumable: true });
    expect(resumable.work).toBe(`${out}.partial`);
    writeFileSync(path.join(resumable.work, "step"), "41");
    await resumable.release({ keepWork: true });
    expect(await refusal(claimOutput(out, { kind: "test", resumable: true }))).toContain(
      "pass --resume",
    );
    const again = await claimOutput(out, { kind: "test", resumable: true, resume: true });
    expect(again.resumed).toBe(true);
    expect(readFileSync(path.join(again.work, "step"), "utf8")).toBe("41");
    await again.commit();
    expect(readFileSync(path.join(out, "step"), "utf8")).toBe("41");
  });

  it("does not resume into a .partial directory forge did not make", async () => {
    const out = path.join(dir, "out");
    mkdirSync(`${out}.partial`);
    writeFileSync(path.join(`${out}.partial`, "notes"), "mine");
    for (const flags of [{}, { resume: true }, { force: true }])
      expect(
        await refusal(claimOutput(out, { kind: "test", resumable: true, ...flags })),
      ).toContain("not a stopped forge run");
    expect(readFileSync(path.join(`${out}.partial`, "notes"), "utf8")).toBe("mine");
  });

  it("one writer per output: a live holder is named, a dead one's lock is taken over", async () => {
    const out = path.join(dir, "out");
    const claim = await claimOutput(out, { kind: "test" });
    const message = await refusal(claimOutput(out, { kind: "test" }));
    expect(message).toContain(`pid ${process.pid}`);
    await claim.release();

    // a process that died holding the lock
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 10)"]);
    const pid = child.pid!;
    await new Promise((resolve) => child.on("exit", resolve));
    writeFileSync(
      path.join(dir, ".out.lock"),
      JSON.stringify({ pid, startedAt: new Date().toISOString(), command: "forge bake" }),
    );
    const taken = await claimOutput(out, { kind: "test" });
    await taken.commit();
    expect(existsSync(path.join(out, OUTPUT_MARKER))).toBe(true);
  });

  it("sweeps work directories left by runs that died", async () => {
    const out = path.join(dir, "out");
    const dead = path.join(dir, ".out.partial-999999-abcd");
    mkdirSync(dead);
    writeFileSync(
      path.join(dead, OUTPUT_MARKER),
      JSON.stringify({ kind: "test", pid: 999_999, createdAt: "", command: "" }),
    );
    const foreign = path.join(dir, ".out.partial-1-user");
    mkdirSync(foreign);
    const claim = await claimOutput(out, { kind: "test" });
    await claim.commit();
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(foreign)).toBe(true); // no marker: not forge's to remove
  });
});
