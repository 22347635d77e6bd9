/** Adapts the mvcc layer (MvccStore on its Backend) to the member's StorePort. */
import { Backend, BackendBatch, BucketName, encodeUint64, type BackendImage } from "../mvcc/backend/backend.js";
import { MvccStore, WriteTxn } from "../mvcc/kv-store.js";
import type { WatchOptions, WatchSink, Watcher } from "../mvcc/watch-hub.js";
import type { StoreRangeOptions, StoreRangeResult } from "./apply/kv-ops.js";
import type { RecordBucket, StoreMetricsView, StorePort, WriteSession } from "./store-port.js";

/**
 * Meta key: raft index of the last applied entry that changed the key space. etcd 3.4 persists
 * its consistent index only with such entries; snapshots export this value as etcd's
 * `consistent_index` (see backend-snapshot.ts).
 */
export const META_MVCC_CONSISTENT_INDEX = Buffer.from("mvcc_consistent_index");

const BUCKETS: Record<RecordBucket, BucketName> = { lease: "lease", members: "members", membersRemoved: "membersRemoved", cluster: "cluster", meta: "meta", alarm: "alarm", auth: "auth", authUsers: "authUsers", authRoles: "authRoles" };

class MvccWriteSession implements WriteSession {
  private readonly records: [RecordBucket, Buffer, Buffer | undefined][] = [];
  private ended = false;

  /** The batch this session ends into; compaction stages its record into it too. */
  readonly batch: BackendBatch;

  constructor(private readonly backend: Backend, private readonly txn: WriteTxn) {
    this.batch = backend.batch();
  }

  get changed(): boolean {
    return this.txn.changes > 0;
  }

  get beginRevision(): number {
    return this.txn.revision - 1;
  }

  range(key: Buffer, end: Buffer | undefined, options: StoreRangeOptions): Promise<StoreRangeResult> {
    return this.txn.range(key, end, options);
  }

  put(key: Buffer, value: Buffer, lease: bigint): void {
    // No copies here: the store keeps its own (MvccStore.keepBytes).
    this.txn.put(key, value, lease);
  }

  deleteRange(key: Buffer, end: Buffer | undefined): Buffer[] {
    return this.txn.deleteRange(key, end).map((k) => k.key);
  }

  stage(bucket: RecordBucket, key: Buffer, value: Buffer | undefined): void {
    this.records.push([bucket, key, value]);
  }

  stageLatest(key: Buffer, value: Buffer): void {
    this.batch.putMetaLatest(key, value);
  }

  commit(consistentIndex: number): Promise<void> {
    if (this.ended) return Promise.reject(new Error("write session committed twice"));
    this.ended = true;
    const keySpaceChanged = this.txn.changes > 0;
    this.txn.end(this.batch);
    if (keySpaceChanged) this.batch.putMetaLatest(META_MVCC_CONSISTENT_INDEX, encodeUint64(consistentIndex));
    for (const [bucket, key, value] of this.records) {
      if (value === undefined) this.batch.del(BUCKETS[bucket], key);
      else this.batch.put(BUCKETS[bucket], key, value);
    }
    this.batch.setConsistentIndex(consistentIndex);
    // The batch may wait for the batch interval: the store serves its revision from memory.
    return this.backend.writeLater(this.batch);
  }
}

export class MvccStorePort implements StorePort {
  constructor(readonly backend: Backend, readonly mvcc: MvccStore) {}

  get currentRevision(): number {
    return this.mvcc.currentRevision;
  }

  get compactRevision(): number {
    return this.mvcc.compactRevision;
  }

  consistentIndex(): number {
    return this.backend.submittedConsistentIndex();
  }

  range(key: Buffer, end: Buffer | undefined, options: StoreRangeOptions): Promise<StoreRangeResult> {
    return this.mvcc.range(key, end, options);
  }

  beginWrite(): WriteSession {
    return new MvccWriteSession(this.backend, this.mvcc.write());
  }

  compact(session: WriteSession, revision: number): Promise<void> {
    return this.mvcc.scheduleCompaction(revision, (session as MvccWriteSession).batch);
  }

  hashKV(revision: number): Promise<{ hash: number; compactRevision: number; revision: number }> {
    return this.mvcc.hashKV(revision);
  }

  async loadRecords(bucket: RecordBucket): Promise<[Buffer, Buffer][]> {
    // Records committed but still waiting for the batch interval are read too.
    await this.backend.flushed();
    const out: [Buffer, Buffer][] = [];
    for await (const kv of this.backend.iterate(BUCKETS[bucket])) out.push(kv);
    return out;
  }

  forEachLeasedKey(visit: (key: Buffer, lease: bigint) => void): void {
    this.mvcc.forEachLeasedKey(visit);
  }

  image(): BackendImage {
    const backend = this.backend;
    return (async function* () {
      await backend.flushed();
      yield* backend.iterateAll();
    })();
  }

  restore(image: BackendImage): Promise<void> {
    return this.mvcc.restore(image);
  }

  sizeBytes(): Promise<number> {
    return this.backend.sizeBytes();
  }

  defragment(): Promise<void> {
    return this.backend.defragment();
  }

  metricsView(): StoreMetricsView {
    return {
      mvcc: this.mvcc.counters,
      backend: this.backend.counters,
      keys: this.mvcc.indexedKeys,
      watchers: this.mvcc.watcherCounts(),
      eventsSent: this.mvcc.watchEventsSent(),
      sizeInUseBytes: () => this.backend.sizeInUseBytes(),
    };
  }

  /**
   * Backend writes skip fsync (the WAL is the durable log); before WAL segments are released
   * behind a snapshot, one synced write makes every earlier LevelDB write durable too.
   */
  async sync(): Promise<void> {
    const batch = this.backend.batch();
    // Called when the member snapshots: etcd 3.4 saves its consistent index then too.
    batch.putMetaLatest(META_MVCC_CONSISTENT_INDEX, encodeUint64(this.backend.submittedConsistentIndex()));
    await this.backend.writeSynced(batch);
  }

  watch(options: WatchOptions, sink: WatchSink): Watcher {
    return this.mvcc.watch(options, sink);
  }

  async close(): Promise<void> {
    await this.backend.close();
  }
}
