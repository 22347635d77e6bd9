/**
 * The EtcdBackup decisions (pure): schedules, on-demand and scheduled runs, Job history, status
 * and events, retention's choice of files, the Job manifest, and the restore decisions (which
 * snapshot, the init container's command, the recorded source).
 */
import { describe, expect, it } from "vitest";
import type { EtcdBackup, EtcdCluster } from "../src/api/v1alpha1.js";
import { filesToPrune } from "../src/backup/backup-command.js";
import { backupJob, parsePvcLocation, pvcLocation } from "../src/backup/backup-job.js";
import { finishedEvent, JOB_HISTORY, jobName, planBackup, snapshotFileName, type ObservedJob } from "../src/backup/plan-backup.js";
import { ANN_RESTORE_FROM, recordedRestoreSource, resolveRestoreSource, RestoreNotReady, restoreCommand, withRestore, withRestoreAnnotation } from "../src/backup/restore.js";
import { dueSlot, parseSchedule, ScheduleError } from "../src/backup/schedule.js";
import { memberPod, memberPvc } from "../src/cluster/manifests.js";

const T0 = Date.parse("2026-12-04T16:00:00Z");
const min = 60_000;
const o = { clusterDomain: "cluster.local" };

const backup = (spec: Partial<EtcdBackup["spec"]> = {}, status?: EtcdBackup["status"]): EtcdBackup => ({
  apiVersion: "etcd.etcd-ts.io/v1alpha1",
  kind: "EtcdBackup",
  metadata: { name: "b", namespace: "ns", uid: "bu", generation: 1, creationTimestamp: new Date(T0).toISOString() },
  spec: { clusterName: "e", destination: { pvc: { claimName: "backups", path: "etcd/" } }, ...spec },
  ...(status ? { status } : {}),
});

const cluster = (available = true): EtcdCluster => ({
  apiVersion: "etcd.etcd-ts.io/v1alpha1",
  kind: "EtcdCluster",
  metadata: { name: "e", namespace: "ns", uid: "cu" },
  spec: { size: 3, image: "etcd-ts:2" },
  status: {
    conditions: [{ type: "Available", status: available ? "True" : "False" }],
    members: [
      { name: "e-0", healthy: true, role: "leader" },
      { name: "e-1", healthy: false, role: "follower" },
      { name: "e-2", healthy: true, role: "follower" },
    ],
  },
});

const result = { location: "pvc://backups/etcd/b-x.db", file: "b-x.db", size: 20512, sha256: "ab".repeat(32), revision: 42 };

describe("schedules", () => {
  it("five fields (minutes) or six (seconds first), in UTC; nonsense refused", () => {
    expect(parseSchedule("*/5 * * * *").nextAfter(new Date(T0 + 1000))?.toISOString()).toBe("2026-12-04T16:05:00.000Z");
    expect(parseSchedule("0 3 * * *").nextAfter(new Date(T0))?.toISOString()).toBe("2026-12-05T03:00:00.000Z");
    expect(parseSchedule("*/20 * * * * *").nextAfter(new Date(T0))?.toISOString()).toBe("2026-12-04T16:00:20.000Z");
    expect(() => parseSchedule("every day")).toThrow(ScheduleError);
    expect(() => parseSchedule("61 * * * *")).toThrow(ScheduleError);
  });

  it("the latest due slot after the last one; none before the first", () => {
    const s = parseSchedule("*/5 * * * *");
    expect(dueSlot(s, new Date(T0), new Date(T0 + 4 * min))).toBeUndefined();
    expect(dueSlot(s, new Date(T0), new Date(T0 + 5 * min))?.getTime()).toBe(T0 + 5 * min);
    expect(dueSlot(s, new Date(T0), new Date(T0 + 27 * min))?.getTime()).toBe(T0 + 25 * min); // missed ones are skipped
    expect(dueSlot(s, new Date(T0 + 25 * min), new Date(T0 + 27 * min))).toBeUndefined();
  });
});

