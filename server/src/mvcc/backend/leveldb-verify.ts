/**
 * The backend's start-up integrity check: every checksum LevelDB wrote is verified before the
 * database is opened, because LevelDB itself (as classic-level opens it: no paranoid checks, reads
 * without checksum verification) skips a damaged log record silently and may return a damaged
 * table block's bytes as data.
 *
 * What is verified, in LevelDB's formats:
 *   - table files (*.ldb, *.sst): the footer (last 48 bytes: metaindex and index BlockHandles as
 *     varint64 offset/size, padding, magic 0xdb4775248b80fb57 little-endian); the index block, the
 *     metaindex block and every data block the index names: each block is followed by a 5-byte
 *     trailer (compression type: 0 none, 1 snappy; masked CRC-32C of the block's bytes and the type
 *     byte, mask(c) = ((c >>> 15) | (c << 17)) + 0xa282ead8); the metaindex names the filter block.
 *     Index blocks are decompressed when snappy-compressed, to read their entries
 *     (prefix-compressed keys; values BlockHandles);
 *   - log files (*.log): 32 KiB blocks of records, each with a 7-byte header (masked CRC-32C of the
 *     type byte and the payload, u16 length, u8 type 1 full, 2 first, 3 middle, 4 last; a block's
 *     last < 7 bytes are zero padding). A record that fails with no valid record after it in the
 *     file is a torn tail (an unsynced write cut by a crash; the raft log replays what it held)
 *     and is accepted; one followed by valid records is damage.
 * The MANIFEST and CURRENT are checked by LevelDB when it opens (a Corruption error).
 * Cost: one sequential read of the database's files at start-up.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { crc32c } from "../../pkg/crc32c.js";

/** A checksum or structure failure in the backend's files: the member must not serve from them. */
export class BackendCorruptError extends Error {
  readonly code = "BACKEND_CORRUPT";
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly why: string,
  ) {
    super(`backend file ${file} is damaged at offset ${offset}: ${why}`);
  }
}

const TABLE_MAGIC = 0xdb4775248b80fb57n;
const FOOTER_BYTES = 48;
const BLOCK_TRAILER_BYTES = 5;
const LOG_BLOCK_BYTES = 32 * 1024;
const LOG_HEADER_BYTES = 7;
const MASK_DELTA = 0xa282ead8;

function unmask(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}

export interface VerifyReport {
  tables: number;
  blocks: number;
  logRecords: number;
  /** Log files whose tail was cut (a torn write), with the offset of the cut. */
  tornTails: Array<{ file: string; offset: number }>;
}

/**
 * Verifies the LevelDB database in `dir` (see the file comment); a missing directory is a new
 * database and passes.
 * @throws BackendCorruptError naming the file and offset of the first failure.
 */
export function verifyLevelDbFiles(dir: string): VerifyReport {
  const report: VerifyReport = { tables: 0, blocks: 0, logRecords: 0, tornTails: [] };
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return report;
  }
  for (const name of names) {
    const file = path.join(dir, name);
    if (name.endsWith(".ldb") || name.endsWith(".sst")) {
      report.blocks += verifyTable(file, readFileSync(file));
      report.tables++;
    } else if (name.endsWith(".log") && /^[0-9]+\.log$/.test(name)) {
      const r = verifyLog(file, readFileSync(file));
      report.logRecords += r.records;
      if (r.tornAt !== undefined) report.tornTails.push({ file, offset: r.tornAt });
    }
  }
  return report;
}

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const c = this.buf[this.pos++]!;
      v += (c & 0x7f) * mul;
      if (c < 0x80) return v;
      mul *= 128;
    }
    throw new Error("bad varint");
  }
}

/** Returns the number of blocks verified. */
function verifyTable(file: string, buf: Buffer): number {
  if (buf.length < FOOTER_BYTES) throw new BackendCorruptError(file, 0, "file too short for a table footer");
  const footerAt = buf.length - FOOTER_BYTES;
  if (buf.readBigUInt64LE(buf.length - 8) !== TABLE_MAGIC) throw new BackendCorruptError(file, buf.length - 8, "bad table magic");
  let metaIndex: { offset: number; size: number };
  let index: { offset: number; size: number };
  try {
    const r = new Reader(buf, footerAt, buf.length - 8);
    metaIndex = { offset: r.varint(), size: r.varint() };
    index = { offset: r.varint(), size: r.varint() };
  } catch (e) {
    throw new BackendCorruptError(file, footerAt, `bad table footer (${(e as Error).message})`);
  }
  let blocks = 2;
  // The metaindex names the meta blocks (the filter block), the index every data block.
  for (const parent of [metaIndex, index]) {
    for (const handle of blockHandles(file, parent.offset, checkBlock(file, buf, parent, footerAt))) {
      checkBlock(file, buf, handle, footerAt);
      blocks++;
    }
  }
  return blocks;
}

