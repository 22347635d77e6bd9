/**
 * One reconcile pass of one EtcdCluster: observe (Kubernetes objects through a ClusterStore,
 * etcd through an EtcdAdmin), ensure the Services and the PodDisruptionBudget, take the one step
 * plan() chooses, write status, emit an event for every action, and say when to come back.
 * Level-based: a pass depends only on what it observes, so a crash, a lost watch or a
 * duplicate pass costs nothing but time.
 */
import type { EtcdCluster, EtcdClusterStatus } from "../api/v1alpha1.js";
import {
  type ManifestOptions,
  type MemberStart,
  clientService,
  headlessService,
  memberPod,
  memberPvc,
  podDisruptionBudget,
  podSpecHash,
} from "./manifests.js";
import { ANN_CLIENT_TLS, ANN_FORCE_NEW_CLUSTER, ANN_MEMBER_ID, CLIENT_PORT, memberFromPeerURL, memberHost, memberName, pvcName } from "./naming.js";
import type { EtcdMemberEntry, EtcdMemberStatus, ObservedCluster, ObservedPod, ObservedVolume } from "./observed.js";
import { DEFAULT_RECOVERY_BUMP_REVISION, nameOf, plan, quorum, type Step } from "./plan.js";
import { buildStatus, describeStep } from "./status.js";
import { tlsSettings } from "./tls-layout.js";

/** The operator's client credentials for members' TLS client ports (PEM). */
export interface ClientTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A member's client port: `host:port`, and with client TLS the name its certificate carries and the credentials to dial it. */
export interface MemberEndpoint {
  address: string;
  tls?: ClientTls & { serverName: string };
}

/** etcd administration the reconciler needs. */
export interface EtcdAdmin {
  status(endpoint: MemberEndpoint): Promise<EtcdMemberStatus>;
  memberList(endpoint: MemberEndpoint): Promise<EtcdMemberEntry[]>;
  memberAdd(endpoint: MemberEndpoint, peerURLs: string[], isLearner: boolean): Promise<{ id: string; members: EtcdMemberEntry[] }>;
  memberRemove(endpoint: MemberEndpoint, id: string): Promise<void>;
  memberPromote(endpoint: MemberEndpoint, id: string): Promise<void>;
  moveLeader(endpoint: MemberEndpoint, targetId: string): Promise<void>;
  /**
   * Optional (without them corrupt members are found only by their pods' termination messages):
   * the active alarms (memberId "0": the whole cluster), disarming one, and a member's HashKV at
   * `revision`.
   */
  alarmList?(endpoint: MemberEndpoint): Promise<{ memberId: string; alarm: "NOSPACE" | "CORRUPT" | "NONE" }[]>;
  alarmDisarm?(endpoint: MemberEndpoint, memberId: string, alarm: "NOSPACE" | "CORRUPT"): Promise<void>;
  hashKV?(endpoint: MemberEndpoint, revision: number): Promise<{ hash: number; compactRevision: number; revision: number }>;
}

/** The TLS material of one pass, from a TlsProvider. */
export interface TlsState {
  /** A fingerprint of what the pods mount (part of the spec hash, so new certificates roll the members); "" without TLS. */
  material: string;
  /** Why the material is not ready; nothing is started or rolled until it is. */
  problem?: string;
  /** The operator's credentials for members' client ports (client TLS only). */
  client?: ClientTls;
}

/**
 * Makes sure the certificates a cluster's spec asks for exist and are current: issued by the
 * operator (its CA, member and client certificates, renewed before expiry) or read from the
 * user's Secrets. `members` are the member names that need a certificate.
 */
export interface TlsProvider {
  prepare(cluster: EtcdCluster, members: string[], now: Date): Promise<TlsState>;
}

