/**
 * The Raft state machine (Ongaro & Ousterhout, "In Search of an Understandable Consensus
 * Algorithm", and Ongaro's thesis for pre-vote, check-quorum, leader transfer, ReadIndex and
 * single-server membership changes).
 *
 * Pure and synchronous: inputs are tick() and step(message); outputs accumulate in `msgs`,
 * `readStates` and the log's unstable tail, which RawNode hands to the driver as a Ready.
 *
 * Roles are data: each role is a pair of handlers (`tick`, `step`) swapped by the become* methods.
 */
import {
  ConfChangeType, EntryType, MessageType, NONE, StateRole, emptyMessage,
  type ConfChange, type ConfState, type Entry, type HardState, type Message, type NodeId,
  type ReadState, type Snapshot, type SoftState,
} from "./types.js";
import { RaftLog } from "./raft-log.js";
import { ErrCompacted, ErrSnapshotTemporarilyUnavailable, type Storage } from "./storage.js";
import { Progress, ProgressTracker } from "./progress.js";
import { ReadOnly, readRequestCtx } from "./read-only.js";
import type { Rng } from "./rng.js";
import { decodeConfChange } from "./conf-change-codec.js";
import { invariant, isLocalMsg, isResponseMsg, payloadSizeBytes, voteRespType } from "./util.js";

/** A proposal (or read/transfer request) was not accepted; the caller may retry later. */
export class ErrProposalDropped extends Error {
  override name = "ErrProposalDropped";
  constructor(message = "raft proposal dropped") { super(message); }
}

export interface RaftLogger {
  info(msg: string, fields?: object): void;
  warn(msg: string, fields?: object): void;
}

const silentLogger: RaftLogger = { info() {}, warn() {} };

export interface RaftConfig {
  /** This member's ID (non-zero). */
  id: NodeId;
  /** Followers start an election after a randomized [electionTicks, 2*electionTicks) ticks of silence. */
  electionTicks: number;
  /** Leader sends heartbeats every heartbeatTicks ticks. Must be < electionTicks. */
  heartbeatTicks: number;
  /**
   * Last applied index when restarting: committed entries up to it are not handed out again.
   * Conf changes among them are then not re-applied either, and the configuration comes only
   * from Storage.initialState(); so either keep it at the index of the snapshot the storage was
   * restored from (as etcd does, re-applying later conf changes), or make initialState() return
   * the configuration as of `applied`.
   */
  applied?: number;
  /** Upper bound on the entries' size in one append message (at least one entry is always sent). */
  maxSizePerMsgBytes: number;
  /** Max append messages in flight to a follower in replicate state. */
  maxInflightMsgs: number;
  /** Leader drops proposals while this many payload bytes are uncommitted (0/undefined: no limit). */
  maxUncommittedEntriesBytes?: number;
  /** Bound on committed entries' size per Ready (default: maxSizePerMsgBytes). */
  maxCommittedSizePerReadyBytes?: number;
  /** Run a pre-election (§9.6 of the thesis) before bumping the term. */
  preVote: boolean;
  /** Leader steps down when it has not heard from a quorum in an election timeout; followers ignore votes while in a leader's lease. */
  checkQuorum: boolean;
  readOnlyOption?: "safe" | "lease-based";
  /** Followers drop proposals instead of forwarding them to the leader. */
  disableProposalForwarding?: boolean;
  /** Deliberately broken rules, ONLY for proving that the simulation's checkers can fail. */
  unsafeTestingKnobs?: {
    commitPreviousTermByCounting?: boolean;
    grantVoteWithoutLogCheck?: boolean;
    skipCheckQuorum?: boolean;
    /** A follower commits up to the leader's commit even beyond the entries it just received. */
    commitBeyondLastNewEntry?: boolean;
  };
}

type CampaignType = "pre-election" | "election" | "transfer";
/** Bound on ReadIndex requests a leader keeps waiting (beyond it, requests are dropped). */
const MAX_PENDING_READS = 65536;
/** Context of vote requests caused by a leader transfer: they override the receivers' lease. */
const CAMPAIGN_TRANSFER = new TextEncoder().encode("CampaignTransfer");

function isCampaignTransfer(ctx: Uint8Array): boolean {
  if (ctx.byteLength !== CAMPAIGN_TRANSFER.byteLength) return false;
  for (let i = 0; i < ctx.byteLength; i++) if (ctx[i] !== CAMPAIGN_TRANSFER[i]) return false;
  return true;
}

