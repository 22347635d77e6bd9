/**
 * TLS: certificates the operator issues (checked with node:crypto and a real TLS handshake), the
 * OperatorTls provider over an in-memory Secret store (idempotent passes, renewal by epoch, user
 * Secrets), the layout (flags, volumes, names), and the planner's TLS rules.
 */
import { X509Certificate } from "node:crypto";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { describe, expect, it } from "vitest";
import type { EtcdCluster } from "../src/api/v1alpha1.js";
import { headlessService, memberPod } from "../src/cluster/manifests.js";
import { ANN_CLIENT_TLS, peerURL } from "../src/cluster/naming.js";
import type { ObservedCluster } from "../src/cluster/observed.js";
import { plan, specProblems } from "../src/cluster/plan.js";
import { memberDnsNames, nextEpoch, tlsArgs, tlsSettings } from "../src/cluster/tls-layout.js";
import { issueCa, issueLeaf } from "../src/tls/certificates.js";
import { ANN_EPOCH, OperatorTls, type SecretStore, type StoredSecret } from "../src/tls/operator-tls.js";

const DAY = 86_400_000;
const ref = { name: "e", namespace: "ns" };
const cluster = (spec: Partial<EtcdCluster["spec"]> = {}): EtcdCluster => ({
  apiVersion: "etcd.etcd-ts.io/v1alpha1",
  kind: "EtcdCluster",
  metadata: { name: "e", namespace: "ns", uid: "u1" },
  spec: { size: 3, ...spec },
});
const both = { tls: { client: { operatorIssued: true }, peer: { operatorIssued: true } } };

describe("certificates", () => {
  it("a CA and a member certificate for the member's DNS names, server and client use; a TLS handshake checks them", async () => {
    const now = Date.now();
    const ca = await issueCa("test CA", new Date(now - 1000), new Date(now + 10 * DAY));
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    const names = memberDnsNames(ref, "e-0", "cluster.local");
    const member = await issueLeaf(ca, { commonName: "e-0", dnsNames: names, ipAddresses: ["127.0.0.1"], usages: ["server", "client"], notBefore: new Date(now - 1000), notAfter: new Date(now + DAY) });
    const client = await issueLeaf(ca, { commonName: "root", usages: ["client"], notBefore: new Date(now - 1000), notAfter: new Date(now + DAY) });
    const m = new X509Certificate(member.certPem);
    expect(m.verify(caCert.publicKey)).toBe(true);
    expect(m.ca).toBe(false);
    expect(m.subjectAltName).toContain("DNS:e-0.e.ns.svc.cluster.local");
    expect(m.subjectAltName).toContain("DNS:e-client.ns.svc");
    expect(m.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(m.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]));
    expect(new X509Certificate(client.certPem).keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);

    // A server with the member's pair that wants client certificates; the operator's pair dials it by name.
    const server = tls.createServer({ key: member.keyPem, cert: member.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (s) => s.end("ok"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const dial = (opts: tls.ConnectionOptions) =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: "127.0.0.1", port, ca: ca.certPem, ...opts }, () => {
          s.on("data", (d) => resolve(String(d)));
        });
        s.on("error", reject);
        s.on("close", () => reject(new Error("closed")));
      });
    try {
      expect(await dial({ servername: "e-0.e.ns.svc.cluster.local", key: client.keyPem, cert: client.certPem })).toBe("ok");
      await expect(dial({ servername: "e-1.e.ns.svc.cluster.local", key: client.keyPem, cert: client.certPem })).rejects.toThrow(/altnames|Hostname/i);
      await expect(dial({ servername: "e-0.e.ns.svc.cluster.local" })).rejects.toThrow();
    } finally {
      server.close();
    }
  });
});

class MemorySecrets implements SecretStore {
  secrets = new Map<string, StoredSecret>();
  writes: string[] = [];
  async getSecret(ns: string, name: string) {
    const s = this.secrets.get(`${ns}/${name}`);
    return s && structuredClone(s);
  }
  async putSecret(owner: EtcdCluster, name: string, s: StoredSecret) {
    this.secrets.set(`${owner.metadata.namespace}/${name}`, structuredClone(s));
    this.writes.push(name);
  }
}

