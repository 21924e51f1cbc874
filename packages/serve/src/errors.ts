import { type ForgeError, packageError } from "@forge/core";

export type ServeErrorCode =
  /** a bad argument: a server option, a request the engine cannot run */
  | "E_INPUT"
  /** the address cannot be bound (in use, not permitted) */
  | "E_IO";

/**
 * The one error type @forge/serve throws: a @forge/core ForgeError (its category decides the
 * CLI's exit code); `message` names the option or field at fault and what would be accepted.
 */
export const ServeError = packageError<ServeErrorCode>("ServeError");
export type ServeError = ForgeError<ServeErrorCode>;