type StepFn = (r: Raft, m: Message) => void;
type TickFn = (r: Raft) => void;

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: StateRole = StateRole.Follower;
  readonly log: RaftLog;
  readonly prs: ProgressTracker;
  msgs: Message[] = [];
  readStates: ReadState[] = [];

  /** Member we are transferring leadership to (leader only), or NONE. */
  leadTransferee: NodeId = NONE;
  /** Index of the latest conf change entry proposed (leader): only one may be unapplied at a time. */
  pendingConfIndex = 0;
  /** Payload bytes appended by this leader and not yet committed. */
  uncommittedSizeBytes = 0;
  readOnly = new ReadOnly();
  /** ReadIndex requests received before this leader committed an entry of its term. */
  private pendingReadIndexMessages: Message[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;

  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  readonly maxMsgSizeBytes: number;
  readonly maxUncommittedSizeBytes: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly readOnlyOption: "safe" | "lease-based";
  readonly disableProposalForwarding: boolean;
  readonly knobs: NonNullable<RaftConfig["unsafeTestingKnobs"]>;
  private readonly rng: Rng;
  readonly logger: RaftLogger;

  private tickFn: TickFn = tickElection;
  private stepFn: StepFn = stepFollower;

  constructor(c: RaftConfig, storage: Storage, rng: Rng, logger?: RaftLogger) {
    invariant(c.id !== NONE, "cannot use none as id");
    invariant(c.heartbeatTicks > 0, "heartbeat tick must be greater than 0");
    invariant(c.electionTicks > c.heartbeatTicks, "election tick must be greater than heartbeat tick");
    invariant(c.maxInflightMsgs > 0, "max inflight messages must be greater than 0");
    invariant(c.maxSizePerMsgBytes > 0, "maxSizePerMsgBytes must be greater than 0");
    invariant(c.readOnlyOption !== "lease-based" || c.checkQuorum, "checkQuorum must be enabled when readOnlyOption is lease-based");
    this.id = c.id;
    this.rng = rng;
    this.logger = logger ?? silentLogger;
    this.electionTimeout = c.electionTicks;
    this.heartbeatTimeout = c.heartbeatTicks;
    this.maxMsgSizeBytes = c.maxSizePerMsgBytes;
    this.maxUncommittedSizeBytes = c.maxUncommittedEntriesBytes && c.maxUncommittedEntriesBytes > 0 ? c.maxUncommittedEntriesBytes : Number.POSITIVE_INFINITY;
    this.checkQuorum = c.checkQuorum;
    this.preVote = c.preVote;
    this.readOnlyOption = c.readOnlyOption ?? "safe";
    this.disableProposalForwarding = c.disableProposalForwarding ?? false;
    this.knobs = c.unsafeTestingKnobs ?? {};
    this.log = new RaftLog(storage, c.maxCommittedSizePerReadyBytes && c.maxCommittedSizePerReadyBytes > 0 ? c.maxCommittedSizePerReadyBytes : c.maxSizePerMsgBytes);
    this.prs = new ProgressTracker(c.maxInflightMsgs);

    const { hardState, confState } = storage.initialState();
    this.applyConfStateFresh(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
    this.logger.info("raft member started", {
      id: this.id, term: this.term, commit: this.log.committed, applied: this.log.applied,
      lastIndex: this.log.lastIndex(), lastTerm: this.log.lastTerm(), voters: confState.voters.map(String),
    });
  }

  // ---- state snapshots -------------------------------------------------------------------

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  private loadState(hs: HardState): void {
    invariant(hs.commit >= this.log.committed && hs.commit <= this.log.lastIndex(),
      () => `hardState commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`);
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  /** True when this member is a voter in its current configuration (so it may campaign). */
  promotable(): boolean {
    return this.prs.voters.has(this.id);
  }

  // ---- sending ---------------------------------------------------------------------------

  /** Queue `m` for the driver. Stamps `from` and (except for requests that must keep it) `term`. */
  send(m: Message): void {
    if (m.from === NONE) m.from = this.id;
    if (m.type === MessageType.Vote || m.type === MessageType.VoteResp ||
        m.type === MessageType.PreVote || m.type === MessageType.PreVoteResp) {
      invariant(m.term !== 0, () => `term should be set when sending ${MessageType[m.type]}`);
    } else {
      invariant(m.term === 0, () => `term should not be set when sending ${MessageType[m.type]} (was ${m.term})`);
      // Proposals and read requests forwarded to the leader carry no term: they are like local messages.
      if (m.type !== MessageType.Prop && m.type !== MessageType.ReadIndex) m.term = this.term;
    }
    invariant(m.to !== this.id || m.type === MessageType.ReadIndexResp, () => `sending ${MessageType[m.type]} to self`);
    this.msgs.push(m);
  }

  /**
   * Send an append (or, if the follower needs compacted entries, a snapshot) to `to`.
   * Returns whether a message was sent. With sendIfEmpty=false, nothing is sent when there are no
   * new entries.
   */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const m = emptyMessage(MessageType.App, to, NONE);
    let term: number | undefined;
    let ents: Entry[] | undefined;
    try {
      term = this.log.term(pr.next - 1);
      ents = this.log.entries(pr.next, this.maxMsgSizeBytes);
    } catch (e) {
      if (!(e instanceof ErrCompacted)) throw e;
      term = undefined;
    }
    if (term === undefined || ents === undefined) {
      // The follower needs entries we compacted: send our latest snapshot instead.
      if (!pr.recentActive) return false;
      let snap: Snapshot;
      try {
        snap = this.log.snapshot();
      } catch (e) {
        if (e instanceof ErrSnapshotTemporarilyUnavailable) return false;
        throw e;
      }
      invariant(snap.metadata.index !== 0, "need non-empty snapshot");
      m.type = MessageType.Snap;
      m.snapshot = snap;
      this.logger.info("sending snapshot", { to, index: snap.metadata.index, term: snap.metadata.term, match: pr.match });
      pr.becomeSnapshot(snap.metadata.index);
      this.send(m);
      return true;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    m.index = pr.next - 1;
    m.logTerm = term;
    m.entries = ents;
    m.commit = this.log.committed;
    if (ents.length > 0) {
      if (pr.state === "replicate") {
        const last = ents[ents.length - 1]!.index;
        pr.optimisticUpdate(last);
        pr.inflights.add(last);
      } else if (pr.state === "probe") {
        pr.probeSent = true;
      } else {
        invariant(false, () => `sending append in unhandled state ${pr.state}`);
      }
    }
    this.send(m);
    return true;
  }

  sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private sendHeartbeat(to: NodeId, ctx: Uint8Array | undefined): void {
    const pr = this.prs.progress.get(to)!;
    const m = emptyMessage(MessageType.Heartbeat, to, NONE);
    // Never tell a follower to commit beyond what it is known to have.
    m.commit = Math.min(pr.match, this.log.committed);
    if (ctx !== undefined) m.context = ctx;
    this.send(m);
  }

  bcastAppend(): void {
    for (const id of this.prs.ids()) if (id !== this.id) this.sendAppend(id);
  }

  bcastHeartbeat(ctx?: Uint8Array): void {
    const c = ctx ?? this.readOnly.inflightCtx();
    for (const id of this.prs.ids()) if (id !== this.id) this.sendHeartbeat(id, c);
  }

  // ---- commit ----------------------------------------------------------------------------

  /** Advance the commit index to what a quorum matched, if that entry is from our term (§5.4.2). */
  maybeCommit(): boolean {
    return this.log.maybeCommit(this.prs.committed(), this.term, this.knobs.commitPreviousTermByCounting === true);
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.zeroTermOnOutOfRange(this.log.committed) === this.term;
  }

  // ---- role transitions ------------------------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.prs.resetVotes();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs.progress) {
      const fresh = new Progress(last + 1, this.prs.maxInflightMsgs, pr.isLearner, pr.recentActive);
      // We count our own log only as far as it is durable (see persistedTo()).
      if (id === this.id) fresh.match = this.stableLastIndex();
      this.prs.progress.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSizeBytes = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + this.rng.nextInt(this.electionTimeout);
  }

  pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.stepFn = stepFollower;
    this.reset(term);
    this.tickFn = tickElection;
    this.lead = lead;
    this.role = StateRole.Follower;
    this.logger.info(`${this.id.toString(16)} became follower at term ${this.term}`, { id: this.id, term: this.term, lead });
  }

  becomeCandidate(): void {
    invariant(this.role !== StateRole.Leader, "invalid transition [leader -> candidate]");
    this.stepFn = stepCandidate;
    this.reset(this.term + 1);
    this.tickFn = tickElection;
    this.vote = this.id;
    this.role = StateRole.Candidate;
    this.logger.info(`${this.id.toString(16)} became candidate at term ${this.term}`, { id: this.id, term: this.term });
  }

  becomePreCandidate(): void {
    invariant(this.role !== StateRole.Leader, "invalid transition [leader -> pre-candidate]");
    // A pre-candidate keeps its term and vote: nothing is persisted by a pre-election.
    this.stepFn = stepCandidate;
    this.prs.resetVotes();
    this.tickFn = tickElection;
    this.lead = NONE;
    this.role = StateRole.PreCandidate;
    this.logger.info(`${this.id.toString(16)} became pre-candidate at term ${this.term}`, { id: this.id, term: this.term });
  }

  becomeLeader(): void {
    invariant(this.role !== StateRole.Follower, "invalid transition [follower -> leader]");
    this.stepFn = stepLeader;
    this.reset(this.term);
    this.tickFn = tickHeartbeat;
    this.lead = this.id;
    this.role = StateRole.Leader;
    const self = this.prs.progress.get(this.id);
    if (self) self.becomeReplicate();
    // Conservatively treat any unapplied entry as a possible conf change.
    this.pendingConfIndex = this.log.lastIndex();
    // §5.4.2 / §8: an entry of our own term, so earlier ones (and reads) can be committed.
    const ok = this.appendEntry([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    invariant(ok, "empty entry was dropped");
    // The empty entry does not count towards the uncommitted limit.
    this.uncommittedSizeBytes = 0;
    this.logger.info(`${this.id.toString(16)} became leader at term ${this.term}`, { id: this.id, term: this.term });
  }

  /** Leader: append entries at our term; false (nothing appended) if over the uncommitted limit. */
  appendEntry(es: Entry[]): boolean {
    const li = this.log.lastIndex();
    const ents = es.map((e, i) => ({ ...e, term: this.term, index: li + 1 + i }));
    if (!this.increaseUncommittedSize(ents)) {
      this.logger.warn("appending new entries would exceed the uncommitted entry size limit; dropping proposal", { id: this.id });
      return false;
    }
    this.log.append(ents);
    // Our own copy counts towards the quorum once the driver persisted it: persistedTo().
    return true;
  }

  /** Last index of the part of our log that the driver reported durable. */
  stableLastIndex(): number {
    return Math.min(this.log.lastIndex(), this.log.unstable.offset - 1);
  }

  /**
   * The driver persisted our log through (index, term). A leader now counts that entry in its own
   * acknowledgement (thesis §10.2.1: the leader may write its log in parallel with replicating
   * it, but it only counts itself once its write is durable), which may commit entries.
   */
  persistedTo(index: number, term: number): void {
    if (this.role !== StateRole.Leader || !this.log.matchTerm(index, term)) return;
    const self = this.prs.progress.get(this.id);
    if (self === undefined || !self.maybeUpdate(index)) return;
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    }
  }

  private increaseUncommittedSize(ents: Entry[]): boolean {
    let s = 0;
    for (const e of ents) s += payloadSizeBytes(e);
    // Always allow one proposal while nothing is uncommitted, however large.
    if (this.uncommittedSizeBytes > 0 && s > 0 && this.uncommittedSizeBytes + s > this.maxUncommittedSizeBytes) return false;
    this.uncommittedSizeBytes += s;
    return true;
  }

  /** Committed entries left the leader's pipeline. */
  reduceUncommittedSize(ents: Entry[]): void {
    if (this.uncommittedSizeBytes === 0) return;
    let s = 0;
    for (const e of ents) s += payloadSizeBytes(e);
    this.uncommittedSizeBytes = s > this.uncommittedSizeBytes ? 0 : this.uncommittedSizeBytes - s;
  }

  // ---- elections -------------------------------------------------------------------------

  hup(t: CampaignType): void {
    if (this.role === StateRole.Leader) return;
    if (!this.promotable()) {
      this.logger.warn("is unpromotable and can not campaign", { id: this.id });
      return;
    }
    // A member must not campaign while it has committed-but-unapplied conf changes (§4.1 of the
    // thesis: it might not know its own configuration yet).
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    if (lo <= this.log.committed && this.log.unstable.snapshot === undefined) {
      const ents = this.log.slice(lo, this.log.committed + 1, Number.POSITIVE_INFINITY);
      if (ents.some((e) => e.type === EntryType.ConfChange)) {
        this.logger.warn("cannot campaign: pending configuration changes to apply", { id: this.id, term: this.term });
        return;
      }
    }
    this.logger.info(`${this.id.toString(16)} is starting a new election at term ${this.term}`, { id: this.id, term: this.term });
    this.campaign(t);
  }

  campaign(t: CampaignType): void {
    let term: number;
    let voteMsg: MessageType;
    if (t === "pre-election") {
      this.becomePreCandidate();
      voteMsg = MessageType.PreVote;
      // Pre-votes are asked for the term we would campaign in, without moving to it yet.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, voteRespType(voteMsg), true) === "won") {
      // Single voter: won right away.
      if (t === "pre-election") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    for (const id of this.prs.voterIds()) {
      if (id === this.id) continue;
      const m = emptyMessage(voteMsg, id, NONE);
      m.term = term;
      m.index = this.log.lastIndex();
      m.logTerm = this.log.lastTerm();
      if (t === "transfer") m.context = CAMPAIGN_TRANSFER;
      this.send(m);
    }
  }

  poll(id: NodeId, t: MessageType, granted: boolean): "won" | "lost" | "pending" {
    this.prs.recordVote(id, granted);
    const { granted: g, rejected, result } = this.prs.tallyVotes();
    this.logger.info("vote tally", { id: this.id, term: this.term, type: MessageType[t], granted: g, rejected });
    return result;
  }

  // ---- step ------------------------------------------------------------------------------

  /**
   * Process one message. Throws ErrProposalDropped when a proposal, transfer or read cannot be
   * accepted now; any other exception is a broken invariant.
   */
  step(m: Message): void {
    if (m.term === 0) {
      // Local message.
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = isCampaignTransfer(m.context);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // §9.6 / §4.2.3: we heard from a leader within the minimum election timeout; do not
          // let a disruptive member depose it.
          this.logger.info("ignoring vote request: lease is not expired", { id: this.id, from: m.from, term: this.term, msgTerm: m.term });
          return;
        }
      }
      if (m.type === MessageType.PreVote) {
        // Never change our term in response to a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // The term in a granted pre-vote response is the one we campaign for; we bump it when we win.
      } else {
        this.logger.info("received a message with higher term", { id: this.id, term: this.term, type: MessageType[m.type], from: m.from, msgTerm: m.term });
        if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
          this.becomeFollower(m.term, m.from);
        } else {
          this.becomeFollower(m.term, NONE);
        }
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A stale leader (for example, one that was partitioned): tell it our term so it steps
        // down. Otherwise a member that bumped its term while partitioned could never rejoin
        // when pre-vote/check-quorum keep the others from adopting its term.
        this.send(emptyMessage(MessageType.AppResp, m.from, NONE));
      } else if (m.type === MessageType.PreVote) {
        const resp = emptyMessage(MessageType.PreVoteResp, m.from, NONE);
        resp.term = this.term;
        resp.reject = true;
        this.send(resp);
      }
      // Other messages from older terms are ignored.
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.preVote ? "pre-election" : "election");
        return;
      case MessageType.Vote:
      case MessageType.PreVote: {
        // §5.2, §5.4.1: one vote per term, only for candidates whose log is at least as up-to-date.
        const canVote = this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.PreVote && m.term > this.term);
        const upToDate = this.knobs.grantVoteWithoutLogCheck === true || this.log.isUpToDate(m.index, m.logTerm);
        const resp = emptyMessage(voteRespType(m.type), m.from, NONE);
        if (canVote && upToDate) {
          this.logger.info("cast vote", { id: this.id, term: this.term, type: MessageType[m.type], for: m.from, msgTerm: m.term });
          // The response carries the request's term: a pre-candidate counts grants for term+1.
          resp.term = m.term;
          this.send(resp);
          if (m.type === MessageType.Vote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.logger.info("rejected vote", { id: this.id, term: this.term, type: MessageType[m.type], from: m.from, msgTerm: m.term });
          resp.term = this.term;
          resp.reject = true;
          this.send(resp);
        }
        return;
      }
      default:
        this.stepFn(this, m);
    }
  }

  tick(): void {
    this.tickFn(this);
  }

  // ---- follower handlers -----------------------------------------------------------------

  handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      const resp = emptyMessage(MessageType.AppResp, m.from, NONE);
      resp.index = this.log.committed;
      this.send(resp);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries, this.knobs.commitBeyondLastNewEntry === true);
    const resp = emptyMessage(MessageType.AppResp, m.from, NONE);
    if (lastNew !== undefined) {
      resp.index = lastNew;
      this.send(resp);
      return;
    }
    // §5.3 with the fast back-off of etcd: hint the largest index whose term is <= m.logTerm, so
    // the leader can skip a whole term of mismatching entries per round trip.
    let hintIndex = Math.min(m.index, this.log.lastIndex());
    hintIndex = this.log.findConflictByTerm(hintIndex, m.logTerm);
    resp.index = m.index;
    resp.reject = true;
    resp.rejectHint = hintIndex;
    resp.logTerm = this.log.zeroTermOnOutOfRange(hintIndex);
    this.send(resp);
  }

  handleHeartbeat(m: Message): void {
    this.log.commitTo(m.commit);
    const resp = emptyMessage(MessageType.HeartbeatResp, m.from, NONE);
    resp.context = m.context;
    this.send(resp);
  }

  handleSnapshot(m: Message): void {
    const s = m.snapshot;
    invariant(s !== undefined, "snapshot message without snapshot");
    const resp = emptyMessage(MessageType.AppResp, m.from, NONE);
    if (this.restore(s)) {
      this.logger.info("restored snapshot", { id: this.id, index: s.metadata.index, term: s.metadata.term });
      resp.index = this.log.lastIndex();
    } else {
      this.logger.info("ignored snapshot", { id: this.id, index: s.metadata.index, term: s.metadata.term, commit: this.log.committed });
      resp.index = this.log.committed;
    }
    this.send(resp);
  }

  /** Install snapshot `s` if it is newer than what we committed. Returns whether it was installed. */
  restore(s: Snapshot): boolean {
    const md = s.metadata;
    if (md.index <= this.log.committed) return false;
    if (this.role !== StateRole.Follower) {
      // Defensive: only a leader of our term sends snapshots, and that makes us a follower first.
      this.logger.warn("non-follower attempted to restore snapshot", { id: this.id, role: StateRole[this.role] });
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    const cs = md.confState;
    if (!cs.voters.includes(this.id) && !cs.learners.includes(this.id)) {
      this.logger.warn("attempted to restore snapshot but it is not in the configuration", { id: this.id });
      return false;
    }
    if (this.log.matchTerm(md.index, md.term)) {
      // We already have this prefix: just fast-forward the commit index.
      this.log.commitTo(md.index);
      return false;
    }
    this.log.restore(s);
    this.applyConfStateFresh(cs);
    return true;
  }

  /** Replace the configuration and progress with `cs` (boot or snapshot restore). */
  private applyConfStateFresh(cs: ConfState): void {
    this.prs.voters.clear();
    this.prs.learners.clear();
    this.prs.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of cs.voters) {
      this.prs.voters.add(id);
      this.prs.progress.set(id, new Progress(next, this.prs.maxInflightMsgs, false, true));
    }
    for (const id of cs.learners) {
      invariant(!this.prs.voters.has(id), () => `${id} is in voters and learners`);
      this.prs.learners.add(id);
      this.prs.progress.set(id, new Progress(next, this.prs.maxInflightMsgs, true, true));
    }
    this.prs.invalidate();
    const self = this.prs.progress.get(this.id);
    if (self) self.match = this.stableLastIndex();
  }

  // ---- membership ------------------------------------------------------------------------

  /**
   * Apply a committed conf change (single-server change, §4.1 of the thesis). Returns the new
   * configuration.
   */
  applyConfChange(cc: ConfChange): ConfState {
    const id = cc.nodeId;
    if (id !== NONE) {
      const last = this.log.lastIndex();
      switch (cc.type) {
        case ConfChangeType.AddNode: {
          const pr = this.prs.progress.get(id);
          if (pr === undefined) {
            // Start probing at our last entry: the first append carries it and finds out quickly.
            this.prs.progress.set(id, new Progress(Math.max(last, 1), this.prs.maxInflightMsgs, false, true));
          } else {
            pr.isLearner = false; // promotion of a learner (or no-op for a voter)
          }
          this.prs.learners.delete(id);
          this.prs.voters.add(id);
          break;
        }
        case ConfChangeType.AddLearnerNode: {
          const pr = this.prs.progress.get(id);
          if (pr === undefined) {
            this.prs.progress.set(id, new Progress(Math.max(last, 1), this.prs.maxInflightMsgs, true, true));
          } else {
            pr.isLearner = true; // demotion of a voter (or no-op)
          }
          this.prs.voters.delete(id);
          this.prs.learners.add(id);
          break;
        }
        case ConfChangeType.RemoveNode:
          this.prs.voters.delete(id);
          this.prs.learners.delete(id);
          this.prs.progress.delete(id);
          break;
        case ConfChangeType.UpdateNode:
          break;
      }
    }
    this.prs.invalidate();
    // The change is applied: a new one may be proposed.
    this.logger.info("applied conf change", { id: this.id, type: ConfChangeType[cc.type], node: id, voters: [...this.prs.voters].map(String) });

    if (this.role === StateRole.Leader) {
      if (!this.prs.voters.has(this.id)) {
        // A removed (or demoted) leader steps down; the remaining voters elect a new one.
        this.logger.info("leader removed from the configuration; stepping down", { id: this.id, term: this.term });
        // Let followers learn the commit index (including this change) before we go quiet.
        this.bcastAppend();
        this.becomeFollower(this.term, NONE);
      } else {
        if (this.leadTransferee !== NONE && !this.prs.voters.has(this.leadTransferee)) this.abortLeaderTransfer();
        // Fewer voters may mean a smaller quorum: something may be committed now.
        if (this.maybeCommit()) {
          this.bcastAppend();
        } else {
          for (const pid of this.prs.ids()) if (pid !== this.id) this.maybeSendAppend(pid, false);
        }
      }
    }
    return this.prs.confState();
  }

  // ---- leader transfer -------------------------------------------------------------------

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  sendTimeoutNow(to: NodeId): void {
    this.send(emptyMessage(MessageType.TimeoutNow, to, NONE));
  }

  // ---- reads -----------------------------------------------------------------------------

  /** Answer `req` (a ReadIndex request) with `index`: locally or to the follower that asked. */
  respondToReadIndex(req: Message, index: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index, requestCtx: readRequestCtx(req) });
      return;
    }
    // As etcd's raft answers: the request's entries (its context) come back unchanged.
    const resp = emptyMessage(MessageType.ReadIndexResp, req.from, NONE);
    resp.index = index;
    resp.entries = req.entries;
    this.send(resp);
  }

  /** Leader: handle a ReadIndex request (thesis §6.4). Returns false when it was dropped. */
  handleReadIndex(m: Message): void {
    if (!this.committedEntryInCurrentTerm()) {
      // A new leader does not know the latest commit index until it commits an entry of its term
      // (its persisted commit index may lag behind what was acknowledged before a restart).
      if (this.pendingReadIndexMessages.length < MAX_PENDING_READS) this.pendingReadIndexMessages.push(m);
      else throw new ErrProposalDropped("too many pending read index requests");
      return;
    }
    if (this.prs.isSingleton()) {
      // Our own vote is a quorum: what we committed is what the cluster committed.
      this.respondToReadIndex(m, this.log.committed);
      return;
    }
    if (this.readOnlyOption === "lease-based") {
      this.respondToReadIndex(m, this.log.committed);
      return;
    }
    if (this.readOnly.pendingCount() >= MAX_PENDING_READS) throw new ErrProposalDropped("too many pending read index requests");
    this.readOnly.addRequest(this.log.committed, m);
    this.maybeStartReadRound();
  }

  private maybeStartReadRound(): void {
    const ctx = this.readOnly.maybeStartRound();
    if (ctx === undefined) return;
    // Our own ack counts.
    this.readOnly.recvAck(this.id, ctx);
    this.bcastHeartbeat(ctx);
  }

  releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of msgs) this.handleReadIndex(m);
  }

  /** Heartbeat response `m` echoed a read context: count it, answer confirmed reads. */
  handleReadAck(m: Message): void {
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === undefined || !this.prs.hasQuorum(acks)) return;
    for (const rs of this.readOnly.advance(m.context)) this.respondToReadIndex(rs.req, rs.index);
    this.maybeStartReadRound();
  }

  checkInvariants(): void {
    this.log.checkInvariants();
    if (this.role === StateRole.Leader) {
      invariant(this.lead === this.id, () => `leader ${this.id} has lead ${this.lead}`);
      invariant(this.vote === this.id, () => `leader ${this.id} voted for ${this.vote} in term ${this.term}`);
      for (const [id, pr] of this.prs.progress) {
        invariant(pr.match <= this.log.lastIndex(), () => `match ${pr.match} of ${id} beyond the leader's last index ${this.log.lastIndex()}`);
        invariant(pr.next >= 1 && pr.match < pr.next, () => `progress of ${id}: match ${pr.match}, next ${pr.next}`);
        invariant(pr.state === "snapshot" || pr.pendingSnapshot === 0, () => `progress of ${id}: pending snapshot in ${pr.state} state`);
      }
    } else {
      invariant(this.lead !== this.id, () => `${StateRole[this.role]} ${this.id} believes it leads`);
    }
    if (this.role === StateRole.Candidate) invariant(this.vote === this.id, () => `candidate ${this.id} voted for ${this.vote}`);
    invariant(this.log.firstIndex() - 1 <= this.log.committed, () => `log compacted to ${this.log.firstIndex() - 1} beyond commit ${this.log.committed}`);
  }
}

