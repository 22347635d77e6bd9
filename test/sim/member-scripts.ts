/**
 * Scripted runs on real members (real-cluster.ts): interleavings that random faults reach rarely
 * or never, played step by step so that a broken variant of the raft core must show up in one of
 * the simulation's own checks (member-checks.ts). Elections happen only when a script says so:
 * the election timeout is far beyond a script's length, and a member campaigns when it is handed
 * a MsgTimeoutNow (of the highest term in the cluster, so that even a candidate or a deposed
 * leader takes it).
 *
 * - `runFigure8Script`: the Raft paper's figure 8 (`commitPreviousTermByCounting`);
 * - `runStaleTailScript`: a follower with a stale, diverging tail receives a MsgApp that matches
 *   only a prefix of its log while the leader's commit is beyond it (`commitBeyondLastNewEntry`).
 *
 * Each returns the violation found (undefined when none) and whether the script got to its end.
 */
import { PutRequest } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { MemoryStorage } from "../../server/src/raft/storage.js";
import { MessageType, StateRole, type Message } from "../../server/src/raft/types.js";
import { MemberChecks } from "./member-checks.js";
import { RealCluster, type RealClusterOptions, type RealMember } from "./real-cluster.js";
import { Violation } from "./safety-checker.js";
import { SimRng } from "./sim-rng.js";

export interface ScriptResult {
  violation?: Violation;
  reachedEnd: boolean;
}

/** Thrown when a step the script relies on did not happen (the script itself is wrong). */
export class ScriptStepFailed extends Error {}

/** Real members under a script's control, with the simulation's safety checks attached. */
class ScriptedMembers {
  readonly checks = new MemberChecks();
  readonly cluster: RealCluster;
  /** Each running incarnation's raft log, as its Ready observer last saw it. */
  private readonly logs = new Map<RealMember, MemoryStorage>();
  /** Called as a member becomes leader, before the Ready that says so is acted on. */
  onElected: ((m: RealMember) => void) | undefined;
  /** Each running incarnation's durable commit index. */
  private readonly durableCommit = new Map<RealMember, number>();

  constructor(members: number, knobs: RealClusterOptions["knobs"], raftTuning?: RealClusterOptions["raftTuning"]) {
    this.cluster = new RealCluster(
      {
        members,
        heartbeatMs: 10,
        // No member ever reaches its election timeout (nor a leader its check-quorum) in a script.
        electionMs: 1_000_000,
        requestTimeoutMs: 10_000_000,
        snapshotCount: 10_000,
        snapshotCatchUpEntries: 5,
        preVote: false,
        backgroundFlushRate: 0,
        walSyncDelayMaxMs: 0,
        knobs,
        raftTuning,
      },
      new SimRng(8),
      (m) => {
        const o = this.checks.observer(m.id);
        return {
          ...o,
          taken: (rd, log) => {
            this.logs.set(m, log);
            o.taken!(rd, log);
            if (rd.softState?.role === StateRole.Leader) this.onElected?.(m);
          },
          persisted: (rd, log) => {
            this.logs.set(m, log);
            if (rd.hardState) this.durableCommit.set(m, rd.hardState.commit);
            o.persisted!(rd, log);
          },
        };
      },
    );
    this.cluster.network.setFaults({ dropRate: 0, duplicateRate: 0, minDelayUnits: 1, maxDelayUnits: 1 });
  }

  get members(): RealMember[] {
    return this.cluster.members;
  }

  lastIndex(m: RealMember): number {
    return this.logs.get(m)?.lastIndex() ?? 0;
  }

  termAt(m: RealMember, index: number): number {
    return this.logs.get(m)!.term(index);
  }

  log(m: RealMember): MemoryStorage {
    return this.logs.get(m)!;
  }

  commitOf(m: RealMember): number {
    return this.durableCommit.get(m) ?? 0;
  }

  async startAll(): Promise<void> {
    for (const m of this.members) await this.cluster.start(m);
  }

  async restart(m: RealMember): Promise<void> {
    this.crash(m);
    await this.cluster.start(m);
  }

  /** Power loss; every message to or from it in flight is lost with its connections. */
  crash(m: RealMember): void {
    this.cluster.crash(m);
    this.cluster.network.dropAllFor(m.id);
    this.logs.delete(m);
    this.durableCommit.delete(m);
  }

  /** Replaces every partition with these groups (members in no group talk to everyone). */
  partition(...groups: RealMember[][]): void {
    this.cluster.network.heal(false);
    this.cluster.network.partition(groups.map((g) => g.map((m) => m.id)));
  }

  /** Hands `m` a MsgTimeoutNow of the cluster's highest term: it campaigns at once. */
  campaign(m: RealMember): void {
    const term = Math.max(...this.members.filter((x) => x.alive).map((x) => x.server.term));
    this.cluster.inject(m, { ...emptyMessage(MessageType.TimeoutNow), from: m.id, to: m.id, term });
  }

