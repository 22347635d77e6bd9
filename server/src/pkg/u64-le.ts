/**
 * Little-endian unsigned 64-bit fields holding JS numbers, for the WAL and snapshot file formats.
 * Only safe integers (below 2^53) are written; a stored value above that reads back as -1, which
 * readers treat as damage.
 */
const TWO_POW_32 = 4294967296;

/** @throws RangeError when `n` is not a non-negative safe integer (`what` names the caller). */
export function writeU64LE(buf: Buffer, off: number, n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what}: ${n} is not a non-negative safe integer`);
  buf.writeUInt32LE(n >>> 0, off);
  buf.writeUInt32LE(Math.floor(n / TWO_POW_32), off + 4);
}

/** Reads a u64 as a number; -1 when it is not a safe integer. */
export function readU64LE(buf: Buffer, off: number): number {
  const hi = buf.readUInt32LE(off + 4);
  if (hi > 0x1fffff) return -1;
  return hi * TWO_POW_32 + buf.readUInt32LE(off);
}
