/**
 * The apply path: committed entries, in log order, into the state machine (etcd's applyAll).
 *
 * - An entry at or below the backend's consistent index is already applied (a replay after a
 *   restart, or entries behind a leader's snapshot image that is ahead of the snapshot): only a
 *   conf change among them still reaches raft, whose configuration is rebuilt, and a v2 request
 *   the v2 store lacks reaches the v2 store (which is not saved per write; v2-applier.ts).
 * - A normal entry is decoded (or taken as proposed here), applied through the applier chain into
 *   its own write session, and its batch is handed to the backend with the entry's index as the
 *   consistent index. Its proposer is answered as soon as the session is committed: the store
 *   serves the entry's revision from memory until the batch is in LevelDB (kv-store.ts), and the
 *   entry is in the fsynced WAL, so a restart before the batch is in replays it.
 * - The applied index (ReadIndex waits, snapshots) moves once a batch's entries are applied, not
 *   once their backend writes are in: the backend writes them in groups, at its batch interval
 *   (etcd's batch transaction; backend.ts), so that a put costs no LevelDB write of its own.
 *   Whatever reads LevelDB directly waits for the writes first: the snapshot (store.sync), the
 *   image sent to a follower, HashKV and watch catch-up (kv-store.ts). A failed backend write
 *   is fatal (`onWriteFailed`, and the next apply rejects).
 * - Entries are applied one after another; a conf change is applied alone.
 * - Every `snapshotCount` applied entries, a raft snapshot is taken at the applied index.
 * - A snapshot from the leader (its index above the consistent index) is installed before the
 *   entries after it (etcd's applySnapshot): the backend becomes the image received with it, and
 *   every view kept beside the backend is reloaded from there (see installSnapshot). A snapshot
 *   at or below the consistent index carries nothing the backend lacks. The database received
 *   with it stays on disk until the install is durable (a restart installs it otherwise; see
 *   snapshot-databases.ts); each snapshot taken here releases those up to its index too.
 */
