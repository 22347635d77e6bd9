/**
 * One seeded run of the cluster simulation:
 *
 *  1. fault phase: clients submit puts, gets (ReadIndex) and compare-and-sets to random members
 *     while the run injects crashes (with unsynced-write loss), restarts, partitions (symmetric
 *     and one-way), drops, delays, duplicates, leader transfers, forced campaigns and membership
 *     changes (add learner, promote, remove voter or learner, join again under a new ID);
 *  2. liveness phase: the network heals, every member restarts, and the cluster must elect a
 *     leader, commit a new proposal, and bring every member of the configuration up to it within
 *     a bounded number of ticks;
 *  3. the client history must be linearizable (per key).
 *
 * Safety properties are checked on every Ready (sim-cluster.ts, safety-checker.ts). Everything
 * derives from `seed`: the same seed and options replay the same run.
 */
import { ConfChangeType, StateRole, type ConfChange, type NodeId } from "../../server/src/raft/types.js";
import { SimCluster, TICK_UNITS, fmtTime, type ClusterOptions, type RaftKnobs, type SimMember } from "./sim-cluster.js";
import { SimRng } from "./sim-rng.js";
import { Violation } from "./safety-checker.js";
import { checkLinearizable, type CheckOutcome } from "./linearizability.js";
import { describeInput, describeOutput, encodeCommand, kvModel, type KvInput, type KvOperation, type KvOutput } from "./kv-model.js";

export interface SimProfile {
  seed: number;
  voters: number;
  clients: number;
  keys: string[];
  faultTicks: number;
  livenessBoundTicks: number;
  /** Probability per tick of injecting one fault. */
  faultRate: number;
  crashes: boolean;
  partitions: boolean;
  networkFaults: boolean;
  /** Faults aimed at the current leader (crash it, isolate it), for fast leader churn. */
  leaderFaults: boolean;
  /**
   * Probability that a newly elected leader is crashed or cut off a few time units after its
   * election (before or while it replicates its first entries): leaves divergent log tails.
   */
  newLeaderFaultRate: number;
  /** Such a fault strikes within this many time units of the election. */
  newLeaderFaultMaxDelayUnits: number;
  membership: boolean;
  /** A learner joins early in the run (also when `membership` is off: it then stays a learner). */
  initialLearner: boolean;
  /** Probability per tick that the operator starts a membership change. */
  membershipRate: number;
  opTimeoutTicks: number;
  cluster: ClusterOptions;
  /** Self-test: gets are served from the local state machine without ReadIndex. */
  staleReads?: boolean;
}

export interface ProfileOverrides {
  voters?: number;
  faultTicks?: number;
  knobs?: RaftKnobs;
  preVote?: boolean;
  checkQuorum?: boolean;
  membership?: boolean;
  initialLearner?: boolean;
  snapshots?: boolean;
  staleReads?: boolean;
  divergentApply?: boolean;
  faultRate?: number;
  maxSizePerMsgBytes?: number;
  maxInflightMsgs?: number;
  electionTicks?: number;
  leaderFaults?: boolean;
  newLeaderFaultRate?: number;
  newLeaderFaultMaxDelayUnits?: number;
  networkFaults?: boolean;
  crashes?: boolean;
  partitions?: boolean;
  clients?: number;
  readOnlyOption?: "safe" | "lease-based";
  leaderWriteDelayUnits?: number;
}

/** Named override sets, for the runner (SIM_PRESET) and the tests. */
export const PRESETS: Record<string, ProfileOverrides> = {
  /**
   * Fast leader churn on three members with one-entry messages and one message in flight:
   * leaders die right after their election, leaving divergent log tails, and new leaders bring
   * followers up one entry at a time. The ground for the Raft paper's figure 8.
   */
  "figure8-hunt": {
    voters: 3,
    maxSizePerMsgBytes: 1,
    maxInflightMsgs: 1,
    faultRate: 0.1,
    preVote: false,
    checkQuorum: false,
    leaderFaults: true,
    newLeaderFaultRate: 0.9,
    newLeaderFaultMaxDelayUnits: 8,
    electionTicks: 5,
    networkFaults: false,
    partitions: true,
    crashes: true,
    membership: false,
  },
};