/** The Kubernetes side the reconciler needs. */
export interface ClusterStore {
  /** Pods of the cluster, by member name. */
  listPods(namespace: string, cluster: string): Promise<ObservedPod[]>;
  /** Member PVCs of the cluster, with `name` set to the member name. */
  listVolumes(namespace: string, cluster: string): Promise<ObservedVolume[]>;
  /** Creates an object; an existing one is left as it is. */
  create(obj: Record<string, unknown>): Promise<void>;
  /** Creates an object or makes its spec (and labels) what is given. */
  apply(obj: Record<string, unknown>): Promise<void>;
  /** Deletes; a missing object is fine. */
  delete(kind: "Pod" | "PersistentVolumeClaim", namespace: string, name: string): Promise<void>;
  annotate(kind: "PersistentVolumeClaim", namespace: string, name: string, annotations: Record<string, string>): Promise<void>;
  writeStatus(cluster: EtcdCluster, status: EtcdClusterStatus): Promise<void>;
  event(cluster: EtcdCluster, type: "Normal" | "Warning", reason: string, message: string): Promise<void>;
  /** The PodDisruptionBudget apiVersion this API server serves (policy/v1, or policy/v1beta1 before 1.21). */
  pdbApiVersion(): Promise<string>;
}

/** A change to a new member's objects (pure): e.g. a restore's init container and annotation. */
export interface MemberObjects {
  pvc(obj: Record<string, unknown>): Record<string, unknown>;
  /** `start` is what the member starts with (its initial cluster, also when DNS SRV discovery leaves it out of the flags). */
  pod(obj: Record<string, unknown>, start: MemberStart): Record<string, unknown>;
}

/**
 * Optional: how the members of a new cluster are made differently (backup/restore-hook.ts:
 * a cluster bootstrapped from a backup).
 */
export interface NewMemberHook {
  /** Before a bootstrap creates anything; throws to postpone it (the step fails with the error's message and is retried). */
  beforeBootstrap(cluster: EtcdCluster): Promise<MemberObjects | undefined>;
  /** For the pod of a member recreated with --initial-cluster-state new, from its volume's annotations. */
  forRecreatedPod(cluster: EtcdCluster, volumeAnnotations: Record<string, string>): MemberObjects | undefined;
}

/** Optional: spec.backup (backup/backup-policy.ts keeps the cluster's policy EtcdBackup). */
export interface BackupPolicySync {
  sync(cluster: EtcdCluster): Promise<{ status: EtcdClusterStatus["backup"]; action?: { type: "Normal" | "Warning"; reason: string; message: string } }>;
}

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface ReconcilerOptions extends ManifestOptions {
  /** See PlanOptions.joinTimeoutMs. */
  joinTimeoutMs?: number;
  /** Requeue delays, ms. */
  requeueSteadyMs: number;
  requeueWaitMs: number;
  requeueActionMs: number;
}

export interface ReconcilerDeps {
  store: ClusterStore;
  etcd: EtcdAdmin;
  /** Certificates for spec.tls; without one, a cluster asking for TLS waits (TLSNotReady). */
  tls?: TlsProvider;
  log: Logger;
  now: () => Date;
  newMembers?: NewMemberHook;
  backupPolicy?: BackupPolicySync;
  /** A short text for an error (default: its message). */
  describeError?: (err: unknown) => string;
}

export interface PassResult {
  step: Step;
  requeueAfterMs: number;
}

export class Reconciler {
  constructor(
    private readonly options: ReconcilerOptions,
    private readonly deps: ReconcilerDeps,
  ) {}

