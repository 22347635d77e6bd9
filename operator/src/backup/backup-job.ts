/**
 * The Kubernetes Job of one backup run (pure). It runs the cluster's own image in the `backup`
 * mode of the image's entrypoint (operator/bin/entrypoint.js -> backup-command.ts), with the
 * destination PVC mounted at BACKUP_MOUNT, or for an S3 destination scratch space (emptyDir)
 * there and the credentialsSecret's keys as AWS_* environment variables (secretKeyRef: the
 * values never appear in the Job's spec, its flags or its logs). Why a Job and not the operator process: the snapshot
 * is written where the PVC is mounted (a PVC is mounted by pods, not by the operator), a run
 * survives an operator restart or a change of leader, it is retried by the Job controller
 * (backoffLimit), bounded (activeDeadlineSeconds), and visible and re-runnable with kubectl.
 * The Job is owned by its EtcdBackup, so deleting the backup deletes its Jobs (not its files or objects).
 */
import { API_VERSION, BACKUP_KIND, type EtcdBackup } from "../api/v1alpha1.js";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../cluster/naming.js";
import { ANN_SLOT, LABEL_BACKUP, type BackupStep } from "./plan-backup.js";

export const BACKUP_MOUNT = "/backup";
/**
 * With spec.auth the Job authenticates as root: the user and the password (from the cluster's
 * root Secret, key `password`) come in these environment variables, never in its arguments.
 */
export const ENV_BACKUP_USER = "ETCD_TS_BACKUP_USER";
export const ENV_BACKUP_PASSWORD = "ETCD_TS_BACKUP_PASSWORD";

/** The container env that makes a backup Job authenticate as root (the password as a secretKeyRef). */
export function backupAuthEnv(rootSecret: string): Record<string, unknown>[] {
  return [
    { name: ENV_BACKUP_USER, value: "root" },
    { name: ENV_BACKUP_PASSWORD, valueFrom: { secretKeyRef: { name: rootSecret, key: "password" } } },
  ];
}
export const DEFAULT_BACKUP_COMMAND = ["node", "/app/operator/bin/entrypoint.js", "backup"];

export interface BackupJobOptions {
  /** Image used when the cluster's spec.image is empty. */
  defaultImage: string;
  /** The command of the image's backup mode (flags are appended). */
  backupCommand?: string[];
  /** Retries of a failed run (the Job's backoffLimit). */
  backoffLimit?: number;
  /** A run is killed after this long. */
  activeDeadlineSeconds?: number;
}

/** `pvc://<claim>/<path inside the volume>`: where a snapshot file is, as status.location says it. */
export function pvcLocation(claim: string, pathInVolume: string): string {
  return `pvc://${claim}/${pathInVolume.replace(/^\/+/, "")}`;
}

/** The inverse of pvcLocation; undefined for another scheme or a malformed location. */
export function parsePvcLocation(location: string): { claimName: string; path: string } | undefined {
  const m = /^pvc:\/\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\/(.+)$/.exec(location);
  if (m === null || m[3]!.split("/").includes("..")) return undefined;
  return { claimName: m[1]!, path: m[3]! };
}

/** The directory of a backup's files inside the volume ("" for its root). */
export function backupDir(b: EtcdBackup): string {
  return (b.spec.destination.pvc?.path ?? "").replace(/^\/+|\/+$/g, "");
}

/** The container env of an S3 destination's credentialsSecret (keys accessKeyId, secretAccessKey, optional sessionToken). */
export function s3CredentialEnv(secret: string | undefined): Record<string, unknown>[] {
  if (!secret) return [];
  const ref = (key: string, optional = false) => ({ secretKeyRef: { name: secret, key, ...(optional ? { optional: true } : {}) } });
  return [
    { name: "AWS_ACCESS_KEY_ID", valueFrom: ref("accessKeyId") },
    { name: "AWS_SECRET_ACCESS_KEY", valueFrom: ref("secretAccessKey") },
    { name: "AWS_SESSION_TOKEN", valueFrom: ref("sessionToken", true) },
  ];
}

