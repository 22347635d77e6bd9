/**
 * The simulated cluster of REAL members: each member is what `etcd-ts` runs (bootstrap, the
 * Ready loop, the apply path, the MVCC store, the lessor, membership), assembled by the same
 * `bootstrapMember` production uses, on in-memory disks (WAL directory, snapshot files, the
 * backend's LevelDB), joined by a simulated network and driven by one virtual clock.
 *
 * Determinism: nothing here reads the machine's clock or does real I/O. Time moves only when the
 * simulation advances the virtual clock to the next due event (a timer, a message, a scheduled
 * action); between events the promise continuations and setImmediate callbacks that the event
 * started run to quiescence, in Node's fixed order. The same seed replays the same run.
 *
 * A crash is a power loss: the member's incarnation is cut off at once (its disks refuse it, its
 * timers are cancelled, its messages are no longer delivered), its disks lose what was not synced
 * (a random prefix of unsynced writes may survive, the last WAL record possibly torn), and
 * whatever its clients were waiting for has an unknown outcome. A restart bootstraps a new
 * incarnation from the disks.
 */
import { bootstrapMember, type BootstrapOptions, type Member, type MemberObserver, type MemberWal, type WalDirectory } from "../../server/src/server/bootstrap.js";
import { Backend } from "../../server/src/mvcc/backend/backend.js";
import { MemoryEngine, MemoryLevelStore } from "../../server/src/mvcc/backend/memory-engine.js";
import { MemoryWalDir } from "../../server/src/wal/memory-wal.js";
import { MemorySnapDir, MemorySnapshotter } from "../../server/src/snap/memory-snapshotter.js";
import { MemorySnapshotDatabases } from "../../server/src/server/snapshot-databases.js";
import { ManualClock, sleep, type Clock, type TimerHandle } from "../../server/src/pkg/clock.js";
import { nullLogger, type Logger } from "../../server/src/pkg/logger.js";
import { computeMemberId } from "../../server/src/server/cluster/member-id.js";
import { MessageType, type Message, type NodeId } from "../../server/src/raft/types.js";
import { PeerMessageRefusedError, type MergedSnapshot } from "../../server/src/server/transport-port.js";
import type { EtcdServer } from "../../server/src/server/etcd-server.js";
import { SimNetwork } from "./sim-network.js";
import type { SimRng } from "./sim-rng.js";

/** How long a sender waits for a snapshot's delivery before reporting it failed (virtual ms). */
const SNAPSHOT_TIMEOUT_MS = 1000;

/** Virtual time starts at a realistic Unix time (request and lease IDs embed it). */
export const SIM_EPOCH_MS = 1_700_000_000_000;

export interface RealClusterOptions {
  members: number;
  /** Raft tick (etcd's --heartbeat-interval), virtual ms. */
  heartbeatMs: number;
  /** etcd's --election-timeout, virtual ms. */
  electionMs: number;
  /** How long a proposal waits before "request timed out", virtual ms. */
  requestTimeoutMs: number;
  snapshotCount: number;
  snapshotCatchUpEntries: number;
  preVote: boolean;
  /** Probability per settle that a member's disks write back unsynced data on their own. */
  backgroundFlushRate: number;
  /**
   * A WAL write that must be synced takes up to this long (virtual ms, 0: at once): a leader
   * replicates meanwhile, and a crash before it finishes loses it.
   */
  walSyncDelayMaxMs: number;
  /** Deliberately broken variants of the real code (the checks must catch them). */
  knobs?: BootstrapOptions["unsafeTestingKnobs"];
  raftTuning?: BootstrapOptions["raftTuning"];
}

interface Envelope {
  msg: Message;
  /** The sender's incarnation when it sent. */
  incarnation: number;
  /** A MsgSnap's backend image, read whole by the sender before it goes on the wire. */
  image?: [Buffer, Buffer][];
  /** For a snapshot: set once its fate was reported to the sender. */
  reported?: { done: boolean };
}

