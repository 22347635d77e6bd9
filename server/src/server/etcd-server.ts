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
import { ConfChangeType, MessageType, StateRole, type ConfChange, type ConfState, type Entry, type Message, type NodeId, type ReadState, type SoftState } from "../raft/types.js";
import type { Lessor } from "../lease/lessor.js";
import { ErrLeaseNotFound } from "../lease/errors.js";
import { timeToLiveSeconds } from "../lease/lease.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import { serverError } from "./errors.js";
import { AlarmStore, type RaisedAlarm } from "./alarms.js";
import { ApplyLoop } from "./apply/apply-loop.js";
import { applierForAlarms } from "./apply/alarm-appliers.js";
import type { Applier } from "./apply/applier.js";
import { BackendApplier, txnChecks } from "./apply/backend-applier.js";
import { applyRange, applyTxn, isTxnReadOnly, type KvWriter } from "./apply/kv-ops.js";
import { MemberAdmin, type PeerActivity } from "./cluster/member-admin.js";
import { forwardToLeader, type LeaderClient } from "./leader-forward.js";
import { encodeAttributes, type MemberRecord, type Membership } from "./cluster/membership.js";
import { compareVersions, decideClusterVersion, MIN_CLUSTER_VERSION, parseVersion, uniformPeerVersions, type PeerVersions } from "./cluster/cluster-version.js";
import { LeaseClock } from "./lease-clock.js";
import { Proposer, raftRequest, type ApplyResult } from "./proposer.js";
import { V2Sync } from "./v2-sync.js";
import type { V2Store } from "../v2store/v2-store.js";
import type { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import { BackendQuota, LEASE_COST_BYTES, putCostBytes, txnCostBytes } from "./quota.js";
import type { ApplyBatch, PeerTransport, RaftNode, ReadyHandler } from "./raft-node.js";
import { LinearizableReads } from "./read-index.js";
import { ReceivedSnapshots } from "./received-snapshots.js";
import type { RequestContext } from "./request-context.js";
import type { StorePort, WriteSession } from "./store-port.js";
import { PeerMessageRefusedError, type MergedSnapshot, type PeerHandler } from "./transport-port.js";

/** The etcd API version etcd-ts serves; clients gate features on it. */
export const ETCD_API_VERSION = "3.4.23";
export const CLUSTER_VERSION = "3.4.0";
/** How often the leader re-decides the cluster version (etcd: the peer write timeout less 1 s). */
const MONITOR_VERSION_INTERVAL_MS = 4000;

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
  /** Refuse membership changes that would endanger an active quorum (default true). */
  strictReconfigCheck?: boolean;
  /** Deliberately broken variants, ONLY for proving that the cluster fault checks can fail. */
  unsafeTestingKnobs?: {
    /** A follower serves linearizable reads at once, from its own state, without ReadIndex. */
    followerReadsWithoutReadIndex?: boolean;
  };
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
  /** Asks other members for their server versions (the cluster version decision); default: all are this build. */
  peerVersions?: PeerVersions;
  clock: Clock;
  logger: Logger;
  /** Sees each applied entry with the store's revision then (the simulation's checks). */
  observeApplied?: (entry: Entry, revision: number) => void;
  /** The peer connections, for strict reconfiguration (absent: every peer counts as connected). */
  peerActivity?: PeerActivity;
  /** Forwards leader-only requests from a follower (absent: a follower answers NotLeader). */
  leaderClient?: LeaderClient;
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
  private readonly v2Sync: V2Sync;
  private readonly applyLoop: ApplyLoop;
  private readonly admin: MemberAdmin;
  private readonly baseApplier: Applier;
  private readonly receivedSnapshots = new ReceivedSnapshots();
  private stopped = false;
  private published = false;
  private versionUpdating = false;
  private versionTimer: TimerHandle | undefined;
  /** The peers handed to the transport, with their peer URLs joined. */
  private transportPeers = new Map<bigint, string>();
  private campaignAfterAdvance = false;
  private markReady: () => void = () => undefined;
  private markRemoved: () => void = () => undefined;
  /**
   * Resolves once this member has applied its own removal from the cluster: the process should
   * stop (etcd stops ten heartbeats later and exits 0; the data dir must not be reused).
   */
  readonly removed: Promise<void> = new Promise((resolve) => {
    this.markRemoved = resolve;
  });
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
        onConfChange: (cc) => this.onConfChange(cc),
        logger,
        observeApplied: deps.observeApplied,
      },
      resumeFrom.index,
      resumeFrom.confState,
    );
    this.baseApplier = new BackendApplier({ store, lessor, membership, alarms });
    this.reads = new LinearizableReads(options, { raft, waitApplied: (i) => this.applyLoop.waitApplied(i), nextRequestId: () => this.proposer.nextRequestId(), clock });
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
    this.admin = new MemberAdmin(options, {
      raft, proposer: this.proposer, membership, clock, stopped: () => this.stopped,
      activity: deps.peerActivity, leaderClient: deps.leaderClient,
    });
    this.v2Sync = new V2Sync({ tickMs: 500 }, {
      isLeader: () => this.isLeader, hasTtlKeys: () => membership.v2.hasTtlKeys(), proposeV2: (r) => this.proposer.proposeV2(r), clock, logger,
    });
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
    this.v2Sync.start();
    this.versionTimer = this.deps.clock.setInterval(() => void this.updateClusterVersion(), MONITOR_VERSION_INTERVAL_MS);
    // With entries still to apply, conf changes among them campaign after their advance().
    const status = this.raft.status();
    if (status.applied >= status.hardState.commit) this.campaignIfAlone();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.versionTimer !== undefined) this.deps.clock.clearTimeout(this.versionTimer);
    this.leaseClock.stop();
    this.v2Sync.stop();
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

  private onConfChange(cc: ConfChange): void {
    this.campaignAfterAdvance = true;
    if (cc.type !== ConfChangeType.RemoveNode || cc.nodeId !== this.options.memberId) return;
    this.deps.logger.warn("the member has been permanently removed from the cluster; the data-dir used by this member must be removed", {
      "local-member-id": this.options.memberId.toString(16),
    });
    // As etcd, give the removal's acknowledgement time to reach the proposer before stopping.
    this.deps.clock.setTimeout(() => this.markRemoved(), 10 * this.options.heartbeatMs);
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
    // As etcd 3.4's merged snapshot: the v2 store as of the applied index is the snapshot's data.
    const data = this.deps.membership.v2.save();
    const merged: Message =
      snapshot === undefined
        ? message
        : index <= snapshot.metadata.index
          ? { ...message, snapshot: { ...snapshot, data } }
          : { ...message, snapshot: { data, metadata: { index, term: this.raft.termAt(index), confState: this.applyLoop.configuration } } };
    this.deps.transport.sendSnapshot({ message: merged, image: this.deps.store.image() });
  }

  /** A lone voter need not wait out an election timeout to lead. */
  private campaignIfAlone(): void {
    if (this.stopped || this.raft.leader !== 0n) return;
    const voters = this.raft.status().confState.voters;
    if (voters.length === 1 && voters[0] === this.options.memberId) this.raft.campaign();
  }

  /**
   * Publishes this member's name and client URLs as etcd 3.4 does (a v2 PUT of
   * /0/members/<hex id>/attributes with etcd's Attributes JSON), then, on the leader, the
   * cluster version.
   */
  private async publish(): Promise<void> {
    this.published = true;
    try {
      const { memberId, name, clientUrls } = this.options;
      await this.proposer.proposeV2({ Method: "PUT", Path: `/0/members/${memberId.toString(16)}/attributes`, Val: encodeAttributes(name, clientUrls) });
      await this.updateClusterVersion();
      this.markReady();
    } catch (err) {
      this.deps.logger.warn("failed to publish member attributes", { error: String(err) });
      if (this.stopped) return;
      // As etcd 3.4 does, keep trying until it commits: a proposal lost on its way to the leader
      // (sent before the transport knew the leader as a peer, say) is never retried by raft, and
      // the leader may not change again to trigger a new attempt.
      this.deps.clock.setTimeout(() => {
        if (!this.stopped) void this.publish();
      }, this.options.heartbeatMs);
    }
  }

  /**
   * etcd 3.4's monitorVersions step, on the leader: decides the cluster version from the members'
   * server versions and proposes it (a v2 PUT of /0/version) when the cluster has none ("3.0.0"
   * when undecided) or when the decision is above the current one. Errors are logged.
   */
  private async updateClusterVersion(): Promise<void> {
    if (!this.isLeader || this.stopped || this.versionUpdating) return;
    this.versionUpdating = true;
    try {
      const { membership, peerVersions } = this.deps;
      const decided = await decideClusterVersion(membership.list(), this.options.memberId, ETCD_API_VERSION, peerVersions ?? uniformPeerVersions(ETCD_API_VERSION));
      const current = membership.clusterVersion;
      let next: string | undefined;
      if (current === "") next = decided ?? MIN_CLUSTER_VERSION;
      else if (decided !== undefined) {
        const [d, c] = [parseVersion(decided), parseVersion(current)];
        if (d !== undefined && c !== undefined && compareVersions(d, c) > 0) next = decided;
      }
      if (next === undefined || !this.isLeader) return;
      this.deps.logger.info(current === "" ? "setting up initial cluster version" : "updating cluster version", { from: current, to: next });
      await this.proposer.proposeV2({ Method: "PUT", Path: "/0/version", Val: next });
    } catch (err) {
      this.deps.logger.warn("failed to update the cluster version", { error: String(err) });
    } finally {
      this.versionUpdating = false;
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

  reportRemoved(): void {
    if (this.stopped) return;
    this.deps.logger.warn("a peer answered that this member was removed from the cluster; the data-dir used by this member must be removed", {
      "local-member-id": this.options.memberId.toString(16),
    });
    this.markRemoved();
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
    if (!req.serializable) await this.linearizableRead();
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
      if (!allRangesSerializable(req)) await this.linearizableRead();
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

  /** The wait of a linearizable range or read-only txn (broken on followers by a testing knob). */
  private linearizableRead(): Promise<void> {
    if (this.options.unsafeTestingKnobs?.followerReadsWithoutReadIndex === true && !this.isLeader) return Promise.resolve();
    return this.reads.notify();
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
   * A keep-alive: returns the new TTL, or 0 when the lease does not exist. The leader renews
   * (after waiting for an expired lease to be revoked, as etcd does); a follower forwards the
   * keep-alive to the leader.
   * @throws ServerError NotLeader (a follower without a leader client), Timeout, Stopped.
   */
  async leaseRenew(id: bigint, _ctx?: RequestContext): Promise<number> {
    if (!this.isLeader) {
      const client = this.deps.leaderClient;
      if (client === undefined) throw serverError("NotLeader");
      try {
        return await this.forward((url, ms) => client.leaseRenew(url, id, ms), (e) => e instanceof ErrLeaseNotFound);
      } catch (err) {
        if (err instanceof ErrLeaseNotFound) return 0;
        throw err;
      }
    }
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
   * A lease's remaining and granted TTL as the leader knows them (undefined: no such lease). The
   * leader answers once everything committed is applied; a follower asks the leader.
   * @throws ServerError NotLeader (a follower without a leader client), Timeout, Stopped.
   */
  async leaseTimeToLive(id: bigint, keys: boolean, _ctx?: RequestContext): Promise<{ ttlSeconds: number; grantedTtlSeconds: number; keys: Buffer[] } | undefined> {
    if (!this.isLeader) {
      const client = this.deps.leaderClient;
      if (client === undefined) throw serverError("NotLeader");
      try {
        const r = await this.forward((url, ms) => client.leaseTimeToLive(url, id, keys, ms), (e) => e instanceof ErrLeaseNotFound);
        return { ttlSeconds: Number(r.TTL), grantedTtlSeconds: Number(r.grantedTTL), keys: r.keys.map((k) => Buffer.from(k)) };
      } catch (err) {
        if (err instanceof ErrLeaseNotFound) return undefined;
        throw err;
      }
    }
    await this.applyLoop.waitApplied(this.raft.status().hardState.commit);
    const lease = this.deps.lessor.lookup(id);
    if (lease === undefined) return undefined;
    return {
      ttlSeconds: timeToLiveSeconds(lease, this.deps.clock.nowMs()),
      grantedTtlSeconds: lease.ttlSeconds,
      keys: keys ? lease.keys() : [],
    };
  }

  private forward<T>(call: (peerUrl: string, remainingMs: number) => Promise<T>, isFinal: (err: unknown) => boolean): Promise<T> {
    return forwardToLeader(
      { clock: this.deps.clock, leader: () => this.raft.leader, member: (m) => this.deps.membership.get(m), stopped: () => this.stopped },
      this.options.requestTimeoutMs,
      call,
      isFinal,
    );
  }

  // ---- maintenance -------------------------------------------------------------------------

  /** Raises or clears an alarm through the log; like etcd, GET is a round through the log too. */
  async alarm(req: AlarmRequest, _ctx?: RequestContext): Promise<AlarmMember[]> {
    const r = await this.proposer.propose(raftRequest({ alarm: req }));
    return r.value as AlarmMember[];
  }

  // ---- the v2 store (etcd's v2 keys API, served with --enable-v2) -----------------------------

  /** The v2 store: reads and watches are local (etcd's serializable v2 GET); writes go through `v2Request`. */
  get v2(): V2Store {
    return this.deps.membership.v2;
  }

  /**
   * A v2 write (POST, PUT, DELETE) or quorum read (QGET) through the log as etcd 3.4 proposes it:
   * the bare Request as the entry's data. Resolves with the applied result (`value`: the
   * V2Event; `error`: the store's V2Error).
   * @throws ServerError RequestTooLarge, Timeout, Stopped, NoLeader.
   */
  v2Request(req: Request): Promise<ApplyResult> {
    return this.proposer.proposeV2(req);
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

  /**
   * Called before a graceful stop: a leader of several voters hands leadership to the peer it has
   * been connected to the longest and waits until it leads (up to the request timeout), so the
   * cluster need not wait out an election timeout. Failures are logged; the stop goes on.
   */
  async transferLeadershipForStop(): Promise<void> {
    const from = this.options.memberId;
    try {
      const to = await this.admin.transferLeadership();
      if (to !== undefined) this.deps.logger.info("leadership transfer finished", { "old-leader-member-id": from.toString(16), "new-leader-member-id": to.toString(16) });
    } catch (err) {
      this.deps.logger.warn("leadership transfer failed", { "local-member-id": from.toString(16), error: String(err) });
    }
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
