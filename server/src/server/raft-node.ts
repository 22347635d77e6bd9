/**
 * The Ready loop: the one place that turns the pure Raft core's output into I/O, in one
 * documented order (house style rule 3):
 *
 *   1. a leader sends its messages first (it may replicate while its own write is in flight);
 *   2. persist: snapshot file (if any) → WAL (HardState + entries, fsync when mustSync) →
 *      in-memory raft storage;
 *   3. a follower sends its messages only now (its votes and acks promise durable state);
 *   4. hand the snapshot and committed entries to the apply pipeline (applied strictly in order,
 *      asynchronously; a batch holding a snapshot or a conf change is waited for before
 *      advancing, because the core must see the new state and configuration);
 *   5. advance.
 *
 * Messages go to the PeerTransport, except MsgSnap: the member sends those merged with its
 * backend image (ReadyHandler.sendSnapshot), as etcd's server does with its raftNode's msgSnapC.
 *
 * Many proposals that arrive while one fsync is in flight land in the next Ready together, so
 * they share one fsync (group commit) without any timer; the loop yields to the event loop once
 * (setImmediate) before taking each Ready so that requests already received are in it.
 */
import {
  ConfChange, ConfState, EntryType, Entry, Message, MessageType, ReadState, Ready, Snapshot, SoftState, HardState, StateRole, NodeId,
} from "../raft/types.js";
import type { RawNode, RaftStatus } from "../raft/raw-node.js";
import { ErrSnapOutOfDate, type MemoryStorage } from "../raft/storage.js";
import type { Clock, TimerHandle } from "../pkg/clock.js";
import type { Logger } from "../pkg/logger.js";
import type { MergedSnapshot } from "./transport-port.js";

/** Durable log the loop writes to (the WAL). */
export interface LogPersistence {
  /**
   * `deferred`: not synced, and may wait in memory for the log's next write. `inline`: a synced
   * write the caller would rather have made on its own thread, blocking, than handed to another
   * (see wal.ts).
   */
  save(hardState: HardState | undefined, entries: Entry[], options: { sync: boolean; deferred?: boolean; inline?: boolean }): Promise<void>;
  saveSnapshot(snap: { index: number; term: number }): Promise<void>;
  releaseTo(index: number): Promise<void>;
}

/** Durable snapshot files. */
export interface SnapshotPersistence {
  save(snapshot: Snapshot): Promise<void>;
  /** Keeps the newest `keep` files (0 keeps all). */
  purge(keep: number): Promise<unknown>;
}

/** Delivers messages to other members (the sending end; see transport-port.ts). */
export interface PeerTransport {
  /** Sends messages of any type but MsgSnap, best effort; must not block. */
  send(messages: Message[]): void;
  /**
   * Puts what send() handed over in this turn on the wire now rather than at the end of the turn
   * (a transport may gather a turn's messages into fewer writes). Optional.
   */
  flush?(): void;
  /**
   * Sends a merged snapshot (a MsgSnap with the backend image it stands for); must not block.
   * The transport reports the outcome through the sender's PeerHandler.reportSnapshot, once.
   */
  sendSnapshot(merged: MergedSnapshot): void;
  /**
   * The member's peers, kept in step with its membership (at start and after every applied
   * batch): a member added or restored, its peer URLs changed, or removed. Idempotent. A network
   * that reaches every member by ID (the simulation's) leaves them out.
   */
  addPeer?(id: NodeId, peerUrls: readonly string[]): void;
  updatePeer?(id: NodeId, peerUrls: readonly string[]): void;
  removePeer?(id: NodeId): void;
  /** When the connection to `id` became active (ms since the epoch), 0 while it is not. */
  activeSince?(id: NodeId): number;
}

/**
 * What the driver hands to the member it drives (etcd's raftReadyHandler). The member implements
 * it; the driver calls it from its loop, never re-entrantly.
 */
export interface ReadyHandler {
  /** Applies one batch; batches are handed over strictly in log order, one at a time. */
  apply(batch: ApplyBatch): Promise<void>;
  /** Answers to readIndex requests, in the order the core produced them. */
  onReadStates(states: ReadState[]): void;
  /** The leader or this member's role changed. */
  onSoftState(state: SoftState): void;
  /** Called after each advance(), when the core may take new instructions (e.g. campaign). */
  afterAdvance(): void;
  /**
   * A MsgSnap the core wants sent: the member sends it merged with its backend image through
   * PeerTransport.sendSnapshot (etcd's msgSnapC and createMergedSnapshotMessage).
   */
  sendSnapshot(message: Message): void;
}

