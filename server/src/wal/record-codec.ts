/**
 * etcd-ts WAL record format (version 1).
 *
 * A segment is a sequence of frames, each starting at an 8-byte-aligned offset. All integers are
 * little-endian.
 *
 *   offset  size  field
 *   0       4     payloadBytes   length of the payload (at most RECORD_PAYLOAD_BYTES_MAX)
 *   4       1     type           1 metadata, 2 entry, 3 hardState, 4 snapshot marker, 5 crc,
 *                                 6 sync mark
 *   5       1     padBytes       zero bytes after the payload, (-payloadBytes) mod 8
 *   6       2     reserved       0
 *   8       4     chainCrc       crc32cUpdate(previous frame's chainCrc, contentCrc as 4 LE bytes)
 *   12      4     recordCrc      CRC-32C of frame[0, 8) ++ payload ++ frame[8, 12)
 *   16      n     payload
 *   16+n    p     padding        zeros, so the next frame starts 8-aligned
 * where contentCrc = CRC-32C of frame[0, 8) ++ payload (not stored).
 *
 * `recordCrc` makes every frame verifiable on its own, chain field included (so damage can be told
 * apart from valid records after it); `chainCrc` ties each frame to everything before it, across
 * segments: the first frame of every segment is a crc record whose payload is the chainCrc of the
 * previous segment's last frame (0 in the first segment), and whose own chainCrc continues from
 * that value. Padding must be zero, so every byte of a frame is covered by a check. A frame whose
 * first 16 bytes are all zero is "no record here" (the preallocated, never-written tail).
 *
 * Sync marks are chain-neutral: the writer puts one in front of every write it issues, recording
 * how far the segment had been fsynced at that moment; their chainCrc field is 0, and the chain
 * skips them. They let recovery prove that damaged bytes had been made durable (then the damage is
 * corruption) or show that they may still have been in flight (then it may be a torn write).
 *
 * Payloads (u64 = 8 bytes LE; numbers must be safe integers):
 *   metadata   opaque bytes chosen by the caller of Wal.create
 *   entry      u64 term, u64 index, u8 entryType, data (rest of the payload)
 *   hardState  u64 term, u64 vote (bigint member ID), u64 commit
 *   snapshot   u64 index, u64 term, u8 hasConfState, then if 1:
 *              u32 voterCount, voterCount × u64, u32 learnerCount, learnerCount × u64
 *   crc        u32 chainCrc of the previous segment's last frame, u32 format version (1)
 *   syncMark   u64 syncedEndBytes: offset in this segment up to which data was fsynced
 */
import type { ConfState, Entry, EntryType, HardState } from "../raft/types.js";
import { crc32c, crc32cUpdate, crc32cUpdateUint32LE } from "../pkg/crc32c.js";
import { readU64LE, writeU32LE, writeU64LE } from "../pkg/u64-le.js";

export enum RecordType {
  Metadata = 1,
  Entry = 2,
  HardState = 3,
  Snapshot = 4,
  Crc = 5,
  SyncMark = 6,
}

const RECORD_TYPE_MAX = RecordType.SyncMark;

/** Written in every segment's crc record; a reader refuses segments of another version. */
export const WAL_FORMAT_VERSION = 1;
export const FRAME_HEADER_BYTES = 16;
export const CRC_PAYLOAD_BYTES = 8;
/** Upper bound on one record's payload; larger records are refused on write and read as damage. */
export const RECORD_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024;
const ENTRY_FIXED_BYTES = 17;
const HARD_STATE_BYTES = 24;

/** The snapshot marker stored in the log: which snapshot the log's entries continue from. */
export interface WalSnapshot {
  index: number;
  term: number;
  confState?: ConfState;
}

/** Size of a whole frame (header + payload + padding) carrying `payloadBytes`. */
export function frameSizeBytes(payloadBytes: number): number {
  return (FRAME_HEADER_BYTES + payloadBytes + 7) & ~7;
}

export function entryPayloadBytes(e: Entry): number {
  return ENTRY_FIXED_BYTES + e.data.length;
}

