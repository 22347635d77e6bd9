/**
 * The operator's metrics and its HTTP endpoint: pass counters and histogram from the observer
 * calls, per-cluster and per-backup gauges computed from the view when scraped (deleted objects'
 * series go), the leader gauge, the endpoint's /metrics, /healthz, /readyz; `promtool check
 * metrics` (Debian's prometheus package) finds nothing in our families when it is installed.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import type { EtcdBackup, EtcdCluster } from "../src/api/v1alpha1.js";
import { MetricsServer, parseAddress } from "../src/metrics/metrics-server.js";
import { OperatorMetrics, type MetricsView } from "../src/metrics/operator-metrics.js";

const cluster = (name: string, size: number, status: EtcdCluster["status"]): EtcdCluster =>
  ({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", metadata: { name, namespace: "ns" }, spec: { size }, status }) as EtcdCluster;

function setup() {
  const state = { leading: true, clusters: [] as EtcdCluster[], backups: [] as EtcdBackup[], depth: 3 };
  const view: MetricsView = {
    lease: "op",
    leading: () => state.leading,
    queues: () => [{ controller: "cluster", depth: state.depth }],
    clusters: () => state.clusters,
    backups: () => state.backups,
  };
  const metrics = new OperatorMetrics({ defaultMetrics: false }, { view, now: () => new Date("2026-01-01T00:10:00Z") });
  return { state, metrics };
}

/** Sample lines of a family: `name{labels} value`. */
function samples(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe("OperatorMetrics", () => {
  it("counts passes by result and step, times them, counts retries", async () => {
    const { metrics } = setup();
    metrics.passed("cluster", { ok: true, step: "bootstrap", seconds: 0.02 });
    metrics.passed("cluster", { ok: true, step: "wait", seconds: 0.2 });
    metrics.passed("cluster", { ok: false, seconds: 1.5 });
    metrics.retried("cluster");
    const { body, contentType } = await metrics.scrape();
    expect(contentType).toMatch(/^text\/plain; version=0.0.4/);
    expect(samples(body, "etcd_ts_operator_reconciles_total")).toEqual(
      expect.arrayContaining([
        'etcd_ts_operator_reconciles_total{controller="cluster",result="success"} 2',
        'etcd_ts_operator_reconciles_total{controller="cluster",result="error"} 1',
        'etcd_ts_operator_reconciles_total{controller="backup",result="success"} 0',
      ]),
    );
    expect(body).toContain('etcd_ts_operator_reconcile_steps_total{controller="cluster",step="bootstrap"} 1');
    expect(body).toContain('etcd_ts_operator_reconcile_errors_total{controller="cluster"} 1');
    expect(body).toContain('etcd_ts_operator_workqueue_retries_total{controller="cluster"} 1');
    expect(body).toContain('etcd_ts_operator_reconcile_duration_seconds_count{controller="cluster"} 3');
    expect(body).toContain('etcd_ts_operator_reconcile_duration_seconds_bucket{le="0.025",controller="cluster"} 1');
    expect(body).toContain('etcd_ts_operator_workqueue_depth{controller="cluster"} 3');
    expect(body).toContain('etcd_ts_operator_leader_election_leading{lease="op"} 1');
  });

  it("per-cluster gauges from status; phase as a labelled gauge; series of deleted clusters go", async () => {
    const { state, metrics } = setup();
    state.clusters = [
      cluster("a", 3, {
        phase: "Running",
        readyMembers: 2,
        leader: "a-0",
        members: [
          { name: "a-0", healthy: true },
          { name: "a-1", healthy: true },
          { name: "a-2", healthy: false },
        ],
      }),
      cluster("b", 5, undefined),
    ];
    let { body } = await metrics.scrape();
    expect(body).toContain('etcd_ts_operator_cluster_members{namespace="ns",cluster="a"} 3');
    expect(body).toContain('etcd_ts_operator_cluster_healthy_members{namespace="ns",cluster="a"} 2');
    expect(body).toContain('etcd_ts_operator_cluster_ready_members{namespace="ns",cluster="a"} 2');
    expect(body).toContain('etcd_ts_operator_cluster_desired_members{namespace="ns",cluster="a"} 3');
    expect(body).toContain('etcd_ts_operator_cluster_leader_present{namespace="ns",cluster="a"} 1');
    expect(body).toContain('etcd_ts_operator_cluster_desired_members{namespace="ns",cluster="b"} 5');
    expect(body).toContain('etcd_ts_operator_cluster_leader_present{namespace="ns",cluster="b"} 0');
    const phases = samples(body, "etcd_ts_operator_cluster_phase").filter((l) => l.includes('cluster="a"'));
    expect(phases).toHaveLength(8);
    expect(phases.filter((l) => l.endsWith(" 1"))).toEqual(['etcd_ts_operator_cluster_phase{namespace="ns",cluster="a",phase="Running"} 1']);
    state.clusters = [state.clusters[1]!];
    state.leading = false;
    ({ body } = await metrics.scrape());
    expect(body).not.toContain('cluster="a"');
    expect(body).toContain('etcd_ts_operator_leader_election_leading{lease="op"} 0');
  });

  it("backup age, timestamp and size from the latest successful run; none before one", async () => {
    const { state, metrics } = setup();
    const backup = (name: string, status: EtcdBackup["status"]) =>
      ({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdBackup", metadata: { name, namespace: "ns" }, spec: { clusterName: "a", destination: {} }, status }) as unknown as EtcdBackup;
    state.backups = [
      backup("nightly", { phase: "Running", lastSuccessTime: "2026-01-01T00:00:00Z", size: 4096 }),
      backup("once", { phase: "Succeeded", completionTime: "2026-01-01T00:09:00Z", size: 10 }),
      backup("new", { phase: "Running" }),
    ];
    const { body } = await metrics.scrape();
    expect(body).toContain('etcd_ts_operator_backup_last_success_age_seconds{namespace="ns",backup="nightly",cluster="a"} 600');
    expect(body).toContain('etcd_ts_operator_backup_last_success_timestamp_seconds{namespace="ns",backup="nightly",cluster="a"} 1767225600');
    expect(body).toContain('etcd_ts_operator_backup_size_bytes{namespace="ns",backup="nightly",cluster="a"} 4096');
    expect(body).toContain('etcd_ts_operator_backup_last_success_age_seconds{namespace="ns",backup="once",cluster="a"} 60');
    expect(body).not.toContain('backup="new"');
  });

  it.skipIf(spawnSync("promtool", ["--version"]).status !== 0)("promtool check metrics finds nothing to say about our families", async () => {
    const { state, metrics } = setup();
    state.clusters = [cluster("a", 3, { phase: "Running" })];
    metrics.passed("cluster", { ok: true, step: "steady", seconds: 0.01 });
    const r = spawnSync("promtool", ["check", "metrics"], { input: (await metrics.scrape()).body, encoding: "utf8" });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe("");
    expect(r.status).toBe(0);
  });
});

describe("MetricsServer", () => {
  it("parses addresses", () => {
    expect(parseAddress(":8080")).toEqual({ host: undefined, port: 8080 });
    expect(parseAddress("8080")).toEqual({ host: undefined, port: 8080 });
    expect(parseAddress("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseAddress("[::1]:9090")).toEqual({ host: "::1", port: 9090 });
    expect(() => parseAddress("localhost")).toThrow(/not an address/);
    expect(() => parseAddress(":70000")).toThrow(/not an address/);
  });

  it("serves /metrics, /healthz, /readyz (503 until ready), 404 elsewhere", async () => {
    const { metrics } = setup();
    const server = new MetricsServer({ address: "127.0.0.1:0" }, { metrics, log: { warn() {} } });
    const addr = await server.listen();
    try {
      const get = (p: string) => fetch(`http://${addr}${p}`);
      expect((await get("/healthz")).status).toBe(200);
      expect((await get("/readyz")).status).toBe(503);
      server.setReady(true);
      expect((await get("/readyz")).status).toBe(200);
      const m = await get("/metrics");
      expect(m.status).toBe(200);
      expect(await m.text()).toContain("etcd_ts_operator_reconciles_total");
      expect((await get("/nope")).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
