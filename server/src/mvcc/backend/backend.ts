/**
 * The backend: etcd-ts's single LevelDB (classic-level) database, split into buckets. The database
 * is reached through a StorageEngine (engine.ts): ClassicLevelEngine in production (`open`), any
 * other engine through `openOn` (simulations run on a MemoryEngine).
 *
 * On-disk layout
 * - Every LevelDB key is `[bucketId: 1 byte] ++ bucketKey`. A bucket is therefore a contiguous key
 *   range, iterated in byte order. Bucket ids are fixed forever (see `Bucket`); never renumber.
 * - `meta` holds the consistent index (`consistent_index`, 8-byte big-endian uint64) and the raft
 *   term of that entry (`term`, same encoding), plus whatever the layers above keep there (the MVCC
 *   store keeps `scheduledCompactRev` / `finishedCompactRev`).
 *
 * Writes
 * - All changes go through a `BackendBatch`. The apply loop builds ONE batch per applied raft
 *   entry (or group of entries): MVCC changes, lessor/membership/auth records and the consistent
 *   index, then calls `write(batch)`. LevelDB applies a batch atomically, so after a crash either
 *   all of an entry's effects and its consistent index are on disk, or none are.
 * - Writes are not fsynced: the WAL is the durable log, and a restart replays entries above the
 *   stored consistent index.
 * - Batches are applied in submission order. While one LevelDB write is in flight, later batches
 *   queue up and are written together as one LevelDB batch (group commit); each batch's
 *   `onWritten` hooks run, in order, after its data is in LevelDB and before its promise resolves.
 *   The batches of one group get the same promise (one per group, not one per batch).
 * - When a write starts (etcd's batch transaction and its commit interval): `write()` starts one on
 *   the next turn of the event loop. `writeLater()` (the apply path's entries) lets the batch wait
 *   up to `batchIntervalMs` (--backend-batch-interval, 100 ms) so that many entries share one
 *   LevelDB write, unless `batchLimit` operations (--backend-batch-limit, 10000), `batchBytesMax`
 *   bytes or a full group (`groupCommitBatchesMax` batches) are waiting, or the batch asks for
 *   haste (`expedite`). Anything that starts a write takes every batch queued before it;
 *   `expedite()`, `flushed()`, `replace()` and `close()` start one for whatever waits. The owner
 *   serves what waits from its own copies. Non-due batches always have the interval's timer
 *   pending (set by the first of them, cleared once the queue is empty).
 * - A failed LevelDB write is fatal: the backend refuses all further writes (state above it has
 *   already moved on); the owner must stop and restart from the WAL.
 *
 * Reads
 * - `get`/`getMany` read the latest written state. `iterate` reads from an implicit snapshot taken
 *   when the iteration starts, so a long scan is consistent even while writes continue.
 */
import { ClassicLevelEngine } from "./classic-level-engine.js";
import { systemClock, type Clock, type TimerHandle } from "../../pkg/clock.js";
import { exponentialBuckets, HistogramCell } from "../../pkg/metric-cells.js";
import { BackendClosedError, type EngineIterator, type EngineOp, type EngineRange, type StorageEngine } from "./engine.js";
import { writeU64BE } from "../../pkg/u64-le.js";

export { BackendClosedError } from "./engine.js";

/** Bucket ids (the first byte of every LevelDB key). Stable on-disk values. */
export const Bucket = {
  key: 0x01,
  meta: 0x02,
  lease: 0x03,
  members: 0x04,
  membersRemoved: 0x05,
  cluster: 0x06,
  alarm: 0x07,
  auth: 0x08,
  authUsers: 0x09,
  authRoles: 0x0a,
} as const;

export type BucketName = keyof typeof Bucket;

export const META_CONSISTENT_INDEX = Buffer.from("consistent_index");
export const META_TERM = Buffer.from("term");
/** A constant record a synced write of an empty batch stores (see writeSynced). */
const META_SYNC_MARKER = Buffer.from("sync");