export function hardStatePayloadBytes(): number {
  return HARD_STATE_BYTES;
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === 0n && hs.commit === 0;
}

function chainNext(chain: number, contentCrc: number): number {
  return crc32cUpdateUint32LE(chain, contentCrc);
}

/** A builder's buffer until its first frame (one shared empty buffer, never written). */
const NO_FRAMES = Buffer.alloc(0);

/**
 * Builds frames into one buffer. Usage: `reserve` the exact payload sizes first (so one buffer is
 * allocated), then `add*` the records in the same order, then `finish()`.
 * The builder owns the running chain CRC: pass in the chain of the last frame already written and
 * read `chain` after `finish()`.
 */
export class FrameBuilder {
  private buf: Buffer = NO_FRAMES;
  private used = 0;
  private reservedBytes = 0;

  constructor(public chain: number) {}

  reserve(payloadBytes: number): void {
    if (payloadBytes > RECORD_PAYLOAD_BYTES_MAX) {
      throw new RangeError(`wal: record payload of ${payloadBytes} bytes exceeds ${RECORD_PAYLOAD_BYTES_MAX}`);
    }
    this.reservedBytes += frameSizeBytes(payloadBytes);
  }

  /** Offset (relative to the builder's start) where the next frame will be written. */
  get sizeBytes(): number {
    return this.used;
  }

  private begin(type: RecordType, payloadBytes: number): number {
    if (this.buf.length === 0) this.buf = Buffer.allocUnsafe(this.reservedBytes);
    const size = frameSizeBytes(payloadBytes);
    if (this.used + size > this.buf.length) throw new Error("wal: FrameBuilder used beyond its reservation");
    const o = this.used;
    writeU32LE(this.buf, o, payloadBytes);
    this.buf[o + 4] = type;
    this.buf[o + 5] = size - FRAME_HEADER_BYTES - payloadBytes;
    this.buf[o + 6] = 0;
    this.buf[o + 7] = 0;
    return o;
  }

  private end(o: number, payloadBytes: number): void {
    const size = frameSizeBytes(payloadBytes);
    const payloadEnd = o + FRAME_HEADER_BYTES + payloadBytes;
    // At most 7 bytes of padding: a loop costs less than Buffer#fill's checks and native call.
    for (let i = payloadEnd; i < o + size; i++) this.buf[i] = 0;
    const contentCrc = crc32cUpdate(crc32c(this.buf, o, o + 8), this.buf, o + FRAME_HEADER_BYTES, payloadEnd);
    this.chain = chainNext(this.chain, contentCrc);
    writeU32LE(this.buf, o + 8, this.chain);
    writeU32LE(this.buf, o + 12, crc32cUpdateUint32LE(contentCrc, this.chain));
    this.used = o + size;
  }

  addMetadata(metadata: Uint8Array): void {
    const o = this.begin(RecordType.Metadata, metadata.length);
    this.buf.set(metadata, o + FRAME_HEADER_BYTES);
    this.end(o, metadata.length);
  }

  addEntry(e: Entry): void {
    const n = entryPayloadBytes(e);
    const o = this.begin(RecordType.Entry, n);
    const p = o + FRAME_HEADER_BYTES;
    writeU64LE(this.buf, p, e.term, "wal");
    writeU64LE(this.buf, p + 8, e.index, "wal");
    this.buf[p + 16] = e.type;
    this.buf.set(e.data, p + ENTRY_FIXED_BYTES);
    this.end(o, n);
  }

  addHardState(hs: HardState): void {
    const o = this.begin(RecordType.HardState, HARD_STATE_BYTES);
    const p = o + FRAME_HEADER_BYTES;
    writeU64LE(this.buf, p, hs.term, "wal");
    this.buf.writeBigUInt64LE(hs.vote, p + 8);
    writeU64LE(this.buf, p + 16, hs.commit, "wal");
    this.end(o, HARD_STATE_BYTES);
  }