  async reconcile(cluster: EtcdCluster): Promise<PassResult> {
    const { store, log } = this.deps;
    const ns = cluster.metadata.namespace;
    const name = cluster.metadata.name;
    if (cluster.metadata.deletionTimestamp) {
      this.clientTls.delete(`${ns}/${name}`);
      return { step: { kind: "steady" }, requeueAfterMs: 0 };
    }

    const obs = await this.observe(cluster);
    const step = plan(obs, { clusterDomain: this.options.clusterDomain, ...(this.options.joinTimeoutMs ? { joinTimeoutMs: this.options.joinTimeoutMs } : {}) });

    await this.ensureServices(cluster, obs);

    let requeueAfterMs = this.requeueFor(step);
    let failed: string | undefined;
    if (isAction(step)) {
      log.info("step", { cluster: `${ns}/${name}`, step: step.kind, what: describeStep(step) });
      try {
        await this.execute(cluster, obs, step);
        await store.event(cluster, "Normal", eventReason(step), describeStep(step)).catch(() => {});
      } catch (err) {
        failed = this.deps.describeError?.(err) ?? (err instanceof Error ? err.message : String(err));
        requeueAfterMs = this.options.requeueWaitMs;
        log.warn("step failed", { cluster: `${ns}/${name}`, step: step.kind, error: failed });
        await store.event(cluster, "Warning", `${eventReason(step)}Failed`, `${describeStep(step)}: ${failed}`).catch(() => {});
      }
    } else if (step.kind === "invalid-spec" && cluster.status?.conditions?.find((c) => c.type === "Degraded")?.reason !== "InvalidSpec") {
      await store.event(cluster, "Warning", "InvalidSpec", step.message).catch(() => {});
    } else if (step.kind === "refused" && cluster.status?.conditions?.find((c) => c.type === "Progressing")?.reason !== step.reason) {
      await store.event(cluster, "Warning", step.reason, step.message).catch(() => {});
    } else if (step.kind === "quorum-lost" && cluster.status?.conditions?.find((c) => c.type === "Degraded")?.reason !== "QuorumLost") {
      await store.event(cluster, "Warning", "QuorumLost", step.message).catch(() => {});
    }

    const status = buildStatus(obs, step, this.deps.now().toISOString());
    if (failed !== undefined) status.lastAction = `${describeStep(step)} failed: ${failed}`;
    if (this.deps.backupPolicy !== undefined) {
      try {
        const r = await this.deps.backupPolicy.sync(cluster);
        if (r.status !== undefined) status.backup = r.status;
        if (r.action !== undefined && (r.action.type === "Normal" || cluster.status?.backup?.message !== r.status?.message)) {
          await store.event(cluster, r.action.type, r.action.reason, r.action.message).catch(() => {});
        }
      } catch (err) {
        const text = this.deps.describeError?.(err) ?? (err instanceof Error ? err.message : String(err));
        log.warn("backup policy failed", { cluster: `${ns}/${name}`, error: text });
        status.backup = { ...(cluster.status?.backup ?? {}), message: `spec.backup: ${text}` };
        requeueAfterMs = Math.min(requeueAfterMs, this.options.requeueWaitMs);
      }
    }
    if (!sameStatus(cluster.status, status)) await store.writeStatus(cluster, status);
    return { step, requeueAfterMs };
  }

  private requeueFor(step: Step): number {
    if (step.kind === "steady" || step.kind === "paused" || step.kind === "invalid-spec" || step.kind === "refused") return this.options.requeueSteadyMs;
    if (step.kind === "wait" || step.kind === "quorum-lost") return this.options.requeueWaitMs;
    return this.options.requeueActionMs;
  }

