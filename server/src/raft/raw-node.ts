/**
 * RawNode: the Raft core's public face for a driver. Feed it time (tick), network input (step) and
 * requests (propose, readIndex, ...); collect its output with ready(); report progress with
 * advance(). Synchronous and single-threaded; the driver owns all I/O.
 *
 * Ready contract (see types.ts): for each Ready, persist hardState + entries (+ snapshot) with an
 * fsync when mustSync, mirror them into the Storage given here, send messages, apply the snapshot
 * then committedEntries, then call advance(rd). ready() may be called again before advance() (it
 * only returns what is new), but Readies must be advanced in the order they were returned.
 *
 * A leader may send a Ready's messages before its own write of the Ready's entries is durable: it
 * counts its own copy towards commitment only when advance() reports the write done.
 *
 * Transport duties: for every MsgSnap sent, report the outcome with reportSnapshot() (until then
 * the leader sends that follower nothing else); report peers the transport cannot reach with
 * reportUnreachable().
 */
import {
  EntryType, MessageType, NONE, StateRole, emptyMessage,
  type ConfChange, type ConfState, type HardState, type Message, type NodeId, type Ready, type SoftState,
} from "./types.js";
import { ConfChangeType } from "./types.js";
import { Raft, ErrProposalDropped, type RaftConfig, type RaftLogger } from "./raft.js";
import type { Storage } from "./storage.js";
import type { Rng } from "./rng.js";
import { encodeConfChange } from "./conf-change-codec.js";
import { invariant, isLocalMsg, isResponseMsg } from "./util.js";
import type { ProgressState } from "./progress.js";

export { ErrProposalDropped };
export type { RaftConfig, RaftLogger };

/** A peer given to bootstrap(): an ID and, optionally, the ConfChange context etcd stores (member JSON). */
export interface BootstrapPeer {
  id: NodeId;
  context?: Uint8Array;
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  isLearner: boolean;
  recentActive: boolean;
  inflight: number;
}

export interface RaftStatus {
  id: NodeId;
  hardState: HardState;
  softState: SoftState;
  applied: number;
  /** Leader only: its view of every member. */
  progress?: Map<NodeId, ProgressStatus>;
  leadTransferee: NodeId;
  confState: ConfState;
  lastIndex: number;
}

/** Thrown by bootstrap() when storage already holds entries. */
export class ErrBootstrapNonEmpty extends Error {
  override name = "ErrBootstrapNonEmpty";
  constructor() { super("can't bootstrap a nonempty Storage"); }
}

/** Thrown by step() when handed a message type that only the member itself may produce. */
export class ErrStepLocalMsg extends Error {
  override name = "ErrStepLocalMsg";
  constructor() { super("raft: cannot step raft local message"); }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

export class RawNode {
  /** The state machine itself. Exposed for tests and transcripts; drivers use the methods below. */
  readonly raft: Raft;
  private readonly storage: Storage;
  private prevSoftState: SoftState;
  private prevHardState: HardState;

  constructor(config: RaftConfig, deps: { storage: Storage; rng: Rng; logger?: RaftLogger }) {
    this.storage = deps.storage;
    this.raft = new Raft(config, deps.storage, deps.rng, deps.logger);
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  /**
   * Start a new cluster: as etcd's StartNode, append one ConfChange(AddNode) entry per peer at
   * term 1, indexes 1..n, committed. The next Ready carries them as both entries and committed
   * entries; the driver applies them with applyConfChange like any other conf change.
   * Throws ErrBootstrapNonEmpty if storage is not empty.
   */
  bootstrap(peers: Array<NodeId | BootstrapPeer>): void {
    invariant(peers.length > 0, "must provide at least one peer to bootstrap");
    if (this.storage.lastIndex() !== 0 || this.raft.log.lastIndex() !== 0) throw new ErrBootstrapNonEmpty();
    this.raft.becomeFollower(1, NONE);
    const ccs: ConfChange[] = peers.map((p) => {
      const peer: BootstrapPeer = typeof p === "bigint" ? { id: p } : p;
      return { id: 0n, type: ConfChangeType.AddNode, nodeId: peer.id, context: peer.context ?? new Uint8Array(0) };
    });
    const ents = ccs.map((cc, i) => ({ term: 1, index: i + 1, type: EntryType.ConfChange, data: encodeConfChange(cc) }));
    this.raft.log.append(ents);
    // Committed without a vote: every member bootstraps with the same entries.
    this.raft.log.committed = ents.length;
    for (const cc of ccs) this.raft.applyConfChange(cc);
  }

  tick(): void {
    this.raft.tick();
  }

  /** Start an election now (pre-vote first if configured). */
  campaign(): void {
    this.raft.step(emptyMessage(MessageType.Hup, NONE, NONE));
  }

  /**
   * Propose a normal entry. Throws ErrProposalDropped when this member can tell at once that it
   * will not be appended (no leader known, forwarding disabled, leader transfer in progress,
   * uncommitted size limit). On a follower the proposal is forwarded, and the leader may still
   * drop it (or lose leadership): callers must wait for the entry to be applied, with a timeout.
   */
  propose(data: Uint8Array): void {
    const m = emptyMessage(MessageType.Prop, NONE, this.raft.id);
    m.entries = [{ term: 0, index: 0, type: EntryType.Normal, data }];
    this.raft.step(m);
  }

  /** Propose several normal entries in one message (one append for all). Throws ErrProposalDropped. */
  proposeBatch(datas: Uint8Array[]): void {
    if (datas.length === 0) return;
    const m = emptyMessage(MessageType.Prop, NONE, this.raft.id);
    m.entries = datas.map((data) => ({ term: 0, index: 0, type: EntryType.Normal, data }));
    this.raft.step(m);
  }

  /**
   * Propose a membership change. Only one may be pending (proposed and not yet applied) at a
   * time; throws ErrProposalDropped otherwise, or when no leader is known. As with propose(), a
   * change forwarded by a follower may still be dropped by the leader.
   */
  proposeConfChange(cc: ConfChange): void {
    const m = emptyMessage(MessageType.Prop, NONE, this.raft.id);
    m.entries = [{ term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) }];
    this.raft.step(m);
  }

