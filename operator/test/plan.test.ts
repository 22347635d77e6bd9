import { describe, expect, it } from "vitest";
import type { EtcdClusterSpec, EtcdClusterStatus } from "../src/api/v1alpha1.js";
import { ANN_FORCE_NEW_CLUSTER, ANN_INITIAL_CLUSTER, ANN_INITIAL_STATE, ANN_MEMBER_ID, ANN_SPEC_HASH, peerURL } from "../src/cluster/naming.js";
import type { EtcdMemberEntry, EtcdMemberStatus, ObservedCluster } from "../src/cluster/observed.js";
import { plan, quorum } from "../src/cluster/plan.js";
import { buildStatus } from "../src/cluster/status.js";
import { versionRefusal } from "../src/cluster/version-path.js";

const opts = { clusterDomain: "cluster.local" };
const ref = { name: "e", namespace: "ns" };
const IC3 = [0, 1, 2].map((i) => `e-${i}=${peerURL(ref, `e-${i}`, "cluster.local")}`).join(",");

interface World {
  spec?: Partial<EtcdClusterSpec>;
  /** members: name → { id, learner?, started? (default true), healthy? (default true) } */
  members?: Record<string, { id: string; learner?: boolean; started?: boolean; healthy?: boolean }> | undefined;
  leader?: string;
  pods?: string[];
  podsDeleting?: string[];
  vols?: string[];
  volsDeleting?: string[];
  /** volumes whose member-id annotation differs from the member's */
  staleVols?: string[];
  /** volumes without a member-id annotation */
  unrecorded?: string[];
  raft?: Record<string, number>;
  now?: number;
  /** pod creation times */
  created?: Record<string, number>;
  previous?: EtcdClusterStatus;
  podAnnotations?: Record<string, Record<string, string>>;
  volAnnotations?: Record<string, Record<string, string>>;
  termination?: Record<string, string>;
  revision?: Record<string, number>;
  alarms?: { memberId: string; alarm: "NOSPACE" | "CORRUPT" | "NONE" }[];
  hashes?: Record<string, number>;
}

function world(w: World): ObservedCluster {
  const members = w.members;
  const entries: EtcdMemberEntry[] | undefined =
    members === undefined
      ? undefined
      : Object.entries(members).map(([name, m]) => ({
          id: m.id,
          name: m.started === false ? "" : name,
          peerURLs: [peerURL(ref, name, "cluster.local")],
          clientURLs: [],
          isLearner: m.learner === true,
        }));
  const leaderId = w.leader !== undefined && members ? members[w.leader]!.id : members ? Object.values(members)[0]!.id : "0";
  const statuses = new Map<string, EtcdMemberStatus>();
  for (const [name, m] of Object.entries(members ?? {})) {
    if (m.started === false || m.healthy === false) continue;
    statuses.set(name, {
      id: m.id,
      leaderId,
      raftIndex: w.raft?.[name] ?? 100,
      raftAppliedIndex: w.raft?.[name] ?? 100,
      revision: w.revision?.[name] ?? 5,
      dbSize: 1000,
      dbSizeInUse: 800,
      version: "3.4.23",
      isLearner: m.learner === true,
      clusterId: "c1",
    });
  }
  const idOf = (n: string) => members?.[n]?.id;
  const podNames = w.pods ?? Object.keys(members ?? {});
  const volNames = w.vols ?? Object.keys(members ?? {});
  return {
    name: "e",
    namespace: "ns",
    generation: 2,
    spec: { size: 3, ...w.spec },
    previousStatus: w.previous ?? {},
    pods: new Map(
      [...podNames, ...(w.podsDeleting ?? [])].map((n) => [
        n,
        {
          name: n,
          phase: "Running",
          ready: true,
          deleting: (w.podsDeleting ?? []).includes(n),
          podIP: "10.0.0.1",
          annotations: { ...(w.podAnnotations?.[n] ?? {}) },
          ...(w.created?.[n] !== undefined ? { createdAt: w.created[n] } : {}),
          ...(w.termination?.[n] !== undefined ? { terminationMessage: w.termination[n] } : {}),
        },
      ]),
    ),
    volumes: new Map(
      [...volNames, ...(w.volsDeleting ?? [])].map((n) => {
        const annotations: Record<string, string> = { [ANN_INITIAL_CLUSTER]: IC3, [ANN_INITIAL_STATE]: "new" };
        const id = (w.staleVols ?? []).includes(n) ? "dead" : idOf(n);
        if (id !== undefined && !(w.unrecorded ?? []).includes(n)) annotations[ANN_MEMBER_ID] = id;
        Object.assign(annotations, w.volAnnotations?.[n] ?? {});
        return [n, { name: n, deleting: (w.volsDeleting ?? []).includes(n), annotations }];
      }),
    ),
    etcd: {
      ...(entries ? { members: entries } : {}),
      statuses,
      ...(w.alarms ? { alarms: w.alarms } : {}),
      ...(w.hashes ? { hashes: new Map(Object.entries(w.hashes).map(([n, h]) => [n, { hash: h, compactRevision: 1, revision: 5 }])) } : {}),
    },
    now: w.now ?? 0,
  };
}