/** Thrown by `write()` once a LevelDB write has failed; the backend is unusable after that. */
export class BackendFailedError extends Error {
  readonly code = "BACKEND_FAILED";
  constructor(readonly causeError: unknown) {
    super(`backend: a write failed earlier; restart required (${String(causeError)})`);
  }
}

export interface BackendOptions {
  /** LevelDB block cache. Default 64 MiB. */
  cacheSizeBytes?: number;
  /** LevelDB memtable size. Default 8 MiB (see ClassicLevelEngineOptions). */
  writeBufferSizeBytes?: number;
  /** Most batches merged into one LevelDB write. Default 256. */
  groupCommitBatchesMax?: number;
  /**
   * Longest a batch given to `writeLater` waits before its LevelDB write starts (etcd's
   * --backend-batch-interval). Default 100 ms; 0 starts it on the next turn, as `write` does.
   */
  batchIntervalMs?: number;
  /** Operations waiting in `writeLater` batches that start a write at once (etcd's --backend-batch-limit). Default 10000. */
  batchLimit?: number;
  /** Bytes of keys and values waiting in `writeLater` batches that start a write at once. Default 1 MiB. */
  batchBytesMax?: number;
  /** Times the batch interval. Default: the system clock. */
  clock?: Clock;
}

/** etcd's defaults for --backend-batch-interval and --backend-batch-limit. */
export const BATCH_INTERVAL_MS_DEFAULT = 100;
export const BATCH_LIMIT_DEFAULT = 10_000;
export const BATCH_BYTES_MAX_DEFAULT = 1024 * 1024;

/** Encodes a uint64 (a safe JS integer) as 8 big-endian bytes. */
export function encodeUint64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeU64BE(b, 0, n);
  return b;
}

/** Decodes 8 big-endian bytes (from `offset`) as a safe JS integer. */
export function decodeUint64(b: Buffer, offset = 0): number {
  return b.readUInt32BE(offset) * 0x1_0000_0000 + b.readUInt32BE(offset + 4);
}

/** Returns `[bucketId] ++ key` as a new buffer. */
export function bucketKey(bucket: BucketName, key: Buffer): Buffer {
  const b = Buffer.allocUnsafe(key.length + 1);
  b[0] = Bucket[bucket];
  key.copy(b, 1);
  return b;
}

/**
 * A set of changes that `Backend.write` applies atomically. Build it, add the consistent index,
 * write it once. Buffers passed in are owned by the batch from then on (do not mutate them).
 */
export class BackendBatch {
  /** @internal */ readonly ops: EngineOp[] = [];
  /** @internal */ readonly hooks: Array<() => void> = [];
  /** @internal */ submitted = false;
  /** @internal Write with fsync (see Backend.writeSynced). */
  sync = false;
  /** @internal Start a write for it at once even when given to writeLater (see expedite). */
  urgent = false;
  private consistentIndexValue: number | undefined;
  private termValue: number | undefined;
  /** @internal Meta records where only the last value counts (see putMetaLatest). */
  latestMeta: Map<string, EngineOp> | undefined;

  put(bucket: BucketName, key: Buffer, value: Buffer): void {
    this.assertOpen();
    this.ops.push({ type: "put", key: bucketKey(bucket, key), value, keyEncoding: "buffer", valueEncoding: "buffer" });
  }

  del(bucket: BucketName, key: Buffer): void {
    this.assertOpen();
    this.ops.push({ type: "del", key: bucketKey(bucket, key), keyEncoding: "buffer", valueEncoding: "buffer" });
  }

  /** Puts a key that already carries its bucket byte (fast path for the MVCC store). */
  putPrefixed(fullKey: Buffer, value: Buffer): void {
    this.assertOpen();
    this.ops.push({ type: "put", key: fullKey, value, keyEncoding: "buffer", valueEncoding: "buffer" });
  }

