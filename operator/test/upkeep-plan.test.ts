/**
 * The planner's upkeep of a settled cluster: auth on and off as spec.auth says (only with root
 * credentials and a healthy cluster), defragmentation by rule (size, fragmentation, schedule;
 * followers first, the leader last, one at a time, a cool-down, only while healthy) and the
 * NOSPACE alarm disarmed once every database is below the quota.
 */
import { describe, expect, it } from "vitest";
import type { EtcdClusterSpec, EtcdClusterStatus } from "../src/api/v1alpha1.js";
import { parseQuantity, planDefrag, quotaBytes, scheduleDone } from "../src/cluster/defrag-plan.js";
import { ANN_MEMBER_ID, peerURL } from "../src/cluster/naming.js";
import type { EtcdAlarm, EtcdMemberStatus, ObservedCluster } from "../src/cluster/observed.js";
import { plan } from "../src/cluster/plan.js";
import { buildStatus } from "../src/cluster/status.js";

const ref = { name: "e", namespace: "ns" };
const NOW = Date.parse("2026-01-10T12:00:00Z");
const MiB = 1024 * 1024;

interface W {
  spec?: Partial<EtcdClusterSpec>;
  /** dbSize / dbSizeInUse by member (default 1 MiB / 1 MiB). */
  db?: Record<string, [number, number]>;
  leader?: string;
  alarms?: EtcdAlarm[];
  authEnabled?: boolean;
  creds?: ObservedCluster["authCredentials"];
  previous?: EtcdClusterStatus;
  notReady?: string[];
  lagging?: string[];
  silent?: string[];
  slot?: number;
}

function world(w: W): ObservedCluster {
  const names = ["e-0", "e-1", "e-2"];
  const id = (n: string) => `a${n.slice(2)}`;
  const leaderId = id(w.leader ?? "e-0");
  const statuses = new Map<string, EtcdMemberStatus>();
  for (const n of names) {
    if (w.silent?.includes(n)) continue;
    const [size, inUse] = w.db?.[n] ?? [MiB, MiB];
    statuses.set(n, {
      id: id(n),
      leaderId,
      raftIndex: 5000,
      raftAppliedIndex: w.lagging?.includes(n) ? 100 : 5000,
      revision: 9,
      dbSize: size,
      dbSizeInUse: inUse,
      version: "3.4.23",
      isLearner: false,
      clusterId: "c",
    });
  }
  return {
    name: "e",
    namespace: "ns",
    generation: 1,
    spec: { size: 3, ...w.spec },
    previousStatus: w.previous ?? {},
    pods: new Map(names.map((n) => [n, { name: n, phase: "Running", ready: !w.notReady?.includes(n), deleting: false, podIP: "10.0.0.1", annotations: {} }])),
    volumes: new Map(names.map((n) => [n, { name: n, deleting: false, annotations: { [ANN_MEMBER_ID]: id(n) } }])),
    etcd: {
      members: names.map((n) => ({ id: id(n), name: n, peerURLs: [peerURL(ref, n, "cluster.local")], clientURLs: [], isLearner: false })),
      statuses,
      ...(w.alarms ? { alarms: w.alarms } : {}),
      ...(w.authEnabled !== undefined ? { authEnabled: w.authEnabled } : {}),
    },
    ...(w.creds ? { authCredentials: w.creds } : {}),
    ...(w.slot !== undefined ? { defragSlot: w.slot } : {}),
    now: NOW,
  };
}

const opts = { clusterDomain: "cluster.local", defragCooldownMs: 60_000 };

