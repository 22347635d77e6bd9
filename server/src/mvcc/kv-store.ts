/**
 * MvccStore: etcd's revisioned key-value store (etcd 3.4 semantics) on the LevelDB backend.
 *
 * Storage design
 * - Key bucket: one LevelDB entry per change, keyed by its revision (revision.ts: 17 bytes, plus
 *   `t` for a tombstone), valued by the KeyValue in etcd's protobuf form (key-value.ts). Entries
 *   are immutable; compaction is the only thing that deletes them.
 * - An empty value in the key bucket is a revision marker, not a key (what `snapshot restore
 *   --bump-revision` writes, as etcd 3.6 does): it moves the current revision and nothing else.
 * - Meta bucket: `scheduledCompactRev` / `finishedCompactRev` (17-byte revisions), next to the
 *   backend's consistent index.
 * - Key index (key-index.ts): key -> generations of revisions, in a B-tree ordered by key bytes.
 *   Rebuilt at open by one scan of the key bucket. Ranges are answered from the index; only the
 *   visible versions' values are fetched.
 * - Value cache (value-cache.ts): an LRU of decoded versions, bounded in bytes, filled by writes
 *   and reads, so reads at head mostly avoid LevelDB. A read with a few misses fetches them
 *   with synchronous gets (microseconds from the page cache), more with one async `getMany`.
 * - HashKV hashes exactly the bytes etcd would (same key layout and value encoding, CRC-32C),
 *   so it equals etcd's hash for the same history (see the parity test).
 *
 * Errors: ErrCompacted / ErrFutureRev (errors.ts, etcd's messages) for revisions out of range,
 * ErrClosed after close(). Anything else thrown is a broken invariant (crash).
 *
 * Revisions
 * - The store starts at revision 1 (empty). A write txn with changes gets main revision
 *   `previous + 1`, its changes sub 0, 1, 2...; a txn without changes does not bump it.
 * - `compactRevision` is -1 until the first compaction (as in etcd).
 *
 * The write handshake (single writer: the apply loop)
 * 1. `txn = store.write()`: starts a txn on top of everything staged so far. At most one open txn.
 * 2. `await txn.range(...)`, `txn.put(...)`, `txn.deleteRange(...)`: reads see the txn's own
 *    writes; puts/deletes update the key index at once (at the txn's revision, which readers do
 *    not see yet: they read at `currentRevision`).
 * 3. `events = txn.end(batch)`: stages the changes into `batch`, publishes the revision
 *    (`currentRevision` advances, synced watchers are notified) and closes the txn. A txn must
 *    always be ended (there is no abort).
 * 4. The caller adds other layers' records and `batch.setConsistentIndex(...)`, then calls
 *    `backend.write(batch)` in the same synchronous step. Until the batch is in LevelDB, reads
 *    of its revision are served from memory (the staged values), and scans that read LevelDB
 *    (watch catch-up, HashKV) first wait for it (`writtenRevision`).
 * So the store is the state machine as etcd's backend is with its batch transaction: a change is
 * visible, and its proposer may be answered, before LevelDB has it. Nothing acknowledged can be
 * lost that way: the entry is in the fsynced WAL, and a member that stops before the batch is in
 * replays it (the batch carries the entry's consistent index).
 * Steps 1-3 may repeat several times before one `backend.write` (grouping several entries in one
 * batch), and a new txn may start while the previous batch is being written. Batches must be
 * written in the order their txns ended. A rejected `backend.write` is fatal: the process must
 * stop and recover from the WAL (the index already holds the staged revisions).
 * Throughput: one awaited LevelDB write costs a thread-pool round trip (tens of microseconds), so
 * an apply loop that awaits every entry tops out around 10-30k entries/s. Put all entries of a
 * Ready into one batch, or do not await each write before applying the next entry (group commit
 * merges queued batches): both reach ~100k puts/s.
 *
 * Range options: limit, count, countOnly and keysOnly are handled here. Sort order, the
 * min/max create/mod revision filters and the `more` flag are the caller's (as in etcd, where
 * the server's applier does them).
 *
 * Consistency of reads
 * - A read picks its revision and walks the key index synchronously, so it sees whole txns only.
 * - Reads in flight are registered by revision; physical compaction at C waits until no read
 *   below C is in flight. Reads at or above C only need versions compaction keeps.
 * - Scans (hashKV, watch catch-up, rebuild) use LevelDB iterators, which read from a snapshot.
 * - `restore(image)` replaces the whole contents (a leader's snapshot): reads, hashes and watch
 *   catch-up that start meanwhile wait for it; watchers resume from the new contents.
 */
import { OrderedSlots } from "../pkg/ordered-slots.js";
import { Backend, BackendBatch, Bucket, type BackendImage } from "./backend/backend.js";
import { ErrClosed, ErrCompacted, ErrFutureRev, ErrStoreRead } from "./errors.js";
import { indexKey, KeyIndex, TreeIndex } from "./key-index.js";
import {
  decodeKeyValue,
  EMPTY_BUFFER,
  encodeKeyValue,
  encodeTombstone,
  NO_LEASE,
  type Event,
  type KeyInfo,
  type KeyValue,
} from "./key-value.js";
import {
  decodeRevisionValue,
  encodeRevisionValue,
  isTombstoneKey,
  mainOfKey,
  revisionId,
  revisionIdOk,
  revisionKey,
  RevisionSet,
  subOfKey,
} from "./revision.js";
import { sleep, type Clock } from "../pkg/clock.js";
import { crc32c, crc32cUpdate } from "../pkg/crc32c.js";
import { exponentialBuckets, HistogramCell } from "../pkg/metric-cells.js";
import { ValueCache } from "./value-cache.js";
import { ByteArena } from "../pkg/byte-arena.js";
import { WatchHub, type CommittedChange, type WatchHubOptions, type WatchOptions, type WatchSink, type Watcher } from "./watch-hub.js";

