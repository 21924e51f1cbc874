/**
 * Task files are untrusted input: what they may reach (data, scorer modules), what their
 * errors may print, and what their YAML may cost. Real files in a temporary directory.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { exitCodeFor } from "@forge/core";
import { afterAll, describe, expect, it } from "vitest";
import { makeScorer } from "./runner.js";
import { loadTask, MAX_TASK_BYTES, parseTask } from "./tasks.js";

const root = mkdtempSync(path.join(os.tmpdir(), "forge-eval-safety-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const tasks = path.join(root, "project", "tasks");
const outside = path.join(root, "elsewhere");
mkdirSync(tasks, { recursive: true });
mkdirSync(outside, { recursive: true });

const SECRET = "root:x:0:0:root:/root:/bin/bash";
writeFileSync(path.join(tasks, "items.jsonl"), '{"id": "a", "q": "1+1", "answer": "2"}\n');
writeFileSync(path.join(outside, "items.jsonl"), '{"id": "b", "q": "2+2", "answer": "4"}\n');
writeFileSync(path.join(outside, "passwd"), `${SECRET}\ndaemon:x:1:1::/:/bin/sh\n`);

const task = (data: string, scorer = '{ type: numeric, target: "{{answer}}" }') =>
  `name: sums\ndata: ${data}\nmessages:\n  - { role: user, content: "{{q}}" }\nscorer: ${scorer}\n`;

const write = (name: string, text: string) => {
  const file = path.join(tasks, name);
  writeFileSync(file, text);
  return file;
};

/** The error a promise rejects with (fails the test when it resolves). */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  const result = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(result, "expected a refusal").toBeInstanceOf(Error);
  return result as Error;
}

describe("data: stays inside the task file's directory", () => {
  it("refuses ../../../etc/passwd with exit 2, naming the file, the field and its position", async () => {
    const file = write("escape.yaml", task("../../../etc/passwd"));
    const error = await refusal(loadTask(file));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain(`${file}:2:7`);
    expect(error.message).toContain('data "../../../etc/passwd"');
    expect(error.message).toContain("--allow-outside");
    expect(error.message).not.toContain("root:x");
  });

  it("refuses a path to a sibling directory and a symbolic link that leads out", async () => {
    const relative = path.relative(tasks, path.join(outside, "items.jsonl"));
    const error = await refusal(loadTask(write("sibling.yaml", task(relative))));
    expect(exitCodeFor(error)).toBe(2);
    symlinkSync(path.join(outside, "items.jsonl"), path.join(tasks, "link.jsonl"));
    const linked = await refusal(loadTask(write("link.yaml", task("link.jsonl"))));
    expect(exitCodeFor(linked)).toBe(2);
    expect(linked.message).toMatch(/resolves outside/);
  });

  it("reads inside as before, and outside when the caller allows it", async () => {
    expect((await loadTask(write("inside.yaml", task("items.jsonl")))).items[0]!.id).toBe("a");
    const relative = path.relative(tasks, path.join(outside, "items.jsonl"));
    const allowed = await loadTask(write("allowed.yaml", task(relative)), { allowOutside: true });
    expect(allowed.items[0]!.id).toBe("b");
    expect(allowed.dataFile).toBe(path.join(outside, "items.jsonl"));
  });
});

describe("errors never print the content of a file that was not meant to be read", () => {
  it("a data file that is not JSONL: file and line, not its first characters", async () => {
    writeFileSync(path.join(tasks, "secret.jsonl"), `${SECRET}\n`);
    const file = write("secret.yaml", task("secret.jsonl"));
    const error = await refusal(loadTask(file));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain(`${path.join(tasks, "secret.jsonl")}:1`);
    expect(error.message).toContain(file); // which task read it
    expect(error.message).not.toMatch(/root|bash/);
  });

  it("nor when the caller allowed the path outside (line 2 of a passwd-like file)", async () => {
    writeFileSync(path.join(outside, "half.jsonl"), `{"id": "ok"}\n${SECRET}\n`);
    const relative = path.relative(tasks, path.join(outside, "half.jsonl"));
    const error = await refusal(
      loadTask(write("half.yaml", task(relative)), { allowOutside: true }),
    );
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain("half.jsonl:2");
    expect(error.message).not.toMatch(/root|bash/);
    const other = await refusal(
      loadTask(write("passwd.yaml", task(path.relative(tasks, path.join(outside, "passwd")))), {
        allowOutside: true,
      }),
    );
    expect(other.message).toContain("passwd:1");
    expect(other.message).not.toMatch(/root|daemon|bash/);
  });
});

