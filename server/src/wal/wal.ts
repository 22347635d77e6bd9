/**
 * The write-ahead log: every HardState and entry the Raft core hands the driver is appended here
 * (and fsynced when the Ready says so) before messages are sent or entries applied.
 *
 * On disk (one directory per member):
 *   %016x-%016x.wal   segments: hex sequence number and the first log index the segment may hold
 *                     (the last index written before it, plus one). Sequence numbers are gapless
 *                     from the oldest kept segment to the newest; only the newest is appended to.
 *   <n>.tmp           the next segment being prepared (see file-pipeline.ts); removed at open.
 *   wal.lock          the process holding the log (see dir-lock.ts).
 * The frame format is specified in record-codec.ts. A segment starts with a crc record (continuing
 * the running chain), the metadata record, then a snapshot marker {0, 0} (first segment) or the
 * latest HardState (every later one). Segments are preallocated (fs-durable.ts); when a segment's
 * written bytes reach `segmentSizeBytes` after a save, the log is cut: the full segment is
 * truncated to its data and fsynced, the prepared file gets its header, is fsynced, renamed to its
 * segment name, and the directory is fsynced. So only the newest segment can ever have a torn
 * tail, and a sealed segment ends exactly at its last frame.
 *
 * Recovery (`open`): frames are read in order from the segment that holds the snapshot marker's
 * index. Where reading stops short of a clean end (a bad frame, a zero-filled header) at offset D:
 *  - in a sealed segment: corrupt (ErrWalCorrupt naming file and offset);
 *  - a later sync mark says D had been fsynced: corrupt;
 *  - nothing after D verifies: a torn tail;
 *  - frames after D verify, none proves D durable, and a whole 512-byte sector between D and them
 *    is zero (never written): a torn write whose later pages reached the disk before its earlier
 *    ones (power loss during an unsynced write); also cut;
 *  - otherwise (bad bytes, valid frames after): corrupt.
 * A torn tail is cut with a warning and appending resumes after the last good frame.
 *
 * Writes: `save` encodes synchronously (so record order is call order) and queues the bytes; a
 * single writer loop takes everything queued (up to a planned cut) as one batch, led by a sync
 * mark, and decides before writing whether a waiting caller asked for sync:
 *  - no: one writev through the segment's ordinary handle. The bytes written since the last sync
 *    are also kept in memory, up to `rewriteBytesMax` (1 MiB by default);
 *  - yes: one writev through a second handle of the segment, opened with O_DSYNC (on first use,
 *    closed at cut and close): the write returns once its data is durable, one thread-pool round
 *    trip instead of a writev and an fdatasync. Such a write makes durable only the range it
 *    covers (Linux syncs just that range), so it starts at the last synced offset and carries the
 *    kept unsynced bytes again, unchanged, in front of the batch. Rewriting identical bytes leaves
 *    what a crash can find on disk as before, and every sync mark still states only what had been
 *    synced before its own write. When more than `rewriteBytesMax` went unsynced, the batch is
 *    written through the ordinary handle and followed by fdatasync (which covers the whole file);
 *  - a batch followed by a cut is written without sync: the cut fsyncs the whole segment.
 * A deferred save (unsynced, for a HardState that only advances the commit index) is not written
 * on its own: its bytes wait in memory, up to DEFERRED_BYTES_MAX, and lead the next batch that is
 * written (or the cut's, or close's). A process crash loses them as a power loss loses an unsynced
 * write; etcd's WAL keeps such records in its write buffer likewise. It saves a thread-pool round
 * trip per commit-only Ready, which each member takes for every round of replication.
 * An inline save (`inline`, with sync) asks for its synced write to be made on the calling
 * thread, synchronously within `save`, instead of through libuv's thread pool: the caller has
 * nothing to do meanwhile (a lone entry at low load), and the pool's two thread hand-offs (the
 * submit and the completion's wake-up of the event loop) cost about as much as the O_DSYNC write
 * itself on a small machine. Only a batch made of inline (or deferred) saves alone, up to
 * INLINE_BYTES_MAX, is written so; anything else goes through the pool.
 * Callers arriving while a synced write is in flight share the next one (group commit). The queue
 * is not bounded here: the driver awaits each save. Any I/O failure poisons the Wal
 * (ErrWalFailed): what reached the disk is unknown and the member must stop and reopen the log.
 */