/**
 * Called when the member cannot go on safely (its WAL or backend refused a write): nothing more
 * may be acknowledged. Production exits the process; the simulation crashes the member. The
 * driver has stopped its loop before calling it, so a hook that returns (or throws) is safe.
 */
export type FatalHook = (message: string, fields: Record<string, unknown>) => void;

/**
 * Watches the driver at work, for the simulation's safety checks. `log` is the in-memory raft
 * log the driver keeps. A hook may throw only to report a broken invariant (the simulation's
 * failure); it must change nothing.
 */
export interface ReadyObserver {
  /** A Ready as the core produced it, before anything is done with it. */
  taken?(rd: Ready, log: MemoryStorage): void;
  /** The Ready's snapshot, HardState and entries are durable and in the in-memory log. */
  persisted?(rd: Ready, log: MemoryStorage): void;
}

/** One unit of work for the apply pipeline. */
export interface ApplyBatch {
  snapshot?: Snapshot;
  entries: Entry[];
}

export interface RaftNodeOptions {
  tickMs: number;
  /** Skip fsync (--unsafe-no-fsync). */
  unsafeNoFsync: boolean;
  /**
   * A Ready holding at most this many entries asks the WAL for an inline synced write (on the
   * event loop's thread, blocking it): at low load the loop has nothing to do during the write,
   * and the thread pool's hand-offs cost as much as the write. Larger Readies (load) keep the
   * event loop free while the disk works; the messages such a Ready sends are flushed to the
   * sockets before the write. Default 1; -1 turns both off.
   */
  inlineSyncMaxEntries?: number;
  /** Deliberately broken order, ONLY for proving that the simulation's checks can fail. */
  unsafeTestingKnobs?: {
    /**
     * The loop goes on (a follower's acks, apply, advance) without waiting for the WAL's fsync:
     * committed entries are applied, and the core counts entries as stored, before they are.
     */
    applyBeforeFsync?: boolean;
  };
}

export interface RaftNodeDeps {
  rawNode: RawNode;
  storage: MemoryStorage;
  wal: LogPersistence;
  snapshotter: SnapshotPersistence;
  transport: PeerTransport;
  clock: Clock;
  fatal: FatalHook;
  logger: Logger;
  observer?: ReadyObserver;
}

export class RaftNode {
  private stopped = true;
  private ticker: TimerHandle | undefined;
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private applyChain: Promise<void> = Promise.resolve();
  private applyError: Error | undefined;
  private role: StateRole = StateRole.Follower;
  private lead: NodeId = 0n;
  private term = 0;

  private readonly inlineSyncMaxEntries: number;

  constructor(private readonly options: RaftNodeOptions, private readonly deps: RaftNodeDeps) {
    this.inlineSyncMaxEntries = options.inlineSyncMaxEntries ?? 1;
  }

  get isLeader(): boolean {
    return this.role === StateRole.Leader;
  }

  get leader(): NodeId {
    return this.lead;
  }

  get currentTerm(): number {
    return this.term;
  }

