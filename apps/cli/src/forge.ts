import { type CAC, cac } from "cac";
import pc from "picocolors";
import pkg from "../package.json" with { type: "json" };
import { EXIT, exitCodeFor, formatError, UsageError } from "./errors.js";

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
    cli.command(`${name} <subcommand>`, group.description).allowUnknownOptions();
  }

  cli.help();
  cli.version(pkg.version);
  return cli;
}

/**
 * `--allow-special` → `--allowSpecial` before parsing: cac declares boolean flags to its
 * parser under camel-case names, so a kebab-case boolean would otherwise swallow the next
 * argument as its value.
 */
function camelCaseFlags(argv: string[]): string[] {
  const end = argv.indexOf("--");
  return argv.map((arg, i) =>
    (end === -1 || i < end) && /^--[a-z]+(-[a-z0-9]+)+(=|$)/.test(arg)
      ? arg.replace(
          /^--([^=]+)/,
          (_, flag: string) =>
            `--${flag.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase())}`,
        )
      : arg,
  );
}

async function run(cli: CAC, argv: string[], name: string): Promise<number> {
  const parsed = cli.parse(camelCaseFlags(argv), { run: false });
  if (parsed.options.help || parsed.options.version) return EXIT.ok; // cac printed them
  if (!cli.matchedCommand) {
    const unknown = cli.args[0];
    if (unknown !== undefined) {
      throw new UsageError(`unknown command "${unknown}"; run \`${name} --help\` for the list`);
    }
    cli.outputHelp();
    return EXIT.ok;
  }
  const result: unknown = await cli.runMatchedCommand();
  return typeof result === "number" ? result : EXIT.ok;
}

export async function main(argv: string[]): Promise<number> {
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
