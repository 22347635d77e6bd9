/**
 * --discovery (etcd's v2 discovery protocol): a discovery service speaking the v2 keys API (an
 * etcd-ts member with --enable-v2 here) holds a token directory with `_config/size`; members
 * started with --discovery <service>/v2/keys/<dir> register and form the cluster together, etcd
 * 3.4 among them when it is installed (same member IDs: the discovery URL is the cluster token).
 * One member reaches the service through an HTTP proxy (--discovery-proxy). A member that comes
 * after the cluster is full is refused with etcd's error.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { computeMemberId } from "../../server/src/server/cluster/member-id.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { freePorts, killAllChildren, killChild } from "../harness/processes.js";
import { spawnServer, untilEtcdctl, type ServerProcess } from "./spawn-server.js";

const haveEtcd = existsSync("/usr/bin/etcd");
const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-discovery-"));

afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

function memberArgs(name: string, client: number, peer: number, durl: string): string[] {
  return [
    "--name", name, "--data-dir", path.join(dir, name),
    "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--discovery", durl,
  ];
}

/** A member's registration key name: its ID, from its peer URL and the discovery URL as the token. */
let memberIdOf: (i: number) => string = () => "";

describe("--discovery", () => {
  it("forms a cluster through a v2 discovery service and refuses a member once it is full", async () => {
    const ports = await freePorts(12);
    const serviceUrl = `http://127.0.0.1:${ports[0]}`;
    const service = spawnServer("etcd-ts", [
      "--name", "service", "--data-dir", path.join(dir, "service"), "--enable-v2",
      "--listen-client-urls", serviceUrl, "--advertise-client-urls", serviceUrl,
      "--listen-peer-urls", `http://127.0.0.1:${ports[1]}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${ports[1]}`,
      "--initial-cluster", `service=http://127.0.0.1:${ports[1]}`,
    ]);
    const members: ServerProcess[] = [];
    let proxy: http.Server | undefined;
    try {
      await untilEtcdctl(service, serviceUrl, ["endpoint", "health"]);
      const durl = `${serviceUrl}/v2/keys/discovery/token-1`;
      memberIdOf = (i) => computeMemberId([`http://127.0.0.1:${ports[3 + 2 * i]}`], durl).toString(16);
      const sized = await fetch(`${durl}/_config/size`, { method: "PUT", body: "value=3", headers: { "content-type": "application/x-www-form-urlencoded" } });
      expect(sized.status).toBe(201);

      // d1 reaches the service through an HTTP proxy (--discovery-proxy, no scheme: http).
      const proxied: string[] = [];
      proxy = http.createServer((req, res) => {
        proxied.push(`${req.method} ${req.url}`);
        const up = http.request(new URL(req.url!), { method: req.method, headers: req.headers }, (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        });
        up.on("error", () => res.destroy());
        req.pipe(up);
      });
      await new Promise<void>((resolve) => proxy!.listen(0, "127.0.0.1", resolve));
      const proxyArg = ["--discovery-proxy", `127.0.0.1:${(proxy.address() as AddressInfo).port}`];
      const kinds = ["etcd-ts", "etcd-ts", haveEtcd ? "etcd" : "etcd-ts"] as const;
      for (let i = 0; i < 3; i++) members.push(spawnServer(kinds[i]!, [...memberArgs(`d${i}`, ports[2 + 2 * i]!, ports[3 + 2 * i]!, durl), ...(i === 1 ? proxyArg : [])]));
      const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${ports[2 + 2 * i]}`);
      for (let i = 0; i < 3; i++) await untilEtcdctl(members[i]!, urls[i]!, ["put", `k${i}`, `v${i}`]);
      const list = await runEtcdctl(urls[0]!, ["member", "list"]);
      expect(list.stdout.trim().split("\n").map((l) => l.split(", ")[2]).sort()).toEqual(["d0", "d1", "d2"]);
      expect((await untilEtcdctl(members[2]!, urls[2]!, ["get", "k0", "--print-value-only"])).trim()).toBe("v0");
      expect(proxied).toContain(`PUT ${durl}/${memberIdOf(1)}?prevExist=false`);
      expect(proxied).toContain(`GET ${durl}/_config/size`);
      // All three agree on the cluster ID.
      const ids = new Set<string>();
      for (const u of urls) {
        const status = await runEtcdctl(u, ["endpoint", "status", "-w", "json"]);
        ids.add(String((JSON.parse(status.stdout) as Array<{ Status: { header: { cluster_id: number } } }>)[0]!.Status.header.cluster_id));
      }
      expect(ids.size).toBe(1);

      // A fourth member finds the cluster full.
      const late = spawnServer("etcd-ts", [...memberArgs("d3", ports[8]!, ports[9]!, durl), "--discovery-fallback", "exit"]);
      expect(await late.exited()).toBe(1);
      expect(late.output()).toContain("failed to join discovery cluster (discovery: cluster is full)");
      if (haveEtcd) {
        const lateEtcd = spawnServer("etcd", [...memberArgs("d4", ports[10]!, ports[11]!, durl), "--discovery-fallback", "exit"]);
        expect(await lateEtcd.exited()).toBe(1);
        expect(lateEtcd.output()).toContain("failed to join discovery cluster (discovery: cluster is full)");
      }
    } finally {
      proxy?.close();
      await Promise.all([service, ...members].map((m) => killChild(m.child, "SIGTERM")));
    }
  }, 90_000);
});