  /** Starts ticking and the Ready loop, handing its output to `handler`. */
  start(handler: ReadyHandler): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.ticker = this.deps.clock.setInterval(() => {
      this.deps.rawNode.tick();
      this.kick();
    }, this.options.tickMs);
    this.loopDone = this.loop(handler);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) this.deps.clock.clearInterval(this.ticker);
    this.kick();
    await this.loopDone;
    await this.applyChain.catch(() => undefined);
  }

  /** Wakes the loop after any call into the core (propose, step, readIndex, ...). */
  kick(): void {
    const w = this.wake;
    if (w !== undefined) {
      this.wake = undefined;
      w();
    }
  }

  /** Runs `fn` against the core and wakes the loop. Errors from the core propagate. */
  private withCore<T>(fn: (node: RawNode) => T): T {
    try {
      return fn(this.deps.rawNode);
    } finally {
      this.kick();
    }
  }

  /** @throws ErrProposalDropped when the core refuses it (no leader, transfer in progress). */
  propose(data: Uint8Array): void {
    // withCore's work without its closure: once per write.
    try {
      this.deps.rawNode.propose(data);
    } finally {
      this.kick();
    }
  }

  /** Whether the core knows a leader now (ahead of the last Ready's view, `leader`). */
  knowsLeader(): boolean {
    return this.deps.rawNode.raft.lead !== 0n;
  }

  /** @throws ErrProposalDropped when the core refuses it. */
  proposeConfChange(cc: ConfChange): void {
    this.withCore((n) => n.proposeConfChange(cc));
  }

  /** Asks for a read index; the answer comes back through the handler's onReadStates. */
  readIndex(requestCtx: Uint8Array): void {
    this.withCore((n) => n.readIndex(requestCtx));
  }

  transferLeader(transferee: NodeId): void {
    this.withCore((n) => n.transferLeader(transferee));
  }

  campaign(): void {
    this.withCore((n) => n.campaign());
  }

  /** Ticks the core `ticks` times at once (etcd's advanceTicks: fast-forwards the election clock). */
  advanceTicks(ticks: number): void {
    this.withCore((n) => {
      for (let i = 0; i < ticks; i++) n.tick();
    });
  }

  /** Delivers a message from a peer (the transport's receiving side). */
  step(m: Message): void {
    // withCore's work without its closure: once per peer message.
    try {
      this.deps.rawNode.step(m);
    } finally {
      this.kick();
    }
  }

  reportUnreachable(id: NodeId): void {
    this.withCore((n) => n.reportUnreachable(id));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.withCore((n) => n.reportSnapshot(id, ok));
  }

  /**
   * Applies a committed conf change to the core's configuration (from the apply path, while the
   * loop waits for the batch holding it).
   */
  applyConfChange(cc: ConfChange): ConfState {
    return this.withCore((n) => n.applyConfChange(cc));
  }

  status(): RaftStatus {
    return this.deps.rawNode.status();
  }

  /** The term of the entry at `index` in the in-memory log (at or above its first index - 1). */
  termAt(index: number): number {
    return this.deps.storage.term(index);
  }

  /**
   * Takes a snapshot at `index` (applied): writes the snapshot file and the WAL marker, then
   * compacts the in-memory log, keeping `catchUpEntries` entries behind it so that slow
   * followers can catch up from the log, and releases WAL segments before the compacted index.
   * The caller must have made the state machine durable up to `index` first.
   * @returns the snapshot, or undefined when the log already holds a newer one (apply runs behind
   *   the loop, which may meanwhile have installed a leader's snapshot: etcd skips it too).
   */
  async snapshot(index: number, confState: ConfState, data: Uint8Array, catchUpEntries: number): Promise<Snapshot | undefined> {
    const { storage, wal, snapshotter } = this.deps;
    let snap: Snapshot;
    try {
      snap = storage.createSnapshot(index, confState, data);
    } catch (err) {
      if (err instanceof ErrSnapOutOfDate) return undefined;
      throw err;
    }
    await snapshotter.save(snap);
    await wal.saveSnapshot({ index, term: snap.metadata.term });
    const compactIndex = index > catchUpEntries ? index - catchUpEntries : 0;
    if (compactIndex > storage.firstIndex()) storage.compact(compactIndex);
    await wal.releaseTo(compactIndex);
    return snap;
  }

  purgeSnapshots(keep: number): Promise<unknown> {
    return this.deps.snapshotter.purge(keep);
  }

  /** Resolves once every batch handed to apply so far has been applied. */
  applied(): Promise<void> {
    return this.applyChain;
  }

  /**
   * Stops the loop for good from outside it (a failure the member found off the loop: a backend
   * write of applied entries), and reports why.
   */
  fail(message: string, fields: Record<string, unknown>): void {
    if (!this.stopped) this.die(message, fields);
  }

  /** Stops the loop for good and reports why; nothing after this is acknowledged. */
  private die(message: string, fields: Record<string, unknown>): void {
    this.stopped = true;
    if (this.ticker) this.deps.clock.clearInterval(this.ticker);
    try {
      this.deps.fatal(message, fields);
    } catch {
      // a simulated crash unwinding: the loop is already stopped
    }
  }

  /** Sends a Ready's messages: MsgSnap through the member, which merges them, the rest as they are. */
  private send(messages: Message[], handler: ReadyHandler): void {
    let ordinary = messages;
    if (messages.some((m) => m.type === MessageType.Snap)) {
      ordinary = [];
      for (const m of messages) {
        if (m.type === MessageType.Snap) handler.sendSnapshot(m);
        else ordinary.push(m);
      }
    }
    if (ordinary.length > 0) this.deps.transport.send(ordinary);
  }

  private async loop(handler: ReadyHandler): Promise<void> {
    const { rawNode, storage, wal, snapshotter } = this.deps;
    while (!this.stopped) {
      if (!rawNode.hasReady()) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      // Let the I/O already waiting (client requests, peer messages) reach the core first, so
      // that what arrived while the last Ready was persisted shares this one. Without it a loaded
      // member takes a Ready per synced WAL write (one thread-pool round trip) holding a handful
      // of entries, and each Ready's own cost (apply batch, backend write) dominates.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.stopped) return;
      const rd: Ready = rawNode.ready();
      this.deps.observer?.taken?.(rd, storage);
      if (rd.softState) {
        this.role = rd.softState.role;
        this.lead = rd.softState.lead;
        handler.onSoftState(rd.softState);
      }
      if (rd.hardState) this.term = rd.hardState.term;
      const leader = this.role === StateRole.Leader;
      // At low load the WAL write below is made inline, blocking the thread: what is sent goes out
      // first, so that followers write while the leader does. Under load the transport may gather
      // the turn's messages into fewer writes.
      const lowLoad = rd.entries.length <= this.inlineSyncMaxEntries;
      if (leader && rd.messages.length > 0) {
        this.send(rd.messages, handler);
        if (lowLoad) this.deps.transport.flush?.();
      }

      const hasSnapshot = rd.snapshot !== undefined && rd.snapshot.metadata.index > 0;
      try {
        if (rd.snapshot && rd.snapshot.metadata.index > 0) {
          await snapshotter.save(rd.snapshot);
          await wal.saveSnapshot({ index: rd.snapshot.metadata.index, term: rd.snapshot.metadata.term });
        }
        if (rd.hardState || rd.entries.length > 0) {
          // A Ready that need not be synced only advances the commit index: the WAL may hold it
          // in memory until its next write (deferred), as etcd's write buffer does.
          const saved = wal.save(rd.hardState, rd.entries, {
            sync: rd.mustSync && !this.options.unsafeNoFsync,
            deferred: !rd.mustSync,
            inline: lowLoad,
          });
          // Only what must be synced is waited for. A HardState that merely advances the commit
          // index may reach the disk later (the WAL keeps the order); a lost one is recomputed
          // after a restart, as in etcd.
          if (rd.mustSync && this.options.unsafeTestingKnobs?.applyBeforeFsync !== true) await saved;
          else saved.catch((err: unknown) => this.die("failed to persist raft state", { error: String(err) }));
        }
      } catch (err) {
        // Losing the ability to persist is not recoverable: stop rather than acknowledge writes.
        this.die("failed to persist raft state", { error: String(err) });
        return;
      }
      if (rd.snapshot && rd.snapshot.metadata.index > 0) storage.applySnapshot(rd.snapshot);
      if (rd.hardState) storage.setHardState(rd.hardState);
      if (rd.entries.length > 0) storage.append(rd.entries);
      // Raft has read these as committed: the log need not keep their objects any more.
      if (rd.committedEntries.length > 0) storage.releaseEntries(rd.committedEntries[rd.committedEntries.length - 1]!.index);
      this.deps.observer?.persisted?.(rd, storage);
      if (!leader && rd.messages.length > 0) {
        this.send(rd.messages, handler);
        // A follower's acks go out before the apply work that follows in this turn.
        if (lowLoad) this.deps.transport.flush?.();
      }
      if (rd.readStates.length > 0) handler.onReadStates(rd.readStates);

      if (hasSnapshot || rd.committedEntries.length > 0) {
        this.handToApply(handler, { snapshot: hasSnapshot ? rd.snapshot : undefined, entries: rd.committedEntries });
      }
      if (hasSnapshot || rd.committedEntries.some((e) => e.type === EntryType.ConfChange)) await this.applyChain;
      if (this.stopped) return;
      rawNode.advance(rd);
      handler.afterAdvance();
    }
  }

  /** Queues a batch behind the ones handed over before it; applied strictly in order. */
  private handToApply(handler: ReadyHandler, batch: ApplyBatch): void {
    this.applyChain = this.applyChain.then(() => {
      if (this.applyError) return;
      return handler.apply(batch).catch((err: Error) => {
        // A failed apply (the backend refused a write, or a broken invariant) leaves the state
        // machine behind the log: stop, and let the restart replay the WAL.
        this.applyError = err;
        this.die("apply failed", { error: String(err), stack: err.stack });
      });
    });
  }
}