describe("on-demand backups", () => {
  it("waits for its cluster, then starts one Job from a healthy member (followers first)", () => {
    const none = planBackup({ backup: backup(), cluster: undefined, jobs: [], now: T0 }, o);
    expect(none.step).toMatchObject({ kind: "wait", reason: "ClusterNotFound" });
    expect(none.status.phase).toBe("Pending");
    expect(planBackup({ backup: backup(), cluster: cluster(false), jobs: [], now: T0 }, o).step).toMatchObject({ kind: "wait", reason: "ClusterUnavailable" });
    const go = planBackup({ backup: backup(), cluster: cluster(), jobs: [], now: T0 + 1234 }, o);
    expect(go.step).toEqual({
      kind: "start-job",
      job: "b-snapshot",
      file: "b-20261204T160001Z.db",
      endpoints: ["e-2.e.ns.svc.cluster.local:2379", "e-0.e.ns.svc.cluster.local:2379"],
    });
    expect(go.status.phase).toBe("Running");
  });

  it("reports the run: Running, then Succeeded with revision, size, hash and location (one event), or Failed", () => {
    const active: ObservedJob = { name: "b-snapshot", createdAt: T0, state: "active" };
    const running = planBackup({ backup: backup(), cluster: cluster(), jobs: [active], now: T0 + 1000 }, o);
    expect(running.step.kind).toBe("wait");
    expect(running.status).toMatchObject({ phase: "Running", job: "b-snapshot" });

    const done: ObservedJob = { ...active, state: "succeeded", completedAt: T0 + 3000, result };
    const ok = planBackup({ backup: backup({}, running.status), cluster: cluster(), jobs: [done], now: T0 + 4000 }, o);
    expect(ok.step.kind).toBe("steady");
    expect(ok.status).toMatchObject({ phase: "Succeeded", revision: 42, size: 20512, sha256: result.sha256, location: result.location, completionTime: new Date(T0 + 3000).toISOString() });
    expect(finishedEvent(running.status, ok.status)).toMatchObject({ type: "Normal", reason: "BackupSucceeded" });
    expect(finishedEvent(ok.status, ok.status)).toBeUndefined();

    const failed: ObservedJob = { ...active, state: "failed", message: "e-2:2379: connection refused" };
    const bad = planBackup({ backup: backup({}, running.status), cluster: cluster(), jobs: [failed], now: T0 + 4000 }, o);
    expect(bad.status).toMatchObject({ phase: "Failed", message: "e-2:2379: connection refused" });
    expect(finishedEvent(running.status, bad.status)).toMatchObject({ type: "Warning", reason: "BackupFailed" });
  });

  it("a failed run whose Job is deleted runs again; a succeeded one stays done", () => {
    expect(planBackup({ backup: backup({}, { phase: "Failed", job: "b-snapshot" }), cluster: cluster(), jobs: [], now: T0 }, o).step.kind).toBe("start-job");
    expect(planBackup({ backup: backup({}, { phase: "Succeeded", job: "b-snapshot", ...result }), cluster: cluster(), jobs: [], now: T0 }, o).step.kind).toBe("steady");
  });

  it("refuses what it cannot do", () => {
    expect(planBackup({ backup: backup({ destination: { s3: { bucket: "x" } } }), cluster: cluster(), jobs: [], now: T0 }, o).step.kind).toBe("start-job");
    expect(planBackup({ backup: backup({ destination: { s3: { bucket: "x" }, pvc: { claimName: "p" } } }), cluster: cluster(), jobs: [], now: T0 }, o).step.kind).toBe("invalid");
    expect(planBackup({ backup: backup({ destination: {} }), cluster: cluster(), jobs: [], now: T0 }, o).step.kind).toBe("invalid");
    const bad = planBackup({ backup: backup({ schedule: "whenever" }), cluster: cluster(), jobs: [], now: T0 }, o);
    expect(bad.step.kind).toBe("invalid");
    expect(bad.status.phase).toBe("Failed");
  });
});

