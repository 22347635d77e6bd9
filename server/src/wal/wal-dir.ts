/**
 * The write-ahead log as its users see it: `WalDir`, the place a member's log lives (bootstrap
 * asks whether a log exists, creates one, or opens it after the snapshot it restarts from), and
 * `WalLog`, the open log the Ready loop appends to. `FsWalDir` is a directory on disk (wal.ts);
 * `MemoryWalDir` (memory-wal.ts) keeps the log in memory for simulations.
 *
 * Both follow wal.ts's rules: records are read back in write order; an entry replaces the entry
 * at its index and everything after it; the last HardState wins; a log is opened from one of its
 * snapshot markers and returns only the entries after it (wal-replay.ts).
 */
import { existsSync } from "node:fs";
import type { ConfState, Entry, HardState } from "../raft/types.js";
import { ErrWalNotFound } from "./errors.js";
import type { WalSnapshot } from "./record-codec.js";
import { Wal, type WalOptions, type WalSaveOptions } from "./wal.js";

/** An open write-ahead log. Only one is open per WalDir at a time. */
export interface WalLog {
  /**
   * Appends `entries`, then `hardState` (if given and not all zero). With `sync`, resolves once
   * they and everything saved before are durable; without, once they would survive the process
   * (not a power loss). With `deferred` (and no sync), at once: the records may wait in the
   * process for the log's next write (at most DEFERRED_BYTES_MAX of them), so a process crash can
   * lose them as a power loss loses unsynced ones. With `inline` (and sync), the synced write may
   * be made on the calling thread before `save` returns. Saves are ordered by call. Rejects with
   * ErrWalClosed after close, ErrWalFailed after an I/O failure (the log must be reopened),
   * RangeError for numbers the format cannot hold (nothing saved then).
   */
  save(hardState: HardState | undefined, entries: Entry[], options: WalSaveOptions): Promise<void>;
  /** Appends a snapshot marker, durably. Later entries continue from `snap.index + 1`. */
  saveSnapshot(snap: { index: number; term: number; confState?: ConfState }): Promise<void>;
  /**
   * Drops log storage wholly before the part that holds `index` (after a snapshot at `index` the
   * log needs nothing older); what is being appended to is kept. A later open must start from a
   * marker at or after what was kept.
   */
  releaseTo(index: number): Promise<void>;
  /** Makes everything saved durable, then releases the log. Idempotent. */
  close(): Promise<void>;
}

/** What opening a log yields. `entries` (index > the marker's) and the objects are the caller's. */
export interface OpenedWal<L extends WalLog = WalLog> {
  wal: L;
  /** The metadata given to `create`. */
  metadata: Uint8Array;
  /** The last HardState saved (all zero if none). */
  hardState: HardState;
  entries: Entry[];
}

/** Where a member's write-ahead log lives. */
export interface WalDir {
  /** Whether a log exists here. */
  exists(): boolean;
  /** Creates a log holding `metadata` and opens it. Rejects with ErrWalExists when one exists. */
  create(metadata: Uint8Array): Promise<WalLog>;
  /**
   * Opens the log for appending from the snapshot marker `from` ({0, 0} for a log without
   * snapshots), cutting a torn tail. Rejects with ErrWalLocked (already open), ErrWalNotFound (no
   * log, or none of it can hold `from.index`), ErrSnapshotNotFound, ErrSnapshotMismatch,
   * ErrWalCorrupt; nothing is modified then.
   */
  open(from: { index: number; term: number }): Promise<OpenedWal>;
  /**
   * The snapshot markers a snapshot may be loaded for: those at or below the last HardState's
   * commit. Reads without opening; a torn tail is ignored. Rejects with ErrWalNotFound,
   * ErrWalCorrupt.
   */
  validSnapshotEntries(): Promise<WalSnapshot[]>;
}

export interface FsWalDirOptions {
  /** The log's directory (etcd: <data-dir>/member/wal, or --wal-dir). */
  dir: string;
  /** Passed to every Wal opened or created here. */
  wal?: WalOptions;
}

/** A WalDir on the filesystem: wal.ts's Wal in one directory. */
export class FsWalDir implements WalDir {
  readonly dir: string;
  private readonly walOptions: WalOptions | undefined;

  constructor(options: FsWalDirOptions) {
    this.dir = options.dir;
    this.walOptions = options.wal;
  }

  exists(): boolean {
    return Wal.exists(this.dir);
  }

  create(metadata: Uint8Array): Promise<Wal> {
    return Wal.create(this.dir, metadata, this.walOptions);
  }

  open(from: { index: number; term: number }): Promise<OpenedWal<Wal>> {
    return Wal.open(this.dir, from, this.walOptions);
  }

  async validSnapshotEntries(): Promise<WalSnapshot[]> {
    if (!existsSync(this.dir)) throw new ErrWalNotFound(this.dir, "no directory");
    return Wal.validSnapshotEntries(this.dir);
  }
}
