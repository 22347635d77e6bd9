/**
 * The client port's HTTP/1 answers against etcd 3.4's, request for request: the access controller
 * (--host-whitelist against DNS rebinding, --cors, OPTIONS) and /health (its status, headers and
 * body for GET, another method and ?exclude=), with the default flags and with both lists set.
 * Then /health on --listen-metrics-urls of a member still waiting for its cluster: served before
 * the member is ready, and unhealthy in etcd's words.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePorts, killAllChildren, killChild, sleep } from "../harness/processes.js";
import { spawnServer, untilEtcdctl, type ServerProcess } from "../bootstrap/spawn-server.js";

const haveEtcd = existsSync("/usr/bin/etcd");
const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-http-access-"));

afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Headers whose presence and value are compared (Date, Content-Length and keep-alive are the transport's). */
const COMPARED = ["content-type", "x-content-type-options", "allow", "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"];

function request(port: number, method: string, urlPath: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: urlPath, headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => {
        const picked: Record<string, string> = {};
        for (const h of COMPARED) if (res.headers[h] !== undefined) picked[h] = String(res.headers[h]);
        resolve({ status: res.statusCode ?? 0, headers: picked, body });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

interface Case {
  method: string;
  path: string;
  host: string;
  origin?: string;
}

function cases(port: number): Case[] {
  const out: Case[] = [];
  for (const host of [`127.0.0.1:${port}`, "example.com:1", "Example.com", "localhost", "[::1]:80", "a:b:c"]) {
    for (const origin of [undefined, "http://b.com:8080", "http://c.com:1"]) {
      out.push({ method: "GET", path: "/version", host, origin });
      out.push({ method: "OPTIONS", path: "/v3/kv/range", host, origin });
    }
    out.push({ method: "GET", path: "/health", host });
    out.push({ method: "GET", path: "/health?exclude=NOSPACE&exclude=CORRUPT", host });
    out.push({ method: "POST", path: "/health", host });
    out.push({ method: "PUT", path: "/health", host });
    out.push({ method: "GET", path: "/nowhere", host });
    out.push({ method: "GET", path: "/v3/kv/range", host });
    out.push({ method: "POST", path: "/v3/kv/nope", host });
  }
  return out;
}

/** A single member of `which` with `flags`, serving on its client port; its port. */
async function single(which: "etcd-ts" | "etcd", name: string, flags: string[]): Promise<{ server: ServerProcess; port: number }> {
  const [client, peer] = await freePorts(2);
  const url = `http://127.0.0.1:${client}`;
  const server = spawnServer(which, [
    "--name", "h", "--data-dir", path.join(dir, which, name),
    "--listen-client-urls", url, "--advertise-client-urls", url,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", `h=http://127.0.0.1:${peer}`,
    ...flags,
  ]);
  await untilEtcdctl(server, url, ["put", "k", "v"]);
  return { server, port: client };
}

describe.skipIf(!haveEtcd)("the client port's HTTP/1 answers, etcd-ts against etcd 3.4", () => {
  for (const [name, flags] of [
    ["default flags", []],
    ["--host-whitelist and --cors", ["--host-whitelist", "example.com,localhost,::1", "--cors", "http://a.com:80,http://b.com:8080"]],
  ] as const) {
    it(`answers as etcd with ${name}`, async () => {
      const label = name.replace(/\W+/g, "-");
      const [ts, etcd] = await Promise.all([single("etcd-ts", label, [...flags]), single("etcd", label, [...flags])]);
      try {
        const diffs: string[] = [];
        const tsCases = cases(ts.port);
        const etcdCases = cases(etcd.port);
        for (let i = 0; i < tsCases.length; i++) {
          const c = tsCases[i]!;
          // The Host naming the member's own port differs between the two; the rest is the same.
          const headers = (k: Case): Record<string, string> => ({ host: k.host, ...(k.origin ? { origin: k.origin } : {}) });
          const [a, b] = await Promise.all([request(ts.port, c.method, c.path, headers(c)), request(etcd.port, etcdCases[i]!.method, etcdCases[i]!.path, headers(etcdCases[i]!))]);
          const norm = (x: Answer, port: number): Answer => ({ ...x, body: x.body.replaceAll(String(port), "PORT") });
          try {
            expect(norm(a, ts.port)).toEqual(norm(b, etcd.port));
          } catch {
            diffs.push(`${c.method} ${c.path} Host=${c.host} Origin=${c.origin ?? "-"}\n  etcd-ts ${JSON.stringify(a)}\n  etcd    ${JSON.stringify(b)}`);
          }
        }
        expect(diffs, diffs.join("\n")).toEqual([]);
        if (flags.length > 0) expect(ts.server.output()).toContain("rejecting HTTP request to prevent DNS rebinding attacks");
      } finally {
        await Promise.all([killChild(ts.server.child, "SIGTERM"), killChild(etcd.server.child, "SIGTERM")]);
      }
    }, 60_000);
  }

  it("serves /health on --listen-metrics-urls before the member is ready, unhealthy as etcd says it", async () => {
    const answers: Answer[] = [];
    for (const which of ["etcd-ts", "etcd"] as const) {
      const [client, peer, metricsPort, p2, p3] = await freePorts(5);
      const server = spawnServer(which, [
        "--name", "a", "--data-dir", path.join(dir, which, "alone"),
        "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
        "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
        "--initial-cluster", `a=http://127.0.0.1:${peer},b=http://127.0.0.1:${p2},c=http://127.0.0.1:${p3}`,
        "--listen-metrics-urls", `http://127.0.0.1:${metricsPort}`,
      ]);
      try {
        let answer: Answer | undefined;
        for (let i = 0; i < 150 && answer === undefined; i++) {
          answer = await request(metricsPort!, "GET", "/health", {}).catch(() => undefined);
          if (answer === undefined) await sleep(100);
        }
        expect(answer, `${which} never answered on its metrics port:\n${server.output().slice(-2000)}`).toBeDefined();
        answers.push(answer!);
      } finally {
        await killChild(server.child, "SIGTERM");
      }
    }
    expect(answers[0]).toEqual(answers[1]);
    expect(answers[0]!.status).toBe(503);
    expect(answers[0]!.body).toBe('{"health":"false"}\n');
  }, 60_000);
});