describe("scheduled backups", () => {
  const sched = { schedule: "*/5 * * * *", retention: { maxBackups: 2 } };

  it("runs at each slot after creation, one at a time, and says when the next is", () => {
    const early = planBackup({ backup: backup(sched), cluster: cluster(), jobs: [], now: T0 + 4 * min }, o);
    expect(early.step.kind).toBe("steady");
    expect(early.status.nextScheduleTime).toBe(new Date(T0 + 5 * min).toISOString());
    expect(early.requeueAfterMs).toBeGreaterThan(50_000);
    expect(early.requeueAfterMs).toBeLessThanOrEqual(60_000);

    const due = planBackup({ backup: backup(sched), cluster: cluster(), jobs: [], now: T0 + 12 * min }, o);
    const slot = T0 + 10 * min;
    expect(due.step).toMatchObject({ kind: "start-job", job: jobName("b", slot), file: snapshotFileName("b", slot), slot: new Date(slot).toISOString() });
    expect(due.status.lastScheduleTime).toBe(new Date(slot).toISOString());

    const active: ObservedJob = { name: jobName("b", slot), createdAt: T0 + 12 * min, state: "active", slot: new Date(slot).toISOString() };
    // The slot is recorded from the Job itself, even if the status write was lost.
    const after = planBackup({ backup: backup(sched), cluster: cluster(), jobs: [active], now: T0 + 13 * min }, o);
    expect(after.step.kind).toBe("steady");
    expect(after.status.lastScheduleTime).toBe(new Date(slot).toISOString());
    // A slot falling due while a run is active waits for it.
    expect(planBackup({ backup: backup(sched, after.status), cluster: cluster(), jobs: [active], now: T0 + 16 * min }, o).step).toMatchObject({ kind: "wait", reason: "Running" });
  });

  it("keeps the latest successful snapshot in status while later runs fail, and deletes finished Jobs beyond the history", () => {
    const jobs: ObservedJob[] = [0, 1, 2, 3, 4].map((i) => ({
      name: jobName("b", T0 + i * 5 * min),
      createdAt: T0 + i * 5 * min,
      state: i < 2 ? "succeeded" : "failed",
      ...(i < 2 ? { result: { ...result, revision: 40 + i } } : { message: "boom" }),
    }));
    const p = planBackup({ backup: backup(sched), cluster: cluster(), jobs, now: T0 + 21 * min }, o);
    expect(p.step).toEqual({ kind: "delete-jobs", jobs: jobs.slice(0, 5 - JOB_HISTORY).map((j) => j.name) });
    expect(p.status).toMatchObject({ phase: "Failed", revision: 41, message: "boom" });
  });

  it("Job names fit Kubernetes' 63 characters", () => {
    expect(jobName("x".repeat(80), T0).length).toBeLessThanOrEqual(63);
    expect(jobName("x".repeat(80)).length).toBeLessThanOrEqual(63);
  });
});

describe("retention", () => {
  it("deletes the oldest of this backup's files beyond the limit, nothing else", () => {
    const names = ["b-20261204T160000Z.db", "b-20261204T161000Z.db", "b-20261204T160500Z.db", "b-20261204T161500Z.db.part", "bb-20261204T150000Z.db", "b-notes.db", "lost+found"];
    expect(filesToPrune(names, "b-", 2)).toEqual(["b-20261204T160000Z.db"]);
    expect(filesToPrune(names, "b-", 1)).toEqual(["b-20261204T160000Z.db", "b-20261204T160500Z.db"]);
    expect(filesToPrune(names, "b-", 3)).toEqual([]);
    expect(filesToPrune(names, "b-", 0)).toEqual([]);
  });
});

