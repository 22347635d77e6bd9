/**
 * Exports the backend as etcd 3.4 stores it: a bbolt file with etcd's buckets and record formats,
 * which is what `Maintenance.Snapshot` streams and what `etcdctl snapshot status|restore` read.
 *
 * Mapping (etcd-ts backend bucket → etcd bucket, record conversion):
 *   key            → "key"             unchanged (same revision keys, same mvccpb.KeyValue bytes)
 *   meta           → "meta"            scheduledCompactRev / finishedCompactRev unchanged;
 *                                      every other key of ours (term, ConfState, the v2 store image...) dropped;
 *                                      `consistent_index` = the index of the last entry that
 *                                      changed the key space (what etcd 3.4 persists: it saves the
 *                                      index only when a write txn has changes), from
 *                                      META_MVCC_CONSISTENT_INDEX
 *   lease          → "lease"           key unchanged (int64 big-endian); 16-byte record →
 *                                      leasepb.Lease {ID=1, TTL=2, RemainingTTL=3}
 *   members        → "members"         etcd's Member JSON keyed by the hex id (written so by the
 *                                      membership; records of older data dirs, with a hex string
 *                                      id, are rewritten: decimal id, Go field order and escaping);
 *                                      older `removed/<hex id>` → "members_removed",
 *                                      older `clusterVersion` → "cluster"
 *   membersRemoved → "members_removed" unchanged (<hex id> = "removed")
 *   cluster        → "cluster"         unchanged ("clusterVersion" = version)
 *   alarm          → "alarm"           9-byte (member id, type) key → etcdserverpb.AlarmMember
 *                                      bytes as the key, empty value
 *   auth           → "auth"            unchanged, plus `authRevision` = 1 when absent (what etcd
 *                                      writes when it first opens its auth store)
 *   authUsers, authRoles               unchanged
 * All ten etcd buckets are always present (etcd creates them at start-up, empty or not).
 *
 * Consistency: the whole backend is read through one LevelDB iterator (one implicit snapshot).
 * Memory: the key and lease buckets stream through the writer; the small buckets (meta, members,
 * alarm, auth) are gathered first.
 */
import { BboltWriter, type BboltFileInfo, type BboltWriterOptions } from "../mvcc/backend/bbolt-writer.js";
import { Backend, Bucket, encodeUint64, type BackendImage } from "../mvcc/backend/backend.js";
import { decodeMember, type MemberRecord } from "./cluster/membership.js";
import { META_MVCC_CONSISTENT_INDEX, MvccStorePort } from "./mvcc-store-port.js";
import type { StorePort } from "./store-port.js";
import { goJsonString } from "../pkg/go-json.js";

export { goJsonString };

const META_CONSISTENT_INDEX = "consistent_index";
/** The only other meta keys etcd 3.4 has (ours also keeps the term and the raft ConfState). */
const META_COMPACTION_KEYS = ["scheduledCompactRev", "finishedCompactRev"];
const AUTH_REVISION = Buffer.from("authRevision");

/** The backend behind a store port, when it is the LevelDB one (undefined for test doubles). */
export function backendOf(store: StorePort): Backend | undefined {
  return store instanceof MvccStorePort ? store.backend : undefined;
}

/**
 * Writes the backend to `filePath` as an etcd 3.4 bbolt database (see the mapping above).
 * Rejects with the backend's or the file system's errors; the file is then incomplete.
 */
export interface EtcdSnapshotOptions extends BboltWriterOptions {
  /** Polled while reading the backend; when it returns true the export stops with SnapshotAbortedError. */
  aborted?: () => boolean;
}

/** The export was stopped through `EtcdSnapshotOptions.aborted`; the file is incomplete. */
export class SnapshotAbortedError extends Error {
  readonly code = "SNAPSHOT_ABORTED";
  constructor() {
    super("snapshot: aborted");
  }
}

