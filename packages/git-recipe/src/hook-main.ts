/**
 * `node dist/hook-main.js hook <pre-commit|post-merge>`: a git hook entry with no CLI around it
 * (the same arguments as `forge hook <name>`, so either can be a repository's hook command).
 */
import { runHook } from "./hook.js";

const args = process.argv.slice(2);
runHook((args[0] === "hook" ? args[1] : args[0]) ?? "").catch((error: unknown) => {
  process.stderr.write(`forge hook: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
