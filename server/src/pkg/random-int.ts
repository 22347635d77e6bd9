/**
 * The random source simulated crashes draw from: `rng(n)` returns an integer in [0, n) for a
 * positive integer n. Pass a seeded one (a simulation's), so a run replays exactly; never
 * Math.random.
 */
export type RandomInt = (n: number) => number;

/** `rng(n)`, checked: throws RangeError when the source returns anything but an integer in [0, n). */
export function drawInt(rng: RandomInt, n: number): number {
  const k = rng(n);
  if (!Number.isInteger(k) || k < 0 || k >= n) throw new RangeError(`random source returned ${k}, wanted an integer in [0, ${n})`);
  return k;
}