/** A timer facade per incarnation: a crash cancels every timer the incarnation set. */
class IncarnationClock implements Clock {
  private readonly timers = new Set<TimerHandle>();
  private dead = false;

  constructor(private readonly base: ManualClock) {}

  nowMs(): number {
    return this.base.nowMs();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.dead) return this.base.setTimeout(() => undefined, 1 << 30);
    const h: TimerHandle = this.base.setTimeout(() => {
      this.timers.delete(h);
      fn();
    }, ms);
    this.timers.add(h);
    return h;
  }

  clearTimeout(h: TimerHandle): void {
    this.timers.delete(h);
    this.base.clearTimeout(h);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    if (this.dead) return this.base.setTimeout(() => undefined, 1 << 30);
    const h = this.base.setInterval(fn, ms);
    this.timers.add(h);
    return h;
  }

  clearInterval(h: TimerHandle): void {
    this.clearTimeout(h);
  }

  kill(): void {
    this.dead = true;
    for (const h of this.timers) this.base.clearTimeout(h);
    this.timers.clear();
  }
}

/**
 * `observer`, deaf once `live()` is false: what a crashed incarnation still does (the rest of a
 * synchronous step its disk cut off) is not the member's, as a dead process does nothing.
 */
function whileLive(observer: MemberObserver, live: () => boolean): MemberObserver {
  const out: Record<string, unknown> = {};
  for (const [name, hook] of Object.entries(observer) as Array<[string, unknown]>) {
    out[name] = typeof hook === "function" ? (...args: unknown[]) => (live() ? (hook as (...a: unknown[]) => unknown).apply(observer, args) : undefined) : hook;
  }
  return out as MemberObserver;
}

/** Thrown through a crashed incarnation's fatal hook. */
export class MemberHalted extends Error {
  constructor(readonly why: string) {
    super(`member halted: ${why}`);
  }
}

export class RealMember {
  readonly wal: MemoryWalDir;
  readonly snapshots = new MemorySnapDir();
  readonly level = new MemoryLevelStore();
  incarnation = 0;
  member: Member | undefined;
  /** The running incarnation's timers. */
  clock: IncarnationClock | undefined;
  /** A start is under way (bootstrap reads the disks). */
  starting = false;
  /** A fatal error the member reported (a failed write): the run's failure. */
  fatal: string | undefined;
  /** Removed from the cluster: stopped for good, never restarted (etcd does not reuse IDs). */
  removed = false;

  constructor(
    readonly name: string,
    readonly id: NodeId,
    readonly peerUrl: string,
    /** Set for a member added to the running cluster: it joins instead of bootstrapping one. */
    readonly joins?: { clusterId: bigint },
  ) {
    this.wal = new MemoryWalDir({ name: name, segmentSizeBytes: 64 * 1024 });
  }

  get alive(): boolean {
    return this.member !== undefined;
  }

  /** The server of the running incarnation. @throws when it is not running */
  get server(): EtcdServer {
    if (this.member === undefined) throw new Error(`${this.name} is not running`);
    return this.member.server;
  }
}

/** Watches each member incarnation (the safety checks): a new observer per incarnation. */
export type ObserverFactory = (member: RealMember) => MemberObserver;

export class RealCluster {
  readonly clock = new ManualClock({ startMs: SIM_EPOCH_MS });
  readonly network: SimNetwork<Envelope>;
  readonly members: RealMember[] = [];
  private readonly byId = new Map<NodeId, RealMember>();
  private readonly initialCluster = new Map<string, string[]>();
  private readonly token = "sim-cluster";
  /** Scheduled simulation actions (workload, faults), by due time then insertion order. */
  private readonly actions: { at: number; seq: number; run: () => void | Promise<void> }[] = [];
  private actionSeq = 0;
  messagesDelivered = 0;

