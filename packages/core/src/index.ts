export {
  describeSystemError,
  type ErrorCategory,
  EXIT_CODES,
  exitCodeFor,
  ForgeError,
  type ForgeErrorOptions,
  formatError,
  GateError,
  InterruptedError,
  ioError,
  isSystemRefusal,
  type PackageErrorClass,
  packageError,
  UsageError,
} from "./errors.js";
export {
  parseJson,
  readJsonFile,
  readTextFile,
  temporarySibling,
  writeFileAtomic,
  writeJsonAtomic,
} from "./fs.js";
export { parseJsonl, readJsonl, toJsonl } from "./jsonl.js";
export {
  type AcquireOptions,
  acquireLock,
  acquireLockWaiting,
  type Lock,
  type LockInfo,
  processAlive,
  readLock,
  transferLock,
  type WaitOptions,
} from "./lock.js";
export {
  type ClaimOptions,
  checkOutputPath,
  claimOutput,
  OUTPUT_MARKER,
  type OutputClaim,
  type OutputMarker,
  readOutputMarker,
  writeOutputDirectory,
} from "./output.js";
export { type InsideOptions, isInside, realPath, resolveInside } from "./paths.js";
export { mulberry32, Rng } from "./random.js";
export { type Interrupt, interruptOnSignals } from "./signals.js";
export {
  DEFAULT_YAML_LIMITS,
  type LocatedProblem,
  locatedError,
  type ParsedYaml,
  parseYaml,
  type YamlLimits,
} from "./yaml.js";
