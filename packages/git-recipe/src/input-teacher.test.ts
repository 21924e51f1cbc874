/** BAKE.teacher in input.yml: a remote teacher's url, model and concurrency; bad ones are exit 2 naming the field. */
import { exitCodeFor } from "@forge/core";
import { describe, expect, it } from "vitest";
import { parseInput } from "./input.js";
import { workKey } from "./status.js";

const input = (teacher: string) => `PROMPT:
  teacher:
    - { role: system, content: "You are a pirate." }
  student: []
TARGET:
  generators:
    - { type: self, count: 5 }
  rollout: { samples: 2 }
BAKE:
  epochs: 2
  teacher: ${teacher}
`;

function problem(text: string): { code: number; message: string } {
  try {
    parseInput(text, "input.yml");
  } catch (error) {
    return { code: exitCodeFor(error), message: String(error) };
  }
  throw new Error("parsed");
}

describe("BAKE.teacher", () => {
  it("accepts an endpoint, its model and a concurrency; the stimuli's key follows it", () => {
    const spec = parseInput(
      input("{ url: 'http://127.0.0.1:8000', model: forge-tiny, concurrency: 4 }"),
    );
    expect(spec.bake!.teacher).toEqual({
      url: "http://127.0.0.1:8000",
      model: "forge-tiny",
      concurrency: 4,
    });
    const other = parseInput(input("{ url: 'http://10.0.0.2:8000', model: forge-tiny }"));
    const local = parseInput(input("null").replace("  teacher: null\n", ""));
    expect(workKey(spec, null)).not.toBe(workKey(other, null));
    expect(workKey(spec, null)).not.toBe(workKey(local, null));
  });

  it("refuses a bad url, credentials in it, an unknown key or a bad concurrency (exit 2)", () => {
    const bad = problem(input("{ url: 'ftp://x' }"));
    expect(bad.code).toBe(2);
    expect(bad.message).toMatch(
      /input\.yml:\d+:\d+: BAKE\.teacher\.url: .*http:\/\/ or https:\/\//,
    );
    expect(problem(input("{ url: 'http://me:secret@host:8000' }")).message).toContain(
      "FORGE_TEACHER_API_KEY",
    );
    expect(problem(input("{ url: 'http://h:1', key: abc }")).message).toContain("BAKE.teacher.key");
    expect(problem(input("{ url: 'http://h:1', concurrency: 0 }")).message).toContain(
      "BAKE.teacher.concurrency must be a positive integer",
    );
    expect(problem(input("'http://h:1'")).message).toContain("BAKE.teacher must be a mapping");
  });
});