// ---- role handlers (data, swapped by become*) ----------------------------------------------

function tickElection(r: Raft): void {
  r.electionElapsed++;
  if (r.promotable() && r.pastElectionTimeout()) {
    r.electionElapsed = 0;
    r.step(emptyMessage(MessageType.Hup, r.id, r.id));
  }
}

function tickHeartbeat(r: Raft): void {
  r.heartbeatElapsed++;
  r.electionElapsed++;
  if (r.electionElapsed >= r.electionTimeout) {
    r.electionElapsed = 0;
    if (r.checkQuorum) r.step(emptyMessage(MessageType.CheckQuorum, r.id, r.id));
    // A transfer that did not finish within an election timeout is abandoned.
    if (r.role === StateRole.Leader && r.leadTransferee !== NONE) r.abortLeaderTransfer();
  }
  if (r.role !== StateRole.Leader) return;
  if (r.heartbeatElapsed >= r.heartbeatTimeout) {
    r.heartbeatElapsed = 0;
    r.step(emptyMessage(MessageType.Beat, r.id, r.id));
  }
}

function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.Beat:
      r.bcastHeartbeat();
      return;
    case MessageType.CheckQuorum: {
      if (!r.prs.quorumActive(r.id) && r.knobs.skipCheckQuorum !== true) {
        r.logger.warn("stepped down to follower since quorum is not active", { id: r.id, term: r.term });
        r.becomeFollower(r.term, NONE);
      }
      for (const [id, pr] of r.prs.progress) if (id !== r.id) pr.recentActive = false;
      return;
    }
    case MessageType.Prop: {
      invariant(m.entries.length > 0, "stepped empty MsgProp");
      if (!r.prs.progress.has(r.id)) throw new ErrProposalDropped("leader was removed from the configuration");
      if (r.leadTransferee !== NONE) throw new ErrProposalDropped("leader transfer in progress");
      for (let i = 0; i < m.entries.length; i++) {
        const e = m.entries[i]!;
        if (e.type !== EntryType.ConfChange) continue;
        if (r.pendingConfIndex > r.log.applied) {
          throw new ErrProposalDropped("a configuration change is already pending");
        }
        const cc = decodeConfChange(e.data);
        if (cc.type === ConfChangeType.RemoveNode && cc.nodeId !== NONE && r.prs.voters.has(cc.nodeId) && r.prs.voters.size === 1) {
          throw new ErrProposalDropped("cannot remove the last voter");
        }
        r.pendingConfIndex = r.log.lastIndex() + i + 1;
      }
      if (!r.appendEntry(m.entries)) throw new ErrProposalDropped("uncommitted entry size limit reached");
      r.bcastAppend();
      return;
    }
    case MessageType.ReadIndex:
      r.handleReadIndex(m);
      return;
    default:
      break;
  }

  const pr = r.prs.progress.get(m.from);
  if (pr === undefined) return;
  switch (m.type) {
    case MessageType.AppResp: {
      pr.recentActive = true;
      if (m.reject) {
        let nextProbeIdx = m.rejectHint;
        if (m.logTerm > 0) {
          // The follower's log has term m.logTerm at rejectHint: skip straight to the last of our
          // entries that can possibly match it.
          nextProbeIdx = r.log.findConflictByTerm(m.rejectHint, m.logTerm);
        }
        if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
          if (pr.state === "replicate") pr.becomeProbe();
          r.sendAppend(m.from);
        }
        return;
      }
      const oldPaused = pr.isPaused();
      // A probing follower that confirms the match we already know (for example after an
      // unreachable report) can go straight back to replicating.
      if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "probe")) {
        if (pr.state === "probe") {
          pr.becomeReplicate();
        } else if (pr.state === "snapshot" && pr.match + 1 >= r.log.firstIndex()) {
          // The follower caught up (through the snapshot or otherwise): resume replication.
          pr.becomeProbe();
          pr.becomeReplicate();
        } else if (pr.state === "replicate") {
          pr.inflights.freeLE(m.index);
        }
        if (r.maybeCommit()) {
          r.releasePendingReadIndexMessages();
          r.bcastAppend();
        } else if (oldPaused) {
          r.sendAppend(m.from);
        }
        // Keep the pipe full while there is more to send and room in flight.
        for (let n = 0; n < 1024 && r.maybeSendAppend(m.from, false); n++) { /* bounded */ }
        if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) {
          r.logger.info("sending TimeoutNow to transferee after its log caught up", { id: r.id, to: m.from });
          r.sendTimeoutNow(m.from);
        }
      }
      return;
    }
    case MessageType.HeartbeatResp: {
      pr.recentActive = true;
      pr.probeSent = false;
      if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirstOne();
      // Also probe a caught-up follower in probe state, so that its answer moves it back to
      // replicate.
      if (pr.match < r.log.lastIndex() || pr.state === "probe") r.sendAppend(m.from);
      if (r.readOnlyOption === "safe" && m.context.byteLength > 0) r.handleReadAck(m);
      return;
    }
    case MessageType.SnapStatus: {
      if (pr.state !== "snapshot") return;
      if (!m.reject) {
        pr.becomeProbe();
        r.logger.info("snapshot succeeded, resumed sending replication messages", { id: r.id, to: m.from });
      } else {
        // Forget the failed snapshot so the next probe triggers a new one.
        pr.pendingSnapshot = 0;
        pr.becomeProbe();
        r.logger.info("snapshot failed, resumed sending replication messages", { id: r.id, to: m.from });
      }
      // Wait for the follower's append response (or the next heartbeat response) before sending.
      pr.probeSent = true;
      return;
    }
    case MessageType.Unreachable:
      // The stream may have lost messages: fall back to probing.
      if (pr.state === "replicate") pr.becomeProbe();
      return;
    case MessageType.TransferLeader: {
      if (pr.isLearner) {
        r.logger.info("ignored leader transfer to a learner", { id: r.id, to: m.from });
        return;
      }
      const transferee = m.from;
      const last = r.leadTransferee;
      if (last !== NONE) {
        if (last === transferee) return; // already in progress
        r.abortLeaderTransfer();
      }
      if (transferee === r.id) return; // already the leader
      // Transfer must finish within one election timeout.
      r.electionElapsed = 0;
      r.leadTransferee = transferee;
      if (pr.match === r.log.lastIndex()) {
        r.sendTimeoutNow(transferee);
      } else {
        r.sendAppend(transferee);
      }
      return;
    }
    default:
      return;
  }
}

