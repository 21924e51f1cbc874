const FORGE_ERROR = Symbol.for("forge.error");

/** Bad usage: unknown command or option, an option value out of range. Exit code 2. */
export class UsageError extends Error {
  readonly [FORGE_ERROR] = true;
  readonly code = "E_USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A gate or check failed (eval regression, bake did not converge). Exit code 1. */
export class CheckFailedError extends Error {
  readonly code = "E_CHECK_FAILED";
  constructor(message: string) {
    super(message);
    this.name = "CheckFailedError";
  }
}

/** Exit codes, as documented in docs/architecture.md. */
export const EXIT = { ok: 0, checkFailed: 1, usage: 2, internal: 3 } as const;

function isForgeError(error: unknown): error is Error & { code: string } {
  return (
    typeof error === "object" &&
    error !== null &&
    (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true
  );
}

/**
 * The one place errors become exit codes. Errors from forge packages describe bad input or an
 * unusable environment (2); cac's own errors are bad usage (2); anything else is a bug (3).
 */
export function exitCodeFor(error: unknown): number {
  if (error instanceof CheckFailedError) return EXIT.checkFailed;
  if (isForgeError(error)) return EXIT.usage;
  if (error instanceof Error && error.name === "CACError") return EXIT.usage;
  return EXIT.internal;
}

export function formatError(error: unknown, debug: boolean): string {
  const code = exitCodeFor(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === EXIT.internal) {
    const detail = debug && error instanceof Error && error.stack ? `\n${error.stack}` : "";
    const hint = debug ? "" : "\n(internal error; set FORGE_DEBUG=1 for a stack trace)";
    return `forge: ${message}${detail}${hint}`;
  }
  return `forge: ${message}`;
}
