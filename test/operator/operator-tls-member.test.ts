/**
 * The operator's certificates on a real etcd-ts member (no Kubernetes): OperatorTls issues the
 * CA, a member certificate and its own client certificate into an in-memory Secret store; a
 * member runs with them as a pod would (--cert-file/--key-file/--trusted-ca-file/
 * --client-cert-auth and the --peer-* equivalents, https peer URL); the operator's gRPC admin
 * dials the member's address checking the certificate for the member's DNS name, etcdctl works
 * with the client certificate and is refused without one; with auth on, the operator's client
 * certificate (CN root) is root without a token.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EtcdCluster } from "../../operator/src/api/v1alpha1.js";
import { memberHost } from "../../operator/src/cluster/naming.js";
import { GrpcEtcdAdmin } from "../../operator/src/etcd/grpc-etcd-admin.js";
import { OperatorTls, type SecretStore, type StoredSecret } from "../../operator/src/tls/operator-tls.js";
import { etcdTsBinary, startMember, type Member } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";

const run = promisify(execFile);

class MemorySecrets implements SecretStore {
  secrets = new Map<string, StoredSecret>();
  async getSecret(ns: string, name: string) {
    return this.secrets.get(`${ns}/${name}`);
  }
  async putSecret(owner: EtcdCluster, name: string, s: StoredSecret) {
    this.secrets.set(`${owner.metadata.namespace}/${name}`, s);
  }
}

describe("operator-issued certificates on a real member", () => {
  const cluster: EtcdCluster = {
    apiVersion: "etcd.etcd-ts.io/v1alpha1",
    kind: "EtcdCluster",
    metadata: { name: "e", namespace: "ns", uid: "u" },
    spec: { size: 1, tls: { client: {}, peer: {} } },
  };
  const secrets = new MemorySecrets();
  const admin = new GrpcEtcdAdmin({ timeoutMs: 5000 });
  let member: Member;
  let dir = "";
  let tlsPort = 0;
  let clientTls: { caPem: string; certPem: string; keyPem: string };

  beforeAll(async () => {
    const tls = new OperatorTls({ clusterDomain: "cluster.local", caValidityMs: 10 * 86_400_000, certValidityMs: 86_400_000, renewBeforeMs: 3_600_000 }, { secrets, log: { info() {} } });
    const state = await tls.prepare(cluster, ["e-0"], new Date());
    clientTls = state.client!;
    dir = mkdtempSync(path.join(os.tmpdir(), "operator-tls-"));
    const m = secrets.secrets.get("ns/e-0-tls")!.data;
    for (const k of ["tls.crt", "tls.key", "ca.crt"]) writeFileSync(path.join(dir, k), m[k]!);
    const c = secrets.secrets.get("ns/e-operator-client")!.data;
    writeFileSync(path.join(dir, "client.crt"), c["tls.crt"]!);
    writeFileSync(path.join(dir, "client.key"), c["tls.key"]!);
    const [client, peer, tlsClient] = await freePorts(3);
    tlsPort = tlsClient!;
    const f = (n: string) => path.join(dir, n);
    member = await startMember({
      binary: etcdTsBinary(),
      name: "e-0",
      ports: { client: client!, peer: peer! },
      peerScheme: "https",
      extraArgs: [
        // The harness checks readiness on the plain URL; the pod's https client URL beside it.
        "--listen-client-urls", `http://127.0.0.1:${client},https://127.0.0.1:${tlsPort}`,
        `--cert-file=${f("tls.crt")}`, `--key-file=${f("tls.key")}`, `--trusted-ca-file=${f("ca.crt")}`, "--client-cert-auth=true",
        `--peer-cert-file=${f("tls.crt")}`, `--peer-key-file=${f("tls.key")}`, `--peer-trusted-ca-file=${f("ca.crt")}`, "--peer-client-cert-auth=true",
      ],
    });
  }, 60_000);

  afterAll(async () => {
    admin.close();
    await member?.destroy();
  });

  it("the operator dials the member by its DNS name with its client certificate; a wrong name is refused", async () => {
    const serverName = memberHost({ name: "e", namespace: "ns" }, "e-0", "cluster.local");
    const st = await admin.status({ address: `127.0.0.1:${tlsPort}`, tls: { ...clientTls, serverName } });
    expect(st.version).toMatch(/^3\.4\./);
    const list = await admin.memberList({ address: `127.0.0.1:${tlsPort}`, tls: { ...clientTls, serverName } });
    expect(list[0]!.peerURLs[0]).toMatch(/^https:/);
    await expect(admin.status({ address: `127.0.0.1:${tlsPort}`, tls: { ...clientTls, serverName: "e-1.e.ns.svc.cluster.local" } })).rejects.toThrow(/ALTNAME|altnames/i);
  });

  it("etcdctl works with the operator's client certificate and is refused without one", async () => {
    const ctl = (extra: string[], args: string[]) =>
      run("etcdctl", ["--endpoints", `https://127.0.0.1:${tlsPort}`, "--cacert", path.join(dir, "ca.crt"), "--dial-timeout=2s", "--command-timeout=3s", ...extra, ...args], { env: { ...process.env, ETCDCTL_API: "3" } });
    const certs = ["--cert", path.join(dir, "client.crt"), "--key", path.join(dir, "client.key")];
    await ctl(certs, ["put", "k", "v"]);
    expect((await ctl(certs, ["get", "k", "--print-value-only"])).stdout).toBe("v\n");
    await expect(ctl([], ["get", "k"])).rejects.toThrow();
  });

  it("with auth on, the operator's client certificate (CN root) authenticates by itself", async () => {
    const serverName = memberHost({ name: "e", namespace: "ns" }, "e-0", "cluster.local");
    const ep = { address: `127.0.0.1:${tlsPort}`, tls: { ...clientTls, serverName } };
    await admin.enableAuth({ ...ep, auth: { user: "root", password: "pw" } }, "pw");
    try {
      expect(await admin.authEnabled({ ...ep, auth: { user: "root", password: "pw" } })).toBe(true);
      // No token: etcd takes the certificate's common name as the user; root-only calls work.
      await admin.defragment(ep);
      expect((await admin.alarms(ep))).toEqual([]);
    } finally {
      await admin.disableAuth(ep);
    }
    expect(await admin.authEnabled({ ...ep, auth: { user: "root", password: "pw" } })).toBe(false);
  });
});
