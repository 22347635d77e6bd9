/**
 * A write-ahead log in memory, for simulations: `MemoryWalDir` is the log's directory (it
 * outlives the members that open it), `MemoryWal` the open log. Same contract as FsWalDir and
 * Wal (wal-dir.ts): records are validated and sized by the real encoder, replayed by the same
 * rules (wal-replay.ts), and kept in segments cut where the real log would cut them (when a
 * segment's encoded records, counted as the real writer plans its cuts, reach
 * `segmentSizeBytes`), so `releaseTo` drops the same kind of prefix and opening from a released
 * marker fails the same way.
 *
 * Durability follows the disk: a record saved without sync is in the page cache, a synced save,
 * a snapshot marker, a segment cut, open and close make everything saved so far durable, and so
 * does a background writeback (`flush()`). Deferred saves stay "in the process" (as the real log
 * holds them) until a save that is not deferred, a cut, or close, or until they pass
 * DEFERRED_BYTES_MAX. Two ways to lose the process:
 *  - `kill()`: the process died, the OS did not: only deferred records still held are lost;
 *  - `crash(rng)`: power loss: unsynced records are lost, except that a random prefix of them may
 *    survive, and the last survivor may be torn (half written): the reader drops it, and the next
 *    open cuts it with a warning, as the real reader cuts a torn tail.
 * Either way the log that was open is cut off: its pending and later calls never settle (a dead
 * process runs nothing more), so it cannot touch the directory a restarted member opens.
 *
 * Saves take effect when called (a crash right after `save` returned keeps or loses its records
 * as above); records are copied in and out, so callers and log share no memory.
 */
import type { ConfState, Entry, HardState } from "../raft/types.js";
import { drawInt, type RandomInt } from "../pkg/random-int.js";
import {
  ErrSnapshotNotFound,
  ErrWalClosed,
  ErrWalExists,
  ErrWalLocked,
  ErrWalNotFound,
} from "./errors.js";
import {
  CRC_PAYLOAD_BYTES,
  entryPayloadBytes,
  FrameBuilder,
  frameSizeBytes,
  hardStatePayloadBytes,
  isEmptyHardState,
  snapshotPayloadBytes,
  SYNC_MARK_FRAME_BYTES,
  type WalSnapshot,
} from "./record-codec.js";
import { DEFERRED_BYTES_MAX, SEGMENT_SIZE_BYTES_DEFAULT, segmentName, type WalLogger, type WalSaveOptions } from "./wal.js";
import type { OpenedWal, WalDir, WalLog } from "./wal-dir.js";
import { validSnapshots, WalReplay } from "./wal-replay.js";

type MemRecord =
  | { kind: "entry"; entry: Entry }
  | { kind: "hardState"; hardState: HardState }
  | { kind: "snapshot"; snapshot: WalSnapshot };

interface MemSegment {
  seq: number;
  firstIndex: number;
  records: MemRecord[];
}

interface MemLog {
  metadata: Uint8Array;
  segments: MemSegment[];
  /** How many records of the newest segment are durable (all of the older segments are). */
  syncedRecords: number;
  /** The newest segment's last record is torn: readers drop it, open cuts it. */
  tornTail: boolean;
  /** How many of the newest segment's last records are deferred and still held, and their bytes. */
  heldRecords: number;
  heldBytes: number;
}

/** What `MemoryWalDir.crash` did. */
export interface WalCrashOutcome {
  /** Unsynced records that survived (a prefix of them), the torn one included. */
  keptRecords: number;
  lostRecords: number;
  /** Whether the last kept record is torn. */
  torn: boolean;
}

export interface MemoryWalDirOptions {
  /** How the directory is named in errors and logs. Default "memory-wal". */
  name?: string;
  /** Size at which the log is cut to a new segment (>= 4096); default 64 MiB, as Wal's. */
  segmentSizeBytes?: number;
}

export interface MemoryWalDirDependencies {
  logger?: WalLogger;
}

const NOOP_LOGGER: WalLogger = { info: () => undefined, warn: () => undefined };
const NEVER = new Promise<never>(() => undefined);
/** The marker a new log starts with. */
const SNAPSHOT_ZERO: WalSnapshot = { index: 0, term: 0 };

function copyEntry(e: Entry): Entry {
  return { term: e.term, index: e.index, type: e.type, data: new Uint8Array(e.data) };
}

function copySnapshot(s: WalSnapshot): WalSnapshot {
  return s.confState === undefined
    ? { index: s.index, term: s.term }
    : { index: s.index, term: s.term, confState: { voters: [...s.confState.voters], learners: [...s.confState.learners] } };
}

