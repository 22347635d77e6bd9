/**
 * spec.backup kept as an owned EtcdBackup `<cluster>-scheduled`: created, its spec made to follow
 * the policy, deleted when the policy goes; someone else's EtcdBackup of that name is left alone;
 * the cluster's status.backup mirrors the latest snapshot.
 */
import { describe, expect, it } from "vitest";
import type { EtcdBackup, EtcdBackupSpec, EtcdCluster } from "../src/api/v1alpha1.js";
import { BackupPolicy, clusterBackupStatus, desiredScheduledBackup, type BackupPolicyStore } from "../src/backup/backup-policy.js";

const cluster = (backup?: EtcdCluster["spec"]["backup"]): EtcdCluster => ({
  apiVersion: "etcd.etcd-ts.io/v1alpha1",
  kind: "EtcdCluster",
  metadata: { name: "e", namespace: "ns", uid: "cu" },
  spec: { size: 3, ...(backup ? { backup } : {}) },
});

class FakeStore implements BackupPolicyStore {
  readonly objects = new Map<string, EtcdBackup>();
  readonly calls: string[] = [];
  async getBackup(_ns: string, name: string) {
    return this.objects.get(name);
  }
  async createBackup(b: EtcdBackup) {
    this.calls.push(`create ${b.metadata.name}`);
    this.objects.set(b.metadata.name, structuredClone(b));
  }
  async replaceBackupSpec(existing: EtcdBackup, spec: EtcdBackupSpec) {
    this.calls.push(`replace ${existing.metadata.name}`);
    this.objects.set(existing.metadata.name, { ...existing, spec });
  }
  async deleteBackup(_ns: string, name: string) {
    this.calls.push(`delete ${name}`);
    this.objects.delete(name);
  }
}

const policy = { schedule: "0 */6 * * *", retention: { maxBackups: 4 }, destination: { s3: { bucket: "snaps", prefix: "etcd", credentialsSecret: "s3" } } };

describe("the backup policy", () => {
  it("the owned EtcdBackup it asks for", () => {
    const b = desiredScheduledBackup(cluster(policy))!;
    expect(b.metadata.name).toBe("e-scheduled");
    expect((b.metadata as any).ownerReferences[0]).toMatchObject({ kind: "EtcdCluster", name: "e", uid: "cu", controller: true });
    expect(b.spec).toEqual({ clusterName: "e", ...policy });
    expect(desiredScheduledBackup(cluster())).toBeUndefined();
    expect(desiredScheduledBackup(cluster({ schedule: "* * * * *" }))).toBeUndefined();
  });

  it("creates, updates, keeps, deletes", async () => {
    const store = new FakeStore();
    const p = new BackupPolicy({}, { store });
    expect((await p.sync(cluster(policy))).action?.reason).toBe("BackupPolicyCreated");
    expect((await p.sync(cluster(policy))).action).toBeUndefined();
    const changed = { ...policy, retention: { maxBackups: 2 } };
    expect((await p.sync(cluster(changed))).action?.reason).toBe("BackupPolicyUpdated");
    expect(store.objects.get("e-scheduled")!.spec.retention).toEqual({ maxBackups: 2 });
    const r = await p.sync(cluster());
    expect(r).toMatchObject({ status: undefined, action: { reason: "BackupPolicyRemoved" } });
    expect(store.objects.size).toBe(0);
    expect(store.calls).toEqual(["create e-scheduled", "replace e-scheduled", "delete e-scheduled"]);
  });

  it("leaves someone else's EtcdBackup of that name alone", async () => {
    const store = new FakeStore();
    const foreign = { ...desiredScheduledBackup(cluster(policy))!, metadata: { name: "e-scheduled", namespace: "ns" } };
    store.objects.set("e-scheduled", foreign);
    const p = new BackupPolicy({}, { store });
    const r = await p.sync(cluster({ ...policy, schedule: "@daily" }));
    expect(r.action).toMatchObject({ type: "Warning", reason: "BackupPolicyConflict" });
    expect(r.status?.message).toMatch(/not owned by this cluster/);
    await p.sync(cluster());
    expect(store.calls).toEqual([]);
  });

  it("status.backup: the latest success, kept through a failed run", () => {
    const b = desiredScheduledBackup(cluster(policy))!;
    const ok = clusterBackupStatus({ ...b, status: { phase: "Succeeded", completionTime: "2026-12-04T18:00:05Z", revision: 42, location: "s3://snaps/etcd/e-x-r42.db" } }, undefined);
    expect(ok).toEqual({ name: "e-scheduled", phase: "Succeeded", lastBackupTime: "2026-12-04T18:00:05Z", revision: 42, location: "s3://snaps/etcd/e-x-r42.db" });
    const failed = clusterBackupStatus({ ...b, status: { phase: "Failed", completionTime: "2026-12-04T19:00:05Z", revision: 42, location: "s3://snaps/etcd/e-x-r42.db", message: "AccessDenied" } }, ok);
    expect(failed).toEqual({ ...ok, phase: "Failed", message: "AccessDenied" });
  });
});
