/**
 * The EtcdBackup decision: what one pass saw (the backup, its cluster, its Jobs) in, the next
 * step and the status out. Pure (no I/O, no clock), unit-tested in operator/test/backup-plan.test.ts.
 *
 * A backup run is a Kubernetes Job (see backup-job.ts) that streams the Maintenance snapshot of a
 * healthy member to the destination and reports what it wrote in its termination message.
 * - On demand (no schedule): one Job when the cluster is Available; its result is the status.
 *   Deleting a failed run's Job runs it again.
 * - Scheduled: a Job for the latest due slot after status.lastScheduleTime (creation time at
 *   first), one at a time: a slot that falls due while a run is active waits for it. Retention
 *   (spec.retention.maxBackups) is done by the Job, which deletes the oldest files of this
 *   backup beyond the limit after writing its own; finished Jobs beyond JOB_HISTORY are deleted.
 * Status carries the latest finished run (phase, times, the latest successful snapshot's
 * revision, size, sha256 and location) and, while a run is active, phase Running.
 */
import type { EtcdBackup, EtcdBackupStatus, EtcdCluster } from "../api/v1alpha1.js";
import { clientURL, memberOrdinal } from "../cluster/naming.js";
import { dueSlot, parseSchedule, ScheduleError, type Schedule } from "./schedule.js";

/** What a successful run reports (its termination message, JSON). */
export interface SnapshotResult {
  location: string;
  file: string;
  size: number;
  sha256: string;
  revision: number;
  pruned?: string[];
}

export interface ObservedJob {
  name: string;
  /** ms since the epoch. */
  createdAt: number;
  completedAt?: number;
  state: "active" | "succeeded" | "failed";
  /** The scheduled slot the Job runs for (ISO), if scheduled. */
  slot?: string;
  result?: SnapshotResult;
  /** Why it failed (the last pod's termination message, or the Job's condition). */
  message?: string;
}

export interface ObservedBackup {
  backup: EtcdBackup;
  /** The EtcdCluster named by spec.clusterName, or undefined when there is none. */
  cluster: EtcdCluster | undefined;
  jobs: ObservedJob[];
  now: number;
}

export type BackupStep =
  | { kind: "start-job"; job: string; file: string; slot?: string; endpoints: string[] }
  | { kind: "delete-jobs"; jobs: string[] }
  | { kind: "wait"; reason: string; message: string }
  | { kind: "invalid"; message: string }
  | { kind: "steady" };

export interface BackupPlanOptions {
  clusterDomain: string;
}

/** Finished Jobs kept per backup (older ones are deleted; their files stay). */
export const JOB_HISTORY = 3;

export const ANN_SLOT = "etcd.etcd-ts.io/scheduled-time";
export const LABEL_BACKUP = "etcd.etcd-ts.io/backup";

/** `20261204T161500Z`: a UTC time that sorts as text. */
export function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z");
}

/** The snapshot file of one run: `<backup>-<time>.db` (sorts by time). */
export function snapshotFileName(backup: string, ms: number): string {
  return `${backup}-${compactTime(ms)}.db`;
}

/** The Job of a run: `<backup>-snapshot` on demand, `<backup>-<slot seconds>` when scheduled (at most 63 characters). */
export function jobName(backup: string, slotMs?: number): string {
  const suffix = slotMs === undefined ? "snapshot" : String(Math.floor(slotMs / 1000));
  return `${backup.slice(0, 62 - suffix.length)}-${suffix}`;
}

/** Client endpoints (`host:port`) of the cluster's healthy members: followers first (spare the leader), then the leader. */
export function snapshotEndpoints(c: EtcdCluster, o: BackupPlanOptions): string[] {
  const ref = { name: c.metadata.name, namespace: c.metadata.namespace };
  const healthy = (c.status?.members ?? []).filter((m) => m.healthy && m.role !== "learner" && memberOrdinal(c.metadata.name, m.name) !== undefined);
  healthy.sort((a, b) => (a.role === "leader" ? 1 : 0) - (b.role === "leader" ? 1 : 0) || (a.name < b.name ? -1 : 1));
  return healthy.map((m) => new URL(clientURL(ref, m.name, o.clusterDomain)).host);
}

function available(c: EtcdCluster): boolean {
  return c.status?.conditions?.some((x) => x.type === "Available" && x.status === "True") ?? false;
}