  addSnapshot(s: WalSnapshot): void {
    const n = snapshotPayloadBytes(s);
    const o = this.begin(RecordType.Snapshot, n);
    let p = o + FRAME_HEADER_BYTES;
    writeU64LE(this.buf, p, s.index, "wal");
    writeU64LE(this.buf, p + 8, s.term, "wal");
    p += 16;
    if (s.confState === undefined) {
      this.buf[p] = 0;
    } else {
      this.buf[p++] = 1;
      for (const ids of [s.confState.voters, s.confState.learners]) {
        this.buf.writeUInt32LE(ids.length, p);
        p += 4;
        for (const id of ids) {
          this.buf.writeBigUInt64LE(id, p);
          p += 8;
        }
      }
    }
    this.end(o, n);
  }

  /** A chain-neutral sync mark (see the format notes): the chain is neither checked nor advanced. */
  addSyncMark(syncedEndBytes: number): void {
    const o = this.begin(RecordType.SyncMark, 8);
    writeU64LE(this.buf, o + FRAME_HEADER_BYTES, syncedEndBytes, "wal");
    const payloadEnd = o + FRAME_HEADER_BYTES + 8;
    this.buf.writeUInt32LE(0, o + 8);
    const contentCrc = crc32cUpdate(crc32c(this.buf, o, o + 8), this.buf, o + FRAME_HEADER_BYTES, payloadEnd);
    this.buf.writeUInt32LE(crc32cUpdate(contentCrc, this.buf, o + 8, o + 12), o + 12);
    this.used = o + frameSizeBytes(8);
  }

  /**
   * The first frame of a segment: carries `previousChain` (and the format version) and restarts
   * the chain from it. Reserve CRC_PAYLOAD_BYTES for it.
   */
  addCrc(previousChain: number): void {
    const o = this.begin(RecordType.Crc, CRC_PAYLOAD_BYTES);
    this.buf.writeUInt32LE(previousChain, o + FRAME_HEADER_BYTES);
    this.buf.writeUInt32LE(WAL_FORMAT_VERSION, o + FRAME_HEADER_BYTES + 4);
    this.chain = previousChain;
    this.end(o, CRC_PAYLOAD_BYTES);
  }

  /** The frames built so far. The builder must not be used afterwards. */
  finish(): Buffer {
    return this.buf.subarray(0, this.used);
  }
}

export function snapshotPayloadBytes(s: WalSnapshot): number {
  if (s.confState === undefined) return 17;
  return 17 + 8 + 8 * (s.confState.voters.length + s.confState.learners.length);
}

/** Outcome of looking at the bytes at one frame offset. */
export type FrameProbe =
  | {
      kind: "record";
      type: RecordType;
      payloadStart: number;
      payloadEnd: number;
      /** Offset of the next frame. */
      next: number;
      chainCrc: number;
      contentCrc: number;
    }
  /** 16 zero bytes: nothing was ever written here. */
  | { kind: "zero" }
  /** Exactly at the end of the data. */
  | { kind: "eof" }
  | { kind: "bad"; reason: string };

/** Examines the frame at `off` in `buf[0, end)`; checks everything but the chain. */
export function probeFrame(buf: Buffer, off: number, end: number): FrameProbe {
  if (off === end) return { kind: "eof" };
  if (off + FRAME_HEADER_BYTES > end) {
    for (let i = off; i < end; i++) if (buf[i] !== 0) return { kind: "bad", reason: "truncated frame header" };
    return { kind: "bad", reason: "truncated frame header (zeros)" };
  }
  const payloadBytes = buf.readUInt32LE(off);
  const type = buf[off + 4]!;
  const pad = buf[off + 5]!;
  if (payloadBytes === 0 && type === 0) {
    let zero = true;
    for (let i = off + 5; i < off + FRAME_HEADER_BYTES; i++) if (buf[i] !== 0) zero = false;
    if (zero) return { kind: "zero" };
  }
  if (type < RecordType.Metadata || type > RECORD_TYPE_MAX) return { kind: "bad", reason: `unknown record type ${type}` };
  if (buf[off + 6] !== 0 || buf[off + 7] !== 0) return { kind: "bad", reason: "reserved header bytes are not zero" };
  if (payloadBytes > RECORD_PAYLOAD_BYTES_MAX) return { kind: "bad", reason: `record length ${payloadBytes} too large` };
  const size = frameSizeBytes(payloadBytes);
  if (pad !== size - FRAME_HEADER_BYTES - payloadBytes) return { kind: "bad", reason: "padding length does not match record length" };
  if (off + size > end) return { kind: "bad", reason: `record of ${size} bytes runs past the end of the file` };
  const payloadStart = off + FRAME_HEADER_BYTES;
  const payloadEnd = payloadStart + payloadBytes;
  for (let i = payloadEnd; i < off + size; i++) if (buf[i] !== 0) return { kind: "bad", reason: "padding is not zero" };
  const recordCrc = buf.readUInt32LE(off + 12);
  const contentCrc = crc32cUpdate(crc32c(buf, off, off + 8), buf, payloadStart, payloadEnd);
  const actual = crc32cUpdate(contentCrc, buf, off + 8, off + 12);
  if (actual !== recordCrc) {
    return { kind: "bad", reason: `record crc mismatch (stored ${hex32(recordCrc)}, computed ${hex32(actual)})` };
  }
  return { kind: "record", type, payloadStart, payloadEnd, next: off + size, chainCrc: buf.readUInt32LE(off + 8), contentCrc };
}

