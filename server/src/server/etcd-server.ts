/**
 * The member: owns the Raft driver, the apply loop, the read path and the lessor's clock.
 *
 * Write path: propose(request) → raft (append) → WAL + fsync (group-committed by the Ready loop)
 * → commit → apply (one backend batch per entry holding the MVCC changes, lease/member records
 * and the consistent index) → watchers → the proposer's waiter resolves.
 * Read path: serializable reads go to the store directly; linearizable reads first wait for a
 * ReadIndex round (shared by every read that arrives while one is in flight) and for apply to
 * reach its index.
 */
import { InternalRaftRequest } from "../gen/etcdserverpb/raft_internal.js";
import {
  AlarmMember, AlarmRequest, AlarmRequest_AlarmAction, AlarmType, CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, PutRequest, PutResponse,
  RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
} from "../gen/etcdserverpb/rpc.js";
import { ConfChange, ConfChangeType, ConfState, Entry, EntryType, NodeId, ReadState, SoftState, StateRole } from "../raft/types.js";
import { ErrProposalDropped } from "../raft/raw-node.js";
import { decodeConfChange } from "../raft/conf-change-codec.js";
import type { Lessor } from "../lease/lessor.js";
import { ErrLeaseNotFound } from "../lease/errors.js";
import { IdGenerator } from "../lease/lease-id.js";
import type { Logger } from "../pkg/logger.js";
import { ServerError, serverError } from "./errors.js";
import {
  applyDeleteRange, applyPut, applyRange, applyTxn, isTxnReadOnly,
  KvWriter, LeaseNotFoundForPut,
} from "./kv-ops.js";
import { Membership, MemberRecord, decodeMember, encodeMember } from "./membership.js";
import { computeMemberId } from "./member-id.js";
import type { ApplyBatch, RaftNode } from "./raft-node.js";
import type { StorePort, WriteSession } from "./store-port.js";
import { WaitRegistry } from "./wait-registry.js";

/** etcd 3.4 allows one learner at a time. */
const MAX_LEARNERS = 1;
/** A learner is promotable once its log matches this fraction of the leader's. */
const LEARNER_READY_FRACTION = 0.9;
export const CONF_STATE_KEY = Buffer.from("confState");

export function encodeConfState(cs: ConfState): Buffer {
  return Buffer.from(JSON.stringify({ voters: cs.voters.map((v) => v.toString(16)), learners: cs.learners.map((v) => v.toString(16)) }));
}

export function decodeConfState(b: Buffer): ConfState {
  const j = JSON.parse(b.toString()) as { voters: string[]; learners: string[] };
  return { voters: j.voters.map((v) => BigInt("0x" + v)), learners: j.learners.map((v) => BigInt("0x" + v)) };
}

/** The etcd API version etcd-ts serves; clients gate features on it. */
export const ETCD_API_VERSION = "3.4.23";
export const CLUSTER_VERSION = "3.4.0";

export interface EtcdServerOptions {
  memberId: bigint;
  clusterId: bigint;
  name: string;
  clientUrls: string[];
  maxRequestBytes: number;
  maxTxnOps: number;
  electionMs: number;
  heartbeatMs: number;
  /** Backend size at which writes stop with NOSPACE (0 = etcd's default, 2 GiB). */
  quotaBackendBytes: number;
  /** How long a proposal may wait for apply before "request timed out". */
  requestTimeoutMs: number;
  /** Lease expiry/checkpoint polling period. */
  leaseTickMs?: number;
  /** Applied entries between snapshots (--snapshot-count). */
  snapshotCount: number;
  /** Entries kept in the log behind a snapshot for slow followers (etcd: 5000). */
  snapshotCatchUpEntries?: number;
  /** Snapshot files kept (--max-snapshots; 0 keeps all). */
  maxSnapshots: number;
}

export interface EtcdServerDeps {
  store: StorePort;
  lessor: Lessor;
  membership: Membership;
  /** Where the lessor's records go while an entry is applied. */
  leaseRecords: { bind(session: WriteSession): void; unbind(): void };
  logger: Logger;
}

type ApplyResult = { value?: unknown; error?: Error; physical?: Promise<void> };

export class EtcdServer {
  private raft!: RaftNode;
  private readonly wait = new WaitRegistry<ApplyResult>();
  private readonly ids: IdGenerator;
  private appliedIndex = 0;
  private committedIndex = 0;
  private confState: ConfState = { voters: [], learners: [] };
  private stopped = false;
  private leaseTimer: NodeJS.Timeout | undefined;
  private readonly applyWaiters: { index: number; resolve: () => void }[] = [];
  private readonly readPending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readInFlight: { ctx: string; waiters: { resolve: () => void; reject: (e: Error) => void }[]; timer: NodeJS.Timeout } | undefined;
  private readSeq = 0n;
  private published = false;
  /** Requests proposed here, by their encoded bytes (apply skips decoding them again). */
  private readonly proposed = new WeakMap<Uint8Array, InternalRaftRequest>();
  private timeoutTimer: NodeJS.Timeout | undefined;
  private snapshotIndex = 0;
  private campaignAfterAdvance = false;
  private leaderChanges = 0;
  /** Raised alarms, in raise order (NOSPACE = 1, CORRUPT = 2). */
  readonly alarms: { memberId: bigint; alarm: number }[] = [];
  private dbSizeBytes = 0;
  private sizeTimer: NodeJS.Timeout | undefined;

