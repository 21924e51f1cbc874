// Problems the release checks found, and the few that are known and owned by work in flight.
//
// A known problem is recorded here, with who fixes it, instead of being hidden in the check
// that finds it. It does not fail CI while it occurs; once it no longer occurs, its entry
// fails CI until it is deleted, so no entry outlives its problem and silences a later one.

/** @typedef {{ check: string, package: string, entry?: string, message: string }} Problem */

export const KNOWN_PROBLEMS = [
  {
    check: "declarations",
    package: "@forge/eval",
    entry: "./stats",
    why:
      "tsup's multi-entry .d.ts bundling declares the other entry's chunk exports (issue #15: " +
      "'no phantom declarations'); fixed by the @forge/eval rework (eval-interface branch)",
  },
  {
    check: "readme",
    package: "@forge/eval",
    why:
      "packages/eval/README.md is being rewritten by the @forge/eval rework (eval-interface " +
      "branch), which adds the install line and the ESM-only sentence",
  },
];

function matches(known, problem) {
  return (
    known.check === problem.check &&
    known.package === problem.package &&
    (known.entry === undefined || known.entry === problem.entry)
  );
}

function label(item) {
  return `${item.check}: ${item.package}${item.entry ? ` ${item.entry}` : ""}`;
}

/**
 * Prints the problems of the checks named in `checks` and returns the exit code: 0 when every
 * problem found is a known one and every known one of these checks still occurs, else 1.
 * @param {Problem[]} problems
 * @param {string[]} checks
 */
export function settle(problems, checks) {
  let failed = false;
  const known = KNOWN_PROBLEMS.filter((entry) => checks.includes(entry.check));
  for (const problem of problems) {
    const entry = known.find((candidate) => matches(candidate, problem));
    if (entry) {
      console.log(
        `known (not failing): ${label(problem)}: ${problem.message}\n  why: ${entry.why}`,
      );
    } else {
      failed = true;
      console.error(`FAIL ${label(problem)}: ${problem.message}`);
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
