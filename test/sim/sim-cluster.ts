/**
 * The simulated cluster: in-process members, each a RawNode on a simulated disk, joined by a
 * simulated network and driven by one simulated clock. This module is the members' driver (the
 * Ready loop) and owns durability in etcd's order:
 *
 *   persist snapshot + hardState + entries (fsync when mustSync) → send messages →
 *   apply snapshot, then committed entries → advance.
 *
 * With `leaderWriteDelayUnits` a leader sends first and finishes the rest of its Ready later (as
 * etcd's leader writes its WAL while replicating); the member's later Readies wait behind it, in
 * order, and a crash meanwhile loses them.
 *
 * Every Ready is checked against Raft's safety properties (safety-checker.ts) as it is handled.
 * Time is counted in units; a member ticks every TICK_UNITS units (each member with its own phase).
 */
import { RawNode, ErrProposalDropped } from "../../server/src/raft/raw-node.js";
import type { MemoryStorage } from "../../server/src/raft/storage.js";
import { decodeConfChange } from "../../server/src/raft/conf-change-codec.js";
import {
  ConfChangeType, EntryType, MessageType, StateRole,
  type ConfChange, type ConfState, type Entry, type Message, type NodeId, type Ready,
} from "../../server/src/raft/types.js";
import { SimDisk } from "./sim-disk.js";
import { SimNetwork } from "./sim-network.js";
import type { SimRng } from "./sim-rng.js";
import { KvStateMachine, decodeCommand, type KvOutput } from "./kv-model.js";
import { SafetyChecker, Violation, logView } from "./safety-checker.js";

export const TICK_UNITS = 10;
/** A removed member keeps running this many ticks before it stops (etcd: ten ticks). */
const REMOVED_STOP_DELAY_TICKS = 10;

export interface RaftKnobs {
  commitPreviousTermByCounting?: boolean;
  grantVoteWithoutLogCheck?: boolean;
  skipCheckQuorum?: boolean;
}

export interface ClusterOptions {
  electionTicks: number;
  heartbeatTicks: number;
  preVote: boolean;
  checkQuorum: boolean;
  readOnlyOption: "safe" | "lease-based";
  maxSizePerMsgBytes: number;
  maxInflightMsgs: number;
  /** Leader drops proposals beyond this many uncommitted payload bytes (0: no limit). */
  maxUncommittedEntriesBytes: number;
  /** Take a local snapshot every this many applied entries (0: never). */
  snapshotEveryEntries: number;
  /** Entries kept in the log below a local snapshot. */
  snapshotKeepEntries: number;
  /** Probability per Ready that unsynced writes are flushed anyway (the OS writing back). */
  backgroundFlushRate: number;
  /**
   * A leader sends a Ready's messages at once and finishes its own write (persist, apply,
   * advance) up to this many time units later, as etcd's leader writes its WAL in parallel with
   * replicating (0: every Ready is handled synchronously). A crash meanwhile loses the write.
   */
  leaderWriteDelayUnits: number;
  knobs?: RaftKnobs;
  /** Self-test: this member corrupts its state machine after applying this many commands. */
  divergentApply?: { memberId: NodeId; afterCommands: number };
}

/** Events the workload layer receives from members. */
export interface ClusterHooks {
  /** A write was applied by the member it was submitted to. */
  onWriteDone(requestId: string, output: KvOutput): void;
  /** A linearizable read finished on the member it was submitted to. */
  onReadDone(requestId: string, value: string | null): void;
  /** A member stopped (crash or removal): its pending requests will never be answered. */
  onMemberStopped(id: NodeId): void;
  /** A member applied a conf change. */
  onConfChangeApplied(by: NodeId, cc: ConfChange, index: number): void;
  /** A member applied the command with this request id (every member, every time). */
  onCommandApplied(requestId: string): void;
  /** A member became leader. */
  onLeaderElected(id: NodeId, term: number): void;
}

interface Envelope {
  msg: Message;
  senderIncarnation: number;
}

interface PendingRead {
  key: string;
  /** Set when the read index arrived. */
  index?: number;
}

/** A Ready whose handling waits (behind a leader's write still in flight). */
interface HeldReady {
  rd: Ready;
  /** Its messages already went out. */
  sent: boolean;
  dueAt: number;
  /** The member's term when the Ready was taken (for a leader's election report). */
  term: number;
}

interface Deferred {
  memberId: NodeId;
  incarnation: number;
  run: (node: RawNode) => void;
}