function recordBytes(r: MemRecord): number {
  switch (r.kind) {
    case "entry":
      return frameSizeBytes(entryPayloadBytes(r.entry));
    case "hardState":
      return frameSizeBytes(hardStatePayloadBytes());
    case "snapshot":
      return frameSizeBytes(snapshotPayloadBytes(r.snapshot));
  }
}

/** A WalDir in memory (see the top of this file). */
export class MemoryWalDir implements WalDir {
  readonly name: string;
  private readonly segmentSizeBytes: number;
  private readonly logger: WalLogger;
  private log: MemLog | undefined;
  private holder: MemoryWal | undefined;

  constructor(options: MemoryWalDirOptions = {}, dependencies: MemoryWalDirDependencies = {}) {
    this.name = options.name ?? "memory-wal";
    this.segmentSizeBytes = options.segmentSizeBytes ?? SEGMENT_SIZE_BYTES_DEFAULT;
    if (!Number.isSafeInteger(this.segmentSizeBytes) || this.segmentSizeBytes < 4096) {
      throw new RangeError(`wal: segmentSizeBytes must be an integer >= 4096, got ${this.segmentSizeBytes}`);
    }
    this.logger = dependencies.logger ?? NOOP_LOGGER;
  }

  exists(): boolean {
    return this.log !== undefined;
  }

  async create(metadata: Uint8Array): Promise<MemoryWal> {
    if (this.log !== undefined) throw new ErrWalExists(this.name);
    this.log = {
      metadata: new Uint8Array(metadata),
      segments: [{ seq: 0, firstIndex: 0, records: [{ kind: "snapshot", snapshot: SNAPSHOT_ZERO }] }],
      syncedRecords: 1,
      tornTail: false,
      heldRecords: 0,
      heldBytes: 0,
    };
    this.logger.info("wal: created", { dir: this.name, segmentSizeBytes: this.segmentSizeBytes });
    return (await this.open(SNAPSHOT_ZERO)).wal;
  }

  async open(from: { index: number; term: number }): Promise<OpenedWal<MemoryWal>> {
    if (this.holder !== undefined) throw new ErrWalLocked(this.name, process.pid);
    const log = this.log;
    if (log === undefined) throw new ErrWalNotFound(this.name, "no segments");
    let start = -1;
    for (let i = 0; i < log.segments.length; i++) if (log.segments[i]!.firstIndex <= from.index) start = i;
    if (start < 0) throw new ErrWalNotFound(this.name, `no segment can hold index ${from.index}`);
    const replay = new WalReplay(from);
    this.read(log, start, (r, file, n) => {
      if (r.kind === "entry") replay.entry(copyEntry(r.entry), file, n);
      else if (r.kind === "hardState") replay.hardStateRecord({ ...r.hardState });
      else replay.snapshot(r.snapshot);
    });
    if (!replay.matched) throw new ErrSnapshotNotFound(from.index, from.term);
    const newest = log.segments[log.segments.length - 1]!;
    if (log.tornTail) {
      this.logger.warn("wal: cutting torn tail", { file: this.fileOf(newest), record: newest.records.length - 1, reason: "torn record" });
      newest.records.pop();
      log.tornTail = false;
    }
    // As the real open: what was read is made durable before appending resumes.
    log.syncedRecords = newest.records.length;
    const wal = new MemoryWal(this, {
      lastIndex: Math.max(replay.lastIndex, from.index),
      hardState: replay.hardState,
      segmentBytes: this.headerBytes(log) + newest.records.reduce((n, r) => n + recordBytes(r), 0),
    });
    this.holder = wal;
    return { wal, metadata: new Uint8Array(log.metadata), hardState: { ...replay.hardState }, entries: replay.entries };
  }

  async validSnapshotEntries(): Promise<WalSnapshot[]> {
    const log = this.log;
    if (log === undefined) throw new ErrWalNotFound(this.name, "no segments");
    const snaps: WalSnapshot[] = [];
    let hardState: HardState = { term: 0, vote: 0n, commit: 0 };
    this.read(log, 0, (r) => {
      if (r.kind === "snapshot") snaps.push(copySnapshot(r.snapshot));
      else if (r.kind === "hardState") hardState = r.hardState;
    });
    return validSnapshots(snaps, hardState);
  }

  /** Background writeback: every record saved so far becomes durable. */
  flush(): void {
    if (this.log !== undefined) this.log.syncedRecords = this.newest(this.log).records.length - this.log.heldRecords;
  }

