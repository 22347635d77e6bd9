/**
 * The Raft core's read-only view of stable storage, and an in-memory implementation.
 *
 * The core reads stable entries through `Storage` and never writes it: the driver persists what a
 * Ready hands it (hardState, entries, snapshot) and then mirrors it into its Storage (for example
 * MemoryStorage.append) before calling advance().
 */
import type { ConfState, Entry, HardState, Snapshot } from "./types.js";
import { invariant, limitSize } from "./util.js";

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
 * Storage kept in memory. `ents[0]` is a dummy entry carrying the snapshot's index and term, so
 * `ents[i]` has index `ents[0].index + i`.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  private snap: Snapshot = emptySnapshot();
  private ents: Entry[] = [{ term: 0, index: 0, type: 0, data: new Uint8Array(0) }];

  initialState(): { hardState: HardState; confState: ConfState } {
    const cs = this.snap.metadata.confState;
    return { hardState: { ...this.hardState }, confState: { voters: [...cs.voters], learners: [...cs.learners] } };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new ErrCompacted();
    if (hi > this.lastIndex() + 1) throw new ErrUnavailable(`entries' hi(${hi}) is out of bound lastindex(${this.lastIndex()})`);
    invariant(lo <= hi, () => `entries: lo ${lo} > hi ${hi}`);
    // Only the dummy entry: nothing stored.
    if (this.ents.length === 1) throw new ErrUnavailable();
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSizeBytes);
  }

  term(index: number): number {
    const offset = this.offset();
    if (index < offset) throw new ErrCompacted();
    if (index - offset >= this.ents.length) throw new ErrUnavailable();
    return this.ents[index - offset]!.term;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replace the storage's contents with `snap` (entries are discarded). */
  applySnapshot(snap: Snapshot): void {
    if (this.snap.metadata.index >= snap.metadata.index) throw new ErrSnapOutOfDate();
    this.snap = snap;
    this.ents = [{ term: snap.metadata.term, index: snap.metadata.index, type: 0, data: new Uint8Array(0) }];
  }

  /**
   * Record a snapshot at `index` (which must be <= lastIndex and newer than the current snapshot),
   * for example after the state machine wrote its image. Does not compact; call compact() too.
   */
  createSnapshot(index: number, confState: ConfState | undefined, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) throw new ErrSnapOutOfDate();
    const offset = this.offset();
    invariant(index <= this.lastIndex(), () => `snapshot ${index} is out of bound lastindex(${this.lastIndex()})`);
    const md = this.snap.metadata;
    this.snap = {
      metadata: {
        index,
        term: this.ents[index - offset]!.term,
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
    const i = compactIndex - offset;
    const dummy: Entry = { term: this.ents[i]!.term, index: this.ents[i]!.index, type: 0, data: new Uint8Array(0) };
    this.ents = [dummy, ...this.ents.slice(i + 1)];
  }

  /**
   * Append entries, which must be contiguous. Entries that overlap stored ones replace them (and
   * everything after); entries at or below the snapshot index are ignored.
   */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return;
    if (first > entries[0]!.index) entries = entries.slice(first - entries[0]!.index);
    const offset = entries[0]!.index - this.offset();
    if (this.ents.length > offset) {
      this.ents = this.ents.slice(0, offset).concat(entries);
    } else if (this.ents.length === offset) {
      for (const e of entries) this.ents.push(e);
    } else {
      invariant(false, () => `missing log entry [last: ${this.lastIndex()}, append at: ${entries[0]!.index}]`);
    }
  }
}