export const META_SCHEDULED_COMPACT = Buffer.from("scheduledCompactRev");
export const META_FINISHED_COMPACT = Buffer.from("finishedCompactRev");

/**
 * The value cache's default budget. Every cached version outlives a few scavenges and is promoted,
 * and V8 lets the old space grow by a factor that rises with the rate of promotion: each cached
 * MiB costs several of RSS. Measured with etcd's benchmark (176k puts of 256 B, 1000 clients over
 * 100 connections, 2 rounds): peak RSS 322 MiB at 16 MiB (about 30k versions), 276 MiB at 4 MiB,
 * 266 MiB with no cache, at the same CPU per put. Head reads hit it either way (a version read is
 * cached again); older versions come from LevelDB's block cache.
 */
export const DEFAULT_VALUE_CACHE_BYTES = 4 * 1024 * 1024;

/**
 * The value cache's budget for a backend quota of `quotaBytes`: a sixteenth of it, between 1 MiB
 * and DEFAULT_VALUE_CACHE_BYTES (a small store needs no large cache; LevelDB's block cache holds
 * much of it).
 */
export function valueCacheBytesForQuota(quotaBytes: number): number {
  return Math.min(DEFAULT_VALUE_CACHE_BYTES, Math.max(1024 * 1024, Math.floor(quotaBytes / 16)));
}

export interface MvccStoreOptions {
  /** Bytes of decoded versions kept in memory (keyValueBytes). Default DEFAULT_VALUE_CACHE_BYTES; 0 disables the cache. */
  valueCacheBytes?: number;
  /** Key-bucket entries deleted per LevelDB batch by physical compaction. Default 1000. */
  compactionBatchEntries?: number;
  /** Pause between physical compaction batches. Default 1 ms. */
  compactionPauseMs?: number;
  /** Keys compacted in the in-memory index per event-loop turn. Default 10000. */
  indexCompactionChunkKeys?: number;
  /**
   * Cache misses of one read up to this many are fetched with synchronous LevelDB gets (a few
   * microseconds each when the data is in the OS page cache) instead of one async getMany (a
   * thread-pool round trip). 0 = always async. Default 4.
   */
  syncReadMissesMax?: number;
  /** Watch delivery tuning. */
  watch?: WatchHubOptions;
  /** Structured logger (warn/info); defaults to silence. */
  log?: { info(msg: string, fields?: object): void; warn(msg: string, fields?: object): void };
}

export interface MvccStoreDeps {
  /** Times the pauses of physical compaction and the watchers' back-off. */
  clock: Clock;
}

export interface RangeOptions {
  /** Revision to read at; 0/undefined = current. */
  revision?: number;
  /** Most KeyValues returned; 0/undefined = no limit. `count` is unaffected. */
  limit?: number;
  /** Return only `count` (kvs empty). */
  countOnly?: boolean;
  /** Return KeyValues with empty values. */
  keysOnly?: boolean;
}

export interface RangeResult {
  /** Visible versions in key order (at most `limit`). Shared objects: do not mutate. */
  kvs: KeyValue[];
  /** Number of keys in the range at the read revision (ignores limit). */
  count: number;
  /** The store's current revision when the read was made (etcd's header revision). */
  revision: number;
}

export interface PutResult {
  kv: KeyValue;
  /** The key's state before this put (without value), if it existed. */
  prev: KeyInfo | undefined;
}

export interface HashKVResult {
  hash: number;
  compactRevision: number;
  /** The store's current revision when the hash was taken. */
  revision: number;
}

/**
 * A write txn (see the handshake in the module doc). Sort order, min/max revision filters and
 * the `more` flag of etcd's RangeRequest are the caller's; limit/count/countOnly/keysOnly are here.
 */
export interface WriteTxn {
  /** The revision this txn's changes get (current staged revision + 1). */
  readonly revision: number;
  /** Reads at the txn's view: the staged revision, plus this txn's changes once it has any. */
  range(key: Buffer, end: Buffer | undefined, options?: RangeOptions): Promise<RangeResult>;
  /**
   * Puts a version of `key` (takes ownership of `key` and `value`). Returns the new KeyValue and
   * what the key looked like before (lease included, for the lessor's detach). Synchronous.
   */
  put(key: Buffer, value: Buffer, lease: bigint): PutResult;
  /**
   * Deletes every live key in `[key, end)` (end as in `range`), writing tombstones. Returns the
   * deleted keys' last state (without values; read them first with `range` if needed). Synchronous.
   */
  deleteRange(key: Buffer, end: Buffer | undefined): KeyInfo[];
  /** Number of changes so far. */
  readonly changes: number;
  /** Stages the changes into `batch` and closes the txn; returns its events (no prevKv). */
  end(batch: BackendBatch): Event[];
}

interface Change {
  kv: KeyValue;
  keyStr: string;
  tombstone: boolean;
  prevMain: number;
  prevSub: number;
}

const ZERO_BYTE_END = 0;

/** Interprets etcd's range end: undefined = single key, "" = no bound, else exclusive bound. */
function rangeEnd(end: Buffer | undefined): string | undefined | null {
  if (end === undefined || end.length === 0) return null; // single key
  if (end.length === 1 && end[0] === ZERO_BYTE_END) return undefined; // unbounded
  return indexKey(end);
}

function noop(): void {}

/**
 * What the store counts for etcd's etcd_mvcc_* / etcd_debugging_mvcc_* metrics: plain numbers
 * and bucket arrays, updated as operations happen (no allocation), read when scraped.
 */
