// Problems the release checks found, and the few that are known and owned by work in flight.
//
// A known problem is recorded here, with who fixes it, instead of being hidden in the check
// that finds it. It does not fail CI while it occurs; once it no longer occurs, its entry
// fails CI until it is deleted, so no entry outlives its problem and silences a later one.

/** @typedef {{ check: string, package: string, entry?: string, message: string }} Problem */
// A known entry matches a problem with the same check, package and (when given) entry, whose
// message matches `message` (when given) — so a different failure of the same check still fails.
// For the packing step (tools/pack-check.mjs) `package` is the part (a–d) and `entry` the check.

// None today. An entry looks like
//   { check: "pack", package: "d", entry: "<the check's name>", message: /<its failure>/,
//     why: "<what is wrong, and which work fixes it>" }
/** @type {{ check: string, package: string, entry?: string, message?: RegExp, why: string }[]} */
export const KNOWN_PROBLEMS = [];

function matches(known, problem) {
  return (
    known.check === problem.check &&
    known.package === problem.package &&
    (known.entry === undefined || known.entry === problem.entry) &&
    (known.message === undefined || known.message.test(problem.message))
  );
}

/** The known entry a problem matches, if any. */
export function knownEntry(problem, known = KNOWN_PROBLEMS) {
  return known.find((entry) => matches(entry, problem));
}

function label(item) {
  return `${item.check}: ${item.package}${item.entry ? ` ${item.entry}` : ""}`;
}

/**
 * Prints the problems of the checks named in `checks` and returns the exit code: 0 when every
 * problem found is a known one and every known one of these checks still occurs, else 1.
 * `strict`: known problems fail too. `inScope`: which known entries this run could see.
 * `known`: the entries (KNOWN_PROBLEMS unless a test passes its own).
 * @param {Problem[]} problems
 * @param {string[]} checks
 * @param {{ strict?: boolean, inScope?: (entry: object) => boolean, known?: object[] }} [options]
 */
export function settle(
  problems,
  checks,
  { strict = false, inScope = () => true, known: entries = KNOWN_PROBLEMS } = {},
) {
  let failed = false;
  const known = entries.filter((entry) => checks.includes(entry.check) && inScope(entry));
  for (const problem of problems) {
    const entry = known.find((candidate) => matches(candidate, problem));
    if (entry && !strict) {
      console.log(
        `known (not failing): ${label(problem)}: ${problem.message}\n  why: ${entry.why}`,
      );
    } else {
      failed = true;
      console.error(
        `FAIL ${label(problem)}: ${problem.message}${entry ? `\n  known: ${entry.why}` : ""}`,
      );
    }
  }
  for (const entry of known) {
    if (!problems.some((problem) => matches(entry, problem))) {
      failed = true;
      console.error(
        `FAIL known problem no longer occurs (${label(entry)}): delete its entry in tools/lib/problems.mjs`,
      );
    }
  }
  return failed ? 1 : 0;
}
