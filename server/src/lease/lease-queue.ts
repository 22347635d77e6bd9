/**
 * LeaseQueue: a binary min-heap of (lease ID, time in ms) with at most one entry per lease and an
 * index from ID to heap position, so that insert, update, remove and pop are O(log n) and peek is
 * O(1). The lessor keeps two: one ordered by expiry (what to revoke next) and one ordered by the
 * next checkpoint time.
 *
 * Order: earlier time first; equal times by smaller ID (bigint order), so that the order of
 * everything the lessor reports is deterministic for a given history.
 */

/** One queued lease. Read-only to callers; the queue owns and reuses these objects. */
export interface LeaseQueueItem {
  readonly id: bigint;
  readonly timeMs: number;
}

interface Slot {
  id: bigint;
  timeMs: number;
}

export class LeaseQueue {
  private readonly heap: Slot[] = [];
  private readonly positionById = new Map<bigint, number>();

  get size(): number {
    return this.heap.length;
  }

  has(id: bigint): boolean {
    return this.positionById.has(id);
  }

  /** The queued time of `id`, or undefined when it is not queued. */
  timeOf(id: bigint): number | undefined {
    const position = this.positionById.get(id);
    return position === undefined ? undefined : this.heap[position]!.timeMs;
  }

  /** The earliest item, or undefined when empty. The object is only valid until the next mutation. */
  peek(): LeaseQueueItem | undefined {
    return this.heap[0];
  }

  /** Queues `id` at `timeMs`, or moves it there when it is already queued. */
  set(id: bigint, timeMs: number): void {
    const position = this.positionById.get(id);
    if (position === undefined) {
      this.heap.push({ id, timeMs });
      this.positionById.set(id, this.heap.length - 1);
      this.siftUp(this.heap.length - 1);
      return;
    }
    const slot = this.heap[position]!;
    const earlier = timeMs < slot.timeMs;
    slot.timeMs = timeMs;
    if (earlier) this.siftUp(position);
    else this.siftDown(position);
  }

  /** Removes `id`; returns false when it was not queued. */
  delete(id: bigint): boolean {
    const position = this.positionById.get(id);
    if (position === undefined) return false;
    this.removeAt(position);
    return true;
  }

  /** Removes and returns the earliest item, or undefined when empty. */
  pop(): LeaseQueueItem | undefined {
    if (this.heap.length === 0) return undefined;
    const top = this.heap[0]!;
    this.removeAt(0);
    return top;
  }

  clear(): void {
    this.heap.length = 0;
    this.positionById.clear();
  }

  private removeAt(position: number): void {
    const removed = this.heap[position]!;
    this.positionById.delete(removed.id);
    const last = this.heap.pop()!;
    if (position === this.heap.length) return;
    this.heap[position] = last;
    this.positionById.set(last.id, position);
    this.siftUp(position);
    this.siftDown(this.positionById.get(last.id)!);
  }

  private less(a: Slot, b: Slot): boolean {
    if (a.timeMs !== b.timeMs) return a.timeMs < b.timeMs;
    return a.id < b.id;
  }

  private siftUp(start: number): void {
    const heap = this.heap;
    let position = start;
    const slot = heap[position]!;
    while (position > 0) {
      const parentPosition = (position - 1) >> 1;
      const parent = heap[parentPosition]!;
      if (!this.less(slot, parent)) break;
      heap[position] = parent;
      this.positionById.set(parent.id, position);
      position = parentPosition;
    }
    heap[position] = slot;
    this.positionById.set(slot.id, position);
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    const length = heap.length;
    let position = start;
    const slot = heap[position]!;
    for (;;) {
      const left = 2 * position + 1;
      if (left >= length) break;
      const right = left + 1;
      let child = left;
      if (right < length && this.less(heap[right]!, heap[left]!)) child = right;
      const childSlot = heap[child]!;
      if (!this.less(childSlot, slot)) break;
      heap[position] = childSlot;
      this.positionById.set(childSlot.id, position);
      position = child;
    }
    heap[position] = slot;
    this.positionById.set(slot.id, position);
  }
}