  constructor(
    readonly options: RealClusterOptions,
    private readonly rng: SimRng,
    private readonly observerFor: ObserverFactory,
    private readonly logger: Logger = nullLogger,
  ) {
    this.network = new SimNetwork<Envelope>(rng.fork("network"));
    for (let i = 0; i < options.members; i++) {
      const name = `m${i + 1}`;
      const peerUrl = `http://10.0.0.${i + 1}:2380`;
      this.initialCluster.set(name, [peerUrl]);
      const m = new RealMember(name, computeMemberId([peerUrl], this.token), peerUrl);
      this.members.push(m);
      this.byId.set(m.id, m);
    }
  }

  get now(): number {
    return this.clock.nowMs();
  }

  member(id: NodeId): RealMember | undefined {
    return this.byId.get(id);
  }

  /** Starts (or restarts) a member from its disks. */
  /**
   * A member added to the cluster (by member add on the leader, which named its ID); start it
   * to join.
   */
  addMember(id: NodeId, peerUrl: string, clusterId: bigint): RealMember {
    const m = new RealMember(`m${this.members.length + 1}`, id, peerUrl, { clusterId });
    this.members.push(m);
    this.byId.set(id, m);
    return m;
  }

  /** Stops a removed member for good. */
  retire(m: RealMember): void {
    this.crash(m);
    m.removed = true;
  }

  /** Members not removed. */
  current(): RealMember[] {
    return this.members.filter((m) => !m.removed);
  }

  async start(m: RealMember): Promise<void> {
    if (m.alive || m.starting || m.removed) return;
    m.starting = true;
    try {
      await this.bootstrap(m);
    } finally {
      m.starting = false;
    }
  }

  private async bootstrap(m: RealMember): Promise<void> {
    m.incarnation++;
    const incarnation = m.incarnation;
    const clock = new IncarnationClock(this.clock);
    const engine = MemoryEngine.open(m.level);
    const o = this.options;
    const member = await bootstrapMember(
      {
        name: m.name,
        clientUrls: [`http://10.0.0.${this.members.indexOf(m) + 1}:2379`],
        maxRequestBytes: 1.5 * 1024 * 1024,
        maxTxnOps: 128,
        electionMs: o.electionMs,
        heartbeatMs: o.heartbeatMs,
        quotaBackendBytes: 0,
        requestTimeoutMs: o.requestTimeoutMs,
        leaseTickMs: 5 * o.heartbeatMs,
        snapshotCount: o.snapshotCount,
        snapshotCatchUpEntries: o.snapshotCatchUpEntries,
        maxSnapshots: 0,
        initialCluster: m.joins ? undefined : this.initialCluster,
        joinExisting: m.joins ? { clusterId: m.joins.clusterId, memberId: m.id } : undefined,
        initialClusterToken: this.token,
        preVote: o.preVote,
        enableLeaseCheckpoint: true,
        unsafeNoFsync: false,
        autoCompactionMode: "revision",
        autoCompactionRetention: "0",
        unsafeTestingKnobs: o.knobs,
        raftTuning: o.raftTuning,
      },
      {
        wal: o.walSyncDelayMaxMs > 0 ? withSyncLatency(m.wal, clock, this.rng.fork(`fsync-${m.name}-${incarnation}`), o.walSyncDelayMaxMs) : m.wal,
        snapshotter: new MemorySnapshotter({ dir: m.snapshots }),
        snapshotDatabases: new MemorySnapshotDatabases(m.snapshots),
        backend: await Backend.openOn(engine, { clock }),
        transport: {
          send: (messages) => this.send(m, incarnation, messages),
          sendSnapshot: (merged) => void this.sendSnapshot(m, incarnation, merged),
        },
        clock,
        fatal: (message, fields) => {
          // A crashed incarnation can still be inside a synchronous read that the cut-off disk
          // refuses; a dead process reports nothing.
          if (m.incarnation === incarnation) {
            m.fatal = `${message} ${JSON.stringify(fields, (_k, v: unknown) => (typeof v === "bigint" ? v.toString(16) : v))}`;
          }
          throw new MemberHalted(message);
        },
        randomSeed: this.rng.nextU32(),
        logger: this.logger.named(m.name),
        observer: whileLive(this.observerFor(m), () => m.incarnation === incarnation),
      },
    );
    if (m.incarnation !== incarnation) return;
    member.start();
    m.member = member;
    m.clock = clock;
  }

