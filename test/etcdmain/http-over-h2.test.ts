/**
 * HTTP/2 requests that are not gRPC on a TLS client port (curl and browsers speak HTTP/2 there)
 * are served by the HTTP handler, as etcd's grpcHandlerFunc serves them: /version, /health,
 * /metrics, the JSON gateway, 404 and 405, with etcd 3.4's status, content-type and body. Both
 * of etcd-ts's HTTP/2 paths: pkg/h2 (TLS without client certificates) and node:http2 (with
 * --client-cert-auth). gRPC on the same connections still works (etcdctl).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer, untilEtcdctl } from "../bootstrap/spawn-server.js";
import { freePorts, killAllChildren, killChild } from "../harness/processes.js";
import { writeTestCertificates } from "../harness/test-certs.js";

const haveEtcd = existsSync("/usr/bin/etcd");
const dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-http-h2-"));
const f = (name: string): string => path.join(dir, name);

beforeAll(() => writeTestCertificates(dir, ["client"]));
afterAll(async () => {
  await killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

async function ask(session: http2.ClientHttp2Session, method: string, urlPath: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": method, ":path": urlPath, ...(body !== undefined ? { "content-type": "application/json" } : {}) });
    let status = 0;
    let contentType: string | undefined;
    let text = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      status = Number(h[":status"]);
      contentType = h["content-type"] as string | undefined;
    });
    req.on("data", (d: string) => (text += d));
    req.on("end", () => resolve({ status, contentType, body: text }));
    req.on("error", reject);
    req.end(body);
  });
}

/** The answers that must match etcd's, member-specific JSON reduced to its keys. */
async function answers(port: number, certAuth: boolean): Promise<Record<string, Answer>> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ca: readFileSync(f("ca.crt")),
    ...(certAuth ? { cert: readFileSync(f("client.crt")), key: readFileSync(f("client.key")) } : {}),
  });
  session.on("error", () => undefined);
  try {
    const keysOnly = (a: Answer): Answer => ({ ...a, body: Object.keys(JSON.parse(a.body) as object).join(",") });
    const metrics = await ask(session, "GET", "/metrics");
    return {
      version: await ask(session, "GET", "/version"),
      health: await ask(session, "GET", "/health"),
      healthPost: await ask(session, "POST", "/health"),
      metrics: { ...metrics, body: String(metrics.body.includes("etcd_server_has_leader 1")) },
      range: keysOnly(await ask(session, "POST", "/v3/kv/range", JSON.stringify({ key: Buffer.from("k").toString("base64") }))),
      rangeGet: await ask(session, "GET", "/v3/kv/range"),
      nowhere: await ask(session, "GET", "/nowhere"),
    };
  } finally {
    session.close();
  }
}

describe.skipIf(!haveEtcd)("HTTP/2 requests that are not gRPC on a TLS client port, etcd-ts against etcd 3.4", () => {
  for (const certAuth of [false, true]) {
    it(certAuth ? "with --client-cert-auth (node:http2)" : "without client certificates (pkg/h2)", async () => {
      const got: Record<string, Record<string, Answer>> = {};
      for (const which of ["etcd-ts", "etcd"] as const) {
        const [client, peer] = await freePorts(2);
        const url = `https://127.0.0.1:${client}`;
        const server = spawnServer(which, [
          "--name", "h", "--data-dir", path.join(dir, `${which}-${certAuth}`),
          "--listen-client-urls", url, "--advertise-client-urls", url,
          "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
          "--initial-cluster", `h=http://127.0.0.1:${peer}`,
          "--cert-file", f("server.crt"), "--key-file", f("server.key"),
          ...(certAuth ? ["--client-cert-auth", "--trusted-ca-file", f("ca.crt")] : []),
        ]);
        try {
          const tlsArgs = ["--cacert", f("ca.crt"), ...(certAuth ? ["--cert", f("client.crt"), "--key", f("client.key")] : [])];
          await untilEtcdctl(server, url, [...tlsArgs, "put", "k", "v"]);
          got[which] = await answers(client!, certAuth);
          expect((await untilEtcdctl(server, url, [...tlsArgs, "get", "k", "--print-value-only"])).trim()).toBe("v");
        } finally {
          await killChild(server.child, "SIGTERM");
        }
      }
      expect(got["etcd-ts"]).toEqual(got["etcd"]);
      expect(got["etcd-ts"]!.version!.status).toBe(200);
      expect(got["etcd-ts"]!.range!.body).toBe("header,kvs,count");
    }, 60_000);
  }
});
