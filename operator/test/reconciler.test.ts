/**
 * The reconciler against a simulated world: a fake Kubernetes (pods start at once when their
 * volume exists) and a fake etcd (a member list, learners, a leader), to check whole sequences
 * (bootstrap, scale out and in, repair, restart) pass by pass, the one-change-at-a-time rule, and
 * the status and events written.
 */
import { describe, expect, it } from "vitest";
import type { EtcdCluster, EtcdClusterStatus } from "../src/api/v1alpha1.js";
import { ANN_FORCE_NEW_CLUSTER, ANN_MEMBER_ID, LABEL_MEMBER } from "../src/cluster/naming.js";
import type { EtcdMemberEntry, EtcdMemberStatus, ObservedPod, ObservedVolume } from "../src/cluster/observed.js";
import { type ClusterStore, type EtcdAdmin, type MemberEndpoint, Reconciler, type ReconcilerDeps, type TlsProvider } from "../src/cluster/reconciler.js";

type Obj = Record<string, any>;

class World implements ClusterStore, EtcdAdmin {
  pods = new Map<string, { obj: Obj; ip: string; running: boolean }>();
  pvcs = new Map<string, Obj>();
  /** etcd members by ID. `data` tells which member's data a volume holds. */
  members = new Map<string, { name: string; peerURL: string; learner: boolean; started: boolean }>();
  leader = "";
  formed = false;
  nextId = 0x10;
  nextIp = 2;
  events: string[] = [];
  written: EtcdClusterStatus | undefined;
  services = new Map<string, Obj>();
  /** Membership changes, to check one at a time. */
  changes: string[] = [];
  /** The fake clock (ms). */
  clock = 0;
  /** Pods started with --force-new-cluster. */
  forcedStarts: string[] = [];
  /** Member IDs whose data fails the start-up checks: they never start, their pod says why. */
  broken = new Set<string>();
  /** Active alarms; hashes by member ID (default 1). */
  raised: { memberId: string; alarm: "NOSPACE" | "CORRUPT" | "NONE" }[] = [];
  hashes = new Map<string, number>();

  // ---- the fake kubelet: pods whose volume exists run; members start
  tick(): void {
    for (const [name, p] of this.pods) {
      if (p.running) continue;
      const claim = p.obj.spec.volumes[0].persistentVolumeClaim?.claimName;
      if (claim && !this.pvcs.has(claim)) continue;
      p.running = true;
      const args: string[] = p.obj.spec.containers[0].command;
      const state = args.find((a) => a.startsWith("--initial-cluster-state="))!.split("=")[1];
      const pvc = this.pvcs.get(claim);
      if (pvc?.data !== undefined) {
        const m = this.members.get(pvc.data);
        if (m) m.started = true;
        if (m && args.includes("--force-new-cluster")) {
          // etcd's --force-new-cluster: the member restarts as the only one of its cluster.
          for (const id of [...this.members.keys()]) if (id !== pvc.data) this.members.delete(id);
          this.leader = pvc.data;
          this.forcedStarts.push(name);
        }
        continue;
      }
      if (state === "existing") {
        const entry = [...this.members.entries()].find(([, m]) => m.name === "" && m.peerURL.includes(`//${name}.`));
        if (entry) {
          entry[1].name = name;
          entry[1].started = true;
          if (pvc) pvc.data = entry[0];
        }
      }
    }
    // Bootstrap: when every pod started with "new" runs, the cluster forms.
    if (!this.formed) {
      const fresh = [...this.pods.values()].filter((p) => p.running);
      if (fresh.length > 0 && fresh.length === this.pods.size) {
        for (const p of fresh) {
          const id = (this.nextId++).toString(16);
          const name = p.obj.metadata.name;
          const advertised = (p.obj.spec.containers[0].command as string[]).find((a) => a.startsWith("--initial-advertise-peer-urls="))?.split("=")[1];
          this.members.set(id, { name, peerURL: advertised ?? `http://${name}.x:2380`, learner: false, started: true });
          this.pvcs.get(`data-${name}`)!.data = id;
        }
        this.leader = [...this.members.keys()][0]!;
        this.formed = true;
      }
    }
  }

  /** Endpoints dialled with TLS (their server names). */
  tlsDials = new Set<string>();

