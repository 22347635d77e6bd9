/**
 * The EtcdBackup controller: informers on EtcdBackups and on the operator's backup Jobs feed a
 * deduplicating work queue of backup keys; workers read the backup afresh and run one pass
 * (backup-reconciler.ts), then requeue it after the pass's delay (schedules are kept this way:
 * a scheduled backup is requeued for its next slot). Runs only while this replica leads.
 */
import { BatchV1Api, CustomObjectsApi, makeInformer, type Informer, type KubeConfig, type KubernetesObject, type ObjectCache } from "@kubernetes/client-node";
import { BACKUP_PLURAL, GROUP, VERSION } from "../api/v1alpha1.js";
import type { BackupReconciler } from "../backup/backup-reconciler.js";
import { LABEL_BACKUP } from "../backup/plan-backup.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";
import type { Log } from "../logger.js";
import type { KubeBackupStore } from "./kube-backup-store.js";
import { apiErrorText } from "./kube-cluster-store.js";
import type { ControllerOptions } from "./controller.js";
import { WorkQueue } from "./work-queue.js";

type AnyInformer = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

export class BackupController {
  readonly queue: WorkQueue;
  private readonly informers: AnyInformer[] = [];
  private readonly failures = new Map<string, number>();
  private running = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private backups: AnyInformer | undefined;
  passes = 0;

  constructor(
    private readonly options: ControllerOptions,
    private readonly deps: { kubeConfig: KubeConfig; store: KubeBackupStore; reconciler: BackupReconciler; log: Log },
  ) {
    this.queue = new WorkQueue({ maxKeys: options.maxQueuedKeys });
  }

  async start(): Promise<void> {
    this.running = true;
    const { kubeConfig } = this.deps;
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const batch = kubeConfig.makeApiClient(BatchV1Api);
    const ns = this.options.namespace;
    const prefix = ns ? `/namespaces/${ns}` : "";
    const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    const backups = makeInformer(
      kubeConfig,
      `/apis/${GROUP}/${VERSION}${prefix}/${BACKUP_PLURAL}`,
      () =>
        (ns
          ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: BACKUP_PLURAL })
          : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: BACKUP_PLURAL })) as never,
    ) as AnyInformer;
    const enqueue = (o: KubernetesObject) => this.queue.add(`${o.metadata?.namespace}/${o.metadata?.name}`);
    backups.on("add", enqueue);
    backups.on("update", enqueue);
    backups.on("delete", (o) => this.failures.delete(`${o.metadata?.namespace}/${o.metadata?.name}`));
    this.backups = backups;
    const jobs = makeInformer(
      kubeConfig,
      `/apis/batch/v1${prefix}/jobs`,
      () => (ns ? batch.listNamespacedJob({ namespace: ns, labelSelector: selector }) : batch.listJobForAllNamespaces({ labelSelector: selector })) as never,
      selector,
    ) as AnyInformer;
    const owned = (o: KubernetesObject) => {
      const b = o.metadata?.labels?.[LABEL_BACKUP];
      if (b) this.queue.add(`${o.metadata?.namespace}/${b}`);
    };
    jobs.on("add", owned);
    jobs.on("update", owned);
    jobs.on("delete", owned);
    for (const inf of [backups, jobs]) {
      inf.on("error", (err: unknown) => {
        if (!this.running) return;
        this.deps.log.warn("watch failed; restarting", { error: String((err as Error)?.message ?? err) });
        setTimeout(() => {
          if (this.running) inf.start().catch(() => {});
        }, 2000).unref();
      });
      this.informers.push(inf);
    }
    await Promise.all(this.informers.map((i) => i.start()));
    this.resyncTimer = setInterval(() => {
      for (const b of this.backups?.list() ?? []) enqueue(b);
    }, this.options.resyncMs);
    this.resyncTimer.unref();
    for (let i = 0; i < this.options.workers; i++) void this.work();
  }

  private async work(): Promise<void> {
    const { store, reconciler, log } = this.deps;
    while (this.running) {
      const key = await this.queue.next();
      if (key === undefined) return;
      const [namespace, name] = key.split("/") as [string, string];
      let after = 0;
      try {
        const b = await store.getBackup(namespace, name);
        if (b !== undefined) {
          this.passes++;
          after = (await reconciler.reconcile(b)).requeueAfterMs;
        }
        this.failures.delete(key);
      } catch (err) {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        after = this.options.errorBackoffMs * Math.min(16, 2 ** (n - 1));
        log.warn("backup pass failed", { backup: key, error: apiErrorText(err), retryInMs: after });
      } finally {
        this.queue.done(key);
      }
      if (after > 0 && this.running) this.queue.addAfter(key, after);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutdown();
    await Promise.all(this.informers.map((i) => i.stop().catch(() => {})));
  }
}