describe("OperatorTls", () => {
  const options = { clusterDomain: "cluster.local", caValidityMs: 3650 * DAY, certValidityMs: 90 * DAY, renewBeforeMs: 30 * DAY };
  const members = ["e-0", "e-1", "e-2"];

  it("issues the CA, member and operator-client Secrets once; later passes write nothing", async () => {
    const secrets = new MemorySecrets();
    const p = new OperatorTls(options, { secrets, log: { info() {} } });
    const t0 = new Date("2026-01-01T00:00:00Z");
    const a = await p.prepare(cluster(both), members, t0);
    expect(secrets.writes.sort()).toEqual(["e-0-tls", "e-1-tls", "e-2-tls", "e-ca", "e-operator-client"]);
    expect(a.problem).toBeUndefined();
    expect(a.client?.certPem).toBe(secrets.secrets.get("ns/e-operator-client")!.data["tls.crt"]);
    secrets.writes = [];
    const b = await p.prepare(cluster(both), members, new Date(t0.getTime() + 10 * DAY));
    expect(secrets.writes).toEqual([]);
    expect(b.material).toBe(a.material);
    // A new member gets its certificate; the material (the pods' hash) does not change.
    const c = await p.prepare(cluster(both), [...members, "e-3"], new Date(t0.getTime() + 11 * DAY));
    expect(secrets.writes).toEqual(["e-3-tls"]);
    expect(c.material).toBe(a.material);
  });

  it("renews every certificate (a new epoch, same CA) before expiry; the material changes so members roll", async () => {
    const secrets = new MemorySecrets();
    const p = new OperatorTls(options, { secrets, log: { info() {} } });
    const t0 = new Date("2026-01-01T00:00:00Z");
    const a = await p.prepare(cluster(both), members, t0);
    const ca = secrets.secrets.get("ns/e-ca")!.data["ca.crt"];
    const oldLeaf = new X509Certificate(secrets.secrets.get("ns/e-1-tls")!.data["tls.crt"]!);
    secrets.writes = [];
    const b = await p.prepare(cluster(both), members, new Date(t0.getTime() + 61 * DAY));
    expect(secrets.writes.sort()).toEqual(["e-0-tls", "e-1-tls", "e-2-tls", "e-ca", "e-operator-client"]);
    expect(b.material).not.toBe(a.material);
    expect(secrets.secrets.get("ns/e-ca")!.data["ca.crt"]).toBe(ca);
    expect(secrets.secrets.get("ns/e-1-tls")!.annotations[ANN_EPOCH]).toBe("2");
    const newLeaf = new X509Certificate(secrets.secrets.get("ns/e-1-tls")!.data["tls.crt"]!);
    expect(Date.parse(newLeaf.validTo)).toBeGreaterThan(Date.parse(oldLeaf.validTo));
    expect(newLeaf.verify(new X509Certificate(ca!).publicKey)).toBe(true);
  });

  it("user Secrets: missing keys are a problem; their fingerprint is the material; client.crt is the operator's pair when present", async () => {
    const secrets = new MemorySecrets();
    const p = new OperatorTls(options, { secrets, log: { info() {} } });
    const spec = { tls: { client: { secretName: "mine" }, peer: { secretName: "peers" } } };
    const r1 = await p.prepare(cluster(spec), members, new Date());
    expect(r1.problem).toMatch(/Secret mine \(spec.tls.client\) does not exist; Secret peers \(spec.tls.peer\) does not exist/);
    secrets.secrets.set("ns/mine", { data: { "tls.crt": "C1", "tls.key": "K1", "ca.crt": "CA" }, annotations: {} });
    secrets.secrets.set("ns/peers", { data: { "tls.crt": "P1", "ca.crt": "CA" }, annotations: {} });
    expect((await p.prepare(cluster(spec), members, new Date())).problem).toMatch(/Secret peers \(spec.tls.peer\) lacks tls.key/);
    secrets.secrets.get("ns/peers")!.data["tls.key"] = "PK";
    const r2 = await p.prepare(cluster(spec), members, new Date());
    expect(r2.problem).toBeUndefined();
    expect(r2.client).toEqual({ caPem: "CA", certPem: "C1", keyPem: "K1" });
    secrets.secrets.get("ns/mine")!.data["client.crt"] = "CC";
    secrets.secrets.get("ns/mine")!.data["client.key"] = "CK";
    expect((await p.prepare(cluster(spec), members, new Date())).client).toEqual({ caPem: "CA", certPem: "CC", keyPem: "CK" });
    secrets.secrets.get("ns/mine")!.data["tls.crt"] = "C2";
    expect((await p.prepare(cluster(spec), members, new Date())).material).not.toBe(r2.material);
    expect(secrets.writes).toEqual([]);
  });
});

