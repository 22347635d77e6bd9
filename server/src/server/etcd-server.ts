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
 *   auth/           users, roles, permissions and tokens (the auth store, its applier layer)
 *
 * Write path: propose(request) → raft (append) → WAL + fsync (group-committed by the Ready loop)
 * → commit → apply (one backend batch per entry holding the MVCC changes, lease/member records
 * and the consistent index) → watchers → the proposer's waiter resolves.
 * Read path: serializable reads go to the store directly; linearizable reads first wait for a
 * ReadIndex round (shared by every read that arrives while one is in flight) and for apply to
 * reach its index.
 */
import type { InternalRaftRequest, RequestHeader } from "@etcd-ts/proto/etcdserverpb/raft_internal";
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
import { isAuthRequest, type Applier } from "./apply/applier.js";
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
import type { SnapshotDatabases } from "./snapshot-databases.js";
import { ReceivedSnapshots } from "./received-snapshots.js";
import type { RequestTrace } from "./request-trace.js";
import type { RequestContext } from "./request-context.js";
import type { StorePort, WriteSession } from "./store-port.js";
import { PeerMessageRefusedError, type MergedSnapshot, type PeerHandler } from "./transport-port.js";
import { AuthApplier, checkTxnPermitted } from "./auth/auth-applier.js";
import { AuthStore, BCRYPT_COST_DEFAULT, NO_AUTH_INFO, ROOT_USER, type AuthInfo } from "./auth/auth-store.js";
import { noTokenProvider } from "./auth/token-provider.js";

/** The etcd API version etcd-ts serves; clients gate features on it. */
export const ETCD_API_VERSION = "3.4.23";
export const CLUSTER_VERSION = "3.4.0";
/** How often the leader re-decides the cluster version (etcd: the peer write timeout less 1 s). */
const MONITOR_VERSION_INTERVAL_MS = 4000;
/**
 * Election timeouts in a row without a leader after which the streams that require one are ended
 * (etcd's maxNoLeaderCnt): reconnecting a stream costs more than refusing a new call.
 */
const MAX_NO_LEADER_CHECKS = 3;
/** How often, and for how long, a starting member looks for its peers to fast-forward its first election (etcd: 50 ms, rafthttp's 5 s read timeout). */
const TICK_ADVANCE_POLL_MS = 50;
const TICK_ADVANCE_WAIT_MS = 5000;

/** Heartbeat ticks in one election timeout (etcd's ElectionTicks), at least 2. */
export function electionTicksFor(electionMs: number, heartbeatMs: number): number {
  return Math.max(2, Math.round(electionMs / heartbeatMs));
}

export interface EtcdServerOptions {
  memberId: bigint;
  clusterId: bigint;
  name: string;
  clientUrls: string[];
  maxRequestBytes: number;
  maxTxnOps: number;
  electionMs: number;
  heartbeatMs: number;
  /**
   * A new cluster's other members from --initial-cluster: the transport's peers until the
   * membership (in the log's first entries) is applied, as etcd's NewServer adds them.
   */
  initialPeers?: readonly { id: bigint; peerUrls: readonly string[] }[];
  /** --initial-election-tick-advance: fast-forward the first election once the peers are connected (default true). */
  initialElectionTickAdvance?: boolean;
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
  /** --client-cert-auth: a verified client certificate's common name is the user (without a token). */
  clientCertAuth?: boolean;
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
  /** Users, roles and tokens, loaded from the backend (absent: an empty store without tokens). */
  auth?: AuthStore;
  /** The databases received with leaders' snapshots, kept on disk (absent: none are kept). */
  snapshotDatabases?: SnapshotDatabases;
}