const three = { "e-0": { id: "a" }, "e-1": { id: "b" }, "e-2": { id: "c" } };

describe("plan", () => {
  it("bootstraps a new cluster with every member at once, static --initial-cluster", () => {
    const step = plan(world({ members: undefined, pods: [], vols: [] }), opts);
    expect(step).toEqual({ kind: "bootstrap", members: ["e-0", "e-1", "e-2"], initialCluster: IC3 });
  });

  it("restarts a bootstrap member's pod from its volume's records while the cluster forms", () => {
    const step = plan(world({ members: undefined, pods: ["e-0", "e-2"], vols: ["e-0", "e-1", "e-2"] }), opts);
    expect(step).toMatchObject({ kind: "create-pod", member: "e-1", initialCluster: IC3, state: "new" });
  });

  it("waits when pods exist but no member answers", () => {
    expect(plan(world({ members: undefined, pods: ["e-0", "e-1", "e-2"], vols: ["e-0", "e-1", "e-2"] }), opts)).toMatchObject({
      kind: "wait",
      reason: "NoMemberList",
    });
  });

  it("is steady when the cluster has its size and every member answers", () => {
    expect(plan(world({ members: three }), opts)).toEqual({ kind: "steady" });
  });

  it("records member IDs on bootstrap volumes", () => {
    expect(plan(world({ members: three, unrecorded: ["e-1"] }), opts)).toEqual({ kind: "record-member-id", member: "e-1", id: "b" });
  });

  it("restarts a member whose pod is gone but whose volume survives, as the same member", () => {
    const step = plan(world({ members: { ...three, "e-1": { id: "b", healthy: false } }, pods: ["e-0", "e-2"] }), opts);
    expect(step).toMatchObject({ kind: "create-pod", member: "e-1", memberId: "b" });
  });

  it("waits while a member's pod is terminating (a restart keeps the member)", () => {
    const step = plan(world({ members: { ...three, "e-1": { id: "b", healthy: false } }, pods: ["e-0", "e-2"], podsDeleting: ["e-1"] }), opts);
    expect(step).toMatchObject({ kind: "wait", reason: "MembersUnhealthy" });
  });

  it("removes a member whose volume is lost (repair), keeping quorum", () => {
    const w = world({ members: { ...three, "e-1": { id: "b", healthy: false } }, pods: ["e-0", "e-2"], vols: ["e-0", "e-2"] });
    expect(plan(w, opts)).toEqual({ kind: "remove-member", member: "e-1", id: "b", reason: "repair" });
  });

  it("treats a terminating volume or one of another member ID as lost", () => {
    const w1 = world({ members: { ...three, "e-2": { id: "c", healthy: false } }, vols: ["e-0", "e-1"], volsDeleting: ["e-2"] });
    expect(plan(w1, opts)).toMatchObject({ kind: "remove-member", member: "e-2", reason: "repair" });
    const w2 = world({ members: three, staleVols: ["e-0"] });
    expect(plan(w2, opts)).toMatchObject({ kind: "remove-member", member: "e-0", reason: "repair" });
  });

  it("does not remove a lost member when that would leave no quorum", () => {
    const w = world({
      members: { "e-0": { id: "a" }, "e-1": { id: "b", healthy: false }, "e-2": { id: "c", healthy: false } },
      pods: ["e-0"],
      vols: ["e-0", "e-2"],
    });
    expect(plan(w, opts)).toMatchObject({ kind: "wait", reason: "QuorumAtRisk" });
  });

  it("re-adds a repaired member as a learner under the same name once its old objects are gone", () => {
    const members = { "e-0": { id: "a" }, "e-2": { id: "c" } };
    expect(plan(world({ members, pods: ["e-0", "e-2"], vols: ["e-0", "e-2"], podsDeleting: ["e-1"] }), opts)).toMatchObject({
      kind: "wait",
      reason: "ObjectsTerminating",
    });
    expect(plan(world({ members, pods: ["e-0", "e-2"], vols: ["e-0", "e-2"] }), opts)).toEqual({
      kind: "add-learner",
      member: "e-1",
      peerURL: peerURL(ref, "e-1", "cluster.local"),
    });
  });

  it("deletes the pod and volume of a name that is not a member", () => {
    const members = { "e-0": { id: "a" }, "e-1": { id: "b" } };
    expect(plan(world({ members, spec: { size: 2 }, pods: ["e-0", "e-1", "e-2"], vols: ["e-0", "e-1"] }), opts)).toEqual({
      kind: "delete-pod",
      member: "e-2",
      reason: "not a member",
    });
    expect(plan(world({ members, spec: { size: 2 }, pods: ["e-0", "e-1"], vols: ["e-0", "e-1", "e-2"] }), opts)).toEqual({
      kind: "delete-volume",
      member: "e-2",
      reason: "not a member",
    });
  });

  describe("scale out, learner-first, one change at a time", () => {
    it("adds the lowest free ordinal as a learner", () => {
      expect(plan(world({ members: three, spec: { size: 5 } }), opts)).toMatchObject({ kind: "add-learner", member: "e-3" });
    });
    it("waits for an added learner to start", () => {
      const w = world({ members: { ...three, "e-3": { id: "d", learner: true, started: false } }, spec: { size: 5 } });
      expect(plan(w, opts)).toMatchObject({ kind: "wait", reason: "LearnerStarting" });
    });
    it("gives up a learner that never starts (removed after the join timeout, then re-added)", () => {
      const members = { ...three, "e-3": { id: "d", learner: true, started: false } };
      const base = { members, spec: { size: 5 }, created: { "e-3": 1_000 } };
      expect(plan(world({ ...base, now: 1_000 + 60_000 }), opts)).toMatchObject({ kind: "wait", reason: "LearnerStarting" });
      expect(plan(world({ ...base, now: 1_000 + 6 * 60_000 }), opts)).toEqual({ kind: "remove-member", member: "e-3", id: "d", reason: "failed-join" });
      expect(plan(world({ ...base, now: 1_000 + 90_000 }), { ...opts, joinTimeoutMs: 60_000 })).toMatchObject({ kind: "remove-member" });
    });
    it("waits for a started learner to catch up, then promotes it", () => {
      const members = { ...three, "e-3": { id: "d", learner: true } };
      expect(plan(world({ members, spec: { size: 5 }, raft: { "e-0": 1000, "e-3": 10 } }), opts)).toMatchObject({
        kind: "wait",
        reason: "LearnerCatchingUp",
      });
      expect(plan(world({ members, spec: { size: 5 }, raft: { "e-0": 1000, "e-3": 950 } }), opts)).toEqual({
        kind: "promote",
        member: "e-3",
        id: "d",
      });
    });
    it("adds nothing while a member does not answer", () => {
      const w = world({ members: { ...three, "e-2": { id: "c", healthy: false } }, spec: { size: 5 } });
      expect(plan(w, opts)).toMatchObject({ kind: "wait", reason: "MembersUnhealthy" });
    });
  });

  describe("scale in from the highest ordinal", () => {
    const five = { ...three, "e-3": { id: "d" }, "e-4": { id: "e" } };
    it("removes the highest member", () => {
      expect(plan(world({ members: five, leader: "e-0" }), opts)).toEqual({ kind: "remove-member", member: "e-4", id: "e", reason: "scale-in" });
    });
    it("moves leadership away from it first", () => {
      expect(plan(world({ members: five, leader: "e-4" }), opts)).toEqual({ kind: "move-leader", from: "e-4", to: "e-0", toId: "a" });
    });
    it("removes nothing while a member does not answer", () => {
      const w = world({ members: { ...five, "e-1": { id: "b", healthy: false } }, leader: "e-0" });
      expect(plan(w, opts)).toMatchObject({ kind: "wait" });
    });
    it("orders ordinals numerically (e-10 is higher than e-9)", () => {
      const m: Record<string, { id: string }> = {};
      for (let i = 0; i <= 10; i++) m[`e-${i}`] = { id: `x${i}` };
      expect(plan(world({ members: m, spec: { size: 9 }, leader: "e-0" }), opts)).toMatchObject({ member: "e-10" });
    });
  });

  it("refuses options the operator sets itself", () => {
    expect(plan(world({ members: three, spec: { options: { "data-dir": "/x" } } }), opts)).toMatchObject({ kind: "invalid-spec" });
  });

  it("refuses DNS SRV bootstrap without peer TLS (etcd 3.4 discovers only _etcd-server-ssl records)", () => {
    expect(plan(world({ members: undefined, pods: [], vols: [], spec: { bootstrap: { discovery: "DNSSRV" } } }), opts)).toMatchObject({
      kind: "invalid-spec",
      message: expect.stringMatching(/peer TLS/),
    });
  });

  it("takes no step when paused", () => {
    expect(plan(world({ members: three, spec: { size: 5, paused: true } }), opts)).toEqual({ kind: "paused" });
  });

  describe("memory storage", () => {
    it("treats a lost pod as lost data: the member is replaced, not restarted", () => {
      const w = world({ members: { ...three, "e-1": { id: "b", healthy: false } }, pods: ["e-0", "e-2"], spec: { storage: { medium: "Memory" } } });
      w.volumes.clear();
      for (const p of w.pods.values()) p.annotations[ANN_MEMBER_ID] = p.name === "e-0" ? "a" : "c";
      expect(plan(w, opts)).toMatchObject({ kind: "remove-member", member: "e-1", reason: "repair" });
    });
  });
});