  /** Deletes a key that already carries its bucket byte. */
  delPrefixed(fullKey: Buffer): void {
    this.assertOpen();
    this.ops.push({ type: "del", key: fullKey, keyEncoding: "buffer", valueEncoding: "buffer" });
  }

  /**
   * Puts a meta record of which only the newest value matters (e.g. an index that only moves
   * forward). When several batches are merged into one LevelDB write, only the last batch's value
   * of each such key is written: a group of many small batches writes it once, not once each.
   * Do not also `put` the same key in the same batch.
   */
  putMetaLatest(key: Buffer, value: Buffer): void {
    this.assertOpen();
    (this.latestMeta ??= new Map()).set(key.toString("latin1"), { type: "put", key: bucketKey("meta", key), value, keyEncoding: "buffer", valueEncoding: "buffer" });
  }

  /**
   * Records the raft index (and optionally term) of the last entry whose effects are in this
   * batch. Later calls win. Must not go backwards across batches (the caller's invariant).
   */
  setConsistentIndex(index: number, term?: number): void {
    this.assertOpen();
    this.consistentIndexValue = index;
    if (term !== undefined) this.termValue = term;
  }

  /** The consistent index this batch will store, if set. */
  get consistentIndex(): number | undefined {
    return this.consistentIndexValue;
  }

  /**
   * Runs `hook` synchronously after this batch is in LevelDB, before `write()` resolves. Hooks run
   * in registration order; a hook must not throw (a throw is treated as a broken invariant).
   */
  onWritten(hook: () => void): void {
    this.assertOpen();
    this.hooks.push(hook);
  }

  /** The term this batch will store, if set. */
  get term(): number | undefined {
    return this.termValue;
  }

  /**
   * Asks that this batch not wait out the batch interval when given to `writeLater`: something
   * waits for it to be in LevelDB (a scheduled compaction's physical pass).
   */
  expedite(): void {
    this.urgent = true;
  }

  /** Bytes of the keys and values staged (put/del operations only). */
  get bytes(): number {
    let n = 0;
    for (const op of this.ops) n += op.key.length + (op.type === "put" ? (op.value?.length ?? 0) : 0);
    return n;
  }

  /** Number of put/del operations staged (not counting the consistent index and putMetaLatest records). */
  get size(): number {
    return this.ops.length;
  }

  private assertOpen(): void {
    if (this.submitted) throw new Error("backend: batch already submitted");
  }
}

/**
 * The operations of a group of batches written as one LevelDB write, in order: every batch's
 * puts and deletes, then the newest value of each putMetaLatest key, of the consistent index and
 * of the term (the last batch that set one wins, as it would in a WriteBatch holding them all).
 */
function groupOps(group: readonly BackendBatch[]): EngineOp[] {
  const ops: EngineOp[] = group.length === 1 ? group[0]!.ops : [];
  let latest: Map<string, EngineOp> | undefined;
  let consistentIndex: number | undefined;
  let term: number | undefined;
  for (const b of group) {
    if (group.length > 1) for (const op of b.ops) ops.push(op);
    if (b.latestMeta !== undefined) {
      if (latest === undefined) latest = new Map(b.latestMeta);
      else for (const [k, op] of b.latestMeta) latest.set(k, op);
    }
    if (b.consistentIndex !== undefined) consistentIndex = b.consistentIndex;
    if (b.term !== undefined) term = b.term;
  }
  if (latest !== undefined) for (const op of latest.values()) ops.push(op);
  if (consistentIndex !== undefined) {
    ops.push({ type: "put", key: bucketKey("meta", META_CONSISTENT_INDEX), value: encodeUint64(consistentIndex), keyEncoding: "buffer", valueEncoding: "buffer" });
  }
  if (term !== undefined) {
    ops.push({ type: "put", key: bucketKey("meta", META_TERM), value: encodeUint64(term), keyEncoding: "buffer", valueEncoding: "buffer" });
  }
  return ops;
}

