/**
 * Backups and restores against a real Kubernetes API server (fast mode: pods never run), with
 * etcd-ts as its etcd:
 * - the backup controller (in process) waits for its cluster, then creates the backup Job (owned
 *   by the EtcdBackup, the PVC mounted, the cluster's image in backup mode) and reports it in
 *   status and events; when the Job's pod reports success (its status written here as a kubelet
 *   would, with the result in the termination message) the Job controller completes the Job and
 *   the EtcdBackup is Succeeded with the revision, size, hash and location; a scheduled backup
 *   runs one Job at a time and records its slots;
 * - the operator bootstraps an EtcdCluster with spec.bootstrap.restore: every member pod gets the
 *   restore init container, every PVC records the snapshot; a restore from a backup without a
 *   snapshot creates nothing and says why in a Warning event.
 * Skips with a message when the Kubernetes binaries are not built (see test/operator/kube.ts).
 */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { BackupReconciler } from "../../operator/src/backup/backup-reconciler.js";
import { BackupController } from "../../operator/src/kube/backup-controller.js";
import { KubeBackupStore } from "../../operator/src/kube/kube-backup-store.js";
import { jsonLogger } from "../../operator/src/logger.js";
import { startOperator, type RunningOperator } from "../../operator/src/main.js";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";
import { chartDir } from "./chart-render.js";
import { apiserverDown, apiserverUp, kubeMissing, kubectl, kubectlJson, waitFor } from "./kube.js";

const missing = kubeMissing();
if (missing) console.warn(`kube-backup-fast.test.ts skipped: ${missing}`);

const G = { group: "etcd.etcd-ts.io", version: "v1alpha1" };
const obj = (kind: string, name: string, spec: Record<string, unknown>) => stringify({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind, metadata: { name }, spec });