export class MvccCounters {
  /** Range calls (store reads and ranges inside write txns). */
  ranges = 0;
  /** Put calls. */
  puts = 0;
  /** DeleteRange calls. */
  deletes = 0;
  /** Write txns of more than one operation. */
  txns = 0;
  /** Bytes of the keys and values put. */
  putBytes = 0;
  /** Key-bucket entries compaction removed. */
  compactedKeys = 0;
  readonly indexCompactionPauseMs = new HistogramCell(exponentialBuckets(0.5, 2, 14));
  readonly dbCompactionPauseMs = new HistogramCell(exponentialBuckets(1, 2, 13));
  readonly dbCompactionTotalMs = new HistogramCell(exponentialBuckets(100, 2, 14));
  readonly hashSeconds = new HistogramCell(exponentialBuckets(0.01, 2, 15));
  readonly hashRevSeconds = new HistogramCell(exponentialBuckets(0.01, 2, 15));
}

export class MvccStore {
  /** Operation counts and timings (metrics). */
  readonly counters = new MvccCounters();
  private readonly index = new TreeIndex();
  private readonly cache: ValueCache;
  /**
   * Values of revisions staged but not yet in LevelDB, by main revision, indexed by sub (a Map
   * here would reallocate its table as it fills and empties with every group commit).
   */
  private readonly pending = new OrderedSlots<number, (KeyValue | undefined)[]>();
  private currentRev = 1;
  private stagedRev = 1;
  /** Highest revision whose batch is in LevelDB (<= currentRev). */
  private writtenRev = 1;
  /** Scans waiting for a revision's batch to be in LevelDB. */
  private writtenWaiters: Array<{ rev: number; resolve: () => void }> = [];
  private compactRev = -1;
  /** Highest compaction scheduled (>= compactRev); differs while it waits for a staged revision. */
  private scheduledCompactRev = -1;
  private openTxn: StoreWriteTxn | undefined;
  private closed = false;
  private readonly hub: WatchHub;
  /** In-flight reads per read revision. */
  private readonly activeReads = new Map<number, number>();
  private readWaiters: Array<() => void> = [];
  private compactionChain: Promise<void> = Promise.resolve();
  /** Bumped by restore(): a compaction of the replaced contents stops at its next step. */
  private compactionEpoch = 0;
  /** Set while restore() replaces the contents: reads wait for it. */
  private restoring: Promise<void> | undefined;
  private readonly compactionBatchEntries: number;
  private readonly compactionPauseMs: number;
  private readonly indexCompactionChunkKeys: number;
  private readonly syncReadMissesMax: number;
  private readonly log: NonNullable<MvccStoreOptions["log"]>;
  private readonly clock: Clock;
  /** Completes when a compaction interrupted by a restart has been finished (tests). */
  resumedCompaction: Promise<void> = Promise.resolve();
  /**
   * Copies of written keys and values, which the value cache and watch events keep (see
   * byte-arena.ts for why they are copied).
   */
  private readonly valueArena = new ByteArena(16 * 1024);

  private constructor(
    readonly backend: Backend,
    options: MvccStoreOptions,
    deps: MvccStoreDeps,
  ) {
    this.clock = deps.clock;
    this.cache = new ValueCache(options.valueCacheBytes ?? DEFAULT_VALUE_CACHE_BYTES);
    this.compactionBatchEntries = options.compactionBatchEntries ?? 1000;
    this.compactionPauseMs = options.compactionPauseMs ?? 1;
    this.indexCompactionChunkKeys = options.indexCompactionChunkKeys ?? 10000;
    this.syncReadMissesMax = options.syncReadMissesMax ?? 4;
    this.log = options.log ?? { info: noop, warn: noop };
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.hub = new WatchHub(
      {
        get currentRevision() {
          return self.currentRev;
        },
        get compactRevision() {
          return self.compactRev;
        },
        readEvents: (from, to, revisionsMax, entriesMax) => this.readEvents(from, to, revisionsMax, entriesMax),
        versionAt: (key, rev) => this.versionAt(key, rev),
        cachedVersion: (main, sub) => (revisionIdOk(main, sub) ? this.cache.get(revisionId(main, sub)) : undefined),
      },
      options.watch ?? {},
      { clock: deps.clock },
    );
  }

  /**
   * Opens the store on `backend`: rebuilds the key index from the key bucket and resumes a
   * compaction that a restart interrupted (in the background; see `resumedCompaction`).
   */
  static async open(backend: Backend, options: MvccStoreOptions, deps: MvccStoreDeps): Promise<MvccStore> {
    const store = new MvccStore(backend, options, deps);
    await store.rebuild();
    return store;
  }

  private async rebuild(): Promise<void> {
    const finished = await this.backend.get("meta", META_FINISHED_COMPACT);
    const scheduled = await this.backend.get("meta", META_SCHEDULED_COMPACT);
    const finishedRev = finished ? decodeRevisionValue(finished) : -1;
    const scheduledRev = scheduled ? decodeRevisionValue(scheduled) : -1;
    this.compactRev = finishedRev;
    this.scheduledCompactRev = finishedRev;

    let lastMain = 1;
    const byKey = new Map<string, KeyIndex>();
    const it = this.backend.rawIterator({ gte: Buffer.from([Bucket.key]), lt: Buffer.from([Bucket.key + 1]) });
    try {
      for (;;) {
        const entries = await it.nextv(10000);
        if (entries.length === 0) break;
        for (const [k, v] of entries) {
          const main = mainOfKey(k);
          const sub = subOfKey(k);
          lastMain = main;
          // An empty value is a revision marker (a restore's --bump-revision), not a key.
          if (v.length === 0) continue;
          const kv = decodeKeyValue(v);
          const keyStr = indexKey(kv.key);
          let ki = byKey.get(keyStr);
          if (isTombstoneKey(k)) {
            // A tombstone whose earlier history was already compacted away is dropped.
            if (ki && ki.isLive()) ki.tombstone(main, sub);
            continue;
          }
          if (ki) {
            ki.put(main, sub);
          } else {
            ki = new KeyIndex(keyStr);
            ki.restore(kv.createRevision, main, sub, kv.version);
            byKey.set(keyStr, ki);
          }
          ki.lease = kv.lease;
        }
      }
    } finally {
      await it.close();
    }
    // Bulk-load the ordered index (sorted inserts are much cheaper than random ones).
    const keys = [...byKey.keys()].sort();
    for (const key of keys) this.index.set(key, byKey.get(key)!);
    this.currentRev = Math.max(lastMain, this.compactRev, 1);
    this.stagedRev = this.currentRev;
    this.writtenRev = this.currentRev;
    if (scheduledRev > finishedRev) {
      this.compactRev = scheduledRev;
      this.scheduledCompactRev = scheduledRev;
      this.log.info("resuming scheduled compaction", { revision: scheduledRev });
      this.resumedCompaction = this.enqueueCompaction(scheduledRev);
    }
  }