/** Whether `chainCrc` of a frame correctly continues `previousChain`. */
export function chainContinues(previousChain: number, probe: { chainCrc: number; contentCrc: number }): boolean {
  return chainNext(previousChain, probe.contentCrc) === probe.chainCrc;
}

/**
 * First 8-aligned offset in (after, end) holding a frame that verifies on its own, or -1.
 * Used after damage (see classifyDamage) to tell a torn tail from mid-log corruption.
 */
export function findValidFrameAfter(buf: Buffer, after: number, end: number): number {
  for (let off = (after + 8) & ~7; off + FRAME_HEADER_BYTES <= end; off += 8) {
    // Skip runs of zeros (the preallocated tail) a block at a time: no frame starts there.
    if ((off & (ZERO_BLOCK.length - 1)) === 0 && off + ZERO_BLOCK.length <= end && isZeroRange(buf, off, off + ZERO_BLOCK.length)) {
      off += ZERO_BLOCK.length - 8;
      continue;
    }
    const type = buf[off + 4]!;
    if (type < RecordType.Metadata || type > RECORD_TYPE_MAX) continue;
    if (buf[off + 6] !== 0 || buf[off + 7] !== 0) continue;
    const p = probeFrame(buf, off, end);
    if (p.kind === "record") return off;
  }
  return -1;
}

const SECTOR_BYTES = 512;

/** What follows damage at `damageAt` in the newest segment (see classifyDamage). */
export interface DamageEvidence {
  /** First frame after the damage that verifies on its own, or -1. */
  validAt: number;
  /** A valid sync mark after the damage saying the damaged bytes had been fsynced, or -1. */
  syncedProofAt: number;
  /** A 512-byte-aligned all-zero sector between the damage and validAt (a sector never written), or -1. */
  zeroSectorAt: number;
}

/**
 * Gathers the evidence recovery needs about damage at `damageAt` in `buf[0, end)`: walks every
 * frame that verifies after it (resynchronising at 8-byte steps past bad bytes).
 */
export function classifyDamage(buf: Buffer, damageAt: number, end: number): DamageEvidence {
  const validAt = findValidFrameAfter(buf, damageAt, end);
  let syncedProofAt = -1;
  let zeroSectorAt = -1;
  if (validAt < 0) return { validAt, syncedProofAt, zeroSectorAt };
  for (let s = Math.ceil(damageAt / SECTOR_BYTES) * SECTOR_BYTES; s + SECTOR_BYTES <= validAt; s += SECTOR_BYTES) {
    if (isZeroRange(buf, s, s + SECTOR_BYTES)) {
      zeroSectorAt = s;
      break;
    }
  }
  let off = validAt;
  for (let guard = 0; off >= 0 && off < end && guard < end; guard++) {
    const p = probeFrame(buf, off, end);
    if (p.kind === "record") {
      if (p.type === RecordType.SyncMark && p.payloadEnd - p.payloadStart === 8) {
        const syncedEnd = readU64LE(buf, p.payloadStart);
        if (syncedEnd > damageAt) {
          syncedProofAt = off;
          break;
        }
      }
      off = p.next;
    } else {
      off = findValidFrameAfter(buf, off, end);
    }
  }
  return { validAt, syncedProofAt, zeroSectorAt };
}

