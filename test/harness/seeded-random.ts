/**
 * Seeded randomness for cross-process tests: `SEED=` replays a run; `testSeed()` picks one at
 * random otherwise, and the caller prints `seed=N` on failure.
 */

/** `SEED` from the environment, or a fresh random seed. */
export function testSeed(): number {
  const env = process.env.SEED;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new Error(`SEED must be a non-negative integer, got ${env}`);
    return n >>> 0;
  }
  return Math.floor(Math.random() * 0xffffffff) >>> 0;
}

/** A small deterministic PRNG (mulberry32). Not for cryptography. */
export class SeededRandom {
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

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}

/** A seeded uniform source in [0, 1) as a function (mulberry32, the same sequence as SeededRandom). */
export function seededUniform(seed: number): () => number {
  const r = new SeededRandom(seed);
  return () => r.next();
}