function stepCandidate(r: Raft, m: Message): void {
  // Candidates and pre-candidates share this handler; they count different response types.
  const myVoteRespType = r.role === StateRole.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
  switch (m.type) {
    case MessageType.Prop:
      throw new ErrProposalDropped("no leader");
    case MessageType.App:
      r.becomeFollower(m.term, m.from); // always m.term === r.term here
      r.handleAppendEntries(m);
      return;
    case MessageType.Heartbeat:
      r.becomeFollower(m.term, m.from);
      r.handleHeartbeat(m);
      return;
    case MessageType.Snap:
      r.becomeFollower(m.term, m.from);
      r.handleSnapshot(m);
      return;
    case MessageType.ReadIndex:
      throw new ErrProposalDropped("no leader");
    case MessageType.TimeoutNow:
      return;
    default:
      if (m.type === myVoteRespType) {
        const res = r.poll(m.from, m.type, !m.reject);
        if (res === "won") {
          if (r.role === StateRole.PreCandidate) {
            r.campaign("election");
          } else {
            r.becomeLeader();
            r.bcastAppend();
          }
        } else if (res === "lost") {
          // A pre-candidate that lost returns to its own term; a candidate stays in its new term.
          r.becomeFollower(r.term, NONE);
        }
      }
      return;
  }
}