  constructor(readonly options: EtcdServerOptions, private readonly deps: EtcdServerDeps) {
    this.ids = new IdGenerator(options.memberId, Date.now());
  }

  /** Connects the Raft driver; must be called once before start(). */
  attachRaft(raft: RaftNode, appliedIndex: number, confState: ConfState): void {
    this.raft = raft;
    this.appliedIndex = appliedIndex;
    this.snapshotIndex = appliedIndex;
    this.committedIndex = appliedIndex;
    this.confState = confState;
  }

  get store(): StorePort {
    return this.deps.store;
  }

  get lessor(): Lessor {
    return this.deps.lessor;
  }

  get membership(): Membership {
    return this.deps.membership;
  }

  get memberId(): bigint {
    return this.options.memberId;
  }

  get clusterId(): bigint {
    return this.options.clusterId;
  }

  get term(): number {
    return this.raft.currentTerm;
  }

  get leader(): NodeId {
    return this.raft.leader;
  }

  get isLeader(): boolean {
    return this.raft.isLeader;
  }

  get applied(): number {
    return this.appliedIndex;
  }

  get committed(): number {
    return Math.max(this.committedIndex, this.raft.rawNode.status().hardState.commit);
  }

  /** Proposals waiting to be applied. */
  get pendingProposals(): number {
    return this.wait.size;
  }

  get isLearner(): boolean {
    return this.confState.learners.includes(this.options.memberId);
  }

  /** Restores raised alarms (start-up, before start()). */
  loadAlarms(records: [Buffer, Buffer][]): void {
    for (const [k] of records) this.alarms.push({ memberId: k.readBigUInt64BE(0), alarm: k[8]! });
  }

  start(): void {
    this.raft.start();
    const refreshSize = (): void => {
      this.deps.store.sizeBytes().then((n) => (this.dbSizeBytes = n), () => undefined);
    };
    refreshSize();
    this.sizeTimer = setInterval(refreshSize, 1000);
    this.sizeTimer.unref();
    this.timeoutTimer = setInterval(() => this.wait.expire(Date.now(), () => serverError("Timeout")), 100);
    this.timeoutTimer.unref();
    const tick = this.options.leaseTickMs ?? 500;
    this.leaseTimer = setInterval(() => this.leaseTick(), tick);
    this.leaseTimer.unref();
    // With entries still to apply, conf changes among them campaign after their advance().
    const status = this.raft.rawNode.status();
    if (status.applied >= status.hardState.commit) this.campaignIfAlone();
  }

  /** The driver's afterAdvance hook. */
  afterAdvance(): void {
    if (!this.campaignAfterAdvance) return;
    this.campaignAfterAdvance = false;
    this.campaignIfAlone();
  }

  /** A lone voter need not wait out an election timeout to lead. */
  private campaignIfAlone(): void {
    if (this.stopped || this.raft.leader !== 0n) return;
    const voters = this.raft.rawNode.status().confState.voters;
    if (voters.length === 1 && voters[0] === this.options.memberId) {
      this.raft.withCore((n) => n.campaign());
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.sizeTimer) clearInterval(this.sizeTimer);
    if (this.timeoutTimer) clearInterval(this.timeoutTimer);
    this.deps.lessor.stop();
    await this.raft.stop();
    const err = serverError("Stopped");
    this.wait.failAll(err);
    for (const r of this.readPending.splice(0)) r.reject(err);
    if (this.readInFlight) {
      clearTimeout(this.readInFlight.timer);
      for (const r of this.readInFlight.waiters) r.reject(err);
      this.readInFlight = undefined;
    }
  }

  /** A response header for the given store revision (0 = current). */
  header(revision?: number): ResponseHeader {
    return {
      clusterId: this.options.clusterId,
      memberId: this.options.memberId,
      revision: BigInt(revision ?? this.deps.store.currentRevision),
      raftTerm: BigInt(this.raft.currentTerm),
    };
  }

  /**
   * Completes the header an apply step left on a response (it knows only the revision): etcd's
   * header populator adds cluster and member IDs and the term.
   */
  fillHeader<R extends { header?: ResponseHeader | undefined }>(resp: R): R {
    resp.header = this.header(Number(resp.header?.revision ?? 0n));
    return resp;
  }