describe("js scorers run only when the caller allows code", () => {
  // A module that leaves a marker file when it is loaded: the marker says whether it ran.
  const scorerModule = (dir: string, name: string) => {
    const marker = path.join(dir, `${name}.ran`);
    writeFileSync(
      path.join(dir, `${name}.mjs`),
      `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(marker)}, "ran");\nexport default (output) => output.length > 0;\n`,
    );
    return marker;
  };
  const jsTask = (module: string) =>
    `name: js\nitems: [{ id: a, q: hi }]\nmessages: [{ role: user, content: "{{q}}" }]\nscorer: { type: js, module: ${module} }\n`;

  it("without allowCode: exit 2 naming the task file, the module and the flag; nothing runs", async () => {
    const marker = scorerModule(tasks, "mark");
    const file = write("js.yaml", jsTask("mark.mjs"));
    const error = await refusal(loadTask(file));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain(`${file}:4:`);
    expect(error.message).toContain('"mark.mjs"');
    expect(error.message).toContain("--allow-code");
    // The runner refuses on its own too: a task loaded with code allowed is not enough.
    const loaded = await loadTask(file, { allowCode: true });
    const unscored = await refusal(makeScorer(loaded));
    expect(exitCodeFor(unscored)).toBe(2);
    expect(unscored.message).toContain("--allow-code");
    expect(existsSync(marker)).toBe(false);
    const score = await makeScorer(loaded, { allowCode: true });
    expect(existsSync(marker)).toBe(true);
    expect(score("yes", loaded.items[0]!)).toBe(1);
  });

  it("the module resolves inside the task file's directory unless allowOutside", async () => {
    const marker = scorerModule(outside, "far");
    const relative = path.relative(tasks, path.join(outside, "far.mjs"));
    const file = write("far.yaml", jsTask(relative));
    const error = await refusal(loadTask(file, { allowCode: true }));
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toContain(file);
    expect(error.message).toContain("scorer.module");
    expect(error.message).toContain("--allow-outside");
    const task = await loadTask(file, { allowCode: true, allowOutside: true });
    const unscored = await refusal(makeScorer(task, { allowCode: true }));
    expect(unscored.message).toMatch(/resolves outside/);
    expect(existsSync(marker)).toBe(false);
    await makeScorer(task, { allowCode: true, allowOutside: true });
    expect(existsSync(marker)).toBe(true);
  });

  it("a module that does not exist is named at load time", async () => {
    const error = await refusal(
      loadTask(write("missing.yaml", jsTask("nope.mjs")), { allowCode: true }),
    );
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toMatch(/missing\.yaml:4:\d+: scorer\.module "nope\.mjs": no file/);
  });
});

describe("task YAML is parsed within limits", () => {
  const timed = async (text: string) => {
    const started = performance.now();
    const error = await refusal(parseTask(text, path.join(tasks, "hostile.yaml")));
    return { error, ms: performance.now() - started };
  };
  const levels = (reference: string) => Array.from({ length: 9 }, () => reference).join(", ");
  let bomb = `a: &a [${levels('"lol"')}]\n`;
  for (const [name, previous] of [
    ["b", "a"],
    ["c", "b"],
    ["d", "c"],
    ["e", "d"],
    ["f", "e"],
    ["g", "f"],
    ["h", "g"],
    ["i", "h"],
  ])
    bomb += `${name}: &${name} [${levels(`*${previous}`)}]\n`;

  it.each([
    ["an alias bomb (9^9 strings)", bomb, /alias/],
    [
      "flow collections nested 100,000 deep",
      `x: ${"[".repeat(100_000)}${"]".repeat(100_000)}`,
      /nested more than 64 levels/,
    ],
    [
      "block sequences nested 200,000 deep on one line",
      `x:\n${"- ".repeat(200_000)}1\n`,
      /nested more than 64 levels/,
    ],
    [
      "mappings nested by indentation",
      Array.from({ length: 1200 }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n") + " 1\n",
      /indented \d+ columns/,
    ],
    [
      "a file over the size limit",
      `name: x\ndescription: "${"a".repeat(MAX_TASK_BYTES)}"\n`,
      /bytes is more than/,
    ],
  ])("%s: exit 2 naming the file, in well under a second", async (_, text, reason) => {
    const { error, ms } = await timed(text);
    expect(exitCodeFor(error)).toBe(2);
    expect(error.message).toMatch(/^\S*hostile\.yaml is not a valid task:\n {2}\S*hostile\.yaml/);
    expect(error.message).toMatch(reason);
    expect(ms).toBeLessThan(1000);
  });

  it("keeps the located problem format: file:line:col: path: message", async () => {
    const { error } = await timed("name: ok\nname: twice\n");
    expect(error.message).toMatch(/hostile\.yaml:2:1: \(yaml\): /);
    expect((error as Error & { problems: unknown[] }).problems.length).toBeGreaterThan(0);
  });
});