import type { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import { ErrLeaseNotFound } from "../../lease/errors.js";
import type { Lessor } from "../../lease/lessor.js";
import { BackendFailedError, type BackendImage } from "../../mvcc/backend/backend.js";
import { BackendClosedError } from "../../mvcc/backend/engine.js";
import { ErrClosed, ErrStoreRead } from "../../mvcc/errors.js";
import { decodeConfChange } from "../../raft/conf-change-codec.js";
import { EntryType, type ConfChange, type ConfState, type Entry, type Snapshot } from "../../raft/types.js";
import type { Logger } from "../../pkg/logger.js";
import { applyConfChangeToMembership, memberOfConfChange, validateConfChange } from "../cluster/conf-change.js";
import type { AlarmStore } from "../alarms.js";
import { isV2StoreJson, loadMembershipRecords, type Membership, type MembershipRecords } from "../cluster/membership.js";
import { recoverLeases } from "../lease-records.js";
import type { ApplyBatch } from "../raft-node.js";
import type { ApplyResult, Proposer } from "../proposer.js";
import type { StorePort, WriteSession } from "../store-port.js";
import { applyRequest, type Applier } from "./applier.js";
import { LeaseNotFoundForPut } from "./kv-ops.js";
import { decodeEntry, type DecodedEntry } from "./entry-codec.js";
import { applyV2Request, catchUpV2Store } from "./v2-applier.js";

export interface ApplyLoopOptions {
  /** Applied entries between snapshots (--snapshot-count). */
  snapshotCount: number;
  /** Entries kept in the log behind a snapshot for slow followers (etcd: 5000). */
  snapshotCatchUpEntries: number;
  /** Snapshot files kept (--max-snapshots; 0 keeps all). */
  maxSnapshots: number;
}

/** The part of the Raft driver the apply path needs. */
export interface ApplyRaft {
  applyConfChange(cc: ConfChange): ConfState;
  snapshot(index: number, confState: ConfState, data: Uint8Array, catchUpEntries: number): Promise<Snapshot | undefined>;
  purgeSnapshots(keep: number): Promise<unknown>;
}

/** Where the images received with leaders' snapshots wait (received-snapshots.ts). */
export interface SnapshotImages {
  /** The image of the snapshot at `index`. @throws Error when none was received (a broken invariant). */
  take(index: number): BackendImage;
  /** The backend holds the state as of `index` durably: what was kept for snapshots up to it may go. */
  release(index: number): Promise<void>;
}

export interface ApplyLoopDeps {
  store: StorePort;
  proposer: Proposer;
  /**
   * The applier chain for `req`, the entry at `index` about to be applied (it changes as alarms
   * come and go, and acts as the user the request's header names).
   */
  applier(req: InternalRaftRequest, index: number): Applier;
  raft: ApplyRaft;
  membership: Membership;
  alarms: AlarmStore;
  lessor: Lessor;
  /** Where the lessor's records go while an entry is applied. */
  leaseRecords: { bind(session: WriteSession): void; unbind(): void };
  snapshotImages: SnapshotImages;
  /** The auth store, reloaded from the backend when a snapshot is installed. */
  auth?: { loadFrom(store: StorePort): Promise<void> };
  /** A conf change reached raft (the member may campaign once the driver has advanced, or stop if removed). */
  onConfChange(cc: ConfChange): void;
  /** A backend write of applied entries failed: the member must stop (their state is ahead of it). */
  onWriteFailed(err: Error): void;
  logger: Logger;
  /**
   * Sees each entry once its effects are in the store, with the revision the entry left the
   * store at (the simulation's state machine checks); must change nothing.
   */
  observeApplied?: (entry: Entry, revision: number) => void;
}

/** An entry that takes longer than this to apply counts as slow (etcd_server_slow_apply_total). */
const SLOW_APPLY_MS = 100;

export class ApplyLoop {
  /** Entries whose apply took longer than SLOW_APPLY_MS (etcd_server_slow_apply_total). */
  slowApplies = 0;
  private appliedIndex: number;
  private snapshotIndex: number;
  private confState: ConfState;
  private readonly applyWaiters: { index: number; resolve: () => void }[] = [];
  /** The last write promise watched for failure (consecutive entries usually share one). */
  private watchedWrite: Promise<void> | undefined;
  private writeFailure: Error | undefined;

  /** Starts at `appliedIndex` with raft's configuration as of it. */
  constructor(private readonly options: ApplyLoopOptions, private readonly deps: ApplyLoopDeps, appliedIndex: number, confState: ConfState) {
    this.appliedIndex = appliedIndex;
    this.snapshotIndex = appliedIndex;
    this.confState = confState;
  }

  get applied(): number {
    return this.appliedIndex;
  }

  /** Raft's configuration as of the applied index. */
  get configuration(): ConfState {
    return this.confState;
  }

  /** Resolves once `index` has been applied. */
  waitApplied(index: number): Promise<void> {
    if (this.appliedIndex >= index) return Promise.resolve();
    return new Promise((resolve) => {
      this.applyWaiters.push({ index, resolve });
    });
  }

  /**
   * Applies a batch of committed entries (and the snapshot before them) in order.
   * Rejects when the backend refuses a write or an invariant is broken (a leader's snapshot
   * without its image, an image behind its snapshot): the member must stop.
   */
  async apply(batch: ApplyBatch): Promise<void> {
    if (this.writeFailure !== undefined) throw this.writeFailure;
    if (batch.snapshot) {
      if (batch.snapshot.metadata.index > this.deps.store.consistentIndex()) await this.installSnapshot(batch.snapshot);
      // At or below it (an earlier image brought the backend past it), the snapshot installs
      // nothing in the backend, but raft skips the entries up to it: the v2 store, which may lack
      // their v2 requests, is taken from the newer of the snapshot's data and our image.
      else if (batch.snapshot.metadata.index > this.deps.membership.v2Index) this.loadMembership(await loadMembershipRecords(this.deps.store), batch.snapshot);
      this.appliedIndex = Math.max(this.appliedIndex, batch.snapshot.metadata.index);
      this.confState = batch.snapshot.metadata.confState;
    }
    const consistentIndex = this.deps.store.consistentIndex();
    let last = this.appliedIndex;
    for (const entry of batch.entries) {
      last = entry.index;
      if (entry.index <= consistentIndex) {
        if (entry.type === EntryType.ConfChange) this.reconfigureRaft(decodeConfChange(entry.data));
        else this.catchUpV2(entry);
        continue;
      }
      this.deps.membership.v2Index = entry.index;
      if (entry.type === EntryType.ConfChange) {
        this.watchWrite(this.applyConfChange(entry));
      } else {
        const started = performance.now();
        const applied = this.applyNormal(entry);
        this.watchWrite(applied instanceof PendingApply ? (await applied.done).written : applied);
        // etcd's warnApplyDuration: an entry whose apply took longer is a slow apply.
        if (performance.now() - started > SLOW_APPLY_MS) this.slowApplies++;
      }
    }
    this.appliedIndex = Math.max(this.appliedIndex, last);
    this.notifyApplied();
    if (this.appliedIndex - this.snapshotIndex > this.options.snapshotCount) await this.takeSnapshot();
  }

  /**
   * An entry the backend holds already (behind a leader's snapshot image that is ahead of the
   * snapshot) may be a v2 request the v2 store lacks: it is applied to the v2 store alone.
   */
  private catchUpV2(entry: Entry): void {
    const caught = catchUpV2Store(this.deps.membership, entry);
    if (caught !== undefined) this.deps.proposer.trigger(caught.id, caught.result);
  }

  /** Makes a failure of `written` (a backend write of applied entries) fatal. */
  private watchWrite(written: Promise<void>): void {
    if (written === this.watchedWrite) return;
    this.watchedWrite = written;
    written.catch((err: unknown) => {
      if (this.writeFailure !== undefined) return;
      this.writeFailure = err instanceof Error ? err : new Error(String(err));
      this.deps.onWriteFailed(this.writeFailure);
    });
  }

  private notifyApplied(): void {
    if (this.applyWaiters.length === 0) return;
    let keep = 0;
    for (const w of this.applyWaiters) {
      if (w.index <= this.appliedIndex) w.resolve();
      else this.applyWaiters[keep++] = w;
    }
    this.applyWaiters.length = keep;
  }

  /**
   * Snapshots at the applied index, once the backend holds (durably) all state up to it, with the
   * consistent index; the raft snapshot carries the v2 store's JSON, as etcd 3.4's does.
   */
  private async takeSnapshot(): Promise<void> {
    const index = this.appliedIndex;
    await this.deps.store.sync();
    const data = this.deps.membership.v2.save();
    const snap = await this.deps.raft.snapshot(index, this.confState, data, this.options.snapshotCatchUpEntries);
    this.snapshotIndex = index;
    if (snap === undefined) return;
    await this.releaseImages(index);
    this.deps.logger.info("saved snapshot", { "snapshot-index": index });
    if (this.options.maxSnapshots > 0) await this.deps.raft.purgeSnapshots(this.options.maxSnapshots);
  }

  /**
   * Installs a leader's snapshot (etcd's applySnapshot): the store restores the image received
   * with it (its key index, revisions, compaction and watchers follow), then the membership (from
   * the image, or from the snapshot's v2 store when the image lacks it), the alarms, the lessor
   * (leases and their keys) and the auth store are reloaded from the new backend; raft's
   * configuration is the snapshot's. The image may be newer than the snapshot (its consistent
   * index above the snapshot's): entries up to that index are then skipped as already applied,
   * conf changes among them still reaching raft.
   */
  private async installSnapshot(snapshot: Snapshot): Promise<void> {
    const { index, term } = snapshot.metadata;
    const { store, membership, alarms, lessor, logger } = this.deps;
    logger.info("applying snapshot", { "applied-index": this.appliedIndex, "incoming-leader-snapshot-index": index, "incoming-leader-snapshot-term": term });
    await store.restore(this.deps.snapshotImages.take(index));
    const consistentIndex = store.consistentIndex();
    if (consistentIndex < index) throw new Error(`the image of the snapshot at ${index} is as of index ${consistentIndex}`);
    // The backend is the image now, durably (restore ends with a synced write): a restart no
    // longer needs the database kept for it.
    await this.releaseImages(index);
    const records = await loadMembershipRecords(store);
    if (records.v2Store === undefined && isV2StoreJson(snapshot.data)) {
      // An image without our v2 store (etcd 3.4's): as etcd 3.4 does, the membership comes from
      // the snapshot's v2 store, and is written to the backend.
      const w = store.beginWrite();
      membership.recoverFromV2Store(snapshot.data, index, w);
      this.watchWrite(w.commit(consistentIndex));
    } else {
      // Our image carries the v2 store as of the last membership change before its consistent
      // index (which may be past the snapshot's); the snapshot's data is the v2 store as of its
      // index. The newer one is taken, and the v2 requests after it come with the entries
      // the leader sends next (catchUpV2).
      this.loadMembership(records, snapshot);
    }
    alarms.load(await store.loadRecords("alarm"));
    await recoverLeases(lessor, store);
    await this.deps.auth?.loadFrom(store);
    this.snapshotIndex = index;
    logger.info("applied snapshot", { "snapshot-index": index, "consistent-index": consistentIndex, revision: store.currentRevision });
  }

  /**
   * Loads the membership from the backend's records and `snapshot` (the newer of our image and the
   * snapshot's v2 store); an image saved before its index was kept gets its index written.
   */
  private loadMembership(records: MembershipRecords, snapshot: Snapshot): void {
    const { store, membership } = this.deps;
    membership.load(records, { index: snapshot.metadata.index, data: snapshot.data }, store.consistentIndex());
    const written = membership.writeLoadedImageIndex(store);
    if (written !== undefined) this.watchWrite(written);
  }

  /** Releases what was kept for snapshots up to `index`; a failure to remove a file is logged. */
  private async releaseImages(index: number): Promise<void> {
    try {
      await this.deps.snapshotImages.release(index);
    } catch (err) {
      this.deps.logger.warn("failed to remove the databases received with older snapshots", { index, error: String(err) });
    }
  }

  private reconfigureRaft(cc: ConfChange): void {
    this.confState = this.deps.raft.applyConfChange(cc);
    this.deps.onConfChange(cc);
  }

  /** Applies a conf change entry; returns its backend write (see applyNormal). */
  private applyConfChange(entry: Entry): Promise<void> {
    const cc = decodeConfChange(entry.data);
    const m = memberOfConfChange(cc);
    const rejected = validateConfChange(this.deps.membership, cc, m);
    const w = this.deps.store.beginWrite();
    if (rejected === undefined) {
      this.reconfigureRaft(cc);
      applyConfChangeToMembership(this.deps.membership, cc, m, this.confState, w);
    }
    const written = w.commit(entry.index);
    this.deps.observeApplied?.(entry, revisionAfter(w));
    if (cc.id !== undefined && cc.id !== 0n) {
      this.deps.proposer.trigger(cc.id, rejected ? { error: rejected } : { value: this.deps.membership.list() });
    }
    return written;
  }

  /**
   * Applies one entry into its own write session, starts writing it, and answers its proposer.
   * @returns the promise that settles once the entry's batch is in the backend; or, when the
   *   request must first read from the backend (a txn, a put with prev_kv), a PendingApply whose
   *   `done` carries that promise once the entry is applied. A plain put takes no turn of the loop.
   */
  private applyNormal(entry: Entry): Promise<void> | PendingApply {
    const w = this.deps.store.beginWrite();
    if (entry.data.length === 0) {
      // The empty entry a new leader appends: nothing to apply but the index.
      const written = w.commit(entry.index);
      this.deps.observeApplied?.(entry, revisionAfter(w));
      return written;
    }
    let req = this.deps.proposer.decodedProposal(entry.data);
    if (req === undefined) {
      let decoded: DecodedEntry;
      try {
        decoded = decodeEntry(entry.data);
      } catch (err) {
        // Every entry was written by a member: an undecodable one is corruption.
        throw new Error(`raft entry ${entry.index} does not decode: ${String(err)}`);
      }
      if (decoded.kind === "v2") return this.applyV2(entry, decoded.req, w);
      req = decoded.req;
    }
    if (req.v2 !== undefined) return this.applyV2(entry, req.v2, w);
    const id = req.header?.ID ?? req.ID;
    const { leaseRecords } = this.deps;
    leaseRecords.bind(w);
    let result: ApplyResult | Promise<ApplyResult>;
    try {
      result = applyRequest(this.deps.applier(req, entry.index), req, w);
    } catch (err) {
      result = failedApply(err);
    }
    if (result instanceof Promise) {
      const done = result.then(undefined, failedApply).then((r) => {
        leaseRecords.unbind();
        return { written: this.finishApply(entry, w, id, r) };
      });
      return new PendingApply(done);
    }
    leaseRecords.unbind();
    return this.finishApply(entry, w, id, result);
  }

  /** Ends an applied entry's session: starts its write, tells observers, answers its proposer. */
  private finishApply(entry: Entry, w: WriteSession, id: bigint, result: ApplyResult): Promise<void> {
    const written = w.commit(entry.index);
    this.deps.observeApplied?.(entry, revisionAfter(w));
    this.deps.proposer.trigger(id, result);
    return written;
  }

  /** A v2 store request (etcd 3.4's applyV2Request); its proposer waits under the request's ID. */
  private applyV2(entry: Entry, r: Request, w: WriteSession): Promise<void> {
    const result = applyV2Request(this.deps.membership, r, w);
    const written = w.commit(entry.index);
    this.deps.observeApplied?.(entry, revisionAfter(w));
    this.deps.proposer.trigger(r.ID ?? 0n, result);
    return written;
  }
}

/** An entry whose apply waits for a read from the backend (see applyNormal). */
class PendingApply {
  constructor(readonly done: Promise<{ written: Promise<void> }>) {}
}

/**
 * The proposer's answer for an apply that threw: a txn's lease check reports in the lessor's
 * terms, as etcd does. A store that could not be read (or written) is no answer: it is rethrown,
 * which fails the apply and stops the member before the entry counts as applied.
 */
function failedApply(err: unknown): ApplyResult {
  if (err instanceof ErrStoreRead || err instanceof ErrClosed || err instanceof BackendFailedError || err instanceof BackendClosedError) throw err;
  return { error: err instanceof LeaseNotFoundForPut ? new ErrLeaseNotFound() : (err as Error) };
}

/** The store revision after a write session's changes (unchanged when it wrote no key). */
function revisionAfter(w: WriteSession): number {
  return w.changed ? w.beginRevision + 1 : w.beginRevision;
}
