/**
 * KeyValue, the MVCC record, and its stored form.
 *
 * Stored form: the protobuf encoding of etcd's `mvccpb.KeyValue` (key=1 bytes, create_revision=2,
 * mod_revision=3, version=4 int64 varints, value=5 bytes, lease=6 int64 varint), fields in number
 * order and zero/empty fields omitted, exactly as etcd's generated marshaller writes it. A
 * tombstone stores a KeyValue holding only the key. Keeping etcd's bytes means HashKV over the
 * same history yields etcd's hash.
 */

/** One version of a key. Objects handed out by the store are shared: treat them as immutable. */
export interface KeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  /** Lease ID (int64); 0n = no lease. */
  lease: bigint;
}

/** A KeyValue without its value: what the key index knows without a disk read. */
export interface KeyInfo {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: bigint;
}

export interface Event {
  type: "PUT" | "DELETE";
  /** For DELETE: only `key` and `modRevision` (the deletion's revision) are set, as in etcd. */
  kv: KeyValue;
  prevKv?: KeyValue;
}

export const EMPTY_BUFFER: Buffer = Buffer.alloc(0);
export const NO_LEASE = 0n;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(b: Buffer, pos: number, n: number): number {
  while (n >= 128) {
    b[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  b[pos++] = n;
  return pos;
}

function bigVarintSize(n: bigint): number {
  let u = BigInt.asUintN(64, n);
  let size = 1;
  while (u >= 128n) {
    u >>= 7n;
    size++;
  }
  return size;
}

function writeBigVarint(b: Buffer, pos: number, n: bigint): number {
  let u = BigInt.asUintN(64, n);
  while (u >= 128n) {
    b[pos++] = Number(u & 0x7fn) | 0x80;
    u >>= 7n;
  }
  b[pos++] = Number(u);
  return pos;
}

/** Encodes a KeyValue in its stored (protobuf) form. */
export function encodeKeyValue(kv: KeyValue): Buffer {
  const keyLen = kv.key.length;
  const valueLen = kv.value.length;
  const lease = kv.lease;
  let size = 0;
  if (keyLen > 0) size += 1 + varintSize(keyLen) + keyLen;
  if (kv.createRevision !== 0) size += 1 + varintSize(kv.createRevision);
  if (kv.modRevision !== 0) size += 1 + varintSize(kv.modRevision);
  if (kv.version !== 0) size += 1 + varintSize(kv.version);
  if (valueLen > 0) size += 1 + varintSize(valueLen) + valueLen;
  if (lease !== 0n) size += 1 + bigVarintSize(lease);
  const b = Buffer.allocUnsafe(size);
  let p = 0;
  if (keyLen > 0) {
    b[p++] = 0x0a;
    p = writeVarint(b, p, keyLen);
    p += kv.key.copy(b, p);
  }
  if (kv.createRevision !== 0) {
    b[p++] = 0x10;
    p = writeVarint(b, p, kv.createRevision);
  }
  if (kv.modRevision !== 0) {
    b[p++] = 0x18;
    p = writeVarint(b, p, kv.modRevision);
  }
  if (kv.version !== 0) {
    b[p++] = 0x20;
    p = writeVarint(b, p, kv.version);
  }
  if (valueLen > 0) {
    b[p++] = 0x2a;
    p = writeVarint(b, p, valueLen);
    p += kv.value.copy(b, p);
  }
  if (lease !== 0n) {
    b[p++] = 0x30;
    p = writeBigVarint(b, p, lease);
  }
  return b;
}

/** Encodes the stored form of a tombstone (only the key). */
export function encodeTombstone(key: Buffer): Buffer {
  const b = Buffer.allocUnsafe(1 + varintSize(key.length) + key.length);
  b[0] = 0x0a;
  const p = writeVarint(b, 1, key.length);
  key.copy(b, p);
  return b;
}

export class CorruptRecordError extends Error {
  readonly code = "CORRUPT";
  constructor(what: string) {
    super(`mvcc: corrupt stored KeyValue: ${what}`);
  }
}

/**
 * Decodes a stored KeyValue. `key` and `value` are views into `b` (no copy); `b` must not be
 * mutated afterwards. Throws CorruptRecordError on malformed input.
 */
export function decodeKeyValue(b: Buffer): KeyValue {
  let key: Buffer = EMPTY_BUFFER;
  let value: Buffer = EMPTY_BUFFER;
  let createRevision = 0;
  let modRevision = 0;
  let version = 0;
  let lease = NO_LEASE;
  let p = 0;
  const n = b.length;
  while (p < n) {
    const tag = b[p++]!;
    const wire = tag & 7;
    const field = tag >>> 3;
    if (wire === 0) {
      // varint: read as number if it fits 53 bits, else as bigint (negative leases)
      let shift = 0;
      let num = 0;
      let start = p;
      let byte: number;
      do {
        if (p >= n) throw new CorruptRecordError("truncated varint");
        byte = b[p++]!;
        if (shift < 56) num += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80);
      if (field === 6) {
        if (shift > 49) {
          let u = 0n;
          let s = 0n;
          for (let i = start; i < p; i++) {
            u |= BigInt(b[i]! & 0x7f) << s;
            s += 7n;
          }
          lease = BigInt.asIntN(64, u);
        } else {
          lease = BigInt(num);
        }
      } else if (field === 2) createRevision = num;
      else if (field === 3) modRevision = num;
      else if (field === 4) version = num;
    } else if (wire === 2) {
      let len = 0;
      let shift = 0;
      let byte: number;
      do {
        if (p >= n) throw new CorruptRecordError("truncated length");
        byte = b[p++]!;
        len += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80);
      if (p + len > n) throw new CorruptRecordError("truncated bytes");
      if (field === 1) key = b.subarray(p, p + len);
      else if (field === 5) value = b.subarray(p, p + len);
      p += len;
    } else if (wire === 1) {
      p += 8;
    } else if (wire === 5) {
      p += 4;
    } else {
      throw new CorruptRecordError(`wire type ${wire}`);
    }
  }
  return { key, createRevision, modRevision, version, value, lease };
}

/**
 * In-memory footprint of a cached KeyValue, for cache accounting: its bytes plus what a heap
 * snapshot shows per entry (the object, two Buffer views of about 96 bytes each, the LRU map's
 * entry).
 */
export function keyValueBytes(kv: KeyValue): number {
  return kv.key.length + kv.value.length + 300;
}
