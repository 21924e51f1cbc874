/**
 * Seeded randomness for everything forge samples, shuffles or splits: mulberry32, a small
 * generator whose whole state is one 32-bit integer — so a training run can save it in a
 * checkpoint and resume the same sequence. Deterministic under a seed; not for secrets.
 */

/** The generator as a function: each call returns a uniform number in [0, 1). */
export function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A fresh 31-bit seed (for code that takes a seed, such as tfjs ops). */
  seed(): number {
    return Math.floor(this.next() * 2147483647);
  }

  /** One item of a non-empty list, uniformly. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A shuffled copy (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** The state to save. */
  get snapshot(): number {
    return this.state;
  }

  /** A generator continuing from a saved state. */
  static restore(snapshot: number): Rng {
    const rng = new Rng(0);
    rng.state = snapshot >>> 0;
    return rng;
  }
}
