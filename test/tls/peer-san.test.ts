/**
 * etcd's checkSAN on the peer port, etcd-ts against etcd 3.4: a peer's client certificate that
 * names IP addresses or DNS names must name the address the connection comes from (by IP, or by
 * a name the address resolves back to, or that resolves to it); one naming neither passes;
 * --experimental-peer-skip-client-san-verification turns the check off. Each certificate asks
 * for the peer port's /version from 127.0.0.1 (and one from 127.0.0.2): served or refused.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, untilEtcdctl } from "../bootstrap/spawn-server.js";
import { freePorts, killAllChildren, killChild } from "../harness/processes.js";
import { writeClientCertificate, writeTestCertificates } from "../harness/test-certs.js";

const haveEtcd = existsSync("/usr/bin/etcd");
const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-peer-san-"));
const f = (name: string): string => path.join(dir, name);

/** Certificate name → its subjectAltName (none: no extension). */
const CERTS: Record<string, string | undefined> = {
  plain: undefined,
  ipSelf: "IP:127.0.0.1",
  ipOther: "IP:10.9.8.7",
  dnsLocalhost: "DNS:localhost",
  dnsNowhere: "DNS:nowhere.invalid",
  dnsWildcard: "DNS:*.nowhere.invalid",
  ipOtherDnsLocalhost: "IP:10.9.8.7,DNS:localhost",
};

beforeAll(() => {
  writeTestCertificates(dir);
  for (const [name, san] of Object.entries(CERTS)) writeClientCertificate(dir, name, san);
});
afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

function peerVersion(port: number, cert: string, localAddress = "127.0.0.1"): Promise<string> {
  return new Promise((resolve) => {
    const req = https.request(
      { host: "127.0.0.1", port, path: "/version", localAddress, ca: readFileSync(f("ca.crt")), cert: readFileSync(f(`${cert}.crt`)), key: readFileSync(f(`${cert}.key`)), agent: false, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on("end", () => resolve(`served ${res.statusCode}`));
      },
    );
    req.on("error", () => resolve("refused"));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

async function outcomes(which: "etcd-ts" | "etcd", skip: boolean): Promise<Record<string, string>> {
  const [client, peer] = await freePorts(2);
  const peerUrl = `https://127.0.0.1:${peer}`;
  const server = spawnServer(which, [
    "--name", "s", "--data-dir", f(`${which}-${skip}`),
    "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", peerUrl, "--initial-advertise-peer-urls", peerUrl, "--initial-cluster", `s=${peerUrl}`,
    "--peer-cert-file", f("server.crt"), "--peer-key-file", f("server.key"), "--peer-trusted-ca-file", f("ca.crt"),
    ...(skip ? ["--experimental-peer-skip-client-san-verification"] : []),
  ]);
  try {
    await untilEtcdctl(server, `http://127.0.0.1:${client}`, ["put", "k", "v"]);
    const out: Record<string, string> = {};
    for (const name of Object.keys(CERTS)) out[name] = await peerVersion(peer!, name);
    out["ipSelf from 127.0.0.2"] = await peerVersion(peer!, "ipSelf", "127.0.0.2");
    if (which === "etcd-ts" && !skip) expect(server.output()).toContain("rejected connection");
    return out;
  } finally {
    await killChild(server.child, "SIGTERM");
  }
}

describe.skipIf(!haveEtcd)("the peer port's client certificate SAN check", () => {
  it("refuses and serves the same certificates as etcd 3.4", async () => {
    const ts = await outcomes("etcd-ts", false);
    expect(ts).toEqual(await outcomes("etcd", false));
    expect(ts).toEqual({
      plain: "served 200",
      ipSelf: "served 200",
      ipOther: "refused",
      dnsLocalhost: "served 200",
      dnsNowhere: "refused",
      dnsWildcard: "refused",
      ipOtherDnsLocalhost: "served 200",
      "ipSelf from 127.0.0.2": "refused",
    });
  }, 90_000);

  it("--experimental-peer-skip-client-san-verification serves them all, as etcd 3.4", async () => {
    const ts = await outcomes("etcd-ts", true);
    expect(ts).toEqual(await outcomes("etcd", true));
    expect(Object.values(ts).every((o) => o === "served 200")).toBe(true);
  }, 90_000);
});
