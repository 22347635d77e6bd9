/**
 * The operator in its environment (fast mode: a real API server and controller-manager on
 * loopback, etcd-ts as their etcd, pods stay Pending), watched by a real Prometheus:
 *
 *  - Prometheus scrapes the in-process operator's /metrics; its HTTP API answers the per-cluster
 *    gauges (desired 3, ready 0, phase Creating, no leader) and the reconcile counters;
 *  - malformed EtcdClusters the schema lets through are reported in status and events (InvalidSpec;
 *    a pod the API server refuses: the failed step), the operator keeps running, and the passes
 *    they cost stay few (no hot loop);
 *  - watches drop: the API server runs with --min-request-timeout=4, so every watch ends after
 *    4-8 s; after drops, a new cluster is still seen at once (well before the 60 s resync);
 *  - the API server (and controller-manager) go down for longer than the lease and come back on
 *    the same dir and port: the operator stops leading while it cannot renew (metrics still
 *    served), takes its Lease back, and reconciles a cluster created after the restart and a
 *    deleted member pod;
 *  - two replicas on one Lease: exactly one leads and only it reconciles (the other's pass counter
 *    stays 0, and it exports no per-cluster series); when the leader dies without handing the Lease
 *    back, the other leads within the lease duration and reconciles.
 *
 * Skips with a message when the Kubernetes binaries are not built (see test/operator/kube.ts) or
 * Debian's prometheus is not installed.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { startOperator, type RunningOperator } from "../../operator/src/main.js";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";
import { Prometheus } from "../metrics/prometheus.js";
import { chartDir } from "./chart-render.js";
import { apiserverDown, apiserverUp, kubeBin, kubeMissing, kubeTools, kubectl, kubectlJson, waitFor } from "./kube.js";

const missing = kubeMissing() ?? (spawnSync("prometheus", ["--version"]).status === 0 ? undefined : "no prometheus binary (apt-get install prometheus)");
if (missing) console.warn(`kube-robust-fast.test.ts skipped: ${missing}`);

const LEASE_SECONDS = 5;
const cluster = (name: string, spec: Record<string, unknown>) =>
  stringify({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", metadata: { name }, spec });

/** apiserver.sh without blocking this process (the in-process operator keeps running meanwhile). */
async function apiserverScript(args: string[], port: number): Promise<void> {
  await promisify(execFile)("bash", [path.join(kubeTools, "apiserver.sh"), ...args], {
    env: { ...process.env, KUBE_PORT: String(port), KUBE_BIN_DIR: kubeBin, KUBE_AUTHZ: "RBAC" },
    timeout: 120_000,
  });
}