  /**
   * Power loss. Without `rng` every unsynced record is lost; with it, a prefix of
   * `rng(unsynced + 1)` records survives and, when one does, `rng(2) === 1` tears the last.
   * Cuts off the open log.
   */
  crash(rng?: RandomInt): WalCrashOutcome {
    this.cutOffHolder();
    const log = this.log;
    if (log === undefined) return { keptRecords: 0, lostRecords: 0, torn: false };
    const newest = this.newest(log);
    this.dropHeld(log);
    const unsynced = newest.records.length - log.syncedRecords;
    const kept = rng === undefined || unsynced === 0 ? 0 : drawInt(rng, unsynced + 1);
    const torn = kept > 0 && rng !== undefined && drawInt(rng, 2) === 1;
    newest.records.length = log.syncedRecords + kept;
    log.syncedRecords = newest.records.length;
    if (torn) log.tornTail = true;
    return { keptRecords: kept, lostRecords: unsynced - kept, torn };
  }

  /** The process died: what reached the OS is kept, deferred records still held are lost. Cuts off the open log. */
  kill(): void {
    this.cutOffHolder();
    if (this.log !== undefined) this.dropHeld(this.log);
  }

  private dropHeld(log: MemLog): void {
    this.newest(log).records.length -= log.heldRecords;
    log.heldRecords = 0;
    log.heldBytes = 0;
  }

  /** Segment names (as on disk), oldest first. */
  segmentNames(): string[] {
    return this.log === undefined ? [] : this.log.segments.map((s) => segmentName(s.seq, s.firstIndex));
  }

  /** Records saved but not yet durable. */
  unsyncedRecords(): number {
    return this.log === undefined ? 0 : this.newest(this.log).records.length - this.log.syncedRecords;
  }

  /** @internal Appends records of the open `wal` to the newest segment. */
  append(wal: MemoryWal, records: MemRecord[], sync: boolean, deferredBytes?: number): void {
    const log = this.owned(wal);
    const newest = this.newest(log);
    for (const r of records) newest.records.push(r);
    if (sync) log.syncedRecords = newest.records.length;
    if (deferredBytes !== undefined && !sync && log.heldBytes + deferredBytes <= DEFERRED_BYTES_MAX) {
      log.heldRecords += records.length;
      log.heldBytes += deferredBytes;
    } else {
      log.heldRecords = 0;
      log.heldBytes = 0;
    }
  }

  /**
   * @internal Seals the newest segment and starts the next one (`firstIndex` = the index after the
   * last entry), headed by `hardState` when it is not empty; everything becomes durable, as the
   * real cut fsyncs. Returns the new segment's header bytes.
   */
  cut(wal: MemoryWal, firstIndex: number, hardState: HardState): number {
    const log = this.owned(wal);
    const records: MemRecord[] = isEmptyHardState(hardState) ? [] : [{ kind: "hardState", hardState: { ...hardState } }];
    const segment: MemSegment = { seq: this.newest(log).seq + 1, firstIndex, records };
    log.segments.push(segment);
    log.syncedRecords = records.length;
    log.heldRecords = 0;
    log.heldBytes = 0;
    this.logger.info("wal: cut to new segment", { file: this.fileOf(segment) });
    return this.headerBytes(log) + records.reduce((n, r) => n + recordBytes(r), 0);
  }

  /** @internal Deletes segments entirely before the one holding `index` (never the newest). */
  release(wal: MemoryWal, index: number): void {
    const log = this.owned(wal);
    let keep = -1;
    for (let i = 0; i < log.segments.length; i++) if (log.segments[i]!.firstIndex <= index) keep = i;
    if (keep <= 0) return;
    const doomed = log.segments.splice(0, keep);
    this.logger.info("wal: released segments", { dir: this.name, index, removed: doomed.map((s) => this.fileOf(s)) });
  }

  /** @internal The open log is closing: everything becomes durable and the directory is free. */
  closed(wal: MemoryWal): void {
    const log = this.owned(wal);
    log.syncedRecords = this.newest(log).records.length;
    log.heldRecords = 0;
    log.heldBytes = 0;
    this.holder = undefined;
  }

  /** @internal */
  get segmentLimitBytes(): number {
    return this.segmentSizeBytes;
  }

  private owned(wal: MemoryWal): MemLog {
    if (this.holder !== wal || this.log === undefined) throw new Error("wal: memory log used by a handle that does not hold it");
    return this.log;
  }

  private newest(log: MemLog): MemSegment {
    return log.segments[log.segments.length - 1]!;
  }

