/**
 * The cells the hot paths count into: plain numbers and fixed bucket arrays that cost no
 * allocation to update. The layers that count own their cells; the /metrics endpoint
 * (api/http/metrics.ts) reads them when scraped and writes them under etcd's names.
 */

/** Upper bounds `start, start*factor, ...` (`count` of them), as Prometheus' ExponentialBuckets. */
export function exponentialBuckets(start: number, factor: number, count: number): readonly number[] {
  const out: number[] = [];
  let b = start;
  for (let i = 0; i < count; i++) {
    out.push(b);
    b *= factor;
  }
  return out;
}

/**
 * A Prometheus histogram's state: one count per upper bound (not cumulative; the exposition
 * accumulates), plus the +Inf overflow, the sum and the count. `observe` allocates nothing.
 */
export class HistogramCell {
  /** counts[i] observations fell in (bounds[i-1], bounds[i]]; counts[bounds.length] above all. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}
