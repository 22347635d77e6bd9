/**
 * Backup to S3 and restore from S3 end to end on a real single-node Kubernetes (node mode): moto's
 * S3 server runs on the host at the node bridge's address (10.244.0.1, which pods reach) with
 * authentication on; the credentials are a Secret. Create an EtcdCluster of 3, write keys, take
 * an on-demand EtcdBackup to the bucket (a Job snapshots a healthy member and uploads it with its
 * sha256 as metadata), delete the cluster (its pods and volumes go), create it again under the
 * same name from the backup (each member's init container downloads the object, checks its
 * sha256, runs `etcd-ts snapshot restore --bump-revision --mark-compacted`), and read the keys back
 * with the same create/mod revisions, the revision raised and the old revisions compacted (a
 * watcher never sees revisions go backwards). Then a second cluster restores the same object
 * with DNS SRV discovery (and so peer TLS).
 *
 * Needs root and the whole node: runs only with KUBE_E2E=1, through `npm run test:kube-e2e --
 * test/operator/kube-backup-s3-node.test.ts`. Timings are printed.
 */
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3SnapshotStore } from "../../operator/src/backup/s3-snapshots.js";
import { Moto, motoMissing, type MotoCredentials } from "../harness/moto.js";
import { waitFor } from "./kube.js";
import { NodeEnv, etcdctlAt, nodeSkipReason, readKeys } from "./kube-node-env.js";

const run = promisify(execFile);
const skip = nodeSkipReason("kube-backup-s3-node.test.ts", "S3 backup and restore") ?? motoMissing();
const NS = "bks3";
const BUMP = 1_000_000;
/** The host's address on the node bridge: pods reach it. */
const HOST = "10.244.0.1";