/**
 * A whole backend as data: every entry of every bucket as `[fullKey, value]`, the key carrying its
 * bucket byte, in key order, read from one LevelDB snapshot (`Backend.iterateAll`). Its meta
 * bucket holds the consistent index the contents are as of. It is what a leader's merged snapshot
 * carries to a follower, which installs it with `Backend.replace`.
 * Single pass: it is iterated at most once. A lazily read image (iterateAll's) opens its LevelDB
 * snapshot at the first `next()`; an image that is never iterated holds nothing open.
 */
export type BackendImage = AsyncIterable<[Buffer, Buffer]>;

/** Bounds for `Backend.iterate`, in bucket-key space (without the bucket byte). */
export interface IterateRange {
  gte?: Buffer;
  gt?: Buffer;
  lt?: Buffer;
  lte?: Buffer;
  reverse?: boolean;
  /** Stop after this many entries. */
  limit?: number;
  /** Skip reading values (the value is then an empty buffer). */
  keysOnly?: boolean;
}

/**
 * Batches queued while a write is in flight, to be written together as one LevelDB write. They
 * share one promise: a group is written (and its batches' hooks run) or fails as a whole.
 */
class PendingGroup {
  readonly batches: BackendBatch[] = [];
  readonly written: Promise<void>;
  resolve!: () => void;
  reject!: (e: unknown) => void;
  /** Operations and bytes of its writeLater batches (counted in Backend's waiting totals). */
  laterOps = 0;
  laterBytes = 0;

  /** `seq`: groups are numbered in queue order. */
  constructor(readonly seq: number) {
    this.written = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

const EMPTY = Buffer.alloc(0);
const ITERATE_CHUNK = 1000;
/** `replace` writes the image in batches of at most this many entries... */
const REPLACE_BATCH_ENTRIES = 10_000;
/** ...or about this many bytes of keys and values. */
const REPLACE_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * What the backend times for etcd's etcd_disk_backend_* metrics (bucket arrays, no allocation
 * per write), read when scraped.
 */
export class BackendCounters {
  /** Each group commit's LevelDB write (etcd_disk_backend_commit_duration_seconds). */
  readonly commitSeconds = new HistogramCell(exponentialBuckets(0.001, 2, 14));
  /** Each defragmentation (etcd_disk_backend_defrag_duration_seconds). */
  readonly defragSeconds = new HistogramCell(exponentialBuckets(0.1, 2, 13));
  /** Each full image read out for a snapshot (etcd_disk_backend_snapshot_duration_seconds). */
  readonly snapshotSeconds = new HistogramCell(exponentialBuckets(0.01, 2, 17));
  /** Defragmentations running now. */
  defragInflight = 0;
  /** Iterations (read transactions) open now. */
  openReads = 0;
}

export class Backend {
  /** Timings and gauges (metrics). */
  readonly counters = new BackendCounters();
  private closed = false;
  private failure: unknown = undefined;
  /** A write is running, or starts on the next turn. */
  private writing = false;
  private readonly queue: PendingGroup[] = [];
  private nextGroupSeq = 1;
  /** Groups numbered up to this are written as soon as the writer reaches them. */
  private dueSeq = 0;
  /** The batch interval's timer, pending while writeLater batches wait. */
  private intervalTimer: TimerHandle | undefined;
  /** Operations and bytes of writeLater batches not yet written. */
  private laterOps = 0;
  private laterBytes = 0;
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | undefined;
  private consistentIndexValue = 0;
  /** Highest consistent index submitted (written or queued). */
  private queuedConsistentIndex = 0;
  private termValue = 0;

  private readonly groupCommitBatchesMax: number;
  private readonly batchIntervalMs: number;
  private readonly batchLimit: number;
  private readonly batchBytesMax: number;
  private readonly clock: Clock;

