/**
 * The backup reconciler's BackupStore on the Kubernetes API: EtcdClusters and EtcdBackups as
 * custom objects, backup Jobs (batch/v1) found by label, each run's result read from its pods'
 * termination messages, status through the status subresource, events against the EtcdBackup.
 */
import { recordEvent, replaceStatus } from "./object-writes.js";
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Job, type V1Pod } from "@kubernetes/client-node";
import { BACKUP_PLURAL, CLUSTER_PLURAL, GROUP, VERSION, type EtcdBackup, type EtcdBackupSpec, type EtcdBackupStatus, type EtcdCluster } from "../api/v1alpha1.js";
import type { BackupStore } from "../backup/backup-reconciler.js";
import type { BackupPolicyStore } from "../backup/backup-policy.js";
import { ANN_SLOT, LABEL_BACKUP, type ObservedJob, type SnapshotResult } from "../backup/plan-backup.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";
import { isConflict, isNotFound } from "./kube-cluster-store.js";

function terminated(p: V1Pod) {
  return p.status?.containerStatuses?.find((c) => c.name === "backup")?.state?.terminated;
}

/** A Job and its pods as the planner sees them. */
export function toObservedJob(j: V1Job, pods: V1Pod[]): ObservedJob {
  const cond = (t: string) => j.status?.conditions?.find((c) => c.type === t && c.status === "True");
  const state = cond("Complete") || (j.status?.succeeded ?? 0) > 0 ? "succeeded" : cond("Failed") ? "failed" : "active";
  const out: ObservedJob = {
    name: j.metadata?.name ?? "",
    createdAt: new Date(j.metadata?.creationTimestamp ?? 0).getTime(),
    state,
  };
  const slot = j.metadata?.annotations?.[ANN_SLOT];
  if (slot) out.slot = slot;
  const done = j.status?.completionTime ?? cond("Failed")?.lastTransitionTime;
  if (done) out.completedAt = new Date(done).getTime();
  const ok = pods.map(terminated).find((t) => t?.exitCode === 0 && t.message);
  if (ok?.message) {
    try {
      out.result = JSON.parse(ok.message) as SnapshotResult;
    } catch {
      // not ours
    }
  }
  if (state === "failed") {
    const last = pods
      .map(terminated)
      .filter((t) => t !== undefined && t.exitCode !== 0)
      .sort((a, b) => new Date(a!.finishedAt ?? 0).getTime() - new Date(b!.finishedAt ?? 0).getTime())
      .at(-1);
    out.message = (last?.message ?? cond("Failed")?.message ?? cond("Failed")?.reason ?? "the backup job failed").trim().slice(0, 1000);
  }
  return out;
}

export class KubeBackupStore implements BackupStore, BackupPolicyStore {
  private readonly core: CoreV1Api;
  private readonly batch: BatchV1Api;
  private readonly custom: CustomObjectsApi;

  constructor(
    private readonly options: { component: string },
    deps: { kubeConfig: KubeConfig },
  ) {
    this.core = deps.kubeConfig.makeApiClient(CoreV1Api);
    this.batch = deps.kubeConfig.makeApiClient(BatchV1Api);
    this.custom = deps.kubeConfig.makeApiClient(CustomObjectsApi);
  }

  async getCluster(namespace: string, name: string): Promise<EtcdCluster | undefined> {
    return this.getCustom<EtcdCluster>(CLUSTER_PLURAL, namespace, name);
  }

  async getBackup(namespace: string, name: string): Promise<EtcdBackup | undefined> {
    return this.getCustom<EtcdBackup>(BACKUP_PLURAL, namespace, name);
  }

  private async getCustom<T>(plural: string, namespace: string, name: string): Promise<T | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural, name })) as T;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async createBackup(b: EtcdBackup): Promise<void> {
    try {
      await this.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: b.metadata.namespace, plural: BACKUP_PLURAL, body: b });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }

  async replaceBackupSpec(existing: EtcdBackup, spec: EtcdBackupSpec): Promise<void> {
    const { namespace, name } = existing.metadata;
    await this.custom.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: BACKUP_PLURAL, name, body: { ...existing, spec } });
  }

  async deleteBackup(namespace: string, name: string): Promise<void> {
    try {
      await this.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: BACKUP_PLURAL, name });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async listJobs(namespace: string, backup: string): Promise<ObservedJob[]> {
    const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY},${LABEL_BACKUP}=${backup}`;
    const [jobs, pods] = await Promise.all([
      this.batch.listNamespacedJob({ namespace, labelSelector: selector }),
      this.core.listNamespacedPod({ namespace, labelSelector: selector }),
    ]);
    return jobs.items
      .filter((j) => j.metadata?.deletionTimestamp == null)
      .map((j) => toObservedJob(j, pods.items.filter((p) => p.metadata?.labels?.["job-name"] === j.metadata?.name)));
  }

  async createJob(job: Record<string, unknown>): Promise<void> {
    const ns = (job.metadata as { namespace: string }).namespace;
    try {
      await this.batch.createNamespacedJob({ namespace: ns, body: job as V1Job });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }

  async deleteJob(namespace: string, name: string): Promise<void> {
    try {
      await this.batch.deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async writeBackupStatus(b: EtcdBackup, status: EtcdBackupStatus): Promise<void> {
    await replaceStatus(this.custom, BACKUP_PLURAL, b, status);
  }

  async backupEvent(b: EtcdBackup, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    await recordEvent(this.core, this.options.component, b, type, reason, message);
  }
}
