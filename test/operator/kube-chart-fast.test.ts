/**
 * The Helm chart's life cycle against a real kube-apiserver (fast mode, etcd-ts as its etcd),
 * done as helm 3 does it, since no helm binary can be had on these machines (no Debian package;
 * building it needs Go modules from the network): the chart is rendered by test/operator/
 * chart-render.ts (Go's text/template with sprig and helm's functions) and applied with kubectl.
 *
 * - install: crds/ first (helm installs them once and never upgrades or deletes them), then the
 *   templates, every object labelled and annotated with the release as helm marks what it owns;
 * - upgrade with other values: changed objects updated in place, objects the new values no longer
 *   render deleted (helm's three-way diff; here `kubectl apply --prune` on the release label), an
 *   EtcdCluster the chart installed kept when unchanged;
 * - uninstall: every object of the release gone, CRDs and user EtcdClusters left, as helm leaves
 *   them.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";
import { chartDir, chartRenderMissing, renderChart } from "./chart-render.js";
import { apiserverDown, apiserverUp, kubeMissing, kubectl, kubectlJson, kubectlResult } from "./kube.js";

const missing = kubeMissing() ?? chartRenderMissing();
if (missing) console.warn(`kube-chart-fast.test.ts skipped: ${missing}`);

const NS = "etcd-ts-system";
const RELEASE = "rel";
const INSTANCE = `app.kubernetes.io/instance=${RELEASE}`;
/** The kinds a release of this chart can hold, for `kubectl apply --prune`. */
const PRUNE_KINDS = [
  "/v1/ServiceAccount",
  "/v1/Service",
  "/v1/ConfigMap",
  "apps/v1/Deployment",
  "rbac.authorization.k8s.io/v1/ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
  "rbac.authorization.k8s.io/v1/Role",
  "rbac.authorization.k8s.io/v1/RoleBinding",
  "etcd.etcd-ts.io/v1alpha1/EtcdCluster",
];

describe.skipIf(missing !== undefined)("the Helm chart's install, upgrade and uninstall on a real API server", () => {
  let etcd: Member;
  let kc = "";
  let dir = "";
  let port = 0;

  beforeAll(async () => {
    [port] = await freePorts(1);
    etcd = await startMember({ binary: etcdTsBinary(), name: "chart-etcd" });
    dir = mkdtempSync(path.join(os.tmpdir(), "kube-chart-"));
    kc = apiserverUp(etcd.clientUrl, dir, port!);
    await kubectl(kc, ["create", "namespace", NS]);
  }, 180_000);

  afterAll(async () => {
    if (dir) apiserverDown(dir, port);
    await etcd?.destroy();
  }, 120_000);

  /** Renders the release with `values`, marks its objects as helm does, writes one file. */
  const release = (values: Record<string, unknown>, revision: number): string => {
    const vf = path.join(dir, `values-${revision}.yaml`);
    writeFileSync(vf, stringify(values));
    const docs = renderChart({ valuesFiles: [vf], namespace: NS, release: RELEASE }).map((d) => d.doc as any);
    for (const d of docs) {
      d.metadata.labels = { ...d.metadata.labels, "app.kubernetes.io/managed-by": "Helm" };
      d.metadata.annotations = { ...d.metadata.annotations, "meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NS };
      expect(d.metadata.labels["app.kubernetes.io/instance"], `${d.kind}/${d.metadata.name} carries the release label`).toBe(RELEASE);
    }
    const f = path.join(dir, `release-${revision}.yaml`);
    writeFileSync(f, docs.map((d) => stringify(d)).join("---\n"));
    return f;
  };
  const owned = async () => {
    const kinds = "deployments,services,serviceaccounts,configmaps,roles,rolebindings,clusterroles,clusterrolebindings,etcdclusters";
    const l = await kubectlJson(kc, ["get", kinds, "-A", "-l", INSTANCE]);
    return (l.items as any[]).map((i) => `${i.kind}/${i.metadata.name}`).sort();
  };

  it("installs, upgrades with other values, and uninstalls", async () => {
    // install
    await kubectl(kc, ["apply", "-f", path.join(chartDir, "crds")]);
    await kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "crd/etcdclusters.etcd.etcd-ts.io", "crd/etcdbackups.etcd.etcd-ts.io"]);
    const v1 = { image: { repository: "localhost/etcd-ts", tag: "v1" }, cluster: { enabled: true, name: "main", size: 3 } };
    const r1 = await kubectlResult(kc, ["apply", "-n", NS, "-f", release(v1, 1)]);
    expect(r1.ok, r1.out).toBe(true);
    const installed = await owned();
    expect(installed).toContain("Deployment/rel-etcd-ts-operator");
    expect(installed).toContain("EtcdCluster/main");
    expect(installed.some((n) => n.startsWith("ClusterRole/"))).toBe(true);
    const dep1 = await kubectlJson(kc, ["-n", NS, "get", "deployment", "rel-etcd-ts-operator"]);
    expect(dep1.spec.template.spec.containers[0].image).toBe("localhost/etcd-ts:v1");
    expect(dep1.metadata.annotations["meta.helm.sh/release-name"]).toBe(RELEASE);

    // upgrade: a new image and two replicas; the chart's EtcdCluster no longer rendered
    const v2 = { image: { repository: "localhost/etcd-ts", tag: "v2" }, replicaCount: 2, cluster: { enabled: false } };
    const r2 = await kubectlResult(kc, ["apply", "-n", NS, "--prune", "-l", INSTANCE, ...PRUNE_KINDS.flatMap((k) => ["--prune-whitelist", k]), "-f", release(v2, 2)]);
    expect(r2.ok, r2.out).toBe(true);
    const dep2 = await kubectlJson(kc, ["-n", NS, "get", "deployment", "rel-etcd-ts-operator"]);
    expect(dep2.spec.template.spec.containers[0].image).toBe("localhost/etcd-ts:v2");
    expect(dep2.spec.replicas).toBe(2);
    expect(dep2.metadata.generation).toBeGreaterThan(dep1.metadata.generation);
    const upgraded = await owned();
    expect(upgraded).not.toContain("EtcdCluster/main");
    expect(upgraded.filter((n) => !n.startsWith("EtcdCluster/"))).toEqual(installed.filter((n) => !n.startsWith("EtcdCluster/")));

    // A user's own EtcdCluster, not the chart's.
    await kubectl(kc, ["-n", NS, "apply", "-f", "-"], stringify({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", metadata: { name: "mine" }, spec: { size: 1 } }));

    // uninstall: every object of the release, nothing else
    const r3 = await kubectlResult(kc, ["delete", "-n", NS, "--wait=true", "-f", path.join(dir, "release-2.yaml")]);
    expect(r3.ok, r3.out).toBe(true);
    expect(await owned()).toEqual([]);
    expect((await kubectlResult(kc, ["get", "crd", "etcdclusters.etcd.etcd-ts.io"])).ok).toBe(true);
    expect((await kubectlJson(kc, ["-n", NS, "get", "etcdcluster", "mine"])).metadata.name).toBe("mine");
  }, 180_000);
});
