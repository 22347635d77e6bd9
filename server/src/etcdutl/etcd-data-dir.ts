/**
 * Reads a stopped etcd 3.4 member's raft state from its data dir: the WAL (member/wal) and the
 * raft snapshot files (member/snap/*.snap), in etcd's own formats.
 *
 * etcd's WAL: segments `%016x-%016x.wal` (sequence, first index), read in name order. A segment is
 * a sequence of frames: an 8-byte little-endian length field (the low 56 bits: the record's bytes;
 * when bit 63 is set, bits 56-58 give the zero padding that follows, up to 8-byte alignment) and a
 * walpb.Record {type = 1, crc = 2, data = 3}. Record types: 1 metadata (etcdserverpb.Metadata
 * {NodeID = 1, ClusterID = 2}), 2 entry (raftpb.Entry), 3 HardState (raftpb.HardState), 4 crc (the
 * running CRC carried into a new segment), 5 snapshot marker (walpb.Snapshot {index = 1, term = 2}).
 * Every record's crc is CRC-32C continued over the data of the records before it (a crc record
 * sets the running value). A zero length field (the preallocated tail) or a frame cut short ends
 * the log. A later entry at an index already read replaces it and everything after it, as etcd's
 * ReadAll does.
 *
 * etcd's snapshot file: `%016x-%016x.snap` (term, index), a snappb.Snapshot {crc = 1, data = 2}
 * whose crc is the CRC-32C of data, and data a raftpb.Snapshot.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Entry as PbEntry, HardState as PbHardState, Snapshot as PbSnapshot } from "@etcd-ts/proto/raftpb/raft";
import { crc32cUpdate } from "../pkg/crc32c.js";
import type { ConfState, Entry, HardState, Snapshot } from "../raft/types.js";

/** An etcd data dir whose WAL or snapshot files cannot be read as etcd 3.4 writes them. */
export class EtcdDataDirError extends Error {
  readonly code = "ETCD_DATA_DIR";
}

export interface EtcdWal {
  memberId: bigint;
  clusterId: bigint;
  hardState: HardState;
  /** The snapshot markers, in log order. */
  snapshots: Array<{ index: number; term: number }>;
  /** Every entry the log holds, in index order (the live suffix after truncations). */
  entries: Entry[];
}

const WAL_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
const SNAP_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
const RECORD_BYTES_MAX = 512 * 1024 * 1024;

enum WalRecordType {
  Metadata = 1,
  Entry = 2,
  State = 3,
  Crc = 4,
  Snapshot = 5,
}

/** The protobuf fields of a small message: varints as bigint, length-delimited as Buffer. */
function fields(b: Buffer, what: string): Map<number, Array<bigint | Buffer>> {
  const out = new Map<number, Array<bigint | Buffer>>();
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= b.length) throw new EtcdDataDirError(`truncated ${what}`);
      const c = b[pos++]!;
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return BigInt.asUintN(64, v);
    }
    throw new EtcdDataDirError(`bad varint in ${what}`);
  };
  while (pos < b.length) {
    const key = Number(varint());
    const field = key >>> 3;
    const list = out.get(field) ?? [];
    out.set(field, list);
    switch (key & 7) {
      case 0:
        list.push(varint());
        break;
      case 2: {
        const n = Number(varint());
        if (pos + n > b.length) throw new EtcdDataDirError(`truncated ${what}`);
        list.push(b.subarray(pos, pos + n));
        pos += n;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      default:
        throw new EtcdDataDirError(`bad wire type in ${what}`);
    }
  }
  return out;
}

function num(f: Map<number, Array<bigint | Buffer>>, field: number): bigint {
  const v = f.get(field)?.at(-1);
  return typeof v === "bigint" ? v : 0n;
}

function safe(n: bigint, what: string): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new EtcdDataDirError(`${what} ${n} is too large`);
  return Number(n);
}

/** The WAL segment files of `walDir` in order. @throws EtcdDataDirError when there are none. */
export function etcdWalSegments(walDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(walDir).filter((n) => WAL_NAME.test(n)).sort();
  } catch (e) {
    throw new EtcdDataDirError(`cannot read the WAL directory ${walDir}: ${(e as Error).message}`);
  }
  if (names.length === 0) throw new EtcdDataDirError(`no WAL segments in ${walDir}`);
  return names.map((n) => path.join(walDir, n));
}

/**
 * Reads the whole WAL of an etcd 3.4 member.
 * @throws EtcdDataDirError on a CRC mismatch, a malformed record or missing metadata.
 */
