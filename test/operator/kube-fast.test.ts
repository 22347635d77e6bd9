/**
 * The operator against a real Kubernetes API server (fast mode: API server and controller-manager
 * on loopback, pods stay Pending), with etcd-ts as the API server's etcd: the CRDs install and the
 * API server enforces their schemas; the rendered Helm chart applies (its metrics Service too);
 * the operator (in process, leader-elected on a Lease; two replicas, restarts and watch drops are
 * kube-robust-fast.test.ts's) creates a new cluster's objects with owner references, the
 * policy/v1beta1 PodDisruptionBudget, status and events; a spec the schema cannot refuse is
 * reported in status; deleting the EtcdCluster deletes its objects; a TLS cluster gets its CA,
 * member and operator-client certificate Secrets (right names, chain, SANs), https flags and
 * Secret volumes, and a missing user Secret is reported; its status reports the CA and its
 * rotation phase; a cluster with spec.auth gets a generated root password Secret it owns (a named
 * one is the user's and never made).
 * Skips with a message when the Kubernetes binaries are not built (see test/operator/kube.ts).
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { startOperator, type RunningOperator } from "../../operator/src/main.js";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";
import { chartDir, chartRenderMissing, renderChart } from "./chart-render.js";
import { apiserverDown, apiserverUp, kubeMissing, kubectl, kubectlJson, kubectlResult, waitFor } from "./kube.js";

const missing = kubeMissing();
if (missing) console.warn(`kube-fast.test.ts skipped: ${missing}`);

const cluster = (name: string, spec: Record<string, unknown>) =>
  stringify({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdCluster", metadata: { name }, spec });

describe.skipIf(missing !== undefined)("operator on a real API server (fast mode, etcd-ts as its etcd)", () => {
  let etcd: Member;
  let kc = "";
  let dir = "";
  let port = 0;
  let op: RunningOperator | undefined;

  beforeAll(async () => {
    [port] = await freePorts(1);
    etcd = await startMember({ binary: etcdTsBinary(), name: "kube-etcd" });
    dir = mkdtempSync(path.join(os.tmpdir(), "kube-fast-"));
    kc = apiserverUp(etcd.clientUrl, dir, port!);
    await kubectl(kc, ["apply", "-f", path.join(chartDir, "crds")]);
    await kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "crd/etcdclusters.etcd.etcd-ts.io", "crd/etcdbackups.etcd.etcd-ts.io"]);
  }, 180_000);

  afterAll(async () => {
    await op?.stop();
    if (dir) apiserverDown(dir, port);
    await etcd?.destroy();
  }, 120_000);

  it("the API server enforces the EtcdCluster schema", async () => {
    await kubectl(kc, ["create", "namespace", "schema"]);
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ size: 0 }, /spec.size/],
      [{ size: 10 }, /spec.size/],
      [{ size: "three" }, /spec.size/],
      [{}, /size/],
      [{ size: 3, storage: { medium: "Disk" } }, /spec.storage.medium/],
      [{ size: 3, storage: { size: "lots" } }, /spec.storage.size/],
      [{ size: 3, version: "latest" }, /spec.version/],
      [{ size: 3, defrag: { fragmentationPercent: 150 } }, /fragmentationPercent/],
    ];
    for (const [spec, field] of bad) {
      const r = await kubectlResult(kc, ["-n", "schema", "apply", "-f", "-"], cluster("bad", spec));
      expect(r.ok, JSON.stringify(spec)).toBe(false);
      expect(r.out).toMatch(field);
    }
    const ok = await kubectlResult(kc, ["-n", "schema", "apply", "-f", "-"], cluster("good", { size: 3, storage: { size: "2Gi" }, options: { "snapshot-count": "10000" } }));
    expect(ok.ok, ok.out).toBe(true);
    const got = await kubectlJson(kc, ["-n", "schema", "get", "etcdcluster", "good"]);
    expect(got.spec.storage.medium).toBe("PersistentVolume"); // schema default
    const backup = await kubectlResult(kc, ["-n", "schema", "apply", "-f", "-"], stringify({ apiVersion: "etcd.etcd-ts.io/v1alpha1", kind: "EtcdBackup", metadata: { name: "b" }, spec: { clusterName: "good" } }));
    expect(backup.ok).toBe(false);
    expect(backup.out).toMatch(/destination/);
    await kubectl(kc, ["delete", "namespace", "schema", "--wait=false"]);
  });

  it.skipIf(chartRenderMissing() !== undefined)("the rendered Helm chart applies (what helm install would create)", async () => {
    await kubectl(kc, ["create", "namespace", "ops"]);
    const docs = renderChart({ namespace: "ops", release: "etcd-ts" });
    const f = path.join(dir, "chart.yaml");
    writeFileSync(f, docs.map((d) => stringify(d.doc)).join("---\n"));
    const r = await kubectlResult(kc, ["apply", "-f", f]);
    expect(r.ok, r.out).toBe(true);
    const dep = await kubectlJson(kc, ["-n", "ops", "get", "deployment", "etcd-ts-etcd-ts-operator"]);
    expect(dep.spec.template.spec.containers[0].args[0]).toBe("operator");
    const metricsSvc = await kubectlJson(kc, ["-n", "ops", "get", "service", "etcd-ts-etcd-ts-operator-metrics"]);
    expect(metricsSvc.metadata.annotations["prometheus.io/scrape"]).toBe("true");
    // Dry-run as the operator's ServiceAccount: RBAC lets it do what it does.
    const as = ["--as=system:serviceaccount:ops:etcd-ts-etcd-ts-operator"];
    for (const [verb, res] of [["create", "pods"], ["delete", "persistentvolumeclaims"], ["update", "etcdclusters.etcd.etcd-ts.io/status"], ["create", "poddisruptionbudgets.policy"]]) {
      expect((await kubectl(kc, ["auth", "can-i", ...as, verb, res!, "-n", "anywhere"])).trim(), `${verb} ${res}`).toBe("yes");
    }
    expect((await kubectl(kc, ["auth", "can-i", ...as, "get", "secrets", "-n", "anywhere"])).trim()).toBe("yes");
    expect((await kubectlResult(kc, ["auth", "can-i", ...as, "list", "secrets", "-n", "anywhere"])).out.trim()).toBe("no");
    expect((await kubectl(kc, ["auth", "can-i", ...as, "update", "leases.coordination.k8s.io", "-n", "ops"])).trim()).toBe("yes");
    void readFileSync;
  });

  it("creates a new cluster's objects, reports status and events, and deletes them with the cluster", async () => {
    const flags = ["--kubeconfig", kc, "--lease-namespace", "default", "--image", "localhost/etcd-ts:dev", "--log-level", "warn", "--metrics-address", "127.0.0.1:0"];
    op = await startOperator([...flags, "--identity", "first"]);
    await kubectl(kc, ["create", "namespace", "t1"]);
    await kubectl(kc, ["-n", "t1", "apply", "-f", "-"], cluster("e", { size: 3, storage: { size: "256Mi" }, options: { "snapshot-count": "5000" } }));

    const lease = await waitFor("the Lease", async () => (await kubectlJson(kc, ["-n", "default", "get", "lease", "etcd-ts-operator"])).spec, 20_000);
    expect(lease.holderIdentity).toBe("first");
    // Two replicas on one Lease, API server restarts, watch drops: kube-robust-fast.test.ts.

    const pods = await waitFor(
      "three member pods",
      async () => {
        const l = await kubectlJson(kc, ["-n", "t1", "get", "pods", "-l", "etcd.etcd-ts.io/cluster=e"]);
        return l.items.length === 3 ? l.items : undefined;
      },
      30_000,
    );
    const names = pods.map((p: any) => p.metadata.name).sort();
    expect(names).toEqual(["e-0", "e-1", "e-2"]);
    const p0 = pods.find((p: any) => p.metadata.name === "e-0");
    expect(p0.spec.hostname).toBe("e-0");
    expect(p0.spec.subdomain).toBe("e");
    expect(p0.metadata.ownerReferences[0]).toMatchObject({ kind: "EtcdCluster", name: "e", controller: true });
    const cmd: string[] = p0.spec.containers[0].command;
    expect(cmd.slice(0, 2)).toEqual(["node", "/app/server/bin/etcd-ts.js"]);
    expect(cmd).toContain("--initial-cluster-state=new");
    expect(cmd).toContain("--snapshot-count=5000");
    expect(cmd.find((a) => a.startsWith("--initial-cluster="))).toBe(
      "--initial-cluster=" + [0, 1, 2].map((i) => `e-${i}=http://e-${i}.e.t1.svc.cluster.local:2380`).join(","),
    );
    expect(p0.spec.containers[0].image).toBe("localhost/etcd-ts:dev");

    const pvcs = await kubectlJson(kc, ["-n", "t1", "get", "pvc", "-l", "etcd.etcd-ts.io/cluster=e"]);
    expect(pvcs.items.map((p: any) => [p.metadata.name, p.spec.resources.requests.storage]).sort()).toEqual([
      ["data-e-0", "256Mi"],
      ["data-e-1", "256Mi"],
      ["data-e-2", "256Mi"],
    ]);
    const headless = await kubectlJson(kc, ["-n", "t1", "get", "service", "e"]);
    expect(headless.spec).toMatchObject({ clusterIP: "None", publishNotReadyAddresses: true });
    await kubectlJson(kc, ["-n", "t1", "get", "service", "e-client"]);
    const pdb = await waitFor<any>("the PDB", () => kubectlJson(kc, ["-n", "t1", "get", "poddisruptionbudgets.v1beta1.policy", "e"]), 10_000);
    expect(pdb.spec.minAvailable).toBe(2);

    const status = await waitFor(
      "status",
      async () => (await kubectlJson(kc, ["-n", "t1", "get", "etcdcluster", "e"])).status,
      15_000,
    );
    expect(status.observedGeneration).toBe(1);
    expect(status.phase).toBe("Creating");
    const cond = Object.fromEntries(status.conditions.map((c: any) => [c.type, c.status]));
    expect(cond).toMatchObject({ Available: "False", Progressing: "True" });
    const printed = await kubectl(kc, ["-n", "t1", "get", "etcdcluster", "e"]);
    expect(printed).toMatch(/NAME\s+SIZE\s+READY\s+PHASE\s+LEADER\s+AGE/);
    const events = await kubectlJson(kc, ["-n", "t1", "get", "events", "--field-selector", "involvedObject.name=e"]);
    expect(events.items.some((e: any) => e.reason === "Bootstrap" && e.type === "Normal")).toBe(true);

    // Deleting the cluster deletes what it owns (the garbage collector follows owner references).
    await kubectl(kc, ["-n", "t1", "delete", "etcdcluster", "e"]);
    let left: string[] = [];
    await waitFor(
      `owned objects gone`,
      async () => {
        const l = await kubectlJson(kc, ["-n", "t1", "get", "pods,services,pvc"]);
        left = l.items.filter((i: any) => !i.metadata.deletionTimestamp).map((i: any) => `${i.kind}/${i.metadata.name}`);
        return left.length === 0;
      },
      90_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}; left: ${left.join(", ")}`);
    });
  });

  it("reports a spec the schema cannot refuse in status, and creates nothing", async () => {
    await kubectl(kc, ["create", "namespace", "t2"]);
    await kubectl(kc, ["-n", "t2", "apply", "-f", "-"], cluster("bad", { size: 1, options: { "data-dir": "/elsewhere" } }));
    const status = await waitFor(
      "a Failed status",
      async () => {
        const s = (await kubectlJson(kc, ["-n", "t2", "get", "etcdcluster", "bad"])).status;
        return s?.phase === "Failed" ? s : undefined;
      },
      15_000,
    );
    expect(status.conditions.find((c: any) => c.type === "Degraded")).toMatchObject({ status: "True", reason: "InvalidSpec" });
    expect((await kubectlJson(kc, ["-n", "t2", "get", "pods"])).items).toEqual([]);
    expect(op?.controller()).toBeDefined();
  });
  it("a TLS cluster: its own CA, member and operator-client Secrets, https flags, Secret volumes; a missing user Secret is reported", async () => {
    op ??= await startOperator(["--kubeconfig", kc, "--lease-namespace", "default", "--image", "localhost/etcd-ts:dev", "--log-level", "warn", "--metrics-address", "127.0.0.1:0", "--identity", "tls"]);
    await kubectl(kc, ["create", "namespace", "t3"]);
    await kubectl(kc, ["-n", "t3", "apply", "-f", "-"], cluster("s", {
      size: 3,
      bootstrap: { discovery: "DNSSRV" },
      tls: { client: { operatorIssued: true }, peer: { operatorIssued: true } },
    }));
    const secret = async (name: string) => {
      const s = await kubectlJson(kc, ["-n", "t3", "get", "secret", name]);
      return Object.fromEntries(Object.entries(s.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, "base64").toString()])) as Record<string, string>;
    };
    const pods = await waitFor(
      "three TLS member pods",
      async () => {
        const l = await kubectlJson(kc, ["-n", "t3", "get", "pods", "-l", "etcd.etcd-ts.io/cluster=s"]);
        return l.items.length === 3 ? l.items : undefined;
      },
      30_000,
    );
    const ca = new X509Certificate((await secret("s-ca"))["ca.crt"]!);
    expect(ca.ca).toBe(true);
    for (const m of ["s-0", "s-1", "s-2"]) {
      const leaf = await secret(`${m}-tls`);
      const cert = new X509Certificate(leaf["tls.crt"]!);
      expect(cert.verify(ca.publicKey), m).toBe(true);
      expect(cert.subjectAltName).toContain(`DNS:${m}.s.t3.svc.cluster.local`);
      expect(cert.subjectAltName).toContain("DNS:s-client.t3.svc");
      expect(new X509Certificate(leaf["ca.crt"]!).fingerprint256).toBe(ca.fingerprint256);
    }
    const opClient = new X509Certificate((await secret("s-operator-client"))["tls.crt"]!);
    expect(opClient.verify(ca.publicKey)).toBe(true);
    expect(opClient.keyUsage).toContain("1.3.6.1.5.5.7.3.2");

    const p0 = pods.find((p: any) => p.metadata.name === "s-0");
    const cmd: string[] = p0.spec.containers[0].command;
    for (const f of [
      "--listen-client-urls=https://0.0.0.0:2379",
      "--listen-peer-urls=https://0.0.0.0:2380",
      "--initial-advertise-peer-urls=https://s-0.s.t3.svc.cluster.local:2380",
      "--cert-file=/etc/etcd-ts/tls/member/tls.crt",
      "--peer-trusted-ca-file=/etc/etcd-ts/tls/member/ca.crt",
      "--client-cert-auth=true",
      "--peer-client-cert-auth=true",
      "--discovery-srv=s.t3.svc.cluster.local",
    ]) {
      expect(cmd).toContain(f);
    }
    expect(p0.spec.volumes).toContainEqual(expect.objectContaining({ name: "tls-member", secret: expect.objectContaining({ secretName: "s-0-tls" }) }));
    expect(p0.spec.initContainers[0].command.at(-2)).toBe("_etcd-server-ssl._tcp.s.t3.svc.cluster.local");
    expect(p0.metadata.annotations["etcd.etcd-ts.io/spec-hash"]).toMatch(/^[0-9a-f]{16}$/);
    const headless = await kubectlJson(kc, ["-n", "t3", "get", "service", "s"]);
    expect(headless.spec.ports.map((p: any) => p.name).sort()).toEqual(["etcd-client-ssl", "etcd-server-ssl"]);

    const tlsStatus = await waitFor("status.tls", async () => (await kubectlJson(kc, ["-n", "t3", "get", "etcdcluster", "s"])).status?.tls, 15_000);
    expect(tlsStatus.caRotationPhase).toBe("Stable");
    expect(Date.parse(tlsStatus.caNotAfter)).toBe(Date.parse(ca.validTo));
    expect((await kubectlJson(kc, ["-n", "t3", "get", "secret", "s-ca"])).metadata.annotations["etcd.etcd-ts.io/ca-rotation-phase"]).toBe("Stable");

    // A user's Secret that does not exist: reported, nothing created.
    await kubectl(kc, ["-n", "t3", "apply", "-f", "-"], cluster("u", { size: 1, tls: { client: { secretName: "nope" } } }));
    const st = await waitFor(
      "TLSNotReady",
      async () => {
        const s = (await kubectlJson(kc, ["-n", "t3", "get", "etcdcluster", "u"])).status;
        return s?.conditions?.find((c: any) => c.type === "Progressing")?.reason === "TLSNotReady" ? s : undefined;
      },
      15_000,
    );
    expect(st.conditions.find((c: any) => c.type === "Progressing").message).toMatch(/Secret nope .* does not exist/);
    expect((await kubectlJson(kc, ["-n", "t3", "get", "pods", "-l", "etcd.etcd-ts.io/cluster=u"])).items).toEqual([]);

    // Secrets go with the cluster.
    await kubectl(kc, ["-n", "t3", "delete", "etcdcluster", "s"]);
    await waitFor("TLS Secrets gone", async () => (await kubectlJson(kc, ["-n", "t3", "get", "secrets", "-l", "etcd.etcd-ts.io/cluster=s"])).items.length === 0, 60_000);
  });

  it("spec.auth: a generated root password Secret owned by the cluster; a named Secret is the user's", async () => {
    op ??= await startOperator(["--kubeconfig", kc, "--lease-namespace", "default", "--image", "localhost/etcd-ts:dev", "--log-level", "warn", "--identity", "auth"]);
    await kubectl(kc, ["create", "namespace", "t4"]);
    await kubectl(kc, ["-n", "t4", "apply", "-f", "-"], cluster("a", { size: 1, auth: { enabled: true } }));
    const s = await waitFor<any>("the root Secret", async () => ((await kubectlResult(kc, ["-n", "t4", "get", "secret", "a-root"])).ok ? kubectlJson(kc, ["-n", "t4", "get", "secret", "a-root"]) : undefined), 20_000);
    expect(s.type).toBe("Opaque");
    expect(Buffer.from(s.data.password, "base64").toString().length).toBeGreaterThanOrEqual(24);
    expect(s.metadata.ownerReferences[0]).toMatchObject({ kind: "EtcdCluster", name: "a", controller: true });
    // Later passes keep it as it is.
    const first = s.data.password;
    await new Promise((r) => setTimeout(r, 2000));
    expect((await kubectlJson(kc, ["-n", "t4", "get", "secret", "a-root"])).data.password).toBe(first);

    await kubectl(kc, ["-n", "t4", "apply", "-f", "-"], cluster("b", { size: 1, auth: { enabled: true, rootPasswordSecret: "mine" } }));
    await waitFor("b's pod", async () => (await kubectlJson(kc, ["-n", "t4", "get", "pods", "-l", "etcd.etcd-ts.io/cluster=b"])).items.length === 1, 20_000);
    expect((await kubectlResult(kc, ["-n", "t4", "get", "secret", "mine"])).ok).toBe(false);
    expect((await kubectlResult(kc, ["-n", "t4", "get", "secret", "b-root"])).ok).toBe(false);

    await kubectl(kc, ["-n", "t4", "delete", "etcdcluster", "a"]);
    await waitFor("root Secret gone", async () => !(await kubectlResult(kc, ["-n", "t4", "get", "secret", "a-root"])).ok, 60_000);
  });
});
