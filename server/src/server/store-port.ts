/**
 * What the member needs of the revisioned store and its backend (consumer-owned interfaces;
 * server/src/server/mvcc-store-port.ts adapts the mvcc layer to them).
 *
 * Apply handshake, once per applied raft entry that changes anything:
 *   const w = port.beginWrite();   // reads see the store at head plus w's own writes
 *   ...w.put / w.deleteRange / w.stage(bucket, key, value)...
 *   const written = w.commit(entryIndex);
 *     // at once: the store shows the changes (revision, watchers); then ONE backend batch of the
 *     // changes + records + consistent index, which `written` waits for (it may wait for the
 *     // backend's batch interval; the store serves the changes from memory meanwhile)
 * Only one write session is open at a time (the apply loop is serial).
 */
import type { BackendCounters, BackendImage } from "../mvcc/backend/backend.js";
import type { MvccCounters } from "../mvcc/kv-store.js";
import type { KvReader, KvWriter } from "./apply/kv-ops.js";
import type { WatchOptions, WatchSink, Watcher } from "../mvcc/watch-hub.js";

/** Backend buckets other layers keep records in, next to the key-value data. */
export type RecordBucket = "lease" | "members" | "membersRemoved" | "cluster" | "meta" | "alarm" | "auth" | "authUsers" | "authRoles";

/** What the store reports for etcd's etcd_mvcc_* and etcd_disk_backend_* metrics. */
export interface StoreMetricsView {
  mvcc: MvccCounters;
  backend: BackendCounters;
  /** Keys in the key index (etcd_debugging_mvcc_keys_total). */
  keys: number;
  /** Watchers in step with the head, and those catching up (slow). */
  watchers: { synced: number; unsynced: number };
  /** Events handed to watchers so far. */
  eventsSent: number;
  /** Bytes the backend's live data takes (etcd_mvcc_db_total_size_in_use_in_bytes). */
  sizeInUseBytes(): Promise<number>;
}

export interface WriteSession extends KvWriter {
  /** Stages a record put (value) or delete (undefined) into this session's batch. */
  stage(bucket: RecordBucket, key: Buffer, value: Buffer | undefined): void;
  /**
   * Stages a meta record of which only the newest value matters (Backend's putMetaLatest): of the
   * batches written together, only the last one's value is written (the v2 store, saved whole).
   */
  stageLatest(key: Buffer, value: Buffer): void;
  /**
   * Ends the session: before returning, the store shows its changes (the revision moves, watchers
   * are notified) and its batch, with the consistent index, is queued for the backend. Resolves
   * once the batch is in the backend; rejects when the backend refused it (the member must stop).
   */
  commit(consistentIndex: number): Promise<void>;
}

export interface StorePort extends KvReader {
  readonly currentRevision: number;
  readonly compactRevision: number;
  /**
   * Raft index of the last entry whose effects are in the store (handed to the backend; its
   * LevelDB write may still wait for the batch interval).
   */
  consistentIndex(): number;
  beginWrite(): WriteSession;
  /**
   * Compacts at `revision` inside the given session (logical part applied with it); the returned
   * promise settles when the physical deletion is done.
   * @throws the mvcc layer's ErrCompacted / ErrFutureRev.
   */
  compact(session: WriteSession, revision: number): Promise<void>;
  hashKV(revision: number): Promise<{ hash: number; compactRevision: number; revision: number }>;
  /** Every record of a bucket (start-up, and after a snapshot is installed). */
  loadRecords(bucket: RecordBucket): Promise<[Buffer, Buffer][]>;
  /**
   * Visits every live key that has a lease, with that lease (the lessor re-attaches them).
   * Synchronous; the visitor must not write.
   */
  forEachLeasedKey(visit: (key: Buffer, lease: bigint) => void): void;
  /**
   * The backend as an image (what a leader's merged snapshot carries), read lazily: when first
   * iterated, the writes waiting for the batch interval are written, then it reads from one
   * LevelDB snapshot, so its consistent index is at least the applied index of that moment.
   */
  image(): BackendImage;
  /**
   * Replaces everything with `image` (a leader's backend) and rebuilds the store from it; watchers
   * catch up from the new contents (see MvccStore.restore). Only between applied entries (no
   * write session open). Rejects with the backend's errors: the member must stop.
   */
  restore(image: BackendImage): Promise<void>;
  sizeBytes(): Promise<number>;
  /** The store's counters for the metrics; absent in stores that keep none (test stand-ins). */
  metricsView?(): StoreMetricsView;
  /**
   * Rewrites the backend's files without the space dead entries hold (etcd's Defragment).
   * Reads and writes go on meanwhile. Absent on stores without files.
   */
  defragment?(): Promise<void>;
  /**
   * Makes everything committed so far durable, batches still waiting for the backend's batch
   * interval included (before the WAL behind it is released).
   */
  sync(): Promise<void>;
  /** Registers a watcher on the store's watch hub (see mvcc/watch-hub.ts for delivery rules). */
  watch(options: WatchOptions, sink: WatchSink): Watcher;
  close(): Promise<void>;
}