/** Verifies one block's trailer CRC; returns its (decompressed) contents. */
function checkBlock(file: string, buf: Buffer, h: { offset: number; size: number }, limit: number): Buffer {
  if (h.offset + h.size + BLOCK_TRAILER_BYTES > limit) throw new BackendCorruptError(file, h.offset, `block of ${h.size} bytes runs past the table's data`);
  const type = buf[h.offset + h.size]!;
  const stored = unmask(buf.readUInt32LE(h.offset + h.size + 1));
  const actual = crc32c(buf.subarray(h.offset, h.offset + h.size + 1));
  if (stored !== actual) throw new BackendCorruptError(file, h.offset, "block checksum mismatch");
  const raw = buf.subarray(h.offset, h.offset + h.size);
  if (type === 0) return raw;
  if (type === 1) {
    try {
      return snappyDecompress(raw);
    } catch (e) {
      throw new BackendCorruptError(file, h.offset, `bad snappy block (${(e as Error).message})`);
    }
  }
  throw new BackendCorruptError(file, h.offset, `unknown block compression type ${type}`);
}

/** The BlockHandles an index (or metaindex) block's entries hold as values. */
function blockHandles(file: string, at: number, block: Buffer): Array<{ offset: number; size: number }> {
  try {
    if (block.length < 4) throw new Error("index block too short");
    const restarts = block.readUInt32LE(block.length - 4);
    const dataEnd = block.length - 4 - 4 * restarts;
    if (dataEnd < 0) throw new Error("bad restart count");
    const out: Array<{ offset: number; size: number }> = [];
    const r = new Reader(block, 0, dataEnd);
    while (r.pos < dataEnd) {
      r.varint(); // shared key bytes
      const nonShared = r.varint();
      const valueBytes = r.varint();
      r.pos += nonShared;
      const end = r.pos + valueBytes;
      if (end > dataEnd) throw new Error("index entry runs past the block");
      const v = new Reader(block, r.pos, end);
      out.push({ offset: v.varint(), size: v.varint() });
      r.pos = end;
    }
    return out;
  } catch (e) {
    throw new BackendCorruptError(file, at, `bad index block (${(e as Error).message})`);
  }
}

/** Snappy's raw format (a varint length, then literal and copy elements). */
export function snappyDecompress(src: Buffer): Buffer {
  const r = new Reader(src, 0, src.length);
  const n = r.varint();
  const out = Buffer.alloc(n);
  let o = 0;
  let p = r.pos;
  while (p < src.length) {
    const tag = src[p++]!;
    let len: number;
    let off: number;
    switch (tag & 3) {
      case 0: {
        len = tag >>> 2;
        if (len >= 60) {
          const bytes = len - 59;
          if (p + bytes > src.length) throw new Error("truncated literal length");
          len = src.readUIntLE(p, bytes);
          p += bytes;
        }
        len += 1;
        if (p + len > src.length || o + len > n) throw new Error("literal out of range");
        src.copy(out, o, p, p + len);
        p += len;
        o += len;
        continue;
      }
      case 1:
        len = ((tag >>> 2) & 7) + 4;
        off = ((tag >>> 5) << 8) | src[p++]!;
        break;
      case 2:
        len = (tag >>> 2) + 1;
        off = src.readUInt16LE(p);
        p += 2;
        break;
      default:
        len = (tag >>> 2) + 1;
        off = src.readUInt32LE(p);
        p += 4;
        break;
    }
    if (off === 0 || off > o || o + len > n) throw new Error("copy out of range");
    for (let i = 0; i < len; i++, o++) out[o] = out[o - off]!;
  }
  if (o !== n) throw new Error(`decompressed ${o} bytes, expected ${n}`);
  return out;
}

/** Verifies a log file; returns the records read and where a torn tail starts, if any. */
function verifyLog(file: string, buf: Buffer): { records: number; tornAt?: number } {
  let records = 0;
  let pos = 0;
  let badAt: number | undefined;
  while (pos < buf.length) {
    const blockLeft = LOG_BLOCK_BYTES - (pos % LOG_BLOCK_BYTES);
    if (blockLeft < LOG_HEADER_BYTES) {
      pos += blockLeft; // trailer padding
      continue;
    }
    if (pos + LOG_HEADER_BYTES > buf.length) {
      badAt ??= pos;
      break;
    }
    const length = buf.readUInt16LE(pos + 4);
    const type = buf[pos + 6]!;
    if (type === 0 && length === 0 && buf.readUInt32LE(pos) === 0) {
      // zero fill (preallocated or padded): the rest of this block holds nothing
      pos += blockLeft;
      continue;
    }
    const ok =
      type >= 1 &&
      type <= 4 &&
      LOG_HEADER_BYTES + length <= blockLeft &&
      pos + LOG_HEADER_BYTES + length <= buf.length &&
      unmask(buf.readUInt32LE(pos)) === crc32c(buf.subarray(pos + 6, pos + LOG_HEADER_BYTES + length));
    if (!ok) {
      badAt ??= pos;
      // A damaged payload under an intact header: the next record follows it; otherwise
      // resynchronise at the next block.
      pos += type >= 1 && type <= 4 && LOG_HEADER_BYTES + length <= blockLeft ? LOG_HEADER_BYTES + length : blockLeft;
      continue;
    }
    if (badAt !== undefined) throw new BackendCorruptError(file, badAt, "log record checksum mismatch before valid records");
    records++;
    pos += LOG_HEADER_BYTES + length;
  }
  return { records, tornAt: badAt };
}
