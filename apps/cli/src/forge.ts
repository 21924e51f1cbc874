import { type CAC, cac } from "cac";
import pc from "picocolors";
import pkg from "../package.json" with { type: "json" };
import { exitCodeFor, formatError, UsageError } from "./errors.js";

/**
 * Command groups (`forge tokenizer train`, `forge tokenizer encode`, …): each group's module
 * registers its subcommands on a parser of its own, and loads only when the group runs.
 */
const GROUPS: Record<
  string,
  { description: string; load: () => Promise<{ register(cli: CAC): void }> }
> = {
  tokenizer: {
    description: "Train, inspect and use byte-level BPE tokenizers (train, encode, decode)",
    load: () => import("./commands/tokenizer.js"),
  },
  data: {
    description: "forge-tiny's synthetic corpus (synth) and token caches (build)",
    load: () => import("./commands/data.js"),
  },
  train: {
    description:
      "Pretrain and fine-tune a model (--phase, --profile, --config, --resume; --list-profiles)",
    load: () => import("./commands/train.js"),
  },
  bake: {
    description:
      "Bake a prompt into a model's weights (stim → rollout → LoRA bake → KL before/after)",
    load: () => import("./commands/bake.js"),
  },
  "bake-quietstar": {
    description:
      "Quiet-STaR: thought tokens, an A/B test of thinking, and baking successful thoughts into the weights if it wins",
    load: () => import("./commands/quietstar.js"),
  },
  cycle: {
    description:
      "A/B cycles: bake task prompts and a self-discovered persona until both plateau (history, resume)",
    load: () => import("./commands/cycle.js"),
  },
  halfbake: {
    description:
      "Apply a bake at strength α (merged weights or a scaled adapter), on all or chosen layers",
    load: () => import("./commands/halfbake.js"),
  },
  pursue: {
    description:
      "Prompt pursuit: re-bake a prompt into its own baked model while an eval score improves",
    load: () => import("./commands/pursue.js"),
  },
  drift: {
    description:
      "Persona drift over a long conversation: prompted vs baked, per-turn curves (JSON + SVG)",
    load: () => import("./commands/drift.js"),
  },
  demo: {
    description:
      "The main job: bake a persona into forge-tiny and show the numbers (no arguments needed)",
    load: () => import("./commands/demo.js"),
  },
  eval: {
    description:
      "Evaluate models on task files; A/B tests, forgetting, offline comparison; CI gates (run, ab, forgetting, compare)",
    load: () => import("./commands/eval.js"),
  },
  init: {
    description: "Create a bake repository: input.yml, recipe.yml, .forge, hooks, merge driver",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerInit }),
  },
  add: {
    description: "Stage files in a bake repository (git add)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerAdd }),
  },
  commit: {
    description: "Commit in a bake repository (git commit; the hook refreshes .forge)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerCommit }),
  },
  run: {
    description: "Run stim, rollout, bake on the staged input.yml (--detach for a background bake)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerRun }),
  },
  status: {
    description: "Status of stim, rollout, bake and detached bakes in a bake repository",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerStatus }),
  },
  stim: {
    description: "Show the staged input's stimuli (--limit, --count)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerStim }),
  },
  rollout: {
    description: "Show the staged input's rollouts (--limit, --count)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerRollout }),
  },
  models: {
    description: "Models in the model store",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerModels }),
  },
  target: {
    description: "Targets that have run (ls, or a name)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerTarget }),
  },
  tree: {
    description: "The model lineage across every branch",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerTree }),
  },
  fetch: {
    description: "Commit finished detached bakes on the branches they started from",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerFetch }),
  },
  pipeline: {
    description:
      "Train a model on a git repository's history in one command (analyse, scrape, tokenize, train, report)",
    load: () => import("./commands/pipeline.js"),
  },
  scrape: {
    description: "A git repository's commits as JSONL (and token windows for training)",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerScrape }),
  },
  hook: {
    description: "(called by git) a bake repository's pre-commit or post-merge hook",
    load: async () => ({ register: (await import("./commands/recipe.js")).registerHook }),
  },
  manifest: {
    description: "Read run manifests: show (summary with sparklines), plot (loss curves as SVG)",
    load: () => import("./commands/manifest.js"),
  },
  "export-bake": {
    description:
      "Export a bake for distributed training: student input, trajectory and teacher top-K log-probabilities (JSONL)",
    load: async () => ({ register: (await import("./commands/scale-out.js")).registerExport }),
  },
  "import-adapter": {
    description:
      "Install a PEFT LoRA adapter trained elsewhere as a forge bake (checked against the base model)",
    load: async () => ({ register: (await import("./commands/scale-out.js")).registerImport }),
  },
  pull: {
    description:
      "Download a model from the Hugging Face hub (resumable, checked) so --model org/name works offline",
    load: () => import("./commands/pull.js"),
  },
  serve: {
    description:
      "Serve a model over the OpenAI API (chat completions, completions, logprobs, streaming) on 127.0.0.1",
    load: () => import("./commands/serve.js"),
  },
  chat: {
    description: "Chat with a model directory (interactive, or piped stdin)",
    load: async () => ({ register: (await import("./commands/chat.js")).registerChat }),
  },
  generate: {
    description: "One reply from a model directory (--system, --user)",
    load: async () => ({ register: (await import("./commands/chat.js")).registerGenerate }),
  },
};