export function readEtcdWal(walDir: string): EtcdWal {
  let crc = 0;
  let metadata: Buffer | undefined;
  let hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  const snapshots: Array<{ index: number; term: number }> = [];
  let entries: Entry[] = [];
  const segments = etcdWalSegments(walDir);
  segments.forEach((file, segmentIndex) => {
    const buf = readFileSync(file);
    let pos = 0;
    while (pos + 8 <= buf.length) {
      const lenField = buf.readBigUInt64LE(pos);
      if (lenField === 0n) break;
      const recBytes = Number(lenField & 0x00ff_ffff_ffff_ffffn);
      const padBytes = (lenField & (1n << 63n)) !== 0n ? Number((lenField >> 56n) & 7n) : 0;
      if (recBytes > RECORD_BYTES_MAX || pos + 8 + recBytes + padBytes > buf.length) {
        if (segmentIndex === segments.length - 1) break; // a torn tail
        throw new EtcdDataDirError(`${file}: record at offset ${pos} runs past the end of the segment`);
      }
      const rec = fields(buf.subarray(pos + 8, pos + 8 + recBytes), `WAL record at ${file}:${pos}`);
      const type = Number(num(rec, 1));
      const recCrc = Number(num(rec, 2));
      const data = (rec.get(3)?.at(-1) as Buffer | undefined) ?? Buffer.alloc(0);
      if (type === WalRecordType.Crc) {
        if (crc !== 0 && recCrc !== crc) throw new EtcdDataDirError(`${file}: crc record ${recCrc} does not continue the log's crc ${crc}`);
        crc = recCrc;
      } else {
        crc = crc32cUpdate(crc, data);
        if (recCrc !== crc) {
          if (segmentIndex === segments.length - 1 && isZeroFrom(buf, pos + 8 + recBytes + padBytes)) break; // torn tail
          throw new EtcdDataDirError(`${file}: WAL record at offset ${pos} fails its CRC (walpb: crc mismatch)`);
        }
        switch (type) {
          case WalRecordType.Metadata:
            if (metadata !== undefined && !metadata.equals(data)) throw new EtcdDataDirError(`${file}: conflicting metadata`);
            metadata = Buffer.from(data);
            break;
          case WalRecordType.Entry: {
            const e = PbEntry.decode(data);
            const entry: Entry = { term: safe(e.term, "entry term"), index: safe(e.index, "entry index"), type: e.type as number, data: Buffer.from(e.data ?? Buffer.alloc(0)) };
            const first = entries[0]?.index;
            if (first !== undefined && entry.index <= entries[entries.length - 1]!.index) entries = entries.slice(0, Math.max(0, entry.index - first));
            entries.push(entry);
            break;
          }
          case WalRecordType.State: {
            const h = PbHardState.decode(data);
            hardState = { term: safe(h.term, "term"), vote: h.vote, commit: safe(h.commit, "commit") };
            break;
          }
          case WalRecordType.Snapshot: {
            const s = fields(data, "WAL snapshot marker");
            snapshots.push({ index: safe(num(s, 1), "snapshot index"), term: safe(num(s, 2), "snapshot term") });
            break;
          }
          default:
            throw new EtcdDataDirError(`${file}: unknown WAL record type ${type}`);
        }
      }
      pos += 8 + recBytes + padBytes;
    }
  });
  if (metadata === undefined) throw new EtcdDataDirError(`${walDir}: the WAL has no metadata record`);
  const md = fields(metadata, "WAL metadata");
  return { memberId: num(md, 1), clusterId: num(md, 2), hardState, snapshots, entries };
}

function isZeroFrom(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

function confStateOf(cs: { voters: bigint[]; learners: bigint[] } | undefined): ConfState {
  return { voters: [...(cs?.voters ?? [])], learners: [...(cs?.learners ?? [])] };
}

/**
 * The newest snapshot file in `snapDir` that one of `markers` names (etcd's LoadNewestAvailable),
 * or undefined when there is none.
 * @throws EtcdDataDirError when that file fails its CRC.
 */
export function loadEtcdSnapshot(snapDir: string, markers: Array<{ index: number; term: number }>): Snapshot | undefined {
  let names: string[];
  try {
    names = readdirSync(snapDir).filter((n) => SNAP_NAME.test(n)).sort().reverse();
  } catch {
    return undefined;
  }
  for (const name of names) {
    const m = SNAP_NAME.exec(name)!;
    const term = parseInt(m[1]!, 16);
    const index = parseInt(m[2]!, 16);
    if (!markers.some((k) => k.index === index && k.term === term)) continue;
    const file = path.join(snapDir, name);
    const f = fields(readFileSync(file), `snapshot file ${file}`);
    const data = f.get(2)?.at(-1);
    if (!(data instanceof Buffer)) throw new EtcdDataDirError(`${file}: no snapshot data`);
    const crc = Number(num(f, 1));
    if (crc32cUpdate(0, data) !== crc) throw new EtcdDataDirError(`${file}: crc mismatch`);
    const s = PbSnapshot.decode(data);
    return {
      metadata: { index: safe(s.metadata?.index ?? 0n, "snapshot index"), term: safe(s.metadata?.term ?? 0n, "snapshot term"), confState: confStateOf(s.metadata?.confState) },
      data: Buffer.from(s.data ?? Buffer.alloc(0)),
    };
  }
  return undefined;
}
