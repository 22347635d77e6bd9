/**
 * The reconciler's NewMemberHook for spec.bootstrap.restore: at bootstrap it resolves the
 * snapshot (reading the EtcdBackup named by backupName) and gives every new member's PVC the
 * restore-from record and its pod the restore init container; a bootstrap member's pod recreated
 * later restores what its PVC records (a no-op once the member's data exists).
 */
import type { EtcdBackup, EtcdCluster } from "../api/v1alpha1.js";
import type { MemberObjects, NewMemberHook } from "../cluster/reconciler.js";
import { recordedRestoreSource, resolveRestoreSource, withRestore, withRestoreAnnotation, type RestoreSource } from "./restore.js";

export interface BackupReader {
  getBackup(namespace: string, name: string): Promise<EtcdBackup | undefined>;
}

export class RestoreHook implements NewMemberHook {
  constructor(
    private readonly options: { restoreCommand?: string[] },
    private readonly deps: { backups: BackupReader },
  ) {}

  async beforeBootstrap(cluster: EtcdCluster): Promise<MemberObjects | undefined> {
    const restore = cluster.spec.bootstrap?.restore;
    if (restore === undefined || (!restore.backupName && !restore.source)) return undefined;
    const backup = restore.backupName !== undefined && restore.backupName !== "" && !restore.source?.pvc && !restore.source?.s3 ? await this.deps.backups.getBackup(cluster.metadata.namespace, restore.backupName) : undefined;
    return this.objects(resolveRestoreSource(restore, backup), restore.bumpRevision ?? 0);
  }

  forRecreatedPod(cluster: EtcdCluster, volumeAnnotations: Record<string, string>): MemberObjects | undefined {
    const src = recordedRestoreSource(volumeAnnotations);
    return src === undefined ? undefined : this.objects(src, cluster.spec.bootstrap?.restore?.bumpRevision ?? 0);
  }

  private objects(src: RestoreSource, bump: number): MemberObjects {
    return {
      pvc: (o) => withRestoreAnnotation(o, src),
      pod: (o, start) => withRestore(o, src, bump, this.options.restoreCommand, start.initialCluster),
    };
  }
}
