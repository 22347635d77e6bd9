/**
 * One pass of one EtcdBackup: observe (the backup, its cluster, its Jobs through a BackupStore),
 * plan (plan-backup.ts), act (create a Job, or delete old ones), emit events, write status.
 * Level-based like the cluster reconciler: a pass depends only on what it observes.
 */
import type { EtcdBackup, EtcdBackupStatus, EtcdCluster } from "../api/v1alpha1.js";
import type { Logger } from "../cluster/reconciler.js";
import { rootSecretOf } from "../auth/root-credentials.js";
import { backupJob, type BackupJobOptions } from "./backup-job.js";
import { finishedEvent, planBackup, type BackupStep, type ObservedJob } from "./plan-backup.js";

/** The Kubernetes side of backups. */
export interface BackupStore {
  getCluster(namespace: string, name: string): Promise<EtcdCluster | undefined>;
  /** The Jobs of one EtcdBackup (by label), with their results read from their pods. */
  listJobs(namespace: string, backup: string): Promise<ObservedJob[]>;
  /** Creates a Job; an existing one of that name is left as it is. */
  createJob(job: Record<string, unknown>): Promise<void>;
  /** Deletes a Job and its pods; a missing one is fine. */
  deleteJob(namespace: string, name: string): Promise<void>;
  writeBackupStatus(backup: EtcdBackup, status: EtcdBackupStatus): Promise<void>;
  backupEvent(backup: EtcdBackup, type: "Normal" | "Warning", reason: string, message: string): Promise<void>;
}

export interface BackupReconcilerOptions extends BackupJobOptions {
  clusterDomain: string;
  /** Requeue when nothing else asks for one, ms. */
  requeueIdleMs: number;
}

export interface BackupReconcilerDeps {
  store: BackupStore;
  log: Logger;
  now: () => Date;
  describeError?: (err: unknown) => string;
}

export class BackupReconciler {
  constructor(
    private readonly options: BackupReconcilerOptions,
    private readonly deps: BackupReconcilerDeps,
  ) {}

  async reconcile(b: EtcdBackup): Promise<{ step: BackupStep; requeueAfterMs: number }> {
    const { store, log } = this.deps;
    if (b.metadata.deletionTimestamp) return { step: { kind: "steady" }, requeueAfterMs: 0 };
    const ns = b.metadata.namespace;
    const [cluster, jobs] = await Promise.all([store.getCluster(ns, b.spec.clusterName), store.listJobs(ns, b.metadata.name)]);
    const plan = planBackup({ backup: b, cluster, jobs, now: this.deps.now().getTime() }, { clusterDomain: this.options.clusterDomain });
    const { step } = plan;
    let status = plan.status;
    const key = `${ns}/${b.metadata.name}`;
    let requeueAfterMs = plan.requeueAfterMs ?? this.options.requeueIdleMs;
    try {
      if (step.kind === "start-job") {
        log.info("backup job", { backup: key, job: step.job, endpoints: step.endpoints });
        await store.createJob(backupJob(b, step, { image: cluster?.spec.image, imagePullPolicy: cluster?.spec.imagePullPolicy, ...authOf(cluster) }, this.options));
        await store.backupEvent(b, "Normal", "BackupStarted", `job ${step.job} snapshots ${b.spec.clusterName} from ${step.endpoints[0]} to ${step.file}`).catch(() => {});
      } else if (step.kind === "delete-jobs") {
        for (const j of step.jobs) await store.deleteJob(ns, j);
      } else if (step.kind === "invalid" && b.status?.message !== step.message) {
        await store.backupEvent(b, "Warning", "InvalidSpec", step.message).catch(() => {});
      }
    } catch (err) {
      const text = this.deps.describeError?.(err) ?? (err instanceof Error ? err.message : String(err));
      log.warn("backup step failed", { backup: key, step: step.kind, error: text });
      await store.backupEvent(b, "Warning", "BackupStepFailed", `${step.kind}: ${text}`).catch(() => {});
      status = { ...(b.status ?? {}), message: `${step.kind} failed: ${text}` };
      requeueAfterMs = 5000;
    }
    const ev = finishedEvent(b.status ?? {}, status);
    if (ev !== undefined) await store.backupEvent(b, ev.type, ev.reason, ev.message).catch(() => {});
    if (JSON.stringify(clean(b.status ?? {})) !== JSON.stringify(clean(status))) await store.writeBackupStatus(b, status);
    return { step, requeueAfterMs };
  }
}

/** Without empty strings and undefined fields (what the API server keeps of a status). */
function clean(s: EtcdBackupStatus): Record<string, unknown> {
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined && v !== ""));
}

/** The root Secret a backup Job authenticates with: while the cluster wants auth or has it on. */
function authOf(cluster: EtcdCluster | undefined): { rootSecret?: string } {
  if (cluster === undefined || (cluster.spec.auth?.enabled !== true && cluster.status?.authEnabled !== true)) return {};
  return { rootSecret: rootSecretOf(cluster.spec, cluster.metadata.name) };
}