/** Counters the member keeps for etcd's etcd_server_* metrics (all only grow). */
export interface MemberStats {
  /** Leaders seen: a known leader other than the one before (etcd_server_leader_changes_seen_total). */
  leaderChanges: number;
  /** Proposals dropped, timed out or refused as stopped (etcd_server_proposals_failed_total). */
  proposalsFailed: number;
  /** ReadIndex rounds that timed out (etcd_server_slow_read_indexes_total). */
  slowReadIndexes: number;
  /** Linearizable reads those rounds failed (etcd_server_read_indexes_failed_total). */
  readIndexesFailed: number;
  /** Expired leases this member revoked as leader (etcd_debugging_server_lease_expired_total). */
  leasesExpired: number;
  /** Entries that took over 100 ms to apply (etcd_server_slow_apply_total). */
  slowApplies: number;
  /** Learners promoted by this member as leader (etcd_server_learner_promote_successes). */
  learnerPromoteSuccesses: number;
  /** Promotions this member refused as leader, by reason (etcd_server_learner_promote_failures). */
  learnerPromoteFailures: ReadonlyMap<string, number>;
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
  private readonly isAlarmRaised: (alarm: AlarmType) => boolean;
  /** Users, roles, permissions, and the token provider. */
  readonly auth: AuthStore;
  private readonly receivedSnapshots: ReceivedSnapshots;
  private stopped = false;
  private published = false;
  private versionUpdating = false;
  private versionTimer: TimerHandle | undefined;
  private leaderCheckTimer: TimerHandle | undefined;
  private tickAdvanceTimer: TimerHandle | undefined;
  /** Consecutive election-timeout checks that found no leader (etcd's monitorLeader). */
  private noLeaderChecks = 0;
  private readonly leaderLostListeners = new Set<() => void>();
  /** The peers handed to the transport, with their peer URLs joined. */
  private transportPeers = new Map<bigint, string>();
  private campaignAfterAdvance = false;
  /** The leader the last soft state named (0n: none). */
  private lastLead = 0n;
  private leaderChanges = 0;
  private promoteSuccesses = 0;
  /** Failed promotions by reason (the error's text; at most 16 and "other"). */
  private readonly promoteFailures = new Map<string, number>();
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
    this.auth = deps.auth ?? new AuthStore({ bcryptCost: BCRYPT_COST_DEFAULT }, { tokens: noTokenProvider(), logger: logger.named("auth") });
    this.proposer = new Proposer(options, { raft, clock });
    this.receivedSnapshots = new ReceivedSnapshots(deps.snapshotDatabases);
    this.applyLoop = new ApplyLoop(
      {
        snapshotCount: options.snapshotCount,
        snapshotCatchUpEntries: options.snapshotCatchUpEntries ?? 5000,
        maxSnapshots: options.maxSnapshots,
      },
      {
        store,
        proposer: this.proposer,
        applier: (req, index) => this.applierFor(req, index),
        raft,
        membership,
        alarms,
        lessor,
        leaseRecords: deps.leaseRecords,
        snapshotImages: this.receivedSnapshots,
        auth: this.auth,
        onConfChange: (cc) => this.onConfChange(cc),
        onWriteFailed: (err) => raft.fail("apply failed: a backend write failed", { error: String(err) }),
        logger,
        observeApplied: deps.observeApplied,
      },
      resumeFrom.index,
      resumeFrom.confState,
    );
    this.baseApplier = new BackendApplier({ store, lessor, membership, alarms });
    this.isAlarmRaised = (a) => alarms.isRaised(a);
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
    this.leaseClock = new LeaseClock(
      { tickMs: options.leaseTickMs ?? 500 },
      { lessor, proposer: this.proposer, isLeader: () => this.isLeader, internalHeader: () => this.rootHeader(), clock, logger },
    );
    this.admin = new MemberAdmin(options, {
      raft, proposer: this.proposer, membership, clock, stopped: () => this.stopped,
      activity: deps.peerActivity, leaderClient: deps.leaderClient,
    });
    this.v2Sync = new V2Sync({ tickMs: 500 }, {
      isLeader: () => this.isLeader, hasTtlKeys: () => membership.v2.hasTtlKeys(), proposeV2: (r) => this.proposer.proposeV2(r), clock, logger,
    });
  }

  /**
   * Defragments this member's backend (etcd's Maintenance.Defragment) and samples its size for
   * the quota at once, so a NOSPACE alarm disarmed right after is not raised again by a stale size.
   */
  async defragment(): Promise<void> {
    await this.store.defragment?.();
    await this.quota.refresh();
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

  /**
   * Calls `listener` once, when this member has known no leader for MAX_NO_LEADER_CHECKS election
   * timeouts in a row (etcd's monitorLeader, which then cancels the client streams that asked for a
   * leader). Returns the unsubscribe.
   */
  onLeaderLongLost(listener: () => void): () => void {
    this.leaderLostListeners.add(listener);
    return () => this.leaderLostListeners.delete(listener);
  }

  private checkLeader(): void {
    if (this.raft.leader !== 0n) {
      this.noLeaderChecks = 0;
      return;
    }
    if (++this.noLeaderChecks < MAX_NO_LEADER_CHECKS || this.leaderLostListeners.size === 0) return;
    const listeners = [...this.leaderLostListeners];
    this.leaderLostListeners.clear();
    for (const l of listeners) l();
  }

  /**
   * The applier chain for one entry (see applier.ts). With auth off, the auth layer checks nothing
   * for the key-space requests: they go straight to the alarm layers, and a member with no alarm
   * raised builds nothing per entry. Auth requests always get the auth layer (Authenticate uses
   * the entry's index; enable and disable need it either way).
   */
  private applierFor(req: InternalRaftRequest, index: number): Applier {
    const base = !this.auth.enabled && !isAuthRequest(req)
      ? this.baseApplier
      : new AuthApplier(this.baseApplier, { auth: this.auth, lessor: this.deps.lessor }, authInfoOf(req), index);
    return applierForAlarms(base, this.isAlarmRaised);
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

  /** The member's counters for its metrics (see MemberStats); cheap to read. */
  get stats(): MemberStats {
    return {
      leaderChanges: this.leaderChanges,
      proposalsFailed: this.proposer.failed,
      slowReadIndexes: this.reads.slowRounds,
      readIndexesFailed: this.reads.failedReads,
      leasesExpired: this.leaseClock.expired,
      slowApplies: this.applyLoop.slowApplies,
      learnerPromoteSuccesses: this.promoteSuccesses,
      learnerPromoteFailures: this.promoteFailures,
    };
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
    this.leaderCheckTimer = this.deps.clock.setInterval(() => this.checkLeader(), this.options.electionMs);
    // With entries still to apply, conf changes among them campaign after their advance().
    const status = this.raft.status();
    if (status.applied >= status.hardState.commit) this.campaignIfAlone();
    this.adjustTicks();
  }

  /**
   * etcd's adjustTicks for a member of a larger cluster: once at least two peers are connected
   * (polled every 50 ms for up to 5 s), the election clock jumps to two ticks short of the
   * election timeout, so the first election comes 2 to 11 ticks later instead of 10 to 20. Two
   * short, not one, leaves room for a leader's heartbeat still on its way. A lone voter campaigns
   * at once instead (campaignIfAlone).
   */
  private adjustTicks(): void {
    // The raft configuration, not the membership: a new cluster's members are only in the log yet.
    const members = (): bigint[] => {
      const cs = this.raft.status().confState;
      return [...cs.voters, ...cs.learners];
    };
    if (members().length <= 1) return;
    const electionTicks = electionTicksFor(this.options.electionMs, this.options.heartbeatMs);
    if (this.options.initialElectionTickAdvance === false) {
      this.deps.logger.info("skipping initial election tick advance", { "election-ticks": electionTicks });
      return;
    }
    const activity = this.deps.peerActivity;
    if (activity === undefined) return;
    this.deps.logger.info("starting initial election tick advance", { "election-ticks": electionTicks });
    const self = this.options.memberId;
    let waitedMs = 0;
    const poll = (): void => {
      this.tickAdvanceTimer = undefined;
      if (this.stopped) return;
      waitedMs += TICK_ADVANCE_POLL_MS;
      let active = 0;
      for (const id of members()) if (id !== self && activity.activeSince(id) !== undefined) active++;
      if (active > 1) {
        const ticks = electionTicks - 2;
        this.deps.logger.info("initialized peer connections; fast-forwarding election ticks", {
          "local-member-id": self.toString(16),
          "forward-ticks": ticks,
          "forward-duration": `${ticks * this.options.heartbeatMs}ms`,
          "election-ticks": electionTicks,
          "election-timeout": `${electionTicks * this.options.heartbeatMs}ms`,
          "active-remote-members": active,
        });
        this.raft.advanceTicks(ticks);
        return;
      }
      if (waitedMs < TICK_ADVANCE_WAIT_MS) this.tickAdvanceTimer = this.deps.clock.setTimeout(poll, TICK_ADVANCE_POLL_MS);
    };
    this.tickAdvanceTimer = this.deps.clock.setTimeout(poll, TICK_ADVANCE_POLL_MS);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.versionTimer !== undefined) this.deps.clock.clearTimeout(this.versionTimer);
    if (this.leaderCheckTimer !== undefined) this.deps.clock.clearInterval(this.leaderCheckTimer);
    if (this.tickAdvanceTimer !== undefined) this.deps.clock.clearTimeout(this.tickAdvanceTimer);
    this.leaderLostListeners.clear();
    this.leaseClock.stop();
    this.v2Sync.stop();
    this.quota.stop();
    this.deps.lessor.stop();
    this.auth.tokens.stop();
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
    const members = this.deps.membership.list();
    // Before a new cluster's first entries are applied its membership is empty: peers that dial
    // this member then would be refused ("failed to find remote peer in cluster").
    for (const m of members.length > 0 ? members : (this.options.initialPeers ?? [])) {
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

  /** The leader the last leader-change log line named (0: none). */
  private loggedLead = 0n;

  onReadStates(states: ReadState[]): void {
    this.reads.onReadStates(states);
  }

  onSoftState(state: SoftState): void {
    if (state.lead !== this.loggedLead) {
      // etcd's raft node reports every change of leader in these words.
      const self = this.options.memberId.toString(16);
      const term = this.raft.status().hardState.term;
      const [from, to] = [this.loggedLead.toString(16), state.lead.toString(16)];
      if (this.loggedLead === 0n) this.deps.logger.info(`raft.node: ${self} elected leader ${to} at term ${term}`, { "raft-term": term });
      else if (state.lead === 0n) this.deps.logger.info(`raft.node: ${self} lost leader ${from} at term ${term}`, { "raft-term": term });
      else this.deps.logger.info(`raft.node: ${self} changed leader from ${from} to ${to} at term ${term}`, { "raft-term": term });
      this.loggedLead = state.lead;
    }
    // As etcd counts them: a known leader different from the one last seen.
    if (state.lead !== 0n && state.lead !== this.lastLead) this.leaderChanges++;
    this.lastLead = state.lead;
    if (state.role === StateRole.Leader) {
      this.deps.lessor.promote(this.options.electionMs);
    } else if (this.deps.lessor.isPrimary()) {
      this.deps.lessor.demote();
    }
    // Proposals held while no leader was known go now (proposer.ts).
    if (state.lead !== 0n) this.proposer.leaderFound();
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
      const path = `/0/members/${memberId.toString(16)}/attributes`;
      await this.proposer.proposeV2({ Method: "PUT", Path: path, Val: encodeAttributes(name, clientUrls) });
      this.deps.logger.info("published local member to cluster through raft", {
        "local-member-id": memberId,
        "local-member-attributes": `{Name:${name} ClientURLs:[${clientUrls.join(" ")}]}`,
        "request-path": path,
        "cluster-id": this.options.clusterId,
      });
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
      // etcd names cluster versions by major.minor in these lines.
      const minor = (v: string): string => v.split(".").slice(0, 2).join(".");
      if (current === "") this.deps.logger.info("setting up initial cluster version", { "cluster-version": minor(next) });
      else this.deps.logger.info("updating cluster version", { from: minor(current), to: minor(next) });
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

  async range(req: RangeRequest, ctx?: RequestContext): Promise<RangeResponse> {
    if (!req.serializable) await this.linearizableRead(ctx?.trace);
    const resp = await this.serialize(ctx, (ai) => this.auth.checkRange(ai, req.key, req.rangeEnd), () => applyRange(this.deps.store, req));
    resp.header = this.header(Number(resp.header!.revision));
    return resp;
  }

  put(req: PutRequest, ctx?: RequestContext): Promise<PutResponse> {
    // Not async (no frame of its own per put): a quota refusal is a rejection all the same.
    try {
      this.quota.check(putCostBytes(req.key, req.value));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.proposeAs(ctx, raftRequest({ put: req })).then(resultValue) as Promise<PutResponse>;
  }

  async deleteRange(req: DeleteRangeRequest, ctx?: RequestContext): Promise<DeleteRangeResponse> {
    const r = await this.proposeAs(ctx, raftRequest({ deleteRange: req }));
    return r.value as DeleteRangeResponse;
  }

  async txn(req: TxnRequest, ctx?: RequestContext): Promise<TxnResponse> {
    if (isTxnReadOnly(req)) {
      // Read-only txns are served like ranges: no log entry.
      if (!allRangesSerializable(req)) await this.linearizableRead(ctx?.trace);
      const store = this.deps.store;
      const resp = await this.serialize(
        ctx,
        (ai) => checkTxnPermitted(this.auth, ai, req, true),
        () => applyTxn(readOnlyWriter(store), req, txnChecks(this.deps, store.currentRevision)),
      );
      resp.header = this.header();
      return resp;
    }
    this.quota.check(txnCostBytes(req));
    const ai = await this.authInfo(ctx);
    // The operations of nested txns are checked here: apply checks only the top level (as etcd 3.4).
    if (this.auth.enabled && hasNestedTxn(req)) checkTxnPermitted(this.auth, ai ?? NO_AUTH_INFO, req, true);
    const r = await this.proposer.propose(withAuthHeader(raftRequest({ txn: req }), ai), ctx?.trace);
    return r.value as TxnResponse;
  }

  async compact(req: CompactionRequest, ctx?: RequestContext): Promise<ResponseHeader> {
    const r = await this.proposeAs(ctx, raftRequest({ compaction: req }));
    if (req.physical && r.physical) await r.physical;
    return r.value as ResponseHeader;
  }

  /**
   * The wait of a linearizable range or read-only txn (broken on followers by a testing knob),
   * reported to a traced request as its "read index" stage.
   */
  private linearizableRead(trace: RequestTrace | undefined): Promise<void> {
    if (this.options.unsafeTestingKnobs?.followerReadsWithoutReadIndex === true && !this.isLeader) return Promise.resolve();
    const wait = this.reads.notify();
    return trace === undefined ? wait : trace.stage("read index", wait);
  }

  /**
   * Resolves true once `index` is applied, false when that takes longer than the request timeout
   * or the member stops first (a simple token's index is checked so).
   */
  waitAppliedWithin(index: number): Promise<boolean> {
    if (this.applyLoop.applied >= index) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = this.deps.clock.setTimeout(() => resolve(false), this.options.requestTimeoutMs);
      void this.applyLoop.waitApplied(index).then(() => {
        this.deps.clock.clearTimeout(timer);
        resolve(!this.stopped);
      });
    });
  }

  /** Resolves when a read served now would be linearizable. @throws ServerError Timeout/Stopped */
  linearizableReadNotify(): Promise<void> {
    return this.reads.notify();
  }

  // ---- leases ------------------------------------------------------------------------------

  async leaseGrant(ttlSeconds: number, requestedId: bigint, ctx?: RequestContext): Promise<LeaseGrantResponse> {
    this.quota.check(LEASE_COST_BYTES);
    let id = requestedId;
    if (id === 0n) {
      do id = this.proposer.nextLeaseId(); while (this.deps.lessor.lookup(id) !== undefined);
    }
    const r = await this.proposeAs(ctx, raftRequest({ leaseGrant: { TTL: BigInt(ttlSeconds), ID: id } }));
    return r.value as LeaseGrantResponse;
  }

  async leaseRevoke(id: bigint, ctx?: RequestContext): Promise<ResponseHeader> {
    const r = await this.proposeAs(ctx, raftRequest({ leaseRevoke: { ID: id } }));
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
  async alarm(req: AlarmRequest, ctx?: RequestContext): Promise<AlarmMember[]> {
    const r = await this.proposeAs(ctx, raftRequest({ alarm: req }));
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

  // ---- auth ----------------------------------------------------------------------------------

  /**
   * Who a request acts as (etcd's AuthInfoFromCtx): the user its token names, else with
   * --client-cert-auth its certificate's common name at the current auth revision; undefined
   * without either.
   * @throws ServerError InvalidAuthToken (a token this member does not accept)
   */
  async authInfo(ctx?: RequestContext): Promise<AuthInfo | undefined> {
    if (ctx === undefined) return undefined;
    if (ctx.token !== undefined) {
      const ai = await this.auth.tokens.info(ctx.token, this.auth.revision);
      if (ai === undefined) {
        this.deps.logger.warn("invalid auth token", { token: ctx.token });
        throw serverError("InvalidAuthToken");
      }
      return ai;
    }
    if (this.options.clientCertAuth === true && ctx.certCommonName !== undefined && ctx.certCommonName !== "") {
      return { username: ctx.certCommonName, revision: this.auth.revision };
    }
    return undefined;
  }

  /**
   * Requests only root may make while auth is on (maintenance, membership).
   * @throws ServerError InvalidAuthToken, UserEmpty, UserNotFound, PermissionDenied
   */
  async checkAdmin(ctx?: RequestContext): Promise<void> {
    const ai = await this.authInfo(ctx);
    this.auth.checkAdmin(ai);
  }

  /**
   * Whether the caller may watch [key, rangeEnd) (read permission). The watch service passes
   * etcd's normalised key and end (an end of "\x00" as empty).
   * @throws ServerError InvalidAuthToken, UserEmpty, AuthOldRevision, PermissionDenied
   */
  async checkWatch(ctx: RequestContext | undefined, key: Buffer, rangeEnd: Buffer | undefined): Promise<void> {
    const ai = (await this.authInfo(ctx)) ?? NO_AUTH_INFO;
    this.auth.checkRange(ai, key, rangeEnd);
  }

  /**
   * Checks a user's password and issues a token through the log (every member registers a simple
   * token as it applies the entry); retried when the auth store changed meanwhile, as etcd does.
   * @throws ServerError AuthNotEnabled, AuthFailed, NoPasswordUser, Timeout, Stopped
   */
  async authenticate(name: string, password: string, ctx?: RequestContext): Promise<string> {
    await this.linearizableRead(ctx?.trace);
    for (;;) {
      let checked: number;
      try {
        checked = await this.auth.checkPassword(name, password);
      } catch (err) {
        if ((err as { code?: unknown }).code !== "AuthNotEnabled") this.deps.logger.warn("invalid authentication was requested", { user: name, error: String(err) });
        throw err;
      }
      const simpleToken = this.auth.tokens.genTokenPrefix();
      const r = await this.proposeAs(ctx, raftRequest({ authenticate: { name, password: "", simpleToken } }));
      if (checked === this.auth.revision) return (r.value as { token: string }).token;
      this.deps.logger.info("revision when password checked became stale; retrying");
    }
  }

  /**
   * One of the auth administration requests (the InternalRaftRequest field `fields` sets), through
   * the log; resolves with its apply result. Root-only ones are checked at apply.
   */
  async authRequest(fields: Partial<InternalRaftRequest>, ctx?: RequestContext): Promise<unknown> {
    return (await this.proposeAs(ctx, raftRequest(fields))).value;
  }

  /** Proposes `req` as the caller's user. @throws ServerError InvalidAuthToken, or what propose throws */
  private proposeAs(ctx: RequestContext | undefined, req: InternalRaftRequest): Promise<ApplyResult> {
    // Without a token or a certificate name there is no user to find: no extra turn of the loop.
    if (ctx === undefined || (ctx.token === undefined && (this.options.clientCertAuth !== true || !ctx.certCommonName))) {
      return this.proposer.propose(req, ctx?.trace);
    }
    return this.authInfo(ctx).then((ai) => this.proposer.propose(withAuthHeader(req, ai), ctx.trace));
  }

  /**
   * A read served outside the log (etcd's doSerialize): the permission check, the read, then a
   * check that the auth store did not change meanwhile.
   * @throws ServerError InvalidAuthToken, UserEmpty, PermissionDenied, AuthOldRevision
   */
  private async serialize<T>(ctx: RequestContext | undefined, check: (ai: AuthInfo) => void, get: () => Promise<T>): Promise<T> {
    const ai = (await this.authInfo(ctx)) ?? NO_AUTH_INFO;
    check(ai);
    const result = await get();
    if (ai.revision !== 0 && ai.revision !== this.auth.revision) throw serverError("AuthOldRevision");
    return result;
  }

  /** The header of the member's own requests while auth is on: root, at the current revision. */
  private rootHeader(): RequestHeader | undefined {
    if (!this.auth.enabled) return undefined;
    return { ID: 0n, username: ROOT_USER, authRevision: BigInt(this.auth.revision) };
  }

  // ---- membership --------------------------------------------------------------------------

  // As etcd, membership changes need the root role while auth is on (checked before proposing).

  async memberAdd(peerUrls: string[], isLearner: boolean, ctx?: RequestContext): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    await this.checkAdmin(ctx);
    return this.admin.add(peerUrls, isLearner);
  }

  async memberRemove(id: bigint, ctx?: RequestContext): Promise<MemberRecord[]> {
    await this.checkAdmin(ctx);
    return this.admin.remove(id);
  }

  async memberUpdate(id: bigint, peerUrls: string[], ctx?: RequestContext): Promise<MemberRecord[]> {
    await this.checkAdmin(ctx);
    return this.admin.update(id, peerUrls);
  }

  async memberPromote(id: bigint, ctx?: RequestContext): Promise<MemberRecord[]> {
    await this.checkAdmin(ctx);
    // Counted as etcd counts them: attempts this member decides as leader (forwarded ones are
    // the leader's to count).
    const asLeader = this.isLeader;
    const done = this.admin.promote(id);
    if (!asLeader) return done;
    return done.then(
      (members) => {
        this.promoteSuccesses++;
        return members;
      },
      (err: unknown) => {
        const text = err instanceof Error ? err.message : String(err);
        // At most 16 reasons get their own series; later new ones share "other".
        const reason = this.promoteFailures.has(text) || this.promoteFailures.size < 16 ? text : "other";
        this.promoteFailures.set(reason, (this.promoteFailures.get(reason) ?? 0) + 1);
        throw err;
      },
    );
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

/** An apply result's value (the proposer already turned an error into a rejection). */
function resultValue(r: ApplyResult): unknown {
  return r.value;
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

/** Who an entry acts as: its header's user and auth revision. */
function authInfoOf(req: InternalRaftRequest): AuthInfo {
  return req.header === undefined ? NO_AUTH_INFO : { username: req.header.username, revision: Number(req.header.authRevision) };
}

/** `req` with the caller's user and auth revision in its header (the proposer adds the ID). */
function withAuthHeader(req: InternalRaftRequest, ai: AuthInfo | undefined): InternalRaftRequest {
  if (ai !== undefined) req.header = { ID: 0n, username: ai.username, authRevision: BigInt(ai.revision) };
  return req;
}

function hasNestedTxn(req: TxnRequest): boolean {
  return [...req.success, ...req.failure].some((op) => op.requestTxn !== undefined);
}

function allRangesSerializable(req: TxnRequest): boolean {
  for (const op of [...req.success, ...req.failure]) {
    if (op.requestRange && !op.requestRange.serializable) return false;
    if (op.requestTxn && !allRangesSerializable(op.requestTxn)) return false;
  }
  return true;
}
