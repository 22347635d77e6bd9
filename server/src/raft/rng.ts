/**
 * Deterministic randomness for the Raft core. The core never reads a clock or Math.random; the
 * driver injects an Rng so that a whole cluster replays exactly from one seed.
 */

/** A source of uniform integers. */
export interface Rng {
  /** Uniform integer in [0, n). `n` must be a positive safe integer. */
  nextInt(n: number): number;
}

/**
 * mulberry32: a small 32-bit generator with a full 2^32 period, good enough for election jitter
 * and simulation scheduling (not for cryptography).
 */
export function seededRng(seed: number): Rng {
  let state = seed >>> 0;
  const next32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return {
    nextInt(n: number): number {
      if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`nextInt: n must be a positive integer, got ${n}`);
      if (n <= 0x1_0000_0000) {
        // Rejection sampling keeps the distribution uniform for any n.
        const limit = 0x1_0000_0000 - (0x1_0000_0000 % n);
        for (;;) {
          const x = next32();
          if (x < limit) return x % n;
        }
      }
      // Wider ranges: combine two draws (53 bits), then reduce.
      for (;;) {
        const x = next32() * 0x20_0000 + (next32() >>> 11);
        const limit = 2 ** 53 - (2 ** 53 % n);
        if (x < limit) return x % n;
      }
    },
  };
}
