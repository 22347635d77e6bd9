/**
 * A table of values keyed by ids that only grow (request IDs from one generator, revisions,
 * stream IDs), in one array in id order: add at the end, find by binary search, remove by
 * clearing the slot. Cleared slots are dropped in place once they outnumber the live ones.
 *
 * Why not a Map: a Map that fills and empties all the time (the requests in flight) reallocates
 * its table whenever it grows past, or shrinks below a quarter of, its capacity. Under load those
 * tables outlive a scavenge and are promoted: garbage in the old space on every write. These
 * arrays only grow (to the most entries held at once) and are never shortened: the used part
 * ends at `end`, and compaction moves entries down in place (a shorter array length would let V8
 * trim the store, and the next growth would copy it again).
 *
 * Iteration order is id order, which callers use as age order (oldest first). Values are never
 * undefined (an undefined slot is a cleared one).
 */
export class OrderedSlots<K extends number | bigint, V> {
  private readonly keys: K[] = [];
  private readonly values: (V | undefined)[] = [];
  /** First slot that may be live (every slot before it is cleared). */
  private head = 0;
  /** End of the used slots. */
  private end = 0;
  private live = 0;

  /** Live entries. */
  get size(): number {
    return this.live;
  }

  /** Adds `value` under `key`, which must be greater than every key added before. */
  add(key: K, value: V): void {
    const keys = this.keys;
    const end = this.end;
    if (end > 0 && !(key > keys[end - 1]!)) {
      throw new Error(`ordered slots: key ${String(key)} not above the last one ${String(keys[end - 1])}`);
    }
    if (end < keys.length) {
      keys[end] = key;
      this.values[end] = value;
    } else {
      keys.push(key);
      this.values.push(value);
    }
    this.end = end + 1;
    this.live++;
  }

  get(key: K): V | undefined {
    const i = this.indexOf(key);
    return i < 0 ? undefined : this.values[i];
  }

  /** Removes and returns the value under `key` (undefined if absent). */
  take(key: K): V | undefined {
    const i = this.indexOf(key);
    if (i < 0) return undefined;
    return this.clearAt(i);
  }

  /** The oldest live value, or undefined. */
  first(): V | undefined {
    this.skipCleared();
    return this.head < this.end ? this.values[this.head] : undefined;
  }

  /** Removes and returns the oldest live value, or undefined. */
  takeFirst(): V | undefined {
    this.skipCleared();
    return this.head < this.end ? this.clearAt(this.head) : undefined;
  }

  /** Live values, oldest first (a copy: the table may change while the caller walks it). */
  valuesInOrder(): V[] {
    const out: V[] = [];
    const values = this.values;
    for (let i = this.head; i < this.end; i++) if (values[i] !== undefined) out.push(values[i]!);
    return out;
  }

  clear(): void {
    this.values.fill(undefined, this.head, this.end);
    this.head = this.end = this.live = 0;
  }

  private indexOf(key: K): number {
    const keys = this.keys;
    let lo = this.head;
    let hi = this.end - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = keys[mid]!;
      if (k < key) lo = mid + 1;
      else if (k > key) hi = mid - 1;
      else return this.values[mid] === undefined ? -1 : mid;
    }
    return -1;
  }

  private clearAt(i: number): V {
    const v = this.values[i]!;
    this.values[i] = undefined;
    this.live--;
    if (this.live === 0) {
      this.head = this.end = 0;
    } else {
      if (i === this.head) this.skipCleared();
      const n = this.end - this.head;
      if (n > 64 && (n - this.live) * 2 > n) this.compact();
      else if (this.head > 64 && this.head * 2 > this.end) this.compact();
    }
    return v;
  }

  private skipCleared(): void {
    const values = this.values;
    while (this.head < this.end && values[this.head] === undefined) this.head++;
  }

  /** Drops the cleared slots, in place. */
  private compact(): void {
    const keys = this.keys;
    const values = this.values;
    let w = 0;
    for (let r = this.head; r < this.end; r++) {
      const v = values[r];
      if (v === undefined) continue;
      keys[w] = keys[r]!;
      values[w] = v;
      w++;
    }
    values.fill(undefined, w, this.end);
    this.head = 0;
    this.end = w;
  }
}
