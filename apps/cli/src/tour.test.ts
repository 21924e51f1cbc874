/**
 * The README's tour, run as written: its commands are read from README.md (so the README
 * cannot drift from what is tested), run in order in a temp directory as real child
 * processes, and their outcomes checked — the defaults must do what the README says.
 * The commands not run here, each for its reason: pursue (three default bakes, minutes: its
 * defaults are measured in the closing notes and pursue's own tests), bake-quietstar (needs a
 * thinking fine-tune of forge-tiny: quietstar.test.ts), `bake … --resume` (a template, shown
 * by safety.test.ts), serve and `eval run --model-url` (a server that runs until stopped:
 * serve.test.ts runs the pair), `bake --teacher-url` (needs that server running:
 * remote-teacher.test.ts bakes against forge serve), export-bake and import-adapter (the second
 * needs a PEFT adapter from a training job: scale-out.test.ts runs both on a bake of its own),
 * pull (needs the hub: pull.test.ts runs it against a local hub).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_BAKE, DEFAULT_ROLLOUT, DEFAULT_STIM_COUNTS, parseLayers } from "@forge/baking";
import { repositoryBakeSettings } from "@forge/baking/internal";
import { INPUT_TEMPLATE, parseInput } from "@forge/git-recipe";
import { afterAll, describe, expect, it } from "vitest";
import { forge, type Run } from "./run-cli.js";

const README = fileURLToPath(new URL("../../../README.md", import.meta.url));
const dir = mkdtempSync(path.join(os.tmpdir(), "forge-tour-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface TourCommand {
  args: string[];
  input?: string;
}

/** The tour block's commands: continuation lines joined, comments dropped, quotes honoured. */
export function tourCommands(readme: string): TourCommand[] {
  const start = readme.indexOf("The pieces, one command each.");
  const block = readme.slice(readme.indexOf("```sh\n", start) + 6);
  const text = block.slice(0, block.indexOf("```")).replace(/\\\n\s*/g, "");
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const words: string[] = [];
      let current: string | undefined;
      let quote: string | undefined;
      for (const ch of line) {
        if (quote) {
          if (ch === quote) quote = undefined;
          else current += ch;
        } else if (ch === '"' || ch === "'") {
          quote = ch;
          current ??= "";
        } else if (ch === "#" && current === undefined) break;
        else if (/\s/.test(ch)) {
          if (current !== undefined) words.push(current);
          current = undefined;
        } else current = (current ?? "") + ch;
      }
      if (current !== undefined) words.push(current);
      // `echo "…" | forge …`: the echoed line is the command's input
      const pipe = words.indexOf("|");
      if (words[0] === "echo" && pipe > 0)
        return { args: words.slice(pipe + 2), input: `${words.slice(1, pipe).join(" ")}\n` };
      expect(words[0], line).toBe("forge");
      return { args: words.slice(1) };
    });
}

const readJson = (...parts: string[]) => JSON.parse(readFileSync(path.join(dir, ...parts), "utf8"));