  /** Campaigns (up to three times) until `m` leads. */
  async elect(m: RealMember): Promise<boolean> {
    for (let i = 0; i < 3 && !this.leads(m); i++) {
      this.campaign(m);
      await this.run(200, () => this.leads(m));
    }
    return this.leads(m);
  }

  leads(m: RealMember): boolean {
    return m.member?.server.isLeader === true;
  }

  /** A client's put on `m`, whose outcome the script does not wait for. */
  put(m: RealMember, key: string, value: string): void {
    void m.server.put(PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) })).catch(() => undefined);
  }

  /**
   * Runs up to `ms` of virtual time, stopping early once `until` holds or a check fired.
   * @returns whether `until` holds at the end
   */
  async run(ms: number, until: () => boolean = () => false): Promise<boolean> {
    await this.cluster.runUntil(this.cluster.now + ms, () => this.checks.violation !== undefined || until());
    this.throwIfViolated();
    return until();
  }

  throwIfViolated(): void {
    if (this.checks.violation) throw this.checks.violation;
    const halted = this.members.find((m) => m.fatal !== undefined);
    if (halted) throw new Error(`${halted.name} halted: ${halted.fatal}`);
  }

  /** Waits until every running member holds the same log, all of it committed. */
  async settle(): Promise<void> {
    const live = (): RealMember[] => this.members.filter((m) => m.alive);
    const settled = (): boolean => {
      const first = live()[0]!;
      const last = this.lastIndex(first);
      return last > 0 && live().every((m) => this.lastIndex(m) === last && this.commitOf(m) === last && m.server.applied === last);
    };
    step("the cluster settled", await this.run(2000, settled));
  }

  halt(): void {
    this.cluster.halt();
  }
}

function step(what: string, ok: boolean): void {
  if (!ok) throw new ScriptStepFailed(`${what} did not happen`);
}

function emptyMessage(type: MessageType): Message {
  return {
    type, to: 0n, from: 0n, term: 0, logTerm: 0, index: 0, entries: [], commit: 0,
    snapshot: undefined, reject: false, rejectHint: 0, context: new Uint8Array(0),
  };
}

async function scripted(sim: ScriptedMembers, body: () => Promise<void>): Promise<ScriptResult> {
  try {
    await body();
    sim.throwIfViolated();
    return { reachedEnd: true };
  } catch (e) {
    if (e instanceof Violation) return { violation: e, reachedEnd: false };
    throw e;
  } finally {
    sim.halt();
  }
}

/**
 * The Raft paper's figure 8 on five real members, one entry per message and one message in
 * flight per follower:
 *  (a) S1 leads term 2 and replicates X (index b) to S2 only;
 *  (b) S5 wins term 3 with S3 and S4, appends its own entry at b and is cut off at once;
 *  (c) S1 restarts, wins term 4 with S2, S3, S4 and replicates X to S3: X is on a majority, but
 *      S1's own-term entry (b+1) is on S1 and S2 only. A correct leader does not commit X yet
 *      (§5.4.2); with `commitPreviousTermByCounting` it does, and S1 crashes right then;
 *  (d) S5 restarts and wins term 5 with S3 and S4 (its last entry, of term 3, is newer than
 *      theirs), so the committed X would be overwritten: the leader completeness check fires.
 * Without the knob, S1 commits X only together with b+1, which then is on S3 or S4 too, and S5
 * cannot win: the script reaches its end with no violation.
 */
export async function runFigure8Script(commitPreviousTermByCounting: boolean, trace?: (line: string) => void): Promise<ScriptResult> {
  const sim = new ScriptedMembers(
    5,
    commitPreviousTermByCounting ? { raft: { commitPreviousTermByCounting: true } } : undefined,
    { maxSizePerMsgBytes: 1, maxInflightMsgs: 1 },
  );
  const [s1, s2, s3, s4, s5] = sim.members as [RealMember, RealMember, RealMember, RealMember, RealMember];
  return scripted(sim, async () => {
    await sim.startAll();
    step("S1 elected", await sim.elect(s1));
    await sim.settle();
    const b = sim.lastIndex(s1) + 1;
    // (a)
    sim.partition([s1, s2], [s3, s4, s5]);
    sim.put(s1, "a", "x");
    step("X on S2", await sim.run(200, () => sim.lastIndex(s2) === b));
    // (b) S5 is cut off the moment it wins, before it sends anything as leader.
    sim.onElected = (m) => {
      if (m === s5) sim.partition([s1, s2, s3, s4], [s5]);
    };
    sim.campaign(s5);
    step("S5 elected", await sim.run(200, () => sim.leads(s5)));
    sim.onElected = undefined;
    await sim.run(50);
    step("S5 holds its own entry at b", sim.lastIndex(s5) === b && sim.termAt(s5, b) > sim.termAt(s1, b));
    // (c)
    await sim.restart(s1);
    const e1 = await sim.elect(s1);
    trace?.(sim.members.map((m) => `${m.name}: ${m.alive ? `term ${m.server.term} leader ${m.server.isLeader} last ${sim.lastIndex(m)}` : "down"}`).join("; "));
    step("S1 re-elected", e1);
    const committedX = await sim.run(500, () => sim.commitOf(s1) >= b);
    const newer = (m: RealMember): boolean => sim.lastIndex(m) > b;
    trace?.(`X committed by S1: ${committedX}; S3/S4 hold S1's own-term entry: ${newer(s3)}/${newer(s4)}`);
    sim.crash(s1);
    // (d)
    sim.partition([s2], [s3, s4, s5]);
    await sim.restart(s5);
    const s5Won = await sim.elect(s5);
    trace?.(`S5 re-elected: ${s5Won}`);
    await sim.run(100);
  });
}

