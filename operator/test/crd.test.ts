/**
 * The CRDs in charts/etcd-ts-operator/crds/ are structural (what apiextensions.k8s.io/v1 demands:
 * every node typed, no $ref, free-form parts marked), and carry every field the operator's
 * TypeScript types name. The API server's own validation of them runs in
 * test/operator/kube-fast.test.ts when the Kubernetes binaries are built.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../charts/etcd-ts-operator/crds");

type Schema = {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  $ref?: string;
};

function crd(file: string) {
  const doc = parse(readFileSync(path.join(dir, file), "utf8"));
  const v = doc.spec.versions[0];
  return { doc, version: v, schema: v.schema.openAPIV3Schema as Schema };
}

function structuralProblems(s: Schema, at: string): string[] {
  const out: string[] = [];
  if (s.$ref !== undefined) out.push(`${at}: $ref`);
  if (s.type === undefined && s["x-kubernetes-preserve-unknown-fields"] !== true) out.push(`${at}: no type`);
  for (const [k, v] of Object.entries(s.properties ?? {})) out.push(...structuralProblems(v, `${at}.${k}`));
  if (s.items) out.push(...structuralProblems(s.items, `${at}[]`));
  if (typeof s.additionalProperties === "object") out.push(...structuralProblems(s.additionalProperties, `${at}{}`));
  return out;
}

function has(s: Schema, dotted: string): boolean {
  let cur: Schema | undefined = s;
  for (const part of dotted.split(".")) {
    cur = part === "[]" ? cur?.items : cur?.properties?.[part];
    if (cur === undefined) return false;
  }
  return true;
}

describe("CRDs", () => {
  for (const [file, kind, plural] of [
    ["etcdclusters.etcd.etcd-ts.io.yaml", "EtcdCluster", "etcdclusters"],
    ["etcdbackups.etcd.etcd-ts.io.yaml", "EtcdBackup", "etcdbackups"],
  ] as const) {
    it(`${kind}: apiextensions.k8s.io/v1, one group, v1alpha1 served and stored, status subresource, structural`, () => {
      const { doc, version, schema } = crd(file);
      expect(doc.apiVersion).toBe("apiextensions.k8s.io/v1");
      expect(doc.metadata.name).toBe(`${plural}.etcd.etcd-ts.io`);
      expect(doc.spec.group).toBe("etcd.etcd-ts.io");
      expect(doc.spec.names.kind).toBe(kind);
      expect(version).toMatchObject({ name: "v1alpha1", served: true, storage: true, subresources: { status: {} } });
      expect(version.additionalPrinterColumns.length).toBeGreaterThan(3);
      expect(structuralProblems(schema, "")).toEqual([]);
    });
  }

  it("EtcdCluster carries every field the operator's types name", () => {
    const { schema } = crd("etcdclusters.etcd.etcd-ts.io.yaml");
    const fields = [
      "spec.size",
      "spec.image",
      "spec.version",
      "spec.imagePullPolicy",
      "spec.paused",
      "spec.storage.medium",
      "spec.storage.size",
      "spec.storage.storageClassName",
      "spec.bootstrap.discovery",
      "spec.bootstrap.restore.backupName",
      "spec.bootstrap.restore.source.pvc.claimName",
      "spec.bootstrap.restore.source.s3.bucket",
      "spec.bootstrap.restore.source.s3.key",
      "spec.bootstrap.restore.source.s3.prefix",
      "spec.bootstrap.restore.source.s3.forcePathStyle",
      "spec.bootstrap.restore.source.s3.credentialsSecret",
      "spec.bootstrap.restore.bumpRevision",
      "spec.tls.client.operatorIssued",
      "spec.tls.client.secretName",
      "spec.tls.peer.secretName",
      "spec.auth.enabled",
      "spec.auth.rootPasswordSecret",
      "spec.options",
      "spec.podTemplate.metadata.labels",
      "spec.podTemplate.resources",
      "spec.podTemplate.nodeSelector",
      "spec.podTemplate.tolerations",
      "spec.podTemplate.affinity",
      "spec.podTemplate.env",
      "spec.backup.schedule",
      "spec.backup.retention.maxBackups",
      "spec.backup.destination.s3.endpoint",
      "spec.backup.destination.s3.region",
      "spec.backup.destination.s3.credentialsSecret",
      "spec.backup.destination.pvc.claimName",
      "spec.defrag.schedule",
      "spec.defrag.dbSizeThreshold",
      "spec.defrag.fragmentationPercent",
      "spec.recovery.quorumLoss.enabled",
      "spec.recovery.quorumLoss.afterSeconds",
      "spec.recovery.quorumLoss.source",
      "spec.recovery.quorumLoss.backupName",
      "spec.recovery.quorumLoss.bumpRevision",
      "status.quorumLoss.since",
      "status.quorumLoss.phase",
      "status.quorumLoss.lostMembers",
      "status.quorumLoss.member",
      "status.quorumLoss.backupName",
      "status.phase",
      "status.observedGeneration",
      "status.backup.name",
      "status.backup.phase",
      "status.backup.lastBackupTime",
      "status.backup.revision",
      "status.backup.location",
      "status.backup.message",
      "status.leader",
      "status.readyMembers",
      "status.conditions.[].reason",
      "status.members.[].name",
      "status.members.[].id",
      "status.members.[].role",
      "status.members.[].healthy",
      "status.members.[].revision",
      "status.members.[].dbSize",
      "status.members.[].dbSizeInUse",
      "status.members.[].lastDefragTime",
      "status.authEnabled",
      "status.defrag.lastScheduleTime",
      "status.defrag.nospaceSince",
      "status.tls.caNotAfter",
      "status.tls.caRotationPhase",
    ];
    expect(fields.filter((f) => !has(schema, f))).toEqual([]);
  });

  it("EtcdBackup names its cluster and destination", () => {
    const { schema } = crd("etcdbackups.etcd.etcd-ts.io.yaml");
    for (const f of ["spec.clusterName", "spec.schedule", "spec.retention.maxBackups", "spec.destination.pvc.claimName", "spec.destination.s3.bucket", "status.sha256", "status.revision", "status.size", "status.location", "status.job", "status.lastScheduleTime", "status.nextScheduleTime"]) {
      expect(has(schema, f), f).toBe(true);
    }
  });
});
