/**
 * DNS SRV discovery against a DNS server this test starts on loopback. etcd-ts is pointed at it
 * with ETCD_TS_TEST_DNS_SERVER; real etcd 3.4 (which reads /etc/resolv.conf, port 53 only) runs
 * in a private mount namespace whose /etc/resolv.conf names the server, so both derive their
 * initial cluster from the same records and their results and errors are compared.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsRecord, type DnsServer } from "../harness/dns-server.js";
import { freePorts, killAllChildren, killChild, sleep } from "../harness/processes.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { spawnServer, untilEtcdctl } from "./spawn-server.js";
import { defaultDiscoveryResolver, initialClusterFromSrv } from "../../server/src/etcdmain/discovery-srv.js";
import { createLogger } from "../../server/src/pkg/logger.js";

const DOMAIN = "etcd-ts.test";
const logger = createLogger({ level: "error" });
const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-srv-"));
let dns: DnsServer;
/** Real etcd can be pointed at the server: root, unshare, and port 53 on a loopback address. */
let etcdWrap: string[] | undefined;

/** Whether a private mount namespace can cover /etc/resolv.conf here (root, unshare, etcd). */
function canUnshare(): boolean {
  if (!existsSync("/usr/bin/etcd")) return false;
  try {
    const probe = path.join(dir, "probe.conf");
    writeFileSync(probe, "nameserver 127.0.0.1\n");
    execFileSync("unshare", ["-m", "sh", "-c", `mount --bind ${probe} /etc/resolv.conf && grep -q 127.0.0.1 /etc/resolv.conf`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  if (canUnshare()) {
    // Port 53 on a random loopback address (resolv.conf names no port).
    for (let i = 0; i < 20 && dns === undefined; i++) {
      const host = `127.53.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
      dns = await startDnsServer({}, host, 53).catch(() => undefined as unknown as DnsServer);
    }
  }
  if (dns !== undefined) {
    console.log(`real etcd resolves through ${dns.address} in a private mount namespace`);
    const resolvConf = path.join(dir, "resolv.conf");
    writeFileSync(resolvConf, `nameserver ${dns.address.replace(/:53$/, "")}\n`);
    etcdWrap = ["unshare", "-m", "sh", "-c", `mount --bind ${resolvConf} /etc/resolv.conf && exec "$0" "$@"`];
  } else {
    dns = await startDnsServer({});
  }
});

afterAll(async () => {
  await killAllChildren();
  await dns?.close();
  rmSync(dir, { recursive: true, force: true });
});

const srv = (target: string, port: number, priority: number): DnsRecord => ({ type: "SRV", priority, weight: 10, port, target: `${target}.${DOMAIN}` });
const a = (address = "127.0.0.1"): DnsRecord[] => [{ type: "A", address }];

async function derive(name: string, advertise: string, srvName = ""): Promise<string> {
  return initialClusterFromSrv(
    { name, discoverySrv: DOMAIN, discoverySrvName: srvName, initialAdvertisePeerUrls: [advertise] },
    defaultDiscoveryResolver({ ETCD_TS_TEST_DNS_SERVER: dns.address }),
    logger,
  ).then(
    (c) => c,
    (err: Error) => `error: ${err.message}`,
  );
}

/**
 * What real etcd derives from the same records: the "got bootstrap from DNS" lines it logs (it
 * is stopped then), or the error it exits with.
 */
async function etcdDerives(name: string, advertise: string, srvName = ""): Promise<string> {
  const [client] = await freePorts(1);
  const u = new URL(advertise);
  const server = spawnServer(
    "etcd",
    [
      "--name", name, "--data-dir", mkdtempSync(path.join(dir, "etcd-")), "--peer-auto-tls",
      "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
      "--listen-peer-urls", `${u.protocol}//127.0.0.1:${u.port}`, "--initial-advertise-peer-urls", advertise,
      "--discovery-srv", DOMAIN, ...(srvName !== "" ? ["--discovery-srv-name", srvName] : []),
    ],
    { wrap: etcdWrap },
  );
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && server.child.exitCode === null && !/starting member|published|raft/.test(server.output())) await sleep(100);
  await killChild(server.child, "SIGKILL");
  const out = server.output();
  const err = /error setting up initial cluster: (.*)/.exec(out);
  if (err !== null) return `error: ${err[1]!.trim()}`;
  const nodes = [...out.matchAll(/got bootstrap from DNS for etcd-server at (\S+)/g)].map((m) => m[1]);
  return nodes.length > 0 ? nodes.join(",") : `unexpected output:\n${out.slice(-2000)}`;
}

describe("DNS SRV discovery", () => {
  it("derives the initial cluster from _etcd-server-ssl records, as etcd 3.4 does", async () => {
    const [p0, p1, p2] = await freePorts(3);
    dns.setZone({
      [`_etcd-server-ssl._tcp.${DOMAIN}`]: [srv("m0", p0!, 0), srv("m1", p1!, 1), srv("m2", p2!, 2)],
      [`m0.${DOMAIN}`]: a(),
      [`m1.${DOMAIN}`]: a(),
      [`m2.${DOMAIN}`]: a(),
    });
    const expected = `0=https://m0.${DOMAIN}:${p0},me=https://m1.${DOMAIN}:${p1},1=https://m2.${DOMAIN}:${p2}`;
    expect(await derive("me", `https://127.0.0.1:${p1}`)).toBe(expected);
    if (etcdWrap !== undefined) expect(await etcdDerives("me", `https://127.0.0.1:${p1}`)).toBe(expected);
  });

  it("uses --discovery-srv-name as the services' suffix", async () => {
    const [p0] = await freePorts(1);
    dns.setZone({ [`_etcd-server-ssl-blue._tcp.${DOMAIN}`]: [srv("m0", p0!, 0)], [`m0.${DOMAIN}`]: a() });
    expect(await derive("me", `https://127.0.0.1:${p0}`, "blue")).toBe(`me=https://m0.${DOMAIN}:${p0}`);
    const without = await derive("me", `https://127.0.0.1:${p0}`);
    expect(without).toBe(`error: error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.${DOMAIN} on ${dns.address}: no such host`);
    if (etcdWrap !== undefined) {
      expect(await etcdDerives("me", `https://127.0.0.1:${p0}`, "blue")).toBe(`me=https://m0.${DOMAIN}:${p0}`);
      expect(await etcdDerives("me", `https://127.0.0.1:${p0}`)).toBe(without);
    }
  });

  it("refuses http-only records and a member the records do not list, with etcd's texts", async () => {
    const [p0, p1] = await freePorts(2);
    // etcd 3.4.23 drops the _etcd-server (http) records: an http-only set-up fails.
    dns.setZone({ [`_etcd-server._tcp.${DOMAIN}`]: [srv("m0", p0!, 0)], [`m0.${DOMAIN}`]: a() });
    const httpOnly = await derive("me", `http://127.0.0.1:${p0}`);
    expect(httpOnly).toBe(`error: error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.${DOMAIN} on ${dns.address}: no such host`);
    // This member's address is in no record.
    dns.setZone({ [`_etcd-server-ssl._tcp.${DOMAIN}`]: [srv("m0", p0!, 0)], [`m0.${DOMAIN}`]: a() });
    const notListed = await derive("me", `https://127.0.0.1:${p1}`);
    expect(notListed).toBe(`error: cannot find local etcd member "me" in SRV records`);
    // Its record is https, its advertised URL http.
    const mismatch = await derive("me", `http://127.0.0.1:${p0}`);
    expect(mismatch).toBe(`error: error querying DNS SRV records for _etcd-server-ssl bootstrap at https://m0.${DOMAIN}:${p0} from DNS for etcd-server-ssl has scheme mismatch with expected peer http://127.0.0.1:${p0}`);
    if (etcdWrap !== undefined) {
      expect(await etcdDerives("me", `https://127.0.0.1:${p1}`)).toBe(notListed);
      expect(await etcdDerives("me", `http://127.0.0.1:${p0}`)).toBe(mismatch);
      dns.setZone({ [`_etcd-server._tcp.${DOMAIN}`]: [srv("m0", p0!, 0)], [`m0.${DOMAIN}`]: a() });
      expect(await etcdDerives("me", `http://127.0.0.1:${p0}`)).toBe(httpOnly);
    }
  });

  it("etcd-ts bootstraps from the records (one member) and refuses with exit 1 otherwise", async () => {
    const [client, peer] = await freePorts(2);
    dns.setZone({ [`_etcd-server-ssl._tcp.${DOMAIN}`]: [srv("m0", peer!, 0)], [`m0.${DOMAIN}`]: a() });
    const url = `http://127.0.0.1:${client}`;
    const args = (name: string, dataDir: string): string[] => [
      "--name", name, "--data-dir", dataDir,
      "--listen-client-urls", url, "--advertise-client-urls", url,
      "--listen-peer-urls", `https://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `https://127.0.0.1:${peer}`,
      // An https peer URL needs a key pair (etcd refuses to listen without one).
      "--peer-auto-tls",
      "--discovery-srv", DOMAIN,
    ];
    const env = { ETCD_TS_TEST_DNS_SERVER: dns.address };
    const server = spawnServer("etcd-ts", args("me", path.join(dir, "ts")), { env });
    try {
      await untilEtcdctl(server, url, ["endpoint", "health"]);
      const list = await runEtcdctl(url, ["member", "list"]);
      expect(list.stdout).toContain(`, started, me, https://m0.${DOMAIN}:${peer}, ${url}, false`);
    } finally {
      await killChild(server.child, "SIGTERM");
    }
    dns.setZone({ [`m0.${DOMAIN}`]: a() });
    const refused = spawnServer("etcd-ts", args("me", path.join(dir, "ts-refused")), { env });
    expect(await refused.exited()).toBe(1);
    expect(refused.output()).toContain(`error setting up initial cluster: error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.${DOMAIN} on ${dns.address}: no such host`);
  });
});