/**
 * A follower commits beyond the last entry the leader's message confirmed. Five real members:
 *  (a) S1 leads term 2 and appends P (index b), which S2 and S3 receive but S1 never hears S3
 *      acknowledge; then, cut off with S2, S1 appends Q (b+1), which only S2 receives. Nothing
 *      of it is committed: S2 holds P and a stale Q, its commit is b-1;
 *  (b) S3 (holding P) wins term 3 with S4 and S5 and commits entries of its own from b+1 on;
 *  (c) S2 receives from S3 a MsgApp whose one entry (P at b) matches S2's log, carrying S3's
 *      commit (beyond b+1). A correct leader's fast back-off would start at the conflict (b+1),
 *      so the script hands S2 this message itself, as a leader that had probed S2 from an older
 *      index would send it. A correct follower commits up to b, the last entry the message
 *      confirmed; with `commitBeyondLastNewEntry` it commits (and applies) its stale Q, and the
 *      committed-entry checks fire.
 * Without the knob, S2 then rejoins, its stale Q is replaced, and the script reaches its end with
 * no violation.
 */
export async function runStaleTailScript(commitBeyondLastNewEntry: boolean, trace?: (line: string) => void): Promise<ScriptResult> {
  const sim = new ScriptedMembers(5, commitBeyondLastNewEntry ? { raft: { commitBeyondLastNewEntry: true } } : undefined);
  const [s1, s2, s3, s4, s5] = sim.members as [RealMember, RealMember, RealMember, RealMember, RealMember];
  return scripted(sim, async () => {
    await sim.startAll();
    step("S1 elected", await sim.elect(s1));
    await sim.settle();
    const b = sim.lastIndex(s1) + 1;
    // (a)
    sim.partition([s1, s2, s3], [s4, s5]);
    sim.cluster.network.blockOneWay(s3.id, s1.id);
    sim.put(s1, "k", "P");
    step("P on S2 and S3", await sim.run(200, () => sim.lastIndex(s2) === b && sim.lastIndex(s3) === b));
    sim.partition([s1, s2], [s3, s4, s5]);
    sim.put(s1, "k", "Q");
    step("Q on S2", await sim.run(200, () => sim.lastIndex(s2) === b + 1));
    step("nothing committed", sim.commitOf(s1) === b - 1 && sim.commitOf(s2) === b - 1);
    sim.crash(s1);
    // (b)
    sim.partition([s1], [s2], [s3, s4, s5]);
    step("S3 elected", await sim.elect(s3));
    sim.put(s3, "k", "new-1");
    sim.put(s3, "k", "new-2");
    step("S3 committed b+3", await sim.run(200, () => sim.commitOf(s3) >= b + 3));
    // (c)
    const leaderLog = sim.log(s3);
    const msg: Message = {
      ...emptyMessage(MessageType.App),
      from: s3.id,
      to: s2.id,
      term: s3.server.term,
      index: b - 1,
      logTerm: leaderLog.term(b - 1),
      entries: leaderLog.entries(b, b + 1, Number.MAX_SAFE_INTEGER),
      commit: sim.commitOf(s3),
    };
    trace?.(`S2 log ends at ${sim.lastIndex(s2)}, commit ${sim.commitOf(s2)}; S3 commit ${msg.commit}; MsgApp at ${msg.index} with entry ${b}`);
    sim.cluster.inject(s2, msg);
    await sim.run(50);
    trace?.(`S2 commit ${sim.commitOf(s2)}, applied ${s2.server.applied}`);
    // S2 rejoins: its stale Q is replaced by S3's entries.
    sim.partition([s1], [s2, s3, s4, s5]);
    step("S2 caught up", await sim.run(1000, () => sim.lastIndex(s2) === sim.lastIndex(s3) && s2.server.applied === sim.lastIndex(s3)));
  });
}
