/**
 * Proposals waiting for their entry to be applied, keyed by request ID. The apply loop triggers
 * each ID once with the apply result (or an error); the proposer awaits the promise.
 * Bounded by the number of in-flight proposals, which the proposer limits.
 */
export class WaitRegistry<T> {
  private readonly waiting = new Map<bigint, { resolve: (v: T) => void; reject: (e: Error) => void }>();
  /**
   * Deadlines in registration order. Every waiter gets the same timeout, so they are also in
   * deadline order; entries of waiters already settled are skipped when they come up.
   */
  private readonly deadlines: { atMs: number; id: bigint }[] = [];
  private deadlinesHead = 0;

  /**
   * @param deadlineMs when set, expire() fails the waiter after this time (same timeout for all).
   * @throws Error if `id` is already registered (a broken invariant: IDs are unique).
   */
  register(id: bigint, deadlineMs?: number): Promise<T> {
    if (this.waiting.has(id)) throw new Error(`duplicate wait id ${id.toString(16)}`);
    if (deadlineMs !== undefined) this.deadlines.push({ atMs: deadlineMs, id });
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
    });
  }

  /** Fails every waiter whose deadline is before `nowMs` with `makeError()`. */
  expire(nowMs: number, makeError: () => Error): void {
    const d = this.deadlines;
    while (this.deadlinesHead < d.length && d[this.deadlinesHead]!.atMs <= nowMs) {
      const id = d[this.deadlinesHead]!.id;
      // Most deadlines come up after their waiter was answered: no error (and no stack) for those.
      if (this.waiting.has(id)) this.fail(id, makeError());
      this.deadlinesHead++;
    }
    if (this.deadlinesHead > 1024 && this.deadlinesHead * 2 > d.length) {
      d.splice(0, this.deadlinesHead);
      this.deadlinesHead = 0;
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