  private memberAt(endpoint: MemberEndpoint): [string, { name: string; learner: boolean; started: boolean }] | undefined {
    if (endpoint.tls) this.tlsDials.add(endpoint.tls.serverName);
    const pod = [...this.pods.values()].find((p) => `${p.ip}:2379` === endpoint.address && p.running);
    if (!pod) return undefined;
    const data = this.pvcs.get(`data-${pod.obj.metadata.name}`)?.data;
    if (data !== undefined && this.broken.has(data)) return undefined;
    const m = data && this.members.get(data);
    return m && m.started ? [data, m] : undefined;
  }

  /** Voters that run: without a quorum of them nobody leads. */
  private hasQuorum(): boolean {
    const voters = [...this.members.entries()].filter(([, m]) => !m.learner);
    const up = voters.filter(([id, m]) => m.started && !this.broken.has(id) && [...this.pods.values()].some((p) => p.running && this.pvcs.get(`data-${p.obj.metadata.name}`)?.data === id));
    return up.length >= Math.floor(voters.length / 2) + 1;
  }

  // ---- EtcdAdmin
  async status(endpoint: MemberEndpoint): Promise<EtcdMemberStatus> {
    const at = this.memberAt(endpoint);
    if (!at) throw new Error("unavailable");
    return { id: at[0], leaderId: this.hasQuorum() ? this.leader : "0", raftIndex: 100, raftAppliedIndex: 100, revision: 7, dbSize: 20480, dbSizeInUse: 16384, version: "3.4.23", isLearner: at[1].learner, clusterId: "cafe" };
  }
  async memberList(endpoint: MemberEndpoint): Promise<EtcdMemberEntry[]> {
    if (!this.memberAt(endpoint)) throw new Error("unavailable");
    return [...this.members.entries()].map(([id, m]) => ({ id, name: m.started ? m.name : "", peerURLs: [m.peerURL], clientURLs: [], isLearner: m.learner }));
  }
  async memberAdd(_e: MemberEndpoint, peerURLs: string[], isLearner: boolean) {
    const id = (this.nextId++).toString(16);
    this.members.set(id, { name: "", peerURL: peerURLs[0]!, learner: isLearner, started: false });
    this.changes.push(`add ${id}`);
    return { id, members: await this.memberList(_e).catch(() => []) };
  }
  async memberRemove(_e: MemberEndpoint, id: string) {
    this.members.delete(id);
    this.changes.push(`remove ${id}`);
  }
  async memberPromote(_e: MemberEndpoint, id: string) {
    this.members.get(id)!.learner = false;
    this.changes.push(`promote ${id}`);
  }
  async moveLeader(_e: MemberEndpoint, id: string) {
    this.leader = id;
    this.changes.push(`move-leader ${id}`);
  }
  auth = false;
  authProbes = 0;
  async authEnabled(e: MemberEndpoint) {
    if (e.auth?.password !== "pw") throw new Error("etcdserver: authentication failed, invalid user ID or password");
    this.authProbes++;
    return this.auth;
  }
  async enableAuth() {
    this.auth = true;
    this.changes.push("auth enable");
  }
  async disableAuth() {
    this.auth = false;
    this.changes.push("auth disable");
  }
  async defragment(e: MemberEndpoint) {
    this.changes.push(`defragment ${this.memberAt(e)?.[1].name}`);
  }
  async alarms(endpoint: MemberEndpoint) {
    if (!this.memberAt(endpoint)) throw new Error("unavailable");
    return this.raised;
  }
  async disarm(_e: MemberEndpoint, alarm: { memberId: string; alarm: string }) {
    this.raised = this.raised.filter((a) => !(a.memberId === alarm.memberId && a.alarm === alarm.alarm));
    this.changes.push(`disarm ${alarm.alarm}`);
  }
  async hashKV(endpoint: MemberEndpoint, revision: number) {
    const at = this.memberAt(endpoint);
    if (!at) throw new Error("unavailable");
    return { hash: this.hashes.get(at[0]) ?? 1, compactRevision: 0, revision };
  }

