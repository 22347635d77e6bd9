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
import { ANN_CLIENT_TLS, ANN_FORCE_NEW_CLUSTER, ANN_MEMBER_ID, ANN_SPEC_HASH, CLIENT_PORT, memberFromPeerURL, memberHost, memberName, pvcName } from "./naming.js";
import type { EtcdAlarm, EtcdMemberEntry, EtcdMemberStatus, ObservedCluster, ObservedPod, ObservedVolume } from "./observed.js";
import { DEFAULT_RECOVERY_BUMP_REVISION, nameOf, plan, quorum, type Step } from "./plan.js";
import { buildStatus, describeStep } from "./status.js";
import { tlsSettings } from "./tls-layout.js";

/** The operator's client credentials for members' TLS client ports (PEM). */
export interface ClientTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export type { EtcdAlarm };

/** A user and password etcd authenticates (Auth.Authenticate). */
export interface AuthCredentials {
  user: string;
  password: string;
}

/**
 * A member's client port: `host:port`; with client TLS the name its certificate carries and the
 * credentials to dial it; with spec.auth the root credentials (used once auth is on).
 */
export interface MemberEndpoint {
  address: string;
  tls?: ClientTls & { serverName: string };
  auth?: AuthCredentials;
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
   * Optional (without it a CORRUPT alarm cannot name the corrupt member, which is then found only
   * by its pod's termination message): a member's HashKV at `revision`.
   */
  hashKV?(endpoint: MemberEndpoint, revision: number): Promise<{ hash: number; compactRevision: number; revision: number }>;
  /** Whether auth is on (Authenticate with the endpoint's credentials succeeds; false when etcd says it is not enabled). */
  authEnabled(endpoint: MemberEndpoint): Promise<boolean>;
  /** User root with `password` (added, or its password set), role root granted, auth enabled; each step idempotent. */
  enableAuth(endpoint: MemberEndpoint, password: string): Promise<void>;
  disableAuth(endpoint: MemberEndpoint): Promise<void>;
  defragment(endpoint: MemberEndpoint): Promise<void>;
  alarms(endpoint: MemberEndpoint): Promise<EtcdAlarm[]>;
  disarm(endpoint: MemberEndpoint, alarm: EtcdAlarm): Promise<void>;
}

/**
 * The root password for spec.auth: from the user's Secret (spec.auth.rootPasswordSecret, key
 * `password`), or one the operator generates into a Secret of its own.
 */
export interface RootCredentials {
  prepare(cluster: EtcdCluster): Promise<{ password: string } | { problem: string }>;
}

/** Cron schedules (spec.defrag.schedule): the latest slot at or before `now` (ms), or undefined; throws on a malformed expression. */
export interface DefragSchedule {
  latestSlot(cron: string, now: Date): number | undefined;
}

/** The TLS material of one pass, from a TlsProvider. */
export interface TlsState {
  /** A fingerprint of what the pods mount (part of the spec hash, so new certificates roll the members); "" without TLS. */
  material: string;
  /** Why the material is not ready; nothing is started or rolled until it is. */
  problem?: string;
  /** The operator's credentials for members' client ports (client TLS only). */
  client?: ClientTls;
  /** The operator-issued CA's expiry (ms) and rotation phase (see tls/operator-tls.ts). */
  ca?: { notAfter: number; phase: string };
}

/**
 * Makes sure the certificates a cluster's spec asks for exist and are current: issued by the
 * operator (its CA, member and client certificates, renewed before expiry) or read from the
 * user's Secrets. `members` are the member names that need a certificate.
 */
export interface TlsProvider {
  /**
   * `rolledOut(material)` tells whether every member's pod runs (and is ready) with that
   * material: a CA rotation moves to its next phase only then.
   */
  prepare(cluster: EtcdCluster, members: string[], now: Date, rolledOut?: (material: string) => boolean): Promise<TlsState>;
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
  /** See PlanOptions.defragCooldownMs. */
  defragCooldownMs?: number;
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
  /** Root credentials for spec.auth; without them a cluster asking for auth waits (AuthNotReady). */
  rootCredentials?: RootCredentials;
  /** Cron for spec.defrag.schedule; without it schedules are ignored (the rules still apply). */
  defragSchedule?: DefragSchedule;
  /** How a member's pod is reached (`host:port`); default its pod IP and the client port. */
  addressOf?: (pod: ObservedPod) => string;
}

/** How long a probe of whether auth is on that agrees with the spec is reused. */
export const AUTH_PROBE_MS = 60_000;

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
      this.rootAuth.delete(`${ns}/${name}`);
      this.authProbes.delete(`${ns}/${name}`);
      return { step: { kind: "steady" }, requeueAfterMs: 0 };
    }

    const obs = await this.observe(cluster);
    const step = plan(obs, {
      clusterDomain: this.options.clusterDomain,
      ...(this.options.joinTimeoutMs ? { joinTimeoutMs: this.options.joinTimeoutMs } : {}),
      ...(this.options.defragCooldownMs !== undefined ? { defragCooldownMs: this.options.defragCooldownMs } : {}),
    });

    await this.ensureServices(cluster, obs);
    const prevCaPhase = cluster.status?.tls?.caRotationPhase;
    if (obs.ca !== undefined && prevCaPhase !== undefined && prevCaPhase !== obs.ca.phase) {
      const what = { TrustBoth: "members now trust the old and the new CA", Reissued: "certificates now come from the new CA", Stable: "the old CA is dropped" }[obs.ca.phase] ?? "";
      log.info("CA rotation", { cluster: `${ns}/${name}`, from: prevCaPhase, to: obs.ca.phase });
      await store.event(cluster, "Normal", `CARotation${obs.ca.phase}`, `CA rotation ${prevCaPhase} -> ${obs.ca.phase}: ${what}`).catch(() => {});
    }

    let requeueAfterMs = this.requeueFor(step);
    let failed: string | undefined;
    if (isAction(step)) {
      log.info("step", { cluster: `${ns}/${name}`, step: step.kind, what: describeStep(step) });
      try {
        await this.execute(cluster, obs, step);
        await store.event(cluster, "Normal", successReason(step), describeStep(step)).catch(() => {});
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
    if (failed !== undefined) {
      status.lastAction = `${describeStep(step)} failed: ${failed}`;
      if (step.kind === "enable-auth" || step.kind === "disable-auth") status.authEnabled = step.kind === "disable-auth";
    } else if (step.kind === "enable-auth" || step.kind === "disable-auth") {
      this.authProbes.set(`${ns}/${name}`, { enabled: step.kind === "enable-auth", at: obs.now });
    }
    if (failed === undefined && step.kind === "defragment") {
      const m = status.members?.find((x) => x.name === step.member);
      if (m) m.lastDefragTime = this.deps.now().toISOString();
    }
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
    const rolledOut = (material: string) => {
      const hash = this.specHash(cluster, material);
      const live = pods.filter((p) => !p.deleting);
      return live.length >= cluster.spec.size && live.every((p) => p.ready && p.annotations[ANN_SPEC_HASH] === hash);
    };
    const tls = await this.prepareTls(cluster, [...pods.map((p) => p.name), ...vols.map((v) => v.name)], rolledOut);
    const key = `${ns}/${cluster.metadata.name}`;
    if (tls.client) this.clientTls.set(key, tls.client);
    else this.clientTls.delete(key);
    const authCredentials = await this.prepareAuth(cluster);
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
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
      ...(authCredentials !== undefined ? { authCredentials } : {}),
      now: this.deps.now().getTime(),
    };
    const schedule = cluster.spec.defrag?.schedule;
    if (schedule && this.deps.defragSchedule) {
      try {
        const slot = this.deps.defragSchedule.latestSlot(schedule, this.deps.now());
        if (slot !== undefined) obs.defragSlot = slot;
      } catch {
        // a malformed schedule: the rules still apply
      }
    }
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
      } catch {
        continue; // try the next one
      }
      const ep = this.endpointOf(cluster, a.pod);
      if (ep.auth !== undefined) {
        // Authenticate is a bcrypt check and, in etcd 3.4, a raft entry: a result that agrees
        // with the spec is reused for AUTH_PROBE_MS; a disagreeing one is checked every pass.
        const cached = this.authProbes.get(key);
        const wanted = cluster.spec.auth?.enabled === true;
        if (cached !== undefined && cached.enabled === wanted && obs.now - cached.at < AUTH_PROBE_MS) {
          obs.etcd.authEnabled = cached.enabled;
        } else {
          try {
            obs.etcd.authEnabled = await etcd.authEnabled(ep);
            this.authProbes.set(key, { enabled: obs.etcd.authEnabled, at: obs.now });
          } catch (err) {
            this.authProbes.delete(key);
            obs.authCredentials = { ready: false, problem: `root credentials: ${this.describe(err)}` };
          }
        }
      }
      break;
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
    if (obs.etcd.members === undefined) return;
    if (![...obs.etcd.statuses.values()].some((st) => st.leaderId !== "0")) return;
    for (const a of order) {
      if (a.st.isLearner) continue;
      try {
        obs.etcd.alarms = await etcd.alarms(this.endpointOf(cluster, a.pod));
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
  /** Root credentials by cluster (`namespace/name`), from its latest pass (spec.auth, or auth still on). */
  private readonly rootAuth = new Map<string, AuthCredentials>();
  /** Whether auth was on at the latest probe, by cluster. */
  private readonly authProbes = new Map<string, { enabled: boolean; at: number }>();

  private describe(err: unknown): string {
    return this.deps.describeError?.(err) ?? (err instanceof Error ? err.message : String(err));
  }

  /** Root credentials when auth is wanted or was last seen on; undefined otherwise. */
  private async prepareAuth(cluster: EtcdCluster): Promise<ObservedCluster["authCredentials"]> {
    const key = `${cluster.metadata.namespace}/${cluster.metadata.name}`;
    if (cluster.spec.auth?.enabled !== true && cluster.status?.authEnabled !== true) {
      this.rootAuth.delete(key);
      return undefined;
    }
    if (this.deps.rootCredentials === undefined) return { ready: false, problem: "this operator has no root credentials provider" };
    try {
      const r = await this.deps.rootCredentials.prepare(cluster);
      if ("problem" in r) return { ready: false, problem: r.problem };
      this.rootAuth.set(key, { user: "root", password: r.password });
      return { ready: true };
    } catch (err) {
      return { ready: false, problem: `root credentials: ${this.describe(err)}` };
    }
  }

  private async prepareTls(cluster: EtcdCluster, existing: string[], rolledOut: (material: string) => boolean): Promise<TlsState> {
    const s = tlsSettings(cluster.spec);
    if (s.client === undefined && s.peer === undefined) return { material: "" };
    if (this.deps.tls === undefined) return { material: "", problem: "this operator has no TLS provider" };
    const wanted = Array.from({ length: Math.max(0, cluster.spec.size) }, (_, i) => memberName(cluster.metadata.name, i));
    const names = [...new Set([...wanted, ...existing])].filter((n) => n !== "").sort();
    try {
      return await this.deps.tls.prepare(cluster, names, this.deps.now(), rolledOut);
    } catch (err) {
      return { material: "", problem: `TLS: ${this.deps.describeError?.(err) ?? (err instanceof Error ? err.message : String(err))}` };
    }
  }

  /** How to reach a member's pod: with TLS when its pod says its client port serves TLS. */
  endpointOf(cluster: EtcdCluster, pod: ObservedPod): MemberEndpoint {
    const key = `${cluster.metadata.namespace}/${cluster.metadata.name}`;
    const address = this.deps.addressOf?.(pod) ?? endpointOf(pod);
    const auth = this.rootAuth.get(key);
    const creds = this.clientTls.get(key);
    if (pod.annotations[ANN_CLIENT_TLS] !== "true" || creds === undefined) return { address, ...(auth ? { auth } : {}) };
    const ref = { name: cluster.metadata.name, namespace: cluster.metadata.namespace };
    return { address, tls: { ...creds, serverName: memberHost(ref, pod.name, this.options.clusterDomain) }, ...(auth ? { auth } : {}) };
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
      case "record-member-id":
        await store.annotate("PersistentVolumeClaim", ns, pvcName(step.member), { [ANN_MEMBER_ID]: step.id });
        return;
      case "enable-auth": {
        const ep = this.adminEndpoint(cluster, obs);
        if (ep.auth === undefined) throw new Error("no root credentials");
        await etcd.enableAuth(ep, ep.auth.password);
        return;
      }
      case "disable-auth":
        await etcd.disableAuth(this.adminEndpoint(cluster, obs));
        return;
      case "defragment": {
        const pod = obs.pods.get(step.member);
        if (!pod?.podIP) throw new Error(`no address for ${step.member}`);
        await etcd.defragment(this.endpointOf(cluster, pod));
        return;
      }
      case "disarm-alarm":
        await etcd.disarm(this.adminEndpoint(cluster, obs), { memberId: step.memberId, alarm: step.alarm });
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

/** The event reason of a step that succeeded. */
function successReason(step: Step): string {
  switch (step.kind) {
    case "enable-auth":
      return "AuthEnabled";
    case "disable-auth":
      return "AuthDisabled";
    case "defragment":
      return "Defragmented";
    case "disarm-alarm":
      return "AlarmDisarmed";
    default:
      return eventReason(step);
  }
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
