import { cac } from "cac";
import pc from "picocolors";
import pkg from "../package.json" with { type: "json" };
import { EXIT, exitCodeFor, formatError, UsageError } from "./errors.js";

/** Build the command table. Each command's module loads only when that command runs. */
function buildCli() {
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

  cli.help();
  cli.version(pkg.version);
  return cli;
}

export async function main(argv: string[]): Promise<number> {
  const cli = buildCli();
  const parsed = cli.parse(argv, { run: false });
  if (parsed.options.help || parsed.options.version) return EXIT.ok; // cac printed them
  if (!cli.matchedCommand) {
    const unknown = cli.args[0];
    if (unknown !== undefined) {
      throw new UsageError(`unknown command "${unknown}"; run \`forge --help\` for the list`);
    }
    cli.outputHelp();
    return EXIT.ok;
  }
  const result: unknown = await cli.runMatchedCommand();
  return typeof result === "number" ? result : EXIT.ok;
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