export interface BackupPlan {
  step: BackupStep;
  status: EtcdBackupStatus;
  /** When the next pass is wanted, ms from now (undefined: only on events and resync). */
  requeueAfterMs?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function planBackup(obs: ObservedBackup, o: BackupPlanOptions): BackupPlan {
  const b = obs.backup;
  const prev = b.status ?? {};
  const jobs = [...obs.jobs].sort((x, y) => x.createdAt - y.createdAt || (x.name < y.name ? -1 : 1));
  const status = statusFrom(obs, jobs);

  let schedule: Schedule | undefined;
  if (b.spec.schedule) {
    try {
      schedule = parseSchedule(b.spec.schedule);
    } catch (err) {
      const message = err instanceof ScheduleError ? err.message : String(err);
      return { step: { kind: "invalid", message }, status: { ...status, phase: "Failed", message } };
    }
  }
  const d = b.spec.destination;
  if (!d || (d.pvc === undefined) === (d.s3 === undefined) || (d.s3 !== undefined && !d.s3.bucket)) {
    const message = "spec.destination: needs exactly one of pvc or s3 (with a bucket)";
    return { step: { kind: "invalid", message }, status: { ...status, phase: "Failed", message } };
  }

  const active = jobs.find((j) => j.state === "active");
  const finished = jobs.filter((j) => j.state !== "active");

  // Finished Jobs beyond the history limit go (scheduled backups accumulate them).
  if (finished.length > JOB_HISTORY) {
    return { step: { kind: "delete-jobs", jobs: finished.slice(0, finished.length - JOB_HISTORY).map((j) => j.name) }, status, requeueAfterMs: 1000 };
  }

  const clusterProblem = (): BackupStep | undefined => {
    if (obs.cluster === undefined) return { kind: "wait", reason: "ClusterNotFound", message: `EtcdCluster ${b.spec.clusterName} not found` };
    if (!available(obs.cluster)) return { kind: "wait", reason: "ClusterUnavailable", message: `EtcdCluster ${b.spec.clusterName} is not Available` };
    if (snapshotEndpoints(obs.cluster, o).length === 0) return { kind: "wait", reason: "NoHealthyMember", message: `EtcdCluster ${b.spec.clusterName} reports no healthy voter` };
    return undefined;
  };

  if (schedule === undefined) {
    if (active !== undefined) return { step: { kind: "wait", reason: "Running", message: `job ${active.name} running` }, status, requeueAfterMs: 5000 };
    if (jobs.length > 0 || prev.phase === "Succeeded") return { step: { kind: "steady" }, status };
    const problem = clusterProblem();
    if (problem !== undefined) return { step: problem, status: { ...status, phase: "Pending", message: problem.kind === "wait" ? problem.message : "" }, requeueAfterMs: 5000 };
    return {
      step: { kind: "start-job", job: jobName(b.metadata.name), file: snapshotFileName(b.metadata.name, obs.now), endpoints: snapshotEndpoints(obs.cluster!, o) },
      status: { ...status, phase: "Running", startTime: iso(obs.now), message: "" },
      requeueAfterMs: 2000,
    };
  }

  const created = b.metadata.creationTimestamp ? Date.parse(b.metadata.creationTimestamp) : obs.now;
  const since = status.lastScheduleTime ? Date.parse(status.lastScheduleTime) : created;
  const due = dueSlot(schedule, new Date(since), new Date(obs.now));
  const next = schedule.nextAfter(new Date(Math.max(obs.now, due?.getTime() ?? 0)));
  status.nextScheduleTime = next ? iso(next.getTime()) : undefined;
  const untilNext = next ? Math.max(200, next.getTime() - obs.now + 50) : undefined;
  if (due === undefined) return { step: { kind: "steady" }, status, ...(untilNext !== undefined ? { requeueAfterMs: Math.min(untilNext, 60_000) } : {}) };
  if (active !== undefined) {
    return { step: { kind: "wait", reason: "Running", message: `job ${active.name} running; the slot ${iso(due.getTime())} waits for it` }, status, requeueAfterMs: 5000 };
  }
  const problem = clusterProblem();
  if (problem !== undefined) return { step: problem, status: { ...status, message: problem.kind === "wait" ? problem.message : "" }, requeueAfterMs: 5000 };
  const slotMs = due.getTime();
  return {
    step: { kind: "start-job", job: jobName(b.metadata.name, slotMs), file: snapshotFileName(b.metadata.name, slotMs), slot: iso(slotMs), endpoints: snapshotEndpoints(obs.cluster!, o) },
    status: { ...status, phase: "Running", startTime: iso(obs.now), lastScheduleTime: iso(slotMs), message: "" },
    requeueAfterMs: 2000,
  };
}

/** Status from the Jobs seen, on top of what the previous status recorded (Jobs get deleted). */
function statusFrom(obs: ObservedBackup, jobs: ObservedJob[]): EtcdBackupStatus {
  const prev = obs.backup.status ?? {};
  const s: EtcdBackupStatus = { ...prev, observedGeneration: obs.backup.metadata.generation ?? 0 };
  delete s.conditions;
  const latest = jobs.at(-1);
  const lastSlot = jobs.map((j) => j.slot).filter((x): x is string => x !== undefined).sort().at(-1);
  if (lastSlot !== undefined && (s.lastScheduleTime === undefined || lastSlot > s.lastScheduleTime)) s.lastScheduleTime = lastSlot;
  const ok = jobs.filter((j) => j.state === "succeeded" && j.result !== undefined).at(-1);
  if (ok?.result !== undefined) {
    s.revision = ok.result.revision;
    s.size = ok.result.size;
    s.sha256 = ok.result.sha256;
    s.location = ok.result.location;
    if (ok.completedAt !== undefined) s.lastSuccessTime = iso(ok.completedAt);
  }
  if (latest !== undefined) {
    s.job = latest.name;
    s.startTime = iso(latest.createdAt);
    if (latest.state === "active") {
      s.phase = "Running";
      delete s.completionTime;
      s.message = "";
    } else {
      s.phase = latest.state === "succeeded" ? "Succeeded" : "Failed";
      if (latest.completedAt !== undefined) s.completionTime = iso(latest.completedAt);
      s.message = latest.state === "failed" ? (latest.message ?? "the backup job failed") : "";
    }
  }
  return s;
}

/** The latest finished run's event, if it is news against the previous status. */
export function finishedEvent(prev: EtcdBackupStatus, next: EtcdBackupStatus): { type: "Normal" | "Warning"; reason: string; message: string } | undefined {
  if (next.job === undefined || (prev.job === next.job && prev.phase === next.phase)) return undefined;
  if (next.phase === "Succeeded") {
    return { type: "Normal", reason: "BackupSucceeded", message: `${next.location}: revision ${next.revision}, ${next.size} bytes, sha256 ${next.sha256}` };
  }
  if (next.phase === "Failed") return { type: "Warning", reason: "BackupFailed", message: `job ${next.job}: ${next.message ?? ""}` };
  return undefined;
}