import { constants as fsConstants, existsSync, readdirSync, promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import type { ConfState, Entry, HardState } from "../raft/types.js";
import { acquireDirLock, type DirLock } from "./dir-lock.js";
import {
  ErrSnapshotNotFound,
  ErrWalClosed,
  ErrWalCorrupt,
  ErrWalExists,
  ErrWalFailed,
  ErrWalNotFound,
} from "./errors.js";
import { FilePipeline } from "./file-pipeline.js";
import { isErrno, preallocate, writevAll, writevAllSync, type PositionedWriter, type Preallocation } from "./fs-durable.js";
import { fsyncDir } from "../pkg/fsync-dir.js";
import {
  decodeEntry,
  decodeHardState,
  decodeMetadata,
  decodeSnapshot,
  classifyDamage,
  CRC_PAYLOAD_BYTES,
  entryPayloadBytes,
  FrameBuilder,
  hardStatePayloadBytes,
  isEmptyHardState,
  isZeroRange,
  RecordType,
  snapshotPayloadBytes,
  SYNC_MARK_FRAME_BYTES,
  type WalSnapshot,
} from "./record-codec.js";
import { scanSegment, SegmentChainError, type ScannedRecord } from "./segment-scan.js";
import { readSegmentBytes } from "./segment-read.js";
import { validSnapshots, WalReplay } from "./wal-replay.js";

export interface WalLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Hooks for metrics (the server feeds etcd's `etcd_disk_wal_fsync_duration_seconds` histogram and
 * `etcd_disk_wal_write_bytes_total` counter from them). Called on the write path: keep them cheap.
 */
export interface WalObserver {
  /** How long one synced append took to become durable: the O_DSYNC write, or the fdatasync. */
  observeFsyncSeconds(seconds: number): void;
  /** Bytes appended (each byte once, though a synced write may carry unsynced bytes again). */
  addWrittenBytes(bytes: number): void;
}

/**
 * The tail segment opened for synced appends: every `writev` returns only once the bytes it wrote
 * are durable (O_DSYNC). Only those bytes: see "Writes" at the top of this file.
 */
export interface SyncedAppendFile extends PositionedWriter {
  /**
   * The file descriptor, when the file can also be written on the calling thread (an inline
   * save, see "Writes" at the top); absent, every write goes through `writev`.
   */
  readonly fd?: number;
  close(): Promise<void>;
}

export interface WalOptions {
  /** Size at which the log is cut to a new segment; default 64 MiB (etcd's SegmentSizeBytes). */
  segmentSizeBytes?: number;
  /**
   * Most bytes written without sync that are kept in memory to be written again by the next
   * synced write; beyond it the next sync is a writev + fdatasync. Default 1 MiB.
   */
  rewriteBytesMax?: number;
  /** Opens `path` for synced appends; default: O_WRONLY | O_DSYNC. A seam for tests. */
  openSyncedAppend?: (path: string) => Promise<SyncedAppendFile>;
  /** How segment space is reserved; default "zeros". See fs-durable.ts. */
  preallocation?: Preallocation;
  logger?: WalLogger;
  observer?: WalObserver;
}

export const SEGMENT_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
export const REWRITE_BYTES_MAX_DEFAULT = 1024 * 1024;
const LOCK_FILE_NAME = "wal.lock";
const SEGMENT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0n, commit: 0 };
const NOOP_LOGGER: WalLogger = { info: () => undefined, warn: () => undefined };

export interface SegmentInfo {
  seq: number;
  firstIndex: number;
  name: string;
}

export function segmentName(seq: number, firstIndex: number): string {
  return `${seq.toString(16).padStart(16, "0")}-${firstIndex.toString(16).padStart(16, "0")}.wal`;
}

export function parseSegmentName(name: string): SegmentInfo | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (m === null) return undefined;
  const seq = Number.parseInt(m[1]!, 16);
  const firstIndex = Number.parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(firstIndex)) return undefined;
  return { seq, firstIndex, name };
}

/** Segments in `dir`, oldest first. */
export async function listSegments(dir: string): Promise<SegmentInfo[]> {
  const names = await fsp.readdir(dir);
  return names
    .map(parseSegmentName)
    .filter((s): s is SegmentInfo => s !== undefined)
    .sort((a, b) => a.seq - b.seq);
}

interface ResolvedOptions {
  segmentSizeBytes: number;
  rewriteBytesMax: number;
  openSyncedAppend: (path: string) => Promise<SyncedAppendFile>;
  preallocation: Preallocation;
  logger: WalLogger;
  observer: WalObserver | undefined;
}

function resolveOptions(o: WalOptions | undefined): ResolvedOptions {
  const segmentSizeBytes = o?.segmentSizeBytes ?? SEGMENT_SIZE_BYTES_DEFAULT;
  if (!Number.isSafeInteger(segmentSizeBytes) || segmentSizeBytes < 4096) {
    throw new RangeError(`wal: segmentSizeBytes must be an integer >= 4096, got ${segmentSizeBytes}`);
  }
  const rewriteBytesMax = o?.rewriteBytesMax ?? REWRITE_BYTES_MAX_DEFAULT;
  if (!Number.isSafeInteger(rewriteBytesMax) || rewriteBytesMax < 0) {
    throw new RangeError(`wal: rewriteBytesMax must be an integer >= 0, got ${rewriteBytesMax}`);
  }
  return {
    segmentSizeBytes,
    rewriteBytesMax,
    openSyncedAppend: o?.openSyncedAppend ?? openSyncedAppend,
    preallocation: o?.preallocation ?? "zeros",
    logger: o?.logger ?? NOOP_LOGGER,
    observer: o?.observer,
  };
}