/** Derives a run's configuration from its seed (and explicit overrides). */
export function profileFor(seed: number, o: ProfileOverrides = {}): SimProfile {
  const r = new SimRng(seed).fork("profile");
  const voters = o.voters ?? (r.chance(0.5) ? 3 : 5);
  const electionTicks = o.electionTicks ?? r.pick([5, 10, 10, 20]);
  const snapshots = o.snapshots ?? r.chance(0.4);
  const checkQuorum = o.checkQuorum ?? r.chance(0.5);
  const profile: SimProfile = {
    seed,
    voters,
    clients: o.clients ?? r.between(2, 5),
    keys: ["a", "b", "c"].slice(0, r.between(1, 3)),
    faultTicks: o.faultTicks ?? r.between(150, 300),
    livenessBoundTicks: 30 * electionTicks,
    faultRate: o.faultRate ?? r.pick([0.02, 0.05, 0.1, 0.15]),
    crashes: o.crashes ?? r.chance(0.8),
    partitions: o.partitions ?? r.chance(0.8),
    networkFaults: o.networkFaults ?? r.chance(0.8),
    leaderFaults: o.leaderFaults ?? r.chance(0.5),
    newLeaderFaultRate: o.newLeaderFaultRate ?? r.pick([0, 0, 0.1, 0.3]),
    newLeaderFaultMaxDelayUnits: o.newLeaderFaultMaxDelayUnits ?? r.pick([8, 40]),
    membership: o.membership ?? r.chance(0.4),
    initialLearner: o.initialLearner ?? r.chance(0.3),
    membershipRate: r.pick([0.02, 0.05, 0.1]),
    opTimeoutTicks: r.between(2, 5) * electionTicks,
    cluster: {
      electionTicks,
      heartbeatTicks: r.between(1, Math.max(1, Math.floor(electionTicks / 3))),
      preVote: o.preVote ?? r.chance(0.5),
      checkQuorum,
      readOnlyOption: o.readOnlyOption ?? "safe",
      maxSizePerMsgBytes: o.maxSizePerMsgBytes ?? r.pick([1, 256, 4096, 1 << 20]),
      maxInflightMsgs: o.maxInflightMsgs ?? r.pick([1, 2, 16, 256]),
      maxUncommittedEntriesBytes: r.pick([0, 0, 0, 300, 3000]),
      snapshotEveryEntries: snapshots ? r.between(3, 30) : 0,
      snapshotKeepEntries: r.between(0, 5),
      backgroundFlushRate: r.pick([0, 0.1, 0.5]),
      leaderWriteDelayUnits: o.leaderWriteDelayUnits ?? r.pick([0, 0, 3, 15, 30]),
      ...(o.knobs ? { knobs: o.knobs } : {}),
      ...(o.divergentApply ? { divergentApply: { memberId: 2n, afterCommands: 5 } } : {}),
    },
    ...(o.staleReads ? { staleReads: true } : {}),
  };
  return profile;
}

export function describeProfile(p: SimProfile): string {
  const c = p.cluster;
  const knobs = c.knobs ? Object.keys(c.knobs).filter((k) => (c.knobs as Record<string, boolean>)[k]) : [];
  return [
    `voters=${p.voters}`,
    `clients=${p.clients}`,
    `keys=${p.keys.length}`,
    `ticks=${p.faultTicks}`,
    `faultRate=${p.faultRate}`,
    `crashes=${p.crashes}`,
    `partitions=${p.partitions}`,
    `netFaults=${p.networkFaults}`,
    `leaderFaults=${p.leaderFaults}`,
    `newLeaderFaults=${p.newLeaderFaultRate}`,
    `membership=${p.membership}`,
    ...(p.initialLearner ? ["learner"] : []),
    `election=${c.electionTicks}/${c.heartbeatTicks}`,
    `preVote=${c.preVote}`,
    `checkQuorum=${c.checkQuorum}`,
    `maxMsg=${c.maxSizePerMsgBytes}`,
    `inflight=${c.maxInflightMsgs}`,
    ...(c.maxUncommittedEntriesBytes > 0 ? [`maxUncommitted=${c.maxUncommittedEntriesBytes}`] : []),
    `snapshotEvery=${c.snapshotEveryEntries}`,
    ...(c.leaderWriteDelayUnits > 0 ? [`leaderWriteDelay=${c.leaderWriteDelayUnits}`] : []),
    ...(c.readOnlyOption !== "safe" ? [`reads=${c.readOnlyOption}`] : []),
    ...(knobs.length ? [`knobs=${knobs.join("+")}`] : []),
    ...(p.staleReads ? ["staleReads"] : []),
    ...(c.divergentApply ? ["divergentApply"] : []),
  ].join(" ");
}