describe("quorum", () => {
  it("is a strict majority", () => {
    expect([1, 2, 3, 4, 5].map(quorum)).toEqual([1, 2, 2, 3, 3]);
  });
});

describe("buildStatus", () => {
  it("reports members with roles, leader, readiness and conditions", () => {
    const w = world({ members: { ...three, "e-2": { id: "c", healthy: false } }, leader: "e-1" });
    const s = buildStatus(w, plan(w, opts), "2026-01-01T00:00:00Z");
    expect(s.leader).toBe("e-1");
    expect(s.readyMembers).toBe(2);
    expect(s.observedGeneration).toBe(2);
    expect(s.members!.map((m) => [m.name, m.role, m.healthy])).toEqual([
      ["e-0", "follower", true],
      ["e-1", "leader", true],
      ["e-2", "unknown", false],
    ]);
    const cond = Object.fromEntries(s.conditions!.map((c) => [c.type, [c.status, c.reason]]));
    expect(cond).toEqual({ Available: ["True", "QuorumHealthy"], Progressing: ["True", "MembersUnhealthy"], Degraded: ["True", "MembersUnhealthy"] });
    expect(s.phase).toBe("Running");
  });

  it("keeps lastTransitionTime while a condition holds", () => {
    const w = world({ members: three });
    const s1 = buildStatus(w, plan(w, opts), "2026-01-01T00:00:00Z");
    expect(s1.phase).toBe("Running");
    w.previousStatus = s1;
    const s2 = buildStatus(w, plan(w, opts), "2026-01-01T00:05:00Z");
    expect(s2.conditions!.every((c) => c.lastTransitionTime === "2026-01-01T00:00:00Z")).toBe(true);
  });

  it("says Creating and not Available before the cluster forms", () => {
    const w = world({ members: undefined, pods: [], vols: [] });
    const s = buildStatus(w, plan(w, opts), "t");
    expect(s.phase).toBe("Creating");
    expect(s.conditions!.find((c) => c.type === "Available")).toMatchObject({ status: "False", reason: "NoMemberList" });
  });
});

