/**
 * One error base for every forge package. An error's `category` says what kind of failure it
 * is, and the category alone decides the CLI's exit code (`exitCodeFor`), in one place:
 *
 *   gate         a check the user asked for failed (an eval regression, a demo bar)   exit 1
 *   usage        bad command-line usage (unknown option, value out of range)          exit 2
 *   input        a file or value forge was given is unusable (the message says where) exit 2
 *   io           the machine refused a read or write (disk full, permission, read-only) exit 2
 *   interrupted  the user stopped the run (SIGINT/SIGTERM); it is resumable           exit 130
 *   internal     a bug in forge                                                        exit 3
 *
 * `isInstance` survives duplicated installs (it checks a registry symbol, not the class).
 */

const FORGE_ERROR = Symbol.for("forge.error");

export type ErrorCategory = "gate" | "usage" | "input" | "io" | "interrupted" | "internal";

/** Exit codes by category, as docs/architecture.md documents them. */
export const EXIT_CODES: Readonly<Record<ErrorCategory, number>> = {
  gate: 1,
  usage: 2,
  input: 2,
  io: 2,
  interrupted: 130,
  internal: 3,
};

/** The category an error code implies when the thrower does not say. */
function categoryOf(code: string): ErrorCategory {
  if (code === "E_IO") return "io";
  if (code === "E_USAGE") return "usage";
  if (code === "E_GATE" || code === "E_CHECK_FAILED") return "gate";
  if (code === "E_INTERRUPTED") return "interrupted";
  if (code === "E_INTERNAL") return "internal";
  return "input";
}

export interface ForgeErrorOptions {
  cause?: unknown;
  /** Overrides the category the code implies. */
  category?: ErrorCategory;
}

export class ForgeError<Code extends string = string> extends Error {
  readonly [FORGE_ERROR] = true;
  readonly code: Code;
  readonly category: ErrorCategory;

  constructor(code: Code, message: string, options: ForgeErrorOptions = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "ForgeError";
    this.code = code;
    this.category = options.category ?? categoryOf(code);
  }

  /** True for any forge error, from any copy of any forge package. */
  static isInstance(error: unknown): error is ForgeError {
    return (
      typeof error === "object" &&
      error !== null &&
      (error as { [FORGE_ERROR]?: boolean })[FORGE_ERROR] === true
    );
  }
}

/** The class a package's errors are: a ForgeError with the package's name and code union. */
export interface PackageErrorClass<Code extends string> {
  new (code: Code, message: string, options?: ForgeErrorOptions): ForgeError<Code>;
  /** True for this package's errors, even from another installed copy of the package. */
  isInstance(error: unknown): error is ForgeError<Code>;
}

/**
 * A package's error class, e.g. `export const ModelError = packageError<ModelErrorCode>("ModelError")`:
 * a ForgeError whose `name` says which package threw it.
 */
export function packageError<Code extends string>(name: string): PackageErrorClass<Code> {
  const named = class extends ForgeError<Code> {
    constructor(code: Code, message: string, options?: ForgeErrorOptions) {
      super(code, message, options);
      this.name = name;
    }

    static override isInstance(error: unknown): error is ForgeError<Code> {
      return ForgeError.isInstance(error) && (error as Error).name === name;
    }
  };
  Object.defineProperty(named, "name", { value: name });
  return named;
}

/** A check the user asked for failed. Exit code 1. */
export class GateError extends ForgeError<"E_GATE"> {
  constructor(message: string) {
    super("E_GATE", message);
    this.name = "GateError";
  }

  static override isInstance(error: unknown): error is GateError {
    return ForgeError.isInstance(error) && error.category === "gate";
  }
}

/** Bad command-line usage. Exit code 2. */
export class UsageError extends ForgeError<"E_USAGE"> {
  constructor(message: string) {
    super("E_USAGE", message);
    this.name = "UsageError";
  }

  static override isInstance(error: unknown): error is UsageError {
    return ForgeError.isInstance(error) && error.category === "usage";
  }
}

/** The run was stopped by a signal; what it saved is resumable. Exit code 130. */
export class InterruptedError extends ForgeError<"E_INTERRUPTED"> {
  constructor(message: string) {
    super("E_INTERRUPTED", message);
    this.name = "InterruptedError";
  }

  static override isInstance(error: unknown): error is InterruptedError {
    return ForgeError.isInstance(error) && error.category === "interrupted";
  }
}

/** Node's system error codes that mean "the machine refused", not "forge has a bug". */
const SYSTEM_REFUSALS: Record<string, string> = {
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  ENOENT: "no such file or directory",
  ENOTDIR: "a path component is not a directory",
  EISDIR: "is a directory",
  ENOTEMPTY: "directory not empty",
  EEXIST: "already exists",
  EBUSY: "resource busy",
  EIO: "input/output error",
};

export function isSystemRefusal(error: unknown): error is NodeJS.ErrnoException {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && code in SYSTEM_REFUSALS;
}

/** "no space left on the device (ENOSPC)" for a Node system error; its message otherwise. */
export function describeSystemError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === "string" && code in SYSTEM_REFUSALS)
    return `${SYSTEM_REFUSALS[code]} (${code})`;
  return error instanceof Error ? error.message : String(error);
}

/**
 * A failed read or write as a forge io error naming the path: `cannot write <path>: no space
 * left on the device (ENOSPC)`. Forge errors pass through unchanged.
 */
export function ioError(error: unknown, file: string, verb = "write"): ForgeError {
  if (ForgeError.isInstance(error)) return error;
  return new ForgeError("E_IO", `cannot ${verb} ${file}: ${describeSystemError(error)}`, {
    cause: error,
    category: "io",
  });
}

/** The one mapping from an error to an exit code. */
export function exitCodeFor(error: unknown): number {
  if (ForgeError.isInstance(error)) return EXIT_CODES[error.category] ?? EXIT_CODES.internal;
  if (error instanceof Error && error.name === "CACError") return EXIT_CODES.usage;
  // A system refusal that escaped a package's own wrapping is still the machine, not a bug.
  if (isSystemRefusal(error)) return EXIT_CODES.io;
  return EXIT_CODES.internal;
}

/** The one-line message for an error (a stack trace only for internal errors, when asked). */
export function formatError(error: unknown, debug = false): string {
  const code = exitCodeFor(error);
  let message = error instanceof Error ? error.message : String(error);
  if (!ForgeError.isInstance(error) && isSystemRefusal(error)) {
    const file = error.path ?? (error as { dest?: string }).dest;
    message = `cannot ${error.syscall ?? "access"} ${file ?? ""}: ${describeSystemError(error)}`;
  }
  if (code === EXIT_CODES.internal) {
    const detail = debug && error instanceof Error && error.stack ? `\n${error.stack}` : "";
    const hint = debug ? "" : "\n(internal error; set FORGE_DEBUG=1 for a stack trace)";
    return `forge: ${message}${detail}${hint}`;
  }
  return `forge: ${message}`;
}