  /**
   * Reads the cluster's pods and volumes, prepares its TLS material, then asks every running
   * member for its Status and one voter for the member list.
   */
  async observe(cluster: EtcdCluster): Promise<ObservedCluster> {
    const { store, etcd } = this.deps;
    const ns = cluster.metadata.namespace;
    const [pods, vols] = await Promise.all([store.listPods(ns, cluster.metadata.name), store.listVolumes(ns, cluster.metadata.name)]);
    const tls = await this.prepareTls(cluster, [...pods.map((p) => p.name), ...vols.map((v) => v.name)]);
    const key = `${ns}/${cluster.metadata.name}`;
    if (tls.client) this.clientTls.set(key, tls.client);
    else this.clientTls.delete(key);
    const obs: ObservedCluster = {
      name: cluster.metadata.name,
      namespace: ns,
      generation: cluster.metadata.generation ?? 0,
      spec: cluster.spec,
      previousStatus: cluster.status ?? {},
      pods: new Map(pods.map((p) => [p.name, p])),
      volumes: new Map(vols.map((v) => [v.name, v])),
      etcd: { statuses: new Map() },
      specHash: this.specHash(cluster, tls.material),
      ...(tls.problem !== undefined ? { tlsProblem: tls.problem } : {}),
      now: this.deps.now().getTime(),
    };
    const reachable = pods.filter((p) => p.podIP && !p.deleting && p.phase === "Running");
    const answers = await Promise.all(
      reachable.map(async (p) => {
        try {
          return { pod: p, st: await etcd.status(this.endpointOf(cluster, p)) };
        } catch {
          return { pod: p, st: undefined };
        }
      }),
    );
    const answered = answers.filter((a): a is { pod: ObservedPod; st: EtcdMemberStatus } => a.st !== undefined);
    // The member list from the leader if it answered, else from any voter.
    const order = [...answered].sort((a, b) => rank(a.st) - rank(b.st));
    for (const a of order) {
      if (a.st.isLearner) continue;
      try {
        obs.etcd.members = await etcd.memberList(this.endpointOf(cluster, a.pod));
        break;
      } catch {
        // try the next one
      }
    }
    for (const a of answered) {
      // A status belongs to the member whose ID it reports (a pod may run a stale member).
      const m = obs.etcd.members?.find((x) => x.id === a.st.id);
      const n = m === undefined ? (obs.etcd.members === undefined ? a.pod.name : undefined) : nameOf(obs, m);
      if (n === a.pod.name) obs.etcd.statuses.set(n, a.st);
    }
    await this.observeAlarms(cluster, obs, order);
    return obs;
  }

  /**
   * The active alarms (only with a leader: etcd answers AlarmList through the log), and while
   * CORRUPT is raised every answering member's HashKV at the lowest revision any of them reports.
   */
  private async observeAlarms(cluster: EtcdCluster, obs: ObservedCluster, order: { pod: ObservedPod; st: EtcdMemberStatus }[]): Promise<void> {
    const { etcd } = this.deps;
    if (etcd.alarmList === undefined || obs.etcd.members === undefined) return;
    if (![...obs.etcd.statuses.values()].some((st) => st.leaderId !== "0")) return;
    for (const a of order) {
      if (a.st.isLearner) continue;
      try {
        obs.etcd.alarms = await etcd.alarmList(this.endpointOf(cluster, a.pod));
        break;
      } catch {
        // try the next one
      }
    }
    if (etcd.hashKV === undefined || !obs.etcd.alarms?.some((a) => a.alarm === "CORRUPT") || obs.etcd.statuses.size === 0) return;
    const revision = Math.min(...[...obs.etcd.statuses.values()].map((st) => st.revision));
    const hashes = new Map<string, { hash: number; compactRevision: number; revision: number }>();
    await Promise.all(
      [...obs.etcd.statuses.keys()].map(async (name) => {
        const pod = obs.pods.get(name);
        if (pod === undefined) return;
        try {
          hashes.set(name, await etcd.hashKV!(this.endpointOf(cluster, pod), revision));
        } catch {
          // not counted
        }
      }),
    );
    obs.etcd.hashes = hashes;
  }

  /** podSpecHash of the cluster's current spec and TLS material. */
  specHash(cluster: EtcdCluster, tlsMaterial = ""): string {
    return podSpecHash(cluster, this.options, tlsMaterial);
  }

  /** The operator's client credentials by cluster (`namespace/name`), from its latest pass (client TLS only). */
  private readonly clientTls = new Map<string, ClientTls>();

