/**
 * The member (etcd's EtcdServer): its lifecycle and the methods clients reach it through. The
 * work is done in rooms named after etcd's concepts, which this class assembles and drives:
 *
 *   proposer.ts     proposals and their waiters          read-index.ts   linearizable reads
 *   quota.ts        the backend quota (NOSPACE)           lease-clock.ts  lease expiry on the leader
 *   apply/          the apply path and the applier chain  alarms.ts       raised alarms
 *   cluster/        membership, conf changes, member administration
 *   raft-node.ts    the Ready loop (the driver), which calls back through ReadyHandler
 *   transport-port.ts  what the peer transport calls (PeerHandler): messages and merged snapshots
 *   received-snapshots.ts  leaders' backend images, kept until their snapshot is applied
 *   bootstrap.ts    recovery from the WAL, snapshot and backend, and assembling all of the above
 *
 * Write path: propose(request) → raft (append) → WAL + fsync (group-committed by the Ready loop)
 * → commit → apply (one backend batch per entry holding the MVCC changes, lease/member records
 * and the consistent index) → watchers → the proposer's waiter resolves.
 * Read path: serializable reads go to the store directly; linearizable reads first wait for a
 * ReadIndex round (shared by every read that arrives while one is in flight) and for apply to
 * reach its index.
 */
import {
  AlarmMember, AlarmRequest, AlarmRequest_AlarmAction, AlarmType, CompactionRequest, DeleteRangeRequest, DeleteRangeResponse,
  LeaseGrantResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import { MessageType, StateRole, type ConfState, type Entry, type Message, type NodeId, type ReadState, type SoftState } from "../raft/types.js";
import type { Lessor } from "../lease/lessor.js";
import { ErrLeaseNotFound } from "../lease/errors.js";
import { sleep, type Clock } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import { serverError } from "./errors.js";
import { AlarmStore, type RaisedAlarm } from "./alarms.js";
import { ApplyLoop } from "./apply/apply-loop.js";
import { applierForAlarms } from "./apply/alarm-appliers.js";
import type { Applier } from "./apply/applier.js";
import { BackendApplier, txnChecks } from "./apply/backend-applier.js";
import { applyRange, applyTxn, isTxnReadOnly, type KvWriter } from "./apply/kv-ops.js";
import { MemberAdmin } from "./cluster/member-admin.js";
import type { MemberRecord, Membership } from "./cluster/membership.js";
import { LeaseClock } from "./lease-clock.js";
import { Proposer, raftRequest } from "./proposer.js";
import { BackendQuota, LEASE_COST_BYTES, putCostBytes, txnCostBytes } from "./quota.js";
import type { ApplyBatch, PeerTransport, RaftNode, ReadyHandler } from "./raft-node.js";
import { LinearizableReads } from "./read-index.js";
import { ReceivedSnapshots } from "./received-snapshots.js";
import type { RequestContext } from "./request-context.js";
import type { StorePort, WriteSession } from "./store-port.js";
import { PeerMessageRefusedError, type LeaseForwarder, type MergedSnapshot, type PeerHandler } from "./transport-port.js";

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
  /** Lease expiry/checkpoint polling period (etcd: 500 ms). */
  leaseTickMs?: number;
  /** Applied entries between snapshots (--snapshot-count). */
  snapshotCount: number;
  /** Entries kept in the log behind a snapshot for slow followers (etcd: 5000). */
  snapshotCatchUpEntries?: number;
  /** Snapshot files kept (--max-snapshots; 0 keeps all). */
  maxSnapshots: number;
}

export interface EtcdServerDeps {
  /** The Raft driver over this member's log; the member starts and stops it. */
  raft: RaftNode;
  /** Where merged snapshots go (the driver sends everything else through it). */
  transport: PeerTransport;
  store: StorePort;
  lessor: Lessor;
  membership: Membership;
  alarms: AlarmStore;
  /** Where the lessor's records go while an entry is applied. */
  leaseRecords: { bind(session: WriteSession): void; unbind(): void };
  clock: Clock;
  logger: Logger;
  /** Sees each applied entry with the store's revision then (the simulation's checks). */
  observeApplied?: (entry: Entry, revision: number) => void;
  /** Forwards a follower's lease keep-alives to the leader; without one a follower refuses them. */
  leaseForwarder?: LeaseForwarder;
}

/** Where the member resumes: the applied index and raft's configuration as of it. */
export interface AppliedState {
  index: number;
  confState: ConfState;
}