interface LastSegmentState {
  info: SegmentInfo;
  path: string;
  fileBytes: number;
  goodEndBytes: number;
  /** Chain after the last good frame of this segment. */
  chain: number;
  /** Chain at the end of the previous segment read, if any. */
  chainBefore: number | undefined;
  /** Whether every byte after goodEndBytes is zero. */
  tailIsZero: boolean;
  torn: { offsetBytes: number; reason: string } | undefined;
}

/**
 * Reads `segs` in order. Non-metadata records go to `visit`; metadata records are checked for
 * agreement. Damage is classified as described at the top of this file.
 */
async function readSegments(
  dir: string,
  segs: SegmentInfo[],
  visit: (r: ScannedRecord, file: string) => void,
): Promise<{ metadata: Uint8Array | undefined; last: LastSegmentState }> {
  let metadata: Uint8Array | undefined;
  let chain: number | undefined;
  let last: LastSegmentState | undefined;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    const file = path.join(dir, seg.name);
    if (i > 0 && seg.seq !== segs[i - 1]!.seq + 1) {
      throw new ErrWalCorrupt(file, 0, `missing segment(s) between sequence ${segs[i - 1]!.seq} and ${seg.seq}`);
    }
    const { buf, fileBytes } = await readSegmentBytes(file);
    const isLast = i === segs.length - 1;
    const chainBefore = chain;
    let scan;
    try {
      scan = scanSegment(buf, chain, (r) => {
        if (r.type === RecordType.Metadata) {
          const m = decodeMetadata(r.buf, r.payloadStart, r.payloadEnd);
          if (metadata !== undefined && Buffer.compare(Buffer.from(metadata), Buffer.from(m)) !== 0) {
            throw new ErrWalCorrupt(file, r.offsetBytes, "metadata record differs from an earlier one");
          }
          metadata = m;
          return;
        }
        visit(r, file);
      });
    } catch (e) {
      if (e instanceof SegmentChainError) throw new ErrWalCorrupt(file, e.offsetBytes, e.message);
      throw e;
    }
    let torn: LastSegmentState["torn"];
    if (scan.stop.kind !== "eof") {
      const offsetBytes = scan.goodEndBytes;
      const reason = scan.stop.kind === "damage" ? scan.stop.reason : "zero-filled frame header";
      if (!isLast) {
        throw new ErrWalCorrupt(file, offsetBytes, `${reason} (in a sealed segment; newer segments follow)`);
      }
      const evidence = classifyDamage(buf, offsetBytes, buf.length);
      if (evidence.syncedProofAt >= 0) {
        throw new ErrWalCorrupt(
          file,
          offsetBytes,
          `${reason}; these bytes had been fsynced (sync mark at offset ${evidence.syncedProofAt})`,
        );
      }
      if (evidence.validAt >= 0 && evidence.zeroSectorAt < 0) {
        throw new ErrWalCorrupt(file, offsetBytes, `${reason}; a valid record follows at offset ${evidence.validAt}`);
      }
      // Either nothing valid follows, or what follows was never proven durable and the damage
      // has the shape of a write that did not reach the disk (a never-written, zero sector).
      if (scan.stop.kind === "damage" || evidence.validAt >= 0) {
        torn = {
          offsetBytes,
          reason:
            evidence.validAt >= 0
              ? `${reason}; unwritten sector at ${evidence.zeroSectorAt}, unsynced records from ${evidence.validAt} dropped`
              : reason,
        };
      }
    }
    chain = scan.chain;
    if (isLast) {
      const tailIsZero = isZeroRange(buf, scan.goodEndBytes, buf.length);
      last = {
        info: seg,
        path: file,
        fileBytes,
        goodEndBytes: scan.goodEndBytes,
        chain: scan.chain,
        chainBefore,
        tailIsZero,
        torn,
      };
    }
  }
  if (last === undefined) throw new Error("readSegments: no segments");
  return { metadata, last };
}

/** Bytes of deferred saves held in memory at most; past this they are written (unsynced). */
export const DEFERRED_BYTES_MAX = 64 * 1024;
/**
 * How a save is written (see WalLog.save and the header). `sync`: durable before the save
 * resolves. `deferred` (without sync): may wait in the process for the log's next write.
 * `inline` (with sync): the synced write may be made on the calling thread.
 */