export interface SimStats {
  ticks: number;
  ops: number;
  okOps: number;
  unknownOps: number;
  leaders: number;
  oldTermCommits: number;
  crashes: number;
  snapshotsSent: number;
  confChanges: number;
  messages: number;
  livenessTicks: number;
  linearizabilitySteps: number;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  violation?: { invariant: string; detail: string; at: string };
  /** "timeout" means the checker gave up (inconclusive), not a violation. */
  linearizability: CheckOutcome | "skipped";
  stats: SimStats;
  profile: string;
}

interface OpRecord {
  op: KvOperation;
  requestId: string;
  memberId: NodeId;
  clientIndex: number;
  deadlineTick: number;
  /** Simulated times (units) of the invocation and of the answer, if any. */
  callAt: number;
  retAt?: number;
  done: boolean;
  discarded: boolean;
}

interface Client {
  nextAtTick: number;
  busy: boolean;
  seq: number;
  lastSeen: Map<string, string | null>;
}

/**
 * Runs one seed. `trace` receives a readable log of the run; with `traceMessages` it also
 * shows every message delivered.
 */
export function runSimulation(
  seed: number,
  overrides: ProfileOverrides = {},
  trace?: (line: string) => void,
  traceMessages = false,
): SimResult {
  const profile = profileFor(seed, overrides);
  return new Simulation(profile, trace, traceMessages).run();
}

class Simulation {
  private readonly rng: SimRng;
  private readonly faultRng: SimRng;
  private readonly clientRng: SimRng;
  private readonly cluster: SimCluster;
  private readonly history: OpRecord[] = [];
  private readonly pending = new Map<string, OpRecord>();
  private readonly clients: Client[] = [];
  private eventSeq = 0;
  /** requestId -> event time of the first application by any member (commit happened before). */
  private readonly firstApplied = new Map<string, number>();
  private scheduled: { atTick: number; what: string; run: () => void }[] = [];
  /** Time-unit precise events (faults aimed at new leaders). */
  private unitEvents: { atUnit: number; what: string; run: () => void }[] = [];
  private nextMemberId: bigint;
  private ccSeq = 0n;
  private pendingChange: { id: bigint; deadlineTick: number } | undefined;
  private initialLearner: NodeId | undefined;
  private phase: "faults" | "liveness" = "faults";
  private writtenValues: string[] = [];
  private livenessTicks = 0;

  constructor(
    private readonly profile: SimProfile,
    trace?: (line: string) => void,
    traceMessages = false,
  ) {
    this.rng = new SimRng(profile.seed);
    this.faultRng = this.rng.fork("faults");
    this.clientRng = this.rng.fork("clients");
    this.cluster = new SimCluster(
      profile.cluster,
      profile.voters,
      this.rng.fork("cluster"),
      {
        onWriteDone: (id, out) => this.complete(id, out),
        onReadDone: (id, value) => this.complete(id, { kind: "get", value }),
        onMemberStopped: (id) => this.memberStopped(id),
        onConfChangeApplied: (_by, cc) => {
          if (this.pendingChange && cc.id === this.pendingChange.id) this.pendingChange = undefined;
        },
        onLeaderElected: (id) => this.leaderElected(id),
        onCommandApplied: (id) => {
          if (!this.firstApplied.has(id)) this.firstApplied.set(id, ++this.eventSeq);
        },
      },
      trace,
    );
    this.cluster.traceMessages = traceMessages;
    this.nextMemberId = BigInt(profile.voters + 1);
    for (let i = 0; i < profile.clients; i++) {
      this.clients.push({ nextAtTick: this.clientRng.between(1, 5), busy: false, seq: 0, lastSeen: new Map() });
    }
  }

  private get tick(): number {
    return Math.floor(this.cluster.now / TICK_UNITS);
  }

  private log(line: () => string): void {
    this.cluster.log(line);
  }