export class EtcdServer implements ReadyHandler, PeerHandler {
  private readonly raft: RaftNode;
  private readonly proposer: Proposer;
  private readonly reads: LinearizableReads;
  private readonly quota: BackendQuota;
  private readonly leaseClock: LeaseClock;
  private readonly applyLoop: ApplyLoop;
  private readonly admin: MemberAdmin;
  private readonly baseApplier: Applier;
  private readonly receivedSnapshots = new ReceivedSnapshots();
  private stopped = false;
  private published = false;
  /** The peers handed to the transport, with their peer URLs joined. */
  private transportPeers = new Map<bigint, string>();
  private campaignAfterAdvance = false;
  private markReady: () => void = () => undefined;
  /** Resolves once this member has published its attributes: etcd serves clients from then on. */
  readonly ready: Promise<void> = new Promise((resolve) => {
    this.markReady = resolve;
  });

  constructor(readonly options: EtcdServerOptions, private readonly deps: EtcdServerDeps, resumeFrom: AppliedState) {
    const { raft, store, lessor, membership, alarms, clock, logger } = deps;
    this.raft = raft;
    this.proposer = new Proposer(options, { raft, clock });
    this.applyLoop = new ApplyLoop(
      {
        snapshotCount: options.snapshotCount,
        snapshotCatchUpEntries: options.snapshotCatchUpEntries ?? 5000,
        maxSnapshots: options.maxSnapshots,
      },
      {
        store,
        proposer: this.proposer,
        applier: () => applierForAlarms(this.baseApplier, (a) => alarms.isRaised(a)),
        raft,
        membership,
        alarms,
        lessor,
        leaseRecords: deps.leaseRecords,
        snapshotImages: this.receivedSnapshots,
        onConfChange: () => (this.campaignAfterAdvance = true),
        logger,
        observeApplied: deps.observeApplied,
      },
      resumeFrom.index,
      resumeFrom.confState,
    );
    this.baseApplier = new BackendApplier({ store, lessor, membership, alarms });
    this.reads = new LinearizableReads(options, { raft, waitApplied: (i) => this.applyLoop.waitApplied(i), clock });
    this.quota = new BackendQuota(options, {
      sizeBytes: () => store.sizeBytes(),
      isRaised: (a) => alarms.isRaised(a),
      raiseNoSpace: () => {
        void this.alarm({ action: AlarmRequest_AlarmAction.ACTIVATE, memberID: options.memberId, alarm: AlarmType.NOSPACE }).catch(() => undefined);
      },
      clock,
      logger,
    });
    this.leaseClock = new LeaseClock({ tickMs: options.leaseTickMs ?? 500 }, { lessor, proposer: this.proposer, isLeader: () => this.isLeader, clock, logger });
    this.admin = new MemberAdmin(options, { raft, proposer: this.proposer, membership, clock, stopped: () => this.stopped });
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

  /** Raised alarms, in raise order (owned by the member: do not mutate). */
  get alarms(): readonly RaisedAlarm[] {
    return this.deps.alarms.list();
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
    return this.applyLoop.applied;
  }

  get committed(): number {
    return Math.max(this.applyLoop.applied, this.raft.status().hardState.commit);
  }

  /** Proposals waiting to be applied. */
  get pendingProposals(): number {
    return this.proposer.pending;
  }

  get isLearner(): boolean {
    return this.applyLoop.configuration.learners.includes(this.options.memberId);
  }

  start(): void {
    this.syncPeers();
    this.raft.start(this);
    this.proposer.start();
    this.quota.start();
    this.leaseClock.start();
    // With entries still to apply, conf changes among them campaign after their advance().
    const status = this.raft.status();
    if (status.applied >= status.hardState.commit) this.campaignIfAlone();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.leaseClock.stop();
    this.quota.stop();
    this.deps.lessor.stop();
    await this.raft.stop();
    const err = serverError("Stopped");
    this.proposer.stop(err);
    this.reads.stop(err);
  }

  // ---- the driver's calls (ReadyHandler) -------------------------------------------------

  apply(batch: ApplyBatch): Promise<void> {
    return this.applyLoop.apply(batch).then(() => this.syncPeers());
  }

  /**
   * Brings the transport's peers in line with the membership (added, re-addressed, removed
   * members, or a snapshot's whole membership): a diff, so cheap after every batch.
   */
  private syncPeers(): void {
    const t = this.deps.transport;
    if (t.addPeer === undefined) return;
    const current = new Map<bigint, string>();
    for (const m of this.deps.membership.list()) {
      if (m.id === this.options.memberId || m.peerUrls.length === 0) continue;
      const urls = m.peerUrls.join(",");
      current.set(m.id, urls);
      const known = this.transportPeers.get(m.id);
      if (known === undefined) t.addPeer(m.id, m.peerUrls);
      else if (known !== urls) t.updatePeer?.(m.id, m.peerUrls);
    }
    for (const id of this.transportPeers.keys()) if (!current.has(id)) t.removePeer?.(id);
    this.transportPeers = current;
  }

  onReadStates(states: ReadState[]): void {
    this.reads.onReadStates(states);
  }

  onSoftState(state: SoftState): void {
    if (state.role === StateRole.Leader) {
      this.deps.lessor.promote(this.options.electionMs);
      this.deps.logger.info("became leader", { term: this.raft.status().hardState.term });
    } else if (this.deps.lessor.isPrimary()) {
      this.deps.lessor.demote();
    }
    // Once any leader is known, the member publishes itself through the log.
    if (state.lead !== 0n && !this.published) void this.publish();
  }

  afterAdvance(): void {
    if (!this.campaignAfterAdvance) return;
    this.campaignAfterAdvance = false;
    this.campaignIfAlone();
  }

  /**
   * Sends a MsgSnap as etcd's merged snapshot: raft picked its newest local snapshot, but the
   * message goes out for the applied state instead (etcd's createMergedSnapshotMessage): index
   * and term of the last applied entry and the configuration as of it, with the backend as its
   * image. A member added after the local snapshot is in that configuration, so it accepts it.
   * The image is read when the transport first iterates it; the backend then holds at least
   * everything applied (its consistent index can only be ahead, and the receiver skips the
   * entries it already holds).
   */
  sendSnapshot(message: Message): void {
    const index = this.applyLoop.applied;
    const snapshot = message.snapshot;
    const merged: Message =
      snapshot === undefined || index <= snapshot.metadata.index
        ? message
        : { ...message, snapshot: { ...snapshot, metadata: { index, term: this.raft.termAt(index), confState: this.applyLoop.configuration } } };
    this.deps.transport.sendSnapshot({ message: merged, image: this.deps.store.image() });
  }

  /** A lone voter need not wait out an election timeout to lead. */
  private campaignIfAlone(): void {
    if (this.stopped || this.raft.leader !== 0n) return;
    const voters = this.raft.status().confState.voters;
    if (voters.length === 1 && voters[0] === this.options.memberId) this.raft.campaign();
  }

  /** Publishes this member's name and client URLs, then (leader) the cluster version. */
  private async publish(): Promise<void> {
    this.published = true;
    try {
      const { memberId, name, clientUrls } = this.options;
      await this.proposer.propose(raftRequest({ clusterMemberAttrSet: { memberID: memberId, name, clientUrls } }));
      if (this.isLeader && this.deps.membership.clusterVersion === "") {
        await this.proposer.propose(raftRequest({ clusterVersionSet: { ver: CLUSTER_VERSION } }));
      }
      this.markReady();
    } catch (err) {
      this.published = false;
      this.deps.logger.warn("failed to publish member attributes", { error: String(err) });
    }
  }

  // ---- the transport's calls (PeerHandler) -----------------------------------------------

  process(message: Message): void {
    if (message.type === MessageType.Snap) throw new PeerMessageRefusedError("SnapshotMisrouted", "a snapshot message came without its backend image");
    this.refuseRemoved(message.from);
    this.raft.step(message);
  }

  receiveSnapshot(merged: MergedSnapshot): void {
    const { message, image } = merged;
    if (message.type !== MessageType.Snap || message.snapshot === undefined) {
      throw new PeerMessageRefusedError("SnapshotMisrouted", `a merged snapshot carries a message of type ${MessageType[message.type]}`);
    }
    this.refuseRemoved(message.from);
    this.receivedSnapshots.keep(message.snapshot.metadata.index, image, this.applyLoop.applied);
    this.raft.step(message);
  }

  isIdRemoved(id: NodeId): boolean {
    return this.deps.membership.isRemoved(id);
  }

  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok);
  }

  private refuseRemoved(from: NodeId): void {
    if (this.deps.membership.isRemoved(from)) throw new PeerMessageRefusedError("MemberRemoved", "cannot process message from removed member");
  }

  // ---- response headers ------------------------------------------------------------------

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

  // ---- KV ----------------------------------------------------------------------------------

  async range(req: RangeRequest, _ctx?: RequestContext): Promise<RangeResponse> {
    if (!req.serializable) await this.reads.notify();
    const resp = await applyRange(this.deps.store, req);
    resp.header = this.header(Number(resp.header!.revision));
    return resp;
  }

  async put(req: PutRequest, _ctx?: RequestContext): Promise<PutResponse> {
    this.quota.check(putCostBytes(req.key, req.value));
    const r = await this.proposer.propose(raftRequest({ put: req }));
    return r.value as PutResponse;
  }

  async deleteRange(req: DeleteRangeRequest, _ctx?: RequestContext): Promise<DeleteRangeResponse> {
    const r = await this.proposer.propose(raftRequest({ deleteRange: req }));
    return r.value as DeleteRangeResponse;
  }

  async txn(req: TxnRequest, _ctx?: RequestContext): Promise<TxnResponse> {
    if (isTxnReadOnly(req)) {
      // Read-only txns are served like ranges: no log entry.
      if (!allRangesSerializable(req)) await this.reads.notify();
      const store = this.deps.store;
      const resp = await applyTxn(readOnlyWriter(store), req, txnChecks(this.deps, store.currentRevision));
      resp.header = this.header();
      return resp;
    }
    this.quota.check(txnCostBytes(req));
    const r = await this.proposer.propose(raftRequest({ txn: req }));
    return r.value as TxnResponse;
  }

  async compact(req: CompactionRequest, _ctx?: RequestContext): Promise<ResponseHeader> {
    const r = await this.proposer.propose(raftRequest({ compaction: req }));
    if (req.physical && r.physical) await r.physical;
    return r.value as ResponseHeader;
  }

  /** Resolves when a read served now would be linearizable. @throws ServerError Timeout/Stopped */
  linearizableReadNotify(): Promise<void> {
    return this.reads.notify();
  }

  // ---- leases ------------------------------------------------------------------------------

  async leaseGrant(ttlSeconds: number, requestedId: bigint, _ctx?: RequestContext): Promise<LeaseGrantResponse> {
    this.quota.check(LEASE_COST_BYTES);
    let id = requestedId;
    if (id === 0n) {
      do id = this.proposer.nextLeaseId(); while (this.deps.lessor.lookup(id) !== undefined);
    }
    const r = await this.proposer.propose(raftRequest({ leaseGrant: { TTL: BigInt(ttlSeconds), ID: id } }));
    return r.value as LeaseGrantResponse;
  }

  async leaseRevoke(id: bigint, _ctx?: RequestContext): Promise<ResponseHeader> {
    const r = await this.proposer.propose(raftRequest({ leaseRevoke: { ID: id } }));
    return r.value as ResponseHeader;
  }

  /**
   * Keepalive on the leader: returns the new TTL, or 0 when the lease does not exist.
   * Waits for an expired lease to be revoked, as etcd does, then reports 0.
   */
  async leaseRenew(id: bigint, _ctx?: RequestContext): Promise<number> {
    if (!this.isLeader) return this.forwardLeaseRenew(id);
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

  /**
   * A follower's keep-alive, forwarded to the leader's peer URLs (as etcd does: renewals do not go
   * through raft), each in turn, again every 50 ms until the request timeout.
   * @throws ServerError NotLeader (no forwarder), Timeout, Stopped
   */
  private async forwardLeaseRenew(id: bigint): Promise<number> {
    const forwarder = this.deps.leaseForwarder;
    if (forwarder === undefined) throw serverError("NotLeader");
    const { clock } = this.deps;
    const deadline = clock.nowMs() + this.options.requestTimeoutMs;
    while (!this.stopped && clock.nowMs() < deadline) {
      if (this.isLeader) return this.leaseRenew(id);
      const leader = this.raft.leader;
      const urls = leader === 0n ? [] : this.deps.membership.get(leader)?.peerUrls ?? [];
      for (const url of urls) {
        try {
          return (await forwarder.renew(url, id)) ?? 0;
        } catch {
          /* the next URL, or again after a pause */
        }
      }
      await sleep(clock, 50);
    }
    throw serverError(this.stopped ? "Stopped" : "Timeout");
  }

  // ---- maintenance -------------------------------------------------------------------------

  /** Raises or clears an alarm through the log; like etcd, GET is a round through the log too. */
  async alarm(req: AlarmRequest, _ctx?: RequestContext): Promise<AlarmMember[]> {
    const r = await this.proposer.propose(raftRequest({ alarm: req }));
    return r.value as AlarmMember[];
  }

  /** A no-op entry through the log: proves the member can commit (used by /health). */
  async proposeNoop(): Promise<void> {
    await this.proposer.propose(raftRequest({}));
  }

  // ---- membership --------------------------------------------------------------------------

  memberAdd(peerUrls: string[], isLearner: boolean, _ctx?: RequestContext): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    return this.admin.add(peerUrls, isLearner);
  }

  memberRemove(id: bigint, _ctx?: RequestContext): Promise<MemberRecord[]> {
    return this.admin.remove(id);
  }

  memberUpdate(id: bigint, peerUrls: string[], _ctx?: RequestContext): Promise<MemberRecord[]> {
    return this.admin.update(id, peerUrls);
  }

  memberPromote(id: bigint, _ctx?: RequestContext): Promise<MemberRecord[]> {
    return this.admin.promote(id);
  }

  moveLeader(transferee: bigint, _ctx?: RequestContext): Promise<void> {
    return this.admin.moveLeader(transferee);
  }
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

function allRangesSerializable(req: TxnRequest): boolean {
  for (const op of [...req.success, ...req.failure]) {
    if (op.requestRange && !op.requestRange.serializable) return false;
    if (op.requestTxn && !allRangesSerializable(op.requestTxn)) return false;
  }
  return true;
}