  // ---- ClusterStore
  async listPods(): Promise<ObservedPod[]> {
    return [...this.pods.values()].map((p) => ({
      name: p.obj.metadata.labels[LABEL_MEMBER],
      phase: p.running ? "Running" : "Pending",
      ready: p.running,
      deleting: false,
      ...(p.running ? { podIP: p.ip } : {}),
      annotations: p.obj.metadata.annotations ?? {},
      ...(this.broken.has(this.pvcs.get(`data-${p.obj.metadata.name}`)?.data) ? { terminationMessage: "refusing to start: the member's data is damaged" } : {}),
    }));
  }
  async listVolumes(): Promise<ObservedVolume[]> {
    return [...this.pvcs.values()].map((v) => ({ name: v.metadata.labels[LABEL_MEMBER], deleting: false, annotations: v.metadata.annotations ?? {} }));
  }
  async create(obj: Obj): Promise<void> {
    if (obj.kind === "Pod" && !this.pods.has(obj.metadata.name)) this.pods.set(obj.metadata.name, { obj, ip: `10.0.0.${this.nextIp++}`, running: false });
    if (obj.kind === "PersistentVolumeClaim" && !this.pvcs.has(obj.metadata.name)) this.pvcs.set(obj.metadata.name, structuredClone(obj));
  }
  async apply(obj: Obj): Promise<void> {
    this.services.set(`${obj.kind}/${obj.metadata.name}`, obj);
  }
  async delete(kind: string, _ns: string, name: string): Promise<void> {
    if (kind === "Pod") this.pods.delete(name);
    else this.pvcs.delete(name);
  }
  async annotate(_k: string, _ns: string, name: string, annotations: Record<string, string>): Promise<void> {
    const v = this.pvcs.get(name)!;
    v.metadata.annotations = { ...v.metadata.annotations, ...annotations };
  }
  async writeStatus(_c: EtcdCluster, status: EtcdClusterStatus): Promise<void> {
    this.written = status;
  }
  async event(_c: EtcdCluster, type: string, reason: string, message: string): Promise<void> {
    this.events.push(`${type} ${reason}: ${message}`);
  }
  async pdbApiVersion(): Promise<string> {
    return "policy/v1beta1";
  }
}

function setup(size: number, tls?: TlsProvider, extra: Partial<ReconcilerDeps> = {}) {
  const world = new World();
  const cluster: EtcdCluster = {
    apiVersion: "etcd.etcd-ts.io/v1alpha1",
    kind: "EtcdCluster",
    metadata: { name: "e", namespace: "ns", uid: "u1", generation: 1 },
    spec: { size },
  };
  const rec = new Reconciler(
    { clusterDomain: "cluster.local", defaultImage: "img", serverCommand: ["etcd-ts"], requeueSteadyMs: 30000, requeueWaitMs: 3000, requeueActionMs: 1000 },
    { store: world, etcd: world, ...(tls ? { tls } : {}), log: { info() {}, warn() {} }, now: () => new Date(world.clock), ...extra },
  );
  // peer URLs in the fake etcd use the operator's own form
  const pass = async () => {
    const r = await rec.reconcile({ ...cluster, status: world.written ?? {} });
    world.tick();
    return r;
  };
  const untilSteady = async (limit = 60) => {
    const steps: string[] = [];
    for (let i = 0; i < limit; i++) {
      const r = await pass();
      if (r.step.kind === "steady") return steps;
      steps.push(r.step.kind === "wait" && process.env.DEBUG_STEPS ? `wait(${(r.step as any).message})` : r.step.kind);
    }
    throw new Error(`not steady after ${limit} passes: ${steps.join(" ")}`);
  };
  return { world, cluster, pass, untilSteady };
}

