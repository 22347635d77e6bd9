/**
 * The Raft log as one member sees it: stable entries (read through Storage) followed by the
 * unstable tail, plus the commit and apply cursors.
 *
 * Invariants (checked, crash on violation): applied <= applying <= committed <= lastIndex, and
 * firstIndex - 1 <= applied.
 */
import type { Entry, Snapshot } from "./types.js";
import { ErrCompacted, ErrUnavailable, type Storage } from "./storage.js";
import { UnstableLog } from "./log-unstable.js";
import { invariant, limitSize } from "./util.js";

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: UnstableLog;
  /** Highest index known to be committed by a quorum. */
  committed: number;
  /** Highest index the driver reported applied (advance()). */
  applied: number;
  /** Highest index handed to the driver for applying (ready()). */
  applying: number;
  /** Size limit for committed entries handed out in one Ready. */
  readonly maxApplyingEntsSizeBytes: number;

  constructor(storage: Storage, maxApplyingEntsSizeBytes: number) {
    this.storage = storage;
    this.maxApplyingEntsSizeBytes = maxApplyingEntsSizeBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new UnstableLog(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
    this.applying = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /**
   * Term of entry `i`. Throws ErrCompacted if i < firstIndex - 1, ErrUnavailable if i > lastIndex.
   */
  term(i: number): number {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    const dummy = this.firstIndex() - 1;
    if (i < dummy) throw new ErrCompacted();
    if (i > this.lastIndex()) throw new ErrUnavailable();
    return this.storage.term(i);
  }

  /** Term of entry `i`, or undefined when it is compacted or beyond the log (no exception: hot path). */
  maybeTerm(i: number): number | undefined {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    if (i < this.firstIndex() - 1 || i > this.lastIndex()) return undefined;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof ErrCompacted || e instanceof ErrUnavailable) return undefined;
      throw e;
    }
  }

  /** Term of entry `i`, or 0 when it is compacted or beyond the log. */
  zeroTermOnOutOfRange(i: number): number {
    return this.maybeTerm(i) ?? 0;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  matchTerm(i: number, t: number): boolean {
    return this.maybeTerm(i) === t;
  }

  /** §5.4.1: is a log ending at (lasti, term) at least as up-to-date as ours? */
  isUpToDate(lasti: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lasti >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries (§5.3): if our entry at `index` has term `logTerm`, append
   * `ents` (dropping any conflicting suffix), advance commit to min(committed, last new index),
   * and return the last new index. Returns undefined when the consistency check fails.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[], unsafeCommitBeyondLastNew = false): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      invariant(ci > this.committed, () => `entry ${ci} conflicts with committed entry [committed(${this.committed})]`);
      this.append(ents.slice(ci - (index + 1)));
    }
    // Only what the leader just confirmed may commit: an older tail beyond it may still conflict.
    this.commitTo(Math.min(committed, unsafeCommitBeyondLastNew ? this.lastIndex() : lastNew));
    return lastNew;
  }

  /** Append entries after the last one (possibly truncating an uncommitted tail). Returns lastIndex. */
  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    invariant(after >= this.committed, () => `after(${after}) is out of range [committed(${this.committed})]`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * Index of the first entry in `ents` whose term differs from ours (or which we do not have);
   * 0 if every entry matches.
   */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Largest index <= `index` whose term is <= `term` (or the first index we cannot look up).
   * Used for fast back-off: entries above it certainly do not match a log whose entry at `index`
   * has term `term`.
   */
  findConflictByTerm(index: number, term: number): number {
    for (; index > 0; index--) {
      const t = this.maybeTerm(index);
      if (t === undefined || t <= term) return index;
    }
    return 0;
  }

  commitTo(toCommit: number): void {
    if (this.committed >= toCommit) return; // never decrease commit
    invariant(this.lastIndex() >= toCommit, () => `tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]`);
    this.committed = toCommit;
  }

  /** Commit `maxIndex` if it is newer and (unless `anyTerm`) from `term` (§5.4.2). */
  maybeCommit(maxIndex: number, term: number, anyTerm = false): boolean {
    if (maxIndex > this.committed && (anyTerm || this.zeroTermOnOutOfRange(maxIndex) === term)) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    invariant(i <= this.committed && i >= this.applied, () => `applied(${i}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`);
    this.applied = i;
    if (this.applying < i) this.applying = i;
  }

  /** Entries from `i` to the end, cut to `maxSizeBytes` (at least one). */
  entries(i: number, maxSizeBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxSizeBytes);
  }

  /** Every entry from `i` to the end; for tests and transcripts. */
  allEntriesFrom(i: number): Entry[] {
    return this.entries(i, Number.POSITIVE_INFINITY);
  }

  /**
   * Entries in [lo, hi), at most `maxSizeBytes` (but at least one). Throws ErrCompacted if lo is
   * below firstIndex.
   */
  slice(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    invariant(lo <= hi, () => `invalid slice ${lo} > ${hi}`);
    const fi = this.firstIndex();
    if (lo < fi) throw new ErrCompacted();
    invariant(hi <= this.lastIndex() + 1, () => `slice[${lo},${hi}) out of bound [${fi},${this.lastIndex()}]`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const uOffset = this.unstable.offset;
    if (lo < uOffset) {
      const stableHi = Math.min(hi, uOffset);
      let stored: Entry[];
      try {
        stored = this.storage.entries(lo, stableHi, maxSizeBytes);
      } catch (e) {
        if (e instanceof ErrUnavailable) invariant(false, () => `entries[${lo}:${stableHi}) is unavailable from storage`);
        throw e;
      }
      // Storage cut the range short because of the size limit: stop here.
      if (stored.length < stableHi - lo) return stored;
      ents = stored;
    }
    if (hi > uOffset) {
      const u = this.unstable.slice(Math.max(lo, uOffset), hi);
      ents = ents.length > 0 ? ents.concat(u) : u;
    }
    return limitSize(ents, maxSizeBytes);
  }

  /** The snapshot pending in the unstable tail, else storage's latest. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Install snapshot `s`: everything up to its index is now committed. */
  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  private maxAppliableIndex(): number {
    // Only entries already handed to the driver (so persisted before they are applied).
    return Math.min(this.committed, this.unstable.offsetInProgress - 1);
  }

  hasNextCommittedEnts(): boolean {
    if (this.unstable.snapshot !== undefined) return false;
    const lo = Math.max(this.applying + 1, this.firstIndex());
    return this.maxAppliableIndex() + 1 > lo;
  }

  /** Committed entries not yet handed out for applying, limited by size. */
  nextCommittedEnts(): Entry[] {
    if (!this.hasNextCommittedEnts()) return [];
    const lo = Math.max(this.applying + 1, this.firstIndex());
    return this.slice(lo, this.maxAppliableIndex() + 1, this.maxApplyingEntsSizeBytes);
  }

  /** The driver got entries up to `i` for applying. */
  acceptApplying(i: number): void {
    invariant(i <= this.committed, () => `applying(${i}) > committed(${this.committed})`);
    this.applying = i;
  }

  checkInvariants(): void {
    invariant(this.applied <= this.applying, () => `applied(${this.applied}) > applying(${this.applying})`);
    invariant(this.applying <= this.committed, () => `applying(${this.applying}) > committed(${this.committed})`);
    invariant(this.committed <= this.lastIndex(), () => `committed(${this.committed}) > lastIndex(${this.lastIndex()})`);
  }
}
