/**
 * Little-endian unsigned 64-bit fields holding JS numbers, for the WAL and snapshot file formats
 * (and the 32-bit stores they are made of, little- and big-endian, and an 8-byte big-endian
 * writer, for other hot paths: revision keys, backend values, the peer streams' length fields).
 * Only safe integers (below 2^53) are written; a stored value above that reads back as -1, which
 * readers treat as damage.
 */
const TWO_POW_32 = 4294967296;

/** @throws RangeError when `n` is not a non-negative safe integer (`what` names the caller). */
export function writeU64LE(buf: Buffer, off: number, n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what}: ${n} is not a non-negative safe integer`);
  writeU32LE(buf, off, n >>> 0);
  writeU32LE(buf, off + 4, Math.floor(n / TWO_POW_32));
}

/**
 * Writes the unsigned 32-bit `v` little-endian at `off` (which must leave room for it) by element
 * stores: optimized code inlines them, where a Buffer method is looked up and called each time.
 */
export function writeU32LE(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v;
  buf[off + 1] = v >>> 8;
  buf[off + 2] = v >>> 16;
  buf[off + 3] = v >>> 24;
}

/** Writes `n` (a non-negative integer below 2^53, unchecked) as 8 big-endian bytes at `off`. */
export function writeU64BE(buf: Uint8Array, off: number, n: number): void {
  writeU32BE(buf, off, Math.floor(n / TWO_POW_32));
  writeU32BE(buf, off + 4, n >>> 0);
}

/** Writes the unsigned 32-bit `v` big-endian at `off`, as writeU32LE. */
export function writeU32BE(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = v >>> 16;
  buf[off + 2] = v >>> 8;
  buf[off + 3] = v;
}

/** Reads a u64 as a number; -1 when it is not a safe integer. */
export function readU64LE(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  if (hi > 0x1fffff) return -1;
  return hi * TWO_POW_32 + buf.readUInt32LE(off);
}