describe("Reconciler in a simulated world", () => {
  it("spec.auth: auth enabled once, after the cluster is up; probes reused while they agree; off again", async () => {
    const { world, cluster, untilSteady } = setup(3, undefined, { rootCredentials: { prepare: async () => ({ password: "pw" }) } });
    cluster.spec.auth = { enabled: true };
    const steps = await untilSteady();
    expect(steps.indexOf("enable-auth")).toBeGreaterThan(steps.indexOf("bootstrap"));
    expect(world.changes.filter((c) => c.startsWith("auth"))).toEqual(["auth enable"]);
    expect(world.written?.authEnabled).toBe(true);
    expect(world.events.some((e) => e.startsWith("Normal AuthEnabled"))).toBe(true);
    const probes = world.authProbes;
    await untilSteady();
    await untilSteady();
    expect(world.authProbes).toBe(probes); // the clock stands still: the agreeing probe is reused
    cluster.spec.auth = { enabled: false };
    await untilSteady();
    expect(world.changes.filter((c) => c.startsWith("auth"))).toEqual(["auth enable", "auth disable"]);
    expect(world.written?.authEnabled).toBe(false);
  });

  it("spec.auth with credentials etcd refuses: waits and says why", async () => {
    const { world, cluster, pass, untilSteady } = setup(1, undefined, { rootCredentials: { prepare: async () => ({ password: "wrong" }) } });
    await untilSteady();
    cluster.spec.auth = { enabled: true };
    const r = await pass();
    expect(r.step).toMatchObject({ kind: "wait", reason: "AuthNotReady" });
    expect((r.step as { message: string }).message).toMatch(/authentication failed/);
    expect(world.changes.filter((c) => c.startsWith("auth"))).toEqual([]);
  });

  it("spec.defrag: each member defragmented once, followers first and the leader last, recorded in status", async () => {
    const { world, cluster, untilSteady } = setup(3);
    await untilSteady();
    cluster.spec.defrag = { fragmentationPercent: 10 }; // the fake reports 20% free
    const steps = await untilSteady();
    expect(steps).toEqual(["defragment", "defragment", "defragment"]);
    expect(world.changes.filter((c) => c.startsWith("defragment"))).toEqual(["defragment e-2", "defragment e-1", "defragment e-0"]);
    expect(world.written?.members?.map((m) => m.lastDefragTime)).toEqual([new Date(0).toISOString(), new Date(0).toISOString(), new Date(0).toISOString()]);
    expect(world.events.filter((e) => e.startsWith("Normal Defragmented"))).toHaveLength(3);
  });

  it("bootstraps 3, records member IDs, and reports Running/Available", async () => {
    const { world, untilSteady } = setup(3);
    const steps = await untilSteady();
    expect(steps[0]).toBe("bootstrap");
    expect(world.members.size).toBe(3);
    for (const v of world.pvcs.values()) expect(v.metadata.annotations[ANN_MEMBER_ID]).toBe(v.data);
    expect(world.written?.phase).toBe("Running");
    expect(world.written?.readyMembers).toBe(3);
    expect(world.written?.leader).toBe("e-0");
    expect(world.written?.conditions?.find((c) => c.type === "Available")?.status).toBe("True");
    expect(world.services.get("PodDisruptionBudget/e")?.spec.minAvailable).toBe(2);
    expect(world.services.get("Service/e")?.spec.publishNotReadyAddresses).toBe(true);
    expect(world.events.some((e) => e.startsWith("Normal Bootstrap"))).toBe(true);
  });

  it("scales 3 -> 5 learner-first and back to 3 from the highest ordinal, one change at a time", async () => {
    const { world, cluster, untilSteady } = setup(3);
    await untilSteady();
    cluster.spec.size = 5;
    await untilSteady();
    expect(world.changes.map((c) => c.split(" ")[0])).toEqual(["add", "promote", "add", "promote"]);
    expect([...world.members.values()].map((m) => [m.name, m.learner])).toEqual([
      ["e-0", false],
      ["e-1", false],
      ["e-2", false],
      ["e-3", false],
      ["e-4", false],
    ]);
    expect(world.services.get("PodDisruptionBudget/e")?.spec.minAvailable).toBe(3);
    // The leader is the highest member: leadership moves first.
    world.leader = [...world.members.entries()].find(([, m]) => m.name === "e-4")![0];
    world.changes = [];
    cluster.spec.size = 3;
    await untilSteady();
    expect(world.changes.map((c) => c.split(" ")[0])).toEqual(["move-leader", "remove", "remove"]);
    expect([...world.members.values()].map((m) => m.name)).toEqual(["e-0", "e-1", "e-2"]);
    expect([...world.pods.keys()].sort()).toEqual(["e-0", "e-1", "e-2"]);
    expect([...world.pvcs.keys()].sort()).toEqual(["data-e-0", "data-e-1", "data-e-2"]);
  });

  it("restarts a deleted pod as the same member (same ID, same data)", async () => {
    const { world, untilSteady } = setup(3);
    await untilSteady();
    const before = [...world.members.keys()];
    world.pods.delete("e-1");
    const steps = await untilSteady();
    expect(steps).toContain("create-pod");
    expect([...world.members.keys()]).toEqual(before);
    expect(world.changes).toEqual([]);
  });

  it("replaces a member whose pod and volume are deleted: removed, re-added as a learner, promoted", async () => {
    const { world, untilSteady } = setup(3);
    await untilSteady();
    const oldId = world.pvcs.get("data-e-1")!.data;
    world.pods.delete("e-1");
    world.pvcs.delete("data-e-1");
    const steps = await untilSteady();
    expect(steps.filter((s) => s !== "wait")).toEqual(["remove-member", "add-learner", "promote"]);
    const m = [...world.members.entries()].find(([, x]) => x.name === "e-1")!;
    expect(m[0]).not.toBe(oldId);
    expect(world.pvcs.get("data-e-1")!.metadata.annotations[ANN_MEMBER_ID]).toBe(m[0]);
    expect(world.events.some((e) => e.includes("remove e-1 (repair)"))).toBe(true);
  });

  it("rolls a changed image one member at a time, followers first, the leader last after moving leadership", async () => {
    const { world, cluster, untilSteady, pass } = setup(3);
    await untilSteady();
    const ids = [...world.members.keys()];
    const hashBefore = world.written?.specHash;
    expect(world.written?.updatedMembers).toBe(3);
    cluster.spec.image = "img:2";
    cluster.metadata.generation = 2;
    const steps: string[] = [];
    let maxMissing = 0;
    for (let i = 0; i < 60; i++) {
      const r = await pass();
      maxMissing = Math.max(maxMissing, 3 - [...world.pods.values()].filter((p) => p.running).length);
      if (r.step.kind === "steady") break;
      if (r.step.kind !== "wait") steps.push(`${r.step.kind}${"member" in r.step ? ` ${r.step.member}` : ""}`);
    }
    expect(steps).toEqual(["roll-member e-2", "create-pod e-2", "roll-member e-1", "create-pod e-1", "move-leader", "roll-member e-0", "create-pod e-0"]);
    expect(maxMissing).toBe(1);
    expect([...world.pods.values()].map((p) => p.obj.spec.containers[0].image)).toEqual(["img:2", "img:2", "img:2"]);
    // Same members, same data; no membership change but the leadership move.
    expect([...world.members.keys()]).toEqual(ids);
    expect(world.changes.map((c) => c.split(" ")[0])).toEqual(["move-leader"]);
    expect(world.written?.specHash).not.toBe(hashBefore);
    expect(world.written?.updatedMembers).toBe(3);
    expect(world.written?.phase).toBe("Running");
    expect(world.events.filter((e) => e.startsWith("Normal RollMember")).length).toBe(3);
  });

  it("does not roll for changes that do not shape the pod (size, backup)", async () => {
    const { world, cluster, untilSteady } = setup(3);
    await untilSteady();
    cluster.spec.backup = { schedule: "0 * * * *" };
    expect(await untilSteady()).toEqual([]);
  });

  it("reports a refused version path and leaves the members alone", async () => {
    const { world, cluster, pass } = setup(3);
    for (let i = 0; i < 10; i++) await pass();
    cluster.spec.image = "img:3.6";
    cluster.spec.version = "3.6";
    const r = await pass();
    expect(r.step).toMatchObject({ kind: "refused", reason: "VersionSkipsMinor" });
    expect(world.events.at(-1)).toMatch(/^Warning VersionSkipsMinor: /);
    expect(world.written?.conditions?.find((c) => c.type === "Progressing")).toMatchObject({ status: "False", reason: "VersionSkipsMinor" });
    expect([...world.pods.values()].every((p) => p.obj.spec.containers[0].image === "img")).toBe(true);
  });

  it("with TLS: dials members by their DNS names with the operator's credentials; new certificates roll the members", async () => {
    let material = "epoch-1";
    const client = { caPem: "CA", certPem: "C", keyPem: "K" };
    const seen: string[][] = [];
    const provider: TlsProvider = {
      async prepare(_c, members) {
        seen.push(members);
        return { material, client };
      },
    };
    const { world, cluster, untilSteady } = setup(3, provider);
    cluster.spec.tls = { client: { operatorIssued: true }, peer: { operatorIssued: true } };
    await untilSteady();
    expect(seen[0]).toEqual(["e-0", "e-1", "e-2"]);
    expect([...world.tlsDials].sort()).toEqual(["e-0.e.ns.svc.cluster.local", "e-1.e.ns.svc.cluster.local", "e-2.e.ns.svc.cluster.local"]);
    expect([...world.pods.values()].every((p) => p.obj.spec.containers[0].command.includes("--client-cert-auth=true"))).toBe(true);
    material = "epoch-2";
    const steps = await untilSteady();
    expect(steps.filter((s) => s === "roll-member").length).toBe(3);
  });

  it("without a TLS provider a TLS cluster waits (TLSNotReady) and starts nothing", async () => {
    const { world, cluster, pass } = setup(3);
    cluster.spec.tls = { client: {} };
    const r = await pass();
    expect(r.step).toMatchObject({ kind: "wait", reason: "TLSNotReady" });
    expect(world.pods.size).toBe(0);
  });

  it("reports a failed step as a Warning event and retries", async () => {
    const { world, cluster, untilSteady, pass } = setup(3);
    await untilSteady();
    cluster.spec.size = 4;
    const add = world.memberAdd.bind(world);
    world.memberAdd = async () => {
      throw new Error("etcdserver: unhealthy cluster");
    };
    const r = await pass();
    expect(r.step.kind).toBe("add-learner");
    expect(r.requeueAfterMs).toBe(3000);
    expect(world.events.at(-1)).toMatch(/^Warning AddLearnerFailed: .*unhealthy cluster/);
    world.memberAdd = add;
    await untilSteady();
    expect(world.members.size).toBe(4);
  });

  describe("permanent quorum loss", () => {
    const loseTwo = (world: World) => {
      for (const n of ["e-1", "e-2"]) {
        world.pods.delete(n);
        world.pvcs.delete(`data-${n}`);
      }
    };

    it("enabled: after the threshold the survivor restarts alone with --force-new-cluster, then the others are re-added learner-first", async () => {
      const { world, cluster, pass, untilSteady } = setup(3);
      cluster.spec.recovery = { quorumLoss: { enabled: true, afterSeconds: 30 } };
      await untilSteady();
      const survivorId = world.pvcs.get("data-e-0")!.data;
      loseTwo(world);
      const first = await pass();
      expect(first.step).toMatchObject({ kind: "quorum-lost", lost: ["e-1", "e-2"] });
      expect(world.written?.quorumLoss).toMatchObject({ phase: "Lost", since: new Date(0).toISOString() });
      expect(world.written?.conditions?.find((c) => c.type === "Degraded")?.reason).toBe("QuorumLost");
      world.clock = 29_000;
      expect((await pass()).step.kind).toBe("quorum-lost");
      world.clock = 31_000;
      const steps = (await untilSteady()).filter((x) => x !== "wait");
      expect(steps).toEqual(["force-new-cluster", "create-pod", "finish-force-new-cluster", "create-pod", "add-learner", "promote", "add-learner", "promote"]);
      expect(world.forcedStarts).toEqual(["e-0"]);
      expect(world.pods.get("e-0")!.obj.spec.containers[0].command).not.toContain("--force-new-cluster");
      expect(world.pvcs.get("data-e-0")!.metadata.annotations[ANN_FORCE_NEW_CLUSTER]).toBe("");
      expect([...world.members.entries()].map(([id, m]) => [m.name, m.learner, id === survivorId])).toEqual([
        ["e-0", false, true],
        ["e-1", false, false],
        ["e-2", false, false],
      ]);
      expect(world.written?.quorumLoss).toBeUndefined();
      expect(world.written?.conditions?.find((c) => c.type === "Degraded")?.status).toBe("False");
      expect(world.events.filter((e) => /QuorumLost|ForceNewCluster/.test(e)).map((e) => e.split(":")[0])).toEqual([
        "Warning QuorumLost",
        "Normal ForceNewCluster",
        "Normal FinishForceNewCluster",
      ]);
    });

    it("source Backup: every pod and PVC goes, and the cluster is bootstrapped again from the backup", async () => {
      const { world, cluster, pass } = setup(3);
      const restored: unknown[] = [];
      const rec = new Reconciler(
        { clusterDomain: "cluster.local", defaultImage: "img", serverCommand: ["etcd-ts"], requeueSteadyMs: 30000, requeueWaitMs: 3000, requeueActionMs: 1000 },
        {
          store: world,
          etcd: world,
          log: { info() {}, warn() {} },
          now: () => new Date(world.clock),
          newMembers: {
            async beforeBootstrap(c) {
              restored.push(c.spec.bootstrap?.restore);
              return undefined;
            },
            forRecreatedPod: () => undefined,
          },
        },
      );
      for (let i = 0; i < 10; i++) await pass();
      cluster.spec.recovery = { quorumLoss: { enabled: true, afterSeconds: 30, source: "Backup", backupName: "nightly" } };
      loseTwo(world);
      const go = async () => {
        const r = await rec.reconcile({ ...cluster, status: world.written ?? {} });
        world.tick();
        return r.step.kind;
      };
      expect(await go()).toBe("quorum-lost");
      world.clock = 31_000;
      expect(await go()).toBe("recover-from-backup");
      expect(world.pods.size + world.pvcs.size).toBe(0);
      expect(world.written?.quorumLoss).toMatchObject({ phase: "RestoringBackup", backupName: "nightly" });
      world.members.clear();
      world.formed = false;
      expect(await go()).toBe("bootstrap");
      expect(restored).toEqual([{ backupName: "nightly", bumpRevision: 1_000_000 }]);
    });

    it("not enabled: reported Degraded/QuorumLost once as a Warning, and nothing is changed", async () => {
      const { world, pass, untilSteady } = setup(3);
      await untilSteady();
      world.changes = [];
      loseTwo(world);
      for (let i = 0; i < 10; i++) {
        world.clock += 3_600_000;
        expect((await pass()).step.kind).toBe("quorum-lost");
      }
      expect(world.changes).toEqual([]);
      expect([...world.pods.keys()]).toEqual(["e-0"]);
      expect([...world.pvcs.keys()]).toEqual(["data-e-0"]);
      expect(world.forcedStarts).toEqual([]);
      expect(world.written?.phase).toBe("Degraded");
      expect(world.written?.conditions?.find((c) => c.type === "Degraded")).toMatchObject({ status: "True", reason: "QuorumLost" });
      expect(world.written?.conditions?.find((c) => c.type === "Degraded")?.message).toMatch(/spec\.recovery\.quorumLoss\.enabled/);
      expect(world.events.filter((e) => e.startsWith("Warning QuorumLost")).length).toBe(1);
    });
  });

  describe("corrupt members", () => {
    it("a member whose data fails the start-up checks is removed and re-added as a learner under the same name", async () => {
      const { world, untilSteady } = setup(3);
      await untilSteady();
      const oldId = world.pvcs.get("data-e-1")!.data;
      world.broken.add(oldId);
      const steps = (await untilSteady()).filter((x) => x !== "wait");
      expect(steps).toEqual(["remove-member", "add-learner", "promote"]);
      const e1 = [...world.members.entries()].find(([, m]) => m.name === "e-1")!;
      expect(e1[0]).not.toBe(oldId);
      expect(world.events.some((e) => e.includes("remove e-1 (corrupt: its data failed the start-up checks)"))).toBe(true);
    });

    it("under a CORRUPT alarm the member whose hash disagrees is replaced, the alarm disarmed once the rest agree, and it is re-added", async () => {
      const { world, untilSteady } = setup(3);
      await untilSteady();
      const badId = world.pvcs.get("data-e-2")!.data;
      world.hashes.set(badId, 99);
      world.raised = [{ memberId: "0", alarm: "CORRUPT" }];
      world.changes = [];
      const steps = (await untilSteady()).filter((x) => x !== "wait");
      expect(steps).toEqual(["remove-member", "disarm-alarm", "add-learner", "promote"]);
      expect(world.changes.map((c) => c.split(" ")[0])).toEqual(["remove", "disarm", "add", "promote"]);
      expect(world.raised).toEqual([]);
    });

    it("never while the rest would lose quorum", async () => {
      const { world, pass, untilSteady } = setup(3);
      await untilSteady();
      world.broken.add(world.pvcs.get("data-e-1")!.data);
      world.broken.add(world.pvcs.get("data-e-2")!.data);
      world.changes = [];
      for (let i = 0; i < 5; i++) expect((await pass()).step).toMatchObject({ kind: "wait", reason: "QuorumAtRisk" });
      expect(world.changes).toEqual([]);
    });
  });
});