describe("the backup Job", () => {
  it("runs the cluster's image in backup mode with the PVC mounted, owned by the EtcdBackup", () => {
    const b = backup({ schedule: "*/5 * * * *", retention: { maxBackups: 3 } });
    const job: any = backupJob(b, { kind: "start-job", job: "b-1", file: "b-x.db", slot: "2026-12-04T16:05:00.000Z", endpoints: ["h1:2379", "h2:2379"] }, { image: "etcd-ts:2", imagePullPolicy: "Never" }, { defaultImage: "etcd-ts:1" });
    expect(job.metadata).toMatchObject({ name: "b-1", namespace: "ns", labels: { "etcd.etcd-ts.io/backup": "b" }, annotations: { "etcd.etcd-ts.io/scheduled-time": "2026-12-04T16:05:00.000Z" } });
    expect(job.metadata.ownerReferences[0]).toMatchObject({ kind: "EtcdBackup", name: "b", uid: "bu", controller: true });
    const pod = job.spec.template.spec;
    expect(pod.restartPolicy).toBe("Never");
    expect(pod.containers[0]).toMatchObject({ image: "etcd-ts:2", imagePullPolicy: "Never" });
    expect(pod.containers[0].command).toEqual([
      "node",
      "/app/operator/bin/entrypoint.js",
      "backup",
      "--endpoints=h1:2379,h2:2379",
      "--dir=/backup/etcd",
      "--file=b-x.db",
      "--prefix=b-",
      "--location=pvc://backups/etcd/b-x.db",
      "--keep=3",
    ]);
    expect(pod.volumes).toEqual([{ name: "backup", persistentVolumeClaim: { claimName: "backups" } }]);
  });

  it("to S3: scratch space, the bucket in flags, credentials only as secretKeyRefs", () => {
    const b = backup({ retention: { maxBackups: 5 }, destination: { s3: { bucket: "snaps", prefix: "etcd/prod", endpoint: "http://minio:9000", region: "eu-west-1", forcePathStyle: true, credentialsSecret: "s3-creds" } } });
    const job: any = backupJob(b, { kind: "start-job", job: "b-snapshot", file: "b-20261204T160000Z.db", endpoints: ["h1:2379"] }, {}, { defaultImage: "etcd-ts:1" });
    const ct = job.spec.template.spec.containers[0];
    expect(ct.command.slice(3)).toEqual([
      "--endpoints=h1:2379",
      "--dir=/backup",
      "--file=b-20261204T160000Z.db",
      "--s3-bucket=snaps",
      "--s3-prefix=etcd/prod",
      "--s3-endpoint=http://minio:9000",
      "--s3-region=eu-west-1",
      "--s3-force-path-style",
      "--cluster=e",
      "--backup=b",
      "--time=20261204T160000Z",
      "--keep=5",
    ]);
    expect(ct.env).toEqual([
      { name: "AWS_ACCESS_KEY_ID", valueFrom: { secretKeyRef: { name: "s3-creds", key: "accessKeyId" } } },
      { name: "AWS_SECRET_ACCESS_KEY", valueFrom: { secretKeyRef: { name: "s3-creds", key: "secretAccessKey" } } },
      { name: "AWS_SESSION_TOKEN", valueFrom: { secretKeyRef: { name: "s3-creds", key: "sessionToken", optional: true } } },
    ]);
    expect(job.spec.template.spec.volumes).toEqual([{ name: "backup", emptyDir: {} }]);
    const bare: any = backupJob(backup({ destination: { s3: { bucket: "snaps" } } }), { kind: "start-job", job: "b-snapshot", file: "b-20261204T160000Z.db", endpoints: ["h1:2379"] }, {}, { defaultImage: "etcd-ts:1" });
    expect(bare.spec.template.spec.containers[0].env).toBeUndefined();
  });

  it("with auth: root's credentials come from the root Secret through the environment, never the arguments", () => {
    const b = backup({});
    const step = { kind: "start-job" as const, job: "b-1", file: "b-x.db", endpoints: ["h1:2379"] };
    const job: any = backupJob(b, step, { rootSecret: "e-root" }, { defaultImage: "etcd-ts:1" });
    const c = job.spec.template.spec.containers[0];
    expect(c.env).toEqual([
      { name: "ETCD_TS_BACKUP_USER", value: "root" },
      { name: "ETCD_TS_BACKUP_PASSWORD", valueFrom: { secretKeyRef: { name: "e-root", key: "password" } } },
    ]);
    expect(JSON.stringify(c.command)).not.toMatch(/root|password/);
    expect((backupJob(b, step, {}, { defaultImage: "etcd-ts:1" }) as any).spec.template.spec.containers[0].env).toBeUndefined();
  });

  it("locations round-trip; a path leaving the volume is refused", () => {
    expect(parsePvcLocation(pvcLocation("backups", "/etcd/b-x.db"))).toEqual({ claimName: "backups", path: "etcd/b-x.db" });
    expect(parsePvcLocation("pvc://backups/../etc/passwd")).toBeUndefined();
    expect(parsePvcLocation("s3://bucket/x")).toBeUndefined();
  });
});