  /**
   * Power loss: the incarnation stops at once, unsynced writes are lost (a random prefix may
   * survive, the WAL's last record possibly torn). Messages in flight to it are lost.
   */
  crash(m: RealMember): void {
    if (!m.alive) return;
    m.clock?.kill();
    m.clock = undefined;
    m.member = undefined;
    m.incarnation++;
    const rng = this.rng.fork(`crash-${m.name}-${m.incarnation}`);
    m.level.crash((n) => rng.nextInt(n));
    m.wal.crash((n) => rng.nextInt(n));
    m.snapshots.crash();
    this.network.dropAllFor(m.id, (f) => f.to === m.id);
  }

  /** Ends the run: every incarnation stops where it is (nothing more runs; the disks stay). */
  halt(): void {
    for (const m of this.members) {
      m.clock?.kill();
      m.clock = undefined;
      m.member = undefined;
      m.incarnation++;
      m.level.kill();
      m.wal.kill();
      m.snapshots.kill();
    }
  }

  /** The member that leads in the highest term, if any runs. */
  leader(): RealMember | undefined {
    let best: RealMember | undefined;
    for (const m of this.members) {
      const s = m.member?.server;
      if (s?.isLeader && (best === undefined || s.term > best.member!.server.term)) best = m;
    }
    return best;
  }

  /**
   * Delivers a forged message to `to` as if `from` had sent it (a stale MsgTimeoutNow from an
   * earlier leader transfer, which makes its receiver campaign at once).
   */
  inject(to: RealMember, msg: Message): void {
    try {
      to.member?.server.process(msg);
    } catch (err) {
      if (!(err instanceof PeerMessageRefusedError)) throw err;
    }
  }

  private send(from: RealMember, incarnation: number, messages: Message[]): void {
    if (from.incarnation !== incarnation) return;
    for (const msg of messages) this.network.send(from.id, msg.to, { msg, incarnation }, this.now, duplicate);
  }

  /**
   * A merged snapshot: the image is read whole at the sender (as a stream would be), then the
   * message travels like any other; the sender learns the outcome when it is delivered or lost.
   */
  private async sendSnapshot(from: RealMember, incarnation: number, merged: MergedSnapshot): Promise<void> {
    const image: [Buffer, Buffer][] = [];
    for await (const kv of merged.image) image.push(kv);
    if (from.incarnation !== incarnation) return;
    const reported = { done: false };
    const report = (ok: boolean): void => {
      if (reported.done || from.incarnation !== incarnation) return;
      reported.done = true;
      from.member?.server.reportSnapshot(merged.message.to, ok);
    };
    const fate = this.network.send(from.id, merged.message.to, { msg: merged.message, incarnation, image, reported }, this.now, duplicate);
    if (fate !== "queued") report(false);
    // A snapshot lost on the way (its receiver crashed, a partition cut it) is reported failed
    // when the sender's stream times out, as the peer transport does.
    else this.schedule(this.now + SNAPSHOT_TIMEOUT_MS, () => report(false));
  }

  /** Schedules `run` at virtual time `at`. */
  schedule(at: number, run: () => void | Promise<void>): void {
    this.actions.push({ at, seq: this.actionSeq++, run });
    this.actions.sort((a, b) => a.at - b.at || a.seq - b.seq);
  }