describe("the bake repository's input.yml template", () => {
  it("states @forge/baking's defaults, and its BAKE section parses into the bake's settings", () => {
    for (const stated of [
      `Without generators: ${DEFAULT_STIM_COUNTS.questions} questions`,
      `self: ${DEFAULT_STIM_COUNTS.questions} when it has none) and ${DEFAULT_STIM_COUNTS.persona} persona probes`,
      `samples (answers per question; ${DEFAULT_ROLLOUT.samples}), temperature (${DEFAULT_ROLLOUT.temperature}), maxNewTokens (${DEFAULT_ROLLOUT.maxNewTokens})`,
      `epochs (${DEFAULT_BAKE.epochs})`,
      `batchSize (${DEFAULT_BAKE.batchSize}), learningRate (${DEFAULT_BAKE.learningRate})`,
      `rank (${DEFAULT_BAKE.lora.r}), alpha (${DEFAULT_BAKE.lora.alpha})`,
      `patience (${DEFAULT_BAKE.earlyStopping!.patience}: stop after ${DEFAULT_BAKE.earlyStopping!.patience} epochs without a better validation KL`,
    ])
      expect(INPUT_TEMPLATE.replace(/\n#\s+/g, " ")).toContain(stated);
    const spec = parseInput(INPUT_TEMPLATE);
    expect(spec.target!.generators).toEqual([]); // the default mix
    const withLayers = parseInput(
      INPUT_TEMPLATE.replace(
        "BAKE:\n",
        "BAKE:\n  layers: 0-1\n  progressive: { from: 0.2 }\n  patience: 0\n",
      ),
    );
    expect(repositoryBakeSettings(withLayers.bake!)).toMatchObject({
      earlyStopping: { patience: 0, minDelta: 0 },
      progressive: { from: 0.2, fraction: 0.5 },
      lora: { layers: parseLayers("0-1") },
    });
  });
});

describe("the README's tour, run as written", () => {
  const commands = tourCommands(readFileSync(README, "utf8"));
  const run = (index: number, name: string): Promise<Run> => {
    const command = commands[index]!;
    expect(command.args.slice(0, name.split(" ").length).join(" ")).toBe(name);
    return forge(command.args, {}, command.input, dir);
  };

  it("lists the commands this test runs, in this order, then the ones it does not", () => {
    expect(commands.map((c) => c.args.slice(0, c.args[0] === "eval" ? 2 : 1).join(" "))).toEqual([
      "bake",
      "eval ab",
      "eval forgetting",
      "eval compare",
      "drift",
      "manifest",
      "chat",
      "pursue",
      "bake-quietstar",
      "bake",
      "serve",
      "eval run",
      "bake",
      "export-bake",
      "import-adapter",
      "pull",
    ]);
  });

  it("bakes the robot persona with the defaults, and the gates and checks that follow pass", async () => {
    const bake = await run(0, "bake");
    expect(bake.code, bake.stderr).toBe(0);
    const record = readJson("bakes", "robot", "forge.json");
    expect(record.stim[0]).toMatchObject({ type: "file", count: DEFAULT_STIM_COUNTS.questions });
    expect(readJson("bakes", "robot", "manifest.json").run.status).toBe("succeeded");

    // eval ab: prompted base vs baked on every forge-tiny task; no regression (exit 0)
    const ab = await run(1, "eval ab");
    expect(ab.code, `${ab.stdout}\n${ab.stderr}`).toBe(0);
    const comparison = readJson("ab", "robot", "comparison.json");
    const robot = comparison.tasks.find((t: { task: string }) => t.task === "persona-robot");
    expect(robot.result.meanA).toBeGreaterThan(0.95); // the prompted model is a robot
    expect(robot.result.meanB).toBeGreaterThanOrEqual(0.9 * robot.result.meanA); // so is the baked
    const poet = comparison.tasks.find((t: { task: string }) => t.task === "persona-poet-prompted");
    expect(poet.result.meanB).toBeGreaterThanOrEqual(poet.result.meanA - 0.1); // still a poet when told

    const forgetting = await run(2, "eval forgetting");
    expect(forgetting.code, `${forgetting.stdout}\n${forgetting.stderr}`).toBe(0);
    expect(existsSync(path.join(dir, "forgetting", "robot", "manifest.json"))).toBe(true);

    const compare = await run(3, "eval compare");
    expect(compare.code, `${compare.stdout}\n${compare.stderr}`).toBe(0);

    const drift = await run(4, "drift");
    expect(drift.code, drift.stderr).toBe(0);
    const curves = readJson("drift", "robot", "drift.json");
    expect(curves.baked.first).toBeGreaterThan(0.9);
    expect(curves.baked.curve).toHaveLength(30);

    const show = await run(5, "manifest");
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/bake/);

    const chat = await run(6, "chat");
    expect(chat.code, chat.stderr).toBe(0);
    expect(chat.stdout).toMatch(/And that is all, both great and small\./);
  }, 1_800_000);
});