describe.skipIf(missing !== undefined)("backups and restores on a real API server (fast mode)", () => {
  let etcd: Member;
  let kc = "";
  let dir = "";
  let port = 0;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let backups: BackupController | undefined;
  let op: RunningOperator | undefined;

  const writeStatus = async (ns: string, plural: string, name: string, status: unknown) => {
    const cur = (await custom.getNamespacedCustomObject({ ...G, namespace: ns, plural, name })) as any;
    await custom.replaceNamespacedCustomObjectStatus({ ...G, namespace: ns, plural, name, body: { ...cur, status } });
  };
  const get = (ns: string, what: string) => kubectlJson(kc, ["-n", ns, "get", ...what.split(" ")]);

  beforeAll(async () => {
    [port] = await freePorts(1);
    etcd = await startMember({ binary: etcdTsBinary(), name: "kube-etcd" });
    dir = mkdtempSync(path.join(os.tmpdir(), "kube-backup-"));
    kc = apiserverUp(etcd.clientUrl, dir, port!);
    const k = new KubeConfig();
    k.loadFromFile(kc);
    custom = k.makeApiClient(CustomObjectsApi);
    core = k.makeApiClient(CoreV1Api);
    await kubectl(kc, ["apply", "-f", path.join(chartDir, "crds")]);
    await kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "crd/etcdclusters.etcd.etcd-ts.io", "crd/etcdbackups.etcd.etcd-ts.io"]);
    const log = jsonLogger({ level: "warn" });
    const store = new KubeBackupStore({ component: "etcd-ts-operator" }, { kubeConfig: k });
    backups = new BackupController(
      { namespace: "bk", workers: 2, resyncMs: 60_000, maxQueuedKeys: 100, errorBackoffMs: 500 },
      { kubeConfig: k, store, log, reconciler: new BackupReconciler({ clusterDomain: "cluster.local", defaultImage: "localhost/etcd-ts:dev", requeueIdleMs: 60_000 }, { store, log, now: () => new Date() }) },
    );
  }, 180_000);

  afterAll(async () => {
    await backups?.stop();
    await op?.stop();
    if (dir) apiserverDown(dir, port);
    await etcd?.destroy();
  }, 120_000);

  it("an on-demand backup: waits for its cluster, runs a Job, reports the Job's result", async () => {
    await kubectl(kc, ["create", "namespace", "bk"]);
    await backups!.start();
    await kubectl(kc, ["-n", "bk", "apply", "-f", "-"], obj("EtcdBackup", "once", { clusterName: "e", destination: { pvc: { claimName: "backups", path: "etcd" } } }));
    const pending = await waitFor("Pending", async () => (await get("bk", "etcdbackup once")).status?.phase === "Pending" && (await get("bk", "etcdbackup once")).status, 15_000);
    expect(pending.message).toMatch(/EtcdCluster e not found/);

    // The cluster (no cluster controller runs here: its status is written as the operator would).
    await kubectl(kc, ["-n", "bk", "apply", "-f", "-"], obj("EtcdCluster", "e", { size: 3, image: "localhost/etcd-ts:7", imagePullPolicy: "Never" }));
    await writeStatus("bk", "etcdclusters", "e", {
      phase: "Running",
      conditions: [{ type: "Available", status: "True" }],
      members: [
        { name: "e-0", healthy: true, role: "leader" },
        { name: "e-1", healthy: true, role: "follower" },
        { name: "e-2", healthy: true, role: "follower" },
      ],
    });
    const job = await waitFor("the Job", () => get("bk", "job once-snapshot"), 15_000);
    expect(job.metadata.ownerReferences[0]).toMatchObject({ kind: "EtcdBackup", name: "once", controller: true });
    const ct = job.spec.template.spec.containers[0];
    expect(ct.image).toBe("localhost/etcd-ts:7");
    expect(ct.command.slice(0, 4)).toEqual(["node", "/app/operator/bin/entrypoint.js", "backup", "--endpoints=e-1.e.bk.svc.cluster.local:2379,e-2.e.bk.svc.cluster.local:2379,e-0.e.bk.svc.cluster.local:2379"]);
    expect(job.spec.template.spec.volumes).toEqual([{ name: "backup", persistentVolumeClaim: { claimName: "backups" } }]);
    await waitFor("Running", async () => (await get("bk", "etcdbackup once")).status?.phase === "Running", 10_000);

    // The Job controller's pod reports success, as a kubelet would, with the result.
    const pod = await waitFor<any>("the Job's pod", async () => (await get("bk", "pods -l job-name=once-snapshot")).items[0], 20_000);
    const result = { location: "pvc://backups/etcd/once-x.db", file: "once-x.db", size: 24608, sha256: "cd".repeat(32), revision: 77 };
    const now = new Date();
    await core.replaceNamespacedPodStatus({
      name: pod.metadata.name,
      namespace: "bk",
      body: {
        ...pod,
        status: {
          phase: "Succeeded",
          containerStatuses: [
            { name: "backup", image: ct.image, imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 0, reason: "Completed", message: JSON.stringify(result), startedAt: now, finishedAt: now } } },
          ],
        },
      },
    });
    const done = await waitFor("Succeeded", async () => {
      const s = (await get("bk", "etcdbackup once")).status;
      return s?.phase === "Succeeded" ? s : undefined;
    }, 30_000);
    expect(done).toMatchObject({ revision: 77, size: 24608, sha256: result.sha256, location: result.location, job: "once-snapshot" });
    const events = await get("bk", "events --field-selector involvedObject.name=once");
    const reasons = events.items.map((e: any) => e.reason);
    expect(reasons).toContain("BackupStarted");
    expect(reasons).toContain("BackupSucceeded");
    const printed = await kubectl(kc, ["-n", "bk", "get", "etcdbackup", "once"]);
    expect(printed).toMatch(/once\s+e\s+(<none>\s+)?Succeeded\s+77/);
  });

  it("a scheduled backup runs one Job at a time and records its slots", async () => {
    await kubectl(kc, ["-n", "bk", "apply", "-f", "-"], obj("EtcdBackup", "every", { clusterName: "e", schedule: "*/2 * * * * *", retention: { maxBackups: 2 }, destination: { pvc: { claimName: "backups" } } }));
    const s = await waitFor("a scheduled run", async () => {
      const st = (await get("bk", "etcdbackup every")).status;
      return st?.lastScheduleTime && st.phase === "Running" ? st : undefined;
    }, 20_000);
    expect(Date.parse(s.nextScheduleTime)).toBeGreaterThan(Date.parse(s.lastScheduleTime));
    await new Promise((r) => setTimeout(r, 5000));
    const jobs = await get("bk", "jobs -l etcd.etcd-ts.io/backup=every");
    expect(jobs.items.length).toBe(1);
    expect(jobs.items[0].metadata.annotations["etcd.etcd-ts.io/scheduled-time"]).toBe(s.lastScheduleTime);
    expect(jobs.items[0].spec.template.spec.containers[0].command).toContain("--keep=2");
  });

  it("a backup to S3: a Job with scratch space and the credentials as secretKeyRefs, no secret values in its spec", async () => {
    const secretValue = "s3cr3t-value-not-in-any-spec";
    await kubectl(kc, ["-n", "bk", "create", "secret", "generic", "s3-creds", "--from-literal=accessKeyId=AKIAEXAMPLE", `--from-literal=secretAccessKey=${secretValue}`]);
    await kubectl(kc, ["-n", "bk", "apply", "-f", "-"], obj("EtcdBackup", "tos3", {
      clusterName: "e",
      retention: { maxBackups: 3 },
      destination: { s3: { bucket: "snaps", prefix: "etcd/e", endpoint: "http://10.244.0.1:9000", forcePathStyle: true, credentialsSecret: "s3-creds" } },
    }));
    const job = await waitFor<any>("the S3 Job", () => get("bk", "job tos3-snapshot"), 15_000);
    const ct = job.spec.template.spec.containers[0];
    expect(ct.command).toEqual(expect.arrayContaining(["--s3-bucket=snaps", "--s3-prefix=etcd/e", "--s3-endpoint=http://10.244.0.1:9000", "--s3-force-path-style", "--cluster=e", "--backup=tos3", "--keep=3"]));
    expect(ct.env).toEqual([
      { name: "AWS_ACCESS_KEY_ID", valueFrom: { secretKeyRef: { name: "s3-creds", key: "accessKeyId" } } },
      { name: "AWS_SECRET_ACCESS_KEY", valueFrom: { secretKeyRef: { name: "s3-creds", key: "secretAccessKey" } } },
      { name: "AWS_SESSION_TOKEN", valueFrom: { secretKeyRef: { name: "s3-creds", key: "sessionToken", optional: true } } },
    ]);
    expect(job.spec.template.spec.volumes).toEqual([{ name: "backup", emptyDir: {} }]);
    expect(JSON.stringify(job)).not.toContain(secretValue);
    expect(JSON.stringify(job)).not.toContain("AKIAEXAMPLE");
    // A failed run lands in status and events.
    const pod = await waitFor<any>("the Job's pod", async () => (await get("bk", "pods -l job-name=tos3-snapshot")).items[0], 20_000);
    const now = new Date();
    const why = "snapshot failed: upload to s3://snaps/etcd/e/e-x-r5.db: InvalidAccessKeyId (HTTP 403): nope (check the credentialsSecret: keys accessKeyId, secretAccessKey, optional sessionToken)";
    await core.replaceNamespacedPodStatus({
      name: pod.metadata.name,
      namespace: "bk",
      body: { ...pod, status: { phase: "Failed", containerStatuses: [{ name: "backup", image: ct.image, imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 1, reason: "Error", message: why, startedAt: now, finishedAt: now } } }] } },
    });
    // backoffLimit 2: the Job controller retries; fail each retry's pod as well.
    const failed = await waitFor("Failed", async () => {
      const s = (await get("bk", "etcdbackup tos3")).status;
      if (s?.phase === "Failed") return s;
      for (const p of (await get("bk", "pods -l job-name=tos3-snapshot")).items.filter((x: any) => x.status?.phase !== "Failed")) {
        await core
          .replaceNamespacedPodStatus({ name: p.metadata.name, namespace: "bk", body: { ...p, status: { phase: "Failed", containerStatuses: [{ name: "backup", image: ct.image, imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 1, reason: "Error", message: why, startedAt: now, finishedAt: new Date() } } }] } } })
          .catch(() => {});
      }
      return undefined;
    }, 60_000, 1000);
    expect(failed.message).toMatch(/InvalidAccessKeyId/);
    const events = await get("bk", "events --field-selector involvedObject.name=tos3");
    expect(events.items.find((e: any) => e.reason === "BackupFailed")?.message).toMatch(/InvalidAccessKeyId/);
  }, 120_000);

  it("a cluster bootstrapped from a backup: restore init containers, the snapshot recorded; no snapshot, no members", async () => {
    await kubectl(kc, ["create", "namespace", "rs"]);
    await kubectl(kc, ["-n", "rs", "apply", "-f", "-"], obj("EtcdBackup", "b", { clusterName: "gone", destination: { pvc: { claimName: "backups" } } }));
    await writeStatus("rs", "etcdbackups", "b", { phase: "Succeeded", location: "pvc://backups/b-20261204T160000Z.db", revision: 9 });
    await kubectl(kc, ["-n", "rs", "apply", "-f", "-"], obj("EtcdBackup", "empty", { clusterName: "gone", destination: { pvc: { claimName: "backups" } } }));
    op = await startOperator(["--kubeconfig", kc, "--namespace", "rs", "--leader-elect", "false", "--image", "localhost/etcd-ts:dev", "--log-level", "warn", "--metrics-address", "127.0.0.1:0"]);
    await kubectl(kc, ["-n", "rs", "apply", "-f", "-"], obj("EtcdCluster", "r", { size: 3, storage: { size: "64Mi" }, bootstrap: { restore: { backupName: "b", bumpRevision: 1000000 } } }));
    await kubectl(kc, ["-n", "rs", "apply", "-f", "-"], obj("EtcdCluster", "w", { size: 1, bootstrap: { restore: { backupName: "empty" } } }));
    const pods = await waitFor("three restoring pods", async () => {
      const l = await get("rs", "pods -l etcd.etcd-ts.io/cluster=r");
      return l.items.length === 3 ? l.items : undefined;
    }, 30_000);
    for (const p of pods) {
      const init = p.spec.initContainers[0];
      expect(init.name).toBe("restore");
      expect(init.command).toEqual([
        "node",
        "/app/operator/bin/entrypoint.js",
        "restore",
        "/restore/b-20261204T160000Z.db",
        `--name=${p.metadata.name}`,
        "--initial-cluster=" + [0, 1, 2].map((i) => `r-${i}=http://r-${i}.r.rs.svc.cluster.local:2380`).join(","),
        `--initial-cluster-token=r-${(await get("rs", "etcdcluster r")).metadata.uid}`,
        `--initial-advertise-peer-urls=http://${p.metadata.name}.r.rs.svc.cluster.local:2380`,
        "--data-dir=/var/lib/etcd/data",
        "--bump-revision=1000000",
        "--mark-compacted",
      ]);
      expect(p.spec.volumes.find((v: any) => v.name === "restore-source").persistentVolumeClaim).toEqual({ claimName: "backups", readOnly: true });
    }
    const pvcs = await get("rs", "pvc -l etcd.etcd-ts.io/cluster=r");
    expect(pvcs.items.map((v: any) => v.metadata.annotations["etcd.etcd-ts.io/restore-from"])).toEqual(Array(3).fill("pvc://backups/b-20261204T160000Z.db"));

    const ev = await waitFor("a BootstrapFailed event", async () => {
      const l = await get("rs", "events --field-selector involvedObject.name=w");
      return l.items.find((e: any) => e.reason === "BootstrapFailed");
    }, 20_000);
    expect(ev.message).toMatch(/EtcdBackup empty has no successful snapshot yet/);
    expect((await get("rs", "pods -l etcd.etcd-ts.io/cluster=w")).items).toEqual([]);
    // The backup the cluster was restored from keeps its snapshot in status.
    expect((await get("rs", "etcdbackup b")).status).toMatchObject({ phase: "Succeeded", location: "pvc://backups/b-20261204T160000Z.db" });
  });

  it("spec.backup: the operator creates, updates and deletes the owned EtcdBackup <cluster>-scheduled", async () => {
    const policy = { schedule: "0 */6 * * *", retention: { maxBackups: 4 }, destination: { s3: { bucket: "snaps", prefix: "p", credentialsSecret: "s3-creds" } } };
    await kubectl(kc, ["-n", "rs", "apply", "-f", "-"], obj("EtcdCluster", "p", { size: 1, backup: policy }));
    const cl = await get("rs", "etcdcluster p");
    const b = await waitFor<any>("p-scheduled", () => get("rs", "etcdbackup p-scheduled").catch(() => undefined), 20_000);
    expect(b.metadata.ownerReferences[0]).toMatchObject({ kind: "EtcdCluster", name: "p", uid: cl.metadata.uid, controller: true });
    expect(b.spec).toEqual({ clusterName: "p", ...policy });
    await waitFor("status.backup", async () => (await get("rs", "etcdcluster p")).status?.backup?.name === "p-scheduled", 20_000);

    await kubectl(kc, ["-n", "rs", "patch", "etcdcluster", "p", "--type=merge", "-p", JSON.stringify({ spec: { backup: { retention: { maxBackups: 2 } } } })]);
    await waitFor("the retention followed", async () => (await get("rs", "etcdbackup p-scheduled")).spec.retention?.maxBackups === 2, 30_000);

    await kubectl(kc, ["-n", "rs", "patch", "etcdcluster", "p", "--type=json", "-p", JSON.stringify([{ op: "remove", path: "/spec/backup" }])]);
    await waitFor("p-scheduled deleted", async () => (await get("rs", "etcdbackups")).items.every((x: any) => x.metadata.name !== "p-scheduled"), 30_000);
    const reasons = (await get("rs", "events --field-selector involvedObject.name=p")).items.map((e: any) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(["BackupPolicyCreated", "BackupPolicyUpdated", "BackupPolicyRemoved"]));
  }, 120_000);
});
