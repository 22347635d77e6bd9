/**
 * Copies of small byte strings that live long, packed into chunks of their own: written keys and
 * values (which the value cache and watchers keep) and proposals' entry bytes (which the Raft log
 * keeps until it is compacted).
 *
 * Why: a Buffer is a view; keeping one keeps its whole backing store. Bytes that arrive in a
 * request are views into the transport's message buffers, and small `Buffer.from` copies come
 * from Node's shared 8 KiB pool, whose slabs are mostly short-lived garbage. Keeping such a view
 * for the life of a key pins kilobytes for every few bytes kept (measured: about 350 B of pinned
 * slab per 8-byte key kept in the index). An arena's chunks hold only what its owner keeps, so they stay dense.
 *
 * Copies of more than a quarter of a chunk get a backing store of their own. A chunk is freed by
 * the garbage collector when no copy in it is referenced any more; owners whose copies die in
 * about the order they were made (an index under compaction, an LRU) keep the waste small.
 */
export class ByteArena {
  private chunk: Buffer;
  private offset = 0;
  private readonly chunkBytes: number;
  private readonly ownAbove: number;

  constructor(chunkBytes = 64 * 1024) {
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 64) throw new RangeError(`ByteArena: bad chunk size ${chunkBytes}`);
    this.chunkBytes = chunkBytes;
    this.ownAbove = chunkBytes >>> 2;
    this.chunk = Buffer.allocUnsafeSlow(chunkBytes);
  }

  /** A copy of `src` that pins nothing but its arena chunk. An empty input gives an empty Buffer. */
  copy(src: Uint8Array): Buffer {
    const n = src.length;
    if (n > this.ownAbove) {
      const own = Buffer.allocUnsafeSlow(n);
      own.set(src);
      return own;
    }
    if (this.offset + n > this.chunkBytes) {
      this.chunk = Buffer.allocUnsafeSlow(this.chunkBytes);
      this.offset = 0;
    }
    const start = this.offset;
    this.chunk.set(src, start);
    this.offset = start + n;
    return this.chunk.subarray(start, start + n);
  }
}