describe.skipIf(skip !== undefined)("S3 backup and restore end to end on a real node", () => {
  const env = new NodeEnv({ namespace: NS });
  let moto: Moto;
  let creds: MotoCredentials;
  const timed = <T>(name: string, fn: () => Promise<T>) => env.timed(name, fn);
  const read = readKeys;

  beforeAll(async () => {
    await env.up();
    moto = await Moto.start(HOST);
    moto.createBucket("snaps");
    creds = await moto.credentials();
    await env.apply({ apiVersion: "v1", kind: "Secret", metadata: { name: "s3-creds" }, stringData: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey } });
  }, 600_000);
  afterAll(async () => {
    await moto?.stop();
    await env.down("kube-backup-s3-node");
  }, 600_000);

  const keys = ["k1", "k2", "k3"];
  let before: Awaited<ReturnType<typeof read>>;
  let location = "";

  it("backs up to S3, deletes the cluster, restores it under the same name from S3 with the revisions bumped", async () => {
    await env.applyEtcd("EtcdCluster", "e", { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" } });
    await timed("create 3", () => env.waitMembers("e", ["e-0", "e-1", "e-2"], 240_000));
    const ip0 = await env.podIP("e-0");
    for (const k of keys) await etcdctlAt(ip0, ["put", k, `${k}-v1`]);
    await etcdctlAt(ip0, ["put", "k2", "k2-v2"]);
    before = await read(ip0, keys);

    const dest = { s3: { bucket: "snaps", prefix: "prod", endpoint: moto.endpoint, forcePathStyle: true, credentialsSecret: "s3-creds" } };
    await env.applyEtcd("EtcdBackup", "snap", { clusterName: "e", destination: dest });
    const b = await timed("backup", () =>
      waitFor<any>("backup finished", async () => {
        const s = (await env.get("etcdbackup snap")).status;
        return s?.phase === "Succeeded" || s?.phase === "Failed" ? s : undefined;
      }, 180_000, 1000),
    );
    expect(b.phase, b.message).toBe("Succeeded");
    expect(b.revision).toBe(before.header);
    expect(b.location).toMatch(new RegExp(`^s3://snaps/prod/e-\\d{8}T\\d{6}Z-r${before.header}\\.db$`));
    location = b.location;
    // The object: its metadata and its bytes agree with the status.
    const store = new S3SnapshotStore({ bucket: "snaps", endpoint: moto.endpoint, forcePathStyle: true });
    process.env.AWS_ACCESS_KEY_ID = creds.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = creds.secretAccessKey;
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "s3-node-")), "snap.db");
    const meta = await store.download(b.location.slice("s3://snaps/".length), file);
    const body = readFileSync(file);
    expect(meta).toMatchObject({ sha256: b.sha256, revision: String(b.revision), cluster: "e", backup: "snap" });
    expect(body.length).toBe(b.size);
    expect(createHash("sha256").update(body.subarray(0, body.length - 32)).digest("hex")).toBe(b.sha256);
    // The Job's spec names the Secret, never its values.
    const jobs = await env.get("jobs -l etcd.etcd-ts.io/backup=snap");
    expect(JSON.stringify(jobs)).not.toContain(creds.secretAccessKey);

    await env.kubectl(["delete", "etcdcluster", "e"]);
    await timed("delete", () => waitFor("e's pods and PVCs gone", async () => (await env.get("pods,pvc -l etcd.etcd-ts.io/cluster=e")).items.length === 0, 180_000, 1000));

    await env.applyEtcd("EtcdCluster", "e", { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" }, bootstrap: { restore: { backupName: "snap", bumpRevision: BUMP } } });
    await timed("restore 3", () => env.waitMembers("e", ["e-0", "e-1", "e-2"], 300_000));
    for (const m of ["e-0", "e-1", "e-2"]) {
      const after = await read(await env.podIP(m), keys);
      expect(after.kvs, m).toEqual(before.kvs);
      expect(after.header).toBe(before.header + BUMP);
    }
    const pvcs = await env.get("pvc -l etcd.etcd-ts.io/cluster=e");
    expect(pvcs.items.map((v: any) => v.metadata.annotations["etcd.etcd-ts.io/restore-from"])).toEqual(Array(3).fill(location));
    const old = await run("etcdctl", ["--endpoints", `http://${await env.podIP("e-1")}:2379`, "get", "k1", `--rev=${before.header}`], { env: { ...process.env, ETCDCTL_API: "3" } }).catch((e) => e);
    expect(String(old.stderr ?? old.stdout)).toMatch(/required revision has been compacted/);
    await etcdctlAt(await env.podIP("e-2"), ["put", "k4", "v4"]);
    expect((await read(await env.podIP("e-0"), ["k4"])).kvs.k4![2]).toBe(before.header + BUMP + 1);
  }, 1_200_000);

  it("restores the same object into a cluster bootstrapped by DNS SRV discovery", async () => {
    expect(location).not.toBe("");
    const key = location.slice("s3://snaps/".length);
    await env.applyEtcd("EtcdCluster", "d", {
      size: 3,
      imagePullPolicy: "Never",
      storage: { size: "64Mi" },
      // DNS SRV bootstrap needs peer TLS (etcd 3.4 discovers only _etcd-server-ssl records).
      tls: { peer: { operatorIssued: true } },
      bootstrap: { discovery: "DNSSRV", restore: { source: { s3: { bucket: "snaps", key, endpoint: moto.endpoint, forcePathStyle: true, credentialsSecret: "s3-creds" } }, bumpRevision: BUMP } },
    });
    try {
      await timed("restore 3 (DNS SRV)", () => env.waitMembers("d", ["d-0", "d-1", "d-2"], 300_000));
    } catch (err) {
      // What the pods went through, for the report.
      console.log("cluster d status:", JSON.stringify((await env.get("etcdcluster d")).status, null, 1));
      console.log(await env.kubectl(["get", "pods", "-o", "wide"]).catch((e) => String(e)));
      for (const p of ["d-0", "d-1", "d-2"]) {
        for (const c of ["restore", "wait-srv", "etcd"]) {
          const logs = await env.kubectl(["logs", p, "-c", c, "--tail=25"]).catch((e) => String(e));
          console.log(`--- ${p}/${c}\n${logs.slice(-3000)}`);
        }
      }
      console.log((await env.kubectl(["get", "events", "--sort-by=.lastTimestamp"]).catch((e) => String(e))).slice(-4000));
      throw err;
    }
    for (const m of ["d-0", "d-1", "d-2"]) {
      const after = await read(await env.podIP(m), keys);
      expect(after.kvs, m).toEqual(before.kvs);
      expect(after.header).toBe(before.header + BUMP);
    }
  }, 900_000);
});
