/**
 * Where raft snapshots are kept: the contract of Snapshotter (files in a directory, production)
 * and MemorySnapshotter (a directory in memory, for simulations). Snapshots are named
 * `%016x-%016x.snap` (term, index), so names sort oldest first.
 */
import type { Snapshot } from "../raft/types.js";

export interface SnapshotStore {
  /**
   * Stores `snapshot` as `<term>-<index>.snap`, atomically and durably: once this resolves the
   * snapshot survives a crash; before that, a crash leaves it whole or absent. An empty snapshot
   * (index 0) is not stored. Rejects on I/O errors (nothing under the final name then).
   */
  save(snapshot: Snapshot): Promise<void>;
  /**
   * Loads and verifies one snapshot by name. Rejects with ErrSnapshotCorrupt when it fails
   * verification or its contents do not match its name, with an ENOENT error when it is absent.
   */
  load(name: string): Promise<Snapshot>;
  /** The newest snapshot that verifies, or undefined; ones that fail are set aside as `<name>.broken`. */
  loadNewest(): Promise<Snapshot | undefined>;
  /**
   * The newest snapshot whose {index, term} is among `walSnaps` (the WAL's valid snapshot
   * markers), setting aside broken ones. Rejects with ErrNoSnapshot when there is none.
   */
  loadNewestAvailable(walSnaps: { index: number; term: number }[]): Promise<Snapshot>;
  /** Snapshot names, newest first. */
  names(): Promise<string[]>;
  /**
   * Deletes all but the newest `keep` (>= 1, else RangeError) snapshots and leftovers of
   * interrupted saves; returns what it deleted.
   */
  purge(keep: number): Promise<string[]>;
}