  run(): SimResult {
    let violation: SimResult["violation"];
    let lin: CheckOutcome | "skipped" = "skipped";
    let linSteps = 0;
    try {
      this.cluster.startAll();
      this.cluster.handleAllReadies();
      this.runFaultPhase();
      this.runLivenessPhase();
      const r = this.checkHistory();
      lin = r.outcome;
      linSteps = r.steps;
      if (r.outcome === "illegal") {
        violation = { invariant: "linearizability", detail: r.detail, at: fmtTime(this.cluster.now) };
      }
    } catch (e) {
      if (e instanceof Violation) {
        violation = { invariant: e.invariant, detail: e.detail, at: fmtTime(this.cluster.now) };
      } else {
        const err = e as Error;
        violation = {
          invariant: "crash",
          detail: `${err?.name ?? "Error"}: ${err?.message ?? String(e)}\n${(err?.stack ?? "").split("\n").slice(1, 8).join("\n")}`,
          at: fmtTime(this.cluster.now),
        };
      }
    }
    const ops = this.history.filter((r) => !r.discarded);
    const cs = this.cluster.stats;
    return {
      seed: this.profile.seed,
      ok: violation === undefined,
      ...(violation ? { violation } : {}),
      linearizability: lin,
      stats: {
        ticks: this.tick,
        ops: ops.length,
        okOps: ops.filter((r) => r.op.ret !== Infinity).length,
        unknownOps: ops.filter((r) => r.op.ret === Infinity).length,
        leaders: this.cluster.checker.leadersElected,
        oldTermCommits: this.cluster.checker.oldTermCommits,
        crashes: cs.crashes,
        snapshotsSent: cs.snapshotsSent,
        confChanges: cs.confChanges,
        messages: this.cluster.network.sent,
        livenessTicks: this.livenessTicks,
        linearizabilitySteps: linSteps,
      },
      profile: describeProfile(this.profile),
    };
  }

  // ---- phases ------------------------------------------------------------------------------

  private runFaultPhase(): void {
    const end = this.profile.faultTicks;
    while (this.tick < end) {
      this.stepTick();
      this.runScheduled();
      this.expireOps();
      this.driveClients();
      this.maybeFault();
      this.maybeMembershipChange();
    }
  }

  private stepTick(): void {
    for (let i = 0; i < TICK_UNITS; i++) {
      this.cluster.stepUnit();
      if (this.unitEvents.length > 0) this.runUnitEvents();
    }
  }

  private runUnitEvents(): void {
    const now = this.cluster.now;
    const due = this.unitEvents.filter((e) => e.atUnit <= now);
    if (due.length === 0) return;
    this.unitEvents = this.unitEvents.filter((e) => e.atUnit > now);
    for (const e of due) {
      this.log(() => `fault: ${e.what}`);
      e.run();
    }
    this.cluster.handleAllReadies();
  }

  /** Maybe crash or cut off a leader shortly after its election. */
  private leaderElected(id: NodeId): void {
    const p = this.profile;
    if (this.phase !== "faults" || !this.faultRng.chance(p.newLeaderFaultRate)) return;
    const rng = this.faultRng;
    const c = this.cluster;
    const m = c.members.get(id)!;
    const incarnation = m.incarnation;
    const afterUnits = rng.between(0, p.newLeaderFaultMaxDelayUnits);
    const downTicks = rng.between(1, 4 * p.cluster.electionTicks);
    if (rng.chance(0.5)) {
      this.unitEvents.push({
        atUnit: c.now + afterUnits,
        what: `crash new leader n${id}`,
        run: () => {
          if (m.incarnation !== incarnation || !m.up) return;
          c.crash(m);
          this.schedule(downTicks, `restart n${id}`, () => c.restart(m));
        },
      });
    } else {
      this.unitEvents.push({
        atUnit: c.now + afterUnits,
        what: `isolate new leader n${id}`,
        run: () => {
          const others = c.liveMembers().map((x) => x.id).filter((x) => x !== id);
          for (const o of others) {
            c.network.blockOneWay(id, o);
            c.network.blockOneWay(o, id);
          }
          this.schedule(downTicks, "heal partitions", () => c.network.heal(false));
        },
      });
    }
  }

