/**
 * --auto-tls: the member makes a self-signed pair under <data-dir>/fixtures/client and serves
 * clients over https with it; etcdctl --insecure-transport=false --insecure-skip-tls-verify puts and gets, against etcd-ts
 * and real etcd alike. Given cert/key files win (with a warning).
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePorts, killAllChildren, killChild } from "../harness/processes.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { spawnServer, untilEtcdctl } from "./spawn-server.js";
import { selfCert } from "../../server/src/etcdmain/auto-tls.js";
import { createLogger } from "../../server/src/pkg/logger.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-autotls-"));

afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

describe("self-signed pair", () => {
  it("is an ECDSA P-521 certificate for the listen hosts, valid a year, reused once made", () => {
    const d = path.join(dir, "pair");
    const files = selfCert(d, ["127.0.0.1:2379", "localhost:2379", "[::1]:2379"], createLogger({ level: "error" }));
    const cert = new X509Certificate(readFileSync(files.certFile));
    expect(cert.subject).toBe("O=etcd");
    expect(cert.issuer).toBe("O=etcd");
    expect(cert.subjectAltName).toBe("IP Address:127.0.0.1, DNS:localhost, IP Address:0:0:0:0:0:0:0:1");
    expect(cert.ca).toBe(false);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("secp521r1");
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    expect(Math.round(days)).toBe(365);
    const keyPem = readFileSync(files.keyFile, "utf8");
    expect(keyPem.startsWith("-----BEGIN EC PRIVATE KEY-----")).toBe(true);
    expect(createPrivateKey(keyPem).asymmetricKeyDetails?.namedCurve).toBe("secp521r1");
    expect(statSync(files.keyFile).mode & 0o777).toBe(0o600);
    const again = selfCert(d, ["10.0.0.1:1"], createLogger({ level: "error" }));
    expect(readFileSync(again.certFile)).toEqual(readFileSync(files.certFile));
  });
});

describe.each(["etcd-ts", "etcd"] as const)("--auto-tls with %s", (which) => {
  it.skipIf(which === "etcd" && !existsSync("/usr/bin/etcd"))("serves https clients with a self-signed pair", async () => {
    const [client, peer] = await freePorts(2);
    const dataDir = path.join(dir, which);
    const url = `https://127.0.0.1:${client}`;
    const server = spawnServer(which, [
      "--name", "auto", "--data-dir", dataDir, "--auto-tls",
      "--listen-client-urls", url, "--advertise-client-urls", url,
      "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
      "--initial-cluster", `auto=http://127.0.0.1:${peer}`,
    ]);
    try {
      await untilEtcdctl(server, url, ["--insecure-transport=false", "--insecure-skip-tls-verify", "put", "k", "v"]);
      const got = await runEtcdctl(url, ["--insecure-transport=false", "--insecure-skip-tls-verify", "get", "k", "--print-value-only"]);
      expect(got.stdout.trim()).toBe("v");
      // Without skipping verification the self-signed certificate is refused.
      const strict = await runEtcdctl(url, ["--insecure-transport=false", "--command-timeout=2s", "get", "k"]);
      expect(strict.code).not.toBe(0);
      expect(existsSync(path.join(dataDir, "fixtures", "client", "cert.pem"))).toBe(true);
      expect(existsSync(path.join(dataDir, "fixtures", "client", "key.pem"))).toBe(true);
    } finally {
      await killChild(server.child, "SIGTERM");
    }
  });
});

describe("--peer-auto-tls", () => {
  it("makes the peer pair under fixtures/peer", async () => {
    const [client, peer] = await freePorts(2);
    const dataDir = path.join(dir, "peer");
    const url = `http://127.0.0.1:${client}`;
    const server = spawnServer("etcd-ts", [
      "--name", "p", "--data-dir", dataDir, "--peer-auto-tls",
      "--listen-client-urls", url, "--advertise-client-urls", url,
      "--listen-peer-urls", `https://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `https://127.0.0.1:${peer}`,
      "--initial-cluster", `p=https://127.0.0.1:${peer}`,
    ]);
    try {
      await untilEtcdctl(server, url, ["endpoint", "health"]);
      const cert = new X509Certificate(readFileSync(path.join(dataDir, "fixtures", "peer", "cert.pem")));
      expect(cert.subjectAltName).toBe("IP Address:127.0.0.1");
    } finally {
      await killChild(server.child, "SIGTERM");
    }
  });
});
