/**
 * spec.backup of an EtcdCluster, a backup policy: the operator keeps one EtcdBackup
 * `<cluster>-scheduled`, owned by the cluster (deleted with it by Kubernetes' garbage collector),
 * whose spec is the policy's schedule, retention and destination; it creates it, makes its spec
 * follow the policy, and deletes it when the policy is removed. An EtcdBackup of that name that
 * the cluster does not own is never touched (reported instead). The EtcdBackup controller runs it
 * like any other. The cluster's status.backup mirrors it: the latest successful snapshot's time,
 * revision and location, and the latest run's phase.
 */
import { API_VERSION, BACKUP_KIND, type EtcdBackup, type EtcdBackupSpec, type EtcdCluster, type EtcdClusterStatus } from "../api/v1alpha1.js";
import { ownerReference } from "../cluster/manifests.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";

export type ClusterBackupStatus = NonNullable<EtcdClusterStatus["backup"]>;

/** The name of a cluster's policy backup. */
export function scheduledBackupName(cluster: string): string {
  return `${cluster}-scheduled`;
}

/** The EtcdBackup spec.backup asks for (pure), or undefined without a policy (or one without a destination). */
export function desiredScheduledBackup(c: EtcdCluster): EtcdBackup | undefined {
  const p = c.spec.backup;
  if (p === undefined || p.destination === undefined) return undefined;
  const spec: EtcdBackupSpec = {
    clusterName: c.metadata.name,
    ...(p.schedule ? { schedule: p.schedule } : {}),
    ...(p.retention ? { retention: p.retention } : {}),
    destination: p.destination,
  };
  return {
    apiVersion: API_VERSION,
    kind: BACKUP_KIND,
    metadata: {
      name: scheduledBackupName(c.metadata.name),
      namespace: c.metadata.namespace,
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY },
      ownerReferences: [ownerReference(c)],
    } as EtcdBackup["metadata"],
    spec,
  };
}

/** Whether `b` is owned by the cluster `c` (its uid). */
export function ownedBy(b: EtcdBackup, c: EtcdCluster): boolean {
  const refs = (b.metadata as { ownerReferences?: Array<{ uid?: string; kind?: string }> }).ownerReferences ?? [];
  return refs.some((r) => r.kind === "EtcdCluster" && r.uid !== undefined && r.uid === c.metadata.uid);
}

/** status.backup from the policy backup as read (pure); `prev` keeps the last success's time when the latest run failed. */
export function clusterBackupStatus(b: EtcdBackup, prev: ClusterBackupStatus | undefined): ClusterBackupStatus {
  const s = b.status ?? {};
  const out: ClusterBackupStatus = { name: b.metadata.name };
  if (s.phase) out.phase = s.phase;
  const last = s.phase === "Succeeded" ? s.completionTime : prev?.location === s.location ? prev?.lastBackupTime : undefined;
  if (last) out.lastBackupTime = last;
  if (s.revision !== undefined) out.revision = s.revision;
  if (s.location) out.location = s.location;
  if (s.phase === "Failed" && s.message) out.message = s.message;
  return out;
}

/** The Kubernetes side of the policy (KubeBackupStore implements it). */
export interface BackupPolicyStore {
  getBackup(namespace: string, name: string): Promise<EtcdBackup | undefined>;
  createBackup(backup: EtcdBackup): Promise<void>;
  /** Replaces the spec of `existing` (optimistic: its resourceVersion). */
  replaceBackupSpec(existing: EtcdBackup, spec: EtcdBackupSpec): Promise<void>;
  deleteBackup(namespace: string, name: string): Promise<void>;
}

export interface PolicyResult {
  status: ClusterBackupStatus | undefined;
  /** What was done this pass (for an event), if anything. */
  action?: { type: "Normal" | "Warning"; reason: string; message: string };
}

export class BackupPolicy {
  constructor(
    private readonly options: Record<string, never>,
    private readonly deps: { store: BackupPolicyStore },
  ) {}

  /** One pass: the policy backup made to follow spec.backup. */
  async sync(c: EtcdCluster): Promise<PolicyResult> {
    const { store } = this.deps;
    const name = scheduledBackupName(c.metadata.name);
    const desired = desiredScheduledBackup(c);
    const existing = await store.getBackup(c.metadata.namespace, name);
    if (desired === undefined) {
      if (existing !== undefined && ownedBy(existing, c)) {
        await store.deleteBackup(c.metadata.namespace, name);
        return { status: undefined, action: { type: "Normal", reason: "BackupPolicyRemoved", message: `deleted EtcdBackup ${name} (spec.backup removed)` } };
      }
      return { status: undefined };
    }
    if (existing === undefined) {
      await store.createBackup(desired);
      return { status: { name }, action: { type: "Normal", reason: "BackupPolicyCreated", message: `created EtcdBackup ${name}` } };
    }
    if (!ownedBy(existing, c)) {
      const message = `EtcdBackup ${name} exists and is not owned by this cluster: spec.backup is not applied`;
      return { status: { name, message }, action: { type: "Warning", reason: "BackupPolicyConflict", message } };
    }
    if (JSON.stringify(normal(existing.spec)) !== JSON.stringify(normal(desired.spec))) {
      await store.replaceBackupSpec(existing, desired.spec);
      return { status: clusterBackupStatus(existing, c.status?.backup), action: { type: "Normal", reason: "BackupPolicyUpdated", message: `updated EtcdBackup ${name} to spec.backup` } };
    }
    return { status: clusterBackupStatus(existing, c.status?.backup) };
  }
}

/** A spec with its keys sorted (the API server may return them in another order). */
function normal(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normal);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, x]) => [k, normal(x)]),
    );
  }
  return v;
}