  /** The header etcd's Cluster service answers with: no store revision. */
  clusterHeader(): ResponseHeader {
    return { clusterId: this.options.clusterId, memberId: this.options.memberId, revision: 0n, raftTerm: BigInt(this.raft.currentTerm) };
  }

  // ---- proposals -------------------------------------------------------------------------

  /**
   * Proposes a request and resolves with its apply result.
   * @throws ServerError RequestTooLarge, NoLeader, Timeout, Stopped; or the apply error.
   */
  async propose(req: InternalRaftRequest): Promise<ApplyResult> {
    if (this.stopped) throw serverError("Stopped");
    const id = this.ids.next();
    req.header = { ID: id, username: req.header?.username ?? "", authRevision: req.header?.authRevision ?? 0n };
    req.ID = id;
    const data = InternalRaftRequest.encode(req).finish();
    if (data.length > this.options.maxRequestBytes) throw serverError("RequestTooLarge");
    const done = this.wait.register(id, Date.now() + this.options.requestTimeoutMs);
    // The entry's bytes travel through raft by reference: apply can reuse this decoded form.
    this.proposed.set(data, req);
    try {
      this.raft.withCore((n) => n.propose(data));
    } catch (err) {
      this.wait.fail(id, err instanceof ErrProposalDropped ? serverError("NoLeader") : (err as Error));
    }
    return this.awaitApplied(done);
  }

  /**
   * Waits for the apply result of a registered proposal; the registry fails it with Timeout at
   * its deadline (swept by one timer for all proposals).
   * @throws the apply error, or ServerError Timeout.
   */
  private async awaitApplied(done: Promise<ApplyResult>): Promise<ApplyResult> {
    const result = await done;
    if (result.error) throw result.error;
    return result;
  }

  private get quotaBytes(): number {
    return this.options.quotaBackendBytes > 0 ? this.options.quotaBackendBytes : 2 * 1024 * 1024 * 1024;
  }

  /**
   * etcd's backend quota: a write that would grow the backend past the quota raises the NOSPACE
   * alarm; while it is raised, writes that add data fail with "database space exceeded".
   * @throws ServerError NoSpace
   */
  private checkQuota(costBytes: number): void {
    if (this.alarms.some((a) => a.alarm === AlarmType.NOSPACE)) throw serverError("NoSpace");
    if (this.dbSizeBytes + costBytes <= this.quotaBytes) return;
    this.deps.logger.warn("backend quota exceeded; raising NOSPACE alarm", { "db-size": this.dbSizeBytes, quota: this.quotaBytes });
    void this.alarm({ action: AlarmRequest_AlarmAction.ACTIVATE, memberID: this.options.memberId, alarm: AlarmType.NOSPACE }).catch(() => undefined);
    throw serverError("NoSpace");
  }

  /** Raises or clears an alarm through the log; GET answers locally. */
  async alarm(req: AlarmRequest): Promise<AlarmMember[]> {
    // Like etcd, every alarm request (GET included) is a round through the log.
    const r = await this.propose(raftRequest({ alarm: req }));
    return r.value as AlarmMember[];
  }

  async put(req: PutRequest): Promise<PutResponse> {
    this.checkQuota(req.key.length + req.value.length + 64);
    const r = await this.propose(raftRequest({ put: req }));
    return r.value as PutResponse;
  }

  async deleteRange(req: DeleteRangeRequest): Promise<DeleteRangeResponse> {
    const r = await this.propose(raftRequest({ deleteRange: req }));
    return r.value as DeleteRangeResponse;
  }

  async txn(req: TxnRequest): Promise<TxnResponse> {
    if (isTxnReadOnly(req)) {
      // Read-only txns are served like ranges: no log entry.
      const serializable = allRangesSerializable(req);
      if (!serializable) await this.linearizableReadNotify();
      const txnResp = await applyTxn(readOnlyWriter(this.deps.store), req, this.txnChecks());
      txnResp.header = this.header();
      return txnResp;
    }
    this.checkQuota(txnCostBytes(req));
    const r = await this.propose(raftRequest({ txn: req }));
    return r.value as TxnResponse;
  }

  async compact(req: CompactionRequest): Promise<ResponseHeader> {
    const r = await this.propose(raftRequest({ compaction: req }));
    if (req.physical && r.physical) await r.physical;
    return r.value as ResponseHeader;
  }

  async range(req: RangeRequest): Promise<RangeResponse> {
    if (!req.serializable) await this.linearizableReadNotify();
    const resp = await applyRange(this.deps.store, req);
    resp.header = this.header(Number(resp.header!.revision));
    return resp;
  }

