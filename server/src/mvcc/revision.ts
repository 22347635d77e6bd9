/**
 * Revisions and their byte form in the key bucket.
 *
 * A revision is `{ main, sub }`: `main` is the store revision of a write txn, `sub` the position
 * of a change inside it. In the key bucket a revision is 17 bytes, etcd's layout:
 * `main` (8 bytes big-endian) ++ `_` ++ `sub` (8 bytes big-endian); a tombstone (a deletion)
 * appends one `t` byte. Byte order therefore equals revision order.
 */
import { writeU64BE } from "../pkg/u64-le.js";
import { Bucket } from "./backend/backend.js";

export const REV_BYTES = 17;
export const MARKED_REV_BYTES = 18;
const TOMBSTONE_MARK = 0x74; // 't'
const SEPARATOR = 0x5f; // '_'

export interface Revision {
  main: number;
  sub: number;
}

/** The key-bucket key of a revision, INCLUDING the leading bucket byte (18 or 19 bytes). */
export function revisionKey(main: number, sub: number, tombstone: boolean): Buffer {
  const b = Buffer.allocUnsafe(1 + (tombstone ? MARKED_REV_BYTES : REV_BYTES));
  b[0] = Bucket.key;
  writeU64BE(b, 1, main);
  b[9] = SEPARATOR;
  writeU64BE(b, 10, sub);
  if (tombstone) b[18] = TOMBSTONE_MARK;
  return b;
}

/** Decodes the main revision of a key-bucket key given with its bucket byte. */
export function mainOfKey(fullKey: Buffer): number {
  return fullKey.readUInt32BE(1) * 0x1_0000_0000 + fullKey.readUInt32BE(5);
}

/** Decodes the sub revision of a key-bucket key given with its bucket byte. */
export function subOfKey(fullKey: Buffer): number {
  return fullKey.readUInt32BE(10) * 0x1_0000_0000 + fullKey.readUInt32BE(14);
}

/** True if a key-bucket key (with bucket byte) marks a tombstone. */
export function isTombstoneKey(fullKey: Buffer): boolean {
  return fullKey.length === 1 + MARKED_REV_BYTES && fullKey[18] === TOMBSTONE_MARK;
}

/** Meta-bucket value form of a compaction revision: the 17-byte revision `{main, 0}`. */
export function encodeRevisionValue(main: number): Buffer {
  return revisionKey(main, 0, false).subarray(1);
}

export function decodeRevisionValue(b: Buffer): number {
  return b.readUInt32BE(0) * 0x1_0000_0000 + b.readUInt32BE(4);
}

/**
 * A compact number naming a revision, for in-memory maps: `main * 2^21 + sub`. Defined only
 * when `sub < 2^21` and `main < 2^32` (see `revisionIdOk`); callers fall back otherwise.
 */
export const SUB_ID_LIMIT = 2 ** 21;
export function revisionId(main: number, sub: number): number {
  return main * SUB_ID_LIMIT + sub;
}
export function revisionIdOk(main: number, sub: number): boolean {
  return sub < SUB_ID_LIMIT && main < 0x1_0000_0000;
}

/**
 * A set of revisions (used for "what compaction keeps"): numbers for the common case, strings for
 * revisions outside the numeric id range.
 */
export class RevisionSet {
  private readonly ids = new Set<number>();
  private readonly big = new Set<string>();

  add(main: number, sub: number): void {
    if (revisionIdOk(main, sub)) this.ids.add(revisionId(main, sub));
    else this.big.add(`${main}:${sub}`);
  }

  delete(main: number, sub: number): void {
    if (revisionIdOk(main, sub)) this.ids.delete(revisionId(main, sub));
    else this.big.delete(`${main}:${sub}`);
  }

  has(main: number, sub: number): boolean {
    if (revisionIdOk(main, sub)) return this.ids.has(revisionId(main, sub));
    return this.big.has(`${main}:${sub}`);
  }

  get size(): number {
    return this.ids.size + this.big.size;
  }
}
