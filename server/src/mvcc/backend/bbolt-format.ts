/**
 * The bbolt (BoltDB) file format, as far as etcd-ts writes and reads it: etcd's backend and its
 * snapshots (`etcdctl snapshot save`) are bbolt files, so a snapshot that real etcd tools accept
 * must be one.
 *
 * File = a sequence of pages of `pageSize` bytes; page `id` starts at byte `id * pageSize`. All
 * integers are little-endian (bbolt writes native order; etcd ships for little-endian hosts).
 *
 * Page header (16 bytes): id u64 | flags u16 | count u16 | overflow u32. A page may span
 * `1 + overflow` consecutive pages (one big node or a big freelist).
 *   flags: branch 0x01, leaf 0x02, meta 0x04, freelist 0x10.
 *
 * Meta page (pages 0 and 1; the valid one with the higher txid wins), after the header:
 *   magic u32 (0xED0CDAED) | version u32 (2) | pageSize u32 | flags u32 (0)
 *   | root bucket { root pgid u64, sequence u64 } | freelist pgid u64 | high-water pgid u64
 *   | txid u64 | checksum u64 = FNV-1a 64 of the 56 bytes before it.
 *
 * Freelist page: `count` free page ids as u64 (when count is 0xFFFF, the first u64 holds the real
 * count and the ids follow it). etcd-ts writes an empty freelist.
 *
 * Branch page: `count` elements { pos u32, ksize u32, pgid u64 } (16 bytes each), then key bytes;
 * `pos` is the offset of the element's key from the element's own start. Element i's key is the
 * smallest key under child `pgid`; elements are sorted by key.
 *
 * Leaf page: `count` elements { flags u32, pos u32, ksize u32, vsize u32 }, then key and value
 * bytes (value right after key; `pos` as for branches). flags 0x01 = the value is a bucket: a
 * 16-byte header { root pgid u64, sequence u64 }; root 0 means an inline bucket whose leaf page
 * (header + elements) follows the header inside the value.
 *
 * The root bucket (meta.root) holds the top-level buckets as bucket elements, sorted by name.
 */

export const BBOLT_MAGIC = 0xed0cdaed;
export const BBOLT_VERSION = 2;
export const BBOLT_PAGE_SIZE_DEFAULT = 4096;

export const PAGE_HEADER_BYTES = 16;
export const LEAF_ELEMENT_BYTES = 16;
export const BRANCH_ELEMENT_BYTES = 16;
export const BUCKET_HEADER_BYTES = 16;
/** Byte length of the meta fields the checksum covers. */
export const META_CHECKSUMMED_BYTES = 56;

export const PageFlag = {
  branch: 0x01,
  leaf: 0x02,
  meta: 0x04,
  freelist: 0x10,
} as const;

/** Leaf element flag: the value is a nested bucket. */
export const BUCKET_LEAF_FLAG = 0x01;

/** Largest key bbolt accepts. */
export const KEY_BYTES_MAX = 32768;
/** Largest value bbolt accepts. */
export const VALUE_BYTES_MAX = 0x7fffffff - 1;

export interface BboltMeta {
  magic: number;
  version: number;
  pageSize: number;
  flags: number;
  rootPgid: bigint;
  rootSequence: bigint;
  freelistPgid: bigint;
  /** High-water mark: the number of pages in use (the first page id never allocated). */
  highWaterPgid: bigint;
  txid: bigint;
  checksum: bigint;
}

const FNV64_OFFSET = 0xcbf29ce484222325n;
const FNV64_PRIME = 0x100000001b3n;
const U64_MASK = 0xffffffffffffffffn;

/** FNV-1a 64 of `data` (bbolt's meta checksum). */
export function fnv1a64(data: Uint8Array): bigint {
  let h = FNV64_OFFSET;
  for (const byte of data) {
    h ^= BigInt(byte);
    h = (h * FNV64_PRIME) & U64_MASK;
  }
  return h;
}

/** Encodes a meta struct into `page` at `offset` (the byte after the page header); sets checksum. */
export function encodeMeta(page: Buffer, offset: number, m: Omit<BboltMeta, "checksum" | "magic" | "version">): void {
  page.writeUInt32LE(BBOLT_MAGIC, offset);
  page.writeUInt32LE(BBOLT_VERSION, offset + 4);
  page.writeUInt32LE(m.pageSize, offset + 8);
  page.writeUInt32LE(m.flags, offset + 12);
  page.writeBigUInt64LE(m.rootPgid, offset + 16);
  page.writeBigUInt64LE(m.rootSequence, offset + 24);
  page.writeBigUInt64LE(m.freelistPgid, offset + 32);
  page.writeBigUInt64LE(m.highWaterPgid, offset + 40);
  page.writeBigUInt64LE(m.txid, offset + 48);
  page.writeBigUInt64LE(fnv1a64(page.subarray(offset, offset + META_CHECKSUMMED_BYTES)), offset + META_CHECKSUMMED_BYTES);
}

/** Decodes the meta struct at `offset`. Does not validate (see `metaError`). */
export function decodeMeta(page: Buffer, offset: number): BboltMeta {
  return {
    magic: page.readUInt32LE(offset),
    version: page.readUInt32LE(offset + 4),
    pageSize: page.readUInt32LE(offset + 8),
    flags: page.readUInt32LE(offset + 12),
    rootPgid: page.readBigUInt64LE(offset + 16),
    rootSequence: page.readBigUInt64LE(offset + 24),
    freelistPgid: page.readBigUInt64LE(offset + 32),
    highWaterPgid: page.readBigUInt64LE(offset + 40),
    txid: page.readBigUInt64LE(offset + 48),
    checksum: page.readBigUInt64LE(offset + 56),
  };
}

/** Why bbolt would reject this meta, or undefined when it is valid. */
export function metaError(page: Buffer, offset: number): string | undefined {
  const m = decodeMeta(page, offset);
  if (m.magic !== BBOLT_MAGIC) return "invalid database (magic)";
  if (m.version !== BBOLT_VERSION) return "version mismatch";
  const sum = fnv1a64(page.subarray(offset, offset + META_CHECKSUMMED_BYTES));
  if (m.checksum !== 0n && m.checksum !== sum) return "checksum error";
  return undefined;
}
