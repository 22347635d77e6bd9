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
import { parsePvcLocation, pvcLocation, s3CredentialEnv } from "./backup-job.js";
import { objectKey, parseS3Location, s3Location } from "./s3-location.js";

export const RESTORE_MOUNT = "/restore";
export const DEFAULT_RESTORE_COMMAND = ["node", "/app/operator/bin/entrypoint.js", "restore"];
/** On a restored member's PVC: the `pvc://claim/path` or `s3://bucket/key` of the snapshot it was restored from. */
export const ANN_RESTORE_FROM = "etcd.etcd-ts.io/restore-from";
/** With an s3:// restore-from: how to reach the bucket and the sha256 to check (JSON; no credentials, only the Secret's name). */
export const ANN_RESTORE_S3 = "etcd.etcd-ts.io/restore-s3";

/** An object in a bucket, how to reach it, and the SHA-256 its database must have (else its metadata's). */
export interface S3Object {
  bucket: string;
  key: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentialsSecret?: string;
  sha256?: string;
}

export type RestoreSource = { claimName: string; path: string } | { s3: S3Object };

function isS3(src: RestoreSource): src is { s3: S3Object } {
  return "s3" in src;
}

/** Where the source is, as ANN_RESTORE_FROM records it. */
export function restoreLocation(src: RestoreSource): string {
  return isS3(src) ? s3Location(src.s3.bucket, src.s3.key) : pvcLocation(src.claimName, src.path);
}

function s3Access(s3: NonNullable<NonNullable<EtcdBackup["spec"]["destination"]>["s3"]>): Omit<S3Object, "bucket" | "key" | "sha256"> {
  return {
    ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
    ...(s3.region ? { region: s3.region } : {}),
    ...(s3.forcePathStyle ? { forcePathStyle: true } : {}),
    ...(s3.credentialsSecret ? { credentialsSecret: s3.credentialsSecret } : {}),
  };
}

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
  if (restore.source?.s3) {
    const s3 = restore.source.s3;
    if (!s3.key) throw new RestoreNotReady("spec.bootstrap.restore.source.s3.key must name the snapshot object (under prefix)");
    const key = objectKey(s3.prefix, s3.key);
    if (parseS3Location(s3Location(s3.bucket, key)) === undefined) throw new RestoreNotReady(`spec.bootstrap.restore.source.s3: bad bucket or key ${JSON.stringify({ bucket: s3.bucket, key })}`);
    return { s3: { bucket: s3.bucket, key, ...s3Access(s3) } };
  }
  if (!restore.backupName) throw new RestoreNotReady("spec.bootstrap.restore needs backupName, source.pvc or source.s3");
  if (backup === undefined) throw new RestoreNotReady(`EtcdBackup ${restore.backupName} not found`);
  const loc = backup.status?.location;
  if (!loc) throw new RestoreNotReady(`EtcdBackup ${restore.backupName} has no successful snapshot yet`);
  if (loc.startsWith("s3://")) {
    const o = parseS3Location(loc);
    const d = backup.spec.destination?.s3;
    if (o === undefined || d === undefined) throw new RestoreNotReady(`EtcdBackup ${restore.backupName}: location ${loc} is not an object of its S3 destination`);
    return { s3: { ...o, ...s3Access(d), ...(backup.status?.sha256 ? { sha256: backup.status.sha256 } : {}) } };
  }
  const parsed = parsePvcLocation(loc);
  if (parsed === undefined) throw new RestoreNotReady(`EtcdBackup ${restore.backupName}: location ${loc} is neither on a PVC nor in S3`);
  return parsed;
}