export interface WalSaveOptions {
  sync: boolean;
  deferred?: boolean;
  inline?: boolean;
}

/** The largest synced write made inline (on the calling thread) when every save in it asked so. */
export const INLINE_BYTES_MAX = 64 * 1024;

type QueueItem =
  | { kind: "write"; serial: number; bytes: Buffer; deferred: boolean; inline: boolean }
  | { kind: "cut"; serial: number; seq: number; firstIndex: number; header: Buffer };

interface Waiter {
  serial: number;
  sync: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Tail {
  info: SegmentInfo;
  path: string;
  fh: FileHandle;
  /** The same file opened for synced appends; opened by the first synced write. */
  synced: SyncedAppendFile | undefined;
}

function openSyncedAppend(filePath: string): Promise<SyncedAppendFile> {
  return fsp.open(filePath, fsConstants.O_WRONLY | fsConstants.O_DSYNC);
}

export class Wal {
  // Encode-time state (advanced synchronously by save/saveSnapshot, in call order).
  private encodeChain: number;
  private encodedOffsetBytes: number;
  private lastIndex: number;
  private hardState: HardState;
  private nextSeq: number;
  private serial = 0;

  // I/O-time state (advanced by the writer loop).
  private offsetBytes: number;
  /** Offset in the current segment up to which an fsync has completed. */
  private syncedOffsetBytes: number;
  /**
   * The bytes of [syncedOffsetBytes, offsetBytes), in order, as written; undefined once more than
   * rewriteBytesMax went unsynced (the next sync is then an fdatasync).
   */
  private unsynced: Buffer[] | undefined = [];
  private unsyncedBytes = 0;
  /** Deferred saves' bytes not yet written, in order (see DEFERRED_BYTES_MAX). */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private writtenSerial = 0;
  private syncedSerial = 0;
  private readonly queue: QueueItem[] = [];
  private waiters: Waiter[] = [];
  private running = false;
  private failure: ErrWalFailed | undefined;
  private closing = false;
  private closed = false;
  private readonly pipeline: FilePipeline;
  private readonly counters = {
    writes: 0,
    bytesWritten: 0,
    fsyncs: 0,
    fsyncMsTotal: 0,
    rewrittenBytes: 0,
    fdatasyncs: 0,
    cuts: 0,
  };

  private constructor(
    private readonly dir: string,
    private readonly opts: ResolvedOptions,
    private readonly lock: DirLock,
    private readonly metadata: Uint8Array,
    private segments: SegmentInfo[],
    private tail: Tail,
    state: { offsetBytes: number; chain: number; lastIndex: number; hardState: HardState },
  ) {
    this.offsetBytes = state.offsetBytes;
    this.syncedOffsetBytes = state.offsetBytes;
    this.encodedOffsetBytes = state.offsetBytes;
    this.encodeChain = state.chain;
    this.lastIndex = state.lastIndex;
    this.hardState = state.hardState;
    this.nextSeq = tail.info.seq + 1;
    this.pipeline = new FilePipeline(dir, opts.segmentSizeBytes, opts.preallocation);
    this.pipeline.start();
  }

  /** Whether `dir` holds at least one segment. */
  static exists(dir: string): boolean {
    if (!existsSync(dir)) return false;
    try {
      return readdirSync(dir).some((n) => SEGMENT_NAME.test(n));
    } catch {
      return false;
    }
  }

