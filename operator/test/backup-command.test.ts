/**
 * What a backup Job and a restore init container run, on a temporary directory: the snapshot
 * stream saved with its SHA-256 trailer checked (a bad or short stream leaves no file), fallback
 * to the next endpoint, retention, the result in the termination log; the restore mode skipping
 * a data dir that already holds a member. And the cluster reconciler's bootstrap from a backup
 * through the RestoreHook.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { EtcdBackup, EtcdCluster } from "../src/api/v1alpha1.js";
import { backupMain, saveSnapshot, SnapshotIntegrityError, type SnapshotSource } from "../src/backup/backup-command.js";
import { RestoreHook } from "../src/backup/restore-hook.js";
import { restoreMain } from "../src/backup/restore-command.js";
import { Reconciler, type ClusterStore, type EtcdAdmin } from "../src/cluster/reconciler.js";

const tmp = () => mkdtempSync(path.join(os.tmpdir(), "backup-cmd-"));

/** A stream of `db` then its SHA-256 (or `trailer`), cut into chunks of `size` bytes. */
function stream(db: Buffer, size: number, trailer?: Buffer): Uint8Array[] {
  const all = Buffer.concat([db, trailer ?? createHash("sha256").update(db).digest()]);
  const out: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.subarray(i, i + size));
  return out;
}

const source = (byEndpoint: Record<string, Uint8Array[] | Error>): SnapshotSource => ({
  async *snapshot(ep: string) {
    const s = byEndpoint[ep];
    if (s === undefined || s instanceof Error) throw s ?? new Error("connection refused");
    for (const c of s) yield c;
  },
});

const db = Buffer.alloc(4096 * 3, 7);

describe("saving a snapshot", () => {
  it("writes the stream as it came (database + SHA-256 trailer), whatever the chunking", async () => {
    for (const size of [1, 31, 32, 33, 4096, 100_000]) {
      const d = tmp();
      const file = path.join(d, "s.db");
      const r = await saveSnapshot(source({ a: stream(db, size) }), "a", file);
      expect(r.size).toBe(db.length + 32);
      expect(r.sha256).toBe(createHash("sha256").update(db).digest("hex"));
      expect(readFileSync(file).equals(Buffer.concat([db, createHash("sha256").update(db).digest()]))).toBe(true);
      expect(existsSync(`${file}.part`)).toBe(false);
    }
  });

  it("refuses a stream whose trailer does not match, or a short one, and leaves nothing", async () => {
    const d = tmp();
    const file = path.join(d, "s.db");
    await expect(saveSnapshot(source({ a: stream(db, 1000, Buffer.alloc(32)) }), "a", file)).rejects.toThrow(SnapshotIntegrityError);
    await expect(saveSnapshot(source({ a: [Buffer.alloc(40)] }), "a", file)).rejects.toThrow(/too short/);
    expect(readdirSync(d)).toEqual([]);
  });
});

describe("the backup mode", () => {
  it("falls back to the next endpoint, prunes beyond --keep, reports the result", async () => {
    const d = tmp();
    for (const t of ["160000", "160500", "161000"]) writeFileSync(path.join(d, `b-20261204T${t}Z.db`), "old");
    writeFileSync(path.join(d, "other.db"), "x");
    const log = path.join(d, "termination-log");
    const out: string[] = [];
    const code = await backupMain(["--endpoints=a:2379,b:2379", `--dir=${d}`, "--file=b-20261204T161500Z.db", "--prefix=b-", "--location=pvc://backups/b-20261204T161500Z.db", "--keep=2"], {
      source: source({ "a:2379": new Error("connection refused"), "b:2379": stream(db, 4096) }),
      revisionOf: () => 17,
      out: (t) => out.push(t),
      err: () => {},
      terminationLog: log,
    });
    expect(code).toBe(0);
    const result = JSON.parse(readFileSync(log, "utf8"));
    expect(result).toEqual({
      location: "pvc://backups/b-20261204T161500Z.db",
      file: "b-20261204T161500Z.db",
      size: db.length + 32,
      sha256: createHash("sha256").update(db).digest("hex"),
      revision: 17,
      pruned: ["b-20261204T160000Z.db", "b-20261204T160500Z.db"],
    });
    expect(JSON.parse(out.join(""))).toEqual(result);
    expect(readdirSync(d).sort()).toEqual(["b-20261204T161000Z.db", "b-20261204T161500Z.db", "other.db", "termination-log"]);
  });

  it("makes the directory inside the volume", async () => {
    const d = path.join(tmp(), "etcd", "nightly");
    const deps = { source: source({ a: stream(db, 4096) }), revisionOf: () => 5, out: () => {}, err: () => {}, terminationLog: path.join(os.tmpdir(), "unused-termination-log") };
    expect(await backupMain(["--endpoints=a", `--dir=${d}`, "--file=b-20261204T161500Z.db", "--prefix=b-", "--location=pvc://p/etcd/nightly/b-20261204T161500Z.db"], deps)).toBe(0);
    expect(readdirSync(d)).toEqual(["b-20261204T161500Z.db"]);
  });

  it("fails (exit 1) when no endpoint gives a good snapshot, saying why; 2 on bad flags", async () => {
    const d = tmp();
    const log = path.join(d, "termination-log");
    const deps = { source: source({ "b:2379": stream(db, 4096, Buffer.alloc(32, 1)) }), revisionOf: () => 1, out: () => {}, err: () => {}, terminationLog: log };
    expect(await backupMain(["--endpoints=a:2379,b:2379", `--dir=${d}`, "--file=x.db", "--prefix=b-", "--location=pvc://p/x.db"], deps)).toBe(1);
    expect(readFileSync(log, "utf8")).toMatch(/a:2379: connection refused; b:2379: .*SHA-256 mismatch/);
    expect(await backupMain(["--endpoints=a:2379"], deps)).toBe(2);
    expect(await backupMain(["--bogus"], deps)).toBe(2);
  });
});

