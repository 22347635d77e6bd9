/**
 * The tail of the log that the driver has not yet persisted: an optional incoming snapshot and the
 * entries after it. Entries at [offset, offsetInProgress) have been handed to the driver in a Ready
 * and are being written; entries at [offsetInProgress, offset + entries.length) are not yet handed
 * out. stableTo() drops entries once the driver reports them durable.
 */
import type { Entry, Snapshot } from "./types.js";
import { invariant } from "./util.js";

export class UnstableLog {
  snapshot: Snapshot | undefined = undefined;
  /** True once `snapshot` has been handed to the driver (in a Ready). */
  snapshotInProgress = false;
  entries: Entry[] = [];
  /** Index of entries[0]. */
  offset: number;
  /** Entries below this index have been handed to the driver. */
  offsetInProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** First index known only from the unstable snapshot, if one is pending. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined;
  }

  /** Last index held here (entries, else the pending snapshot), if any. */
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.metadata.index : undefined;
  }

  /** Term of entry `i` if this unstable tail knows it. */
  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** Entries not yet handed to the driver. Returned array is a fresh copy. */
  nextEntries(): Entry[] {
    const inProgress = this.offsetInProgress - this.offset;
    if (this.entries.length === inProgress) return [];
    return this.entries.slice(inProgress);
  }

  /** Whether nextEntries() would return anything (without allocating). */
  hasNextEntries(): boolean {
    return this.offsetInProgress < this.offset + this.entries.length;
  }

  /** The pending snapshot, if it has not been handed out yet. */
  nextSnapshot(): Snapshot | undefined {
    return this.snapshot && !this.snapshotInProgress ? this.snapshot : undefined;
  }

  /** Mark everything currently held as handed out to the driver. */
  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length;
    if (this.snapshot) this.snapshotInProgress = true;
  }

  /** The driver persisted entries through (i, t): drop them, unless they were replaced meanwhile. */
  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || i < this.offset) return; // unknown or already stable (snapshot case)
    if (gt !== t) return; // replaced by a newer leader's entries after the Ready
    const n = i + 1 - this.offset;
    this.entries = this.entries.slice(n);
    this.offset = i + 1;
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
  }

  /** The driver persisted the snapshot at index i. */
  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.metadata.index === i) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  /** Replace everything with `s` (entries after it will follow). */
  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  /** Append `ents`, truncating any conflicting tail first. */
  truncateAndAppend(ents: Entry[]): void {
    const from = ents[0]!.index;
    if (from === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e);
    } else if (from <= this.offset) {
      // Replace everything we hold, including entries possibly stored already.
      this.offset = from;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, from - this.offset).concat(ents);
    }
    this.offsetInProgress = Math.min(this.offsetInProgress, from);
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
  }

  /** Entries in [lo, hi); both must lie within the unstable range. */
  slice(lo: number, hi: number): Entry[] {
    invariant(lo <= hi, () => `unstable.slice: lo ${lo} > hi ${hi}`);
    const upper = this.offset + this.entries.length;
    invariant(lo >= this.offset && hi <= upper, () => `unstable.slice[${lo},${hi}) out of bound [${this.offset},${upper}]`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
