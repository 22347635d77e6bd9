/**
 * The simulated network between members: every message gets a delivery time from the current
 * fault settings, so messages can be dropped, delayed, duplicated and reordered; partitions block
 * directed links (a symmetric partition blocks both directions, a one-way fault only one) and are
 * checked when a message is sent and again when it is due. `heal()` clears partitions and
 * restores a calm network.
 */
import type { SimRng } from "./sim-rng.js";

export interface NetworkFaults {
  /** Probability that a message is lost. */
  dropRate: number;
  /** Probability that a message is delivered twice (each copy with its own delay). */
  duplicateRate: number;
  /** Delivery delay bounds in time units (inclusive); a spread reorders messages. */
  minDelayUnits: number;
  maxDelayUnits: number;
}

export const CALM_NETWORK: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelayUnits: 1, maxDelayUnits: 3 };

export interface InFlight<M> {
  deliverAt: number;
  /** Tie-breaker: send order. */
  seq: number;
  from: bigint;
  to: bigint;
  msg: M;
}

export type SendFate = "queued" | "dropped" | "blocked";

export class SimNetwork<M> {
  private faults: NetworkFaults = { ...CALM_NETWORK };
  private readonly blocked = new Set<string>();
  private readonly heap: InFlight<M>[] = [];
  private seq = 0;
  /** Counters for the run summary. */
  sent = 0;
  dropped = 0;
  duplicated = 0;

  constructor(private readonly rng: SimRng) {}

  setFaults(f: NetworkFaults): void {
    this.faults = { ...f };
  }

  currentFaults(): Readonly<NetworkFaults> {
    return this.faults;
  }

  /** Blocks from -> to (one direction). */
  blockOneWay(from: bigint, to: bigint): void {
    this.blocked.add(linkKey(from, to));
  }

  /** Splits members into groups that cannot talk across (both directions). */
  partition(groups: bigint[][]): void {
    for (let i = 0; i < groups.length; i++) {
      for (let j = 0; j < groups.length; j++) {
        if (i === j) continue;
        for (const a of groups[i]!) for (const b of groups[j]!) this.blocked.add(linkKey(a, b));
      }
    }
  }

  isBlocked(from: bigint, to: bigint): boolean {
    return this.blocked.has(linkKey(from, to));
  }

  hasPartitions(): boolean {
    return this.blocked.size > 0;
  }

  /** Clears partitions; with `calm`, also resets faults to a reliable, fast network. */
  heal(calm: boolean): void {
    this.blocked.clear();
    if (calm) this.faults = { ...CALM_NETWORK };
  }

  /**
   * Sends `msg`; `clone` makes a duplicate's copy, or returns undefined for a message that is
   * never duplicated.
   */
  send(from: bigint, to: bigint, msg: M, now: number, clone: (m: M) => M | undefined): SendFate {
    this.sent++;
    if (this.isBlocked(from, to)) {
      this.dropped++;
      return "blocked";
    }
    if (this.rng.chance(this.faults.dropRate)) {
      this.dropped++;
      return "dropped";
    }
    this.enqueue(from, to, msg, now);
    if (this.rng.chance(this.faults.duplicateRate)) {
      const copy = clone(msg);
      if (copy !== undefined) {
        this.duplicated++;
        this.enqueue(from, to, copy, now);
      }
    }
    return "queued";
  }

  private enqueue(from: bigint, to: bigint, msg: M, now: number): void {
    const delay = this.rng.between(this.faults.minDelayUnits, Math.max(this.faults.minDelayUnits, this.faults.maxDelayUnits));
    this.push({ deliverAt: now + delay, seq: this.seq++, from, to, msg });
  }

  /** Removes and returns the next message due at or before `now` (undefined if none). */
  popDue(now: number): InFlight<M> | undefined {
    const top = this.heap[0];
    if (top === undefined || top.deliverAt > now) return undefined;
    return this.pop();
  }

  /** When the next message falls due, or undefined when none is in flight. */
  nextDueAt(): number | undefined {
    return this.heap[0]?.deliverAt;
  }

  inFlightCount(): number {
    return this.heap.length;
  }

  /** Drops every message in flight (every member restarted: all connections were reset). */
  clear(): number {
    const n = this.heap.length;
    this.heap.length = 0;
    return n;
  }

  /** Drops every message in flight to or from `id` (a crashed member's sockets die with it). */
  dropAllFor(id: bigint, filter?: (m: InFlight<M>) => boolean): number {
    const keep = this.heap.filter((m) => !(m.to === id || m.from === id) || (filter !== undefined && !filter(m)));
    const lost = this.heap.length - keep.length;
    this.heap.length = 0;
    for (const m of keep) this.push(m);
    return lost;
  }

  private push(item: InFlight<M>): void {
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): InFlight<M> {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before<M>(a: InFlight<M>, b: InFlight<M>): boolean {
  return a.deliverAt < b.deliverAt || (a.deliverAt === b.deliverAt && a.seq < b.seq);
}

function linkKey(from: bigint, to: bigint): string {
  return `${from}>${to}`;
}