export async function writeEtcdSnapshotFile(backend: Backend, filePath: string, options: EtcdSnapshotOptions = {}): Promise<BboltFileInfo> {
  // Everything the member has answered for must be in the image.
  await backend.flushed();
  const writer = await BboltWriter.create(filePath, options);
  return writeEtcdDatabase(backend.iterateAll(), writer, options.aborted);
}

/**
 * Writes a backend image (a whole backend, e.g. a merged snapshot's) with `writer` as an etcd 3.4
 * database (the mapping above) and finishes the writer; on any error aborts it and rejects.
 */
export async function writeEtcdDatabase(image: BackendImage, writer: BboltWriter, aborted: () => boolean = () => false): Promise<BboltFileInfo> {
  let read = 0;
  try {
    const small = {
      meta: new Map<string, Buffer>(),
      members: [] as Array<[Buffer, Buffer]>,
      membersRemoved: [] as Array<[Buffer, Buffer]>,
      cluster: [] as Array<[Buffer, Buffer]>,
      alarm: [] as Array<[Buffer, Buffer]>,
      auth: [] as Array<[Buffer, Buffer]>,
    };
    const streamed = new Set<number>();
    let streaming: number | undefined;
    const closeStream = async (): Promise<void> => {
      if (streaming !== undefined) await writer.endBucket();
      streaming = undefined;
    };
    const stream = async (bucketId: number, name: string, key: Buffer, value: Buffer): Promise<void> => {
      if (streaming !== bucketId) {
        await closeStream();
        writer.beginBucket(Buffer.from(name));
        streaming = bucketId;
        streamed.add(bucketId);
      }
      await writer.put(key, value);
    };

    for await (const [fullKey, value] of image) {
      if (++read % 1024 === 0 && aborted()) throw new SnapshotAbortedError();
      const id = fullKey[0]!;
      const key = fullKey.subarray(1);
      switch (id) {
        case Bucket.key:
          await stream(id, "key", key, value);
          break;
        case Bucket.lease:
          await stream(id, "lease", key, encodeLeasepb(key, value));
          break;
        case Bucket.authUsers:
          await stream(id, "authUsers", key, value);
          break;
        case Bucket.authRoles:
          await stream(id, "authRoles", key, value);
          break;
        case Bucket.meta:
          small.meta.set(key.toString("latin1"), value);
          break;
        case Bucket.members:
          splitMembersRecord(key, value, small);
          break;
        case Bucket.membersRemoved:
          small.membersRemoved.push([key, value]);
          break;
        case Bucket.cluster:
          small.cluster.push([key, value]);
          break;
        case Bucket.alarm:
          small.alarm.push([encodeAlarmMember(key), Buffer.alloc(0)]);
          break;
        case Bucket.auth:
          small.auth.push([key, value]);
          break;
        default:
          break; // not etcd data
      }
    }
    await closeStream();

    const empty: Array<[string, number]> = [["key", Bucket.key], ["lease", Bucket.lease], ["authUsers", Bucket.authUsers], ["authRoles", Bucket.authRoles]];
    for (const [name, id] of empty) {
      if (!streamed.has(id)) await writeBucket(writer, name, []);
    }
    if (!small.auth.some(([k]) => k.equals(AUTH_REVISION))) small.auth.push([AUTH_REVISION, encodeUint64(1)]);
    await writeBucket(writer, "meta", etcdMeta(small.meta, streamed.has(Bucket.key)));
    await writeBucket(writer, "members", small.members);
    await writeBucket(writer, "members_removed", small.membersRemoved);
    await writeBucket(writer, "cluster", small.cluster);
    await writeBucket(writer, "alarm", small.alarm);
    await writeBucket(writer, "auth", small.auth);
    return await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** Writes a whole bucket from unsorted, possibly duplicated pairs (later pairs win). */
async function writeBucket(writer: BboltWriter, name: string, pairs: Array<[Buffer, Buffer]>): Promise<void> {
  const byKey = new Map<string, [Buffer, Buffer]>();
  for (const p of pairs) byKey.set(p[0].toString("hex"), p);
  const sorted = [...byKey.values()].sort((a, b) => Buffer.compare(a[0], b[0]));
  writer.beginBucket(Buffer.from(name));
  for (const [k, v] of sorted) await writer.put(k, v);
  await writer.endBucket();
}

function etcdMeta(meta: Map<string, Buffer>, keySpaceWritten: boolean): Array<[Buffer, Buffer]> {
  const out: Array<[Buffer, Buffer]> = [];
  for (const k of META_COMPACTION_KEYS) {
    const v = meta.get(k);
    if (v !== undefined) out.push([Buffer.from(k), v]);
  }
  const mvccIndex = meta.get(META_MVCC_CONSISTENT_INDEX.toString("latin1"));
  if (mvccIndex !== undefined) {
    out.push([Buffer.from(META_CONSISTENT_INDEX), mvccIndex]);
  } else {
    // A backend written before the key-space index was kept: the last applied index is the best
    // available value. A store that never changed a key has none, like etcd.
    const ci = meta.get(META_CONSISTENT_INDEX);
    if (ci !== undefined && keySpaceWritten) out.push([Buffer.from(META_CONSISTENT_INDEX), ci]);
  }
  return out;
}

function splitMembersRecord(
  key: Buffer,
  value: Buffer,
  into: { members: Array<[Buffer, Buffer]>; membersRemoved: Array<[Buffer, Buffer]>; cluster: Array<[Buffer, Buffer]> },
): void {
  const k = key.toString("latin1");
  if (k === "clusterVersion") {
    into.cluster.push([Buffer.from("clusterVersion"), value]);
  } else if (k.startsWith("removed/")) {
    into.membersRemoved.push([Buffer.from(k.slice("removed/".length)), Buffer.from("removed")]);
  } else {
    const m = decodeMember(value);
    into.members.push([Buffer.from(m.id.toString(16)), encodeEtcdMemberJson(m)]);
  }
}

/**
 * etcd's membership.Member as Go's encoding/json writes it: fields in struct order (id,
 * peerURLs, isLearner, name, clientURLs), the id as a decimal uint64, omitempty on isLearner,
 * name and clientURLs.
 */
export function encodeEtcdMemberJson(m: MemberRecord): Buffer {
  let s = `{"id":${m.id.toString(10)},"peerURLs":[${m.peerUrls.map(goJsonString).join(",")}]`;
  if (m.isLearner) s += `,"isLearner":true`;
  if (m.name !== "") s += `,"name":${goJsonString(m.name)}`;
  if (m.clientUrls.length > 0) s += `,"clientURLs":[${m.clientUrls.map(goJsonString).join(",")}]`;
  return Buffer.from(s + "}");
}

/** leasepb.Lease {ID int64 = 1, TTL int64 = 2, RemainingTTL int64 = 3} from our 16-byte record. */
export function encodeLeasepb(key: Buffer, record: Buffer): Buffer {
  const id = key.readBigInt64BE(0);
  const ttl = record.length >= 8 ? record.readBigUInt64BE(0) : 0n;
  const remaining = record.length >= 16 ? record.readBigUInt64BE(8) : 0n;
  const parts: number[] = [];
  const field = (tag: number, v: bigint): void => {
    if (v === 0n) return;
    parts.push(tag);
    pushVarint(parts, BigInt.asUintN(64, v));
  };
  field(0x08, id);
  field(0x10, ttl);
  field(0x18, remaining);
  return Buffer.from(parts);
}

/** etcdserverpb.AlarmMember {memberID uint64 = 1, alarm enum = 2} from our 9-byte alarm key. */
export function encodeAlarmMember(key: Buffer): Buffer {
  const parts: number[] = [];
  const memberId = key.readBigUInt64BE(0);
  const alarm = key[8] ?? 0;
  if (memberId !== 0n) {
    parts.push(0x08);
    pushVarint(parts, memberId);
  }
  if (alarm !== 0) {
    parts.push(0x10);
    pushVarint(parts, BigInt(alarm));
  }
  return Buffer.from(parts);
}

function pushVarint(out: number[], v: bigint): void {
  let x = v;
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}
