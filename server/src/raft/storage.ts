/**
 * The Raft core's read-only view of stable storage, and an in-memory implementation.
 *
 * The core reads stable entries through `Storage` and never writes it: the driver persists what a
 * Ready hands it (hardState, entries, snapshot) and then mirrors it into its Storage (for example
 * MemoryStorage.append) before calling advance().
 */
import type { ConfState, Entry, HardState, Snapshot } from "./types.js";
import { PackedEntries } from "./packed-entries.js";
import { ENTRY_HEADER_BYTES, invariant } from "./util.js";

/** The requested index is older than the storage's first index: it was compacted away. */
export class ErrCompacted extends Error {
  override name = "ErrCompacted";
  constructor(message = "requested index is unavailable due to compaction") { super(message); }
}
/** The requested index is beyond the storage's last index. */
export class ErrUnavailable extends Error {
  override name = "ErrUnavailable";
  constructor(message = "requested entry at index is unavailable") { super(message); }
}
/** The snapshot is being prepared; the caller should retry later (the leader keeps probing). */
export class ErrSnapshotTemporarilyUnavailable extends Error {
  override name = "ErrSnapshotTemporarilyUnavailable";
  constructor(message = "snapshot is temporarily unavailable") { super(message); }
}
/** createSnapshot/applySnapshot with an index not newer than the current snapshot. */
export class ErrSnapOutOfDate extends Error {
  override name = "ErrSnapOutOfDate";
  constructor(message = "requested index is older than the existing snapshot") { super(message); }
}

export interface Storage {
  /** The persisted HardState and ConfState (from the last snapshot plus applied conf changes). */
  initialState(): { hardState: HardState; confState: ConfState };
  /**
   * Entries in [lo, hi), cut to at most `maxSizeBytes` in total but at least one entry when the
   * range is non-empty. Throws ErrCompacted if lo <= the snapshot index, ErrUnavailable if
   * hi > lastIndex() + 1. The returned array must not be mutated by the caller.
   */
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[];
  /**
   * Term of the entry at `index`, for index in [firstIndex()-1, lastIndex()] (the entry just
   * before firstIndex is the snapshot's). Throws ErrCompacted below, ErrUnavailable above.
   */
  term(index: number): number;
  /** Index of the first entry still available (snapshot index + 1). */
  firstIndex(): number;
  /** Index of the last entry. */
  lastIndex(): number;
  /** The most recent snapshot. May throw ErrSnapshotTemporarilyUnavailable. */
  snapshot(): Snapshot;
}

function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: new Uint8Array(0) };
}

/**
 * Stored entries kept as objects besides their packed form, at most: the newest ones, which
 * raft reads back once more when they commit (see MemoryStorage.releaseEntries).
 */
const MAX_RECENT_ENTRIES = 8192;

