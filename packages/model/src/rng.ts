/**
 * A small seeded random number generator (mulberry32) whose whole state is one 32-bit
 * integer, so a training run can save it in a checkpoint and resume the same sequence.
 */
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

  /** A fresh 31-bit seed (for tfjs ops that take a seed). */
  seed(): number {
    return Math.floor(this.next() * 2147483647);
  }

  /** The state to save. */
  get snapshot(): number {
    return this.state;
  }

  static restore(snapshot: number): Rng {
    const rng = new Rng(0);
    rng.state = snapshot >>> 0;
    return rng;
  }
}
