/**
 * One seeded run of the simulation on real members (real-cluster.ts):
 *
 *  1. fault phase: clients call the members' client-facing methods (Put, Range linearizable and
 *     serializable, DeleteRange, Txn compare-and-set, Compact) on random members, and watchers
 *     watch the whole key space of every member incarnation from random start revisions, while
 *     the run crashes and restarts members (losing unsynced writes), partitions the network
 *     (symmetric and one-way), and drops, delays, duplicates and reorders messages;
 *  2. liveness phase: the network heals and every member runs again; within a bound, a write must
 *     be acknowledged and applied by every member, and all members must hold the same store
 *     (revision and HashKV);
 *  3. checks: Raft's safety properties on every Ready (ready-check.ts); the client history is
 *     linearizable (etcd-model.ts, per key, plus the revision order across keys); the watch
 *     guarantees hold and the watched history agrees with every acknowledged write and every
 *     serializable read (watch-check.ts).
 * Everything derives from the seed: the same seed replays the same run.
 */
import { ServerError } from "../../server/src/server/errors.js";
import { PutRequest, RangeRequest, DeleteRangeRequest, TxnRequest, Compare_CompareResult, Compare_CompareTarget } from "@etcd-ts/proto/etcdserverpb/rpc";
import { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";
import { checkLinearizable } from "./linearizability.js";
import { ackedWrites, checkRevisionLinearization, checkRevisionOrder, etcdModel, resolveUnknownWrites, type EtcdInput, type EtcdOperation, type EtcdOutput } from "./etcd-model.js";
import { RealCluster, SIM_EPOCH_MS, type RealClusterOptions, type RealMember } from "./real-cluster.js";
import type { EtcdServer } from "../../server/src/server/etcd-server.js";
import { MessageType, StateRole, type Message } from "../../server/src/raft/types.js";
import { MemberChecks } from "./member-checks.js";
import { SimRng } from "./sim-rng.js";
import { Violation } from "./safety-checker.js";
import { checkAcknowledgedWrites, checkWatches, type RevisionHistory, type SeenEvent, type WatchRecord } from "./watch-check.js";

export interface RealSimProfile {
  seed: number;
  members: number;
  clients: number;
  keys: string[];
  faultMs: number;
  livenessBoundMs: number;
  /** Probability per fault slot (every heartbeat) of one fault. */
  faultRate: number;
  crashes: boolean;
  partitions: boolean;
  networkFaults: boolean;
  /** Faults aimed at the leader: crash it, isolate it, leave it in a minority. */
  leaderFaults: boolean;
  /** Membership changes through the members' API: add a learner, promote it, remove a member. */
  membership: boolean;
  /** Clients also grant leases, put keys under them, keep some alive and revoke some. */
  leases: boolean;
  /** Probability that a new leader is crashed or cut off within a few ms of its election. */
  newLeaderFaultRate: number;
  preVote: boolean;
  /** Raft's message sizing (undefined: etcd's); one-entry messages make replication crawl. */
  raftTuning?: { maxSizePerMsgBytes: number; maxInflightMsgs: number };
  compactions: boolean;
  heartbeatMs: number;
  electionMs: number;
  snapshotCount: number;
  walSyncDelayMaxMs: number;
  knobs?: RealKnobs;
}

/** Deliberately broken variants of the real code, by name (SIM_KNOB). */
export type RealKnobs = NonNullable<RealClusterOptions["knobs"]>;

export const KNOB_NAMES = [
  "grantVoteWithoutLogCheck",
  "commitPreviousTermByCounting",
  "skipCheckQuorum",
  "commitBeyondLastNewEntry",
  "applyBeforeFsync",
  "skipEventOnCatchUp",
] as const;

/** The knobs named, placed where the real code takes them. */
export function knobsByName(names: readonly string[]): RealKnobs {
  const knobs: RealKnobs = {};
  for (const name of names) {
    switch (name) {
      case "grantVoteWithoutLogCheck":
      case "commitPreviousTermByCounting":
      case "skipCheckQuorum":
      case "commitBeyondLastNewEntry":
        knobs.raft = { ...knobs.raft, [name]: true };
        break;
      case "applyBeforeFsync":
        knobs.applyBeforeFsync = true;
        break;
      case "skipEventOnCatchUp":
        knobs.watch = { skipEventOnCatchUp: true };
        break;
      default:
        throw new Error(`unknown knob ${name}; known: ${KNOB_NAMES.join(", ")}`);
    }
  }
  return knobs;
}

export interface RealSimOverrides {
  members?: number;
  faultMs?: number;
  crashes?: boolean;
  partitions?: boolean;
  networkFaults?: boolean;
  leaderFaults?: boolean;
  membership?: boolean;
  newLeaderFaultRate?: number;
  preVote?: boolean;
  faultRate?: number;
  electionMs?: number;
  raftTuning?: { maxSizePerMsgBytes: number; maxInflightMsgs: number };
  knobs?: RealKnobs;
}

/** Named override sets (SIM_PRESET). */
export const PRESETS: Record<string, RealSimOverrides> = {
  /**
   * Fast leader churn on three members, one entry per message and one message in flight:
   * leaders die right after their election, leaving divergent log tails. The ground for the Raft
   * paper's figure 8.
   */
  "figure8-hunt": {
    members: 3,
    raftTuning: { maxSizePerMsgBytes: 1, maxInflightMsgs: 1 },
    faultRate: 0.1,
    preVote: false,
    leaderFaults: true,
    newLeaderFaultRate: 0.9,
    electionMs: 50,
    networkFaults: false,
    partitions: true,
    crashes: true,
  },
};

export function realProfile(seed: number, o: RealSimOverrides = {}): RealSimProfile {
  const rng = new SimRng(seed).fork("profile");
  const keyCount = rng.between(1, 3);
  const profile: RealSimProfile = {
    seed,
    members: o.members ?? rng.pick([3, 3, 5]),
    clients: rng.between(2, 5),
    keys: Array.from({ length: keyCount }, (_, i) => `k${i}`),
    faultMs: o.faultMs ?? rng.between(1500, 3000),
    livenessBoundMs: 3000,
    faultRate: o.faultRate ?? rng.pick([0.02, 0.05, 0.1, 0.15]),
    crashes: o.crashes ?? rng.chance(0.8),
    partitions: o.partitions ?? rng.chance(0.8),
    networkFaults: o.networkFaults ?? rng.chance(0.7),
    leaderFaults: o.leaderFaults ?? rng.chance(0.5),
    membership: o.membership ?? rng.chance(0.4),
    leases: rng.chance(0.5),
    newLeaderFaultRate: o.newLeaderFaultRate ?? rng.pick([0, 0, 0.1, 0.3]),
    preVote: o.preVote ?? rng.chance(0.7),
    raftTuning: o.raftTuning ?? (rng.chance(0.2) ? { maxSizePerMsgBytes: 1, maxInflightMsgs: rng.pick([1, 4]) } : undefined),
    compactions: rng.chance(0.5),
    heartbeatMs: 10,
    electionMs: o.electionMs ?? rng.pick([50, 100, 100, 200]),
    snapshotCount: rng.pick([10, 50, 10_000]),
    walSyncDelayMaxMs: rng.pick([0, 3, 15]),
    knobs: o.knobs,
  };
  // Elections are randomized: without pre-vote a member with a stale log campaigns again and again
  // (it loses, and its higher term resets the others' timers), until one of the up-to-date
  // members draws the shorter timeout, each round with a chance of about 2/3; seed 510003307 took
  // 8 rounds of a 200 ms election timeout. The bound is counted in election timeouts.
  profile.livenessBoundMs = Math.max(3000, 40 * profile.electionMs);
  // With one entry per message, a follower that fell behind catches up one entry per heartbeat
  // (raft's probe state), so the bound scales with the backlog a fault phase can leave.
  if (profile.raftTuning) profile.livenessBoundMs = 15_000;
  return profile;
}

export interface RealSimResult {
  ok: boolean;
  failure?: string;
  profile: RealSimProfile;
  /** How linearizability was decided: from the revisions, by search, or not (search bound). */
  linearizability: "revisions" | "search" | "undecided";
  stats: {
    ops: number;
    unknown: number;
    crashes: number;
    elections: number;
    readies: number;
    messages: number;
    watchEvents: number;
    /** Watches opened below the member's compaction (each must have been refused). */
    compactedWatchesRefused: number;
    finalRevision: number;
  };
}

const enc = (s: string): Buffer => Buffer.from(s);

const EMPTY_MESSAGE: Message = {
  type: MessageType.Heartbeat, to: 0n, from: 0n, term: 0, logTerm: 0, index: 0, entries: [], commit: 0,
  snapshot: undefined, reject: false, rejectHint: 0, context: new Uint8Array(0),
};

interface PendingOp {
  op: EtcdOperation;
  member: RealMember;
  incarnation: number;
}

/** Prints a line of the run's trace (faults, membership, starts) when `trace` is given. */
export async function runRealSimulation(profile: RealSimProfile, trace?: (line: string) => void): Promise<RealSimResult> {
  const rng = new SimRng(profile.seed);
  const faultRng = rng.fork("faults");
  const clientRng = rng.fork("clients");
  const checks = new MemberChecks();
  const cluster = new RealCluster(
    {
      members: profile.members,
      heartbeatMs: profile.heartbeatMs,
      electionMs: profile.electionMs,
      requestTimeoutMs: 10 * profile.electionMs,
      snapshotCount: profile.snapshotCount,
      snapshotCatchUpEntries: 5,
      preVote: profile.preVote,
      raftTuning: profile.raftTuning,
      backgroundFlushRate: 0.05,
      walSyncDelayMaxMs: profile.walSyncDelayMaxMs,
      knobs: profile.knobs,
    },
    rng.fork("cluster"),
    (m) => {
      const checker = checks.observer(m.id);
      return {
        ...checker,
        taken: (rd, log) => {
          checker.taken!(rd, log);
          if (rd.softState?.role === StateRole.Leader) leaderElected(m);
        },
      };
    },
  );
  let seq = 0;
  const tick = (): number => ++seq;
  const history: EtcdOperation[] = [];
  /** Operations that failed before reaching any log: left out of the history checks. */
  const notApplied = new Set<EtcdOperation>();
  const serializableReads: { key: string; value: string | null; modRevision: number; revision: number; what: string }[] = [];
  const pending = new Set<PendingOp>();
  const watches: WatchRecord[] = [];
  let crashes = 0;
  let failure: string | undefined;
  let valueSeq = 0;

  const log = (what: () => string): void => {
    if (trace) trace(`${((cluster.now - SIM_EPOCH_MS) / 1000).toFixed(3)}s ${what()}`);
  };
  const fail = (why: string): void => {
    failure ??= why;
  };

  const openWatcher = (m: RealMember, at?: number): void => {
    const server = m.server;
    const current = server.store.currentRevision;
    const from = at ?? (clientRng.chance(0.5) ? 0 : clientRng.between(1, current));
    const record: WatchRecord = {
      label: `${m.name}#${m.incarnation} from ${from || "head"}`,
      startRevision: from === 0 ? current + 1 : from,
      compactRevisionAtStart: server.store.compactRevision,
      responses: [],
    };
    watches.push(record);
    server.store.watch({ key: Buffer.from([0]), end: Buffer.from([0]), startRevision: from, prevKv: false }, {
      send(message) {
        if ("compactRevision" in message) {
          record.compactRevision = message.compactRevision;
          return true;
        }
        if (message.events.length === 0) return true;
        record.responses.push({
          events: message.events.map((e): SeenEvent => ({
            type: e.type,
            key: e.kv.key.toString(),
            value: e.type === "PUT" ? e.kv.value.toString() : "",
            modRevision: e.kv.modRevision,
            lease: e.type === "PUT" ? e.kv.lease : 0n,
          })),
          compactRevision: server.store.compactRevision,
        });
        return true;
      },
    });
  };

  /**
   * A watch from a revision below the member's compaction, which the member must refuse (etcd: a
   * response with the compact revision, canceled, no events): on a member that starts with a
   * compacted store, and after a client's compaction. Its own random stream, so the rest of a
   * seed's run does not depend on it.
   */
  const probeRng = rng.fork("compacted-watches");
  const probeCompactedStart = (m: RealMember): void => {
    const compacted = m.member?.server.store.compactRevision ?? -1;
    if (compacted > 1 && probeRng.chance(0.5)) openWatcher(m, probeRng.between(1, compacted - 1));
  };

  const startMember = async (m: RealMember): Promise<void> => {
    await cluster.start(m);
    log(() => `${m.name} ${m.alive ? "started" : "did not start"} (incarnation ${m.incarnation}${m.joins ? ", joining" : ""})`);
    if (m.alive) {
      openWatcher(m);
      probeCompactedStart(m);
    }
  };

  const crash = (m: RealMember): void => {
    if (!m.alive) return;
    cluster.crash(m);
    crashes++;
    for (const p of pending) {
      if (p.member === m) pending.delete(p);
    }
  };

  /** Issues one client operation to a random live member. */
  const issue = (clientId: number): void => {
    const live = cluster.current().filter((m) => m.alive);
    if (live.length === 0) return;
    const m = clientRng.pick(live);
    const server = m.server;
    const key = clientRng.pick(profile.keys);
    const roll = clientRng.float();
    const value = `c${clientId}-${++valueSeq}`;
    let input: EtcdInput;
    let call: () => Promise<EtcdOutput>;
    if (profile.leases && roll >= 0.9) {
      issueLeaseOp(server, clientRng.float());
      return;
    }
    if (profile.compactions && roll < 0.02) {
      const target = server.store.currentRevision - clientRng.between(0, 20);
      if (target > 1) {
        void server.compact({ revision: BigInt(target), physical: false }).then(() => {
          if (m.member?.server === server) probeCompactedStart(m);
        }, () => undefined);
      }
      return;
    }
    if (roll < 0.04) {
      // A v2 store write (etcd's v2 keys API): outside the linearizability check, but every
      // member's v2 store must come out the same (compareStores), through crashes, restarts and
      // snapshots, though it is saved only in snapshots and at membership changes.
      const v2: Request =
        roll < 0.02
          ? Request.fromPartial({ Method: "PUT", Path: `/1/sim/${key}`, Val: value })
          : roll < 0.03
            ? Request.fromPartial({ Method: "POST", Path: "/1/sim/queue", Val: value })
            : Request.fromPartial({ Method: "DELETE", Path: `/1/sim/${key}` });
      void server.v2Request(v2).catch(() => undefined);
      return;
    }
    if (roll < 0.4) {
      input = { kind: "put", key, value };
      call = async () => {
        const r = await server.put(PutRequest.fromPartial({ key: enc(key), value: enc(value) }));
        return { kind: "put", revision: Number(r.header!.revision) };
      };
    } else if (roll < 0.75) {
      const serializable = roll >= 0.65;
      const at = tick();
      void server.range(RangeRequest.fromPartial({ key: enc(key), serializable })).then(
        (r) => {
          const kv = r.kvs[0];
          const output: EtcdOutput = { kind: "get", value: kv ? kv.value.toString() : null, modRevision: kv ? Number(kv.modRevision) : 0, revision: Number(r.header!.revision) };
          if (serializable) {
            if (m.member?.server === server) serializableReads.push({ key, value: output.value, modRevision: output.modRevision, revision: output.revision, what: `serializable get(${key}) on ${m.name}` });
          } else {
            history.push({ clientId, input: { kind: "get", key }, output, call: at, ret: tick() });
          }
        },
        () => undefined,
      );
      return;
    } else if (roll < 0.85) {
      input = { kind: "delete", key };
      call = async () => {
        const r = await server.deleteRange(DeleteRangeRequest.fromPartial({ key: enc(key) }));
        return { kind: "delete", deleted: Number(r.deleted), revision: Number(r.header!.revision) };
      };
    } else {
      const expected = clientRng.chance(0.3) ? null : lastValueSeen(key);
      input = { kind: "cas", key, expected, value };
      call = async () => {
        const compare = expected === null
          ? { key: enc(key), target: Compare_CompareTarget.CREATE, result: Compare_CompareResult.EQUAL, createRevision: 0n }
          : { key: enc(key), target: Compare_CompareTarget.VALUE, result: Compare_CompareResult.EQUAL, value: enc(expected) };
        const r = await server.txn(TxnRequest.fromPartial({
          compare: [compare],
          success: [{ requestPut: { key: enc(key), value: enc(value) } }],
          failure: [{ requestRange: { key: enc(key) } }],
        }));
        const read = r.responses[0]?.responseRange?.kvs[0];
        return {
          kind: "cas",
          succeeded: r.succeeded,
          revision: Number(r.header!.revision),
          value: read ? read.value.toString() : null,
          modRevision: read ? Number(read.modRevision) : 0,
        };
      };
    }
    const op: EtcdOperation = { clientId, input, output: undefined, call: tick(), ret: Infinity };
    history.push(op);
    const p: PendingOp = { op, member: m, incarnation: m.incarnation };
    pending.add(p);
    call().then(
      (output) => {
        if (!pending.has(p)) return;
        pending.delete(p);
        op.output = output;
        op.ret = tick();
      },
      (err: unknown) => {
        if (!pending.delete(p)) return;
        // Held for a leader until its deadline, or refused by raft at once: it never reached a
        // log, so it did not happen (any other error leaves its outcome unknown).
        if (err instanceof ServerError && (err.code === "ContextDeadline" || err.code === "ProposalDropped")) notApplied.add(op);
      },
    );
  };

  /** Leases granted so far (whether or not they still exist), and the keys put under them. */
  const leases: bigint[] = [];
  let leaseKeySeq = 0;
  /**
   * A lease operation on keys of their own ("l0".."l4", outside the linearizability check): grant
   * a short lease, put a key under one, keep one alive (on the leader), or revoke one.
   */
  const issueLeaseOp = (server: EtcdServer, roll: number): void => {
    const lease = leases.length > 0 ? clientRng.pick(leases) : undefined;
    if (roll < 0.25 || lease === undefined) {
      void server.leaseGrant(clientRng.between(1, 2), 0n).then((r) => leases.push(r.ID), () => undefined);
    } else if (roll < 0.7) {
      const key = `l${clientRng.between(0, 4)}`;
      void server.put(PutRequest.fromPartial({ key: enc(key), value: enc(`lv${++leaseKeySeq}`), lease })).catch(() => undefined);
    } else if (roll < 0.9) {
      if (server.isLeader) void server.leaseRenew(lease).catch(() => undefined);
    } else {
      void server.leaseRevoke(lease).catch(() => undefined);
    }
  };

  /** The last value any client wrote to `key` (a likely CAS expectation). */
  const lastValueSeen = (key: string): string | null => {
    for (let i = history.length - 1; i >= 0; i--) {
      const inp = history[i]!.input;
      if (inp.key === key && (inp.kind === "put" || inp.kind === "cas")) return inp.value;
    }
    return null;
  };

  let phase: "faults" | "liveness" = "faults";
  /** One membership change at a time (etcd's strict reconfiguration). */
  let membershipBusy = false;
  // Joins scheduled but not run yet: a new member's start, and the later look for an add whose
  // proposer gave up.
  let joinsPending = 0;
  const scheduleJoin = (at: number, fn: () => void | Promise<void>): void => {
    joinsPending++;
    cluster.schedule(at, () => {
      joinsPending--;
      return fn();
    });
  };
  let peerUrlSeq = 0;
  const downMs = (): number => faultRng.between(profile.heartbeatMs, 8 * profile.electionMs);
  const healLater = (): void => cluster.schedule(cluster.now + faultRng.between(profile.electionMs / 2, 10 * profile.electionMs), () => cluster.network.heal(false));
  const crashFor = (m: RealMember, ms: number): void => {
    crash(m);
    cluster.schedule(cluster.now + ms, () => startMember(m));
  };
  const isolate = (m: RealMember): void => {
    cluster.network.partition([[m.id], cluster.current().filter((x) => x !== m).map((x) => x.id)]);
    healLater();
  };

  /** Maybe crash or cut off a leader within a few ms of its election (divergent log tails). */
  let elections = 0;
  const leaderElected = (m: RealMember): void => {
    elections++;
    if (phase !== "faults" || !faultRng.chance(profile.newLeaderFaultRate)) return;
    const incarnation = m.incarnation;
    const crashIt = faultRng.chance(0.5);
    cluster.schedule(cluster.now + faultRng.between(0, 3 * profile.heartbeatMs), () => {
      if (m.incarnation !== incarnation || !m.alive) return;
      if (crashIt) crashFor(m, downMs());
      else isolate(m);
    });
  };

  const injectFault = (): void => {
    const kinds: string[] = ["campaign", "transfer"];
    if (profile.crashes) kinds.push("crash", "crash", "restart");
    if (profile.partitions) kinds.push("partition", "partition", "one-way", "heal");
    if (profile.networkFaults) kinds.push("network", "network");
    if (profile.leaderFaults) kinds.push("crash-leader", "crash-leader", "isolate-leader", "isolate-leader");
    if (profile.leaderFaults && profile.partitions) kinds.push("leader-minority", "leader-minority");
    if (profile.membership) kinds.push("add-learner", "promote", "remove");
    const kind = faultRng.pick(kinds);
    const ids = cluster.current().map((m) => m.id);
    const leader = cluster.leader();
    log(() => `fault ${kind} (leader ${leader?.name ?? "none"})`);
    switch (kind) {
      case "crash":
        crashFor(faultRng.pick(cluster.current()), downMs());
        break;
      case "crash-leader":
        if (leader) crashFor(leader, faultRng.between(profile.heartbeatMs, 3 * profile.electionMs));
        break;
      case "restart":
        for (const m of cluster.current()) if (!m.alive) void startMember(m);
        break;
      case "isolate-leader":
        if (leader) isolate(leader);
        break;
      case "leader-minority": {
        // The leader keeps a minority with it (so it may go on believing it leads) while the
        // majority elects a new leader and moves on.
        if (!leader) break;
        const others = faultRng.shuffled(ids.filter((id) => id !== leader.id));
        const companions = faultRng.between(0, Math.max(0, Math.floor((ids.length - 1) / 2) - 1));
        cluster.network.partition([[leader.id, ...others.slice(0, companions)], others.slice(companions)]);
        healLater();
        break;
      }
      case "partition": {
        const shuffled = faultRng.shuffled(ids);
        const cut = faultRng.between(1, shuffled.length - 1);
        cluster.network.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
        healLater();
        break;
      }
      case "one-way": {
        const links = faultRng.between(1, 3);
        for (let i = 0; i < links; i++) {
          const [a, b] = faultRng.shuffled(ids);
          cluster.network.blockOneWay(a!, b!);
        }
        healLater();
        break;
      }
      case "heal":
        cluster.network.heal(false);
        break;
      case "network":
        cluster.network.setFaults({
          dropRate: faultRng.pick([0, 0.05, 0.2]),
          duplicateRate: faultRng.pick([0, 0.05, 0.1]),
          minDelayUnits: 1,
          maxDelayUnits: faultRng.pick([3, 20, 60]),
        });
        break;
      case "campaign": {
        // A stale MsgTimeoutNow (from an earlier transfer) makes a member campaign at once.
        const target = faultRng.pick(cluster.current());
        const s = target.member?.server;
        if (s) cluster.inject(target, { ...EMPTY_MESSAGE, type: MessageType.TimeoutNow, from: s.leader || target.id, to: target.id, term: s.term });
        break;
      }
      case "add-learner": {
        // etcd allows one learner at a time; a new member joins with a fresh name and URL.
        if (!leader || membershipBusy) break;
        const url = `http://10.0.1.${++peerUrlSeq}:2380`;
        membershipBusy = true;
        const clusterId = leader.server.clusterId;
        const join = (id: bigint): void => {
          if (cluster.member(id)) return;
          const joined = cluster.addMember(id, url, clusterId);
          scheduleJoin(cluster.now + faultRng.between(1, 5 * profile.heartbeatMs), () => startMember(joined));
        };
        void leader.server.memberAdd([url], true).then(
          ({ member }) => {
            log(() => `member add ${url} -> ${member.id.toString(16)}`);
            join(member.id);
          },
          () => {
            // The change may still commit after its proposer gave up: look for it later, so that
            // no member of the configuration goes without its process.
            scheduleJoin(cluster.now + 20 * profile.electionMs, () => {
              const added = cluster.leader()?.server.membership.list().find((r) => r.peerUrls.includes(url));
              if (added) join(added.id);
            });
          },
        ).finally(() => (membershipBusy = false));
        break;
      }
      case "promote": {
        if (!leader || membershipBusy) break;
        const learner = leader.server.membership.list().find((r) => r.isLearner);
        if (!learner) break;
        membershipBusy = true;
        void leader.server.memberPromote(learner.id).catch(() => undefined).finally(() => (membershipBusy = false));
        break;
      }
      case "remove": {
        // Keep at least three voters; a removed member stops for good (its ID is never reused).
        if (!leader || membershipBusy) break;
        const records = leader.server.membership.list();
        const voters = records.filter((r) => !r.isLearner);
        const candidates = records.filter((r) => r.isLearner || voters.length > 3);
        if (candidates.length === 0) break;
        const target = faultRng.pick(candidates);
        membershipBusy = true;
        void leader.server.memberRemove(target.id).then(
          () => {
            const gone = cluster.member(target.id);
            // etcd's removed member stops once it learns of its removal; here, ten ticks later.
            if (gone) cluster.schedule(cluster.now + 10 * profile.heartbeatMs, () => cluster.retire(gone));
          },
          () => undefined,
        ).finally(() => (membershipBusy = false));
        break;
      }
      case "transfer": {
        // etcd's MoveLeader, through the member's API.
        const target = faultRng.pick(cluster.current());
        if (leader && target !== leader) void leader.server.moveLeader(target.id).catch(() => undefined);
        break;
      }
    }
  };

  try {
    for (const m of cluster.members) await startMember(m);
    const faultEnd = cluster.now + profile.faultMs;
    // Clients: each issues an operation every few milliseconds of virtual time.
    for (let c = 0; c < profile.clients; c++) {
      const loop = (): void => {
        if (failure !== undefined) return;
        issue(c);
        if (cluster.now < faultEnd) cluster.schedule(cluster.now + clientRng.between(1, 40), loop);
      };
      cluster.schedule(cluster.now + clientRng.between(1, 40), loop);
    }
    for (let t = cluster.now + profile.heartbeatMs; t < faultEnd; t += profile.heartbeatMs) {
      cluster.schedule(t, () => {
        if (faultRng.chance(profile.faultRate)) injectFault();
      });
    }
    await cluster.runUntil(faultEnd, () => checks.violation !== undefined);
    if (checks.violation) fail(`${checks.violation.invariant}: ${checks.violation.detail}`);
    if (failure === undefined) failure = haltedMember(cluster);

    // Liveness: heal, restart everyone, and demand progress everywhere.
    phase = "liveness";
    if (failure === undefined) {
      cluster.network.heal(true);
      for (const m of cluster.current()) if (!m.alive) await startMember(m);
      const deadline = cluster.now + profile.livenessBoundMs;
      let marker: { revision: number } | undefined;
      while (marker === undefined && cluster.now < deadline) {
        const leader = cluster.current().find((m) => m.member?.server.isLeader);
        if (leader) {
          const server = leader.server;
          const value = `liveness-${++valueSeq}`;
          const op: EtcdOperation = { clientId: -1, input: { kind: "put", key: profile.keys[0]!, value }, output: undefined, call: tick(), ret: Infinity };
          history.push(op);
          void server.put(PutRequest.fromPartial({ key: enc(profile.keys[0]!), value: enc(value) })).then((r) => {
            op.output = { kind: "put", revision: Number(r.header!.revision) };
            op.ret = tick();
            marker = { revision: Number(r.header!.revision) };
          }, () => undefined);
        }
        await cluster.runUntil(cluster.now + 5 * profile.heartbeatMs, () => checks.violation !== undefined);
      }
      if (marker === undefined) {
        fail(`liveness: no write acknowledged within ${profile.livenessBoundMs} ms after healing`);
      } else {
        // Members the cluster removed while their removal's proposer gave up stop here too.
        // (The membership as the most advanced running member has applied it.)
        const ahead = cluster.current().filter((m) => m.alive).sort((a, b) => b.server.applied - a.server.applied)[0];
        const configured = new Set(ahead?.server.membership.list().map((r) => r.id) ?? []);
        if (ahead) for (const m of cluster.current()) if (!configured.has(m.id)) cluster.retire(m);
        const inConfiguration = cluster.current();
        // Every member reaches the marker, and then they all settle on the same applied index (the
        // writes still in flight when the marker was acknowledged apply too).
        const converged = (): boolean => {
          if (!inConfiguration.every((m) => (m.member?.server.store.currentRevision ?? 0) >= marker!.revision)) return false;
          const applied = new Set(inConfiguration.map((m) => m.server.applied));
          return applied.size === 1 && cluster.leader()?.server.committed === [...applied][0];
        };
        while (cluster.now < deadline && !converged()) {
          await cluster.runUntil(cluster.now + 5 * profile.heartbeatMs, () => checks.violation !== undefined);
        }
        failure ??= haltedMember(cluster);
        const behind = inConfiguration.filter((m) => (m.member?.server.store.currentRevision ?? 0) < marker!.revision);
        if (behind.length === 0 && !converged()) {
          fail(`liveness: members did not settle on one applied index (${inConfiguration.map((m) => `${m.name} ${m.member?.server.applied}`).join(", ")})`);
        }
        const describeMember = (m: RealMember): string => {
          if (!m.member) return `${m.name} (not running)`;
          const st = m.server;
          return `${m.name} (revision ${st.store.currentRevision}, applied ${st.applied}, committed ${st.committed}, term ${st.term}, leader ${st.leader.toString(16)})`;
        };
        if (behind.length > 0) fail(`liveness: ${behind.map(describeMember).join(", ")} did not reach revision ${marker.revision}`);
        // A member whose add committed at the end of the fault phase starts after the
        // configuration above was taken: its start comes next, and every member, the new one
        // included, catches up before the stores are compared.
        if (failure === undefined && (joinsPending > 0 || cluster.current().length !== inConfiguration.length)) {
          const settleDeadline = cluster.now + profile.livenessBoundMs;
          const settled = (): boolean => {
            if (joinsPending > 0) return false;
            const members = cluster.current();
            if (!members.every((m) => m.alive && (m.member?.server.store.currentRevision ?? 0) >= marker!.revision)) return false;
            const applied = new Set(members.map((m) => m.server.applied));
            return applied.size === 1 && cluster.leader()?.server.committed === [...applied][0];
          };
          while (cluster.now < settleDeadline && !settled()) {
            await cluster.runUntil(cluster.now + 5 * profile.heartbeatMs, () => checks.violation !== undefined);
          }
          failure ??= haltedMember(cluster);
          if (failure === undefined && !settled()) {
            fail(`liveness: members did not catch up with the ones that joined late (${cluster.current().map(describeMember).join(", ")})`);
          }
        }
      }
      if (failure === undefined && checks.violation) fail(`${checks.violation.invariant}: ${checks.violation.detail}`);
      if (failure === undefined) failure = haltedMember(cluster);
      if (failure === undefined) failure = await compareStores(cluster);
    }
  } catch (err) {
    if (err instanceof Violation) fail(`${err.invariant}: ${err.detail}`);
    else fail(`exception: ${(err as Error).stack ?? String(err)}`);
  }

  // The history checks.
  const watched = checkWatches(watches);
  if (failure === undefined && "violation" in watched) fail(`watch: ${watched.violation}`);
  const revisions: RevisionHistory = "history" in watched ? watched.history : new Map();
  let finalRevision = 0;
  for (const m of cluster.members) finalRevision = Math.max(finalRevision, m.member?.server.store.currentRevision ?? 0);
  const happened = notApplied.size === 0 ? history : history.filter((op) => !notApplied.has(op));
  const checked = failure === undefined ? resolveUnknownWrites(happened, revisions, finalRevision) : happened;
  if (failure === undefined) {
    const acked = checked.flatMap((op) => ackedWrites(op));
    const why = checkAcknowledgedWrites(revisions, acked);
    if (why) fail(`watch history: ${why}`);
  }
  if (failure === undefined) {
    const why = checkLeaseDeletions(revisions, finalRevision);
    if (why) fail(`lease: ${why}`);
  }
  if (failure === undefined) {
    const why = checkSerializableReads(revisions, serializableReads);
    if (why) fail(`serializable read: ${why}`);
  }
  const openWrites = checked.some((op) => op.output === undefined && op.input.kind !== "get");
  let linearizability: "revisions" | "search" | "undecided" = "revisions";
  if (failure === undefined && !openWrites) {
    const why = checkRevisionLinearization(checked);
    if (why) fail(`linearizability: ${why}`);
  } else if (failure === undefined) {
    const why = checkRevisionOrder(checked);
    if (why) fail(`revision order: ${why}`);
  }
  if (failure === undefined && openWrites) {
    linearizability = "search";
    const r = checkLinearizable(etcdModel, checked, { maxStepsPerPartition: Number(process.env["SIM_LIN_STEPS"] ?? 2_000_000) });
    if (r.outcome === "illegal") {
      const prefix = new Set(r.failed!.longestPrefix);
      const describe = (o: EtcdOperation): string => `${prefix.has(o) ? "  " : "✗ "}${etcdModel.describe!(o)}`;
      fail(
        `linearizability: key history not linearizable (longest linearizable prefix: ${prefix.size} of ${r.failed!.ops.length}; ` +
          `✗ marks the rest):\n  ${r.failed!.ops.map(describe).join("\n  ")}`,
      );
    } else if (r.outcome === "timeout") {
      // Writes of unknown outcome can make the search exponential; what the revisions decide
      // (their order) was checked above.
      linearizability = "undecided";
    }
  }
  let watchEvents = 0;
  for (const w of watches) for (const r of w.responses) watchEvents += r.events.length;
  cluster.halt();
  return {
    ok: failure === undefined,
    failure,
    profile,
    linearizability,
    stats: {
      ops: history.length,
      unknown: checked.filter((o) => o.output === undefined).length,
      crashes,
      elections,
      readies: checks.readies,
      messages: cluster.messagesDelivered,
      watchEvents,
      compactedWatchesRefused: watches.filter((w) => w.startRevision < w.compactRevisionAtStart && w.compactRevision !== undefined).length,
      finalRevision,
    },
  };
}

function haltedMember(cluster: RealCluster): string | undefined {
  const m = cluster.members.find((x) => x.fatal !== undefined);
  return m ? `member ${m.name} halted: ${m.fatal}` : undefined;
}

/** Every member holds the same store: revision and HashKV at it. */
async function compareStores(cluster: RealCluster): Promise<string | undefined> {
  const states: { name: string; revision: number; hash: number }[] = [];
  const members = cluster.current();
  const revision = Math.min(...members.map((m) => m.server.store.currentRevision));
  const same = members.every((m) => m.server.store.currentRevision === revision);
  const compacted = members.find((m) => m.server.store.compactRevision >= revision);
  if (compacted && !same) {
    const all = members.map((m) => `${m.name} at ${m.server.store.currentRevision} compacted ${m.server.store.compactRevision}`).join(", ");
    return `stores differ: ${compacted.name} is compacted past the others' revision (${all})`;
  }
  for (const m of members) {
    // HashKV at a compacted revision is refused; at the head (0) it is not.
    const h = await m.server.store.hashKV(same ? 0 : revision);
    states.push({ name: m.name, revision: m.server.store.currentRevision, hash: h.hash });
  }
  const first = states[0]!;
  const other = states.find((s) => s.hash !== first.hash);
  const describe = (s: { name: string; hash: number }): string => {
    const store = cluster.current().find((m) => m.name === s.name)!.server.store;
    return `${s.name} hash ${s.hash.toString(16)} (compacted at ${store.compactRevision})`;
  };
  if (other) return `stores differ at revision ${revision}: ${states.map(describe).join(", ")}`;
  // The v2 stores, at one applied index: the same nodes, indexes and event history (the stats
  // count each member's own requests).
  if (new Set(members.map((m) => m.server.applied)).size === 1) {
    const v2 = members.map((m) => {
      const json = m.server.v2.save().toString();
      return { name: m.name, index: m.server.v2.index, json: json.slice(0, json.indexOf(',"Stats"')) };
    });
    const differs = v2.find((x) => x.json !== v2[0]!.json);
    if (differs) return `v2 stores differ at applied index ${members[0]!.server.applied}: ${v2.map((x) => `${x.name} at store index ${x.index}`).join(", ")}`;
  }
  return undefined;
}

/** The write an acknowledged operation made, for matching against the watched history. */
/**
 * A lease's keys go together: when the history is complete, every revision that deletes keys put
 * under leases ("l*" keys, deleted only by a lease's revocation or expiry) deletes exactly the
 * keys attached to one lease at that point, all of them, and nothing else.
 */
function checkLeaseDeletions(revisions: RevisionHistory, lastRevision: number): string | undefined {
  for (let rev = 2; rev <= lastRevision; rev++) if (!revisions.has(rev)) return undefined;
  const attached = new Map<string, bigint>();
  for (let rev = 2; rev <= lastRevision; rev++) {
    const events = revisions.get(rev)!.filter((e) => e.key.startsWith("l"));
    const deleted = events.filter((e) => e.type === "DELETE").map((e) => e.key);
    if (deleted.length > 0) {
      const lease = attached.get(deleted[0]!);
      const expected = [...attached.entries()].filter(([, l]) => l === lease).map(([k]) => k).sort();
      if (lease === undefined || expected.join(",") !== [...deleted].sort().join(",")) {
        return `revision ${rev} deletes [${deleted.join(", ")}], but the lease of ${deleted[0]} held [${expected.join(", ")}]`;
      }
    }
    for (const e of events) {
      if (e.type === "DELETE") attached.delete(e.key);
      else if (e.lease !== undefined && e.lease !== 0n) attached.set(e.key, e.lease);
      else attached.delete(e.key);
    }
  }
  return undefined;
}

/**
 * A serializable read may be stale, but it must show the key as it was at the revision it
 * answered at (when the watched history covers the key up to there).
 */
function checkSerializableReads(revisions: RevisionHistory, reads: { key: string; value: string | null; modRevision: number; revision: number; what: string }[]): string | undefined {
  const sorted = [...revisions.keys()].sort((a, b) => a - b);
  for (const r of reads) {
    // The history must be complete from revision 2 up to the read's revision to judge it.
    if (r.revision > 1 && !(sorted[0] === 2 && sorted.length >= r.revision - 1 && sorted[r.revision - 2] === r.revision)) continue;
    let value: string | null = null;
    let modRevision = 0;
    for (let rev = 2; rev <= r.revision; rev++) {
      for (const e of revisions.get(rev) ?? []) {
        if (e.key !== r.key) continue;
        value = e.type === "PUT" ? e.value : null;
        modRevision = e.type === "PUT" ? rev : 0;
      }
    }
    if (value !== r.value || (value !== null && modRevision !== r.modRevision)) {
      return `${r.what} read ${r.value ?? "∅"}@${r.modRevision} at revision ${r.revision}; the history has ${value ?? "∅"}@${modRevision}`;
    }
  }
  return undefined;
}
