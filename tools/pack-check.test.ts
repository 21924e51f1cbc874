/**
 * The packing step's JUnit verdict comes from a strict XML parser: what the eval engineer's
 * escaping must survive (control characters) is refused here, well-formed JUnit is accepted.
 * (The packing step itself installs from the registry and runs in CI: tools/pack-check.mjs.)
 */
import { describe, expect, it } from "vitest";
import { xmlProblems } from "./pack-check.mjs";

const junit = (name: string, failure = "") =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="t" tests="1" failures="${failure ? 1 : 0}">\n  <testsuite name="t" tests="1" failures="${failure ? 1 : 0}">\n    <testcase classname="forge.eval" name="${name}" time="0">${failure}</testcase>\n  </testsuite>\n</testsuites>\n`;

describe("xmlProblems", () => {
  it("accepts well-formed JUnit and counts its test cases and failures", () => {
    const result = xmlProblems(junit("capitals &amp; more", '<failure message="worse"/>'));
    expect(result.problems).toEqual([]);
    expect(result).toMatchObject({ testcases: 1, failures: 1, declaredFailures: 1 });
  });

  it("refuses a control character, an undefined entity, a raw ampersand and broken nesting", () => {
    expect(xmlProblems(junit("base\u0007model")).problems.join()).toMatch(/disallowed character/);
    expect(xmlProblems(junit("a &bogus; b")).problems.join()).toMatch(/entity/);
    expect(xmlProblems(junit("a & b")).problems.length).toBeGreaterThan(0);
    expect(xmlProblems("<a><b></a>").problems.length).toBeGreaterThan(0);
  });
});