  /**
   * Creates a new log in `dir` (which must not hold one; it may be missing or empty) with
   * `metadata` stored in every segment, and opens it for appending. The first segment is written
   * in `<dir>.tmp` and renamed into place, so a crash leaves either no log or a complete one.
   * Throws ErrWalExists.
   */
  static async create(dir: string, metadata: Uint8Array, options?: WalOptions): Promise<Wal> {
    const opts = resolveOptions(options);
    if (Wal.exists(dir)) throw new ErrWalExists(dir);
    const tmpDir = `${dir}.tmp`;
    await fsp.rm(tmpDir, { recursive: true, force: true });
    await fsp.mkdir(tmpDir, { recursive: true });
    const b = new FrameBuilder(0);
    b.reserve(CRC_PAYLOAD_BYTES);
    b.reserve(metadata.length);
    b.reserve(snapshotPayloadBytes({ index: 0, term: 0 }));
    b.addCrc(0);
    b.addMetadata(metadata);
    b.addSnapshot({ index: 0, term: 0 });
    const header = b.finish();
    const fh = await fsp.open(path.join(tmpDir, segmentName(0, 0)), "w+");
    try {
      await writevAll(fh, [header], 0);
      await preallocate(fh, header.length, opts.segmentSizeBytes, opts.preallocation);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(tmpDir);
    await fsp.mkdir(path.dirname(path.resolve(dir)), { recursive: true });
    try {
      await fsp.rename(tmpDir, dir);
    } catch (e) {
      if (isErrno(e, "ENOTEMPTY") || isErrno(e, "EEXIST")) {
        throw new Error(`wal: cannot create in ${dir}: the directory exists and is not empty`);
      }
      throw e;
    }
    await fsyncDir(path.dirname(path.resolve(dir)));
    opts.logger.info("wal: created", { dir, segmentSizeBytes: opts.segmentSizeBytes });
    const { wal } = await Wal.open(dir, { index: 0, term: 0 }, options);
    return wal;
  }

  /**
   * Opens for appending after reading everything after `from` (a snapshot marker); repairs a torn
   * tail. Returns the metadata, the last HardState (all zero if none was saved) and the entries
   * with index > from.index (later records for an index replace earlier ones; the array is the
   * caller's). Throws ErrWalLocked, ErrWalNotFound, ErrSnapshotNotFound, ErrSnapshotMismatch,
   * ErrWalCorrupt (nothing is modified then).
   */
  static async open(
    dir: string,
    from: { index: number; term: number },
    options?: WalOptions,
  ): Promise<{ wal: Wal; metadata: Uint8Array; hardState: HardState; entries: Entry[] }> {
    const opts = resolveOptions(options);
    if (!existsSync(dir)) throw new ErrWalNotFound(dir, "no directory");
    const lock = await acquireDirLock(dir, LOCK_FILE_NAME, (pid) =>
      opts.logger.warn("wal: taking over a stale lock", { dir, holderPid: pid }),
    );
    let fh: FileHandle | undefined;
    try {
      for (const n of await fsp.readdir(dir)) {
        if (n.endsWith(".tmp")) await fsp.rm(path.join(dir, n), { force: true });
      }
      const segments = await listSegments(dir);
      if (segments.length === 0) throw new ErrWalNotFound(dir, "no segments");
      let start = -1;
      for (let i = 0; i < segments.length; i++) if (segments[i]!.firstIndex <= from.index) start = i;
      if (start < 0) throw new ErrWalNotFound(dir, `no segment can hold index ${from.index}`);

      const replay = new WalReplay(from);
      const { metadata, last } = await readSegments(dir, segments.slice(start), (r, file) => {
        switch (r.type) {
          case RecordType.Entry:
            replay.entry(decodeEntry(r.buf, r.payloadStart, r.payloadEnd), file, r.offsetBytes);
            break;
          case RecordType.HardState:
            replay.hardStateRecord(decodeHardState(r.buf, r.payloadStart, r.payloadEnd));
            break;
          case RecordType.Snapshot:
            replay.snapshot(decodeSnapshot(r.buf, r.payloadStart, r.payloadEnd));
            break;
          default:
            break;
        }
      });
      if (metadata === undefined) throw new ErrWalCorrupt(path.join(dir, segments[start]!.name), 0, "no metadata record");
      if (!replay.matched) throw new ErrSnapshotNotFound(from.index, from.term);
      const { hardState, entries } = replay;

      // Make the newest segment appendable.
      fh = await fsp.open(last.path, "r+");
      let offsetBytes = last.goodEndBytes;
      let chain = last.chain;
      let sizeBytes = last.fileBytes;
      if (last.torn !== undefined) {
        opts.logger.warn("wal: cutting torn tail", {
          file: last.path,
          offsetBytes: last.torn.offsetBytes,
          reason: last.torn.reason,
          droppedBytes: last.fileBytes - last.goodEndBytes,
        });
      }
      if (!last.tailIsZero) {
        await fh.truncate(offsetBytes);
        sizeBytes = offsetBytes;
      }
      if (offsetBytes === 0) {
        // Nothing of this segment survived (not even its crc record): write its header again.
        if (last.chainBefore === undefined) throw new ErrWalCorrupt(last.path, 0, "no valid record in the only segment");
        const b = new FrameBuilder(last.chainBefore);
        b.reserve(CRC_PAYLOAD_BYTES);
        b.reserve(metadata.length);
        if (!isEmptyHardState(hardState)) b.reserve(hardStatePayloadBytes());
        b.addCrc(last.chainBefore);
        b.addMetadata(metadata);
        if (!isEmptyHardState(hardState)) b.addHardState(hardState);
        const header = b.finish();
        await writevAll(fh, [header], 0);
        offsetBytes = header.length;
        sizeBytes = Math.max(sizeBytes, offsetBytes);
        chain = b.chain;
      }
      await preallocate(fh, sizeBytes, opts.segmentSizeBytes, opts.preallocation);
      await fh.sync();
      const wal = new Wal(dir, opts, lock, metadata, segments, { info: last.info, path: last.path, fh, synced: undefined }, {
        offsetBytes,
        chain,
        lastIndex: Math.max(replay.lastIndex, from.index),
        hardState,
      });
      return { wal, metadata, hardState, entries };
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await lock.release();
      throw e;
    }
  }

  /**
   * The snapshot markers a snapshot may be loaded for (etcd's ValidSnapshotEntries): every marker
   * in the log whose index is at or below the last saved HardState's commit. Reads without locking
   * or repairing; a torn tail is ignored, corruption throws ErrWalCorrupt.
   */
  static async validSnapshotEntries(dir: string): Promise<WalSnapshot[]> {
    const segments = await listSegments(dir);
    if (segments.length === 0) throw new ErrWalNotFound(dir, "no segments");
    const snaps: WalSnapshot[] = [];
    let hardState: HardState = { ...EMPTY_HARD_STATE };
    await readSegments(dir, segments, (r) => {
      if (r.type === RecordType.Snapshot) snaps.push(decodeSnapshot(r.buf, r.payloadStart, r.payloadEnd));
      else if (r.type === RecordType.HardState) hardState = decodeHardState(r.buf, r.payloadStart, r.payloadEnd);
    });
    return validSnapshots(snaps, hardState);
  }

  /**
   * Appends `hardState` (if given and not empty) and `entries`, entries first. With `sync`,
   * resolves once they (and everything saved before) are durable; otherwise after the write
   * reached the OS, or, with `deferred` (and no sync), at once: the bytes may wait in memory for
   * the next write (see the header). Concurrent calls are group-committed. Overwriting an
   * existing index is legal: on read, the later record wins and drops everything after it.
   * With `inline` (and sync), the write may be made before `save` returns (see the header).
   * Rejects with ErrWalClosed, ErrWalFailed, or RangeError (bad numbers; nothing written then).
   */
  save(hardState: HardState | undefined, entries: Entry[], options: WalSaveOptions): Promise<void> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    const writeHardState = hardState !== undefined && !isEmptyHardState(hardState);
    let bytes: Buffer;
    const b = new FrameBuilder(this.encodeChain);
    try {
      for (const e of entries) b.reserve(entryPayloadBytes(e));
      if (writeHardState) b.reserve(hardStatePayloadBytes());
      for (const e of entries) b.addEntry(e);
      if (writeHardState) b.addHardState(hardState);
      bytes = b.finish();
    } catch (e) {
      return Promise.reject(e);
    }
    this.encodeChain = b.chain;
    if (entries.length > 0) this.lastIndex = entries[entries.length - 1]!.index;
    if (writeHardState) this.hardState = { ...hardState };
    return this.enqueue(bytes, options.sync, !options.sync && options.deferred === true, options.sync && options.inline === true);
  }