  private runLivenessPhase(): void {
    this.phase = "liveness";
    const c = this.cluster;
    this.log(() => "=== liveness phase: heal everything, restart every member ===");
    this.scheduled = [];
    this.unitEvents = [];
    c.network.heal(true);
    c.network.clear();
    for (const m of c.liveMembers()) {
      if (m.up) c.crash(m);
    }
    for (const m of c.liveMembers()) c.restart(m);
    c.handleAllReadies();

    const start = this.tick;
    const bound = this.profile.livenessBoundTicks;
    const liveId = "liveness";
    let committed = false;
    let lastProposalTick = -Infinity;
    let caughtUp = false;
    // Every member of the configuration must catch up too, unless the run has neither
    // check-quorum nor pre-vote: then a member whose term ran ahead while it was cut off (and
    // whose stale configuration sends its votes nowhere useful) ignores the leader's lower-term
    // messages for good, as etcd's raft does; etcd itself always runs with check-quorum.
    const requireCatchUp = this.profile.cluster.checkQuorum || this.profile.cluster.preVote;
    while (this.tick - start < bound) {
      this.stepTick();
      this.expireOps();
      if (!committed) {
        const leader = this.currentLeader();
        if (leader && this.tick - lastProposalTick >= 10) {
          lastProposalTick = this.tick;
          // The same request id every time: the state machine applies it at most once.
          c.proposeWrite(leader, liveId, encodeCommand({ requestId: liveId, input: { kind: "put", key: "__liveness", value: "1" } }));
        }
        committed = c.upMembers().some((m) => m.role === StateRole.Leader && m.sm.resultOf(liveId) !== undefined);
        if (committed) this.log(() => `liveness proposal committed after ${this.tick - start} ticks`);
      }
      if (committed && !requireCatchUp) {
        caughtUp = true;
        break;
      }
      if (committed) {
        const leader = this.currentLeader();
        const config = leader ? [...leader.confState.voters, ...leader.confState.learners] : [];
        caughtUp =
          leader !== undefined &&
          config.every((id) => {
            const m = c.members.get(id);
            return m !== undefined && m.up && m.sm.resultOf(liveId) !== undefined;
          });
        if (caughtUp) break;
      }
    }
    this.livenessTicks = this.tick - start;
    if (!committed) {
      const leaders = c.leaders().map((m) => `n${m.id}`);
      throw new Violation(
        "liveness",
        leaders.length === 0
          ? `no leader within ${bound} ticks after healing and restarting every member`
          : `leader ${leaders.join(",")} did not commit a new proposal within ${bound} ticks`,
      );
    }
    if (!caughtUp) {
      const leader = this.currentLeader();
      const lagging = leader
        ? [...leader.confState.voters, ...leader.confState.learners]
            .filter((id) => c.members.get(id)?.sm.resultOf(liveId) === undefined)
            .map((id) => `n${id}`)
        : [];
      throw new Violation(
        "liveness",
        `members ${lagging.join(",") || "(no leader at the end)"} did not catch up with the committed proposal within ${bound} ticks`,
      );
    }
    // Requests still open never got an answer.
    for (const rec of [...this.pending.values()]) this.giveUp(rec);
  }

  private currentLeader(): SimMember | undefined {
    let best: SimMember | undefined;
    let bestTerm = -1;
    for (const m of this.cluster.leaders()) {
      const t = m.node!.status().hardState.term;
      if (t > bestTerm) {
        best = m;
        bestTerm = t;
      }
    }
    return best;
  }

  // ---- clients -----------------------------------------------------------------------------

  private driveClients(): void {
    const rng = this.clientRng;
    for (let ci = 0; ci < this.clients.length; ci++) {
      const client = this.clients[ci]!;
      if (client.busy || this.tick < client.nextAtTick) continue;
      const targets = this.cluster.upMembers().filter((m) => !m.removed);
      if (targets.length === 0) continue;
      const member = rng.pick(targets);
      const key = rng.pick(this.profile.keys);
      const value = `${ci}.${++client.seq}`;
      const roll = rng.float();
      let input: KvInput;
      if (roll < 0.35) input = { kind: "put", key, value };
      else if (roll < 0.7) input = { kind: "get", key };
      else {
        const seen = client.lastSeen.get(key);
        const expected =
          seen !== undefined && rng.chance(0.6)
            ? seen
            : this.writtenValues.length > 0 && rng.chance(0.7)
              ? rng.pick(this.writtenValues)
              : null;
        input = { kind: "cas", key, expected, value };
      }
      const requestId = `c${ci}-${client.seq}`;
      const rec: OpRecord = {
        op: { clientId: ci, input, output: undefined, call: ++this.eventSeq, ret: Infinity },
        requestId,
        memberId: member.id,
        clientIndex: ci,
        deadlineTick: this.tick + this.profile.opTimeoutTicks,
        callAt: this.cluster.now,
        done: false,
        discarded: false,
      };
      this.history.push(rec);
      client.busy = true;
      this.log(() => `client ${ci} -> n${member.id}: ${requestId} ${describeInput(input)}`);
      if (input.kind === "get") {
        if (this.profile.staleReads) {
          this.pending.set(requestId, rec);
          this.complete(requestId, { kind: "get", value: member.sm.get(key) });
          continue;
        }
        this.pending.set(requestId, rec);
        this.cluster.startRead(member, requestId, key);
      } else {
        this.writtenValues.push(value);
        this.pending.set(requestId, rec);
        const accepted = this.cluster.proposeWrite(member, requestId, encodeCommand({ requestId, input }));
        if (!accepted) {
          // Dropped by raft before entering any log: it never takes effect.
          this.log(() => `client ${ci}: ${requestId} dropped by raft`);
          this.discard(rec);
        }
      }
    }
  }