export class SimMember {
  node: RawNode | undefined;
  storage: MemoryStorage | undefined;
  sm = new KvStateMachine();
  confState: ConfState = { voters: [], learners: [] };
  readonly disk = new SimDisk();
  applied = 0;
  commit = 0;
  /** Highest commit index already checked against the committed registry (this incarnation). */
  checkedCommit = 0;
  snapshotIndex = 0;
  role: StateRole = StateRole.Follower;
  lead: NodeId = 0n;
  /** The role as of the last ready() (ahead of `role` while Readies are held). */
  readyRole: StateRole = StateRole.Follower;
  /** Readies taken from the node and not yet handled, in order. */
  held: HeldReady[] = [];
  incarnation = 0;
  removed = false;
  /** A removed member that is still running stops at this time (units). */
  leavingAt: number | undefined;
  commandsApplied = 0;
  /** A conf change was applied after the last local snapshot. */
  confChangedSinceSnapshot = false;
  readonly pendingWrites = new Set<string>();
  readonly pendingReads = new Map<string, PendingRead>();
  /** Whether this member is one of the bootstrapping voters (a wiped one bootstraps again). */
  constructor(
    readonly id: NodeId,
    readonly initial: boolean,
    readonly tickPhase: number,
  ) {}

  get up(): boolean {
    return this.node !== undefined;
  }
}

export class SimCluster {
  readonly members = new Map<NodeId, SimMember>();
  readonly network: SimNetwork<Envelope>;
  readonly checker = new SafetyChecker();
  now = 0;
  private deferred: Deferred[] = [];
  private readonly initialVoters: NodeId[];
  private readonly tracing: boolean;
  /** Trace every delivered message, not only votes and snapshots. */
  traceMessages = false;
  /** Counters for the run summary. */
  readonly stats = { crashes: 0, restarts: 0, snapshotsSent: 0, snapshotsApplied: 0, localSnapshots: 0, confChanges: 0, readies: 0 };

  constructor(
    private readonly options: ClusterOptions,
    voters: number,
    private readonly rng: SimRng,
    private readonly hooks: ClusterHooks,
    private readonly trace?: (line: string) => void,
  ) {
    this.tracing = trace !== undefined;
    this.network = new SimNetwork<Envelope>(rng.fork("network"));
    this.initialVoters = [];
    for (let i = 1; i <= voters; i++) this.initialVoters.push(BigInt(i));
    for (const id of this.initialVoters) {
      this.members.set(id, new SimMember(id, true, this.rng.nextInt(TICK_UNITS)));
    }
  }

  log(line: () => string): void {
    if (this.trace) this.trace(`[${fmtTime(this.now)}] ${line()}`);
  }

  /** Starts every initial member (bootstrapping them). */
  startAll(): void {
    for (const m of this.members.values()) this.start(m);
  }

  /** Adds (and starts, with an empty disk) a new member that will join via a conf change. */
  addMember(id: NodeId): SimMember {
    if (this.members.has(id)) throw new Error(`member ${id} exists`);
    const m = new SimMember(id, false, this.rng.nextInt(TICK_UNITS));
    this.members.set(id, m);
    this.start(m);
    return m;
  }

  upMembers(): SimMember[] {
    return [...this.members.values()].filter((m) => m.up);
  }

  /** The members that are not removed (up or down). */
  liveMembers(): SimMember[] {
    return [...this.members.values()].filter((m) => !m.removed);
  }

  leaders(): SimMember[] {
    return this.upMembers().filter((m) => m.role === StateRole.Leader);
  }

  // ---- lifecycle --------------------------------------------------------------------------

