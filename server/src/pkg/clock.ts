/**
 * Time for everything above the Raft core: the current time and timers behind one interface, so
 * that a member can run on the machine's clock (`systemClock`) or on virtual time (`ManualClock`,
 * which only moves when told to and fires timers in a fixed order).
 *
 * The lessor's `Clock` (lease/lessor.ts) is the `nowMs` part of this interface; any `Clock` here
 * satisfies it.
 */
import sortedBtree from "sorted-btree";

// sorted-btree is CommonJS: under Node's ESM loader the class is the `default` of module.exports.
type BTreeClass = typeof sortedBtree.default;
const BTree: BTreeClass =
  (sortedBtree as unknown as { default?: BTreeClass }).default ?? (sortedBtree as unknown as BTreeClass);

declare const timerHandleBrand: unique symbol;

/** A timer as returned by a `Clock`; opaque, only meaningful to the clock that issued it. */
export interface TimerHandle {
  readonly [timerHandleBrand]: true;
}

export interface TimerOptions {
  /**
   * The timer does not keep the process alive (Node's `timer.unref()`). Default false. Virtual
   * clocks ignore it.
   */
  unref?: boolean;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. Never goes backwards on one clock. */
  nowMs(): number;
  /**
   * Runs `fn` once, `ms` (at least 1) milliseconds from now, unless cleared first. `fn` must not
   * throw: on the system clock a throw is an uncaught exception.
   */
  setTimeout(fn: () => void, ms: number, options?: TimerOptions): TimerHandle;
  /** Cancels a timer; a handle that already fired, was cleared, or is unknown is ignored. */
  clearTimeout(handle: TimerHandle): void;
  /** Runs `fn` every `ms` (at least 1) milliseconds until cleared. */
  setInterval(fn: () => void, ms: number, options?: TimerOptions): TimerHandle;
  /** Same as clearTimeout (either clears either kind of timer). */
  clearInterval(handle: TimerHandle): void;
}

/** The machine's clock: Date.now and Node's timers. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimeout(fn, ms, options) {
    const t = setTimeout(fn, ms);
    if (options?.unref === true) t.unref();
    return t as unknown as TimerHandle;
  },
  clearTimeout(handle) {
    clearTimeout(handle as unknown as NodeJS.Timeout);
  },
  setInterval(fn, ms, options) {
    const t = setInterval(fn, ms);
    if (options?.unref === true) t.unref();
    return t as unknown as TimerHandle;
  },
  clearInterval(handle) {
    clearInterval(handle as unknown as NodeJS.Timeout);
  },
};

interface ManualTimer {
  dueMs: number;
  /** Creation order: breaks ties between timers due at the same time. */
  seq: number;
  /** 0 for a one-shot timer. */
  intervalMs: number;
  fn: () => void;
}

export interface ManualClockOptions {
  /** The time the clock starts at. Default 0. */
  startMs?: number;
  /**
   * Most timer callbacks one `advance`/`advanceTo` runs before it throws (a timer that keeps
   * rescheduling itself at the same instant would otherwise never let it return). Default 10^6.
   */
  firingsPerAdvanceMax?: number;
}

function delayMs(ms: number): number {
  // Node's rule: a delay that is not a number >= 1 becomes 1.
  return Number.isFinite(ms) && ms >= 1 ? Math.floor(ms) : 1;
}

/**
 * Virtual time. `nowMs()` changes only through `advance`/`advanceTo`, which fire every timer that
 * falls due on the way, in order of (due time, creation order); during a callback `nowMs()` is
 * that timer's due time. Callbacks run synchronously inside the advance (promise continuations
 * they start run after it returns). A throwing callback propagates out of the advance, with the
 * clock left at that callback's due time and the timers after it still pending (an interval is
 * rescheduled before its callback runs). Deterministic: the same calls fire the same callbacks in
 * the same order.
 */
export class ManualClock implements Clock {
  private now: number;
  private seq = 0;
  private readonly firingsPerAdvanceMax: number;
  private readonly timers = new BTree<ManualTimer, true>(undefined, (a, b) => a.dueMs - b.dueMs || a.seq - b.seq);
  /** Every timer this clock issued, so that foreign handles are told apart (and ignored). */
  private readonly issued = new WeakSet<object>();

  constructor(options: ManualClockOptions = {}) {
    this.now = options.startMs ?? 0;
    this.firingsPerAdvanceMax = options.firingsPerAdvanceMax ?? 1_000_000;
  }

  nowMs(): number {
    return this.now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, delayMs(ms), 0);
  }

  clearTimeout(handle: TimerHandle): void {
    if (this.issued.has(handle)) this.timers.delete(handle as unknown as ManualTimer);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    const interval = delayMs(ms);
    return this.add(fn, interval, interval);
  }

  clearInterval(handle: TimerHandle): void {
    this.clearTimeout(handle);
  }

  /** Moves time forward by `ms` (>= 0), firing what falls due. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`clock: cannot advance by ${ms} ms`);
    this.advanceTo(this.now + ms);
  }

  /** Moves time to `targetMs` (not before now), firing what falls due. */
  advanceTo(targetMs: number): void {
    if (!(targetMs >= this.now)) throw new RangeError(`clock: cannot move back from ${this.now} to ${targetMs}`);
    for (let fired = 0; ; fired++) {
      const next = this.timers.minKey();
      if (next === undefined || next.dueMs > targetMs) break;
      if (fired >= this.firingsPerAdvanceMax) {
        throw new Error(`clock: more than ${this.firingsPerAdvanceMax} timer callbacks in one advance`);
      }
      this.timers.delete(next);
      this.now = next.dueMs;
      if (next.intervalMs > 0) {
        next.dueMs += next.intervalMs;
        this.timers.set(next, true);
      }
      next.fn();
    }
    this.now = targetMs;
  }

  /** When the next timer falls due, or undefined when none is pending. */
  nextDueMs(): number | undefined {
    return this.timers.minKey()?.dueMs;
  }

  /** Timers not yet fired or cleared (intervals count until cleared). */
  pendingTimers(): number {
    return this.timers.size;
  }

  private add(fn: () => void, ms: number, intervalMs: number): TimerHandle {
    const timer: ManualTimer = { dueMs: this.now + ms, seq: this.seq++, intervalMs, fn };
    this.timers.set(timer, true);
    this.issued.add(timer);
    return timer as unknown as TimerHandle;
  }
}

/** Resolves after `ms` on `clock`. */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}