  /** Appends a snapshot marker and fsyncs. Entries after it continue from `snap.index + 1`. */
  saveSnapshot(snap: { index: number; term: number; confState?: ConfState }): Promise<void> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    const marker: WalSnapshot = { index: snap.index, term: snap.term, confState: snap.confState };
    const b = new FrameBuilder(this.encodeChain);
    let bytes: Buffer;
    try {
      b.reserve(snapshotPayloadBytes(marker));
      b.addSnapshot(marker);
      bytes = b.finish();
    } catch (e) {
      return Promise.reject(e);
    }
    this.encodeChain = b.chain;
    if (snap.index > this.lastIndex) this.lastIndex = snap.index;
    return this.enqueue(bytes, true);
  }

  /**
   * Deletes segments entirely before the one that contains `index` (after a snapshot at `index`,
   * they are no longer needed). The segment being appended to is never deleted.
   */
  async releaseTo(index: number): Promise<void> {
    if (this.closed) throw new ErrWalClosed();
    let keep = -1;
    for (let i = 0; i < this.segments.length; i++) if (this.segments[i]!.firstIndex <= index) keep = i;
    if (keep <= 0) return;
    const doomed = this.segments.slice(0, keep);
    this.segments = this.segments.slice(keep);
    for (const s of doomed) await fsp.rm(path.join(this.dir, s.name), { force: true });
    await fsyncDir(this.dir);
    this.opts.logger.info("wal: released segments", { dir: this.dir, index, removed: doomed.map((s) => s.name) });
  }

  /** Flushes and fsyncs what is queued, then closes files and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closing) {
      while (!this.closed) await new Promise((r) => setTimeout(r, 5));
      return;
    }
    // Refuse new saves first, then let everything already queued reach the disk.
    this.closing = true;
    try {
      if (this.failure === undefined) await this.enqueue(Buffer.alloc(0), true).catch(() => undefined);
    } finally {
      await this.pipeline.stop();
      await this.tail.synced?.close().catch(() => undefined);
      await this.tail.fh.close().catch(() => undefined);
      await this.lock.release();
      this.closed = true;
    }
  }

  /**
   * Where the next frame goes (for diagnostics and tests); exact once all saves have resolved and
   * none of them was deferred (held bytes are not written yet).
   */
  tailPosition(): { path: string; offsetBytes: number } {
    return { path: this.tail.path, offsetBytes: this.offsetBytes };
  }

