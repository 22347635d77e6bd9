/**
 * Proposals waiting for their entry to be applied, keyed by request ID. The apply loop triggers
 * each ID once with the apply result (or an error); the proposer awaits the promise.
 * Bounded by the number of in-flight proposals, which the proposer limits.
 *
 * Deadlines: every waiter gets the same timeout, so registration order is deadline order, and a
 * Map iterates in insertion order: the waiters still waiting, oldest first, are the deadline
 * queue. Nothing is kept for a waiter once it is answered (a separate queue of deadlines would
 * hold one record per request for the whole timeout, long after most were answered).
 */
export class WaitRegistry<T> {
  private readonly waiting = new Map<bigint, Waiter<T>>();

  /**
   * @param deadlineMs expire() fails the waiter after this time. Callers pass now plus one fixed
   *   timeout, so deadlines do not decrease in registration order.
   * @throws Error if `id` is already registered (a broken invariant: IDs are unique).
   */
  register(id: bigint, deadlineMs: number): Promise<T> {
    if (this.waiting.has(id)) throw new Error(`duplicate wait id ${id.toString(16)}`);
    const w = new Waiter<T>(deadlineMs);
    this.waiting.set(id, w);
    return w.promise;
  }

  /** Fails every waiter whose deadline is before `nowMs` with `makeError()`. */
  expire(nowMs: number, makeError: () => Error): void {
    for (const [id, w] of this.waiting) {
      if (w.atMs > nowMs) break;
      this.waiting.delete(id);
      w.reject(makeError());
    }
  }

  isRegistered(id: bigint): boolean {
    return this.waiting.has(id);
  }

  /** Resolves the waiter for `id`, if any (entries proposed by other members have none). */
  trigger(id: bigint, value: T): void {
    const w = this.waiting.get(id);
    if (w === undefined) return;
    this.waiting.delete(id);
    w.resolve(value);
  }

  fail(id: bigint, err: Error): void {
    const w = this.waiting.get(id);
    if (w === undefined) return;
    this.waiting.delete(id);
    w.reject(err);
  }

  /** Rejects every waiter (shutdown). */
  failAll(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
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