  private async prepareTls(cluster: EtcdCluster, existing: string[]): Promise<TlsState> {
    const s = tlsSettings(cluster.spec);
    if (s.client === undefined && s.peer === undefined) return { material: "" };
    if (this.deps.tls === undefined) return { material: "", problem: "this operator has no TLS provider" };
    const wanted = Array.from({ length: Math.max(0, cluster.spec.size) }, (_, i) => memberName(cluster.metadata.name, i));
    const names = [...new Set([...wanted, ...existing])].filter((n) => n !== "").sort();
    try {
      return await this.deps.tls.prepare(cluster, names, this.deps.now());
    } catch (err) {
      return { material: "", problem: `TLS: ${this.deps.describeError?.(err) ?? (err instanceof Error ? err.message : String(err))}` };
    }
  }

  /** How to reach a member's pod: with TLS when its pod says its client port serves TLS. */
  endpointOf(cluster: EtcdCluster, pod: ObservedPod): MemberEndpoint {
    const address = endpointOf(pod);
    const creds = this.clientTls.get(`${cluster.metadata.namespace}/${cluster.metadata.name}`);
    if (pod.annotations[ANN_CLIENT_TLS] !== "true" || creds === undefined) return { address };
    const ref = { name: cluster.metadata.name, namespace: cluster.metadata.namespace };
    return { address, tls: { ...creds, serverName: memberHost(ref, pod.name, this.options.clusterDomain) } };
  }

  private async ensureServices(cluster: EtcdCluster, obs: ObservedCluster): Promise<void> {
    const { store } = this.deps;
    await store.apply(headlessService(cluster));
    await store.apply(clientService(cluster));
    const voters = obs.etcd.members?.filter((m) => !m.isLearner).length ?? cluster.spec.size;
    await store.apply(podDisruptionBudget(cluster, quorum(voters), await store.pdbApiVersion()));
  }

