/**
 * Proposals waiting for their entry to be applied, keyed by request ID. The apply loop triggers
 * each ID once with the apply result (or an error); the proposer awaits the promise.
 * Bounded by the number of in-flight proposals, which the proposer limits.
 *
 * The IDs come from the proposer's generator, so they grow in registration order, and every
 * waiter gets the same timeout: registration order is deadline order. The waiters are kept in an
 * OrderedSlots (pkg/ordered-slots.ts), oldest first, which is both the lookup by ID and the
 * deadline queue; nothing is kept for a waiter once it is answered, and nothing is allocated per
 * waiter but the waiter and its promise.
 */
import { OrderedSlots } from "../pkg/ordered-slots.js";

export class WaitRegistry<T> {
  private readonly waiting = new OrderedSlots<bigint, Waiter<T>>();

  /**
   * @param id above every ID registered before (IDs come from one generator).
   * @param deadlineMs expire() fails the waiter after this time. Callers pass now plus one fixed
   *   timeout, so deadlines do not decrease in registration order.
   * @throws Error if `id` is not above the last one (a broken invariant: IDs are unique and grow).
   */
  register(id: bigint, deadlineMs: number): Promise<T> {
    const w = new Waiter<T>(deadlineMs);
    this.waiting.add(id, w);
    return w.promise;
  }

  /** Fails every waiter whose deadline is before `nowMs` with `makeError()`. */
  expire(nowMs: number, makeError: () => Error): void {
    for (;;) {
      const w = this.waiting.first();
      if (w === undefined || w.atMs > nowMs) break;
      this.waiting.takeFirst();
      w.reject(makeError());
    }
  }

  /** Resolves the waiter for `id`, if any (entries proposed by other members have none). */
  trigger(id: bigint, value: T): void {
    const w = this.waiting.take(id);
    if (w !== undefined) w.resolve(value);
  }

  fail(id: bigint, err: Error): void {
    const w = this.waiting.take(id);
    if (w !== undefined) w.reject(err);
  }

  /** Rejects every waiter (shutdown). */
  failAll(err: Error): void {
    const all = this.waiting.valuesInOrder();
    this.waiting.clear();
    for (const w of all) w.reject(err);
  }

  get size(): number {
    return this.waiting.size;
  }
}

/** One waiting request: its promise's settle functions and its deadline, in one object. */
class Waiter<T> {
  resolve!: (v: T) => void;
  reject!: (e: Error) => void;
  readonly promise: Promise<T>;

  constructor(readonly atMs: number) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}
