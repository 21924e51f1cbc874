import { describe, expect, it } from "vitest";
import { LossError } from "./errors.js";
import { sequenceKL, tokenLevelKL } from "./monte-carlo.js";
import * as reference from "./reference.js";

/** Draw from a categorical distribution given probabilities, with a seeded LCG. */
function sampler(seed: number) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  return (probs: number[]) => {
    let u = uniform();
    for (let i = 0; i < probs.length; i++) {
      u -= probs[i]!;
      if (u <= 0) return i;
    }
    return probs.length - 1;
  };
}

describe("Monte-Carlo KL (Eq. 3)", () => {
  it("the sequence estimate is the mean log-ratio, with the textbook standard error", () => {
    const teacher = [-3, -2, -4, -1];
    const student = [-4, -2.5, -4, -3];
    const result = sequenceKL(teacher, student);
    // differences 1, 0.5, 0, 2: mean 0.875, sample variance 0.72917, SE = sqrt(0.72917/4)
    expect(result.estimate).toBeCloseTo(0.875, 12);
    expect(result.standardError).toBeCloseTo(Math.sqrt(0.7291666666666666 / 4), 12);
    expect(result.ci95[0]).toBeCloseTo(0.875 - 1.96 * result.standardError, 12);
    expect(result.n).toBe(4);
  });

  it("both estimators converge to the exact KL of a two-step sequence model; the token-level one has lower variance", () => {
    // Teacher and student over length-2 sequences from a 3-symbol alphabet, step 2 depends on step 1.
    const teacherFirst = [0.5, 0.3, 0.2];
    const studentFirst = [0.4, 0.4, 0.2];
    const teacherSecond = [
      [0.7, 0.2, 0.1],
      [0.1, 0.8, 0.1],
      [0.3, 0.3, 0.4],
    ];
    const studentSecond = [
      [0.5, 0.3, 0.2],
      [0.2, 0.6, 0.2],
      [0.3, 0.4, 0.3],
    ];
    const kl = (p: number[], q: number[]) => reference.klLogProbs(p.map(Math.log), q.map(Math.log));
    const exact =
      kl(teacherFirst, studentFirst) +
      teacherFirst.reduce((acc, p, a) => acc + p * kl(teacherSecond[a]!, studentSecond[a]!), 0);
    const draw = sampler(42);
    const teacherLog: number[] = [];
    const studentLog: number[] = [];
    const perPosition: number[][] = [];
    for (let i = 0; i < 20_000; i++) {
      const a = draw(teacherFirst);
      const b = draw(teacherSecond[a]!);
      teacherLog.push(Math.log(teacherFirst[a]!) + Math.log(teacherSecond[a]![b]!));
      studentLog.push(Math.log(studentFirst[a]!) + Math.log(studentSecond[a]![b]!));
      perPosition.push([kl(teacherFirst, studentFirst), kl(teacherSecond[a]!, studentSecond[a]!)]);
    }
    const sequence = sequenceKL(teacherLog, studentLog);
    const token = tokenLevelKL(perPosition);
    expect(Math.abs(sequence.estimate - exact)).toBeLessThan(3 * sequence.standardError);
    expect(Math.abs(token.estimate - exact)).toBeLessThan(3 * token.standardError);
    expect(token.standardError).toBeLessThan(sequence.standardError / 3);
  });

  it("rejects mismatched lengths, fewer than two trajectories and non-finite values", () => {
    expect(() => sequenceKL([1, 2], [1])).toThrow(
      "teacherLogProbs has 2 trajectories and studentLogProbs 1; they must match",
    );
    expect(() => sequenceKL([1], [1])).toThrow(/at least 2 trajectories/);
    expect(() => sequenceKL([1, Number.NaN], [1, 2])).toThrow(
      "teacherLogProbs[1] is NaN; log-probabilities must be finite",
    );
    expect(() => tokenLevelKL([[0.1], [-0.5]])).toThrow(
      "perPositionKL[1][0] is -0.5; a KL is finite and ≥ 0",
    );
    expect(() => tokenLevelKL([[0.1]])).toThrow(LossError);
  });
});
