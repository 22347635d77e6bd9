/**
 * A run of consecutive log entries kept compactly: MemoryStorage's entries between its snapshot
 * and its last index.
 *
 * Why: a member keeps every entry since its last snapshot (up to `--snapshot-count` of them) in
 * memory. As one object per entry (an Entry, plus a Uint8Array view and often a backing store of
 * its own for the payload) that is a few hundred bytes per entry besides the payload. Here an
 * entry costs its payload bytes plus 21 bytes of columns:
 *
 * - term, type, and where the payload lies (chunk, offset, length) are columns in typed arrays,
 *   indexed by slot; slot `head + i` holds the entry at index `base + 1 + i`;
 * - payloads are copied into chunks of their own, written front to back and never rewritten, so
 *   a view handed out stays valid however the log changes later. A payload above a quarter of a
 *   chunk gets a chunk of its own. Chunks are numbered in the order they are made, and the slots'
 *   chunk numbers never decrease, so compaction frees every chunk before the first kept slot's.
 *
 * Entry objects are made only when read (`entryAt`), with `data` a view into a chunk. The caller
 * may keep the objects it appended (see MemoryStorage's recent entries): the payload bytes are
 * the same.
 */
import type { Entry, EntryType } from "./types.js";
import { invariant } from "./util.js";

/** Bytes per payload chunk: big enough that chunks are few, small enough that compaction frees memory soon. */
const CHUNK_BYTES = 256 * 1024;
/** A payload above this gets a chunk of its own. */
const OWN_CHUNK_ABOVE = CHUNK_BYTES >>> 2;
/** Column capacity of an empty run. */
const MIN_SLOTS = 64;
const EMPTY = new Uint8Array(0);

export class PackedEntries {
  /** Index of the entry just before the first one held (the snapshot's index). */
  private base: number;
  private head = 0;
  private count = 0;
  private terms: Float64Array = new Float64Array(MIN_SLOTS);
  private types: Uint8Array = new Uint8Array(MIN_SLOTS);
  private chunkNos: Uint32Array = new Uint32Array(MIN_SLOTS);
  private starts: Uint32Array = new Uint32Array(MIN_SLOTS);
  private lengths: Uint32Array = new Uint32Array(MIN_SLOTS);
  /** chunks[n - firstChunkNo] is chunk number n. */
  private chunks: Uint8Array[] = [];
  private firstChunkNo = 0;
  /** Bytes written into the last chunk; it is written to only while it is the last one. */
  private fill = CHUNK_BYTES;
  /** Whether the last chunk takes more payloads (false for a payload's own chunk). */
  private lastShared = false;

  constructor(base: number) {
    this.base = base;
  }

  /** Index of the entry before the first held. */
  get baseIndex(): number {
    return this.base;
  }

  /** Number of entries held. */
  get length(): number {
    return this.count;
  }

  /** Index of the last entry held (baseIndex when empty). */
  get lastIndex(): number {
    return this.base + this.count;
  }

  /** Bytes of payload chunks held (for tests and metrics). */
  get chunkBytes(): number {
    let n = 0;
    for (const c of this.chunks) n += c.byteLength;
    return n;
  }

  /** Term of the entry at `index`, which must be held. */
  termAt(index: number): number {
    return this.terms[this.slot(index)]!;
  }

  /** Payload size of the entry at `index`, which must be held. */
  sizeAt(index: number): number {
    return this.lengths[this.slot(index)]!;
  }

  /** A new Entry for `index`, which must be held; its data is a view that must not be written. */
  entryAt(index: number): Entry {
    const s = this.slot(index);
    const len = this.lengths[s]!;
    let data: Uint8Array = EMPTY;
    if (len > 0) {
      const start = this.starts[s]!;
      data = this.chunks[this.chunkNos[s]! - this.firstChunkNo]!.subarray(start, start + len);
    }
    return { term: this.terms[s]!, index, type: this.types[s]! as EntryType, data };
  }

