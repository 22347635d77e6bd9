/**
 * A member's simulated disk: what the Ready loop wrote, split into what was synced (survives a
 * crash) and what sits unsynced in the page cache (lost on a crash).
 *
 * Writes are records applied in order. A crash keeps a random prefix of the unsynced records
 * (usually none; sometimes the last one survives whole or is torn away, as a write-ahead log with
 * per-record checksums truncates at the first bad record) and loses the rest. `rebuildStorage()`
 * then gives the MemoryStorage a restarted member starts from.
 */
import { MemoryStorage } from "../../server/src/raft/storage.js";
import type { ConfState, Entry, HardState, Snapshot } from "../../server/src/raft/types.js";
import type { SimRng } from "./sim-rng.js";

/** One Ready's worth of writes, applied as etcd does: snapshot, then hardState, then entries. */
export interface ReadyRecord {
  snapshot?: Snapshot;
  hardState?: HardState;
  entries: Entry[];
}

export interface DurableState {
  hardState: HardState;
  /** Index 0 means "no snapshot". */
  snapshot: Snapshot;
  /** Contiguous entries; may start at or below the snapshot index (compaction is lazy). */
  entries: Entry[];
}

export class DiskInvariantError extends Error {
  override name = "DiskInvariantError";
}

export function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: new Uint8Array(0) };
}

export class SimDisk {
  private durable: DurableState = {
    hardState: { term: 0, vote: 0n, commit: 0 },
    snapshot: emptySnapshot(),
    entries: [],
  };
  private unsynced: ReadyRecord[] = [];
  /** Counters for the run summary. */
  syncs = 0;
  recordsLost = 0;

  write(record: ReadyRecord): void {
    this.unsynced.push(record);
  }

  /** fsync: everything written so far becomes durable. */
  sync(): void {
    for (const r of this.unsynced) applyRecord(this.durable, r);
    this.unsynced = [];
    this.syncs++;
  }

  unsyncedCount(): number {
    return this.unsynced.length;
  }

  /**
   * Records a snapshot the state machine took at `snap.metadata.index` and drops durable entries
   * at or below `compactIndex`. Synced at once (snapshot files are fsynced before use), after
   * syncing everything written before it.
   */
  saveLocalSnapshot(snap: Snapshot, compactIndex: number): void {
    this.sync();
    const d = this.durable;
    if (snap.metadata.index <= d.snapshot.metadata.index) return;
    const last = lastIndexOf(d);
    if (snap.metadata.index > last) {
      throw new DiskInvariantError(`local snapshot at ${snap.metadata.index} beyond durable last index ${last}`);
    }
    d.snapshot = snap;
    d.entries = d.entries.filter((e) => e.index > compactIndex);
  }

  /**
   * Power loss: unsynced records are lost except a random prefix of them (often empty).
   * Returns how many records were lost.
   */
  crash(rng: SimRng): number {
    const n = this.unsynced.length;
    let keep = 0;
    if (n > 0 && rng.chance(0.5)) keep = rng.nextInt(n + 1);
    for (let i = 0; i < keep; i++) applyRecord(this.durable, this.unsynced[i]!);
    this.unsynced = [];
    this.recordsLost += n - keep;
    return n - keep;
  }

  durableState(): Readonly<DurableState> {
    return this.durable;
  }

  /** The storage a member restarting from this disk reads. */
  rebuildStorage(): MemoryStorage {
    const d = this.durable;
    const storage = new MemoryStorage();
    if (d.snapshot.metadata.index > 0) storage.applySnapshot(d.snapshot);
    const after = d.entries.filter((e) => e.index > d.snapshot.metadata.index);
    if (after.length > 0) storage.append(after);
    storage.setHardState(d.hardState);
    return storage;
  }

  /** The ConfState of the durable snapshot (what a restarted member's config starts from). */
  snapshotConfState(): ConfState {
    const cs = this.durable.snapshot.metadata.confState;
    return { voters: [...cs.voters], learners: [...cs.learners] };
  }
}

function lastIndexOf(d: DurableState): number {
  const n = d.entries.length;
  return n > 0 ? Math.max(d.entries[n - 1]!.index, d.snapshot.metadata.index) : d.snapshot.metadata.index;
}

function applyRecord(d: DurableState, r: ReadyRecord): void {
  if (r.snapshot && r.snapshot.metadata.index > 0) {
    if (r.snapshot.metadata.index > d.snapshot.metadata.index) {
      d.snapshot = r.snapshot;
      d.entries = [];
    }
  }
  if (r.hardState) d.hardState = { ...r.hardState };
  if (r.entries.length > 0) {
    let ents = r.entries.filter((e) => e.index > d.snapshot.metadata.index);
    if (ents.length === 0) return;
    const first = ents[0]!.index;
    const last = lastIndexOf(d);
    if (first > last + 1) throw new DiskInvariantError(`append at ${first} leaves a gap after last index ${last}`);
    const base = d.entries.length > 0 ? d.entries[0]!.index : first;
    const keep = Math.max(0, first - base);
    d.entries = d.entries.slice(0, keep).concat(ents);
    ents = [];
  }
}
