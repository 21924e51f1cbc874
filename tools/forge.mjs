#!/usr/bin/env node
/**
 * `pnpm forge …`: build the CLI (turbo; cached after the first run) then run it with the
 * arguments given. The first build takes minutes on a small machine, so it says so before it
 * starts instead of sitting silent; a rebuild after sources changed says so once it has taken
 * more than two seconds (a cache hit is silent). Turbo's errors go to stderr; the CLI's exit
 * code (or signal) is this script's.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "apps", "cli", "dist", "forge.js");

/** How long the first build took on the project's 2-core machines (turbo, every package). */
export const FIRST_BUILD_ESTIMATE = "~3 min on 2 cores";

/** The line printed before a build: the first, or after sources changed. */
export function buildMessage(first) {
  return first
    ? `building forge (first run, ${FIRST_BUILD_ESTIMATE})…`
    : "building forge (sources changed since the last build)…";
}

function run(command, args, options) {
  return new Promise((resolve) => {
    const child = spawn(command, args, options);
    child.on("error", (error) => resolve({ code: 127, signal: null, error }));
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
}

async function main() {
  const first = !existsSync(cli);
  let timer;
  if (first) process.stderr.write(`${buildMessage(true)}\n`);
  else timer = setTimeout(() => process.stderr.write(`${buildMessage(false)}\n`), 2000);
  const build = await run(
    "turbo",
    ["run", "build", "--filter=@forge/cli...", "--output-logs=errors-only"],
    { cwd: root, stdio: ["ignore", 2, 2] },
  );
  clearTimeout(timer);
  if (build.error) {
    process.stderr.write(`forge: could not run turbo to build forge: ${build.error.message}\n`);
    return 127;
  }
  if (build.code !== 0) {
    process.stderr.write("forge: the build failed (turbo's errors above)\n");
    return build.code ?? 1;
  }
  const child = spawn(process.execPath, [cli, ...process.argv.slice(2)], { stdio: "inherit" });
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
  const done = await new Promise((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  if (done.signal) {
    process.removeAllListeners(done.signal);
    process.kill(process.pid, done.signal);
    return 1;
  }
  return done.code ?? 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main();
}
