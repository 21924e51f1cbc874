/**
 * The CLI's errors are @forge/core's: the category of an error decides the exit code, in one
 * place (`exitCodeFor`), as docs/architecture.md documents.
 */
export {
  EXIT_CODES,
  exitCodeFor,
  formatError,
  GateError,
  InterruptedError,
  UsageError,
} from "@forge/core";
