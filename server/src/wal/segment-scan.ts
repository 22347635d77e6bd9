/**
 * Reading one segment's bytes: walks frames from offset 0, checks each frame and the chain, hands
 * good records to a visitor, and says where and why it stopped. Deciding whether a stop is a torn
 * tail (cut it) or corruption (refuse) is the caller's job; `classifyDamage` gathers the evidence.
 */
import {
  chainContinues,
  decodeCrc,
  PayloadError,
  probeFrame,
  RecordType,
  hex32,
  WAL_FORMAT_VERSION,
} from "./record-codec.js";

export interface ScannedRecord {
  type: RecordType;
  /** The segment's bytes; the payload is `buf[payloadStart, payloadEnd)`. Do not keep references. */
  buf: Buffer;
  payloadStart: number;
  payloadEnd: number;
  offsetBytes: number;
}

export interface SegmentScanResult {
  /** Offset just after the last good frame. */
  goodEndBytes: number;
  /** Chain CRC after the last good frame (the previous segment's chain if there was none). */
  chain: number;
  /** How many good frames were read. */
  records: number;
  /** Why reading stopped: the data ended exactly ("eof"), at never-written zeros ("zeros"), or at damage. */
  stop: { kind: "eof" } | { kind: "zeros" } | { kind: "damage"; offsetBytes: number; reason: string };
}

/** A segment that does not continue the previous one: always corruption, never a torn tail. */
export class SegmentChainError extends Error {
  constructor(readonly offsetBytes: number, reason: string) {
    super(reason);
  }
}

/**
 * Scans `buf` (a whole segment). `expectedChain` is the chain of the previous segment's last frame,
 * or undefined when this is the first segment read (its crc record is then trusted as the start).
 * `visit` may throw PayloadError to mark a record as damaged; other errors propagate.
 */
export function scanSegment(
  buf: Buffer,
  expectedChain: number | undefined,
  visit: (r: ScannedRecord) => void,
): SegmentScanResult {
  let off = 0;
  let chain = expectedChain ?? 0;
  let records = 0;
  const end = buf.length;
  for (;;) {
    const p = probeFrame(buf, off, end);
    if (p.kind === "eof") return { goodEndBytes: off, chain, records, stop: { kind: "eof" } };
    if (p.kind === "zero") return { goodEndBytes: off, chain, records, stop: { kind: "zeros" } };
    if (p.kind === "bad") return { goodEndBytes: off, chain, records, stop: { kind: "damage", offsetBytes: off, reason: p.reason } };
    if (records === 0) {
      if (p.type !== RecordType.Crc) {
        return { goodEndBytes: off, chain, records, stop: { kind: "damage", offsetBytes: off, reason: `segment starts with record type ${p.type}, not a crc record` } };
      }
      let previous: number;
      try {
        const crc = decodeCrc(buf, p.payloadStart, p.payloadEnd);
        if (crc.version !== WAL_FORMAT_VERSION) {
          throw new SegmentChainError(off, `unsupported WAL format version ${crc.version} (this build reads ${WAL_FORMAT_VERSION})`);
        }
        previous = crc.previousChain;
      } catch (e) {
        if (!(e instanceof PayloadError)) throw e;
        return { goodEndBytes: off, chain, records, stop: { kind: "damage", offsetBytes: off, reason: e.message } };
      }
      if (expectedChain !== undefined && previous !== expectedChain) {
        throw new SegmentChainError(off, `segment does not continue the previous one (crc record carries ${hex32(previous)}, previous segment ended with ${hex32(expectedChain)})`);
      }
      chain = previous;
    } else if (p.type === RecordType.Crc) {
      return { goodEndBytes: off, chain, records, stop: { kind: "damage", offsetBytes: off, reason: "crc record in the middle of a segment" } };
    } else if (p.type === RecordType.SyncMark) {
      // Chain-neutral: nothing to check or hand out beyond its own CRC.
      records++;
      off = p.next;
      continue;
    }
    if (!chainContinues(chain, p)) {
      return { goodEndBytes: off, chain, records, stop: { kind: "damage", offsetBytes: off, reason: "chain crc mismatch" } };
    }
    if (p.type !== RecordType.Crc) {
      try {
        visit({ type: p.type, buf, payloadStart: p.payloadStart, payloadEnd: p.payloadEnd, offsetBytes: off });
      } catch (e) {
        if (!(e instanceof PayloadError)) throw e;
        return { goodEndBytes: off, chain, records, stop: { kind: "damage", offsetBytes: off, reason: e.message } };
      }
    }
    chain = p.chainCrc;
    records++;
    off = p.next;
  }
}
