/**
 * A received etcd 3.4 database (the bbolt file a leader sends with its snapshot) as the backend
 * image it stands for: the reverse of backend-snapshot.ts's mapping, so that a member installs
 * a snapshot from a real etcd leader as it installs one from ours.
 *
 * Mapping (etcd bucket → etcd-ts backend bucket, record conversion):
 *   key              → key        unchanged
 *   meta             → meta       scheduledCompactRev, finishedCompactRev unchanged;
 *                                 consistent_index → mvcc_consistent_index (the index of the
 *                                 last key-space change, which is what etcd keeps), and our
 *                                 consistent_index := max(it, the snapshot's index) (the database
 *                                 is as of the leader's applied index, at or above the
 *                                 snapshot's; etcd 3.4 does not store that index when the last
 *                                 entries changed no key); term := the snapshot's term;
 *                                 confState := the snapshot's configuration
 *   lease            → lease      key unchanged; leasepb.Lease → our 16-byte (TTL, remaining TTL)
 *   members          → members    etcd's Member JSON → our member record, keyed by hex id
 *   members_removed  → members    `removed/<hex id>` = "1"
 *   cluster          → members    `clusterVersion`
 *   alarm            → alarm      etcdserverpb.AlarmMember key → our 9-byte (member id, type) key
 *   auth, authUsers, authRoles   unchanged
 * Other buckets are not etcd 3.4's and are skipped.
 *
 * The image opens and reads the file only when iterated (once), bucket by bucket, and closes it
 * when the iteration ends or stops: an image that is dropped unread holds nothing open.
 */
import { BboltReader } from "../mvcc/backend/bbolt-reader.js";
import type { BboltWriter, BboltFileInfo } from "../mvcc/backend/bbolt-writer.js";
import { writeEtcdDatabase } from "./backend-snapshot.js";
import { META_CONSISTENT_INDEX, META_TERM, bucketKey, encodeUint64, type BackendImage, type BucketName } from "../mvcc/backend/backend.js";
import type { SnapshotMetadata } from "../raft/types.js";
import { CONF_STATE_KEY, encodeConfState } from "./cluster/conf-change.js";
import { encodeMember } from "./cluster/membership.js";
import { META_MVCC_CONSISTENT_INDEX } from "./mvcc-store-port.js";

/** An etcd database whose records do not have etcd 3.4's formats. */
export class EtcdDatabaseFormatError extends Error {
  readonly code = "ETCD_DATABASE_FORMAT";
}

const COMPACTION_KEYS = new Set(["scheduledCompactRev", "finishedCompactRev"]);

/**
 * The backend image of the etcd database in `filePath`, received with `snapshot`.
 */
export function etcdDatabaseImage(filePath: string, snapshot: SnapshotMetadata): BackendImage {
  return {
    [Symbol.asyncIterator]: () => iterate(filePath, snapshot)[Symbol.asyncIterator](),
  };
}

/**
 * The member's snapshot database format, as the peer transport needs it (structurally rafthttp's
 * SnapshotDatabaseFormat, which this layer does not import): etcd-ts images to etcd databases
 * and back.
 */
export const etcdSnapshotDatabase = {
  writeEtcdDatabase(image: BackendImage, writer: BboltWriter): Promise<BboltFileInfo> {
    return writeEtcdDatabase(image, writer);
  },
  imageOfEtcdDatabase(filePath: string, snapshot: SnapshotMetadata): BackendImage {
    return etcdDatabaseImage(filePath, snapshot);
  },
};