/** Top-level commands; each command's module loads only when that command runs. */
function buildCli(): CAC {
  const cli = cac("forge");

  cli
    .command(
      "doctor",
      "Report Node, the compute backend (and why faster ones are unused), cores, memory and matmul speed",
    )
    .option("--json", "Print one JSON object instead of text")
    .option("--seconds <seconds>", "Length of the matmul probe in seconds", { default: 1 })
    .option(
      "--backend <name>",
      "Force a backend: tensorflow, wasm or cpu (default: FORGE_BACKEND, else the fastest that loads)",
    )
    .example("forge doctor --json")
    .action(async (options) => (await import("./commands/doctor.js")).doctor(options, pkg.version));

  for (const [name, group] of Object.entries(GROUPS)) {
    cli.command(`${name} [...arguments]`, group.description).allowUnknownOptions();
  }

  cli.help();
  cli.version(pkg.version);
  return cli;
}

/**
 * `--allow-special` → `--allowSpecial` before parsing: cac declares boolean flags to its
 * parser under camel-case names, so a kebab-case boolean would otherwise swallow the next
 * argument as its value. A `--no-` prefix stays as it is (`--no-measure` negates `--measure`).
 */
function camelCaseFlags(argv: string[]): string[] {
  const end = argv.indexOf("--");
  return argv.map((arg, i) =>
    (end === -1 || i < end) && /^--[a-z]+(-[a-z0-9]+)+(=|$)/.test(arg)
      ? arg.replace(
          /^--(no-)?([^=]+)/,
          (_, negated: string | undefined, flag: string) =>
            `--${negated ?? ""}${flag.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase())}`,
        )
      : arg,
  );
}

/**
 * cac turns an empty or blank value into the number 0 (`--prompt " "` would bake the prompt
 * "0"), so an option given an empty or whitespace-only value is refused before parsing.
 */
function refuseEmptyValues(argv: string[]): void {
  const end = argv.indexOf("--");
  for (const [i, arg] of argv.entries()) {
    if (end !== -1 && i >= end) break;
    const flag =
      /^--([^=]+)=\s*$/.exec(arg)?.[1] ??
      (/^--[^=]+$/.test(arg) && argv[i + 1] !== undefined && argv[i + 1]!.trim() === ""
        ? arg.slice(2)
        : undefined);
    if (flag !== undefined)
      throw new UsageError(`--${flag} is empty: give it a value, or leave the option out`);
  }
}

/**
 * The values of valued options exactly as typed. cac (through mri) turns anything that looks
 * like a number into one — `--prompt 007` would bake "7", `--run-id 1e3` name a run "1000" — so
 * every valued option gets its raw text back; commands parse numbers themselves. An option
 * given twice keeps the last value, as in git, unless its help says it is repeatable.
 */
function restoreRawValues(cli: CAC, argv: string[], options: Record<string, unknown>): void {
  const declared = [...cli.globalCommand.options, ...(cli.matchedCommand?.options ?? [])];
  const end = argv.indexOf("--");
  for (const option of declared) {
    // flags, and a valued option left without a value (cac reports that one itself)
    if (option.isBoolean || option.negated || typeof options[option.name] === "boolean") continue;
    const spellings = option.names.map((n) => (n.length === 1 ? `-${n}` : `--${n}`));
    const kebab = option.names
      .filter((n) => n.length > 1)
      .map((n) => `--${n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    const raw: string[] = [];
    for (let i = 0; i < argv.length && (end === -1 || i < end); i++) {
      const arg = argv[i]!;
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg : arg.slice(0, eq);
      if (!spellings.includes(name) && !kebab.includes(name)) continue;
      if (eq !== -1) raw.push(arg.slice(eq + 1));
      else if (argv[i + 1] !== undefined) raw.push(argv[++i]!);
    }
    if (raw.length === 0) continue;
    const repeatable = /repeatable/i.test(option.description);
    options[option.name] = repeatable && raw.length > 1 ? raw : raw.at(-1);
  }
}

async function run(cli: CAC, argv: string[], name: string): Promise<number> {
  refuseEmptyValues(argv.slice(2));
  const parsed = cli.parse(camelCaseFlags(argv), { run: false });
  restoreRawValues(cli, argv.slice(2), parsed.options);
  if (parsed.options.help || parsed.options.version) return 0; // cac printed them
  // A declared `--no-x` makes cac default `x` to true, which a valued `--x <n>` then refuses as
  // "value is missing": not given means not given.
  const declared = [...cli.globalCommand.options, ...(cli.matchedCommand?.options ?? [])];
  for (const option of declared)
    if (option.negated && parsed.options[option.name] === true) delete parsed.options[option.name];
  if (!cli.matchedCommand) {
    const unknown = cli.args[0];
    if (unknown !== undefined) {
      throw new UsageError(`unknown command "${unknown}"; run \`${name} --help\` for the list`);
    }
    cli.outputHelp();
    return 0;
  }
  const result: unknown = await cli.runMatchedCommand();
  return typeof result === "number" ? result : 0;
}

export async function main(argv: string[]): Promise<number> {
  // `pnpm forge …` runs in the workspace root; work where the user typed it instead.
  if (process.env.npm_lifecycle_event === "forge" && process.env.INIT_CWD)
    process.chdir(process.env.INIT_CWD);
  const groupName = argv[2];
  const group = groupName !== undefined ? GROUPS[groupName] : undefined;
  if (group) {
    const sub = cac(`forge ${groupName}`);
    (await group.load()).register(sub);
    sub.help();
    sub.version(pkg.version);
    return run(sub, [argv[0]!, argv[1]!, ...argv.slice(3)], `forge ${groupName}`);
  }
  return run(buildCli(), argv, "forge");
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${pc.red(formatError(error, Boolean(process.env.FORGE_DEBUG)))}\n`);
    process.exitCode = exitCodeFor(error);
  },
);