  /** Lets every continuation the last event started run (there is no real I/O to wait for). */
  private async settle(): Promise<void> {
    for (let i = 0; i < 4; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** Runs events until virtual time `until` (inclusive), or until `stop()` says so. */
  async runUntil(until: number, stop: () => boolean = () => false): Promise<void> {
    for (;;) {
      const next = Math.min(this.clock.nextDueMs() ?? Infinity, this.network.nextDueAt() ?? Infinity, this.actions[0]?.at ?? Infinity);
      if (next > until) break;
      this.clock.advanceTo(next);
      for (let f = this.network.popDue(next); f !== undefined; f = this.network.popDue(next)) this.deliver(f.from, f.to, f.msg);
      while (this.actions.length > 0 && this.actions[0]!.at <= next) await this.actions.shift()!.run();
      await this.settle();
      if (stop()) return;
      for (const m of this.members) {
        if (m.fatal !== undefined) return;
        if (m.alive && this.rng.chance(this.options.backgroundFlushRate)) {
          m.level.flush();
          m.wal.flush();
        }
      }
    }
    this.clock.advanceTo(Math.max(this.now, until));
  }

  private deliver(from: NodeId, to: NodeId, e: Envelope): void {
    const m = this.byId.get(to);
    const sender = this.byId.get(from);
    const ok = m?.member !== undefined;
    if (ok) {
      this.messagesDelivered++;
      try {
        if (e.image !== undefined) {
          // As the peer handler does, the database is on disk (durably) before the member sees it.
          MemorySnapshotDatabases.keep(m.snapshots, e.msg.snapshot!.metadata.index, e.image);
          m.member!.server.receiveSnapshot({ message: e.msg, image: replay(e.image) });
        }
        else m.member!.server.process(e.msg);
      } catch (err) {
        if (!(err instanceof PeerMessageRefusedError)) throw err;
      }
    }
    if (e.reported !== undefined && !e.reported.done && sender?.incarnation === e.incarnation) {
      e.reported.done = true;
      sender.member?.server.reportSnapshot(to, ok);
    }
  }
}

/**
 * The network may deliver a raft message twice (raft copes), but never a forwarded proposal: the
 * peer transport runs over TCP streams, which deliver a message at most once, and a proposal
 * delivered twice would be appended, and applied, twice.
 */
function duplicate(e: Envelope): Envelope | undefined {
  return e.msg.type === MessageType.Prop ? undefined : { ...e };
}

/**
 * A WAL directory whose synced writes take time: each write waits behind the ones before it (the
 * order is kept) and a synced one first waits up to `maxMs` on the member's clock. A crash kills
 * the clock's timers, so a write still waiting never reaches the disk.
 */
function withSyncLatency(dir: WalDirectory, clock: Clock, rng: SimRng, maxMs: number): WalDirectory {
  const wrap = (log: MemberWal): MemberWal => {
    let queue: Promise<unknown> = Promise.resolve();
    const after = <T>(run: () => Promise<T>, sync: boolean): Promise<T> => {
      const done = queue.then(() => (sync ? sleep(clock, rng.between(0, maxMs)) : undefined)).then(run);
      queue = done.catch(() => undefined);
      return done;
    };
    return {
      save: (hs, entries, options) => after(() => log.save(hs, entries, options), options.sync),
      saveSnapshot: (snap) => after(() => log.saveSnapshot(snap), true),
      releaseTo: (index) => after(() => log.releaseTo(index), false),
      close: () => after(() => log.close(), false),
    };
  };
  return {
    exists: () => dir.exists(),
    create: async (metadata) => wrap(await dir.create(metadata)),
    open: async (from) => {
      const opened = await dir.open(from);
      return { ...opened, wal: wrap(opened.wal) };
    },
    validSnapshotEntries: () => dir.validSnapshotEntries(),
  };
}

/** An image read back from what the sender streamed. */
async function* replay(image: [Buffer, Buffer][]): AsyncIterable<[Buffer, Buffer]> {
  for (const kv of image) yield kv;
}
