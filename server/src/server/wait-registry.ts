/**
 * Proposals waiting for their entry to be applied, keyed by request ID. The apply loop triggers
 * each ID once with the apply result (or an error); the proposer awaits the promise.
 * Bounded by the number of in-flight proposals, which the proposer limits.
 */
export class WaitRegistry<T> {
  private readonly waiting = new Map<bigint, { resolve: (v: T) => void; reject: (e: Error) => void }>();

  /** @throws Error if `id` is already registered (a broken invariant: IDs are unique). */
  register(id: bigint): Promise<T> {
    if (this.waiting.has(id)) throw new Error(`duplicate wait id ${id.toString(16)}`);
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
    });
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