describe("auth planning", () => {
  it("turns auth on once the cluster is healthy and the root credentials are ready", () => {
    const spec = { auth: { enabled: true } };
    expect(plan(world({ spec, authEnabled: false, creds: { ready: true } }), opts)).toEqual({ kind: "enable-auth" });
    expect(plan(world({ spec, authEnabled: true, creds: { ready: true } }), opts)).toEqual({ kind: "steady" });
    expect(plan(world({ spec, authEnabled: false, creds: { ready: false, problem: "Secret s does not exist" } }), opts)).toMatchObject({ kind: "wait", reason: "AuthNotReady", message: "Secret s does not exist" });
    expect(plan(world({ spec, creds: { ready: true } }), opts)).toMatchObject({ kind: "wait", reason: "AuthUnknown" });
    expect(plan(world({ spec, authEnabled: false, creds: { ready: true }, notReady: ["e-1"] }), opts)).toMatchObject({ kind: "wait", reason: "AuthWaitingReady" });
    expect(plan(world({ spec, authEnabled: false, creds: { ready: true }, silent: ["e-2"] }), opts)).toMatchObject({ kind: "wait", reason: "MembersUnhealthy" });
  });

  it("turns auth off when the spec no longer asks for it; never touches a cluster that never had it", () => {
    expect(plan(world({ spec: { auth: { enabled: false } }, authEnabled: true, creds: { ready: true } }), opts)).toEqual({ kind: "disable-auth" });
    expect(plan(world({}), opts)).toEqual({ kind: "steady" });
    expect(plan(world({ authEnabled: false, creds: { ready: true } }), opts)).toEqual({ kind: "steady" });
  });

  it("status records authEnabled from the step and the observation", () => {
    const obs = world({ spec: { auth: { enabled: true } }, authEnabled: false, creds: { ready: true } });
    expect(buildStatus(obs, { kind: "enable-auth" }, new Date(NOW).toISOString()).authEnabled).toBe(true);
    expect(buildStatus(world({ authEnabled: true }), { kind: "steady" }, new Date(NOW).toISOString()).authEnabled).toBe(true);
    expect(buildStatus(world({ previous: { authEnabled: false } }), { kind: "steady" }, "").authEnabled).toBe(false);
  });
});

