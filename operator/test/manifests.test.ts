import { describe, expect, it } from "vitest";
import type { EtcdCluster } from "../src/api/v1alpha1.js";
import { clientService, headlessService, memberArgs, memberPod, memberPvc, podDisruptionBudget, podSpecHash } from "../src/cluster/manifests.js";
import { ANN_INITIAL_CLUSTER, ANN_INITIAL_STATE, ANN_MEMBER_ID, ANN_SPEC_HASH } from "../src/cluster/naming.js";

const o = { clusterDomain: "cluster.local", defaultImage: "etcd-ts:1", serverCommand: ["node", "/app/server/bin/etcd-ts.js"] };
const c = (spec: Partial<EtcdCluster["spec"]> = {}): EtcdCluster => ({
  apiVersion: "etcd.etcd-ts.io/v1alpha1",
  kind: "EtcdCluster",
  metadata: { name: "e", namespace: "ns", uid: "u1" },
  spec: { size: 3, ...spec },
});
const start = { member: "e-1", initialCluster: "e-0=http://a:2380,e-1=http://b:2380", state: "new" as const };

describe("manifests", () => {
  it("a member pod: per-member hostname under the headless Service, etcd flags, owner, probe, PVC", () => {
    const pod: any = memberPod(c({ options: { "snapshot-count": "100" } }), start, o);
    expect(pod.metadata).toMatchObject({ name: "e-1", namespace: "ns", labels: { "etcd.etcd-ts.io/member": "e-1", "etcd.etcd-ts.io/cluster": "e" } });
    expect(pod.metadata.ownerReferences).toEqual([{ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", name: "e", uid: "u1", controller: true, blockOwnerDeletion: true }]);
    expect(pod.spec).toMatchObject({ hostname: "e-1", subdomain: "e" });
    const ct = pod.spec.containers[0];
    expect(ct.image).toBe("etcd-ts:1");
    expect(ct.command).toEqual([
      "node",
      "/app/server/bin/etcd-ts.js",
      "--name=e-1",
      "--data-dir=/var/lib/etcd/data",
      "--listen-peer-urls=http://0.0.0.0:2380",
      "--listen-client-urls=http://0.0.0.0:2379",
      "--advertise-client-urls=http://e-1.e.ns.svc.cluster.local:2379",
      "--initial-advertise-peer-urls=http://e-1.e.ns.svc.cluster.local:2380",
      "--initial-cluster-token=e-u1",
      "--initial-cluster-state=new",
      "--initial-cluster=e-0=http://a:2380,e-1=http://b:2380",
      "--snapshot-count=100",
    ]);
    expect(pod.spec.volumes).toEqual([{ name: "data", persistentVolumeClaim: { claimName: "data-e-1" } }]);
    expect(pod.spec.initContainers).toBeUndefined();
  });

  it("memory storage: an emptyDir in memory, the start records on the pod", () => {
    const pod: any = memberPod(c({ storage: { medium: "Memory" } }), { ...start, memberId: "ab" }, o);
    expect(pod.spec.volumes).toEqual([{ name: "data", emptyDir: { medium: "Memory" } }]);
    expect(pod.metadata.annotations).toMatchObject({ [ANN_MEMBER_ID]: "ab", [ANN_INITIAL_STATE]: "new" });
  });

  it("DNS SRV bootstrap: --discovery-srv and an init container waiting for every member's record; joiners use --initial-cluster", () => {
    const pod: any = memberPod(c({ bootstrap: { discovery: "DNSSRV" } }), start, o);
    expect(pod.spec.containers[0].command).toContain("--discovery-srv=e.ns.svc.cluster.local");
    expect(pod.spec.containers[0].command.some((a: string) => a.startsWith("--initial-cluster="))).toBe(false);
    expect(pod.spec.initContainers[0].command).toEqual(["node", "/app/operator/bin/entrypoint.js", "wait-srv", "_etcd-server._tcp.e.ns.svc.cluster.local", "3"]);
    const joiner = memberArgs(c({ bootstrap: { discovery: "DNSSRV" } }), { ...start, state: "existing" }, o);
    expect(joiner).toContain("--initial-cluster=e-0=http://a:2380,e-1=http://b:2380");
    expect(joiner.some((a) => a.startsWith("--discovery-srv"))).toBe(false);
  });

  it("a member PVC records how the member first started", () => {
    const pvc: any = memberPvc(c({ storage: { size: "2Gi", storageClassName: "fast" } }), { ...start, memberId: "ab" });
    expect(pvc.metadata.name).toBe("data-e-1");
    expect(pvc.metadata.annotations).toEqual({ [ANN_INITIAL_CLUSTER]: start.initialCluster, [ANN_INITIAL_STATE]: "new", [ANN_MEMBER_ID]: "ab" });
    expect(pvc.spec).toEqual({ accessModes: ["ReadWriteOnce"], storageClassName: "fast", resources: { requests: { storage: "2Gi" } } });
  });

  it("Services and the PDB", () => {
    const h: any = headlessService(c());
    expect(h.spec).toMatchObject({ clusterIP: "None", publishNotReadyAddresses: true });
    expect(h.spec.ports.map((p: any) => p.name)).toContain("etcd-server");
    expect((clientService(c()) as any).metadata.name).toBe("e-client");
    expect(podDisruptionBudget(c(), 2, "policy/v1beta1")).toMatchObject({ apiVersion: "policy/v1beta1", spec: { minAvailable: 2 } });
  });

  it("the spec hash: on every pod, changed by what shapes the pod, not by size, storage or backups, whatever the key order", () => {
    const h = podSpecHash(c(), o);
    expect(h).toMatch(/^[0-9a-f]{16}$/);
    expect((memberPod(c(), start, o) as any).metadata.annotations[ANN_SPEC_HASH]).toBe(h);
    expect(podSpecHash(c({ size: 5, storage: { size: "2Gi" }, backup: { schedule: "* * * * *" } }), o)).toBe(h);
    expect(podSpecHash(c({ image: "etcd-ts:1" }), o)).toBe(h); // the default image, spelled out
    for (const spec of [{ image: "etcd-ts:2" }, { options: { "snapshot-count": "5" } }, { podTemplate: { nodeSelector: { a: "b" } } }, { imagePullPolicy: "Never" as const }]) {
      expect(podSpecHash(c(spec), o), JSON.stringify(spec)).not.toBe(h);
    }
    expect(podSpecHash(c(), { ...o, defaultImage: "etcd-ts:2" })).not.toBe(h);
    expect(podSpecHash(c(), o, "cert-fingerprint")).not.toBe(h);
    const a = podSpecHash(c({ options: { "a-b": "1", "c-d": "2" } }), o);
    expect(podSpecHash(c({ options: { "c-d": "2", "a-b": "1" } }), o)).toBe(a);
  });
});