  private complete(requestId: string, output: KvOutput): void {
    const rec = this.pending.get(requestId);
    if (!rec) return;
    this.pending.delete(requestId);
    rec.op.output = output;
    rec.op.ret = ++this.eventSeq;
    rec.retAt = this.cluster.now;
    rec.done = true;
    const client = this.clients[rec.clientIndex]!;
    if (output.kind === "get") client.lastSeen.set(rec.op.input.key, output.value);
    else if (output.kind === "put" || (output.kind === "cas" && output.ok)) {
      client.lastSeen.set(rec.op.input.key, (rec.op.input as { value: string }).value);
    }
    this.freeClient(rec);
    this.log(() => `client ${rec.clientIndex} <- ${requestId} ${describeOutput(output)}`);
  }

  /** The client stops waiting: a write's outcome is unknown; a read is forgotten. */
  private giveUp(rec: OpRecord): void {
    this.pending.delete(rec.requestId);
    this.cluster.abandon(rec.requestId);
    if (rec.op.input.kind === "get") rec.discarded = true;
    rec.done = true;
    this.freeClient(rec);
    this.log(() => `client ${rec.clientIndex}: ${rec.requestId} outcome unknown`);
  }

  private discard(rec: OpRecord): void {
    this.pending.delete(rec.requestId);
    rec.discarded = true;
    rec.done = true;
    this.freeClient(rec);
  }

  private freeClient(rec: OpRecord): void {
    const client = this.clients[rec.clientIndex]!;
    client.busy = false;
    client.nextAtTick = this.tick + this.clientRng.between(0, 3);
  }

  private expireOps(): void {
    for (const rec of [...this.pending.values()]) {
      if (this.tick >= rec.deadlineTick) this.giveUp(rec);
    }
  }

  private memberStopped(id: NodeId): void {
    for (const rec of [...this.pending.values()]) {
      if (rec.memberId === id) this.giveUp(rec);
    }
  }

  // ---- faults ------------------------------------------------------------------------------

  private schedule(afterTicks: number, what: string, run: () => void): void {
    this.scheduled.push({ atTick: this.tick + afterTicks, what, run });
  }

  private runScheduled(): void {
    const due = this.scheduled.filter((s) => s.atTick <= this.tick);
    if (due.length === 0) return;
    this.scheduled = this.scheduled.filter((s) => s.atTick > this.tick);
    for (const s of due) {
      this.log(() => `scheduled: ${s.what}`);
      s.run();
    }
  }