  private start(m: SimMember): void {
    if (m.removed) throw new Error(`member ${m.id} was removed`);
    const storage = m.disk.rebuildStorage();
    const snap = storage.snapshot();
    m.sm = new KvStateMachine();
    if (snap.metadata.index > 0) m.sm.restore(snap.data);
    m.applied = snap.metadata.index;
    m.snapshotIndex = snap.metadata.index;
    m.confState = { voters: [...snap.metadata.confState.voters], learners: [...snap.metadata.confState.learners] };
    const hs = storage.initialState().hardState;
    m.commit = hs.commit;
    m.checkedCommit = 0;
    m.role = StateRole.Follower;
    m.lead = 0n;
    m.readyRole = StateRole.Follower;
    m.held = [];
    m.incarnation++;
    m.commandsApplied = 0;
    const node = new RawNode(
      {
        id: m.id,
        electionTicks: this.options.electionTicks,
        heartbeatTicks: this.options.heartbeatTicks,
        applied: m.applied,
        maxSizePerMsgBytes: this.options.maxSizePerMsgBytes,
        maxInflightMsgs: this.options.maxInflightMsgs,
        maxUncommittedEntriesBytes: this.options.maxUncommittedEntriesBytes,
        preVote: this.options.preVote,
        checkQuorum: this.options.checkQuorum,
        readOnlyOption: this.options.readOnlyOption,
        ...(this.options.knobs ? { unsafeTestingKnobs: this.options.knobs } : {}),
      },
      { storage, rng: this.rng.fork(`raft-${m.id}-${m.incarnation}`) },
    );
    if (m.initial && storage.lastIndex() === 0 && snap.metadata.index === 0) node.bootstrap(this.initialVoters);
    m.node = node;
    m.storage = storage;
    this.log(() => `n${m.id} started (incarnation ${m.incarnation}, term ${hs.term}, commit ${hs.commit}, snapshot ${snap.metadata.index}, last ${storage.lastIndex()})`);
  }

  /** Power loss: the member stops, its unsynced writes are (mostly) lost. */
  crash(m: SimMember): void {
    if (!m.up) return;
    const lost = m.disk.crash(this.rng);
    this.stats.crashes++;
    this.stop(m);
    // Messages still in the member's socket buffers die with it (sometimes all of them).
    const unsent = this.rng.chance(0.5) ? this.network.dropAllFor(m.id, (x) => x.from === m.id) : 0;
    this.log(() => `n${m.id} crashed (${lost} unsynced records lost, ${unsent} outgoing messages lost)`);
  }

  restart(m: SimMember): void {
    if (m.up || m.removed) return;
    this.stats.restarts++;
    this.start(m);
  }

  private stop(m: SimMember): void {
    m.held = []; // writes still in flight are lost
    m.node = undefined;
    m.storage = undefined;
    m.role = StateRole.Follower;
    m.lead = 0n;
    m.pendingReads.clear();
    m.pendingWrites.clear();
    this.hooks.onMemberStopped(m.id);
  }

  /**
   * The member is out of the cluster for good. Like etcd, a running member stops only after a
   * grace period (etcd waits ten ticks), so that a removed leader can still tell the others that
   * its removal committed; then the network forgets it.
   */
  private remove(m: SimMember): void {
    if (m.removed) return;
    m.removed = true;
    if (m.up) {
      m.leavingAt = this.now + REMOVED_STOP_DELAY_TICKS * TICK_UNITS;
      this.log(() => `n${m.id} removed from the cluster; stops in ${REMOVED_STOP_DELAY_TICKS} ticks`);
      return;
    }
    this.network.dropAllFor(m.id);
    this.log(() => `n${m.id} removed from the cluster`);
  }

  private stopRemoved(m: SimMember): void {
    m.leavingAt = undefined;
    if (m.up) {
      m.disk.sync();
      this.stop(m);
    }
    this.network.dropAllFor(m.id);
    this.log(() => `n${m.id} stopped (removed)`);
  }

  // ---- requests ---------------------------------------------------------------------------

  /** Proposes a write on member `m`. Returns false if raft dropped the proposal (it will not apply). */
  proposeWrite(m: SimMember, requestId: string, data: Uint8Array): boolean {
    const node = m.node;
    if (!node) return false;
    try {
      node.propose(data);
    } catch (e) {
      if (e instanceof ErrProposalDropped) return false;
      throw e;
    }
    m.pendingWrites.add(requestId);
    return true;
  }

  /** Starts a linearizable read of `key` on member `m` (ReadIndex, then wait for apply). */
  startRead(m: SimMember, requestId: string, key: string): boolean {
    const node = m.node;
    if (!node) return false;
    m.pendingReads.set(requestId, { key });
    node.readIndex(encoder.encode(requestId));
    return true;
  }

  /** Forgets a request the client gave up on. */
  abandon(requestId: string): void {
    for (const m of this.members.values()) {
      m.pendingWrites.delete(requestId);
      m.pendingReads.delete(requestId);
    }
  }

  proposeConfChange(m: SimMember, cc: ConfChange): boolean {
    const node = m.node;
    if (!node) return false;
    try {
      node.proposeConfChange(cc);
    } catch (e) {
      if (e instanceof ErrProposalDropped) return false;
      throw e;
    }
    return true;
  }

  // ---- the clock --------------------------------------------------------------------------

