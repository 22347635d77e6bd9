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
import { memberDnsNames, nextCaAction, nextEpoch, tlsArgs, tlsSettings } from "../src/cluster/tls-layout.js";
import { issueCa, issueLeaf } from "../src/tls/certificates.js";
import { ANN_CA_PHASE, ANN_EPOCH, OperatorTls, type SecretStore, type StoredSecret } from "../src/tls/operator-tls.js";

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

  it("rotates the CA before it expires: TrustBoth, Reissued, Stable, each only once the previous phase is rolled out", async () => {
    const secrets = new MemorySecrets();
    const o = { clusterDomain: "cluster.local", caValidityMs: 100 * DAY, caRenewBeforeMs: 10 * DAY, certValidityMs: 30 * DAY, renewBeforeMs: 5 * DAY };
    const p = new OperatorTls(o, { secrets, log: { info() {} } });
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    const at = (d: number) => new Date(t0 + d * DAY);
    const ca = () => secrets.secrets.get("ns/e-ca")!;
    const leaf = (n: string) => secrets.secrets.get(`ns/${n}`)!.data;
    const pems = (bundle: string) => bundle.split(/(?<=-----END CERTIFICATE-----)\n?/).filter((x) => x.includes("BEGIN"));
    const a0 = await p.prepare(cluster(both), members, at(0), () => true);
    expect(a0.ca?.phase).toBe("Stable");
    const oldCa = ca().data["ca.crt"]!;
    // Far from expiry: nothing moves, however rolled out.
    expect((await p.prepare(cluster(both), members, at(50), () => true)).ca?.phase).toBe("Stable");

    // 9 days left (< 10): a new CA is trusted beside the old; certificates still from the old.
    const t1 = await p.prepare(cluster(both), members, at(91), () => false);
    expect(t1.ca?.phase).toBe("TrustBoth");
    expect(ca().annotations[ANN_CA_PHASE]).toBe("TrustBoth");
    const newCa = ca().data["next.crt"]!;
    expect(pems(leaf("e-1-tls")["ca.crt"]!).map((x) => x.trim())).toEqual([oldCa.trim(), newCa.trim()]);
    expect(new X509Certificate(leaf("e-1-tls")["tls.crt"]!).verify(new X509Certificate(oldCa).publicKey)).toBe(true);
    expect(pems(t1.client!.caPem)).toHaveLength(2);
    // Not rolled out yet: it stays, and the material is stable across passes.
    const t1b = await p.prepare(cluster(both), members, at(91.5), () => false);
    expect(t1b.ca?.phase).toBe("TrustBoth");
    expect(t1b.material).toBe(t1.material);
    expect(t1.material).not.toBe(a0.material);

    // Rolled out: certificates from the new CA (a new epoch), both still trusted.
    let asked = "";
    const r = await p.prepare(cluster(both), members, at(92), (m) => {
      asked = m;
      return true;
    });
    expect(asked).toBe(t1.material);
    expect(r.ca?.phase).toBe("Reissued");
    expect(ca().data["ca.crt"]).toBe(newCa);
    expect(ca().data["old.crt"]).toBe(oldCa);
    for (const n of ["e-0-tls", "e-1-tls", "e-2-tls", "e-operator-client"]) {
      expect(new X509Certificate(leaf(n)["tls.crt"]!).verify(new X509Certificate(newCa).publicKey)).toBe(true);
      expect(pems(leaf(n)["ca.crt"]!).map((x) => x.trim())).toEqual([newCa.trim(), oldCa.trim()]);
    }
    expect(Date.parse(new X509Certificate(leaf("e-0-tls")["tls.crt"]!).validTo)).toBe(t0 + 122 * DAY);
    expect(r.material).not.toBe(t1.material);
    expect((await p.prepare(cluster(both), members, at(92.5), () => false)).ca?.phase).toBe("Reissued");

    // Rolled out again: the old CA is dropped.
    const s2 = await p.prepare(cluster(both), members, at(93), () => true);
    expect(s2.ca?.phase).toBe("Stable");
    expect(ca().data["old.crt"]).toBeUndefined();
    expect(ca().data["next.crt"]).toBeUndefined();
    expect(leaf("e-2-tls")["ca.crt"]).toBe(newCa);
    expect(s2.client!.caPem).toBe(newCa);
    expect(s2.material).not.toBe(r.material);
    expect(s2.ca!.notAfter).toBe(Date.parse(new X509Certificate(newCa).validTo));
    expect((await p.prepare(cluster(both), members, at(94), () => true)).material).toBe(s2.material);
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
    // Without clientCertAuth the client port gets no trusted CA: etcd would require certificates.
    expect(tlsArgs({ client: { kind: "secret", secretName: "s", clientCertAuth: false } })).toEqual([
      "--cert-file=/etc/etcd-ts/tls/client/tls.crt",
      "--key-file=/etc/etcd-ts/tls/client/tls.key",
      "--listen-metrics-urls=http://0.0.0.0:2381",
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

  it("CA rotation phases: start near expiry, then each move only when rolled out", () => {
    expect(nextCaAction("Stable", 100, 50, 10, true)).toBeUndefined();
    expect(nextCaAction("Stable", 100, 90, 10, false)).toBe("start");
    expect(nextCaAction("TrustBoth", 100, 90, 10, false)).toBeUndefined();
    expect(nextCaAction("TrustBoth", 100, 90, 10, true)).toBe("reissue");
    expect(nextCaAction("Reissued", 100, 90, 10, false)).toBeUndefined();
    expect(nextCaAction("Reissued", 200, 90, 10, true)).toBe("drop-old");
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