  /** Appends `e`, whose index must be lastIndex + 1; its payload is copied. */
  push(e: Entry): void {
    invariant(e.index === this.base + this.count + 1, () => `packed entries: append ${e.index} after ${this.base + this.count}`);
    if (this.head + this.count === this.terms.length) this.relayout(this.count + 1);
    const s = this.head + this.count;
    const n = e.data.byteLength;
    this.terms[s] = e.term;
    this.types[s] = e.type;
    this.lengths[s] = n;
    if (n > 0) {
      if (n > OWN_CHUNK_ABOVE) {
        const own = new Uint8Array(n);
        own.set(e.data);
        this.chunks.push(own);
        this.lastShared = false;
        this.starts[s] = 0;
      } else {
        if (!this.lastShared || this.fill + n > CHUNK_BYTES) {
          this.chunks.push(new Uint8Array(CHUNK_BYTES));
          this.lastShared = true;
          this.fill = 0;
        }
        this.chunks[this.chunks.length - 1]!.set(e.data, this.fill);
        this.starts[s] = this.fill;
        this.fill += n;
      }
    }
    // An entry without payload points at the last chunk (or the one to come), keeping chunk
    // numbers non-decreasing.
    this.chunkNos[s] = this.firstChunkNo + Math.max(0, this.chunks.length - 1);
    this.count++;
  }

  /**
   * Drops the entries after `index` (baseIndex <= index <= lastIndex). Their bytes are not
   * reused: views handed out for them stay intact.
   */
  truncateAfter(index: number): void {
    invariant(index >= this.base && index <= this.lastIndex, () => `packed entries: truncate after ${index} outside [${this.base}, ${this.lastIndex}]`);
    this.count = index - this.base;
    // Later payloads go to a fresh chunk, so a dropped entry's bytes are never overwritten.
    this.lastShared = false;
  }

  /**
   * Drops the entries up to and including `index` (baseIndex <= index <= lastIndex): it becomes
   * the base. Frees the chunks no kept entry uses, and shrinks the columns when mostly empty.
   */
  dropThrough(index: number): void {
    invariant(index >= this.base && index <= this.lastIndex, () => `packed entries: compact to ${index} outside [${this.base}, ${this.lastIndex}]`);
    const n = index - this.base;
    this.head += n;
    this.count -= n;
    this.base = index;
    // Chunks before the first kept entry's are no longer used (an empty run keeps only the last).
    const keepFrom = this.count > 0 ? this.chunkNos[this.head]! : this.firstChunkNo + Math.max(0, this.chunks.length - 1);
    const free = keepFrom - this.firstChunkNo;
    if (free > 0) {
      this.chunks.splice(0, free);
      this.firstChunkNo = keepFrom;
    }
    if (this.terms.length > MIN_SLOTS && this.count < this.terms.length >>> 2) this.relayout(this.count);
  }

  /** Drops everything and starts after `index`. */
  reset(index: number): void {
    this.base = index;
    this.head = 0;
    this.count = 0;
    this.firstChunkNo += this.chunks.length;
    this.chunks = [];
    this.lastShared = false;
    if (this.terms.length > MIN_SLOTS) this.relayout(0);
  }

  private slot(index: number): number {
    const i = index - this.base - 1;
    invariant(i >= 0 && i < this.count, () => `packed entries: ${index} outside (${this.base}, ${this.lastIndex}]`);
    return this.head + i;
  }

  /** Moves the held slots to the front of columns sized for at least `need` slots. */
  private relayout(need: number): void {
    // Room for as many again: growth costs O(1) per entry, amortized.
    let cap = MIN_SLOTS;
    while (cap < need * 2) cap *= 2;
    const from = this.head;
    const to = from + this.count;
    const move = <T extends Float64Array | Uint8Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      if (cap === a.length) {
        a.copyWithin(0, from, to);
        return a;
      }
      const b = make(cap);
      b.set(a.subarray(from, to));
      return b;
    };
    this.terms = move(this.terms, (n) => new Float64Array(n));
    this.types = move(this.types, (n) => new Uint8Array(n));
    this.chunkNos = move(this.chunkNos, (n) => new Uint32Array(n));
    this.starts = move(this.starts, (n) => new Uint32Array(n));
    this.lengths = move(this.lengths, (n) => new Uint32Array(n));
    this.head = 0;
  }
}