  private maybeFault(): void {
    const p = this.profile;
    const rng = this.faultRng;
    if (!rng.chance(p.faultRate)) return;
    const c = this.cluster;
    const kinds: string[] = ["campaign", "transfer"];
    if (p.crashes) kinds.push("crash", "crash", "crash");
    if (p.partitions) kinds.push("partition", "partition", "one-way", "heal");
    if (p.networkFaults) kinds.push("network", "network");
    if (p.leaderFaults) kinds.push("crash-leader", "crash-leader", "isolate-leader", "isolate-leader");
    if (p.partitions && p.leaderFaults) kinds.push("leader-minority", "leader-minority");
    const kind = rng.pick(kinds);
    const live = c.liveMembers();
    const ids = live.map((m) => m.id);
    switch (kind) {
      case "crash": {
        const up = live.filter((m) => m.up);
        if (up.length === 0) return;
        const victim = rng.pick(up);
        c.crash(victim);
        const downFor = rng.between(1, 8 * p.cluster.electionTicks);
        this.schedule(downFor, `restart n${victim.id}`, () => c.restart(victim));
        return;
      }
      case "crash-leader": {
        const leader = this.currentLeader();
        if (!leader) return;
        c.crash(leader);
        this.schedule(rng.between(1, 3 * p.cluster.electionTicks), `restart n${leader.id}`, () => c.restart(leader));
        return;
      }
      case "isolate-leader": {
        const leader = this.currentLeader();
        if (!leader) return;
        const rest = ids.filter((id) => id !== leader.id);
        c.network.partition([[leader.id], rest]);
        this.log(() => `isolate leader n${leader.id}`);
        this.schedule(rng.between(1, 3 * p.cluster.electionTicks), "heal partitions", () => c.network.heal(false));
        return;
      }
      case "leader-minority": {
        // The leader keeps a minority with it (so it may go on believing it leads) while the
        // majority elects a new leader and moves on.
        const leader = this.currentLeader();
        if (!leader) return;
        const others = rng.shuffled(ids.filter((id) => id !== leader.id));
        // Followers that stay with the leader: at most one fewer than half the members.
        const companions = rng.between(0, Math.max(0, Math.floor((ids.length - 1) / 2) - 1));
        const groups = [[leader.id, ...others.slice(0, companions)], others.slice(companions)];
        c.network.partition(groups);
        this.log(() => `partition (leader in the minority) ${groups.map((g) => `{${g.join(",")}}`).join(" | ")}`);
        this.schedule(rng.between(5, 10 * p.cluster.electionTicks), "heal partitions", () => c.network.heal(false));
        return;
      }
      case "partition": {
        const shuffled = rng.shuffled(ids);
        const cut = rng.between(1, Math.max(1, shuffled.length - 1));
        const groups = [shuffled.slice(0, cut), shuffled.slice(cut)];
        c.network.partition(groups);
        this.log(() => `partition ${groups.map((g) => `{${g.join(",")}}`).join(" | ")}`);
        this.schedule(rng.between(5, 10 * p.cluster.electionTicks), "heal partitions", () => c.network.heal(false));
        return;
      }
      case "one-way": {
        if (ids.length < 2) return;
        const links = rng.between(1, 3);
        for (let i = 0; i < links; i++) {
          const [a, b] = rng.shuffled(ids);
          c.network.blockOneWay(a!, b!);
          this.log(() => `block ${a} -> ${b}`);
        }
        this.schedule(rng.between(5, 10 * p.cluster.electionTicks), "heal partitions", () => c.network.heal(false));
        return;
      }
      case "heal":
        this.log(() => "heal partitions");
        c.network.heal(false);
        return;
      case "network": {
        const f = {
          dropRate: rng.pick([0, 0.01, 0.05, 0.2, 0.4]),
          duplicateRate: rng.pick([0, 0.02, 0.1, 0.3]),
          minDelayUnits: 1,
          maxDelayUnits: rng.pick([2, 10, 40, 150]),
        };
        c.network.setFaults(f);
        this.log(() => `network: drop=${f.dropRate} dup=${f.duplicateRate} delay=1..${f.maxDelayUnits}`);
        return;
      }
      case "transfer": {
        const leader = this.currentLeader();
        if (!leader) return;
        const to = rng.pick(leader.confState.voters.length > 0 ? leader.confState.voters : [leader.id]);
        this.log(() => `transfer leadership n${leader.id} -> n${to}`);
        leader.node!.transferLeader(to);
        return;
      }
      case "campaign": {
        const up = live.filter((m) => m.up);
        if (up.length === 0) return;
        const m = rng.pick(up);
        this.log(() => `n${m.id} campaigns`);
        m.node!.campaign();
        return;
      }
    }
  }

  // ---- membership ----------------------------------------------------------------------------