  /** Advances time by one unit: deliver due messages, tick, handle every Ready. */
  stepUnit(): void {
    this.now++;
    for (const m of this.members.values()) {
      if (m.leavingAt !== undefined && m.leavingAt <= this.now) this.stopRemoved(m);
    }
    this.runDeferred();
    for (let env = this.network.popDue(this.now); env; env = this.network.popDue(this.now)) {
      this.deliver(env.from, env.to, env.msg);
    }
    for (const m of this.members.values()) {
      if (m.node && (this.now + m.tickPhase) % TICK_UNITS === 0) m.node.tick();
    }
    this.handleAllReadies();
  }

  handleAllReadies(): void {
    for (let round = 0; round < 100_000; round++) {
      let any = false;
      for (const m of this.members.values()) {
        if (m.node && m.held.length > 0 && m.held[0]!.dueAt <= this.now) {
          this.handleHeld(m);
          any = true;
        }
        if (m.node && m.node.hasReady()) {
          this.handleReady(m);
          any = true;
        }
      }
      if (!any) return;
    }
    throw new Violation("driver", "members still had Readies after 100000 rounds in one time unit");
  }

  private runDeferred(): void {
    if (this.deferred.length === 0) return;
    const batch = this.deferred;
    this.deferred = [];
    for (const d of batch) {
      const m = this.members.get(d.memberId);
      if (m && m.node && m.incarnation === d.incarnation) d.run(m.node);
    }
  }

  private defer(m: SimMember, incarnation: number, run: (node: RawNode) => void): void {
    this.deferred.push({ memberId: m.id, incarnation, run });
  }

  private deliver(from: NodeId, to: NodeId, env: Envelope): void {
    const target = this.members.get(to);
    const sender = this.members.get(from);
    const isSnap = env.msg.type === MessageType.Snap;
    const ok = target !== undefined && target.node !== undefined && !this.network.isBlocked(from, to);
    if (ok) {
      if (this.tracing && (this.traceMessages || isSnap || env.msg.type === MessageType.Vote || env.msg.type === MessageType.PreVote)) {
        this.log(() => `n${to} <- ${describeMsg(env.msg)}`);
      }
      target.node!.step(env.msg);
    }
    if (isSnap && sender) {
      this.defer(sender, env.senderIncarnation, (node) => node.reportSnapshot(to, ok));
    } else if (!ok && sender && !sender.removed && target && !target.removed) {
      this.defer(sender, env.senderIncarnation, (node) => node.reportUnreachable(to));
    }
  }

  private send(m: SimMember, msg: Message): void {
    if (msg.to === m.id) {
      // Only local answers may be addressed to oneself; step them on the next unit.
      this.defer(m, m.incarnation, (node) => node.step(msg));
      return;
    }
    const target = this.members.get(msg.to);
    if (target === undefined || (target.removed && !target.up)) return;
    if (msg.type === MessageType.Snap) {
      this.stats.snapshotsSent++;
      this.log(() => `n${m.id} -> ${describeMsg(msg)}`);
    }
    const env: Envelope = { msg, senderIncarnation: m.incarnation };
    const fate = this.network.send(m.id, msg.to, env, this.now, cloneEnvelope);
    if (fate !== "queued") {
      if (msg.type === MessageType.Snap) this.defer(m, m.incarnation, (node) => node.reportSnapshot(msg.to, false));
      else if (fate === "blocked") this.defer(m, m.incarnation, (node) => node.reportUnreachable(msg.to));
    }
  }

  // ---- the Ready loop ---------------------------------------------------------------------

  private handleReady(m: SimMember): void {
    const node = m.node!;
    const rd: Ready = node.ready();
    this.stats.readies++;
    const term = rd.softState ? node.status().hardState.term : 0;
    if (rd.softState) m.readyRole = rd.softState.role;
    if (this.options.leaderWriteDelayUnits > 0 && m.readyRole === StateRole.Leader) {
      // The leader replicates while its own write is in flight.
      for (const msg of rd.messages) this.send(m, msg);
      const delay = this.rng.between(0, this.options.leaderWriteDelayUnits);
      const dueAt = Math.max(this.now + delay, m.held.length > 0 ? m.held[m.held.length - 1]!.dueAt : 0);
      m.held.push({ rd, sent: true, dueAt, term });
      return;
    }
    if (m.held.length > 0) {
      // Readies are handled in order: wait behind the write in flight.
      m.held.push({ rd, sent: false, dueAt: m.held[m.held.length - 1]!.dueAt, term });
      return;
    }
    this.processReady(m, rd, false, term);
  }