  /** Apply a committed conf change entry (call while applying it). Returns the new configuration. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /**
   * Step a message received from the network. Local-only types throw ErrStepLocalMsg; responses
   * from unknown members and proposals that cannot be accepted are dropped silently.
   */
  step(m: Message): void {
    if (isLocalMsg(m.type)) throw new ErrStepLocalMsg();
    if (isResponseMsg(m.type) && !this.raft.prs.progress.has(m.from)) return;
    try {
      this.raft.step({ ...m });
    } catch (e) {
      if (e instanceof ErrProposalDropped) return;
      throw e;
    }
  }

  /**
   * Ask for a linearizable read point. The answer arrives in a later Ready's readStates with the
   * same ctx (contexts must be unique among pending requests). Dropped silently when there is no
   * leader or the leader changes: the caller must time out and retry.
   */
  readIndex(ctx: Uint8Array): void {
    // The context travels as the data of the request's one entry, as etcd's raft sends it (a
    // leader answers with the same entries; etcd 3.4's leader requires exactly this form).
    const m = emptyMessage(MessageType.ReadIndex, NONE, NONE);
    m.entries = [{ term: 0, index: 0, type: EntryType.Normal, data: ctx }];
    try {
      this.raft.step(m);
    } catch (e) {
      if (e instanceof ErrProposalDropped) {
        this.raft.logger.info("dropped read index request", { id: this.raft.id, reason: e.message });
        return;
      }
      throw e;
    }
  }

  /** Ask the leader to hand leadership to `transferee`. Ignored when no leader is known. */
  transferLeader(transferee: NodeId): void {
    const m = emptyMessage(MessageType.TransferLeader, NONE, transferee);
    try {
      this.raft.step(m);
    } catch (e) {
      if (e instanceof ErrProposalDropped) return;
      throw e;
    }
  }

  /** The transport failed to deliver to `id`. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(emptyMessage(MessageType.Unreachable, NONE, id));
  }

  /** Result of sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const m = emptyMessage(MessageType.SnapStatus, NONE, id);
    m.reject = !ok;
    this.raft.step(m);
  }

  private softStateChanged(): boolean {
    const s = this.raft.softState();
    return s.lead !== this.prevSoftState.lead || s.role !== this.prevSoftState.role;
  }

  hasReady(): boolean {
    const r = this.raft;
    if (this.softStateChanged()) return true;
    const hs = r.hardState();
    if (!sameHardState(hs, this.prevHardState)) return true;
    if (r.log.unstable.nextSnapshot() !== undefined) return true;
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    if (r.log.unstable.hasNextEntries()) return true;
    return r.log.hasNextCommittedEnts();
  }

  /** Everything new since the last ready(); see the contract at the top of this file. */
  ready(): Ready {
    const r = this.raft;
    const entries = r.log.unstable.nextEntries();
    const snapshot = r.log.unstable.nextSnapshot();
    r.log.unstable.acceptInProgress();
    const committedEntries = r.log.nextCommittedEnts();
    if (committedEntries.length > 0) {
      r.log.acceptApplying(committedEntries[committedEntries.length - 1]!.index);
      if (r.role === StateRole.Leader) r.reduceUncommittedSize(committedEntries);
    }
    const rd: Ready = {
      readStates: r.readStates,
      entries,
      committedEntries,
      messages: r.msgs,
      mustSync: false,
    };
    r.readStates = [];
    r.msgs = [];
    if (snapshot !== undefined) rd.snapshot = snapshot;
    if (this.softStateChanged()) {
      rd.softState = r.softState();
      this.prevSoftState = rd.softState;
    }
    const hs = r.hardState();
    if (!sameHardState(hs, this.prevHardState)) {
      rd.hardState = hs;
    }
    rd.mustSync = hs.term !== this.prevHardState.term || hs.vote !== this.prevHardState.vote ||
      entries.length > 0 || snapshot !== undefined;
    this.prevHardState = hs;
    return rd;
  }

  /** The driver finished `rd` (persisted, sent, applied). Readies must be advanced in order. */
  advance(rd: Ready): void {
    const log = this.raft.log;
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      log.unstable.stableTo(last.index, last.term);
      this.raft.persistedTo(last.index, last.term);
    }
    if (rd.snapshot !== undefined) {
      log.unstable.stableSnapTo(rd.snapshot.metadata.index);
      if (rd.snapshot.metadata.index > log.applied) log.appliedTo(rd.snapshot.metadata.index);
    }
    if (rd.committedEntries.length > 0) {
      log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1]!.index);
    }
    this.raft.checkInvariants();
  }

  status(): RaftStatus {
    const r = this.raft;
    const st: RaftStatus = {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.log.applied,
      leadTransferee: r.leadTransferee,
      confState: r.prs.confState(),
      lastIndex: r.log.lastIndex(),
    };
    if (r.role === StateRole.Leader) {
      st.progress = new Map();
      for (const id of r.prs.ids()) {
        const pr = r.prs.progress.get(id)!;
        st.progress.set(id, {
          match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner,
          recentActive: pr.recentActive, inflight: pr.inflights.size(),
        });
      }
    }
    return st;
  }
}
