/**
 * The operator's API: the EtcdCluster and EtcdBackup resources of group `etcd.etcd-ts.io`,
 * version v1alpha1, as TypeScript types. The CRD schemas in `charts/etcd-ts-operator/crds/` are
 * the source of truth the API server enforces; these types mirror them (operator/test/crd.test.ts
 * checks that every field named here exists in the schema).
 */

export const GROUP = "etcd.etcd-ts.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const CLUSTER_KIND = "EtcdCluster";
export const CLUSTER_PLURAL = "etcdclusters";
export const BACKUP_KIND = "EtcdBackup";
export const BACKUP_PLURAL = "etcdbackups";

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/**
 * Where snapshots are kept. `s3`: objects `s3://bucket/prefix/<cluster>-<time>-r<revision>.db`
 * in an S3-compatible bucket; `endpoint` (e.g. a MinIO or Ceph URL; default AWS), `region`
 * (default us-east-1), `forcePathStyle` (path-style URLs, as MinIO and Ceph want);
 * `credentialsSecret` names a Secret with keys `accessKeyId`, `secretAccessKey` and optional
 * `sessionToken` (without one, the SDK's default chain: e.g. a pod identity). `key` names one
 * object under `prefix`, for spec.bootstrap.restore.source.s3 only.
 */
export interface SnapshotLocation {
  pvc?: { claimName: string; path?: string };
  s3?: {
    bucket: string;
    prefix?: string;
    key?: string;
    endpoint?: string;
    region?: string;
    forcePathStyle?: boolean;
    credentialsSecret?: string;
  };
}

export interface EtcdClusterSpec {
  size: number;
  image?: string;
  version?: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  paused?: boolean;
  storage?: {
    medium?: "PersistentVolume" | "Memory";
    size?: string;
    storageClassName?: string;
  };
  bootstrap?: {
    discovery?: "Static" | "DNSSRV";
    /**
     * Start from a backup: every member's pod gets an init container that restores the snapshot
     * into its data dir (see operator/src/backup/restore.ts). `backupName` names an EtcdBackup
     * whose latest snapshot is used (on a PVC or in S3: the object is downloaded and its sha256
     * checked against the backup's status); `source.pvc` names a snapshot file directly (`path`
     * is the file inside the volume), `source.s3` an object (`key` under `prefix`; its sha256
     * metadata is checked). `bumpRevision` > 0 raises the restored revision by that much and
     * marks it compacted, so watchers never see revisions go backwards.
     */
    restore?: { backupName?: string; source?: SnapshotLocation; bumpRevision?: number };
  };
  tls?: {
    client?: { operatorIssued?: boolean; secretName?: string; clientCertAuth?: boolean };
    peer?: { operatorIssued?: boolean; secretName?: string };
  };
  /**
   * etcd authentication. When enabled, once the cluster is up the operator adds the user root
   * with the password from `rootPasswordSecret` (key `password`; without one it generates one into
   * the Secret `<cluster>-root`, which it owns), grants it the role root and turns auth on; it then
   * authenticates as root itself. Turning `enabled` off later turns auth off.
   */
  auth?: { enabled?: boolean; rootPasswordSecret?: string };
  /** etcd flags without their leading dashes, passed to every member. */
  options?: Record<string, string>;
  podTemplate?: {
    metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
    resources?: Record<string, unknown>;
    nodeSelector?: Record<string, string>;
    tolerations?: Record<string, unknown>[];
    affinity?: Record<string, unknown>;
    priorityClassName?: string;
    env?: Record<string, unknown>[];
  };
  /**
   * A backup policy: the operator keeps one EtcdBackup `<cluster>-scheduled` (owned by the
   * cluster) with this schedule, retention and destination, and deletes it when the policy goes.
   */
  backup?: {
    schedule?: string;
    retention?: { maxBackups?: number };
    destination?: SnapshotLocation;
  };
  /**
   * Defragmentation by rule (see operator/src/cluster/defrag-plan.ts): a member is defragmented
   * when its database is larger than `dbSizeThreshold` (a quantity, e.g. "100Mi") or more than
   * `fragmentationPercent` of it is free, or on the cron `schedule` (every member once per slot);
   * followers first, the leader last, one at a time, only while the cluster is healthy. A raised
   * NOSPACE alarm has every member defragmented once, then is disarmed once every member's
   * database is below the quota.
   */
  defrag?: { schedule?: string; dbSizeThreshold?: string; fragmentationPercent?: number };
  /** What the operator may do on its own when the cluster cannot heal by the ordinary steps. */
  recovery?: {
    /**
     * Permanent loss of quorum: fewer than a majority of the voters still have their data (PVC
     * gone, or with memory storage the pod). Off by default: the cluster is reported Degraded
     * (reason QuorumLost) and left alone. When enabled and the loss has lasted `afterSeconds`
     * (default 300, at least 30), the operator rebuilds the cluster from `source`:
     * `SurvivingMember` (default) restarts the most advanced surviving member once with
     * --force-new-cluster (a one-member cluster with its data), then re-adds the others as
     * learners; `Backup` (also used when no survivor answers) replaces every member with a new
     * cluster restored from the latest snapshot of the EtcdBackup `backupName`, its revisions
     * raised by `bumpRevision` (default 1000000) so watchers never see them go backwards.
     */
    quorumLoss?: {
      enabled?: boolean;
      afterSeconds?: number;
      source?: "SurvivingMember" | "Backup";
      backupName?: string;
      bumpRevision?: number;
    };
  };
}