  private fileOf(s: MemSegment): string {
    return `${this.name}/${segmentName(s.seq, s.firstIndex)}`;
  }

  /** Bytes of the crc and metadata frames that start every segment. */
  private headerBytes(log: MemLog): number {
    return frameSizeBytes(CRC_PAYLOAD_BYTES) + frameSizeBytes(log.metadata.length);
  }

  /** Visits the readable records of segments[start..] in order (a torn tail is not readable). */
  private read(log: MemLog, start: number, visit: (r: MemRecord, file: string, recordNumber: number) => void): void {
    for (let i = start; i < log.segments.length; i++) {
      const s = log.segments[i]!;
      const file = this.fileOf(s);
      const readable = i === log.segments.length - 1 && log.tornTail ? s.records.length - 1 : s.records.length;
      for (let k = 0; k < readable; k++) visit(s.records[k]!, file, k);
    }
  }

  private cutOffHolder(): void {
    this.holder?.cutOff();
    this.holder = undefined;
  }
}

/** An open MemoryWalDir log (see WalLog). */
export class MemoryWal implements WalLog {
  private closing = false;
  private cut = false;
  private lastIndex: number;
  private hardState: HardState;
  /** Encoded bytes of the newest segment's records and header, as the real log counts them. */
  private segmentBytes: number;

  /** @internal Opened by MemoryWalDir. */
  constructor(
    private readonly dir: MemoryWalDir,
    state: { lastIndex: number; hardState: HardState; segmentBytes: number },
  ) {
    this.lastIndex = state.lastIndex;
    this.hardState = { ...state.hardState };
    this.segmentBytes = state.segmentBytes;
  }

  save(hardState: HardState | undefined, entries: Entry[], options: WalSaveOptions): Promise<void> {
    if (this.cut) return NEVER;
    if (this.closing) return Promise.reject(new ErrWalClosed());
    const writeHardState = hardState !== undefined && !isEmptyHardState(hardState);
    let bytes: number;
    try {
      // Encoded as the real log encodes it: the same checks, the same size.
      const b = new FrameBuilder(0);
      for (const e of entries) b.reserve(entryPayloadBytes(e));
      if (writeHardState) b.reserve(hardStatePayloadBytes());
      for (const e of entries) b.addEntry(e);
      if (writeHardState) b.addHardState(hardState);
      bytes = b.finish().length;
    } catch (e) {
      return Promise.reject(e);
    }
    const records: MemRecord[] = entries.map((e) => ({ kind: "entry", entry: copyEntry(e) }));
    if (writeHardState) records.push({ kind: "hardState", hardState: { ...hardState } });
    if (entries.length > 0) this.lastIndex = entries[entries.length - 1]!.index;
    if (writeHardState) this.hardState = { ...hardState };
    this.dir.append(this, records, options.sync, options.deferred === true ? bytes : undefined);
    this.afterWrite(bytes);
    return Promise.resolve();
  }

  saveSnapshot(snap: { index: number; term: number; confState?: ConfState }): Promise<void> {
    if (this.cut) return NEVER;
    if (this.closing) return Promise.reject(new ErrWalClosed());
    const marker = copySnapshot(snap);
    let bytes: number;
    try {
      const b = new FrameBuilder(0);
      b.reserve(snapshotPayloadBytes(marker));
      b.addSnapshot(marker);
      bytes = b.finish().length;
    } catch (e) {
      return Promise.reject(e);
    }
    if (snap.index > this.lastIndex) this.lastIndex = snap.index;
    this.dir.append(this, [{ kind: "snapshot", snapshot: marker }], true);
    this.afterWrite(bytes);
    return Promise.resolve();
  }

  releaseTo(index: number): Promise<void> {
    if (this.cut) return NEVER;
    if (this.closing) return Promise.reject(new ErrWalClosed());
    this.dir.release(this, index);
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.cut) return NEVER;
    if (!this.closing) {
      this.closing = true;
      this.dir.closed(this);
    }
    return Promise.resolve();
  }

  /** @internal Called by the directory on crash/kill. */
  cutOff(): void {
    this.cut = true;
  }

  /** Counts a write (with the sync mark the real writer puts before it) and cuts when full. */
  private afterWrite(bytes: number): void {
    if (bytes === 0) return;
    this.segmentBytes += bytes + SYNC_MARK_FRAME_BYTES;
    if (this.segmentBytes >= this.dir.segmentLimitBytes) {
      this.segmentBytes = this.dir.cut(this, this.lastIndex + 1, this.hardState);
    }
  }
}