/** The --s3-* flags reaching a bucket (no credentials: those are env). */
export function s3Flags(s3: NonNullable<EtcdBackup["spec"]["destination"]["s3"]>): string[] {
  return [
    ...(s3.endpoint ? [`--s3-endpoint=${s3.endpoint}`] : []),
    ...(s3.region ? [`--s3-region=${s3.region}`] : []),
    ...(s3.forcePathStyle ? ["--s3-force-path-style"] : []),
  ];
}

export function backupJob(
  b: EtcdBackup,
  step: Extract<BackupStep, { kind: "start-job" }>,
  cluster: { image?: string; imagePullPolicy?: string; rootSecret?: string },
  o: BackupJobOptions,
): Record<string, unknown> {
  // Not the cluster's label: `-l etcd.etcd-ts.io/cluster=X` selects the cluster's own pods and volumes.
  const labels = { [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_BACKUP]: b.metadata.name };
  const keep = b.spec.retention?.maxBackups !== undefined ? [`--keep=${b.spec.retention.maxBackups}`] : [];
  const s3 = b.spec.destination.s3;
  let args: string[];
  let volume: Record<string, unknown>;
  let env: Record<string, unknown>[] = [];
  if (s3 !== undefined) {
    // The snapshot goes to scratch space first: its revision names the object, and it is
    // checked before a byte is uploaded.
    const time = /(\d{8}T\d{6}Z)\.db$/.exec(step.file)?.[1] ?? "";
    args = [
      `--endpoints=${step.endpoints.join(",")}`,
      `--dir=${BACKUP_MOUNT}`,
      `--file=${step.file}`,
      `--s3-bucket=${s3.bucket}`,
      ...(s3.prefix ? [`--s3-prefix=${s3.prefix}`] : []),
      ...s3Flags(s3),
      `--cluster=${b.spec.clusterName}`,
      `--backup=${b.metadata.name}`,
      `--time=${time}`,
      ...keep,
    ];
    volume = { name: "backup", emptyDir: {} };
    env = s3CredentialEnv(s3.credentialsSecret);
  } else {
    const pvc = b.spec.destination.pvc!;
    const dir = backupDir(b);
    const inVolume = dir === "" ? step.file : `${dir}/${step.file}`;
    args = [
      `--endpoints=${step.endpoints.join(",")}`,
      `--dir=${dir === "" ? BACKUP_MOUNT : `${BACKUP_MOUNT}/${dir}`}`,
      `--file=${step.file}`,
      `--prefix=${b.metadata.name}-`,
      `--location=${pvcLocation(pvc.claimName, inVolume)}`,
      ...keep,
    ];
    volume = { name: "backup", persistentVolumeClaim: { claimName: pvc.claimName } };
  }
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: step.job,
      namespace: b.metadata.namespace,
      labels,
      ...(step.slot !== undefined ? { annotations: { [ANN_SLOT]: step.slot } } : {}),
      ownerReferences: [{ apiVersion: API_VERSION, kind: BACKUP_KIND, name: b.metadata.name, uid: b.metadata.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      backoffLimit: o.backoffLimit ?? 2,
      activeDeadlineSeconds: o.activeDeadlineSeconds ?? 900,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          containers: [
            {
              name: "backup",
              image: cluster.image || o.defaultImage,
              ...(cluster.imagePullPolicy ? { imagePullPolicy: cluster.imagePullPolicy } : {}),
              command: [...(o.backupCommand ?? DEFAULT_BACKUP_COMMAND), ...args],
              ...(env.length > 0 || cluster.rootSecret ? { env: [...env, ...(cluster.rootSecret ? backupAuthEnv(cluster.rootSecret) : [])] } : {}),
              terminationMessagePath: "/dev/termination-log",
              terminationMessagePolicy: "FallbackToLogsOnError",
              volumeMounts: [{ name: "backup", mountPath: BACKUP_MOUNT }],
            },
          ],
          volumes: [volume],
        },
      },
    },
  };
}