  private constructor(
    private readonly engine: StorageEngine,
    options: BackendOptions,
  ) {
    this.groupCommitBatchesMax = options.groupCommitBatchesMax ?? 256;
    this.batchIntervalMs = options.batchIntervalMs ?? BATCH_INTERVAL_MS_DEFAULT;
    this.batchLimit = options.batchLimit ?? BATCH_LIMIT_DEFAULT;
    this.batchBytesMax = options.batchBytesMax ?? BATCH_BYTES_MAX_DEFAULT;
    this.clock = options.clock ?? systemClock;
  }

  /** Opens (creating if missing) the LevelDB database in `dir` and loads the consistent index. */
  static async open(dir: string, options: BackendOptions = {}): Promise<Backend> {
    const engine = await ClassicLevelEngine.open({
      dir,
      cacheSizeBytes: options.cacheSizeBytes,
      writeBufferSizeBytes: options.writeBufferSizeBytes,
    });
    return Backend.openOn(engine, options);
  }

  /**
   * A backend on an open `engine` (loads the consistent index from it). The backend owns the
   * engine from then on: `close()` closes it. The engine options of BackendOptions (cache and
   * memtable sizes) are the engine's business and ignored here.
   */
  static async openOn(engine: StorageEngine, options: BackendOptions = {}): Promise<Backend> {
    const backend = new Backend(engine, options);
    const ci = await engine.get(bucketKey("meta", META_CONSISTENT_INDEX));
    if (ci) backend.consistentIndexValue = backend.queuedConsistentIndex = decodeUint64(ci);
    const term = await engine.get(bucketKey("meta", META_TERM));
    if (term) backend.termValue = decodeUint64(term);
    return backend;
  }

  /** A new, empty batch. */
  batch(): BackendBatch {
    return new BackendBatch();
  }

  /**
   * Applies `batch` atomically (no fsync), starting a write on the next turn of the event loop.
   * Batches are applied in submission order; hooks run before the promise resolves. Rejects with
   * BackendFailedError (and stays failed) if LevelDB fails, and (writing nothing) if the batch's
   * consistent index is below one already submitted.
   */
  write(batch: BackendBatch): Promise<void> {
    const group = this.enqueue(batch);
    if (group instanceof Promise) return group;
    this.dueSeq = group.seq;
    this.startWriter();
    return group.written;
  }

  /**
   * Like `write`, but the write may wait for the batch interval (see the header), so that the
   * batches of many entries share it. The owner must serve the batch's contents from its own
   * copies meanwhile, and call `expedite()` when something waits for them to be in LevelDB.
   */
  writeLater(batch: BackendBatch): Promise<void> {
    if (batch.urgent || this.batchIntervalMs <= 0) return this.write(batch);
    const group = this.enqueue(batch);
    if (group instanceof Promise) return group;
    const ops = batch.size;
    const bytes = batch.bytes;
    group.laterOps += ops;
    group.laterBytes += bytes;
    this.laterOps += ops;
    this.laterBytes += bytes;
    // A full group goes at once too: under load the interval would only keep the staged copies
    // alive long enough for V8 to promote them, and the group is as large as a write gets.
    if (this.laterOps >= this.batchLimit || this.laterBytes >= this.batchBytesMax || group.batches.length >= this.groupCommitBatchesMax) this.expedite();
    else if (this.intervalTimer === undefined) {
      this.intervalTimer = this.clock.setTimeout(() => {
        this.intervalTimer = undefined;
        this.expedite();
      }, this.batchIntervalMs);
    }
    return group.written;
  }

  /** Starts a write, on the next turn, of every batch waiting (none: nothing happens). */
  expedite(): void {
    const last = this.queue[this.queue.length - 1];
    if (last === undefined) return;
    this.dueSeq = last.seq;
    this.startWriter();
  }

  /** Highest consistent index submitted: written, or waiting to be. */
  submittedConsistentIndex(): number {
    return this.queuedConsistentIndex;
  }