const ZERO_BLOCK = Buffer.alloc(64 * 1024);

/** Whether `buf[start, end)` is all zero bytes (compared natively, a block at a time). */
export function isZeroRange(buf: Buffer, start: number, end: number): boolean {
  for (let p = start; p < end; p += ZERO_BLOCK.length) {
    const n = Math.min(ZERO_BLOCK.length, end - p);
    if (buf.compare(ZERO_BLOCK, 0, n, p, p + n) !== 0) return false;
  }
  return true;
}

/** Payload decoding; each throws `PayloadError` on malformed input. */
export class PayloadError extends Error {}

export function decodeEntry(buf: Buffer, start: number, end: number): Entry {
  if (end - start < ENTRY_FIXED_BYTES) throw new PayloadError("entry payload too short");
  const term = readU64LE(buf, start);
  const index = readU64LE(buf, start + 8);
  if (term < 0 || index < 0) throw new PayloadError("entry term/index out of range");
  const type = buf[start + 16]! as EntryType;
  const data = new Uint8Array(end - start - ENTRY_FIXED_BYTES);
  data.set(buf.subarray(start + ENTRY_FIXED_BYTES, end));
  return { term, index, type, data };
}

export function decodeHardState(buf: Buffer, start: number, end: number): HardState {
  if (end - start !== HARD_STATE_BYTES) throw new PayloadError("hardState payload has the wrong length");
  const term = readU64LE(buf, start);
  const commit = readU64LE(buf, start + 16);
  if (term < 0 || commit < 0) throw new PayloadError("hardState term/commit out of range");
  return { term, vote: buf.readBigUInt64LE(start + 8), commit };
}

export function decodeSnapshot(buf: Buffer, start: number, end: number): WalSnapshot {
  if (end - start < 17) throw new PayloadError("snapshot payload too short");
  const index = readU64LE(buf, start);
  const term = readU64LE(buf, start + 8);
  if (term < 0 || index < 0) throw new PayloadError("snapshot term/index out of range");
  const has = buf[start + 16];
  if (has === 0) {
    if (end - start !== 17) throw new PayloadError("snapshot payload has trailing bytes");
    return { index, term };
  }
  let p = start + 17;
  const lists: bigint[][] = [];
  for (let k = 0; k < 2; k++) {
    if (p + 4 > end) throw new PayloadError("snapshot confState truncated");
    const n = buf.readUInt32LE(p);
    p += 4;
    if (p + 8 * n > end) throw new PayloadError("snapshot confState truncated");
    const ids: bigint[] = [];
    for (let i = 0; i < n; i++, p += 8) ids.push(buf.readBigUInt64LE(p));
    lists.push(ids);
  }
  if (p !== end) throw new PayloadError("snapshot payload has trailing bytes");
  return { index, term, confState: { voters: lists[0]!, learners: lists[1]! } };
}

export function decodeCrc(buf: Buffer, start: number, end: number): { previousChain: number; version: number } {
  if (end - start !== CRC_PAYLOAD_BYTES) throw new PayloadError("crc payload has the wrong length");
  return { previousChain: buf.readUInt32LE(start), version: buf.readUInt32LE(start + 4) };
}

export function decodeSyncMark(buf: Buffer, start: number, end: number): number {
  if (end - start !== 8) throw new PayloadError("sync mark payload has the wrong length");
  const n = readU64LE(buf, start);
  if (n < 0) throw new PayloadError("sync mark out of range");
  return n;
}

/** Size of the sync mark frame the writer puts in front of every write. */
export const SYNC_MARK_FRAME_BYTES = frameSizeBytes(8);

export function decodeMetadata(buf: Buffer, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  out.set(buf.subarray(start, end));
  return out;
}

export function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}
