/**
 * Option values shared by the commands: lists of repeatable options and numbers checked against
 * what they must be, each error naming the flag.
 */
import { UsageError } from "./errors.js";

/** A repeatable option's values (none, one, or several), as strings. */
export const asList = (value: unknown): string[] =>
  value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String);

/**
 * A number option: undefined when not given, else a finite number passing `check`, else a usage
 * error `--<name> must be <expected>; got …`.
 */
export function numberOption(
  value: unknown,
  name: string,
  check: (n: number) => boolean,
  expected: string,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value === "boolean" || String(value).trim() === "" || !Number.isFinite(n) || !check(n))
    throw new UsageError(`--${name} must be ${expected}; got ${JSON.stringify(value)}`);
  return n;
}

/** An integer option of at least `minimum`, or `fallback` when not given. */
export function integerOption(
  value: unknown,
  name: string,
  options: { minimum: number; fallback: number },
): number {
  return (
    numberOption(
      value,
      name,
      (n) => Number.isInteger(n) && n >= options.minimum,
      `an integer ≥ ${options.minimum}`,
    ) ?? options.fallback
  );
}

/** A positive integer option, or undefined when not given. */
export const positiveInt = (value: unknown, name: string) =>
  numberOption(value, name, (n) => Number.isInteger(n) && n >= 1, "a positive integer");