/**
 * Storage kept in memory. Entries after the snapshot are packed (see PackedEntries: payload bytes
 * plus 21 bytes each); the entry at the snapshot's index is represented by its index and term.
 *
 * The objects of the newest entries appended are also kept until `releaseEntries` passes them
 * (at most MAX_RECENT_ENTRIES): reading them back then returns the very objects appended, so a
 * reader that recognises its own payloads by identity (the proposer's decoded requests) still
 * does when an entry commits after it was persisted.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  private snap: Snapshot = emptySnapshot();
  /** Term of the entry at the packed run's base index (the snapshot's, or the compaction point's). */
  private baseTerm = 0;
  private readonly packed = new PackedEntries(0);
  /** The appended objects of the entries at [recentFrom, recentFrom + recent.length). */
  private recent: Entry[] = [];
  private recentFrom = 1;

  initialState(): { hardState: HardState; confState: ConfState } {
    const cs = this.snap.metadata.confState;
    return { hardState: { ...this.hardState }, confState: { voters: [...cs.voters], learners: [...cs.learners] } };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): number {
    return this.packed.baseIndex;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new ErrCompacted();
    if (hi > this.lastIndex() + 1) throw new ErrUnavailable(`entries' hi(${hi}) is out of bound lastindex(${this.lastIndex()})`);
    invariant(lo <= hi, () => `entries: lo ${lo} > hi ${hi}`);
    // Nothing stored.
    if (this.packed.length === 0) throw new ErrUnavailable();
    // As limitSize: at least one entry, then as many as fit in maxSizeBytes.
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      size += this.packed.sizeAt(i) + ENTRY_HEADER_BYTES;
      if (out.length > 0 && size > maxSizeBytes) break;
      const r = i - this.recentFrom;
      out.push(r >= 0 && r < this.recent.length ? this.recent[r]! : this.packed.entryAt(i));
    }
    return out;
  }

  term(index: number): number {
    const offset = this.offset();
    if (index < offset) throw new ErrCompacted();
    if (index > this.packed.lastIndex) throw new ErrUnavailable();
    return index === offset ? this.baseTerm : this.packed.termAt(index);
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.packed.lastIndex;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replace the storage's contents with `snap` (entries are discarded). */
  applySnapshot(snap: Snapshot): void {
    if (this.snap.metadata.index >= snap.metadata.index) throw new ErrSnapOutOfDate();
    this.snap = snap;
    this.baseTerm = snap.metadata.term;
    this.packed.reset(snap.metadata.index);
    this.recent = [];
    this.recentFrom = snap.metadata.index + 1;
  }

  /**
   * Record a snapshot at `index` (which must be <= lastIndex and newer than the current snapshot),
   * for example after the state machine wrote its image. Does not compact; call compact() too.
   */
  createSnapshot(index: number, confState: ConfState | undefined, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) throw new ErrSnapOutOfDate();
    invariant(index <= this.lastIndex(), () => `snapshot ${index} is out of bound lastindex(${this.lastIndex()})`);
    const md = this.snap.metadata;
    this.snap = {
      metadata: {
        index,
        term: this.term(index),
        confState: confState ? { voters: [...confState.voters], learners: [...confState.learners] } : md.confState,
      },
      data,
    };
    return this.snap;
  }

  /** Discard entries before `compactIndex` (it becomes the dummy). Throws ErrCompacted if already gone. */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) throw new ErrCompacted();
    invariant(compactIndex <= this.lastIndex(), () => `compact ${compactIndex} is out of bound lastindex(${this.lastIndex()})`);
    this.baseTerm = this.packed.termAt(compactIndex);
    this.packed.dropThrough(compactIndex);
    this.releaseEntries(compactIndex);
  }

  /**
   * Append entries, which must be contiguous. Entries that overlap stored ones replace them (and
   * everything after); entries at or below the snapshot index are ignored. The payloads are
   * copied; the objects are kept as recent entries (see the class comment).
   */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return;
    if (first > entries[0]!.index) entries = entries.slice(first - entries[0]!.index);
    const at = entries[0]!.index;
    invariant(at <= this.lastIndex() + 1, () => `missing log entry [last: ${this.lastIndex()}, append at: ${at}]`);
    if (at <= this.lastIndex()) {
      this.packed.truncateAfter(at - 1);
      if (at < this.recentFrom) {
        this.recent = [];
        this.recentFrom = at;
      } else {
        this.recent.length = at - this.recentFrom;
      }
    }
    if (this.recent.length === 0) this.recentFrom = at;
    for (const e of entries) {
      this.packed.push(e);
      this.recent.push(e);
    }
    const over = this.recent.length - MAX_RECENT_ENTRIES;
    if (over > 0) this.releaseEntries(this.recentFrom + over - 1);
  }

  /**
   * Forget the appended objects of the entries up to `index` (the driver calls it once raft has
   * read them as committed); they are still read back, as new objects with the same bytes.
   */
  releaseEntries(index: number): void {
    const n = Math.min(index + 1 - this.recentFrom, this.recent.length);
    if (n <= 0) return;
    this.recent = n === this.recent.length ? [] : this.recent.slice(n);
    this.recentFrom += n;
  }

  /** Entries held, and the bytes of their packed payloads (for tests and measurements). */
  footprint(): { entries: number; payloadChunkBytes: number; recentEntries: number } {
    return { entries: this.packed.length, payloadChunkBytes: this.packed.chunkBytes, recentEntries: this.recent.length };
  }
}