describe("defragmentation by rule", () => {
  it("parses quantities and the quota", () => {
    expect(parseQuantity("100Mi")).toBe(100 * MiB);
    expect(parseQuantity("1.5Gi")).toBe(1.5 * 1024 * MiB);
    expect(parseQuantity("2k")).toBe(2000);
    expect(parseQuantity("4096")).toBe(4096);
    expect(parseQuantity("lots")).toBeUndefined();
    expect(quotaBytes(world({}))).toBe(2 * 1024 * MiB);
    expect(quotaBytes(world({ spec: { options: { "quota-backend-bytes": "1048576" } } }))).toBe(MiB);
  });

  it("nothing without rules, or when no member is due", () => {
    expect(plan(world({ db: { "e-0": [10 * MiB, MiB] } }), opts)).toEqual({ kind: "steady" });
    expect(plan(world({ spec: { defrag: { dbSizeThreshold: "8Mi", fragmentationPercent: 50 } }, db: { "e-1": [4 * MiB, 3 * MiB] } }), opts)).toEqual({ kind: "steady" });
  });

  it("followers first (highest ordinal first), the leader last, one per pass", () => {
    const db: Record<string, [number, number]> = { "e-0": [10 * MiB, 2 * MiB], "e-1": [10 * MiB, 2 * MiB], "e-2": [10 * MiB, 2 * MiB] };
    const spec = { defrag: { fragmentationPercent: 50 } };
    const order: string[] = [];
    const previous: EtcdClusterStatus = { members: [] };
    for (let pass = 0; pass < 5; pass++) {
      const step = plan(world({ spec, db, leader: "e-1", previous }), opts);
      if (step.kind !== "defragment") {
        expect(step.kind).toBe("steady");
        break;
      }
      expect(step.reason).toBe("fragmentation");
      order.push(step.member);
      db[step.member] = [2 * MiB, 2 * MiB];
      previous.members!.push({ name: step.member, lastDefragTime: new Date(NOW).toISOString() });
    }
    expect(order).toEqual(["e-2", "e-0", "e-1"]);
  });

  it("size threshold, with a cool-down so a database that stays large is not defragmented every pass", () => {
    const spec = { defrag: { dbSizeThreshold: "8Mi" } };
    const db: Record<string, [number, number]> = { "e-0": [9 * MiB, 8.5 * MiB] };
    expect(plan(world({ spec, db }), opts)).toEqual({ kind: "defragment", member: "e-0", id: "a0", reason: "size" });
    const recent = { members: [{ name: "e-0", lastDefragTime: new Date(NOW - 30_000).toISOString() }] };
    expect(plan(world({ spec, db, previous: recent }), opts)).toEqual({ kind: "steady" });
    const old = { members: [{ name: "e-0", lastDefragTime: new Date(NOW - 120_000).toISOString() }] };
    expect(plan(world({ spec, db, previous: old }), opts)).toMatchObject({ kind: "defragment", member: "e-0" });
    // No free space reported (an estimate; etcd-ts reports none): still due, once per cool-down.
    expect(plan(world({ spec, db: { "e-0": [9 * MiB, 9 * MiB] } }), opts)).toMatchObject({ kind: "defragment", member: "e-0", reason: "size" });
    expect(plan(world({ spec, db: { "e-0": [9 * MiB, 9 * MiB] }, previous: recent }), opts)).toEqual({ kind: "steady" });
  });

  it("schedule: every member once per slot, whatever the sizes; the slot is recorded when all are done", () => {
    const slot = NOW - 60_000;
    const spec = { defrag: { schedule: "0 * * * *" } };
    const previous: EtcdClusterStatus = { members: [{ name: "e-0", lastDefragTime: new Date(slot - 3_600_000).toISOString() }] };
    const order: string[] = [];
    for (let pass = 0; pass < 4; pass++) {
      const step = plan(world({ spec, slot, previous }), opts);
      if (step.kind !== "defragment") break;
      expect(step.reason).toBe("schedule");
      order.push(step.member);
      previous.members = [...previous.members!.filter((m) => m.name !== step.member), { name: step.member, lastDefragTime: new Date(NOW).toISOString() }];
    }
    expect(order).toEqual(["e-2", "e-1", "e-0"]);
    const st = buildStatus(world({ spec, slot, previous }), { kind: "steady" }, new Date(NOW).toISOString());
    expect(st.defrag?.lastScheduleTime).toBe(new Date(slot).toISOString());
    expect(st.members?.find((m) => m.name === "e-1")?.lastDefragTime).toBe(new Date(NOW).toISOString());
    expect(scheduleDone(slot, [NOW, undefined])).toBeUndefined();
  });

  it("only while healthy: every pod ready, every member caught up", () => {
    const spec = { defrag: { fragmentationPercent: 10 } };
    const db: Record<string, [number, number]> = { "e-2": [10 * MiB, MiB] };
    expect(plan(world({ spec, db, notReady: ["e-0"] }), opts)).toMatchObject({ kind: "wait", reason: "DefragWaitingReady" });
    expect(plan(world({ spec, db, lagging: ["e-1"] }), opts)).toMatchObject({ kind: "wait", reason: "DefragWaitingCatchUp" });
    expect(plan(world({ spec, db, silent: ["e-1"] }), opts)).toMatchObject({ kind: "wait", reason: "MembersUnhealthy" });
    // Nothing due: the gate does not matter.
    expect(plan(world({ spec, notReady: ["e-0"] }), opts)).toEqual({ kind: "steady" });
  });

  it("NOSPACE: every member is defragmented once for the alarm (followers first), then it is disarmed once all are below the quota", () => {
    const spec = { options: { "quota-backend-bytes": String(4 * MiB) } };
    const alarms: EtcdAlarm[] = [{ memberId: "a1", alarm: "NOSPACE" }];
    // Every file below the quota (etcd refuses a write when size plus cost exceeds it): still
    // defragmented first, since disarming with nothing given back lets the next write raise it.
    const db: Record<string, [number, number]> = { "e-0": [3.9 * MiB, MiB], "e-1": [3.9 * MiB, MiB], "e-2": [3.9 * MiB, MiB] };
    const previous: EtcdClusterStatus = { members: [] };
    const steps: string[] = [];
    for (let pass = 0; pass < 6; pass++) {
      const obs = world({ spec, alarms, db, leader: "e-1", previous });
      const step = plan(obs, opts);
      const st = buildStatus(obs, step, new Date(NOW).toISOString());
      expect(st.defrag?.nospaceSince).toBe(new Date(NOW).toISOString());
      previous.defrag = st.defrag;
      if (step.kind === "defragment") {
        expect(step.reason).toBe("nospace");
        steps.push(step.member);
        db[step.member] = [MiB, MiB];
        previous.members = [...previous.members!.filter((m) => m.name !== step.member), { name: step.member, lastDefragTime: new Date(NOW).toISOString() }];
        continue;
      }
      steps.push(step.kind);
      break;
    }
    expect(steps).toEqual(["e-2", "e-0", "e-1", "disarm-alarm"]);
    expect(previous.defrag?.nospaceSince).toBe(new Date(NOW).toISOString());
    // Once the alarm is gone, so is its first sighting; while the alarms are unknown, it is kept.
    expect(buildStatus(world({ spec, db, previous, alarms: [] }), { kind: "steady" }, new Date(NOW).toISOString()).defrag).toBeUndefined();
    expect(buildStatus(world({ spec, db, previous }), { kind: "steady" }, new Date(NOW).toISOString()).defrag?.nospaceSince).toBe(new Date(NOW).toISOString());

    // Defragmented before the alarm was first seen: due again for it.
    const before = { defrag: { nospaceSince: new Date(NOW - 10_000).toISOString() }, members: ["e-0", "e-1", "e-2"].map((name) => ({ name, lastDefragTime: new Date(NOW - 30_000).toISOString() })) };
    expect(plan(world({ spec, alarms, previous: before }), opts)).toMatchObject({ kind: "defragment", member: "e-2", reason: "nospace" });
    // Done for this alarm but still at the quota: again once per cool-down, and the alarm stays.
    const after = { defrag: { nospaceSince: new Date(NOW - 60_000).toISOString() }, members: ["e-0", "e-1", "e-2"].map((name) => ({ name, lastDefragTime: new Date(NOW - 30_000).toISOString() })) };
    expect(plan(world({ spec, alarms, db: { "e-1": [5 * MiB, 5 * MiB] }, previous: after }), opts)).toEqual({ kind: "steady" });
    const later = { defrag: { nospaceSince: new Date(NOW - 600_000).toISOString() }, members: ["e-0", "e-1", "e-2"].map((name) => ({ name, lastDefragTime: new Date(NOW - 120_000).toISOString() })) };
    expect(plan(world({ spec, alarms, db: { "e-1": [5 * MiB, 5 * MiB] }, previous: later }), opts)).toMatchObject({ kind: "defragment", member: "e-1", reason: "nospace" });
    // Done for this alarm and below the quota: disarmed.
    expect(plan(world({ spec, alarms, db: { "e-1": [2 * MiB, MiB] }, previous: after }), opts)).toEqual({ kind: "disarm-alarm", memberId: "a1", alarm: "NOSPACE" });
    // A CORRUPT alarm is never the upkeep's to disarm: the member it names is repaired (plan.test.ts).
    expect(plan(world({ spec, alarms: [{ memberId: "a1", alarm: "CORRUPT" }] }), opts)).toMatchObject({ kind: "remove-member", member: "e-1", reason: "corrupt" });
  });

  it("planDefrag alone: the leader goes when it is the only one due", () => {
    const obs = world({ spec: { defrag: { fragmentationPercent: 20 } }, db: { "e-0": [10 * MiB, MiB] }, leader: "e-0" });
    const named = obs.etcd.members!.map((m) => ({ m, name: m.name }));
    expect(planDefrag(obs, named, "a0", { cooldownMs: 0 })).toEqual({ kind: "defragment", member: "e-0", id: "a0", reason: "fragmentation" });
  });
});