describe("the restore mode", () => {
  it("restores into an empty data dir; leaves a dir that already holds a member alone", async () => {
    const d = tmp();
    const calls: string[][] = [];
    const deps = { runOfflineCommand: async (argv: string[]) => (calls.push(argv), 0), out: () => {} };
    const args = ["/restore/x.db", "--name=e-0", `--data-dir=${d}/data`];
    expect(await restoreMain(args, deps)).toBe(0);
    expect(calls).toEqual([["snapshot", "restore", ...args]]);
    mkdirSync(path.join(d, "data", "member"), { recursive: true });
    expect(await restoreMain(args, deps)).toBe(0);
    expect(calls.length).toBe(1);
    // The tool's exit code is the init container's.
    expect(await restoreMain(["/restore/x.db", `--data-dir=${d}/other`], { runOfflineCommand: async () => 128, out: () => {} })).toBe(128);
  });
});

describe("bootstrap from a backup (the reconciler with the RestoreHook)", () => {
  type Obj = Record<string, any>;
  const created: Obj[] = [];
  const events: string[] = [];
  const store: ClusterStore = {
    listPods: async () => [],
    listVolumes: async () => [],
    create: async (o) => void created.push(o),
    apply: async () => {},
    delete: async () => {},
    annotate: async () => {},
    writeStatus: async () => {},
    event: async (_c, type, reason, message) => void events.push(`${type} ${reason}: ${message}`),
    pdbApiVersion: async () => "policy/v1",
  };
  const etcd = {} as EtcdAdmin;
  const log = { info: () => {}, warn: () => {} };
  const cluster: EtcdCluster = {
    apiVersion: "etcd.etcd-ts.io/v1alpha1",
    kind: "EtcdCluster",
    metadata: { name: "e", namespace: "ns", uid: "u" },
    spec: { size: 3, bootstrap: { restore: { backupName: "b", bumpRevision: 1000 } } },
  };
  let backup: EtcdBackup | undefined;
  const reconciler = new Reconciler(
    { clusterDomain: "cluster.local", defaultImage: "etcd-ts:1", serverCommand: ["etcd-ts"], requeueSteadyMs: 1, requeueWaitMs: 1, requeueActionMs: 1 },
    { store, etcd, log, now: () => new Date(0), newMembers: new RestoreHook({}, { backups: { getBackup: async () => backup } }) },
  );

  it("waits (a Warning event) while the backup has no snapshot, then creates every member restoring it", async () => {
    await reconciler.reconcile(cluster);
    expect(created).toEqual([]);
    expect(events.at(-1)).toMatch(/^Warning BootstrapFailed: .*EtcdBackup b not found/);
    backup = { apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdBackup", metadata: { name: "b", namespace: "ns" }, spec: { clusterName: "e", destination: { pvc: { claimName: "backups" } } }, status: { phase: "Succeeded", location: "pvc://backups/b-1.db" } };
    await reconciler.reconcile(cluster);
    const pods = created.filter((o) => o.kind === "Pod");
    const pvcs = created.filter((o) => o.kind === "PersistentVolumeClaim");
    expect(pods.map((p) => p.metadata.name)).toEqual(["e-0", "e-1", "e-2"]);
    for (const p of pods) {
      expect(p.spec.initContainers[0].command.slice(0, 2)).toEqual(["node", "/app/operator/bin/entrypoint.js"]);
      expect(p.spec.initContainers[0].command).toContain(`--name=${p.metadata.name}`);
      expect(p.spec.initContainers[0].command.slice(-2)).toEqual(["--bump-revision=1000", "--mark-compacted"]);
    }
    expect(pvcs.every((v) => v.metadata.annotations["etcd.etcd-ts.io/restore-from"] === "pvc://backups/b-1.db")).toBe(true);
  });
});