  /**
   * Counters since open: batches written, bytes appended (each byte once), synced appends (an
   * O_DSYNC write or, past rewriteBytesMax, a writev + fdatasync; cuts not counted) and their
   * total duration (of the O_DSYNC write, or of the fdatasync), bytes the synced writes carried
   * again to cover earlier unsynced ones, how many syncs were fdatasyncs, segment cuts.
   * `writes / fsyncs` > 1 shows group commit at work.
   */
  stats(): {
    writes: number;
    bytesWritten: number;
    fsyncs: number;
    fsyncMsTotal: number;
    rewrittenBytes: number;
    fdatasyncs: number;
    cuts: number;
  } {
    return { ...this.counters };
  }

  /** Names of the segments currently on disk, oldest first. */
  segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }

  private refusal(): Error | undefined {
    if (this.failure !== undefined) return this.failure;
    if (this.closing) return new ErrWalClosed();
    return undefined;
  }

  private enqueue(bytes: Buffer, sync: boolean, deferred = false, inline = false): Promise<void> {
    const serial = ++this.serial;
    this.queue.push({ kind: "write", serial, bytes, deferred, inline });
    // Count a sync mark per non-empty save: an upper bound, as several saves may share one write.
    if (bytes.length > 0) this.encodedOffsetBytes += bytes.length + SYNC_MARK_FRAME_BYTES;
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ serial, sync, resolve, reject }));
    if (this.encodedOffsetBytes >= this.opts.segmentSizeBytes) this.planCut();
    this.kick();
    return done;
  }

  /** Decides a cut at this point of the record stream; the writer loop carries it out in order. */
  private planCut(): void {
    const seq = this.nextSeq++;
    const firstIndex = this.lastIndex + 1;
    const b = new FrameBuilder(this.encodeChain);
    const withHardState = !isEmptyHardState(this.hardState);
    b.reserve(CRC_PAYLOAD_BYTES);
    b.reserve(this.metadata.length);
    if (withHardState) b.reserve(hardStatePayloadBytes());
    b.addCrc(this.encodeChain);
    b.addMetadata(this.metadata);
    if (withHardState) b.addHardState(this.hardState);
    const header = b.finish();
    this.encodeChain = b.chain;
    this.encodedOffsetBytes = header.length;
    this.queue.push({ kind: "cut", serial: ++this.serial, seq, firstIndex, header });
  }

  private kick(): void {
    if (this.running || this.failure !== undefined) return;
    this.running = true;
    void this.writeLoop();
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const bufs = this.held;
        let bytes = this.heldBytes;
        this.held = [];
        this.heldBytes = 0;
        let serial = this.writtenSerial;
        let allDeferred = true;
        let allInline = true;
        while (this.queue.length > 0 && this.queue[0]!.kind === "write") {
          const item = this.queue.shift() as Extract<QueueItem, { kind: "write" }>;
          if (item.bytes.length > 0) bufs.push(item.bytes);
          bytes += item.bytes.length;
          if (!item.deferred) allDeferred = false;
          if (!item.inline && !item.deferred) allInline = false;
          serial = item.serial;
        }
        if (allDeferred && this.queue.length === 0 && bytes <= DEFERRED_BYTES_MAX) {
          // Only deferred saves, no cut behind them: hold their bytes for the next write.
          this.held = bufs;
          this.heldBytes = bytes;
          this.writtenSerial = serial;
          this.settleWaiters();
          continue;
        }
        if (bufs.length > 0) {
          // Every write starts with a sync mark saying how far this segment is already durable.
          const mark = new FrameBuilder(0);
          mark.reserve(8);
          mark.addSyncMark(this.syncedOffsetBytes);
          bufs.unshift(mark.finish());
        }
        const head = this.queue[0];
        const cutNext = head !== undefined && head.kind === "cut";
        // Decided before writing: a batch a cut follows is made durable by the cut's fsync.
        const sync = !cutNext && this.syncWantedThrough(serial);
        if (sync) await this.writeSynced(bufs, allInline && bytes <= INLINE_BYTES_MAX);
        else if (bufs.length > 0) await this.writeUnsynced(bufs);
        this.writtenSerial = serial;
        if (sync) this.syncedSerial = serial;
        if (cutNext) {
          this.queue.shift();
          await this.cut(head);
          this.writtenSerial = head.serial;
          this.syncedSerial = head.serial;
        }
        this.settleWaiters();
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.running = false;
    }
  }

  /** Appends `bufs` through the ordinary handle and keeps them for the next synced write. */
  private async writeUnsynced(bufs: Buffer[]): Promise<void> {
    const n = await writevAll(this.tail.fh, bufs, this.offsetBytes);
    this.appended(n);
    if (this.unsynced !== undefined && this.unsyncedBytes + n <= this.opts.rewriteBytesMax) {
      this.unsynced.push(...bufs);
      this.unsyncedBytes += n;
    } else {
      this.unsynced = undefined;
      this.unsyncedBytes = 0;
    }
  }

  /**
   * Appends `bufs` (possibly none) and makes [syncedOffsetBytes, end) durable: one O_DSYNC write
   * from syncedOffsetBytes carrying the kept unsynced bytes again, or writev + fdatasync when they
   * were not all kept.
   */
  private async writeSynced(bufs: Buffer[], inline: boolean): Promise<void> {
    let newBytes = 0;
    for (const b of bufs) newBytes += b.length;
    if (newBytes === 0 && this.syncedOffsetBytes === this.offsetBytes) return;
    let ms: number;
    if (this.unsynced !== undefined) {
      if (this.syncedOffsetBytes + this.unsyncedBytes !== this.offsetBytes) {
        throw new Error(
          `wal: kept ${this.unsyncedBytes} unsynced bytes, but [${this.syncedOffsetBytes}, ${this.offsetBytes}) is unsynced`,
        );
      }
      this.tail.synced ??= await this.opts.openSyncedAppend(this.tail.path);
      const all = this.unsyncedBytes > 0 ? [Buffer.concat(this.unsynced, this.unsyncedBytes), ...bufs] : bufs;
      const t0 = performance.now();
      const fd = this.tail.synced.fd;
      if (inline && fd !== undefined) writevAllSync(fd, all, this.syncedOffsetBytes);
      else await writevAll(this.tail.synced, all, this.syncedOffsetBytes);
      ms = performance.now() - t0;
      this.counters.rewrittenBytes += this.unsyncedBytes;
      if (newBytes > 0) this.appended(newBytes);
    } else {
      if (newBytes > 0) this.appended(await writevAll(this.tail.fh, bufs, this.offsetBytes));
      const t0 = performance.now();
      await this.tail.fh.datasync();
      ms = performance.now() - t0;
      this.counters.fdatasyncs++;
    }
    this.counters.fsyncs++;
    this.counters.fsyncMsTotal += ms;
    this.opts.observer?.observeFsyncSeconds(ms / 1000);
    this.syncedOffsetBytes = this.offsetBytes;
    this.unsynced = [];
    this.unsyncedBytes = 0;
  }

  private appended(n: number): void {
    this.offsetBytes += n;
    this.counters.writes++;
    this.counters.bytesWritten += n;
    this.opts.observer?.addWrittenBytes(n);
  }

  /** Whether a caller waiting on a save up to `serial` (and not yet synced) asked for sync. */
  private syncWantedThrough(serial: number): boolean {
    for (const w of this.waiters) {
      if (w.sync && w.serial <= serial && w.serial > this.syncedSerial) return true;
    }
    return false;
  }

  private settleWaiters(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.serial <= (w.sync ? this.syncedSerial : this.writtenSerial)) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private async cut(item: Extract<QueueItem, { kind: "cut" }>): Promise<void> {
    const old = this.tail;
    await old.fh.truncate(this.offsetBytes);
    await old.fh.sync();
    const prepared = await this.pipeline.take();
    const info: SegmentInfo = { seq: item.seq, firstIndex: item.firstIndex, name: segmentName(item.seq, item.firstIndex) };
    const finalPath = path.join(this.dir, info.name);
    try {
      await writevAll(prepared.fh, [item.header], 0);
      await prepared.fh.datasync();
      await fsp.rename(prepared.path, finalPath);
      await fsyncDir(this.dir);
    } catch (e) {
      await prepared.fh.close().catch(() => undefined);
      throw e;
    }
    await old.synced?.close();
    await old.fh.close();
    this.tail = { info, path: finalPath, fh: prepared.fh, synced: undefined };
    this.offsetBytes = item.header.length;
    this.syncedOffsetBytes = item.header.length;
    this.unsynced = [];
    this.unsyncedBytes = 0;
    this.segments.push(info);
    this.counters.cuts++;
    this.opts.logger.info("wal: cut to new segment", { file: finalPath, previous: old.path });
  }

  private fail(e: unknown): void {
    this.failure = e instanceof ErrWalFailed ? e : new ErrWalFailed(e);
    this.opts.logger.warn("wal: write failed; refusing further writes", { dir: this.dir, error: String(e) });
    this.queue.length = 0;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(this.failure);
  }
}
