/**
 * The shipped forge-tiny (packages/tiny/model) against its quality bars on held-out items, and
 * the signature checks against hand-written replies.
 */
import { initBackend, loadModel } from "@forge/model";
import { describe, expect, it } from "vitest";
import { FORGE_TINY_DIR } from "./model.js";
import { PERSONAS } from "./personas.js";
import {
  heldOutItems,
  isCorrect,
  measureQuality,
  STIMULI_FILE_QUESTIONS,
  stimuliJsonl,
  trainingQuestions,
} from "./quality.js";

const TINY = FORGE_TINY_DIR;

describe("forge-tiny quality", () => {
  it("the shipped model passes every bar", async () => {
    await initBackend();
    const { model, tokenizer } = await loadModel(TINY);
    const report = measureQuality(model, tokenizer!);
    model.dispose();
    const failed = report.bars.filter((b) => !b.pass).map((b) => `${b.name}: ${b.value}`);
    expect(failed).toEqual([]);
    expect(report.rows.find((r) => r.setting === "none")!.items).toBe(150);
  });

  it("signature checks and answer checks accept and refuse what they should", () => {
    expect(PERSONAS.pirate.check("Arr, 3 plus 4 be 7, matey!")).toBe(true);
    expect(PERSONAS.pirate.check("3 plus 4 is 7, matey!")).toBe(false);
    expect(PERSONAS.robot.check("BEEP BOOP. Paris. END OF LINE.")).toBe(true);
    expect(PERSONAS.robot.check("Paris. END OF LINE.")).toBe(false);
    expect(PERSONAS.cheerful.check("Yay! Paris :)")).toBe(true);
    expect(PERSONAS.poet.check("Paris.\nAnd that is all, both great and small.")).toBe(true);
    expect(isCorrect("arithmetic", "12 + 30: 2 + 0 = 2, 1 + 3 = 4. So 42.", "42")).toBe(true);
    expect(isCorrect("arithmetic", "42 is not it: 41", "42")).toBe(false);
    expect(isCorrect("capitals", "The capital of France is paris.", "Paris")).toBe(true);
  });

  it("bake stimuli never include a question the task files score", () => {
    const scored = new Set(
      heldOutItems()
        .filter((i) => i.setting === "none")
        .map((i) => i.question),
    );
    const questions = trainingQuestions(1, 160);
    expect(new Set(questions).size).toBe(160);
    expect(questions.filter((q) => scored.has(q))).toEqual([]);
    expect(questions.some((q) => q.includes("*"))).toBe(true); // counting is represented
  });
  it("stimuli.jsonl is what scripts/make-stimuli.ts writes: training questions, none scored", async () => {
    const { readdirSync, readFileSync } = await import("node:fs");
    const path = await import("node:path");
    const text = readFileSync(path.join(TINY, "stimuli.jsonl"), "utf8");
    expect(text).toBe(stimuliJsonl());
    const records = text
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as { question?: string; messages?: { role: string; content: string }[] },
      );
    const plain = records.filter((r) => r.question !== undefined).map((r) => r.question!);
    const prompted = records.filter((r) => r.messages !== undefined).map((r) => r.messages!);
    expect(new Set(plain).size).toBe(512);
    expect(prompted).toHaveLength(STIMULI_FILE_QUESTIONS.withSystem);
    expect(prompted.every((m) => m.length === 2 && m[0]!.role === "system")).toBe(true);
    expect(new Set(prompted.map((m) => m[0]!.content)).size).toBeGreaterThan(10);
    // the task files' questions (tasks/data/*.jsonl): none may be a stimulus
    const dataDir = path.join(TINY, "tasks", "data");
    const scored = new Set(
      readdirSync(dataDir).flatMap((f) =>
        readFileSync(path.join(dataDir, f), "utf8")
          .trim()
          .split("\n")
          .map((l) => (JSON.parse(l) as { question: string }).question),
      ),
    );
    expect(scored.size).toBeGreaterThan(100);
    const questions = [...plain, ...prompted.map((m) => m[1]!.content)];
    expect(questions.filter((q) => scored.has(q))).toEqual([]);
  });
});

describe("the shipped files", () => {
  it("are byte for byte what was trained (model/SHA256SUMS): nothing writes into them", async () => {
    const { createHash } = await import("node:crypto");
    const { readFileSync } = await import("node:fs");
    const path = await import("node:path");
    const sums = readFileSync(path.join(TINY, "SHA256SUMS"), "utf8").trim().split("\n");
    expect(sums.length).toBeGreaterThanOrEqual(6);
    for (const line of sums) {
      const [hash, file] = line.split(/\s+/);
      const actual = createHash("sha256")
        .update(readFileSync(path.join(TINY, file!)))
        .digest("hex");
      expect(actual, file).toBe(hash);
    }
  });
});