  private handleHeld(m: SimMember): void {
    while (m.node && m.held.length > 0 && m.held[0]!.dueAt <= this.now) {
      const h = m.held.shift()!;
      this.processReady(m, h.rd, h.sent, h.term);
    }
  }

  private processReady(m: SimMember, rd: Ready, alreadySent: boolean, termAtReady: number): void {
    const node = m.node!;
    const storage = m.storage!;

    // 1. Persist: snapshot, hardState, entries; fsync when required.
    if (m.role === StateRole.Leader && (!rd.softState || rd.softState.role === StateRole.Leader) && rd.entries.length > 0) {
      this.checker.observeLeaderAppend(m.id, rd.entries[0]!.term, storage.lastIndex(), rd.entries);
    }
    if (rd.snapshot && rd.snapshot.metadata.index > 0) storage.applySnapshot(rd.snapshot);
    if (rd.hardState) storage.setHardState(rd.hardState);
    if (rd.entries.length > 0) storage.append(rd.entries);
    m.disk.write({
      ...(rd.snapshot && rd.snapshot.metadata.index > 0 ? { snapshot: rd.snapshot } : {}),
      ...(rd.hardState ? { hardState: rd.hardState } : {}),
      entries: rd.entries,
    });
    if (rd.mustSync || this.rng.chance(this.options.backgroundFlushRate)) m.disk.sync();

    const view = logView(storage);
    if (rd.entries.length > 0) this.checker.observePersistedEntries(m.id, rd.entries, view);
    if (rd.hardState) {
      const hs = rd.hardState;
      this.checker.observeHardState(m.id, hs.term, hs.vote);
      if (hs.commit < m.commit) {
        throw new Violation("commit monotonic", `member ${m.id} commit went from ${m.commit} to ${hs.commit}`);
      }
      m.commit = hs.commit;
      this.checker.observeCommit(m.id, m.checkedCommit, hs.commit, hs.term, view);
      m.checkedCommit = Math.max(m.checkedCommit, hs.commit);
    } else if (m.checkedCommit < m.commit) {
      // First Ready after a restart: the restored commit still needs checking.
      this.checker.observeCommit(m.id, m.checkedCommit, m.commit, node.status().hardState.term, view);
      m.checkedCommit = m.commit;
    }
    if (rd.softState) {
      const was = m.role;
      m.role = rd.softState.role;
      m.lead = rd.softState.lead;
      if (m.role === StateRole.Leader && was !== StateRole.Leader) {
        const term = termAtReady;
        this.log(() => `n${m.id} became leader in term ${term} (last index ${storage.lastIndex()})`);
        this.checker.observeLeader(m.id, term, view);
        this.hooks.onLeaderElected(m.id, term);
      } else if (this.tracing && was !== m.role) {
        this.log(() => `n${m.id} is ${StateRole[m.role]} (lead ${m.lead}, term ${termAtReady})`);
      }
    }

    // 2. Send (unless a leader already did, before its write).
    if (!alreadySent) for (const msg of rd.messages) this.send(m, msg);

    // 3. Reads that got their index.
    for (const rs of rd.readStates) {
      const id = decoder.decode(rs.requestCtx);
      const pr = m.pendingReads.get(id);
      if (pr) pr.index = rs.index;
    }

    // 4. Apply the snapshot, then committed entries.
    if (rd.snapshot && rd.snapshot.metadata.index > 0) this.applySnapshot(m, rd);
    for (const e of rd.committedEntries) {
      if (!m.node) break; // removed while applying
      this.applyEntry(m, e);
    }
    if (!m.node) return;
    this.finishReads(m);

    // 5. Advance.
    node.advance(rd);

    this.maybeLocalSnapshot(m);
  }

  private applySnapshot(m: SimMember, rd: Ready): void {
    const snap = rd.snapshot!;
    const md = snap.metadata;
    if (md.index <= m.applied) {
      throw new Violation("applied monotonic", `member ${m.id} got a snapshot at ${md.index} but has applied ${m.applied}`);
    }
    m.sm.restore(snap.data);
    m.applied = md.index;
    m.snapshotIndex = md.index;
    m.confState = { voters: [...md.confState.voters], learners: [...md.confState.learners] };
    this.stats.snapshotsApplied++;
    this.log(() => `n${m.id} applied snapshot ${md.index}/${md.term} voters=[${md.confState.voters.join(",")}] learners=[${md.confState.learners.join(",")}]`);
    this.checker.observeSnapshotRestore(m.id, md.index, md.term, m.sm.digest());
    for (const id of [...m.pendingWrites]) {
      const out = m.sm.resultOf(id);
      if (out !== undefined) {
        m.pendingWrites.delete(id);
        this.hooks.onWriteDone(id, out);
      }
    }
  }