describe("rolling a changed spec", () => {
  /** A 3-member cluster whose pods carry `hashes` (member → spec hash), the spec's hash being "new". */
  function rolling(hashes: Record<string, string>, w: World = {}, version?: string): ObservedCluster {
    const o = world({ members: three, leader: "e-0", ...w });
    o.specHash = "new";
    for (const [n, h] of Object.entries(hashes)) {
      const p = o.pods.get(n);
      if (p) p.annotations[ANN_SPEC_HASH] = h;
    }
    if (version !== undefined) for (const st of o.etcd.statuses.values()) st.version = version;
    return o;
  }
  const old3 = { "e-0": "old", "e-1": "old", "e-2": "old" };

  it("is steady when every pod runs the spec's hash", () => {
    expect(plan(rolling({ "e-0": "new", "e-1": "new", "e-2": "new" }), opts)).toEqual({ kind: "steady" });
  });

  it("rolls followers first, highest ordinal first, one at a time", () => {
    expect(plan(rolling(old3), opts)).toEqual({ kind: "roll-member", member: "e-2", id: "c", fromHash: "old", toHash: "new" });
    expect(plan(rolling({ ...old3, "e-2": "new" }), opts)).toMatchObject({ kind: "roll-member", member: "e-1" });
  });

  it("rolls pods without a recorded hash (made before hashes were recorded)", () => {
    expect(plan(rolling({ "e-0": "new", "e-1": "new" }), opts)).toMatchObject({ kind: "roll-member", member: "e-2", fromHash: "" });
  });

  it("moves leadership to an updated member before rolling the leader, then rolls it", () => {
    const leaderOnly = { "e-0": "old", "e-1": "new", "e-2": "new" };
    expect(plan(rolling(leaderOnly), opts)).toEqual({ kind: "move-leader", from: "e-0", to: "e-1", toId: "b", reason: "roll" });
    expect(plan(rolling(leaderOnly, { leader: "e-1" }), opts)).toMatchObject({ kind: "roll-member", member: "e-0" });
  });

  it("never picks the leader while a follower is outdated", () => {
    expect(plan(rolling(old3, { leader: "e-2" }), opts)).toMatchObject({ kind: "roll-member", member: "e-1" });
  });

  it("rolls a single member directly (no one to hand leadership to)", () => {
    const o = world({ members: { "e-0": { id: "a" } }, spec: { size: 1 } });
    o.specHash = "new";
    expect(plan(o, opts)).toMatchObject({ kind: "roll-member", member: "e-0" });
  });

  it("is quorum-gated: waits while a member does not answer, its pod is terminating or missing", () => {
    const half = { ...old3, "e-2": "new" };
    expect(plan(rolling(half, { members: { ...three, "e-2": { id: "c", healthy: false } } }), opts)).toMatchObject({ kind: "wait", reason: "MembersUnhealthy" });
    expect(plan(rolling(half, { members: { ...three, "e-2": { id: "c", healthy: false } }, pods: ["e-0", "e-1"], podsDeleting: ["e-2"] }), opts)).toMatchObject({
      kind: "wait",
    });
    // The rolled member's pod is gone: it comes back on its volume, as itself.
    expect(plan(rolling(half, { members: { ...three, "e-2": { id: "c", healthy: false } }, pods: ["e-0", "e-1"] }), opts)).toMatchObject({
      kind: "create-pod",
      member: "e-2",
      memberId: "c",
    });
  });

  it("waits for every pod to be ready and every member to catch up with the leader", () => {
    const half = { ...old3, "e-2": "new" };
    const notReady = rolling(half);
    notReady.pods.get("e-2")!.ready = false;
    expect(plan(notReady, opts)).toMatchObject({ kind: "wait", reason: "RollWaitingReady" });
    expect(plan(rolling(half, { raft: { "e-0": 5000, "e-1": 5000, "e-2": 100 } }), opts)).toMatchObject({ kind: "wait", reason: "RollWaitingCatchUp" });
    expect(plan(rolling(half, { raft: { "e-0": 5000, "e-1": 4990, "e-2": 4500 } }), opts)).toMatchObject({ kind: "roll-member", member: "e-1" });
  });

  it("repairs and scales before it rolls", () => {
    expect(plan(rolling(old3, { spec: { size: 5 } }), opts)).toMatchObject({ kind: "add-learner", member: "e-3" });
  });

  describe("version path", () => {
    it("allows patch changes and the next minor", () => {
      expect(plan(rolling(old3, {}, "3.4.23"), { ...opts }).kind).toBe("roll-member");
      const o = rolling(old3, { spec: { version: "3.5" } }, "3.4.23");
      expect(plan(o, opts).kind).toBe("roll-member");
      o.spec.version = "3.4.20";
      expect(plan(o, opts).kind).toBe("roll-member");
    });
    it("refuses a downgrade across minor versions, a skipped minor and a major change, with a reason", () => {
      expect(plan(rolling(old3, { spec: { version: "3.3" } }, "3.4.23"), opts)).toMatchObject({ kind: "refused", reason: "VersionDowngrade" });
      expect(plan(rolling(old3, { spec: { version: "3.6" } }, "3.4.23"), opts)).toMatchObject({ kind: "refused", reason: "VersionSkipsMinor" });
      expect(plan(rolling(old3, { spec: { version: "4.0" } }, "3.4.23"), opts)).toMatchObject({ kind: "refused", reason: "VersionMajorChange" });
    });
    it("judges a half-rolled cluster by its lowest and highest versions", () => {
      const o = rolling({ ...old3, "e-2": "new" }, { spec: { version: "3.4" } }, "3.4.23");
      o.etcd.statuses.get("e-2")!.version = "3.5.0";
      expect(plan(o, opts)).toMatchObject({ kind: "refused", reason: "VersionDowngrade" });
    });
    it("stops the roll when a rolled member does not run spec.version", () => {
      const o = rolling({ ...old3, "e-2": "new" }, { spec: { version: "3.5" } }, "3.4.23");
      expect(plan(o, opts)).toMatchObject({ kind: "refused", reason: "VersionMismatch", message: expect.stringMatching(/e-2 runs 3\.4\.23/) });
    });
    it("reports a refusal in the Progressing condition", () => {
      const o = rolling(old3, { spec: { version: "3.6" } }, "3.4.23");
      const s = buildStatus(o, plan(o, opts), "t");
      expect(s.conditions!.find((c) => c.type === "Progressing")).toMatchObject({ status: "False", reason: "VersionSkipsMinor" });
      expect(s.phase).toBe("Running");
    });
  });

  it("shows progress in status: the spec's hash, each member's, how many are updated", () => {
    const o = rolling({ ...old3, "e-2": "new" });
    const s = buildStatus(o, plan(o, opts), "t");
    expect(s.specHash).toBe("new");
    expect(s.updatedMembers).toBe(1);
    expect(s.members!.map((m) => m.specHash)).toEqual(["old", "old", "new"]);
    expect(s.phase).toBe("Upgrading");
    expect(s.conditions!.find((c) => c.type === "Progressing")).toMatchObject({ status: "True", reason: "Rolling" });
  });
});