function flag(args: string[], name: string): string | undefined {
  const prefix = `--${name}=`;
  return args.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

/**
 * The init container's command from the member's etcd flags (those memberArgs gives). A member
 * bootstrapped by DNS SRV discovery has no --initial-cluster flag: `initialCluster` (what the
 * bootstrap recorded) is used then.
 */
export function restoreCommand(etcdArgs: string[], src: RestoreSource, bumpRevision: number, command: string[] = DEFAULT_RESTORE_COMMAND, initialCluster?: string): string[] {
  const need = ["name", "initial-cluster", "initial-cluster-token", "initial-advertise-peer-urls", "data-dir"];
  const file = isS3(src) ? `${RESTORE_MOUNT}/${src.s3.key.split("/").at(-1)}` : `${RESTORE_MOUNT}/${src.path}`;
  const out = [...command, file];
  for (const n of need) {
    const v = flag(etcdArgs, n) ?? (n === "initial-cluster" ? initialCluster : undefined);
    if (v === undefined) throw new Error(`the member's flags have no --${n}`);
    out.push(`--${n}=${v}`);
  }
  if (bumpRevision > 0) out.push(`--bump-revision=${bumpRevision}`, "--mark-compacted");
  if (isS3(src)) {
    const o = src.s3;
    out.push(
      `--s3-location=${s3Location(o.bucket, o.key)}`,
      ...(o.endpoint ? [`--s3-endpoint=${o.endpoint}`] : []),
      ...(o.region ? [`--s3-region=${o.region}`] : []),
      ...(o.forcePathStyle ? ["--s3-force-path-style"] : []),
      ...(o.sha256 ? [`--sha256=${o.sha256}`] : []),
    );
  }
  return out;
}

type Obj = Record<string, any>;

/**
 * `pod` (a member pod as memberPod builds it, state new) with the restore init container (first)
 * and the snapshot's volume added: the snapshot's PVC read-only, or for S3 scratch space the
 * object is downloaded to (the credentialsSecret's keys as AWS_* env). Returns a new object.
 */
export function withRestore(pod: Obj, src: RestoreSource, bumpRevision: number, command?: string[], initialCluster?: string): Obj {
  const spec = pod.spec as Obj;
  const etcd = (spec.containers as Obj[]).find((c) => c.name === "etcd") ?? (spec.containers as Obj[])[0]!;
  const cmd = etcd.command as string[];
  const env = isS3(src) ? s3CredentialEnv(src.s3.credentialsSecret) : [];
  const init = {
    name: "restore",
    image: etcd.image,
    ...(etcd.imagePullPolicy ? { imagePullPolicy: etcd.imagePullPolicy } : {}),
    command: restoreCommand(cmd, src, bumpRevision, command, initialCluster),
    ...(env.length > 0 ? { env } : {}),
    volumeMounts: [...(etcd.volumeMounts as Obj[]), { name: "restore-source", mountPath: RESTORE_MOUNT, ...(isS3(src) ? {} : { readOnly: true }) }],
  };
  const volume = isS3(src) ? { name: "restore-source", emptyDir: {} } : { name: "restore-source", persistentVolumeClaim: { claimName: src.claimName, readOnly: true } };
  return {
    ...pod,
    spec: {
      ...spec,
      initContainers: [init, ...((spec.initContainers as Obj[] | undefined) ?? [])],
      volumes: [...(spec.volumes as Obj[]), volume],
    },
  };
}

/** `pvc` (a member PVC) recording the snapshot it is restored from. */
export function withRestoreAnnotation(pvc: Obj, src: RestoreSource): Obj {
  const meta = pvc.metadata as Obj;
  const ann: Record<string, string> = { [ANN_RESTORE_FROM]: restoreLocation(src) };
  if (isS3(src)) {
    const { bucket: _b, key: _k, ...access } = src.s3;
    ann[ANN_RESTORE_S3] = JSON.stringify(access);
  }
  return { ...pvc, metadata: { ...meta, annotations: { ...(meta.annotations ?? {}), ...ann } } };
}

/** The source recorded on a member's PVC, if any. */
export function recordedRestoreSource(annotations: Record<string, string>): RestoreSource | undefined {
  const loc = annotations[ANN_RESTORE_FROM];
  if (loc === undefined) return undefined;
  if (loc.startsWith("s3://")) {
    const o = parseS3Location(loc);
    if (o === undefined) return undefined;
    let access: Omit<S3Object, "bucket" | "key"> = {};
    try {
      access = JSON.parse(annotations[ANN_RESTORE_S3] ?? "{}") as typeof access;
    } catch {
      // a hand-edited record: reach the bucket with defaults
    }
    return { s3: { ...access, ...o } };
  }
  return parsePvcLocation(loc);
}