  /** The revision of the last published write txn (1 for an empty store). */
  get currentRevision(): number {
    return this.currentRev;
  }

  /** The revision of the last staged txn (>= currentRevision). */
  get stagedRevision(): number {
    return this.stagedRev;
  }

  /** The last compaction's revision, -1 if never compacted. Reads below it fail. */
  get compactRevision(): number {
    return this.compactRev;
  }

  /** The last compaction scheduled, including one waiting for its staged revision to publish. */
  get scheduledCompactRevision(): number {
    return this.scheduledCompactRev;
  }

  /**
   * Visits every live key that has a lease, with that lease (the lessor re-attaches them at
   * start-up). Synchronous; the visitor must not write to the store.
   */
  forEachLeasedKey(visit: (key: Buffer, lease: bigint) => void): void {
    this.index.forRange("", undefined, (ki) => {
      if (ki.lease !== NO_LEASE && ki.isLive()) visit(ki.key, ki.lease);
    });
  }

  /** Number of keys in the index (live or with history). */
  get indexedKeys(): number {
    return this.index.size;
  }

  /**
   * Reads `[key, end)` at `options.revision` (default: current).
   * End: undefined/empty = the single key; one zero byte = all keys >= key.
   * Throws ErrFutureRev (revision > current) or ErrCompacted (revision < compactRevision).
   */
  async range(key: Buffer, end: Buffer | undefined, options: RangeOptions = {}): Promise<RangeResult> {
    this.assertOpen();
    this.counters.ranges++;
    if (this.restoring !== undefined) await this.restoring;
    const cur = this.currentRev;
    let rev = options.revision ?? 0;
    if (rev > cur) throw new ErrFutureRev(cur);
    if (rev <= 0) rev = cur;
    if (rev < this.compactRev) throw new ErrCompacted(this.compactRev);
    return this.rangeAt(key, end, rev, cur, options);
  }

