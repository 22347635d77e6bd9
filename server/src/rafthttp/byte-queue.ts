/**
 * Bytes received from a stream and not yet consumed, as the chunks arrived: the incremental
 * frame decoders read fixed-size fields and whole frames out of it without ever copying a chunk
 * more than once. Holds only what was pushed (the caller bounds that by consuming frames).
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  /** Offset of the first unconsumed byte in chunks[0]. */
  private head = 0;
  private total = 0;

  /** Unconsumed bytes. */
  get length(): number {
    return this.total;
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    // a plain Uint8Array view: subarray on a Buffer goes through its species constructor, slowly
    if (chunk.constructor !== Uint8Array) chunk = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.chunks.push(chunk);
    this.total += chunk.byteLength;
  }

  /** The byte at `offset` from the front (offset < length). */
  peekByte(offset = 0): number {
    let i = 0;
    let off = this.head + offset;
    while (off >= this.chunks[i]!.byteLength) {
      off -= this.chunks[i]!.byteLength;
      i++;
    }
    return this.chunks[i]![off]!;
  }

  /** The first chunk (for parsing in place, from `frontOffset`); undefined when empty. */
  frontChunk(): Uint8Array | undefined {
    return this.chunks[0];
  }

  /** The offset of the first unconsumed byte in frontChunk(). */
  get frontOffset(): number {
    return this.head;
  }

  /** Consumes one byte (length > 0). */
  readByte(): number {
    const b = this.peekByte(0);
    this.skip(1);
    return b;
  }

  /** Consumes a big-endian uint64 (length >= 8) as lo/hi halves: returns hi * 2^32 + lo when safe, else a bigint. */
  readUint64(): number | bigint {
    let b = this.chunks[0]!;
    let p = this.head;
    if (b.byteLength - p >= 8) this.skip(8);
    else {
      b = this.take(8);
      p = 0;
    }
    const hi = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
    const lo = ((b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) >>> 0;
    if (hi < 0x200000) return hi * 4294967296 + lo;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /**
   * Consumes `n` bytes (n <= length). With `copy` (the default) the result is a private copy the
   * caller owns; without, it is a view into a pushed chunk when the bytes lie in one (else a
   * copy), valid as long as the pusher leaves its chunks unchanged.
   */
  take(n: number, copy = true): Uint8Array {
    const first = this.chunks[0];
    if (first !== undefined && first.byteLength - this.head >= n && !copy) {
      const view = first.subarray(this.head, this.head + n);
      this.skip(n);
      return view;
    }
    if (first !== undefined && first.byteLength - this.head >= n) {
      const out = first.slice(this.head, this.head + n);
      this.skip(n);
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const avail = c.byteLength - this.head;
      const k = Math.min(avail, n - filled);
      out.set(c.subarray(this.head, this.head + k), filled);
      filled += k;
      this.skip(k);
    }
    return out;
  }

  /** Drops `n` bytes from the front (n <= length). */
  skip(n: number): void {
    this.total -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const avail = c.byteLength - this.head;
      if (n < avail) {
        this.head += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.head = 0;
    }
  }
}