describe("TLS layout", () => {
  it("a side named is operator-issued unless it names a Secret; client certificate auth by default", () => {
    expect(tlsSettings({ size: 1 })).toEqual({});
    expect(tlsSettings({ size: 1, tls: { client: {} } })).toEqual({ client: { kind: "operator", clientCertAuth: true } });
    expect(tlsSettings({ size: 1, tls: { client: { secretName: "s", clientCertAuth: false }, peer: { operatorIssued: false } } })).toEqual({
      client: { kind: "secret", secretName: "s", clientCertAuth: false },
    });
  });

  it("flags, volumes, probe and names of a TLS member", () => {
    const c = cluster(both);
    expect(tlsArgs(tlsSettings(c.spec))).toEqual([
      "--cert-file=/etc/etcd-ts/tls/member/tls.crt",
      "--key-file=/etc/etcd-ts/tls/member/tls.key",
      "--trusted-ca-file=/etc/etcd-ts/tls/member/ca.crt",
      "--client-cert-auth=true",
      "--listen-metrics-urls=http://0.0.0.0:2381",
      "--peer-cert-file=/etc/etcd-ts/tls/member/tls.crt",
      "--peer-key-file=/etc/etcd-ts/tls/member/tls.key",
      "--peer-trusted-ca-file=/etc/etcd-ts/tls/member/ca.crt",
      "--peer-client-cert-auth=true",
    ]);
    const o = { clusterDomain: "cluster.local", defaultImage: "img", serverCommand: ["etcd-ts"] };
    const pod: any = memberPod(c, { member: "e-1", initialCluster: `e-1=${peerURL(ref, "e-1", "cluster.local", true)}`, state: "new" }, o);
    const ct = pod.spec.containers[0];
    expect(ct.command).toContain("--advertise-client-urls=https://e-1.e.ns.svc.cluster.local:2379");
    expect(ct.command).toContain("--initial-advertise-peer-urls=https://e-1.e.ns.svc.cluster.local:2380");
    expect(ct.readinessProbe.httpGet.port).toBe(2381);
    expect(ct.volumeMounts).toContainEqual({ name: "tls-member", mountPath: "/etc/etcd-ts/tls/member", readOnly: true });
    expect(pod.spec.volumes).toContainEqual({ name: "tls-member", secret: { secretName: "e-1-tls", defaultMode: 0o400 } });
    expect(pod.metadata.annotations[ANN_CLIENT_TLS]).toBe("true");
    const user: any = memberPod(cluster({ tls: { client: { secretName: "mine" }, peer: { secretName: "peers" } } }), { member: "e-1", initialCluster: "", state: "new" }, o);
    expect(user.spec.volumes.map((v: any) => v.secret?.secretName).filter(Boolean)).toEqual(["mine", "peers"]);
    expect(user.spec.containers[0].command).toContain("--peer-cert-file=/etc/etcd-ts/tls/peer/tls.crt");
    expect((headlessService(c) as any).spec.ports.map((p: any) => p.name)).toEqual(["etcd-server-ssl", "etcd-client-ssl"]);
  });

  it("epochs: a new one when the current has less than renewBefore left, never past the CA", () => {
    expect(nextEpoch(undefined, 0, 90, 30, 1000)).toEqual({ epoch: 1, notAfter: 90 });
    expect(nextEpoch({ epoch: 1, notAfter: 90 }, 59, 90, 30, 1000)).toBeUndefined();
    expect(nextEpoch({ epoch: 1, notAfter: 90 }, 61, 90, 30, 1000)).toEqual({ epoch: 2, notAfter: 151 });
    expect(nextEpoch({ epoch: 2, notAfter: 151 }, 950, 90, 30, 1000)).toEqual({ epoch: 3, notAfter: 1000 });
  });
});

describe("planner with TLS", () => {
  const obs = (spec: Partial<EtcdCluster["spec"]>, peerTls: boolean): ObservedCluster => ({
    name: "e",
    namespace: "ns",
    generation: 1,
    spec: { size: 1, ...spec },
    previousStatus: {},
    pods: new Map(),
    volumes: new Map(),
    etcd: { members: [{ id: "a", name: "e-0", peerURLs: [peerURL(ref, "e-0", "cluster.local", peerTls)], clientURLs: [], isLearner: false }], statuses: new Map() },
    now: 0,
  });
  it("refuses turning peer TLS on or off under a running cluster, and TLS flags in options", () => {
    expect(specProblems(obs(both, true))).toEqual([]);
    expect(specProblems(obs(both, false)).join()).toMatch(/spec.tls.peer cannot change on a running cluster/);
    expect(specProblems(obs({}, true)).join()).toMatch(/spec.tls.peer cannot change/);
    expect(specProblems(obs({ ...both, options: { "cert-file": "/x" } }, true)).join()).toMatch(/cert-file is set by the operator from spec.tls/);
    expect(specProblems(obs({ options: { "cert-file": "/x" } }, false))).toEqual([]);
  });
  it("allows DNS SRV bootstrap with peer TLS; bootstraps with https peer URLs", () => {
    const o = obs({ ...both, size: 3, bootstrap: { discovery: "DNSSRV" } }, true);
    delete o.etcd.members;
    const step = plan(o, { clusterDomain: "cluster.local" });
    expect(step).toMatchObject({ kind: "bootstrap" });
    expect((step as any).initialCluster).toMatch(/^e-0=https:\/\/e-0\.e\.ns\.svc\.cluster\.local:2380,/);
  });
  it("waits while the TLS material is not ready", () => {
    const o = obs(both, true);
    o.tlsProblem = "Secret x does not exist";
    expect(plan(o, { clusterDomain: "cluster.local" })).toEqual({ kind: "wait", reason: "TLSNotReady", message: "Secret x does not exist" });
  });
});
