/**
 * The EtcdBackup controller: informers on EtcdBackups and on the operator's backup Jobs (which
 * name their backup in a label) queue backup keys; each pass reads the backup afresh and runs one
 * pass (backup-reconciler.ts), then requeues it after the pass's delay (schedules are kept this
 * way: a scheduled backup is requeued for its next slot). The queue, workers, back-off, resync
 * and watch restarts are keyed-controller.ts's. Runs only while this replica leads.
 */
import { BatchV1Api, CustomObjectsApi, makeInformer, type KubeConfig } from "@kubernetes/client-node";
import { BACKUP_PLURAL, GROUP, VERSION, type EtcdBackup } from "../api/v1alpha1.js";
import type { BackupReconciler } from "../backup/backup-reconciler.js";
import { LABEL_BACKUP } from "../backup/plan-backup.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";
import type { Log } from "../logger.js";
import { KeyedController, type AnyInformer, type ControllerOptions, type PassObserver } from "./keyed-controller.js";
import type { KubeBackupStore } from "./kube-backup-store.js";

export class BackupController extends KeyedController<EtcdBackup> {
  constructor(options: ControllerOptions, deps: { kubeConfig: KubeConfig; store: KubeBackupStore; reconciler: BackupReconciler; log: Log; observer?: PassObserver }) {
    super(options, {
      kubeConfig: deps.kubeConfig,
      log: deps.log,
      ...(deps.observer ? { observer: deps.observer } : {}),
      source: {
        kind: "backup",
        informers: backupInformers,
        get: (namespace, name) => deps.store.getBackup(namespace, name),
        reconcile: async (backup) => {
          const r = await deps.reconciler.reconcile(backup);
          return { requeueAfterMs: r.requeueAfterMs, step: r.step.kind };
        },
      },
    });
  }
}

function backupInformers(kubeConfig: KubeConfig, ns: string): { primary: AnyInformer; owned: Array<{ informer: AnyInformer; ownerLabel: string }> } {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const batch = kubeConfig.makeApiClient(BatchV1Api);
  const prefix = ns ? `/namespaces/${ns}` : "";
  const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
  const primary = makeInformer(
    kubeConfig,
    `/apis/${GROUP}/${VERSION}${prefix}/${BACKUP_PLURAL}`,
    () =>
      (ns
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: BACKUP_PLURAL })
        : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: BACKUP_PLURAL })) as never,
  ) as AnyInformer;
  const jobs = makeInformer(
    kubeConfig,
    `/apis/batch/v1${prefix}/jobs`,
    () => (ns ? batch.listNamespacedJob({ namespace: ns, labelSelector: selector }) : batch.listJobForAllNamespaces({ labelSelector: selector })) as never,
    selector,
  ) as AnyInformer;
  return { primary, owned: [{ informer: jobs, ownerLabel: LABEL_BACKUP }] };
}