export type ConditionType = "Available" | "Progressing" | "Degraded";

export interface Condition {
  type: ConditionType;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export type MemberRole = "leader" | "follower" | "learner" | "unknown";

export interface MemberStatus {
  name: string;
  /** etcd's member ID, hex. */
  id?: string;
  role?: MemberRole;
  healthy?: boolean;
  revision?: number;
  raftIndex?: number;
  dbSize?: number;
  dbSizeInUse?: number;
  version?: string;
  podIP?: string;
  /** The spec hash the member's pod was created from (see status.specHash). */
  specHash?: string;
  /** When the operator last defragmented the member (RFC 3339). */
  lastDefragTime?: string;
}

export type ClusterPhase = "Creating" | "Running" | "Scaling" | "Repairing" | "Degraded" | "Failed" | "Paused" | "Upgrading";

export interface EtcdClusterStatus {
  phase?: ClusterPhase;
  observedGeneration?: number;
  size?: number;
  readyMembers?: number;
  leader?: string;
  clusterID?: string;
  currentVersion?: string;
  lastAction?: string;
  /** Hash of the current pod-relevant spec; members whose specHash differs are rolled one at a time. */
  specHash?: string;
  /** Members whose pods run the current spec (specHash). */
  updatedMembers?: number;
  conditions?: Condition[];
  members?: MemberStatus[];
  /** spec.backup: the owned EtcdBackup and its latest successful snapshot. */
  backup?: {
    name?: string;
    phase?: string;
    lastBackupTime?: string;
    revision?: number;
    location?: string;
    message?: string;
  };
  /** Whether etcd authentication is on (as last observed by the operator). */
  authEnabled?: boolean;
  /**
   * Defragmentation: the latest schedule slot whose run finished on every member, and when the
   * raised NOSPACE alarm was first seen (gone with the alarm), both RFC 3339.
   */
  defrag?: { lastScheduleTime?: string; nospaceSince?: string };
  /**
   * The operator-issued CA: its expiry and where its rotation stands (Stable, TrustBoth: members
   * trust the old and the new CA; Reissued: certificates come from the new CA, the old is still
   * trusted; Stable again once the old CA is dropped).
   */
  tls?: { caNotAfter?: string; caRotationPhase?: string };
  /**
   * A permanent loss of quorum and the recovery from it (spec.recovery.quorumLoss): when it was
   * first seen, and what the operator is doing about it. Gone once the cluster is whole again.
   */
  quorumLoss?: QuorumLossStatus;
}

export interface QuorumLossStatus {
  /** When the loss was first observed (RFC 3339); the recovery waits afterSeconds from here. */
  since: string;
  /**
   * Lost: reported (and waiting for the threshold, or recovery is off). ForcingNewCluster: the
   * surviving `member` restarts alone with --force-new-cluster. RestoringBackup: every member is
   * replaced from `backupName`. Rejoining: the cluster serves again and the others are re-added.
   */
  phase: "Lost" | "ForcingNewCluster" | "RestoringBackup" | "Rejoining";
  /** The voters whose data is gone. */
  lostMembers?: string[];
  member?: string;
  backupName?: string;
}

export interface EtcdCluster {
  apiVersion: typeof API_VERSION;
  kind: typeof CLUSTER_KIND;
  metadata: ObjectMeta;
  spec: EtcdClusterSpec;
  status?: EtcdClusterStatus;
}

export interface EtcdBackupSpec {
  clusterName: string;
  schedule?: string;
  retention?: { maxBackups?: number };
  destination: SnapshotLocation;
}

export interface EtcdBackupStatus {
  phase?: "Pending" | "Running" | "Succeeded" | "Failed";
  observedGeneration?: number;
  startTime?: string;
  completionTime?: string;
  /** When the latest successful run finished (kept while a newer run is active or after one failed). */
  lastSuccessTime?: string;
  revision?: number;
  size?: number;
  sha256?: string;
  location?: string;
  message?: string;
  /** The Job of the latest run. */
  job?: string;
  /** Scheduled backups: the slot of the latest run started, and the next one. */
  lastScheduleTime?: string;
  nextScheduleTime?: string;
  conditions?: Condition[];
}

export interface EtcdBackup {
  apiVersion: typeof API_VERSION;
  kind: typeof BACKUP_KIND;
  metadata: ObjectMeta;
  spec: EtcdBackupSpec;
  status?: EtcdBackupStatus;
}
