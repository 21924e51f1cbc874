import { Ajv } from "ajv";
import { ManifestError } from "./errors.js";
import schema from "./manifest.schema.json" with { type: "json" };
import type { Manifest } from "./types.js";

export { schema as manifestSchema };

const ajv = new Ajv({ allErrors: true, strict: false });
const validator = ajv.compile(schema);

export interface ValidationProblem {
  /** JSON pointer to the offending value ("/run/status"); "" for the root. */
  path: string;
  message: string;
}

/** Check a value against the manifest schema; every problem with its path. */
export function validateManifest(
  value: unknown,
): { ok: true; value: Manifest } | { ok: false; errors: ValidationProblem[] } {
  if (validator(value)) return { ok: true, value: value as unknown as Manifest };
  const errors = (validator.errors ?? []).map((e) => {
    const missing =
      e.keyword === "required"
        ? `/${(e.params as { missingProperty: string }).missingProperty}`
        : "";
    const extra =
      e.keyword === "additionalProperties"
        ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
        : "";
    return { path: `${e.instancePath}${missing}`, message: `${e.message ?? "invalid"}${extra}` };
  });
  return { ok: false, errors };
}

/** Throw a ManifestError listing every schema problem (for the writer and readers). */
export function assertManifest(value: unknown, source: string): Manifest {
  const result = validateManifest(value);
  if (result.ok) return result.value;
  const list = result.errors.map((e) => `${e.path || "(root)"}: ${e.message}`).join("; ");
  throw new ManifestError("E_SCHEMA", `${source}: not a valid run manifest — ${list}`);
}