describe("versionRefusal", () => {
  it("follows etcd's one-minor-at-a-time rule", () => {
    expect(versionRefusal(["3.4.23"], "3.4")).toBeUndefined();
    expect(versionRefusal(["3.4.23"], "3.5.1")).toBeUndefined();
    expect(versionRefusal(["3.4.23", "3.5.0"], "3.5")).toBeUndefined();
    expect(versionRefusal(["3.4.23"], "3.3.9")?.reason).toBe("VersionDowngrade");
    expect(versionRefusal(["3.3.1", "3.4.0"], "3.5")?.reason).toBe("VersionSkipsMinor");
    expect(versionRefusal(["3.4.23"], "x")?.reason).toBe("VersionUnparsable");
    expect(versionRefusal([], "3.9")).toBeUndefined();
  });
});

describe("plan: permanent quorum loss", () => {
  // e-1 and e-2 lost their pods and volumes for good; e-0 answers alone (no leader).
  const lost = (w: World = {}): ObservedCluster => {
    const o = world({ members: three, pods: ["e-0"], vols: ["e-0"], ...w });
    for (const st of o.etcd.statuses.values()) st.leaderId = "0";
    return o;
  };
  const enabled = (extra: Record<string, unknown> = {}) => ({ recovery: { quorumLoss: { enabled: true, afterSeconds: 60, ...extra } } });
  const T0 = Date.parse("2026-01-01T00:00:00Z");
  const since = (ms: number): EtcdClusterStatus => ({ quorumLoss: { since: new Date(ms).toISOString(), phase: "Lost" } });

  it("is left alone when recovery is not enabled: reported Degraded/QuorumLost with what to do", () => {
    const o = lost({ now: T0 + 3_600_000, previous: since(T0) });
    const step = plan(o, opts);
    expect(step).toMatchObject({ kind: "quorum-lost", lost: ["e-1", "e-2"] });
    expect((step as { message: string }).message).toMatch(/nothing is done automatically.*spec\.recovery\.quorumLoss\.enabled/);
    const st = buildStatus(o, step, new Date(T0 + 3_600_000).toISOString());
    expect(st.conditions!.find((c) => c.type === "Degraded")).toMatchObject({ status: "True", reason: "QuorumLost" });
    expect(st.quorumLoss).toEqual({ since: new Date(T0).toISOString(), phase: "Lost", lostMembers: ["e-1", "e-2"] });
    expect(st.phase).toBe("Degraded");
  });

  it("the first pass that sees the loss records when it started", () => {
    const o = lost({ spec: enabled(), now: T0 });
    const step = plan(o, opts);
    expect(step).toMatchObject({ kind: "quorum-lost" });
    expect((step as { message: string }).message).toMatch(/recovery starts in 60s/);
    expect(buildStatus(o, step, new Date(T0).toISOString()).quorumLoss?.since).toBe(new Date(T0).toISOString());
  });

  it("never acts while a majority's data survives: one lost member is repaired, silent members restarted", () => {
    const oneLost = world({ spec: enabled(), members: three, vols: ["e-0", "e-1"], pods: ["e-0", "e-1"], now: T0 + 3_600_000, previous: since(T0) });
    expect(plan(oneLost, opts)).toMatchObject({ kind: "remove-member", member: "e-2", reason: "repair" });
    const silent = world({
      spec: enabled(),
      members: { "e-0": { id: "a" }, "e-1": { id: "b", healthy: false }, "e-2": { id: "c", healthy: false } },
      pods: ["e-0"],
      now: T0 + 3_600_000,
      previous: since(T0),
    });
    expect(plan(silent, opts)).toMatchObject({ kind: "create-pod", member: "e-1" });
  });

  it("waits afterSeconds from the first sighting, then restarts the survivor with --force-new-cluster", () => {
    expect(plan(lost({ spec: enabled(), now: T0 + 59_000, previous: since(T0) }), opts)).toMatchObject({ kind: "quorum-lost" });
    expect(plan(lost({ spec: enabled(), now: T0 + 60_000, previous: since(T0) }), opts)).toEqual({ kind: "force-new-cluster", member: "e-0", id: "a", lost: ["e-1", "e-2"] });
  });

  it("afterSeconds defaults to 300 and is at least 30", () => {
    const dflt = { recovery: { quorumLoss: { enabled: true } } };
    expect(plan(lost({ spec: dflt, now: T0 + 299_000, previous: since(T0) }), opts).kind).toBe("quorum-lost");
    expect(plan(lost({ spec: dflt, now: T0 + 300_000, previous: since(T0) }), opts).kind).toBe("force-new-cluster");
    const tiny = enabled({ afterSeconds: 1 });
    expect(plan(lost({ spec: tiny, now: T0 + 29_000, previous: since(T0) }), opts).kind).toBe("quorum-lost");
    expect(plan(lost({ spec: tiny, now: T0 + 30_000, previous: since(T0) }), opts).kind).toBe("force-new-cluster");
  });

  it("picks the most advanced survivor: applied index, then revision", () => {
    const five = { "e-0": { id: "a" }, "e-1": { id: "b" }, "e-2": { id: "c" }, "e-3": { id: "d" }, "e-4": { id: "f" } };
    const w = { spec: { size: 5, ...enabled() }, members: five, pods: ["e-0", "e-1"], vols: ["e-0", "e-1"], now: T0 + 60_000, previous: since(T0) };
    expect(plan(lost({ ...w, raft: { "e-0": 100, "e-1": 120 } }), opts)).toMatchObject({ kind: "force-new-cluster", member: "e-1", lost: ["e-2", "e-3", "e-4"] });
    expect(plan(lost({ ...w, raft: { "e-0": 120, "e-1": 120 }, revision: { "e-0": 9, "e-1": 7 } }), opts)).toMatchObject({ kind: "force-new-cluster", member: "e-0" });
  });

  it("restarts a survivor whose pod is gone, enabled or not", () => {
    expect(plan(lost({ pods: [] }), opts)).toMatchObject({ kind: "create-pod", member: "e-0", memberId: "a" });
  });

  it("source Backup (or no survivor answering, or memory storage) rebuilds from the backup, or reports why it cannot", () => {
    const late = { now: T0 + 60_000, previous: since(T0) };
    expect(plan(lost({ spec: enabled({ source: "Backup", backupName: "nightly" }), ...late }), opts)).toEqual({ kind: "recover-from-backup", backupName: "nightly", lost: ["e-1", "e-2"] });
    const noName = plan(lost({ spec: enabled({ source: "Backup" }), ...late }), opts);
    expect(noName).toMatchObject({ kind: "quorum-lost" });
    expect((noName as { message: string }).message).toMatch(/cannot recover.*backupName is not set/);
    const silent = lost({ spec: enabled({ backupName: "nightly" }), members: { "e-0": { id: "a", healthy: false }, "e-1": { id: "b" }, "e-2": { id: "c" } }, ...late });
    expect(plan(silent, opts)).toMatchObject({ kind: "recover-from-backup" });
    const memory = world({ spec: { ...enabled(), storage: { medium: "Memory" } }, members: three, pods: ["e-0"], ...late });
    expect(plan(memory, opts)).toMatchObject({ kind: "quorum-lost" });
  });

  it("forced restart: the pod comes back with the flag, is replaced once it serves alone, then members are re-added", () => {
    const force = { "e-0": { [ANN_FORCE_NEW_CLUSTER]: "a" } };
    // The old pod is gone: recreated with --force-new-cluster.
    const gone = world({ members: undefined, pods: [], vols: ["e-0"], volAnnotations: force });
    expect(plan(gone, opts)).toMatchObject({ kind: "create-pod", member: "e-0", memberId: "a", forceNewCluster: true });
    // An old pod without the flag still runs: it goes first.
    expect(plan(lost({ volAnnotations: force }), opts)).toEqual({ kind: "delete-pod", member: "e-0", reason: "restart with --force-new-cluster" });
    // Started with the flag, but its member list still names the others: wait.
    expect(plan(lost({ volAnnotations: force, podAnnotations: { "e-0": { [ANN_FORCE_NEW_CLUSTER]: "a" } } }), opts)).toMatchObject({ kind: "wait", reason: "ForcingNewCluster" });
    // Alone: the flag goes.
    const alone = world({ members: { "e-0": { id: "a" } }, pods: ["e-0"], vols: ["e-0"], volAnnotations: force, podAnnotations: { "e-0": { [ANN_FORCE_NEW_CLUSTER]: "a" } } });
    expect(plan(alone, opts)).toEqual({ kind: "finish-force-new-cluster", member: "e-0" });
    // Cleared: the ordinary scale path re-adds the others, learner first.
    const after = world({ members: { "e-0": { id: "a" } }, pods: ["e-0"], vols: ["e-0"], volAnnotations: { "e-0": { [ANN_FORCE_NEW_CLUSTER]: "" } } });
    expect(plan(after, opts)).toMatchObject({ kind: "add-learner", member: "e-1" });
  });

  it("status follows the recovery: ForcingNewCluster, Rejoining, then gone when steady", () => {
    const prev: EtcdClusterStatus = { quorumLoss: { since: new Date(T0).toISOString(), phase: "Lost", lostMembers: ["e-1", "e-2"] } };
    const o = lost({ spec: enabled(), now: T0 + 60_000, previous: prev });
    const step = plan(o, opts);
    const st = buildStatus(o, step, new Date(T0 + 60_000).toISOString());
    expect(st.quorumLoss).toMatchObject({ phase: "ForcingNewCluster", member: "e-0", since: new Date(T0).toISOString() });
    expect(st.conditions!.find((c) => c.type === "Degraded")).toMatchObject({ reason: "Recovering" });
    expect(st.conditions!.find((c) => c.type === "Progressing")).toMatchObject({ reason: "RecoveringQuorum" });
    const alone = world({ members: { "e-0": { id: "a" } }, pods: ["e-0"], vols: ["e-0"], previous: st, volAnnotations: { "e-0": { [ANN_FORCE_NEW_CLUSTER]: "a" } }, podAnnotations: { "e-0": { [ANN_FORCE_NEW_CLUSTER]: "a" } } });
    const st2 = buildStatus(alone, plan(alone, opts), "t");
    expect(st2.quorumLoss).toMatchObject({ phase: "Rejoining" });
    const scaling = world({ members: { "e-0": { id: "a" } }, pods: ["e-0"], vols: ["e-0"], previous: st2 });
    expect(buildStatus(scaling, plan(scaling, opts), "t").quorumLoss).toMatchObject({ phase: "Rejoining" });
    const whole = world({ members: three, previous: st2 });
    expect(plan(whole, opts)).toEqual({ kind: "steady" });
    expect(buildStatus(whole, { kind: "steady" }, "t").quorumLoss).toBeUndefined();
  });
});