  /** @internal Shared by store and txn reads; `rev` is validated by the caller. */
  async rangeAt(key: Buffer, end: Buffer | undefined, rev: number, headerRev: number, options: RangeOptions): Promise<RangeResult> {
    const revs: number[] = [];
    let count = 0;
    const limit = options.limit && options.limit > 0 ? options.limit : Infinity;
    const endStr = rangeEnd(end);
    if (endStr === null) {
      const ki = this.index.get(indexKey(key));
      const v = ki?.get(rev);
      if (v) {
        count = 1;
        revs.push(v.modMain, v.modSub);
      }
    } else {
      const countOnly = options.countOnly === true;
      this.index.forRange(indexKey(key), endStr, (ki) => {
        const v = ki.get(rev);
        if (v === undefined) return;
        count++;
        if (!countOnly && count <= limit) revs.push(v.modMain, v.modSub);
      });
    }
    if (options.countOnly || revs.length === 0) return { kvs: [], count, revision: headerRev };
    let kvs = await this.fetchVersions(revs, rev);
    if (options.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: EMPTY_BUFFER }));
    return { kvs, count, revision: headerRev };
  }

  /** Values of the flat [main, sub, ...] revisions; registers as an in-flight read at `rev`. */
  private async fetchVersions(revs: number[], rev: number): Promise<KeyValue[]> {
    const n = revs.length >> 1;
    const out = new Array<KeyValue>(n);
    let missIdx: number[] | undefined;
    let missKeys: Buffer[] | undefined;
    for (let i = 0; i < n; i++) {
      const main = revs[2 * i]!;
      const sub = revs[2 * i + 1]!;
      if (main > this.writtenRev) {
        const kv = this.pending.get(main)?.[sub];
        if (!kv) throw new ErrStoreRead(`staged revision ${main}/${sub} has no value`);
        out[i] = kv;
        continue;
      }
      if (revisionIdOk(main, sub)) {
        const kv = this.cache.get(revisionId(main, sub));
        if (kv) {
          out[i] = kv;
          continue;
        }
      }
      (missIdx ??= []).push(i);
      (missKeys ??= []).push(revisionKey(main, sub, false));
    }
    if (missIdx && missKeys) {
      let values: (Buffer | undefined)[];
      try {
        if (missKeys.length <= this.syncReadMissesMax) {
          // Synchronous: no compaction can run in between, no registration needed.
          values = missKeys.map((k) => this.backend.getPrefixedSync(k));
        } else {
          this.beginRead(rev);
          try {
            values = await this.backend.getManyPrefixed(missKeys);
          } finally {
            this.endRead(rev);
          }
        }
      } catch (err) {
        throw new ErrStoreRead(`reading the key bucket failed: ${String(err)}`, { cause: err });
      }
      for (let j = 0; j < missIdx.length; j++) {
        const v = values[j];
        const i = missIdx[j]!;
        if (!v) throw new ErrStoreRead(`revision ${revs[2 * i]}/${revs[2 * i + 1]} missing from the key bucket`);
        const kv = decodeKeyValue(v);
        out[i] = kv;
        const main = revs[2 * i]!;
        const sub = revs[2 * i + 1]!;
        if (revisionIdOk(main, sub)) this.cache.set(revisionId(main, sub), kv);
      }
    }
    return out;
  }

  private beginRead(rev: number): void {
    this.activeReads.set(rev, (this.activeReads.get(rev) ?? 0) + 1);
  }

  private endRead(rev: number): void {
    const n = this.activeReads.get(rev)! - 1;
    if (n === 0) this.activeReads.delete(rev);
    else this.activeReads.set(rev, n);
    if (this.readWaiters.length > 0) {
      const waiters = this.readWaiters;
      this.readWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Waits until no read below `rev` is in flight. */
  private async readsBelowDrained(rev: number): Promise<void> {
    for (;;) {
      let busy = false;
      for (const r of this.activeReads.keys()) {
        if (r < rev) {
          busy = true;
          break;
        }
      }
      if (!busy) return;
      await new Promise<void>((r) => this.readWaiters.push(r));
    }
  }

  /** Starts the write txn of one apply step (see the handshake in the module doc). */
  write(): WriteTxn {
    this.assertOpen();
    if (this.openTxn) throw new Error("mvcc: a write txn is already open");
    const txn = new StoreWriteTxn(this, this.stagedRev);
    this.openTxn = txn;
    return txn;
  }

  /** @internal */
  keyIndexFor(keyStr: string): KeyIndex | undefined {
    return this.index.get(keyStr);
  }

  /** @internal A new index entry. */
  createKeyIndex(keyStr: string): KeyIndex {
    const ki = new KeyIndex(keyStr);
    this.index.set(keyStr, ki);
    return ki;
  }

  /** @internal A copy of a written key or value that pins no request buffer. */
  keepBytes(bytes: Buffer): Buffer {
    return bytes.length === 0 ? EMPTY_BUFFER : this.valueArena.copy(bytes);
  }

  /** @internal */
  stagePending(main: number, sub: number, kv: KeyValue | undefined): void {
    const list = this.pending.get(main);
    if (list === undefined) {
      if (sub !== 0) throw new Error(`mvcc: revision ${main} staged from sub ${sub}`);
      this.pending.add(main, [kv]);
    } else {
      list[sub] = kv;
    }
  }

  /** @internal Keys visible at `rev` in the range, for deleteRange. */
  visibleKeys(key: Buffer, end: Buffer | undefined, rev: number): Array<[string, KeyIndex]> {
    const out: Array<[string, KeyIndex]> = [];
    const endStr = rangeEnd(end);
    if (endStr === null) {
      const keyStr = indexKey(key);
      const ki = this.index.get(keyStr);
      if (ki?.get(rev)) out.push([keyStr, ki]);
      return out;
    }
    this.index.forRange(indexKey(key), endStr, (ki, k) => {
      if (ki.get(rev)) out.push([k, ki]);
    });
    return out;
  }

  /** @internal Called by a txn's end(). */
  finishTxn(txn: StoreWriteTxn, batch: BackendBatch | undefined, changes: Change[]): void {
    if (this.openTxn !== txn) throw new Error("mvcc: txn ended twice");
    this.openTxn = undefined;
    if (!batch || changes.length === 0) return;
    const rev = txn.revision;
    for (let sub = 0; sub < changes.length; sub++) {
      const ch = changes[sub]!;
      if (ch.tombstone) batch.putPrefixed(revisionKey(rev, sub, true), encodeTombstone(ch.kv.key));
      else batch.putPrefixed(revisionKey(rev, sub, false), encodeKeyValue(ch.kv));
    }
    this.stagedRev = rev;
    batch.onWritten(() => this.markWritten(rev));
    this.publish(rev, changes);
  }

  /** The batch of `rev` is in LevelDB: its values are read from there (or the cache) from now on. */
  private markWritten(rev: number): void {
    if (rev <= this.writtenRev) {
      throw new Error(`mvcc: revision ${rev} written after ${this.writtenRev}: batches written out of order`);
    }
    this.pending.take(rev);
    this.writtenRev = rev;
    if (this.writtenWaiters.length === 0) return;
    let keep = 0;
    for (const w of this.writtenWaiters) {
      if (w.rev <= rev) w.resolve();
      else this.writtenWaiters[keep++] = w;
    }
    this.writtenWaiters.length = keep;
  }

  /** Resolves once every revision up to `rev` is in LevelDB (scans read LevelDB directly). */
  private writtenThrough(rev: number): Promise<void> {
    if (rev <= this.writtenRev) return Promise.resolve();
    // Its batch may be waiting for the backend's batch interval: not for this reader.
    this.backend.expedite();
    return new Promise((resolve) => this.writtenWaiters.push({ rev, resolve }));
  }

  /** Highest revision whose batch is in LevelDB; the revisions above it are served from memory. */
  get writtenRevision(): number {
    return this.writtenRev;
  }

  private publish(rev: number, changes: Change[]): void {
    if (rev !== this.currentRev + 1) {
      throw new Error(`mvcc: published revision ${rev} does not follow ${this.currentRev}`);
    }
    if (!this.hub.watching) {
      // Nobody to tell: no events are built.
      for (let sub = 0; sub < changes.length; sub++) {
        const ch = changes[sub]!;
        if (!ch.tombstone && revisionIdOk(rev, sub)) this.cache.set(revisionId(rev, sub), ch.kv);
      }
      this.currentRev = rev;
      return;
    }
    const committed: CommittedChange[] = new Array(changes.length);
    for (let sub = 0; sub < changes.length; sub++) {
      const ch = changes[sub]!;
      if (!ch.tombstone && revisionIdOk(rev, sub)) this.cache.set(revisionId(rev, sub), ch.kv);
      committed[sub] = {
        event: ch.tombstone ? { type: "DELETE", kv: ch.kv } : { type: "PUT", kv: ch.kv },
        keyStr: ch.keyStr,
        prevMain: ch.prevMain,
        prevSub: ch.prevSub,
      };
    }
    this.currentRev = rev;
    this.hub.notify(rev, committed);
  }

  // ---------------------------------------------------------------- compaction

  /**
   * Compacts at `revision`: afterwards reads below it fail with ErrCompacted, and for every key
   * only its newest version <= revision survives (dropped if that is a tombstone).
   *
   * Synchronously (before returning): validates (ErrCompacted if revision <= the last scheduled
   * compaction, ErrFutureRev if above the staged revision) and stages the scheduled compaction
   * record into `batch` (or writes it in its own batch when none is given). `compactRevision`
   * moves to `revision` at once (as in etcd): every revision up to the staged one is published.
   * Reads in later txns of the same group see the compaction too.
   * In the background, once that record is written: compacts the key index in chunks, waits for
   * in-flight reads below `revision`, deletes the dropped entries from LevelDB in bounded
   * batches, then records the compaction as finished. The returned promise resolves then
   * (etcd's `physical: true`). With a `batch`, do not await the promise before writing the batch.
   */
  scheduleCompaction(revision: number, batch?: BackendBatch): Promise<void> {
    this.assertOpen();
    if (revision <= this.scheduledCompactRev) throw new ErrCompacted(this.scheduledCompactRev);
    if (revision > this.stagedRev) throw new ErrFutureRev(this.currentRev);
    this.scheduledCompactRev = revision;
    if (revision <= this.currentRev) this.compactRev = revision;
    const own = batch === undefined;
    const b = batch ?? this.backend.batch();
    // The physical pass (which `etcdctl compact --physical` waits for) starts once this is in.
    b.expedite();
    b.put("meta", META_SCHEDULED_COMPACT, encodeRevisionValue(revision));
    const done = new Promise<void>((resolve, reject) => {
      b.onWritten(() => {
        // By now every revision up to `revision` is published (batches are written in order).
        if (revision > this.compactRev) this.compactRev = revision;
        this.enqueueCompaction(revision).then(resolve, reject);
      });
    });
    if (own) {
      this.backend.write(b).catch((e) => this.log.warn("writing the scheduled compaction failed", { error: String(e) }));
    }
    return done;
  }

  /** `scheduleCompaction` as a promise: validation errors reject it. Resolves when physically done. */
  async compact(revision: number, batch?: BackendBatch): Promise<void> {
    await this.scheduleCompaction(revision, batch);
  }

  private enqueueCompaction(revision: number): Promise<void> {
    const job = this.compactionChain.then(() => this.runCompaction(revision));
    this.compactionChain = job.catch(() => undefined);
    return job;
  }

  private async runCompaction(revision: number): Promise<void> {
    const epoch = this.compactionEpoch;
    if (this.compactionStopped(epoch)) return;
    const started = performance.now();
    const keep = await this.compactIndex(revision, epoch);
    this.counters.indexCompactionPauseMs.observe(performance.now() - started);
    await this.readsBelowDrained(revision);
    await this.deleteCompacted(revision, keep, epoch);
    this.counters.dbCompactionTotalMs.observe(performance.now() - started);
  }

  /** The store closed, or its contents were replaced, since the compaction of `epoch` began. */
  private compactionStopped(epoch: number): boolean {
    return this.closed || epoch !== this.compactionEpoch;
  }

  /** Compacts the key index at `revision` in chunks; returns the revisions kept. */
  private async compactIndex(revision: number, epoch: number): Promise<RevisionSet> {
    const keep = new RevisionSet();
    let next = this.index.nextKey(undefined);
    while (next !== undefined && !this.compactionStopped(epoch)) {
      let last: string | undefined;
      let n = 0;
      const empty: string[] = [];
      this.index.forRange(next, undefined, (ki, k) => {
        ki.compact(revision, keep);
        if (ki.isEmpty()) empty.push(k);
        last = k;
        return ++n >= this.indexCompactionChunkKeys;
      });
      for (const k of empty) this.index.delete(k);
      if (last === undefined || n < this.indexCompactionChunkKeys) break;
      next = this.index.nextKey(last);
      await new Promise<void>((r) => setImmediate(r));
    }
    return keep;
  }

  /** Deletes key-bucket entries <= revision not in `keep`, in bounded batches. */
  private async deleteCompacted(revision: number, keep: RevisionSet, epoch: number): Promise<void> {
    const upper = revisionKey(revision + 1, 0, false);
    let lower: Buffer = Buffer.from([Bucket.key]);
    let inclusive = true;
    for (;;) {
      if (this.compactionStopped(epoch)) return; // resumed at the next open, or replaced
      const it = this.backend.rawIterator({
        [inclusive ? "gte" : "gt"]: lower,
        lt: upper,
        values: false,
        limit: this.compactionBatchEntries,
      });
      const keys: Array<[Buffer, Buffer]> = [];
      try {
        // nextv may return fewer entries than asked for before the end: loop until full or done.
        while (keys.length < this.compactionBatchEntries) {
          const got = await it.nextv(this.compactionBatchEntries - keys.length);
          if (got.length === 0) break;
          for (const e of got) keys.push(e);
        }
      } finally {
        await it.close();
      }
      const batch = this.backend.batch();
      for (const [k] of keys) {
        if (isTombstoneKey(k) || !keep.has(mainOfKey(k), subOfKey(k))) batch.delPrefixed(k);
      }
      const lastChunk = keys.length < this.compactionBatchEntries;
      if (lastChunk) batch.put("meta", META_FINISHED_COMPACT, encodeRevisionValue(revision));
      const writeStarted = performance.now();
      if (batch.size > 0) await this.backend.write(batch);
      this.counters.dbCompactionPauseMs.observe(performance.now() - writeStarted);
      this.counters.compactedKeys += batch.size;
      if (lastChunk) {
        this.log.info("finished compaction", { revision });
        return;
      }
      lower = keys[keys.length - 1]![0];
      inclusive = false;
      if (this.compactionPauseMs > 0) await sleep(this.clock, this.compactionPauseMs);
      else await new Promise<void>((r) => setImmediate(r));
    }
  }

  // ---------------------------------------------------------------- hash

  /**
   * etcd's HashKV: CRC-32C over "key" and then, in revision order, every key-bucket entry
   * (revision bytes ++ stored KeyValue) with main revision <= `revision`, skipping entries at or
   * below the compact revision that compaction drops (so the result does not depend on how far
   * physical compaction has got). 0 = current revision.
   * Throws ErrCompacted (revision <= compactRevision) or ErrFutureRev.
   */
  async hashKV(revision: number): Promise<HashKVResult> {
    const started = performance.now();
    const result = await this.hashKVAt(revision);
    this.counters.hashRevSeconds.observe((performance.now() - started) / 1000);
    return result;
  }

  private async hashKVAt(revision: number): Promise<HashKVResult> {
    this.assertOpen();
    if (this.restoring !== undefined) await this.restoring;
    const cur = this.currentRev;
    if (revision > 0 && revision <= this.compactRev) throw new ErrCompacted(this.compactRev);
    if (revision > cur) throw new ErrFutureRev(cur);
    const rev = revision > 0 ? revision : cur;
    // The scan reads LevelDB: the revisions it covers must be in there.
    await this.writtenThrough(rev);
    const compactRev = this.compactRev;
    if (revision > 0 && revision <= compactRev) throw new ErrCompacted(compactRev);
    const keep = new RevisionSet();
    if (compactRev >= 0) this.index.forRange("", undefined, (ki) => ki.keep(rev, keep));
    // The iterator's snapshot is taken now, synchronously with the keep set.
    const it = this.backend.rawIterator({ gte: Buffer.from([Bucket.key]), lt: revisionKey(rev + 1, 0, false) });
    let crc = crc32c(Buffer.from("key"));
    try {
      for (;;) {
        const entries = await it.nextv(1000);
        if (entries.length === 0) break;
        for (const [k, v] of entries) {
          const main = mainOfKey(k);
          if (main <= compactRev && (isTombstoneKey(k) || !keep.has(main, subOfKey(k)))) continue;
          crc = crc32cUpdate(crc, k.subarray(1));
          crc = crc32cUpdate(crc, v);
        }
      }
    } finally {
      await it.close();
    }
    return { hash: crc, compactRevision: compactRev, revision: cur };
  }

  // ---------------------------------------------------------------- watch

  /**
   * Watches `[key, end)` from `startRevision` (0 = from the next revision). See watch-hub.ts for
   * delivery, backpressure and the compacted signal (sent when startRevision < compactRevision,
   * as etcd does).
   */
  watch(options: WatchOptions, sink: WatchSink): Watcher {
    this.assertOpen();
    return this.hub.watch(options, sink);
  }

  /** The revision all watchers have seen everything up to (for progress notifications). */
  watchSyncedRevision(): number {
    return this.hub.syncedRevision();
  }

  /** Watcher counts by state. */
  /** Events handed to watchers so far. */
  watchEventsSent(): number {
    return this.hub.eventsSent;
  }

  watcherCounts(): { synced: number; unsynced: number } {
    return this.hub.counts();
  }

  /** Resolves when no watcher is catching up (tests). */
  watchersIdle(): Promise<void> {
    return this.hub.whenIdle();
  }

  private async readEvents(
    fromRev: number,
    toRev: number,
    revisionsMax: number,
    entriesMax: number,
  ): Promise<{ events: Event[]; lastRevision: number }> {
    if (this.restoring !== undefined) await this.restoring;
    // The scan reads LevelDB: the revisions it covers must be in there.
    await this.writtenThrough(toRev);
    const it = this.backend.rawIterator({ gte: revisionKey(fromRev, 0, false), lt: revisionKey(toRev + 1, 0, false) });
    const events: Event[] = [];
    let lastRevision = toRev;
    try {
      let lastMain = -1;
      let revisions = 0;
      outer: for (;;) {
        const entries = await it.nextv(Math.min(entriesMax, 1000));
        if (entries.length === 0) break;
        for (const [k, v] of entries) {
          const main = mainOfKey(k);
          if (main !== lastMain) {
            // Only ever stop at a revision boundary.
            if (revisions >= revisionsMax || events.length >= entriesMax) {
              lastRevision = lastMain;
              break outer;
            }
            revisions++;
            lastMain = main;
          }
          if (v.length === 0) continue; // a revision marker, no event
          const kv = decodeKeyValue(v);
          if (isTombstoneKey(k)) {
            events.push({ type: "DELETE", kv: { key: kv.key, createRevision: 0, modRevision: main, version: 0, value: EMPTY_BUFFER, lease: NO_LEASE } });
          } else {
            events.push({ type: "PUT", kv });
          }
        }
      }
    } finally {
      await it.close();
    }
    return { events, lastRevision };
  }

  private async versionAt(key: Buffer, rev: number): Promise<KeyValue | undefined> {
    if (this.restoring !== undefined) await this.restoring;
    if (rev < this.compactRev || rev > this.currentRev || rev <= 0) return undefined;
    const r = await this.rangeAt(key, undefined, rev, this.currentRev, {});
    return r.kvs[0];
  }

  // ---------------------------------------------------------------- restore

  /**
   * Replaces the store's contents with `image` (a leader's backend, see BackendImage), as etcd's
   * kv.Restore does with a received backend: stops a compaction in progress, waits for reads in
   * flight, replaces the backend's contents (Backend.replace), rebuilds the key index, revisions
   * and compaction state from them (resuming a compaction the image had scheduled but not
   * finished), and drops cached values. Every synced watcher goes back to catching up from its
   * next revision (etcd's watchableStore.Restore), so it receives the image's events from there,
   * or the compacted signal with the image's compact revision when it is compacted past it.
   * Reads, hashes and watch catch-up that start meanwhile wait until it is done.
   * Throws when a txn is open: the apply loop restores between entries. Published revisions not
   * yet in LevelDB are written first. Rejects with the backend's errors; the store is then
   * unusable (stop, restart from the WAL).
   */
  async restore(image: BackendImage): Promise<void> {
    this.assertOpen();
    if (this.openTxn !== undefined) throw new Error("mvcc: restore while a write is in progress");
    let restored!: () => void;
    this.restoring = new Promise((resolve) => (restored = resolve));
    try {
      await this.writtenThrough(this.currentRev);
      this.compactionEpoch++;
      await this.compactionChain;
      await this.readsBelowDrained(Infinity);
      await this.backend.replace(image);
      this.index.clear();
      this.cache.clear();
      this.pending.clear();
      await this.rebuild();
      this.hub.restore();
    } finally {
      this.restoring = undefined;
      restored();
    }
  }

  // ---------------------------------------------------------------- lifecycle

  /** Stops watchers and background compaction (an unfinished one resumes at the next open). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.hub.close();
    // Scans waiting for a batch that may never be written go on, and fail on the closed backend.
    for (const w of this.writtenWaiters.splice(0)) w.resolve();
    await this.compactionChain;
  }

  private assertOpen(): void {
    if (this.closed) throw new ErrClosed();
  }
}

class StoreWriteTxn implements WriteTxn {
  private readonly list: Change[] = [];
  private ended = false;
  /** Operations so far (range, put, deleteRange calls), for the store's txn count. */
  private ops = 0;

  constructor(
    private readonly store: MvccStore,
    private readonly beginRev: number,
  ) {}

  get revision(): number {
    return this.beginRev + 1;
  }

  get changes(): number {
    return this.list.length;
  }

  private get viewRev(): number {
    return this.list.length > 0 ? this.beginRev + 1 : this.beginRev;
  }

  async range(key: Buffer, end: Buffer | undefined, options: RangeOptions = {}): Promise<RangeResult> {
    this.assertOpen();
    const cur = this.viewRev;
    let rev = options.revision ?? 0;
    if (rev > cur) throw new ErrFutureRev(cur);
    if (rev <= 0) rev = cur;
    this.ops++;
    this.store.counters.ranges++;
    const compactRev = this.store.scheduledCompactRevision;
    if (rev < compactRev) throw new ErrCompacted(compactRev);
    return this.store.rangeAt(key, end, rev, cur, options);
  }

  put(key: Buffer, value: Buffer, lease: bigint): PutResult {
    this.assertOpen();
    this.ops++;
    const counters = this.store.counters;
    counters.puts++;
    counters.putBytes += key.length + value.length;
    const rev = this.beginRev + 1;
    const sub = this.list.length;
    const keyStr = indexKey(key);
    let ki = this.store.keyIndexFor(keyStr);
    let createRevision = rev;
    let version = 1;
    let prev: KeyInfo | undefined;
    let prevMain = 0;
    let prevSub = 0;
    if (ki) {
      const visible = ki.get(rev);
      if (visible) {
        createRevision = visible.createdMain;
        version = visible.version + 1;
        prev = { key, createRevision: visible.createdMain, modRevision: visible.modMain, version: visible.version, lease: ki.lease };
      }
      const before = ki.get(this.beginRev);
      if (before) {
        prevMain = before.modMain;
        prevSub = before.modSub;
      }
    } else {
      ki = this.store.createKeyIndex(keyStr);
    }
    // Kept copies of key and value: the arguments are views into the request's bytes, which must
    // not live as long as the cache and watchers keep kv.
    const kv: KeyValue = { key: this.store.keepBytes(key), createRevision, modRevision: rev, version, value: this.store.keepBytes(value), lease };
    ki.put(rev, sub);
    ki.lease = lease;
    this.store.stagePending(rev, sub, kv);
    this.list.push({ kv, keyStr, tombstone: false, prevMain, prevSub });
    return { kv, prev };
  }

  deleteRange(key: Buffer, end: Buffer | undefined): KeyInfo[] {
    this.assertOpen();
    this.ops++;
    this.store.counters.deletes++;
    const rev = this.beginRev + 1;
    const deleted: KeyInfo[] = [];
    for (const [keyStr, ki] of this.store.visibleKeys(key, end, this.viewRev)) {
      const visible = ki.get(rev)!;
      const deletedKey = ki.key;
      deleted.push({ key: deletedKey, createRevision: visible.createdMain, modRevision: visible.modMain, version: visible.version, lease: ki.lease });
      const before = ki.get(this.beginRev);
      const sub = this.list.length;
      ki.tombstone(rev, sub);
      this.store.stagePending(rev, sub, undefined);
      const kv: KeyValue = { key: deletedKey, createRevision: 0, modRevision: rev, version: 0, value: EMPTY_BUFFER, lease: NO_LEASE };
      this.list.push({ kv, keyStr, tombstone: true, prevMain: before?.modMain ?? 0, prevSub: before?.modSub ?? 0 });
    }
    return deleted;
  }

  end(batch: BackendBatch): Event[] {
    this.assertOpen();
    this.ended = true;
    if (this.ops > 1) this.store.counters.txns++;
    this.store.finishTxn(this, batch, this.list);
    return this.list.map((ch) => (ch.tombstone ? { type: "DELETE" as const, kv: ch.kv } : { type: "PUT" as const, kv: ch.kv }));
  }

  private assertOpen(): void {
    if (this.ended) throw new Error("mvcc: txn already ended");
  }
}

