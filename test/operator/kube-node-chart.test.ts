/**
 * The operator as the Helm chart deploys it, on a real node (node mode): the chart rendered as
 * `helm template` would, applied with kubectl; the operator runs in its Deployment's pod from the
 * image laid out as the Dockerfile's, passes its readiness probe (/readyz), takes its Lease, makes
 * an EtcdCluster of 3 from `kubectl apply` Available, and its metrics endpoint answers from the
 * pod IP with the cluster's gauges (3 ready, 3 healthy, a leader, phase Running).
 *
 * What the rendered Deployment gets for this node only (the node runs without kube-proxy and
 * without ServiceAccount token admission, see ../shared/tools/kube/README.md): the API server at
 * the node's relay 10.244.0.1:6443 through KUBERNETES_SERVICE_HOST/PORT, and the node's pod token
 * (hostPath) where in-cluster config reads it. `images.sh app` images carry only a Cmd, which a
 * Deployment's args replace, so the container's command is the Dockerfile's ENTRYPOINT
 * (`appCmd`); the args are the chart's (`operator ...`).
 *
 * KUBE_E2E=1 only: `npm run test:kube-e2e -- test/operator/kube-node-chart.test.ts`.
 */
import { writeFileSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { renderChart } from "./chart-render.js";
import { appCmd } from "./image.js";
import { DEV_IMAGE, NodeEnv, nodeSkipReason, waitFor } from "./kube-node-env.js";

const skip = nodeSkipReason("kube-node-chart.test.ts", "the chart-deployed operator");
const NODE_DIR = process.env.K8S_NODE_DIR ?? "/tmp/k8s-node";

describe.skipIf(skip !== undefined)("the chart's operator Deployment on a real node", () => {
  const env = new NodeEnv({ namespace: "opchart", operator: false });
  let manifest = "";

  beforeAll(() => env.up(), 600_000);
  afterAll(async () => {
    if (manifest) await env.kubectl(["delete", "etcdcluster", "c", "--ignore-not-found", "--wait=false"]).catch(() => {});
    if (manifest) await env.kubectl(["delete", "-f", manifest, "--ignore-not-found", "--wait=false"]).catch(() => {});
    await env.down("kube-node-chart");
  }, 600_000);

  it("installs, leads, creates an EtcdCluster of 3 and serves its metrics from the pod IP", async () => {
    const [repository, tag] = DEV_IMAGE.split(":") as [string, string];
    const dir = mkdtempSync(path.join(os.tmpdir(), "chart-node-"));
    const values = path.join(dir, "values.yaml");
    writeFileSync(values, JSON.stringify({ image: { repository, tag, pullPolicy: "Never" }, watchNamespace: env.ns, logLevel: "info" }));
    const docs = renderChart({ valuesFiles: [values], namespace: env.ns, release: "ets" }).map((d) => d.doc);
    const dep = docs.find((d) => d.kind === "Deployment")!;
    const c = dep.spec.template.spec.containers[0];
    expect(c.args[0]).toBe("operator");
    c.command = appCmd("operator").slice(0, -1);
    c.env.push({ name: "KUBERNETES_SERVICE_HOST", value: "10.244.0.1" }, { name: "KUBERNETES_SERVICE_PORT", value: "6443" });
    c.volumeMounts = [{ name: "node-api-token", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true }];
    dep.spec.template.spec.volumes = [{ name: "node-api-token", hostPath: { path: `${NODE_DIR}/pod-sa`, type: "Directory" } }];
    manifest = path.join(dir, "chart.yaml");
    writeFileSync(manifest, docs.map((d) => stringify(d)).join("---\n"));
    await env.kubectl(["apply", "-f", manifest]);

    const pod = await env.timed("operator ready", () =>
      waitFor<any>(
        "the operator pod Ready",
        async () => {
          const l = await env.get("pods -l app.kubernetes.io/name=etcd-ts-operator");
          return l.items.find((p: any) => p.status?.conditions?.some((x: any) => x.type === "Ready" && x.status === "True"));
        },
        120_000,
        1000,
      ),
    );
    const lease = await waitFor<any>("the Lease", async () => (await env.get("lease etcd-ts-operator")).spec, 30_000);
    expect(lease.holderIdentity).toBe(pod.metadata.name);

    await env.applyEtcd("EtcdCluster", "c", { size: 3, imagePullPolicy: "Never", storage: { size: "64Mi" } });
    const st = await env.timed("create 3", () => env.waitMembers("c", ["c-0", "c-1", "c-2"], 300_000));
    expect(st.leader).toMatch(/^c-[012]$/);

    const ip = pod.status.podIP as string;
    expect(ip).toMatch(/^10\.244\.0\./);
    /** The first sample starting with `series` (a name, or a name and its first labels, as printed). */
    const metric = async (series: string) => {
      const text = await (await fetch(`http://${ip}:8080/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      const prefix = series.includes("{") ? series : `${series}{`;
      const line = text.split("\n").find((l) => l.startsWith(prefix));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    // Gauges follow the status the operator writes; give one more pass time to land in its cache.
    await waitFor("ready members 3 in the metrics", async () => (await metric(`etcd_ts_operator_cluster_ready_members{namespace="${env.ns}",cluster="c"`)) === 3, 30_000);
    expect(await metric(`etcd_ts_operator_cluster_healthy_members{namespace="${env.ns}",cluster="c"`)).toBe(3);
    expect(await metric(`etcd_ts_operator_cluster_desired_members{namespace="${env.ns}",cluster="c"`)).toBe(3);
    expect(await metric(`etcd_ts_operator_cluster_leader_present{namespace="${env.ns}",cluster="c"`)).toBe(1);
    expect(await metric(`etcd_ts_operator_cluster_phase{namespace="${env.ns}",cluster="c",phase="Running"`)).toBe(1);
    expect(await metric("etcd_ts_operator_leader_election_leading")).toBe(1);
    expect(await metric('etcd_ts_operator_reconciles_total{controller="cluster",result="success"')).toBeGreaterThan(0);
    expect((await fetch(`http://${ip}:8080/healthz`)).status).toBe(200);
    // The chart's metrics Service selects the operator pod.
    const eps = await env.get("endpoints ets-etcd-ts-operator-metrics");
    expect(eps.subsets?.[0]?.addresses?.map((a: any) => a.ip)).toEqual([ip]);
  });
});
