/**
 * The Helm chart, rendered as `helm template` would (test/operator/chart-render.ts) and checked
 * the way `helm lint` does and beyond: Chart.yaml's fields, every document valid YAML with
 * apiVersion, kind and a DNS-1123 name, the operator Deployment's image and flags, RBAC that
 * grants what the operator calls (and no more than it needs), values toggles.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { chartDir, chartRenderMissing, renderChart } from "./chart-render.js";

const missing = chartRenderMissing();
if (missing) console.warn(`chart.test.ts skipped: ${missing}`);

function valuesFile(v: unknown): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "chart-values-"));
  const f = path.join(dir, "values.yaml");
  writeFileSync(f, JSON.stringify(v));
  return f;
}

describe.skipIf(missing !== undefined)("Helm chart charts/etcd-ts-operator", () => {
  it("Chart.yaml has what helm lint requires", () => {
    const chart = parse(readFileSync(path.join(chartDir, "Chart.yaml"), "utf8"));
    expect(chart.apiVersion).toBe("v2");
    expect(chart.name).toBe("etcd-ts-operator");
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(chart.appVersion).toBeTruthy();
    expect(path.basename(chartDir)).toBe(chart.name);
  });

  it("renders with default values: ServiceAccount, RBAC, Deployment, metrics Service; every document well formed", () => {
    const docs = renderChart({ namespace: "ops" });
    const kinds = docs.map((d) => d.doc.kind).sort();
    expect(kinds).toEqual(["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]);
    for (const { source, doc } of docs) {
      expect(doc.apiVersion, source).toBeTruthy();
      expect(doc.metadata?.name, source).toMatch(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/);
      expect(doc.metadata?.labels?.["app.kubernetes.io/managed-by"], source).toBe("Helm");
      if (!doc.kind.startsWith("Cluster")) expect(doc.metadata.namespace, source).toBe("ops");
    }
    const dep = docs.find((d) => d.doc.kind === "Deployment")!.doc;
    const c = dep.spec.template.spec.containers[0];
    expect(c.image).toBe("etcd-ts:0.1.0");
    expect(c.args[0]).toBe("operator");
    expect(c.args).toContain("--leader-elect=true");
    expect(c.env.find((e: any) => e.name === "ETCD_TS_IMAGE").value).toBe("etcd-ts:0.1.0");
    expect(dep.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    expect(dep.spec.selector.matchLabels).toEqual(
      Object.fromEntries(Object.entries(dep.spec.template.metadata.labels).filter(([k]) => k in dep.spec.selector.matchLabels)),
    );
  });

  it("grants the operator what it calls, Leases only in its namespace", () => {
    const docs = renderChart();
    const role = docs.find((d) => d.doc.kind === "ClusterRole")!.doc;
    const can = (group: string, resource: string, verb: string) =>
      role.rules.some((r: any) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    for (const [g, r, verbs] of [
      ["etcd.etcd-ts.io", "etcdclusters", ["get", "list", "watch"]],
      ["etcd.etcd-ts.io", "etcdclusters/status", ["update"]],
      ["", "pods", ["list", "watch", "create", "delete"]],
      ["", "persistentvolumeclaims", ["list", "watch", "create", "delete", "patch"]],
      ["", "services", ["get", "create"]],
      ["", "events", ["create"]],
      ["policy", "poddisruptionbudgets", ["get", "create", "patch"]],
      ["", "secrets", ["get", "create", "update"]],
    ] as const) {
      for (const v of verbs) expect(can(g, r, v), `${g}/${r} ${v}`).toBe(true);
    }
    expect(role.rules.some((r: any) => r.verbs.includes("*") || r.resources.includes("*"))).toBe(false);
    // Secrets: its own TLS Secrets by name only; never listed, watched or deleted (garbage collection deletes them).
    for (const v of ["list", "watch", "delete"]) expect(can("", "secrets", v), `secrets ${v}`).toBe(false);
    expect(role.rules.some((r: any) => r.apiGroups.includes("coordination.k8s.io"))).toBe(false);
    const lease = docs.find((d) => d.doc.kind === "Role")!.doc;
    expect(lease.rules[0]).toMatchObject({ apiGroups: ["coordination.k8s.io"], resources: ["leases"] });
  });

  it("values: an EtcdCluster from values, one watched namespace, no leader election, no RBAC", () => {
    const docs = renderChart({
      valuesFiles: [
        valuesFile({
          cluster: { enabled: true, name: "main", size: 5, storage: { size: "2Gi", storageClassName: "fast" } },
          watchNamespace: "team-a",
          leaderElection: { enabled: false },
          rbac: { create: false },
          image: { repository: "registry.example/etcd-ts", tag: "dev" },
        }),
      ],
    });
    const kinds = docs.map((d) => d.doc.kind).sort();
    expect(kinds).toEqual(["Deployment", "EtcdCluster", "Service", "ServiceAccount"]);
    const ec = docs.find((d) => d.doc.kind === "EtcdCluster")!.doc;
    expect(ec).toMatchObject({ apiVersion: "etcd.etcd-ts.io/v1alpha1", metadata: { name: "main" }, spec: { size: 5, storage: { size: "2Gi", storageClassName: "fast" } } });
    const c = docs.find((d) => d.doc.kind === "Deployment")!.doc.spec.template.spec.containers[0];
    expect(c.image).toBe("registry.example/etcd-ts:dev");
    expect(c.args).toContain("--namespace=team-a");
    expect(c.args).toContain("--leader-elect=false");
  });

  it("metrics: the operator serves them on the metrics port, probes use /healthz and /readyz, a Service carries the scrape annotations", () => {
    const docs = renderChart({ namespace: "ops" });
    const dep = docs.find((d) => d.doc.kind === "Deployment")!.doc;
    const c = dep.spec.template.spec.containers[0];
    expect(c.args).toContain("--metrics-address=:8080");
    expect(c.ports).toEqual([{ name: "metrics", containerPort: 8080, protocol: "TCP" }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    const svc = docs.find((d) => d.doc.kind === "Service")!.doc;
    expect(svc.metadata.name).toBe("etcd-ts-etcd-ts-operator-metrics");
    expect(svc.metadata.annotations).toMatchObject({ "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics" });
    expect(svc.spec.ports[0]).toMatchObject({ name: "metrics", port: 8080, targetPort: "metrics" });
    // The Service selects the operator's pods.
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(dep.spec.template.metadata.labels[k], k).toBe(v);
  });

  it("a ServiceMonitor only when asked for and the cluster serves monitoring.coreos.com/v1", () => {
    const on = valuesFile({ metrics: { port: 9090, serviceMonitor: { enabled: true, interval: "15s", labels: { release: "prom" } } } });
    expect(renderChart({ valuesFiles: [on] }).some((d) => d.doc.kind === "ServiceMonitor")).toBe(false);
    expect(renderChart({ apiVersions: ["monitoring.coreos.com/v1"] }).some((d) => d.doc.kind === "ServiceMonitor")).toBe(false);
    const docs = renderChart({ valuesFiles: [on], apiVersions: ["monitoring.coreos.com/v1"], namespace: "ops" });
    const sm = docs.find((d) => d.doc.kind === "ServiceMonitor")!.doc;
    const svc = docs.find((d) => d.doc.kind === "Service")!.doc;
    expect(sm.apiVersion).toBe("monitoring.coreos.com/v1");
    expect(sm.metadata.labels.release).toBe("prom");
    expect(sm.spec.endpoints).toEqual([{ port: "metrics", path: "/metrics", interval: "15s" }]);
    expect(sm.spec.namespaceSelector).toEqual({ matchNames: ["ops"] });
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels[k], k).toBe(v);
    expect(svc.metadata.annotations["prometheus.io/port"]).toBe("9090");
    const off = valuesFile({ metrics: { service: { enabled: false }, serviceMonitor: { enabled: true } } });
    const none = renderChart({ valuesFiles: [off], apiVersions: ["monitoring.coreos.com/v1"] });
    expect(none.some((d) => d.doc.kind === "ServiceMonitor" || d.doc.kind === "Service")).toBe(false);
  });
});
