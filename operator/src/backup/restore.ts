/**
 * Restore (spec.bootstrap.restore): a new cluster whose members start from a snapshot. Pure.
 * Each member's pod of the new cluster gets an init container `restore` that runs, in the image's
 * `restore` mode (restore-command.ts), `etcd-ts snapshot restore <file> --name <member>
 * --initial-cluster ... --initial-cluster-token ... --initial-advertise-peer-urls ...
 * --data-dir <member's data dir>` (plus `--bump-revision N --mark-compacted` when asked) with the
 * snapshot's PVC mounted read-only at RESTORE_MOUNT; the member then starts with
 * `--initial-cluster-state new` on that dir. The data dir is a subdirectory of the member's
 * volume (DATA_DIR), never the volume's root (which may hold lost+found: restore refuses a
 * non-empty dir). The restore flags are read from the member's own etcd flags, so they always
 * agree with what the member starts with.
 *
 * The snapshot file is resolved once, when the cluster is bootstrapped, and recorded on each
 * member's PVC (ANN_RESTORE_FROM): a pod recreated before its member ever ran restores the same
 * file, even if the EtcdBackup has taken newer snapshots meanwhile.
 */
import type { EtcdBackup, EtcdClusterSpec } from "../api/v1alpha1.js";
import { parsePvcLocation, pvcLocation } from "./backup-job.js";

export const RESTORE_MOUNT = "/restore";
export const DEFAULT_RESTORE_COMMAND = ["node", "/app/operator/bin/entrypoint.js", "restore"];
/** On a restored member's PVC: the `pvc://claim/path` of the snapshot it was restored from. */
export const ANN_RESTORE_FROM = "etcd.etcd-ts.io/restore-from";

export type RestoreSource = { claimName: string; path: string };

/** Why a restore cannot start (yet). */
export class RestoreNotReady extends Error {
  readonly code = "RESTORE_NOT_READY";
}

/**
 * The snapshot a new cluster restores: spec.bootstrap.restore.source.pvc (path = the file in the
 * volume), else the latest successful snapshot of the EtcdBackup `backupName` (`backup` is that
 * object as read, undefined when it does not exist).
 * @throws RestoreNotReady when the backup is missing, has no successful snapshot yet, or keeps
 *   it somewhere other than a PVC.
 */
export function resolveRestoreSource(restore: NonNullable<NonNullable<EtcdClusterSpec["bootstrap"]>["restore"]>, backup: EtcdBackup | undefined): RestoreSource {
  if (restore.source?.pvc) {
    const p = restore.source.pvc;
    if (!p.path) throw new RestoreNotReady("spec.bootstrap.restore.source.pvc.path must name the snapshot file in the volume");
    const parsed = parsePvcLocation(pvcLocation(p.claimName, p.path));
    if (parsed === undefined) throw new RestoreNotReady(`spec.bootstrap.restore.source.pvc: bad claim or path ${JSON.stringify(p)}`);
    return parsed;
  }
  if (restore.source?.s3) throw new RestoreNotReady("spec.bootstrap.restore.source.s3 is not supported yet");
  if (!restore.backupName) throw new RestoreNotReady("spec.bootstrap.restore needs backupName or source.pvc");
  if (backup === undefined) throw new RestoreNotReady(`EtcdBackup ${restore.backupName} not found`);
  const loc = backup.status?.location;
  if (!loc) throw new RestoreNotReady(`EtcdBackup ${restore.backupName} has no successful snapshot yet`);
  const parsed = parsePvcLocation(loc);
  if (parsed === undefined) throw new RestoreNotReady(`EtcdBackup ${restore.backupName}: location ${loc} is not on a PVC`);
  return parsed;
}

function flag(args: string[], name: string): string | undefined {
  const prefix = `--${name}=`;
  return args.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

/** The init container's command from the member's etcd flags (those memberArgs gives). */
export function restoreCommand(etcdArgs: string[], src: RestoreSource, bumpRevision: number, command: string[] = DEFAULT_RESTORE_COMMAND): string[] {
  const need = ["name", "initial-cluster", "initial-cluster-token", "initial-advertise-peer-urls", "data-dir"];
  const out = [...command, `${RESTORE_MOUNT}/${src.path}`];
  for (const n of need) {
    const v = flag(etcdArgs, n);
    if (v === undefined) throw new Error(`the member's flags have no --${n}`);
    out.push(`--${n}=${v}`);
  }
  if (bumpRevision > 0) out.push(`--bump-revision=${bumpRevision}`, "--mark-compacted");
  return out;
}

type Obj = Record<string, any>;

/**
 * `pod` (a member pod as memberPod builds it, state new) with the restore init container (first)
 * and the snapshot's volume added. Returns a new object.
 */
export function withRestore(pod: Obj, src: RestoreSource, bumpRevision: number, command?: string[]): Obj {
  const spec = pod.spec as Obj;
  const etcd = (spec.containers as Obj[]).find((c) => c.name === "etcd") ?? (spec.containers as Obj[])[0]!;
  const cmd = etcd.command as string[];
  const init = {
    name: "restore",
    image: etcd.image,
    ...(etcd.imagePullPolicy ? { imagePullPolicy: etcd.imagePullPolicy } : {}),
    command: restoreCommand(cmd, src, bumpRevision, command),
    volumeMounts: [...(etcd.volumeMounts as Obj[]), { name: "restore-source", mountPath: RESTORE_MOUNT, readOnly: true }],
  };
  return {
    ...pod,
    spec: {
      ...spec,
      initContainers: [init, ...((spec.initContainers as Obj[] | undefined) ?? [])],
      volumes: [...(spec.volumes as Obj[]), { name: "restore-source", persistentVolumeClaim: { claimName: src.claimName, readOnly: true } }],
    },
  };
}

/** `pvc` (a member PVC) recording the snapshot it is restored from. */
export function withRestoreAnnotation(pvc: Obj, src: RestoreSource): Obj {
  const meta = pvc.metadata as Obj;
  return { ...pvc, metadata: { ...meta, annotations: { ...(meta.annotations ?? {}), [ANN_RESTORE_FROM]: pvcLocation(src.claimName, src.path) } } };
}

/** The source recorded on a member's PVC, if any. */
export function recordedRestoreSource(annotations: Record<string, string>): RestoreSource | undefined {
  const loc = annotations[ANN_RESTORE_FROM];
  return loc === undefined ? undefined : parsePvcLocation(loc);
}