describe("plan: corrupt members", () => {
  const DAMAGED = `{"level":"error","msg":"refusing to start: the member's data is damaged","error":"backend file 000005.ldb is damaged at offset 0: block checksum mismatch"}`;

  it("a member that cannot start because its data fails the checks is removed (then re-added as a learner)", () => {
    const w = world({ members: { "e-0": { id: "a" }, "e-1": { id: "b", healthy: false }, "e-2": { id: "c" } }, termination: { "e-1": DAMAGED } });
    expect(plan(w, opts)).toMatchObject({ kind: "remove-member", member: "e-1", id: "b", reason: "corrupt" });
  });

  it("a termination message without a data error is an ordinary crash: left to restart", () => {
    const w = world({ members: { "e-0": { id: "a" }, "e-1": { id: "b", healthy: false }, "e-2": { id: "c" } }, termination: { "e-1": "listen tcp: address already in use" } });
    expect(plan(w, opts)).toMatchObject({ kind: "wait", reason: "MembersUnhealthy" });
  });

  it("only while the rest keep quorum", () => {
    const w = world({ members: { "e-0": { id: "a" }, "e-1": { id: "b", healthy: false }, "e-2": { id: "c", healthy: false } }, termination: { "e-1": DAMAGED } });
    expect(plan(w, opts)).toMatchObject({ kind: "wait", reason: "QuorumAtRisk" });
  });

  it("under a CORRUPT alarm the member whose hash differs from a quorum's is removed", () => {
    const w = world({ members: three, alarms: [{ memberId: "0", alarm: "CORRUPT" }], hashes: { "e-0": 11, "e-1": 11, "e-2": 99 } });
    expect(plan(w, opts)).toMatchObject({ kind: "remove-member", member: "e-2", reason: "corrupt" });
  });

  it("an alarm naming a member marks it", () => {
    const w = world({ members: three, alarms: [{ memberId: "b", alarm: "CORRUPT" }] });
    expect(plan(w, opts)).toMatchObject({ kind: "remove-member", member: "e-1", reason: "corrupt" });
  });

  it("without a quorum agreeing on a hash nobody is removed; once all agree the alarm is disarmed", () => {
    const split = world({ members: three, alarms: [{ memberId: "0", alarm: "CORRUPT" }], hashes: { "e-0": 1, "e-1": 2, "e-2": 3 } });
    expect(plan(split, opts).kind).not.toBe("remove-member");
    const agreed = world({ members: three, alarms: [{ memberId: "0", alarm: "CORRUPT" }], hashes: { "e-0": 5, "e-1": 5, "e-2": 5 } });
    expect(plan(agreed, opts)).toEqual({ kind: "disarm-alarm", memberId: "0", alarm: "CORRUPT" });
  });
});