  /** Queues `batch` in the last group (a new one when full); a rejected promise when refused. */
  private enqueue(batch: BackendBatch): PendingGroup | Promise<never> {
    if (this.closed) return Promise.reject(new BackendClosedError());
    if (this.failure !== undefined) return Promise.reject(new BackendFailedError(this.failure));
    if (batch.submitted) return Promise.reject(new Error("backend: batch already submitted"));
    const ci = batch.consistentIndex;
    if (ci !== undefined) {
      if (ci < this.queuedConsistentIndex) {
        return Promise.reject(new Error(`backend: consistent index going back from ${this.queuedConsistentIndex} to ${ci}`));
      }
      this.queuedConsistentIndex = ci;
    }
    batch.submitted = true;
    let group = this.queue[this.queue.length - 1];
    if (group === undefined || group.batches.length >= this.groupCommitBatchesMax) {
      group = new PendingGroup(this.nextGroupSeq++);
      this.queue.push(group);
    }
    group.batches.push(batch);
    return group;
  }

  /**
   * Resolves once every batch submitted before this call is in LevelDB (an empty batch queued
   * behind them). Readers that go to LevelDB directly call it first: the store answers before its
   * batches are in (kv-store.ts). Rejects like `write`.
   */
  flushed(): Promise<void> {
    // Nothing queued or being written: already so, without a turn of the event loop.
    if (!this.writing && this.queue.length === 0 && !this.closed && this.failure === undefined) return Promise.resolve();
    return this.write(new BackendBatch());
  }

  /**
   * Like `write`, but LevelDB fsyncs its log before resolving, which makes this batch AND every
   * earlier write durable. Use before letting the WAL drop entries the backend now covers (after
   * a snapshot). An empty batch is fine (a constant marker record gives LevelDB something to
   * log and sync; the consistent index is left alone, since batches queued before this one may
   * carry a newer one).
   */
  writeSynced(batch: BackendBatch): Promise<void> {
    if (!batch.submitted) {
      batch.sync = true;
      if (batch.size === 0 && batch.consistentIndex === undefined) batch.put("meta", META_SYNC_MARKER, EMPTY);
    }
    return this.write(batch);
  }

  /**
   * Hands encoded operations to the engine, which writes them as they are (for LevelDB, straight
   * into classic-level's storage hook, see ClassicLevelEngine.writeBatch).
   */
  private writeOps(ops: EngineOp[], sync: boolean): Promise<void> {
    // The one check worth keeping: the storage layer must only ever see buffers.
    for (const op of ops) {
      if (!Buffer.isBuffer(op.key) || (op.type === "put" && !Buffer.isBuffer(op.value))) {
        return Promise.reject(new TypeError("backend: batch operation with a non-buffer key or value"));
      }
    }
    return this.engine.writeBatch(ops, { sync });
  }

