/**
 * TLS settings on etcd-ts and etcd 3.4 alike:
 *   - --cipher-suites takes Go's suite names; an unknown one fails the start with etcd's error
 *     before the data dir is made; with a list, the client and peer ports complete TLS 1.2
 *     handshakes only for listed suites, and TLS 1.3 stays on (Go does not restrict it);
 *   - a trusted CA file alone (--trusted-ca-file, --peer-trusted-ca-file, without the
 *     *-client-cert-auth flags) already requires a client certificate that CA signed;
 *   - --client-cert-allowed-hostname lets in only client certificates valid for that name.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, untilEtcdctl } from "../bootstrap/spawn-server.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { freePorts, killAllChildren, killChild } from "../harness/processes.js";
import { writeClientCertificate, writeTestCertificates } from "../harness/test-certs.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-ciphers-"));
const f = (name: string): string => path.join(dir, name);

beforeAll(() => {
  writeTestCertificates(dir, ["client"]);
  writeClientCertificate(dir, "named", "DNS:client.example.com");
});
afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

/** The suite a TLS handshake with `options` settled on, or the handshake's failure. */
function handshake(port: number, options: tls.ConnectionOptions, withCert = true): Promise<string> {
  // The peer port requires a client certificate (its trusted CA is set).
  const cert = withCert ? { cert: readFileSync(f("client.crt")), key: readFileSync(f("client.key")) } : {};
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, ...cert, rejectUnauthorized: false, ALPNProtocols: ["h2", "http/1.1"], ...options }, () => {
      const c = s.getCipher();
      resolve(`${s.getProtocol()} ${c.standardName}`);
      s.destroy();
    });
    s.on("error", () => resolve("refused"));
  });
}

describe.each(["etcd-ts", "etcd"] as const)("%s --cipher-suites", (which) => {
  const skip = which === "etcd" && !existsSync("/usr/bin/etcd");

  it.skipIf(skip)("refuses a name Go does not know, before the data dir is made", async () => {
    const dataDir = f(`${which}-bad`);
    const server = spawnServer(which, ["--data-dir", dataDir, "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,foo"]);
    expect(await server.exited()).toBe(1);
    // etcd's capnslog line has the quotes bare, etcd-ts's JSON line escapes them.
    expect(server.output()).toMatch(/unexpected TLS cipher suite \\?"foo\\?"/);
    expect(existsSync(dataDir)).toBe(false);
  });

  it.skipIf(skip)("client and peer ports take only the listed TLS 1.2 suites, and TLS 1.3", async () => {
    const [client, peer] = await freePorts(2);
    const clientUrl = `https://127.0.0.1:${client}`;
    const peerUrl = `https://127.0.0.1:${peer}`;
    const server = spawnServer(which, [
      "--name", "c", "--data-dir", f(`${which}-listed`),
      "--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl,
      "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl, "--initial-cluster", `c=${peerUrl}`,
      "--cert-file", f("server.crt"), "--key-file", f("server.key"),
      "--peer-cert-file", f("server.crt"), "--peer-key-file", f("server.key"), "--peer-trusted-ca-file", f("ca.crt"),
      "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    ]);
    try {
      await untilEtcdctl(server, clientUrl, ["--cacert", f("ca.crt"), "put", "k", "v"]);
      for (const port of [client!, peer!]) {
        const tls12 = { maxVersion: "TLSv1.2" as const };
        expect(await handshake(port, { ...tls12, ciphers: "ECDHE-RSA-AES256-GCM-SHA384" }), `port ${port}`).toBe("refused");
        expect(await handshake(port, { ...tls12, ciphers: "AES128-GCM-SHA256" }), `port ${port}`).toBe("refused");
        expect(await handshake(port, { ...tls12, ciphers: "ECDHE-RSA-AES128-GCM-SHA256" })).toBe("TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        expect(await handshake(port, { ...tls12, ciphers: "ECDHE-RSA-CHACHA20-POLY1305" })).toBe("TLSv1.2 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256");
        expect(await handshake(port, { minVersion: "TLSv1.3" })).toMatch(/^TLSv1\.3 TLS_/);
      }
    } finally {
      await killChild(server.child, "SIGTERM");
    }
  }, 60_000);

  it.skipIf(skip)("a trusted CA file alone requires a client certificate on the client and peer ports", async () => {
    const [client, peer] = await freePorts(2);
    const clientUrl = `https://127.0.0.1:${client}`;
    const peerUrl = `https://127.0.0.1:${peer}`;
    const server = spawnServer(which, [
      "--name", "t", "--data-dir", f(`${which}-trusted`),
      "--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl,
      "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl, "--initial-cluster", `t=${peerUrl}`,
      "--cert-file", f("server.crt"), "--key-file", f("server.key"), "--trusted-ca-file", f("ca.crt"),
      "--peer-cert-file", f("server.crt"), "--peer-key-file", f("server.key"), "--peer-trusted-ca-file", f("ca.crt"),
    ]);
    try {
      await untilEtcdctl(server, clientUrl, ["--cacert", f("ca.crt"), "--cert", f("client.crt"), "--key", f("client.key"), "put", "k", "v"]);
      for (const port of [client!, peer!]) {
        // TLS 1.2: a missing certificate fails the handshake itself (TLS 1.3 would learn it later).
        expect(await handshake(port, { maxVersion: "TLSv1.2" }, false), `port ${port} without a certificate`).toBe("refused");
        expect(await handshake(port, { maxVersion: "TLSv1.2" }), `port ${port} with one`).toMatch(/^TLSv1\.2 /);
      }
    } finally {
      await killChild(server.child, "SIGTERM");
    }
  }, 60_000);

  it.skipIf(skip)("--client-cert-allowed-hostname lets in only certificates valid for the name", async () => {
    const [client, peer] = await freePorts(2);
    const clientUrl = `https://127.0.0.1:${client}`;
    const server = spawnServer(which, [
      "--name", "n", "--data-dir", f(`${which}-allowed-host`),
      "--listen-client-urls", clientUrl, "--advertise-client-urls", clientUrl,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`, "--initial-cluster", `n=http://127.0.0.1:${peer}`,
      "--cert-file", f("server.crt"), "--key-file", f("server.key"), "--trusted-ca-file", f("ca.crt"), "--client-cert-auth",
      "--client-cert-allowed-hostname", "client.example.com",
    ]);
    try {
      const as = (cert: string): string[] => ["--cacert", f("ca.crt"), "--cert", f(`${cert}.crt`), "--key", f(`${cert}.key`)];
      await untilEtcdctl(server, clientUrl, [...as("named"), "put", "k", "v"]);
      const refused = await runEtcdctl(clientUrl, [...as("client"), "--command-timeout=2s", "get", "k"]);
      expect(refused.code, refused.stdout).not.toBe(0);
    } finally {
      await killChild(server.child, "SIGTERM");
    }
  }, 60_000);
});