  private maybeMembershipChange(): void {
    const p = this.profile;
    if (this.phase !== "faults") return;
    if (p.initialLearner && this.initialLearner === undefined) {
      this.addInitialLearner();
      return;
    }
    if (!p.membership) return;
    const rng = this.faultRng;
    if (this.pendingChange && this.tick < this.pendingChange.deadlineTick) return;
    this.pendingChange = undefined;
    if (!rng.chance(p.membershipRate)) return;
    const c = this.cluster;
    // The configuration as the most advanced member knows it.
    let ref: SimMember | undefined;
    for (const m of c.upMembers()) if (!ref || m.applied > ref.applied) ref = m;
    if (!ref) return;
    const { voters, learners } = ref.confState;
    if (voters.length === 0) return;
    const maxMembers = p.voters + 2;
    const options: string[] = [];
    if (voters.length + learners.length < maxMembers) options.push("add-learner", "add-learner");
    if (learners.length > 0) options.push("promote", "promote", "remove-learner");
    if (voters.length > 3) options.push("remove-voter", "remove-voter");
    if (options.length === 0) return;
    const action = rng.pick(options);
    let cc: ConfChange;
    const id = ++this.ccSeq;
    switch (action) {
      case "add-learner": {
        const newId = this.nextMemberId++;
        cc = { id, type: ConfChangeType.AddLearnerNode, nodeId: newId, context: new Uint8Array(0) };
        break;
      }
      case "promote":
        cc = { id, type: ConfChangeType.AddNode, nodeId: rng.pick(learners), context: new Uint8Array(0) };
        break;
      case "remove-learner":
        cc = { id, type: ConfChangeType.RemoveNode, nodeId: rng.pick(learners), context: new Uint8Array(0) };
        break;
      default:
        cc = { id, type: ConfChangeType.RemoveNode, nodeId: rng.pick(voters), context: new Uint8Array(0) };
        break;
    }
    const proposer = this.currentLeader() ?? rng.pick(c.upMembers());
    const ok = c.proposeConfChange(proposer, cc);
    this.log(() => `operator: ${action} ${ConfChangeType[cc.type]} n${cc.nodeId} via n${proposer.id}${ok ? "" : " (dropped)"}`);
    // The new member's process starts once the change is on its way (it waits to be contacted).
    if (ok && action === "add-learner") c.addMember(cc.nodeId);
    if (ok) this.pendingChange = { id, deadlineTick: this.tick + 20 * p.cluster.electionTicks };
  }

  /** Once a leader is known, starts a member and adds it as a learner (retrying until raft takes it). */
  private addInitialLearner(): void {
    const leader = this.currentLeader();
    if (!leader) return;
    const c = this.cluster;
    const id = this.nextMemberId++;
    const cc: ConfChange = { id: ++this.ccSeq, type: ConfChangeType.AddLearnerNode, nodeId: id, context: new Uint8Array(0) };
    const ok = c.proposeConfChange(leader, cc);
    this.log(() => `operator: add learner n${id} via n${leader.id}${ok ? "" : " (dropped)"}`);
    if (ok) {
      c.addMember(id);
      this.initialLearner = id;
      this.pendingChange = { id: cc.id!, deadlineTick: this.tick + 20 * this.profile.cluster.electionTicks };
    }
  }

  // ---- the history -----------------------------------------------------------------------------

  private checkHistory(): { outcome: CheckOutcome; steps: number; detail: string } {
    // What the final state says about writes whose outcome the client never learned: a write
    // that is not in the final state never took effect (after the liveness phase nothing older
    // can still commit); one that is has the output the state machine recorded, and took effect
    // no later than its first application anywhere (it was committed before that).
    const finalState = this.currentLeader()?.sm;
    const ops: KvOperation[] = [];
    for (const rec of this.history) {
      if (rec.discarded) continue;
      if (rec.op.ret === Infinity && finalState) {
        const out = finalState.resultOf(rec.requestId);
        if (out === undefined) continue;
        const applied = this.firstApplied.get(rec.requestId);
        ops.push({ ...rec.op, output: out, ret: applied !== undefined && applied > rec.op.call ? applied : Infinity });
        continue;
      }
      ops.push(rec.op);
    }
    const r = checkLinearizable(kvModel, ops, { maxStepsPerPartition: 1_000_000 });
    let detail = "";
    if (r.outcome !== "ok" && r.failed) {
      const key = r.failed.ops[0]?.input.key ?? "?";
      const byCall = new Map(this.history.map((rec) => [rec.op.call, rec]));
      const lines = r.failed.ops
        .slice()
        .sort((a, b) => a.call - b.call)
        .map((op) => {
          const rec = byCall.get(op.call)!;
          const when = `[${fmtTime(rec.callAt)} .. ${rec.retAt !== undefined ? fmtTime(rec.retAt) : "unknown"}]`;
          const unknown = rec.retAt === undefined ? ` (outcome unknown to the client; took effect by event ${op.ret})` : "";
          return `    ${when} ${rec.requestId} via n${rec.memberId}: ${describeInput(op.input)} -> ${describeOutput(op.output)}${unknown}`;
        });
      const prefix = r.failed.longestPrefix.map((op) => describeInput(op.input) + "->" + describeOutput(op.output));
      detail =
        `history of key "${key}" (${r.failed.ops.length} ops) is not linearizable; ` +
        `longest linearizable prefix (${prefix.length} ops) ends with: ${prefix.slice(-3).join(", ")}\n${lines.join("\n")}`;
      if (r.outcome === "timeout") this.log(() => `linearizability check gave up on key "${key}"`);
    }
    return { outcome: r.outcome, steps: r.steps, detail };
  }
}