  async leaseGrant(ttlSeconds: number, requestedId: bigint): Promise<LeaseGrantResponse> {
    this.checkQuota(64);
    let id = requestedId;
    if (id === 0n) {
      do id = this.ids.nextLeaseId(); while (this.deps.lessor.lookup(id) !== undefined);
    }
    const r = await this.propose(raftRequest({ leaseGrant: { TTL: BigInt(ttlSeconds), ID: id } }));
    return r.value as LeaseGrantResponse;
  }

  async leaseRevoke(id: bigint): Promise<ResponseHeader> {
    const r = await this.propose(raftRequest({ leaseRevoke: { ID: id } }));
    return r.value as ResponseHeader;
  }

  /** A no-op entry through the log: proves the member can commit (used by /health). */
  async proposeNoop(): Promise<void> {
    await this.propose(raftRequest({}));
  }

  /**
   * Keepalive on the leader: returns the new TTL, or 0 when the lease does not exist.
   * Waits for an expired lease to be revoked, as etcd does, then reports 0.
   */
  async leaseRenew(id: bigint): Promise<number> {
    if (!this.isLeader) throw serverError("NotLeader");
    try {
      return this.deps.lessor.renew(id);
    } catch (err) {
      if (err instanceof ErrLeaseNotFound) return 0;
      if ((err as Error).name === "ErrLeaseExpired" || (err as { code?: string }).code === "LEASE_EXPIRED") {
        await this.deps.lessor.waitRevoked(id).catch(() => undefined);
        return 0;
      }
      throw err;
    }
  }

  // ---- linearizable reads ----------------------------------------------------------------

  /** Resolves when a read served now would be linearizable. @throws ServerError Timeout/Stopped */
  linearizableReadNotify(): Promise<void> {
    if (this.stopped) return Promise.reject(serverError("Stopped"));
    return new Promise<void>((resolve, reject) => {
      this.readPending.push({ resolve, reject });
      if (this.readInFlight === undefined) this.startReadRound();
    });
  }

  private startReadRound(): void {
    if (this.readPending.length === 0 || this.stopped) return;
    const waiters = this.readPending.splice(0);
    this.readSeq += 1n;
    const ctxBuf = Buffer.alloc(8);
    ctxBuf.writeBigUInt64BE(this.readSeq);
    const ctx = ctxBuf.toString("hex");
    const timer = setTimeout(() => {
      if (this.readInFlight?.ctx !== ctx) return;
      this.readInFlight = undefined;
      const err = serverError(this.raft.leader === 0n ? "NoLeader" : "Timeout");
      for (const w of waiters) w.reject(err);
      this.startReadRound();
    }, this.options.requestTimeoutMs);
    this.readInFlight = { ctx, waiters, timer };
    this.raft.withCore((n) => n.readIndex(ctxBuf));
  }

  /** Called by the driver with the answers to readIndex requests. */
  onReadStates(states: ReadState[]): void {
    for (const rs of states) {
      const ctx = Buffer.from(rs.requestCtx).toString("hex");
      const round = this.readInFlight;
      if (round === undefined || round.ctx !== ctx) continue;
      clearTimeout(round.timer);
      this.readInFlight = undefined;
      void this.waitApplied(rs.index).then(() => {
        for (const w of round.waiters) w.resolve();
      });
      this.startReadRound();
    }
  }