describe("restore", () => {
  const c: EtcdCluster = { apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", metadata: { name: "e", namespace: "ns", uid: "u2" }, spec: { size: 3 } };
  const mo = { clusterDomain: "cluster.local", defaultImage: "etcd-ts:1", serverCommand: ["node", "/app/server/bin/etcd-ts.js"] };
  const start = { member: "e-1", initialCluster: "e-0=http://e-0.e.ns.svc.cluster.local:2380,e-1=http://e-1.e.ns.svc.cluster.local:2380", state: "new" as const };

  it("the snapshot: a PVC file named directly, or the latest successful one of an EtcdBackup", () => {
    expect(resolveRestoreSource({ source: { pvc: { claimName: "backups", path: "etcd/x.db" } } }, undefined)).toEqual({ claimName: "backups", path: "etcd/x.db" });
    const b = backup({}, { phase: "Failed", location: "pvc://backups/etcd/b-1.db" });
    expect(resolveRestoreSource({ backupName: "b" }, b)).toEqual({ claimName: "backups", path: "etcd/b-1.db" });
    expect(() => resolveRestoreSource({ backupName: "b" }, undefined)).toThrow(/not found/);
    expect(() => resolveRestoreSource({ backupName: "b" }, backup())).toThrow(RestoreNotReady);
    expect(() => resolveRestoreSource({ source: { s3: { bucket: "xyz" } } }, undefined)).toThrow(/source.s3.key/);
    expect(() => resolveRestoreSource({ source: { pvc: { claimName: "backups" } } }, undefined)).toThrow(/path/);
  });

  it("the init container restores into the member's data dir with the member's own flags, then the member starts new", () => {
    const pod: any = withRestore(memberPod(c, start, mo), { claimName: "backups", path: "etcd/b-1.db" }, 0);
    const init = pod.spec.initContainers[0];
    expect(init.name).toBe("restore");
    expect(init.image).toBe("etcd-ts:1");
    expect(init.command).toEqual([
      "node",
      "/app/operator/bin/entrypoint.js",
      "restore",
      "/restore/etcd/b-1.db",
      "--name=e-1",
      `--initial-cluster=${start.initialCluster}`,
      "--initial-cluster-token=e-u2",
      "--initial-advertise-peer-urls=http://e-1.e.ns.svc.cluster.local:2380",
      "--data-dir=/var/lib/etcd/data",
    ]);
    expect(init.volumeMounts).toEqual([
      { name: "data", mountPath: "/var/lib/etcd" },
      { name: "restore-source", mountPath: "/restore", readOnly: true },
    ]);
    expect(pod.spec.volumes.at(-1)).toEqual({ name: "restore-source", persistentVolumeClaim: { claimName: "backups", readOnly: true } });
    expect(pod.spec.containers[0].command).toContain("--initial-cluster-state=new");
    expect(restoreCommand(pod.spec.containers[0].command, { claimName: "b", path: "x.db" }, 1_000_000).slice(-2)).toEqual(["--bump-revision=1000000", "--mark-compacted"]);
  });

  it("from S3: an EtcdBackup's object with its sha256, or an object named directly", () => {
    const dest = { s3: { bucket: "snaps", prefix: "etcd", endpoint: "http://minio:9000", forcePathStyle: true, credentialsSecret: "s3-creds" } };
    const b = backup({ destination: dest }, { phase: "Succeeded", location: "s3://snaps/etcd/e-20261204T160000Z-r9.db", sha256: "ab".repeat(32) });
    const src = resolveRestoreSource({ backupName: "b" }, b);
    expect(src).toEqual({ s3: { bucket: "snaps", key: "etcd/e-20261204T160000Z-r9.db", endpoint: "http://minio:9000", forcePathStyle: true, credentialsSecret: "s3-creds", sha256: "ab".repeat(32) } });
    expect(resolveRestoreSource({ source: { s3: { bucket: "snaps", prefix: "/etcd/", key: "x.db", region: "eu-west-1" } } }, undefined)).toEqual({ s3: { bucket: "snaps", key: "etcd/x.db", region: "eu-west-1" } });

    const pod: any = withRestore(memberPod(c, start, mo), src, 1000);
    const init = pod.spec.initContainers[0];
    expect(init.command.slice(3)).toEqual([
      "/restore/e-20261204T160000Z-r9.db",
      "--name=e-1",
      `--initial-cluster=${start.initialCluster}`,
      "--initial-cluster-token=e-u2",
      "--initial-advertise-peer-urls=http://e-1.e.ns.svc.cluster.local:2380",
      "--data-dir=/var/lib/etcd/data",
      "--bump-revision=1000",
      "--mark-compacted",
      "--s3-location=s3://snaps/etcd/e-20261204T160000Z-r9.db",
      "--s3-endpoint=http://minio:9000",
      "--s3-force-path-style",
      `--sha256=${"ab".repeat(32)}`,
    ]);
    expect(init.env.map((e: any) => [e.name, e.valueFrom.secretKeyRef.name])).toEqual([["AWS_ACCESS_KEY_ID", "s3-creds"], ["AWS_SECRET_ACCESS_KEY", "s3-creds"], ["AWS_SESSION_TOKEN", "s3-creds"]]);
    expect(pod.spec.volumes.at(-1)).toEqual({ name: "restore-source", emptyDir: {} });
    expect(init.volumeMounts.at(-1)).toEqual({ name: "restore-source", mountPath: "/restore" });

    const pvc: any = withRestoreAnnotation(memberPvc(c, start), src);
    expect(pvc.metadata.annotations[ANN_RESTORE_FROM]).toBe("s3://snaps/etcd/e-20261204T160000Z-r9.db");
    expect(JSON.stringify(pvc.metadata.annotations)).not.toMatch(/accessKey|secretAccess/);
    expect(recordedRestoreSource(pvc.metadata.annotations)).toEqual(src);
  });

  it("with DNS SRV discovery the restore takes the recorded initial cluster (the member's flags have none)", () => {
    const srv: EtcdCluster = { ...c, spec: { size: 3, bootstrap: { discovery: "DNSSRV" } } };
    const raw: any = memberPod(srv, start, mo);
    expect(raw.spec.containers[0].command.some((a: string) => a.startsWith("--initial-cluster="))).toBe(false);
    expect(() => withRestore(raw, { claimName: "backups", path: "x.db" }, 0)).toThrow(/initial-cluster/);
    const pod: any = withRestore(raw, { claimName: "backups", path: "x.db" }, 0, undefined, start.initialCluster);
    expect(pod.spec.initContainers.map((i: any) => i.name)).toEqual(["restore", "wait-srv"]);
    expect(pod.spec.initContainers[0].command).toContain(`--initial-cluster=${start.initialCluster}`);
  });

  it("the PVC records the snapshot, so a recreated pod restores the same file", () => {
    const pvc: any = withRestoreAnnotation(memberPvc(c, start), { claimName: "backups", path: "etcd/b-1.db" });
    expect(pvc.metadata.annotations[ANN_RESTORE_FROM]).toBe("pvc://backups/etcd/b-1.db");
    expect(pvc.metadata.annotations["etcd.etcd-ts.io/initial-cluster-state"]).toBe("new");
    expect(recordedRestoreSource(pvc.metadata.annotations)).toEqual({ claimName: "backups", path: "etcd/b-1.db" });
    expect(recordedRestoreSource({})).toBeUndefined();
  });
});