async function* iterate(filePath: string, snapshot: SnapshotMetadata): AsyncGenerator<[Buffer, Buffer]> {
  let reader: BboltReader | undefined;
  try {
    reader = BboltReader.open(filePath);
    const r = reader;
    const names = new Set(r.bucketNames().map((b) => b.toString("latin1")));
    const bucket = function* (name: string): Generator<[Buffer, Buffer]> {
      if (names.has(name)) yield* r.iterate(name);
    };
    const put = (b: BucketName, key: Buffer, value: Buffer): [Buffer, Buffer] => [bucketKey(b, key), value];
    let n = 0;
    // let the event loop breathe on big databases (the reader's reads are synchronous)
    const breathe = async (): Promise<void> => {
      if (++n % 4096 === 0) await new Promise<void>((r) => setImmediate(r));
    };

    for (const [k, v] of bucket("key")) {
      yield put("key", k, v);
      await breathe();
    }
    let mvccIndex = 0;
    for (const [k, v] of bucket("meta")) {
      const name = k.toString("latin1");
      if (name === "consistent_index") mvccIndex = uint64(v, "meta consistent_index");
      else if (COMPACTION_KEYS.has(name)) yield put("meta", k, v);
    }
    yield put("meta", META_MVCC_CONSISTENT_INDEX, encodeUint64(mvccIndex));
    yield put("meta", META_CONSISTENT_INDEX, encodeUint64(Math.max(mvccIndex, snapshot.index)));
    yield put("meta", META_TERM, encodeUint64(snapshot.term));
    yield put("meta", CONF_STATE_KEY, encodeConfState(snapshot.confState));
    for (const [k, v] of bucket("lease")) {
      yield put("lease", k, leaseRecord(k, v));
      await breathe();
    }
    for (const [k, v] of bucket("members")) yield put("members", k, memberRecord(k, v));
    for (const [k] of bucket("members_removed")) yield put("members", Buffer.from("removed/" + k.toString("latin1")), Buffer.from("1"));
    for (const [k, v] of bucket("cluster")) if (k.toString("latin1") === "clusterVersion") yield put("members", k, v);
    for (const [k] of bucket("alarm")) yield put("alarm", alarmKey(k), Buffer.alloc(0));
    for (const name of ["auth", "authUsers", "authRoles"] as const) {
      for (const [k, v] of bucket(name)) {
        yield [bucketKey(name, k), v];
        await breathe();
      }
    }
  } finally {
    reader?.close();
  }
}

function uint64(v: Buffer, what: string): number {
  if (v.length !== 8) throw new EtcdDatabaseFormatError(`etcd database: ${what} is ${v.length} bytes, not 8`);
  const n = v.readBigUInt64BE(0);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new EtcdDatabaseFormatError(`etcd database: ${what} ${n} is too large`);
  return Number(n);
}

/** Reads the varint fields of a small protobuf message (fields of other wire types are skipped). */
function varintFields(b: Buffer, what: string): Map<number, bigint> {
  const out = new Map<number, bigint>();
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= b.length) throw new EtcdDatabaseFormatError(`etcd database: truncated ${what}`);
      const c = b[pos++]!;
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return BigInt.asUintN(64, v);
    }
    throw new EtcdDatabaseFormatError(`etcd database: bad varint in ${what}`);
  };
  while (pos < b.length) {
    const key = Number(varint());
    const wire = key & 7;
    if (wire === 0) out.set(key >>> 3, varint());
    else if (wire === 2) pos += Number(varint());
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new EtcdDatabaseFormatError(`etcd database: bad wire type in ${what}`);
  }
  if (pos > b.length) throw new EtcdDatabaseFormatError(`etcd database: truncated ${what}`);
  return out;
}

/** leasepb.Lease {ID = 1, TTL = 2, RemainingTTL = 3} → our (TTL, remaining TTL) record. */
function leaseRecord(key: Buffer, value: Buffer): Buffer {
  if (key.length !== 8) throw new EtcdDatabaseFormatError(`etcd database: lease key of ${key.length} bytes`);
  const f = varintFields(value, "lease");
  const out = Buffer.alloc(16);
  out.writeBigUInt64BE(f.get(2) ?? 0n, 0);
  out.writeBigUInt64BE(f.get(3) ?? 0n, 8);
  return out;
}

/** etcdserverpb.AlarmMember {MemberID = 1, Alarm = 2} → our (member id, alarm type) key. */
function alarmKey(key: Buffer): Buffer {
  const f = varintFields(key, "alarm");
  const out = Buffer.alloc(9);
  out.writeBigUInt64BE(f.get(1) ?? 0n, 0);
  out[8] = Number(f.get(2) ?? 0n) & 0xff;
  return out;
}

/** etcd's Member JSON (its id a decimal uint64, which JSON numbers cannot hold: the key has it). */
function memberRecord(key: Buffer, value: Buffer): Buffer {
  let id: bigint;
  let json: { peerURLs?: string[]; isLearner?: boolean; name?: string; clientURLs?: string[] };
  try {
    id = BigInt("0x" + key.toString("latin1"));
    json = JSON.parse(value.toString("utf8")) as typeof json;
  } catch (e) {
    throw new EtcdDatabaseFormatError(`etcd database: bad member record ${key.toString("latin1")}: ${String(e)}`);
  }
  return encodeMember({
    id,
    name: json.name ?? "",
    peerUrls: json.peerURLs ?? [],
    clientUrls: json.clientURLs ?? [],
    isLearner: json.isLearner ?? false,
  });
}