  /**
   * Starts the writer on the next turn of the event loop rather than now (unless it runs: it
   * takes every due group before it stops). A batch is written while an entry is applied, just
   * before its proposer is answered: handing LevelDB the batch (the conversion of its operations
   * runs on this thread) would delay the answer, and the batches queued until the next turn join
   * one group.
   */
  private startWriter(): void {
    if (this.writing) return;
    this.writing = true;
    this.idle = new Promise((r) => (this.idleResolve = r));
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.queue[0]!.seq <= this.dueSeq) {
        const group = this.queue.shift()!;
        this.laterOps -= group.laterOps;
        this.laterBytes -= group.laterBytes;
        const batches = group.batches;
        const ops = groupOps(batches);
        try {
          const sync = batches.some((b) => b.sync);
          if (ops.length > 0) {
            const started = performance.now();
            await this.writeOps(ops, sync);
            this.counters.commitSeconds.observe((performance.now() - started) / 1000);
          }
        } catch (e) {
          this.failure = e;
          group.reject(new BackendFailedError(e));
          for (const g of this.queue.splice(0)) g.reject(new BackendFailedError(e));
          this.stopIntervalTimer();
          return;
        }
        for (const b of batches) {
          const ci = b.consistentIndex;
          if (ci !== undefined) this.consistentIndexValue = ci;
          const term = b.term;
          if (term !== undefined) this.termValue = term;
          for (const hook of b.hooks) hook();
        }
        group.resolve();
      }
    } finally {
      this.writing = false;
      if (this.queue.length === 0) this.stopIntervalTimer();
      this.idleResolve?.();
    }
  }

  private stopIntervalTimer(): void {
    if (this.intervalTimer === undefined) return;
    this.clock.clearTimeout(this.intervalTimer);
    this.intervalTimer = undefined;
  }

  /** Reads one key of a bucket; undefined when absent. */
  async get(bucket: BucketName, key: Buffer): Promise<Buffer | undefined> {
    this.assertOpen();
    return this.engine.get(bucketKey(bucket, key));
  }

  /** Reads many keys that already carry their bucket byte; undefined for each absent one. */
  async getManyPrefixed(fullKeys: Buffer[]): Promise<(Buffer | undefined)[]> {
    this.assertOpen();
    return this.engine.getMany(fullKeys);
  }

  /**
   * Iterates a bucket in key order (or reverse) within `range`, yielding `[bucketKey, value]`
   * (bucket byte stripped). Reads from a snapshot taken at the first `next()`. The caller may stop
   * early (break); the underlying iterator is closed either way.
   */
  async *iterate(bucket: BucketName, range: IterateRange = {}): AsyncIterable<[Buffer, Buffer]> {
    this.assertOpen();
    const id = Bucket[bucket];
    const prefix = Buffer.from([id]);
    const options: EngineRange = { values: !range.keysOnly, reverse: range.reverse ?? false };
    if (range.gt) options.gt = Buffer.concat([prefix, range.gt]);
    else options.gte = range.gte ? Buffer.concat([prefix, range.gte]) : prefix;
    if (range.lt) options.lt = Buffer.concat([prefix, range.lt]);
    else if (range.lte) options.lte = Buffer.concat([prefix, range.lte]);
    else options.lt = Buffer.from([id + 1]);
    if (range.limit !== undefined) options.limit = range.limit;
    const it = this.engine.iterator(options);
    this.counters.openReads++;
    try {
      for (;;) {
        // With keysOnly the values are absent (see EngineRange.values).
        const entries = (await it.nextv(ITERATE_CHUNK)) as Array<[Buffer, Buffer | undefined]>;
        if (entries.length === 0) break;
        for (const [k, v] of entries) yield [k.subarray(1), v ?? EMPTY];
      }
    } finally {
      this.counters.openReads--;
      await it.close();
    }
  }

  /**
   * Reads one key that already carries its bucket byte, synchronously (blocks the event loop for
   * the LevelDB lookup: meant for a few keys that are likely in the OS page cache).
   */
  getPrefixedSync(fullKey: Buffer): Buffer | undefined {
    this.assertOpen();
    return this.engine.getSync(fullKey);
  }

  /**
   * Every entry of every bucket, in LevelDB order, as `[fullKey, value]` (bucket byte included),
   * from one snapshot taken at the first `next()`: the backend as an image (see BackendImage).
   */
  async *iterateAll(): BackendImage {
    const it = this.rawIterator({});
    const started = performance.now();
    this.counters.openReads++;
    try {
      for (;;) {
        const entries = await it.nextv(ITERATE_CHUNK);
        if (entries.length === 0) break;
        for (const e of entries) yield e;
      }
      this.counters.snapshotSeconds.observe((performance.now() - started) / 1000);
    } finally {
      this.counters.openReads--;
      await it.close();
    }
  }

  /**
   * Replaces the whole database with `image`: waits for the writes queued before it, deletes
   * every entry, then writes the image in bounded batches, the consistent index and term records
   * last, in a synced batch; `consistentIndex()` and `consistentTerm()` then report the image's
   * (0 when it has none, and from the deletions on until the end). The caller must not write
   * meanwhile; the database is not readable in a meaningful way until this resolves.
   * Not atomic: a crash part-way leaves a mix of old and new entries whose stored consistent
   * index is the old one or none. Its owner must then not trust the database (bootstrap refuses a
   * backend behind its raft snapshot, which an interrupted install leaves behind).
   * Rejects like `write` (BackendFailedError: the backend is unusable), or with the image's error.
   */
  async replace(image: BackendImage): Promise<void> {
    this.assertOpen();
    // Every batch queued so far is in first, so the deletions below see its keys.
    await this.flushed();
    const old = this.rawIterator({ values: false });
    try {
      for (;;) {
        const entries = await old.nextv(REPLACE_BATCH_ENTRIES);
        if (entries.length === 0) break;
        const batch = this.batch();
        for (const [k] of entries) batch.delPrefixed(k);
        await this.write(batch);
      }
    } finally {
      await old.close();
    }
    this.consistentIndexValue = this.queuedConsistentIndex = this.termValue = 0;
    const consistentIndexKey = bucketKey("meta", META_CONSISTENT_INDEX);
    const termKey = bucketKey("meta", META_TERM);
    let consistentIndex: Buffer | undefined;
    let term: Buffer | undefined;
    let batch = this.batch();
    let batchBytes = 0;
    for await (const [k, v] of image) {
      if (k.equals(consistentIndexKey)) consistentIndex = v;
      else if (k.equals(termKey)) term = v;
      else {
        batch.putPrefixed(k, v);
        batchBytes += k.length + v.length;
      }
      if (batch.size >= REPLACE_BATCH_ENTRIES || batchBytes >= REPLACE_BATCH_BYTES) {
        await this.write(batch);
        batch = this.batch();
        batchBytes = 0;
      }
    }
    if (consistentIndex !== undefined) batch.putPrefixed(consistentIndexKey, consistentIndex);
    if (term !== undefined) batch.putPrefixed(termKey, term);
    await this.writeSynced(batch);
    this.consistentIndexValue = this.queuedConsistentIndex = consistentIndex ? decodeUint64(consistentIndex) : 0;
    this.termValue = term ? decodeUint64(term) : 0;
  }

  /**
   * @internal A raw snapshot iterator over whole keys (bucket byte included); see EngineIterator
   * for its contract.
   */
  rawIterator(range: EngineRange): EngineIterator {
    this.assertOpen();
    return this.engine.iterator(range);
  }

  /** Raft index of the last entry whose effects were written (0 for a new database). */
  consistentIndex(): number {
    return this.consistentIndexValue;
  }

  /** Raft term stored with the consistent index (0 if never stored). */
  consistentTerm(): number {
    return this.termValue;
  }

  /** Bytes the database occupies on disk (for LevelDB: the sum of the files in its directory). */
  sizeBytes(): Promise<number> {
    return this.engine.sizeBytes();
  }

  /**
   * Approximate bytes LevelDB uses for live data (etcd's "size in use"); LevelDB estimates from
   * its table files, so recent unflushed writes may not count yet.
   */
  async sizeInUseBytes(): Promise<number> {
    this.assertOpen();
    return this.engine.approximateSize(Buffer.from([0]), Buffer.from([0xff]));
  }

  /**
   * Rewrites LevelDB's tables over the whole key space, dropping deleted entries (etcd's
   * defragment). Runs in LevelDB's background thread; reads and writes continue meanwhile.
   */
  async defragment(): Promise<void> {
    this.assertOpen();
    const started = performance.now();
    this.counters.defragInflight++;
    try {
      await this.engine.compactRange(Buffer.from([0]), Buffer.from([0xff]));
    } finally {
      this.counters.defragInflight--;
      this.counters.defragSeconds.observe((performance.now() - started) / 1000);
    }
  }

  /** Writes what is queued (the batch interval is not waited out), then closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.failure === undefined) this.expedite();
    while (this.writing) await this.idle;
    this.stopIntervalTimer();
    this.closed = true;
    await this.engine.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private assertOpen(): void {
    if (this.closed) throw new BackendClosedError();
  }
}