function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.Prop:
      if (r.lead === NONE) throw new ErrProposalDropped("no leader");
      if (r.disableProposalForwarding) throw new ErrProposalDropped("proposal forwarding disabled");
      m.to = r.lead;
      r.send(m);
      return;
    case MessageType.App:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleAppendEntries(m);
      return;
    case MessageType.Heartbeat:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleHeartbeat(m);
      return;
    case MessageType.Snap:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleSnapshot(m);
      return;
    case MessageType.TransferLeader:
      if (r.lead === NONE) throw new ErrProposalDropped("no leader to transfer leadership from");
      m.to = r.lead;
      m.term = 0;
      r.send(m);
      return;
    case MessageType.TimeoutNow:
      // The leader picked us: campaign now, skipping pre-vote and the receivers' lease.
      r.logger.info("received TimeoutNow; campaigning to take leadership", { id: r.id, term: r.term, from: m.from });
      r.hup("transfer");
      return;
    case MessageType.ReadIndex:
      if (r.lead === NONE) throw new ErrProposalDropped("no leader to serve the read index");
      m.to = r.lead;
      r.send(m);
      return;
    case MessageType.ReadIndexResp:
      if (m.entries.length !== 1) {
        r.logger.warn("invalid format of ReadIndexResp", { id: r.id, from: m.from, entries: m.entries.length });
        return;
      }
      r.readStates.push({ index: m.index, requestCtx: readRequestCtx(m) });
      return;
    default:
      return;
  }
}

export { isLocalMsg, isResponseMsg };