  /** Resolves once the apply loop has applied `index`. */
  waitApplied(index: number): Promise<void> {
    if (this.appliedIndex >= index) return Promise.resolve();
    return new Promise((resolve) => {
      this.applyWaiters.push({ index, resolve });
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

  onSoftState(state: SoftState): void {
    const leader = state.role === StateRole.Leader;
    if (leader) {
      this.leaderChanges++;
      this.deps.lessor.promote(this.options.electionMs);
      this.deps.logger.info("became leader", { term: this.raft.rawNode.status().hardState.term });

    } else if (this.deps.lessor.isPrimary()) {
      this.deps.lessor.demote();
    }
    // Once any leader is known, the member publishes itself through the log.
    if (state.lead !== 0n && !this.published) void this.publish();
  }

  /** Publishes this member's name and client URLs, then (leader) the cluster version. */
  private markReady: () => void = () => undefined;
  /** Resolves once this member has published its attributes: etcd serves clients from then on. */
  readonly ready: Promise<void> = new Promise((resolve) => {
    this.markReady = resolve;
  });

  private async publish(): Promise<void> {
    this.published = true;
    try {
      const { memberId, name, clientUrls } = this.options;
      await this.propose(raftRequest({ clusterMemberAttrSet: { memberID: memberId, name, clientUrls } }));
      if (this.isLeader && this.deps.membership.clusterVersion === "") {
        await this.propose(raftRequest({ clusterVersionSet: { ver: CLUSTER_VERSION } }));
      }
      this.markReady();
    } catch (err) {
      this.published = false;
      this.deps.logger.warn("failed to publish member attributes", { error: String(err) });
    }
  }

  private leaseTick(): void {
    if (this.stopped || !this.isLeader) return;
    const lessor = this.deps.lessor;
    for (const id of lessor.expiredLeases(500)) {
      void this.propose(raftRequest({ leaseRevoke: { ID: id } })).catch((err) => {
        if (!(err instanceof ErrLeaseNotFound)) this.deps.logger.warn("failed to revoke expired lease", { lease: id, error: String(err) });
      });
    }
    const cps = lessor.checkpoints(1000);
    if (cps.length > 0) {
      void this.propose(raftRequest({ leaseCheckpoint: { checkpoints: cps.map((c) => ({ ID: c.id, remainingTTL: BigInt(c.remainingTtlSeconds) })) } })).catch(() => undefined);
    }
  }

  /** What txn checks compare against: the published store, or an apply step's view of it. */
  private txnChecks(view?: KvWriter): { leases: { exists: (id: bigint) => boolean }; currentRevision: number; compactRevision: number } {
    return {
      leases: { exists: (id) => this.deps.lessor.lookup(id) !== undefined },
      currentRevision: view ? view.beginRevision : this.deps.store.currentRevision,
      compactRevision: this.deps.store.compactRevision,
    };
  }

  // ---- apply -----------------------------------------------------------------------------

  private applyAlarm(req: AlarmRequest, w: WriteSession): AlarmMember[] {
    const key = Buffer.alloc(9);
    key.writeBigUInt64BE(req.memberID);
    key[8] = req.alarm;
    const i = this.alarms.findIndex((a) => a.memberId === req.memberID && a.alarm === req.alarm);
    if (req.action === AlarmRequest_AlarmAction.ACTIVATE) {
      if (req.alarm === AlarmType.NONE) return [];
      if (i < 0) {
        this.alarms.push({ memberId: req.memberID, alarm: req.alarm });
        w.stage("alarm", key, Buffer.alloc(0));
      }
      return [{ memberID: req.memberID, alarm: req.alarm }];
    }
    if (req.action === AlarmRequest_AlarmAction.DEACTIVATE) {
      if (i < 0) return [];
      this.alarms.splice(i, 1);
      w.stage("alarm", key, undefined);
      return [{ memberID: req.memberID, alarm: req.alarm }];
    }
    return this.alarms
      .filter((a) => req.alarm === AlarmType.NONE || a.alarm === req.alarm)
      .map((a) => ({ memberID: a.memberId, alarm: a.alarm }));
  }

  /** The driver's apply callback: applies a batch of committed entries in order. */
  async applyBatch(batch: ApplyBatch): Promise<void> {
    if (batch.snapshot) {
      // Single-member and local snapshots carry no state to install: the backend already holds
      // everything up to the consistent index. (Receiving a leader's snapshot is the member
      // transport's job and installs the backend before this point.)
      this.appliedIndex = Math.max(this.appliedIndex, batch.snapshot.metadata.index);
      this.confState = batch.snapshot.metadata.confState;
    }
    // Entries are applied one after another, but their backend batches are not awaited one by
    // one: the backend group-commits everything queued into one LevelDB write, and each
    // proposer is answered once its own batch is in.
    const written: Promise<void>[] = [];
    const consistentIndex = this.deps.store.consistentIndex();
    let last = this.appliedIndex;
    for (const entry of batch.entries) {
      this.committedIndex = Math.max(this.committedIndex, entry.index);
      last = entry.index;
      if (entry.index <= consistentIndex) {
        // Already in the backend (replay after restart); conf changes must still reach raft.
        if (entry.type === EntryType.ConfChange) this.applyConfChangeToRaft(entry);
        continue;
      }
      if (entry.type === EntryType.ConfChange) {
        await Promise.all(written.splice(0));
        await this.applyConfChangeEntry(entry);
      } else {
        written.push((await this.applyNormalEntry(entry)).written);
      }
    }
    await Promise.all(written);
    this.appliedIndex = Math.max(this.appliedIndex, last);
    this.notifyApplied();
    if (this.appliedIndex - this.snapshotIndex > this.options.snapshotCount) await this.takeSnapshot();
  }

  /**
   * Snapshots at the applied index. The backend already holds all state up to it (with the
   * consistent index), so the raft snapshot carries only what identifies it.
   */
  private async takeSnapshot(): Promise<void> {
    const index = this.appliedIndex;
    await this.deps.store.sync();
    const data = Buffer.from(JSON.stringify({ clusterVersion: this.deps.membership.clusterVersion }));
    await this.raft.snapshot(index, this.confState, data, this.options.snapshotCatchUpEntries ?? 5000);
    this.snapshotIndex = index;
    this.deps.logger.info("saved snapshot", { "snapshot-index": index });
    if (this.options.maxSnapshots > 0) await this.raft.purgeSnapshots(this.options.maxSnapshots);
  }

  private applyConfChangeToRaft(entry: Entry): ConfChange {
    const cc = decodeConfChange(entry.data);
    this.confState = this.raft.rawNode.applyConfChange(cc);
    // After a restart the configuration is rebuilt by replaying conf changes; once the core has
    // taken them (after advance), a lone voter campaigns at once.
    this.campaignAfterAdvance = true;
    return cc;
  }

  /**
   * Validates a conf change against the membership (etcd's ValidateConfigurationChange). A
   * rejected change is applied as a no-op: raft's configuration does not change and the proposer
   * gets the error.
   */
  private validateConfChange(cc: ConfChange, m: MemberRecord | undefined): ServerError | undefined {
    const membership = this.deps.membership;
    const existing = membership.get(cc.nodeId);
    switch (cc.type) {
      case ConfChangeType.AddNode:
      case ConfChangeType.AddLearnerNode: {
        if (membership.isRemoved(cc.nodeId)) return serverError("MemberNotFound");
        if (existing) {
          // AddNode for an existing learner is its promotion.
          if (cc.type === ConfChangeType.AddNode && existing.isLearner && m === undefined) return undefined;
          if (cc.type === ConfChangeType.AddNode && m === undefined) return serverError("MemberNotLearner");
          return serverError("MemberExist");
        }
        if (m === undefined) return serverError("MemberNotFound");
        const urls = new Set(m.peerUrls);
        if (membership.list().some((o) => o.peerUrls.some((u) => urls.has(u)))) return serverError("PeerURLExist");
        if (cc.type === ConfChangeType.AddLearnerNode && membership.list().filter((o) => o.isLearner).length >= MAX_LEARNERS) {
          return serverError("TooManyLearners");
        }
        return undefined;
      }
      case ConfChangeType.RemoveNode:
        if (membership.isRemoved(cc.nodeId) || !existing) return serverError("MemberNotFound");
        return undefined;
      case ConfChangeType.UpdateNode: {
        if (membership.isRemoved(cc.nodeId) || !existing) return serverError("MemberNotFound");
        const urls = new Set(m?.peerUrls ?? []);
        if (membership.list().some((o) => o.id !== cc.nodeId && o.peerUrls.some((u) => urls.has(u)))) return serverError("PeerURLExist");
        return undefined;
      }
    }
    return undefined;
  }

  private async applyConfChangeEntry(entry: Entry): Promise<void> {
    const cc = decodeConfChange(entry.data);
    const m = cc.context.length > 0 ? decodeMember(cc.context) : undefined;
    const rejected = this.validateConfChange(cc, m);
    const w = this.deps.store.beginWrite();
    const membership = this.deps.membership;
    if (rejected === undefined) {
      this.confState = this.raft.rawNode.applyConfChange(cc);
      this.campaignAfterAdvance = true;
      switch (cc.type) {
        case ConfChangeType.AddNode:
        case ConfChangeType.AddLearnerNode:
          if (m === undefined) membership.promote(cc.nodeId, w);
          else membership.add({ ...m, isLearner: cc.type === ConfChangeType.AddLearnerNode }, w);
          break;
        case ConfChangeType.RemoveNode:
          membership.remove(cc.nodeId, w);
          break;
        case ConfChangeType.UpdateNode:
          if (m !== undefined) membership.setRaftAttributes(cc.nodeId, m.peerUrls, m.isLearner, w);
          break;
      }
      // Raft's configuration lives next to the data it configures, so a restart resumes from it.
      w.stage("meta", CONF_STATE_KEY, encodeConfState(this.confState));
    }
    await w.commit(entry.index);
    if (cc.id !== undefined && cc.id !== 0n) {
      this.wait.trigger(cc.id, rejected ? { error: rejected } : { value: membership.list() });
    }
  }

  // ---- membership changes ---------------------------------------------------------------

  /** Proposes a conf change and resolves with the members after it applied. */
  private async configure(cc: ConfChange): Promise<MemberRecord[]> {
    if (this.stopped) throw serverError("Stopped");
    if (!this.isLeader) throw serverError(this.leader === 0n ? "NoLeader" : "NotLeader");
    const id = this.ids.next();
    cc.id = id;
    const done = this.wait.register(id, Date.now() + this.options.requestTimeoutMs);
    try {
      this.raft.withCore((n) => n.proposeConfChange(cc));
    } catch (err) {
      this.wait.fail(id, err instanceof ErrProposalDropped ? serverError("Timeout") : (err as Error));
    }
    return (await this.awaitApplied(done)).value as MemberRecord[];
  }

  /**
   * Adds a member (voter or learner) with etcd's ID rule: SHA-1 of its peer URLs and the current
   * Unix second. A voter is refused while the cluster could lose quorum by it.
   */
  async memberAdd(peerUrls: string[], isLearner: boolean): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    for (const u of peerUrls) {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        throw serverError("MemberBadURLs");
      }
      if (!["http:", "https:", "unix:", "unixs:"].includes(parsed.protocol) || parsed.host === "") throw serverError("MemberBadURLs");
    }
    if (peerUrls.length === 0) throw serverError("MemberBadURLs");
    const member: MemberRecord = {
      id: computeMemberId(peerUrls, "", Math.floor(Date.now() / 1000)),
      name: "",
      peerUrls,
      clientUrls: [],
      isLearner,
    };
    const members = await this.configure({
      type: isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode,
      nodeId: member.id,
      context: encodeMember(member),
    });
    return { member, members };
  }

  async memberRemove(id: bigint): Promise<MemberRecord[]> {
    return this.configure({ type: ConfChangeType.RemoveNode, nodeId: id, context: new Uint8Array(0) });
  }

  async memberUpdate(id: bigint, peerUrls: string[]): Promise<MemberRecord[]> {
    const existing = this.deps.membership.get(id);
    // As in etcd 3.4, an update carries fresh raft attributes, so the learner flag resets.
    const m: MemberRecord = { id, name: existing?.name ?? "", peerUrls, clientUrls: existing?.clientUrls ?? [], isLearner: false };
    return this.configure({ type: ConfChangeType.UpdateNode, nodeId: id, context: encodeMember(m) });
  }

  /**
   * Hands leadership to `transferee` and waits until it leads (etcd's MoveLeader).
   * @throws ServerError NotLeader, BadLeaderTransferee, TimeoutLeaderTransfer
   */
  async moveLeader(transferee: bigint): Promise<void> {
    if (!this.isLeader) throw serverError("NotLeader");
    const m = this.deps.membership.get(transferee);
    if (m === undefined || m.isLearner) throw serverError("BadLeaderTransferee");
    if (transferee === this.options.memberId) return;
    this.raft.withCore((n) => n.transferLeader(transferee));
    const deadline = Date.now() + this.options.requestTimeoutMs;
    while (this.raft.leader !== transferee) {
      if (Date.now() > deadline || this.stopped) throw serverError("TimeoutLeaderTransfer");
      await new Promise((r) => setTimeout(r, this.options.heartbeatMs));
    }
  }

  /** Promotes a learner once its log is within 90% of the leader's (etcd's readiness rule). */
  async memberPromote(id: bigint): Promise<MemberRecord[]> {
    if (!this.isLeader) throw serverError(this.leader === 0n ? "NoLeader" : "NotLeader");
    const progress = this.raft.rawNode.status().progress;
    const learner = progress?.get(id);
    if (learner !== undefined) {
      const leaderMatch = progress!.get(this.options.memberId)?.match ?? 0;
      if (learner.match < leaderMatch * LEARNER_READY_FRACTION) throw serverError("LearnerNotReady");
    }
    return this.configure({ type: ConfChangeType.AddNode, nodeId: id, context: new Uint8Array(0) });
  }

  /**
   * Applies one entry into its own write session and starts writing it.
   * @returns `written`, which settles once the entry's batch is in the backend and its proposer
   *   has been answered (wrapped: an async function cannot return a promise unresolved).
   */
  private async applyNormalEntry(entry: Entry): Promise<{ written: Promise<void> }> {
    const w = this.deps.store.beginWrite();
    if (entry.data.length === 0) {
      // The empty entry a new leader appends: nothing to apply but the index.
      return { written: w.commit(entry.index) };
    }
    let req = this.proposed.get(entry.data);
    if (req === undefined) {
      try {
        req = InternalRaftRequest.decode(entry.data);
      } catch (err) {
        // We wrote every entry ourselves: an undecodable one is corruption.
        throw new Error(`raft entry ${entry.index} does not decode: ${String(err)}`);
      }
    }
    const id = req.header?.ID ?? req.ID;
    let result: ApplyResult;
    this.deps.leaseRecords.bind(w);
    try {
      result = await this.dispatch(req, w);
    } catch (err) {
      result = { error: translateApplyError(err as Error) };
    } finally {
      this.deps.leaseRecords.unbind();
    }
    return { written: w.commit(entry.index).then(() => this.wait.trigger(id, result)) };
  }

  private async dispatch(req: InternalRaftRequest, w: WriteSession): Promise<ApplyResult> {
    const lessor = this.deps.lessor;
    const kv = leaseTrackingWriter(w, lessor);
    if (req.put) {
      const p = req.put;
      if (p.lease !== 0n && lessor.lookup(p.lease) === undefined) throw new ErrLeaseNotFound();
      return { value: (await applyPut(kv, p)).resp };
    }
    if (req.deleteRange) {
      return { value: await applyDeleteRange(kv, req.deleteRange) };
    }
    if (req.txn) {
      const resp = await applyTxn(kv, req.txn, this.txnChecks(w));
      resp.header = { clusterId: 0n, memberId: 0n, raftTerm: 0n, revision: BigInt(w.changed ? w.beginRevision + 1 : w.beginRevision) };
      return { value: resp };
    }
    if (req.compaction) {
      const physical = this.deps.store.compact(w, Number(req.compaction.revision));
      physical.catch(() => undefined);
      return { value: undefined, physical };
    }
    if (req.leaseGrant) {
      const l = lessor.grant(req.leaseGrant.ID, Number(req.leaseGrant.TTL));
      const header = { clusterId: 0n, memberId: 0n, raftTerm: 0n, revision: BigInt(w.beginRevision) };
      return { value: { header, ID: l.id, TTL: BigInt(l.ttlSeconds), error: "" } satisfies LeaseGrantResponse };
    }
    if (req.leaseRevoke) {
      const keys = lessor.revoke(req.leaseRevoke.ID);
      for (const key of keys) w.deleteRange(key, undefined);
      return { value: undefined };
    }
    if (req.leaseCheckpoint) {
      for (const cp of req.leaseCheckpoint.checkpoints) {
        try {
          lessor.applyCheckpoint(cp.ID, Number(cp.remainingTTL));
        } catch {
          // the lease was revoked meanwhile
        }
      }
      return { value: undefined };
    }
    if (req.clusterMemberAttrSet) {
      const a = req.clusterMemberAttrSet;
      this.deps.membership.setAttributes(a.memberID, a.name, a.clientUrls, w);
      return { value: undefined };
    }
    if (req.clusterVersionSet) {
      this.deps.membership.setClusterVersion(req.clusterVersionSet.ver, w);
      return { value: undefined };
    }
    if (req.alarm) {
      return { value: this.applyAlarm(req.alarm, w) };
    }
    // A no-op (health check) entry.
    return { value: undefined };
  }
}

/** Bytes a txn's puts may add (etcd's quota cost). */
function txnCostBytes(req: TxnRequest): number {
  let cost = 0;
  for (const op of [...req.success, ...req.failure]) {
    if (op.requestPut) cost += op.requestPut.key.length + op.requestPut.value.length + 64;
    else if (op.requestTxn) cost += txnCostBytes(op.requestTxn);
  }
  return cost;
}

const EMPTY_RAFT_REQUEST: Readonly<InternalRaftRequest> = Object.freeze(InternalRaftRequest.fromPartial({}));

/** A log entry's request carrying only `fields` (everything else at its default). */
function raftRequest(fields: Partial<InternalRaftRequest>): InternalRaftRequest {
  return { ...EMPTY_RAFT_REQUEST, ...fields };
}

/** A writer over the store for read-only txns: writes are impossible by construction. */
function readOnlyWriter(store: StorePort): KvWriter {
  return {
    range: (k, e, o) => store.range(k, e, o),
    put: () => {
      throw new Error("read-only txn attempted a put");
    },
    deleteRange: () => {
      throw new Error("read-only txn attempted a delete");
    },
    changed: false,
    beginRevision: store.currentRevision,
  };
}

/** Wraps the apply session so that every put and delete keeps the lessor's key sets right. */
function leaseTrackingWriter(w: WriteSession, lessor: Lessor): KvWriter {
  const detach = (lease: bigint, key: Buffer): void => {
    try {
      lessor.detach(lease, [key]);
    } catch {
      // the lease is already gone (revoked in this same entry)
    }
  };
  return {
    range: (k, e, o) => w.range(k, e, o),
    put: (key, value, lease) => {
      const prev = lessor.leaseOfKey(key);
      w.put(key, value, lease);
      if (prev !== lease) {
        if (prev !== 0n) detach(prev, key);
        if (lease !== 0n) lessor.attach(lease, [key]);
      }
    },
    deleteRange: (key, end) => {
      const deleted = w.deleteRange(key, end);
      for (const k of deleted) {
        const lease = lessor.leaseOfKey(k);
        if (lease !== 0n) detach(lease, k);
      }
      return deleted;
    },
    get changed() {
      return w.changed;
    },
    get beginRevision() {
      return w.beginRevision;
    },
  };
}

function allRangesSerializable(req: TxnRequest): boolean {
  for (const op of [...req.success, ...req.failure]) {
    if (op.requestRange && !op.requestRange.serializable) return false;
    if (op.requestTxn && !allRangesSerializable(op.requestTxn)) return false;
  }
  return true;
}

/** A txn's lease check reports in the lessor's terms, as etcd does. */
function translateApplyError(err: Error): Error {
  return err instanceof LeaseNotFoundForPut ? new ErrLeaseNotFound() : err;
}