/** The value of one sample of the operator's own exposition (sum over matching label sets). */
async function sample(op: RunningOperator, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://${op.metricsAddress}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

describe.skipIf(missing !== undefined)("operator robustness and metrics on a real API server (fast mode)", () => {
  let etcd: Member;
  let kc = "";
  let dir = "";
  let port = 0;
  let a: RunningOperator | undefined;
  let b: RunningOperator | undefined;
  let prom: Prometheus | undefined;
  const flags = () => ["--kubeconfig", kc, "--lease-namespace", "default", "--lease-name", "robust", "--lease-duration", String(LEASE_SECONDS), "--image", "localhost/etcd-ts:dev", "--log-level", "error", "--metrics-address", "127.0.0.1:0"];
  const pods = async (ns: string, name: string) => (await kubectlJson(kc, ["-n", ns, "get", "pods", "-l", `etcd.etcd-ts.io/cluster=${name}`])).items.length;

  beforeAll(async () => {
    [port] = await freePorts(1);
    etcd = await startMember({ binary: etcdTsBinary(), name: "kube-etcd" });
    dir = mkdtempSync(path.join(os.tmpdir(), "kube-robust-"));
    // Watches end after 4-8 s (the API server's randomised watch timeout): drops all the time.
    process.env.KUBE_EXTRA_ARGS = "--min-request-timeout=4";
    kc = apiserverUp(etcd.clientUrl, dir, port!);
    await kubectl(kc, ["apply", "-f", path.join(chartDir, "crds")]);
    await kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "crd/etcdclusters.etcd.etcd-ts.io", "crd/etcdbackups.etcd.etcd-ts.io"]);
    await kubectl(kc, ["create", "namespace", "r"]);
    a = await startOperator([...flags(), "--identity", "a"]);
  }, 180_000);

  afterAll(async () => {
    await prom?.stop();
    await b?.stop();
    await a?.stop();
    if (dir) apiserverDown(dir, port);
    await etcd?.destroy();
  }, 120_000);

  it("Prometheus scrapes the operator: per-cluster gauges and reconcile counters", async () => {
    prom = await Prometheus.start([a!.metricsAddress!]);
    await kubectl(kc, ["-n", "r", "apply", "-f", "-"], cluster("w", { size: 3, storage: { size: "64Mi" } }));
    const value = async (expr: string) => {
      const r = await prom!.query(expr);
      return r.length === 0 ? undefined : Number(r[0]!.value[1]);
    };
    // Pods stay Pending in fast mode: 3 desired, 0 ready, Creating.
    await waitFor("phase Creating in Prometheus", async () => (await value('etcd_ts_operator_cluster_phase{namespace="r",cluster="w",phase="Creating"}')) === 1, 30_000);
    expect(await value('etcd_ts_operator_cluster_desired_members{namespace="r",cluster="w"}')).toBe(3);
    expect(await value('etcd_ts_operator_cluster_ready_members{namespace="r",cluster="w"}')).toBe(0);
    expect(await value('etcd_ts_operator_cluster_leader_present{namespace="r",cluster="w"}')).toBe(0);
    expect(await value('sum(etcd_ts_operator_cluster_phase{namespace="r",cluster="w"})')).toBe(1);
    expect(await value('etcd_ts_operator_leader_election_leading{lease="robust"}')).toBe(1);
    expect(await value('etcd_ts_operator_reconciles_total{controller="cluster",result="success"}')).toBeGreaterThan(0);
    expect(await value('etcd_ts_operator_reconcile_steps_total{controller="cluster",step="bootstrap"}')).toBeGreaterThanOrEqual(1);
    expect(await value('etcd_ts_operator_reconcile_duration_seconds_count{controller="cluster"}')).toBeGreaterThan(0);
    expect(await value('etcd_ts_operator_workqueue_depth{controller="cluster"}')).toBeDefined();
    expect(await value("up")).toBe(1);
  });

  it("malformed specs the schema accepts: reported in status and events, no crash, no hot loop", async () => {
    await kubectl(kc, ["create", "namespace", "bad"]);
    // A flag the operator sets itself, DNS SRV discovery without peer TLS: InvalidSpec.
    await kubectl(kc, ["-n", "bad", "apply", "-f", "-"], cluster("reserved", { size: 1, options: { "initial-cluster-token": "x" } }));
    await kubectl(kc, ["-n", "bad", "apply", "-f", "-"], cluster("srv", { size: 3, bootstrap: { discovery: "DNSSRV" } }));
    // Resources the schema keeps as they are and the API server refuses in a pod: the step fails.
    await kubectl(kc, ["-n", "bad", "apply", "-f", "-"], cluster("cpu", { size: 1, podTemplate: { resources: { limits: { cpu: "banana" } } } }));
    for (const name of ["reserved", "srv"]) {
      const st = await waitFor(
        `${name}: InvalidSpec`,
        async () => {
          const s = (await kubectlJson(kc, ["-n", "bad", "get", "etcdcluster", name])).status;
          return s?.conditions?.find((c: any) => c.type === "Degraded" && c.reason === "InvalidSpec") ? s : undefined;
        },
        20_000,
      );
      expect(st.phase, name).toBe("Failed");
    }
    const cpu = await waitFor(
      "cpu: the failed step in status",
      async () => {
        const s = (await kubectlJson(kc, ["-n", "bad", "get", "etcdcluster", "cpu"])).status;
        return /failed/.test(s?.lastAction ?? "") ? s : undefined;
      },
      20_000,
    );
    expect(cpu.lastAction).toMatch(/banana|quantit/);
    const events = (await kubectlJson(kc, ["-n", "bad", "get", "events"])).items;
    expect(events.some((e: any) => e.involvedObject.name === "srv" && e.reason === "InvalidSpec" && e.type === "Warning")).toBe(true);
    expect(events.some((e: any) => e.involvedObject.name === "cpu" && e.type === "Warning" && /Failed$/.test(e.reason))).toBe(true);
    expect((await kubectlJson(kc, ["-n", "bad", "get", "pods"])).items).toEqual([]);

    // No hot loop: over 8 s the three clusters cost a handful of passes (the failing one retries
    // every few seconds with back-off; the invalid ones wait for the 30 s steady requeue).
    const before = await sample(a!, "etcd_ts_operator_reconciles_total", { controller: "cluster" });
    await new Promise((r) => setTimeout(r, 8_000));
    const passes = (await sample(a!, "etcd_ts_operator_reconciles_total", { controller: "cluster" })) - before;
    expect(passes).toBeLessThanOrEqual(12);
    expect(a!.controller()).toBeDefined();
    expect(a!.elector?.isLeader).toBe(true);
    await kubectl(kc, ["delete", "namespace", "bad", "--wait=false"]);
  });

  it("watches that drop (server-side timeouts) are reopened and the next change is seen at once", async () => {
    const opened = await sample(a!, "etcd_ts_operator_watch_starts_total", { controller: "cluster" });
    // Each of the cluster controller's three informers has its watch ended by the API server at
    // least once (4-8 s each).
    await waitFor("watches reopened", async () => (await sample(a!, "etcd_ts_operator_watch_starts_total", { controller: "cluster" })) >= opened + 3, 30_000);
    const t0 = Date.now();
    await kubectl(kc, ["-n", "r", "apply", "-f", "-"], cluster("drop", { size: 1, storage: { size: "64Mi" } }));
    await waitFor("the new cluster's pod", async () => (await pods("r", "drop")) === 1, 20_000);
    expect(Date.now() - t0).toBeLessThan(20_000); // the resync is 60 s: this came from a watch
  });

  it("the API server restarts: the operator leads again and reconciles a change made afterwards", async () => {
    await apiserverScript(["down", dir], port);
    // Down for longer than the lease: the operator cannot renew, so it stops leading (and its
    // controllers) rather than act on a Lease it may have lost; it keeps serving its metrics.
    await waitFor("a stops leading", async () => a!.elector?.isLeader === false && a!.controller() === undefined, 4 * LEASE_SECONDS * 1000, 200);
    expect(await sample(a!, "etcd_ts_operator_leader_election_leading")).toBe(0);
    await apiserverScript(["up", etcd.clientUrl, dir], port);
    await waitFor("the Lease held by a again", async () => {
      const l = await kubectlJson(kc, ["-n", "default", "get", "lease", "robust"]);
      return l.spec.holderIdentity === "a" && a!.elector?.isLeader === true && a!.controller() !== undefined;
    }, 40_000);
    await kubectl(kc, ["-n", "r", "apply", "-f", "-"], cluster("after", { size: 1, storage: { size: "64Mi" } }));
    await waitFor("the pod of a cluster created after the restart", async () => (await pods("r", "after")) === 1, 40_000);
    // A change to an existing cluster too: a deleted member pod comes back.
    await kubectl(kc, ["-n", "r", "delete", "pod", "drop-0", "--wait=false"]);
    await waitFor("drop-0 recreated", async () => {
      const p = await kubectlJson(kc, ["-n", "r", "get", "pods", "-l", "etcd.etcd-ts.io/cluster=drop"]);
      return p.items.length === 1 && !p.items[0].metadata.deletionTimestamp;
    }, 40_000);
  });

  it("two replicas on one Lease: one leads and only it reconciles; the other takes over within the lease duration when it dies", async () => {
    b = await startOperator([...flags(), "--identity", "b"]);
    await new Promise((r) => setTimeout(r, LEASE_SECONDS * 1000 + 2_000)); // past a lease duration: b would have taken an expired Lease
    expect((await kubectlJson(kc, ["-n", "default", "get", "lease", "robust"])).spec.holderIdentity).toBe("a");
    expect([a!.elector?.isLeader, b.elector?.isLeader]).toEqual([true, false]);
    expect(b.controller()).toBeUndefined();
    expect(await sample(b, "etcd_ts_operator_reconciles_total")).toBe(0);
    expect(await sample(b, "etcd_ts_operator_leader_election_leading")).toBe(0);
    expect(await sample(b, "etcd_ts_operator_cluster_desired_members")).toBe(0); // no per-cluster series on a standby
    expect(await sample(a!, "etcd_ts_operator_cluster_desired_members", { cluster: "w" })).toBe(3);

    // a dies without handing the Lease back: its renewals and controllers stop.
    a!.elector!.stop();
    await Promise.all([a!.controller()?.stop(), a!.backupController()?.stop()]);
    const died = Date.now();
    await waitFor("b leads", async () => b!.elector?.isLeader === true && b!.controller() !== undefined, 3 * LEASE_SECONDS * 1000, 100);
    const took = Date.now() - died;
    expect(took).toBeLessThan(LEASE_SECONDS * 1000 + 2 * 2_000 + 3_000); // lease duration + renew period, with slack for a loaded machine
    expect((await kubectlJson(kc, ["-n", "default", "get", "lease", "robust"])).spec.holderIdentity).toBe("b");
    await kubectl(kc, ["-n", "r", "apply", "-f", "-"], cluster("takeover", { size: 1, storage: { size: "64Mi" } }));
    await waitFor("b reconciles", async () => (await pods("r", "takeover")) === 1, 30_000);
    expect(await sample(b, "etcd_ts_operator_reconciles_total", { result: "success" })).toBeGreaterThan(0);
  });
});
