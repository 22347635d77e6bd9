/**
 * Backup and restore end to end on a real single-node Kubernetes (node mode), with etcd-ts
 * members and backup Jobs from an image laid out as the Dockerfile's: create an EtcdCluster of 3,
 * write keys, take an on-demand EtcdBackup to a PVC (a Job streams the Maintenance snapshot of a
 * healthy member), delete the cluster (its pods and volumes go), create it again under the same
 * name from the backup (each member's init container runs `etcd-ts snapshot restore` with
 * --bump-revision --mark-compacted), and read the keys back with the same revisions, the
 * revision raised and the old revisions compacted. Then a scheduled backup with retention keeps
 * the newest files on the volume.
 *
 * Needs root and the whole node: runs only with KUBE_E2E=1 (node.sh brings the node up and down;
 * only one node can run on a machine). Timings are printed.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { kubectl, kubectlJson, waitFor } from "./kube.js";
import { NodeEnv, etcdctlAt, nodeSkipReason, readKeys } from "./kube-node-env.js";

const run = promisify(execFile);
const skip = nodeSkipReason("kube-backup-node.test.ts", "backup and restore");
const NS = "bk";
const IMAGE = "localhost/etcd-ts:dev";
const BUMP = 1_000_000;
const yaml = (kind: string, name: string, spec: Record<string, unknown>) => stringify({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind, metadata: { name }, spec });

describe.skipIf(skip !== undefined)("backup and restore end to end on a real node", () => {
  const env = new NodeEnv({ namespace: NS, images: [IMAGE] });
  let kc = "";
  const timed = <T>(name: string, fn: () => Promise<T>) => env.timed(name, fn);

  const etcdctl = (ip: string, args: string[]) => etcdctlAt(ip, args);
  const podIP = (name: string) => env.podIP(name);
  const get = (what: string) => env.get(what);
  const waitRunning = (names: string[], timeoutMs: number) => env.waitMembers("e", names, timeoutMs);
  const read = readKeys;

  beforeAll(async () => {
    await env.up();
    kc = env.kc;
  }, 600_000);
  afterAll(() => env.down("kube-backup-node"), 600_000);

  it("backs up to a PVC, deletes the cluster, restores it under the same name with the same revisions", async () => {
    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], stringify({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "backups" },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "256Mi" } } },
    }));
    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], yaml("EtcdCluster", "e", { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" } }));
    await timed("create 3", () => waitRunning(["e-0", "e-1", "e-2"], 240_000));
    const ip0 = await podIP("e-0");
    const keys = ["k1", "k2", "k3"];
    for (const k of keys) await etcdctl(ip0, ["put", k, `${k}-v1`]);
    await etcdctl(ip0, ["put", "k2", "k2-v2"]);
    const before = await read(ip0, keys);
    expect(before.kvs.k2![0]).toBe("k2-v2");

    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], yaml("EtcdBackup", "snap", { clusterName: "e", destination: { pvc: { claimName: "backups", path: "etcd" } } }));
    const b = await timed("backup", () =>
      waitFor<any>("backup finished", async () => {
        const s = (await get("etcdbackup snap")).status;
        return s?.phase === "Succeeded" || s?.phase === "Failed" ? s : undefined;
      }, 180_000, 1000),
    );
    expect(b.phase, b.message).toBe("Succeeded");
    expect(b.revision).toBe(before.header);
    expect(b.size).toBeGreaterThan(0);
    expect(b.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b.location).toMatch(/^pvc:\/\/backups\/etcd\/snap-\d{8}T\d{6}Z\.db$/);

    // Delete the cluster: its pods and volumes (and so its data) go.
    await kubectl(kc, ["-n", NS, "delete", "etcdcluster", "e"]);
    await timed("delete", () =>
      waitFor("e's pods and PVCs gone", async () => (await get("pods,pvc -l etcd.etcd-ts.io/cluster=e")).items.length === 0, 180_000, 1000),
    );

    // The same name, from the backup.
    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], yaml("EtcdCluster", "e", {
      size: 3,
      imagePullPolicy: "Never",
      storage: { size: "64Mi" },
      bootstrap: { restore: { backupName: "snap", bumpRevision: BUMP } },
    }));
    await timed("restore 3", () => waitRunning(["e-0", "e-1", "e-2"], 300_000));
    for (const m of ["e-0", "e-1", "e-2"]) {
      const after = await read(await podIP(m), keys);
      expect(after.kvs, m).toEqual(before.kvs);
      expect(after.header).toBe(before.header + BUMP);
    }
    // Revisions from before the restore are compacted: no watcher sees them with other content.
    const old = await run("etcdctl", ["--endpoints", `http://${await podIP("e-1")}:2379`, "get", "k1", `--rev=${before.header}`], { env: { ...process.env, ETCDCTL_API: "3" } }).catch((e) => e);
    expect(String(old.stderr ?? old.stdout)).toMatch(/required revision has been compacted/);
    // New writes go on above the bumped revision.
    await etcdctl(await podIP("e-2"), ["put", "k4", "v4"]);
    expect((await read(await podIP("e-0"), ["k4"])).kvs.k4![2]).toBe(before.header + BUMP + 1);
    const events = await get("events --field-selector involvedObject.name=snap");
    expect(events.items.map((e: any) => e.reason)).toEqual(expect.arrayContaining(["BackupStarted", "BackupSucceeded"]));
  }, 1_200_000);

  it("a scheduled backup with retention keeps the newest files", async () => {
    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], yaml("EtcdBackup", "often", { clusterName: "e", schedule: "*/15 * * * * *", retention: { maxBackups: 2 }, destination: { pvc: { claimName: "backups", path: "often" } } }));
    const seen = new Set<string>();
    await timed("3 scheduled runs", () =>
      waitFor("three successful scheduled runs", async () => {
        const s = (await get("etcdbackup often")).status;
        if (s?.phase === "Succeeded" && s.location) seen.add(s.location);
        return seen.size >= 3;
      }, 240_000, 1000),
    );
    // The files on the volume (a hostPath PV on this node).
    const pvc = await get("pvc backups");
    const pv = await kubectlJson(kc, ["get", "pv", pvc.spec.volumeName]);
    // A run between its rename and its pruning may show a third file for a moment.
    const files = await waitFor("two files", async () => {
      const f = readdirSync(path.join(pv.spec.hostPath.path, "often")).filter((x) => x.endsWith(".db")).sort();
      return f.length === 2 ? f : undefined;
    }, 10_000, 200);
    const newest = [...seen].sort().at(-1)!.split("/").at(-1)!;
    expect(files.at(-1)! <= newest).toBe(true);
    const jobs = await get("jobs -l etcd.etcd-ts.io/backup=often");
    expect(jobs.items.length).toBeLessThanOrEqual(4);
  }, 600_000);
});
