/**
 * The CN and host-name rules of pkg/tls-info.ts on the client side (what a member checks on a peer
 * it dials, snapshot sender included) and on the listener side, against a real TLS handshake on
 * loopback with certificates made by openssl.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientTlsOptions, refuseDisallowed, serverTlsOptions, validateTlsInfo, type TlsInfo } from "../../src/pkg/tls-info.js";

const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-tls-info-"));
const read = (name: string): Buffer => readFileSync(path.join(dir, name));

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

function issue(name: string, cn: string, san: string): void {
  writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "1", "-extfile", `${name}.ext`);
}

/** Serves one https listener with `info`, and GETs / from it with client `client`: "ok" or the error. */
async function handshake(info: TlsInfo, client: TlsInfo): Promise<string> {
  const server = https.createServer(serverTlsOptions(info), (_req, res) => res.end("ok"));
  server.on("secureConnection", (s: tls.TLSSocket) => void refuseDisallowed(info, s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  try {
    return await new Promise<string>((resolve) => {
      const req = https.request({ host: "127.0.0.1", port, path: "/", ...clientTlsOptions(client), agent: false }, (res) => {
        res.resume();
        res.on("end", () => resolve("ok"));
      });
      req.on("error", (e) => resolve(e.message));
      req.end();
    });
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

describe("tls-info", () => {
  beforeAll(() => {
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca");
    issue("peer", "etcd-peer", "IP:127.0.0.1");
    issue("intruder", "intruder", "IP:127.0.0.1,DNS:other.example");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const files = (name: string): TlsInfo => ({ cert: read(`${name}.crt`), key: read(`${name}.key`), ca: read("ca.crt") });

  it("a client with an allowed CN accepts a server of that CN and refuses another", async () => {
    expect(await handshake(files("peer"), { ...files("peer"), allowedCn: "etcd-peer" })).toBe("ok");
    expect(await handshake(files("intruder"), { ...files("peer"), allowedCn: "etcd-peer" })).toMatch(/does not carry the allowed CN "etcd-peer"/);
  });

  it("a client with an allowed host name checks the server certificate against it", async () => {
    expect(await handshake(files("intruder"), { ...files("peer"), allowedHostname: "other.example" })).toBe("ok");
    expect(await handshake(files("peer"), { ...files("peer"), allowedHostname: "other.example" })).toMatch(/allowed host name/);
  });

  it("a listener with client-cert-auth and an allowed CN closes connections of another CN", async () => {
    const listener: TlsInfo = { ...files("peer"), clientCertAuth: true, allowedCn: "etcd-peer" };
    expect(await handshake(listener, files("peer"))).toBe("ok");
    expect(await handshake(listener, files("intruder"))).not.toBe("ok");
    expect(await handshake(listener, { ca: read("ca.crt") })).not.toBe("ok");
  });

  it("refuses both rules at once with etcd's text", () => {
    expect(() => validateTlsInfo({ allowedCn: "a", allowedHostname: "b" })).toThrow('AllowedCN and AllowedHostname are mutually exclusive (cn="a", hostname="b")');
    expect(() => validateTlsInfo({ allowedCn: "a", allowedHostname: "" })).not.toThrow();
  });
});