  private applyEntry(m: SimMember, e: Entry): void {
    if (e.index !== m.applied + 1) {
      throw new Violation("applied monotonic", `member ${m.id} was handed entry ${e.index} to apply after ${m.applied}`);
    }
    if (e.index > m.commit) {
      throw new Violation("apply committed only", `member ${m.id} was handed entry ${e.index} beyond its commit ${m.commit}`);
    }
    m.applied = e.index;
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      m.confState = m.node!.applyConfChange(cc);
      this.stats.confChanges++;
      m.confChangedSinceSnapshot = true;
      this.checker.observeApply(m.id, e, m.sm.digest());
      this.log(() => `n${m.id} applied conf change ${e.index}: ${ConfChangeType[cc.type]} ${cc.nodeId} -> voters=[${m.confState.voters.join(",")}] learners=[${m.confState.learners.join(",")}]`);
      this.hooks.onConfChangeApplied(m.id, cc, e.index);
      if (cc.type === ConfChangeType.RemoveNode) {
        const gone = this.members.get(cc.nodeId);
        if (gone) this.remove(gone);
      }
      return;
    }
    if (e.data.length === 0) {
      this.checker.observeApply(m.id, e, m.sm.digest());
      return;
    }
    const cmd = decodeCommand(e.data);
    const out = m.sm.apply(cmd);
    m.commandsApplied++;
    const inject = this.options.divergentApply;
    if (inject && inject.memberId === m.id && m.commandsApplied === inject.afterCommands) {
      m.sm.corrupt(cmd.input.key, "corrupted");
      this.log(() => `n${m.id} SELF-TEST: state machine corrupted at index ${e.index}`);
    }
    this.checker.observeApply(m.id, e, m.sm.digest());
    this.hooks.onCommandApplied(cmd.requestId);
    if (m.pendingWrites.delete(cmd.requestId)) this.hooks.onWriteDone(cmd.requestId, out);
  }

  private finishReads(m: SimMember): void {
    for (const [id, pr] of m.pendingReads) {
      if (pr.index !== undefined && pr.index <= m.applied) {
        m.pendingReads.delete(id);
        this.hooks.onReadDone(id, m.sm.get(pr.key));
      }
    }
  }

  private maybeLocalSnapshot(m: SimMember): void {
    const every = this.options.snapshotEveryEntries;
    if (every <= 0 || m.applied <= m.snapshotIndex) return;
    // Also snapshot right after a membership change: a member that joined later than the stored
    // snapshot refuses it (it is not in that snapshot's configuration), as etcd's members do.
    if (m.applied - m.snapshotIndex < every && !m.confChangedSinceSnapshot) return;
    const storage = m.storage!;
    const snap = storage.createSnapshot(m.applied, m.confState, m.sm.snapshot());
    const compactIndex = Math.max(0, m.applied - this.options.snapshotKeepEntries);
    if (compactIndex >= storage.firstIndex()) storage.compact(compactIndex);
    m.disk.saveLocalSnapshot(snap, compactIndex);
    m.snapshotIndex = m.applied;
    m.confChangedSinceSnapshot = false;
    this.stats.localSnapshots++;
    this.log(() => `n${m.id} took a snapshot at ${m.applied} and compacted to ${compactIndex}`);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function cloneEnvelope(env: Envelope): Envelope {
  return { msg: { ...env.msg, entries: env.msg.entries.slice() }, senderIncarnation: env.senderIncarnation };
}


export function fmtTime(units: number): string {
  return `${Math.floor(units / TICK_UNITS)}.${units % TICK_UNITS}`;
}

export function describeMsg(m: Message): string {
  const base = `${MessageType[m.type]} ${m.from}->${m.to} term=${m.term}`;
  switch (m.type) {
    case MessageType.Snap:
      return `${base} snapshot=${m.snapshot?.metadata.index}/${m.snapshot?.metadata.term}`;
    case MessageType.Vote:
    case MessageType.PreVote:
      return `${base} last=${m.index}/${m.logTerm}`;
    default:
      return `${base} index=${m.index} logTerm=${m.logTerm} commit=${m.commit} n=${m.entries.length}${m.reject ? " reject" : ""}`;
  }
}