  private async execute(cluster: EtcdCluster, obs: ObservedCluster, step: Step): Promise<void> {
    const { store, etcd } = this.deps;
    const ns = cluster.metadata.namespace;
    const memory = cluster.spec.storage?.medium === "Memory";
    const startMember = async (s: MemberStart, extra?: MemberObjects) => {
      if (!memory) await store.create(extra ? extra.pvc(memberPvc(cluster, s)) : memberPvc(cluster, s));
      const pod = memberPod(cluster, s, this.options, obs.specHash);
      await store.create(extra ? extra.pod(pod, s) : pod);
    };
    switch (step.kind) {
      case "bootstrap": {
        // A recovery from a backup bootstraps as if spec.bootstrap.restore named it.
        const restoring = obs.previousStatus.quorumLoss?.phase === "RestoringBackup" ? obs.previousStatus.quorumLoss.backupName : undefined;
        if (restoring !== undefined && this.deps.newMembers === undefined) throw new Error("this operator cannot restore backups");
        const source =
          restoring === undefined
            ? cluster
            : {
                ...cluster,
                spec: {
                  ...cluster.spec,
                  bootstrap: {
                    ...cluster.spec.bootstrap,
                    restore: { backupName: restoring, bumpRevision: cluster.spec.recovery?.quorumLoss?.bumpRevision ?? DEFAULT_RECOVERY_BUMP_REVISION },
                  },
                },
              };
        const extra = await this.deps.newMembers?.beforeBootstrap(source);
        for (const member of step.members) await startMember({ member, initialCluster: step.initialCluster, state: "new" }, extra);
        return;
      }
      case "create-pod": {
        const extra = step.state === "new" ? this.deps.newMembers?.forRecreatedPod(cluster, obs.volumes.get(step.member)?.annotations ?? {}) : undefined;
        const pod = memberPod(cluster, step, this.options, obs.specHash);
        await store.create(extra ? extra.pod(pod, step) : pod);
        return;
      }
      case "roll-member": {
        // The pod comes back from its volume's records with the new spec (create-pod) once it is gone.
        await store.delete("Pod", ns, step.member);
        return;
      }
      case "add-learner": {
        const added = await etcd.memberAdd(this.adminEndpoint(cluster, obs), [step.peerURL], true);
        const initialCluster = added.members
          .map((m) => {
            const n = m.id === added.id ? step.member : m.name || memberFromPeerURL(obs, m.peerURLs[0] ?? "") || m.id;
            return `${n}=${m.peerURLs[0]}`;
          })
          .join(",");
        await startMember({ member: step.member, initialCluster, state: "existing", memberId: added.id });
        return;
      }
      case "promote":
        await etcd.memberPromote(this.adminEndpoint(cluster, obs), step.id);
        return;
      case "move-leader": {
        const pod = obs.pods.get(step.from);
        if (!pod?.podIP) throw new Error(`no address for leader ${step.from}`);
        await etcd.moveLeader(this.endpointOf(cluster, pod), step.toId);
        return;
      }
      case "remove-member":
        await etcd.memberRemove(this.adminEndpoint(cluster, obs, step.member), step.id);
        await store.delete("Pod", ns, step.member);
        if (!memory) await store.delete("PersistentVolumeClaim", ns, pvcName(step.member));
        return;
      case "delete-pod":
        await store.delete("Pod", ns, step.member);
        return;
      case "delete-volume":
        await store.delete("PersistentVolumeClaim", ns, pvcName(step.member));
        return;
      case "force-new-cluster":
        // The pod comes back from its volume with --force-new-cluster (plan's create-pod) once it is gone.
        await store.annotate("PersistentVolumeClaim", ns, pvcName(step.member), { [ANN_FORCE_NEW_CLUSTER]: step.id });
        await store.delete("Pod", ns, step.member);
        return;
      case "finish-force-new-cluster":
        await store.annotate("PersistentVolumeClaim", ns, pvcName(step.member), { [ANN_FORCE_NEW_CLUSTER]: "" });
        await store.delete("Pod", ns, step.member);
        return;
      case "recover-from-backup":
        for (const pod of obs.pods.values()) if (!pod.deleting) await store.delete("Pod", ns, pod.name);
        for (const vol of obs.volumes.values()) if (!vol.deleting) await store.delete("PersistentVolumeClaim", ns, pvcName(vol.name));
        return;
      case "disarm-alarm":
        if (etcd.alarmDisarm === undefined) throw new Error("this operator cannot disarm alarms");
        await etcd.alarmDisarm(this.adminEndpoint(cluster, obs), step.memberId, step.alarm);
        return;
      case "record-member-id":
        await store.annotate("PersistentVolumeClaim", ns, pvcName(step.member), { [ANN_MEMBER_ID]: step.id });
        return;
      default:
        return;
    }
  }

  /** A voter to send membership changes to: the leader if it answered, else any answering voter but `avoid`. */
  private adminEndpoint(cluster: EtcdCluster, obs: ObservedCluster, avoid?: string): MemberEndpoint {
    const candidates = [...obs.etcd.statuses.entries()]
      .filter(([n, st]) => !st.isLearner && n !== avoid && obs.pods.get(n)?.podIP)
      .sort(([, a], [, b]) => rank(a) - rank(b));
    const first = candidates[0];
    if (first === undefined) throw new Error("no voter answers");
    return this.endpointOf(cluster, obs.pods.get(first[0])!);
  }
}

function rank(st: EtcdMemberStatus): number {
  return st.id === st.leaderId ? 0 : st.isLearner ? 2 : 1;
}

export function endpointOf(pod: ObservedPod): string {
  return `${pod.podIP}:${CLIENT_PORT}`;
}

function isAction(step: Step): boolean {
  return !["wait", "steady", "paused", "invalid-spec", "refused", "quorum-lost"].includes(step.kind);
}

function eventReason(step: Step): string {
  return step.kind
    .split("-")
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join("");
}

function sameStatus(a: EtcdClusterStatus | undefined, b: EtcdClusterStatus): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b);
}
