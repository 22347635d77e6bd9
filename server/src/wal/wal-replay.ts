/**
 * What reading a log back yields, record by record: the rules every WAL implementation replays
 * by, so that they agree. Feed the records in log order (from the segment that can hold the
 * snapshot marker opened from), then check `matched`.
 *  - An entry above the snapshot index replaces the entry at its index and drops everything after
 *    it; one that would leave a gap is corruption. An entry at or below the snapshot index is not
 *    kept, but still drops every entry read before it (all of them come after it). (etcd 3.4's
 *    ReadAll skips such entries without dropping: a follower whose log a new leader truncated,
 *    then snapshotted, would get the overwritten entries back after the snapshot.)
 *  - The last HardState read wins (all zero if none).
 *  - The marker at the snapshot index must carry the snapshot's term.
 */
import type { Entry, HardState } from "../raft/types.js";
import { ErrSnapshotMismatch, ErrWalCorrupt } from "./errors.js";
import type { WalSnapshot } from "./record-codec.js";

export class WalReplay {
  /** Entries with index > from.index, in order (the array is handed to the caller of open). */
  readonly entries: Entry[] = [];
  hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  /** Whether the marker of the snapshot opened from was read. */
  matched = false;
  /** Index of the last entry read, or of a later marker: where appending continues. */
  lastIndex = 0;

  constructor(private readonly from: { index: number; term: number }) {}

  /** An entry record; `file` and `offsetBytes` locate it for the corruption error. */
  entry(e: Entry, file: string, offsetBytes: number): void {
    const from = this.from;
    if (e.index > from.index) {
      const up = e.index - from.index - 1;
      if (up > this.entries.length) {
        throw new ErrWalCorrupt(file, offsetBytes, `entry ${e.index} leaves a gap after index ${from.index + this.entries.length}`);
      }
      this.entries.length = up;
      this.entries.push(e);
    } else {
      // Every entry read so far is above the snapshot index, so after this one: a record
      // supersedes all earlier ones at or after its index (a follower's log truncated by a new
      // leader, whose entries reached the snapshot marker before the replay started).
      this.entries.length = 0;
    }
    this.lastIndex = e.index;
  }

  hardStateRecord(hs: HardState): void {
    this.hardState = hs;
  }

  /** A snapshot marker; throws ErrSnapshotMismatch for the opened index with another term. */
  snapshot(s: WalSnapshot): void {
    if (s.index === this.from.index) {
      if (s.term !== this.from.term) throw new ErrSnapshotMismatch(this.from.index, this.from.term, s.term);
      this.matched = true;
    }
    // As when writing: entries after a marker continue from its index.
    if (s.index > this.lastIndex) this.lastIndex = s.index;
  }
}

/** The markers a snapshot may be loaded for: those at or below the last HardState's commit. */
export function validSnapshots(markers: WalSnapshot[], lastHardState: HardState): WalSnapshot[] {
  return markers.filter((s) => s.index <= lastHardState.commit);
}
