/**
 * The HTTP gateway end to end against an in-process member: the stream endpoints (watch, lease
 * keepalive), routing answers (404/405/OPTIONS, /v3beta, /v3alpha), status mapping of a real
 * error (FailedPrecondition → 412) and the request size limit. Expected shapes are etcd 3.4.23's,
 * recorded with curl against /usr/bin/etcd (see gateway.ts for the rules).
 */
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConfig } from "../../../src/etcdmain/config.js";
import { startMember, type RunningMember } from "../../../src/etcdmain/start-member.js";
import { nullLogger } from "../../../src/pkg/logger.js";
import { freePorts, sleep } from "../../../../test/harness/processes.js";

let member: RunningMember;
let dataDir: string;
let port: number;
const b64 = (s: string): string => Buffer.from(s).toString("base64");

interface Answer { status: number; headers: http.IncomingHttpHeaders; text: string }

/** One HTTP/1.1 request; resolves when the response ends, or after `holdMs` (then aborts). */
function request(method: string, urlPath: string, body?: string, holdMs = 5000, onChunk?: (text: string) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: urlPath, agent: false }, (res) => {
      let text = "";
      const timer = setTimeout(() => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text });
      }, holdMs);
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
        onChunk?.(text);
      });
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text });
      });
      res.on("error", () => undefined);
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function post(urlPath: string, body: unknown): Promise<Answer> {
  return request("POST", urlPath, typeof body === "string" ? body : JSON.stringify(body));
}

function lines(text: string): unknown[] {
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as unknown);
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), "etcd-ts-gateway-"));
  const [clientPort, peerPort] = await freePorts(2);
  port = clientPort!;
  const invocation = resolveConfig(
    [
      "--name=gw",
      `--data-dir=${path.join(dataDir, "d")}`,
      `--listen-client-urls=http://127.0.0.1:${port}`,
      `--advertise-client-urls=http://127.0.0.1:${port}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=gw=http://127.0.0.1:${peerPort}`,
      "--max-request-bytes=4096",
    ],
    {},
  );
  if (invocation.kind !== "run") throw new Error("expected a run invocation");
  member = await startMember(invocation.config, nullLogger);
  for (let i = 0; i < 100 && member.server.leader === 0n; i++) await sleep(50);
  expect(member.server.leader).not.toBe(0n);
}, 30_000);

afterAll(async () => {
  await member?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe("gateway streams", () => {
  it("watch: one {result} line per response, live events, stays open until the client goes", async () => {
    const store = member.server.store as unknown as { mvcc: { watcherCounts(): { synced: number; unsynced: number } } };
    const watchers = (): number => {
      const c = store.mvcc.watcherCounts();
      return c.synced + c.unsynced;
    };
    const key = b64("gws/w");
    let put = false;
    let watchersOpen = 0;
    const watching = request("POST", "/v3/watch", JSON.stringify({ create_request: { key, prev_kv: true } }), 1500, (text) => {
      if (put || !text.includes('"created":true')) return;
      put = true;
      watchersOpen = watchers();
      void (async () => {
        await post("/v3/kv/put", { key, value: b64("1") });
        await post("/v3/kv/put", { key, value: b64("2") });
        await post("/v3/kv/deleterange", { key });
      })();
    });
    const answer = await watching;
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/json");
    const got = lines(answer.text) as Array<{ result: { created?: boolean; events?: Array<Record<string, unknown>> } }>;
    expect(got[0].result.created).toBe(true);
    const events = got.slice(1).flatMap((l) => l.result.events ?? []);
    expect(events.map((e) => [e.type ?? "PUT", (e.kv as { value?: string }).value ?? ""])).toEqual([
      ["PUT", b64("1")], ["PUT", b64("2")], ["DELETE", ""],
    ]);
    expect((events[1].prev_kv as { value: string }).value).toBe(b64("1"));
    // The client went away: its watcher is gone too.
    expect(watchersOpen).toBe(1);
    for (let i = 0; i < 40 && watchers() > 0; i++) await sleep(50);
    expect(watchers()).toBe(0);
  });

  it("watch: several requests in one body; an undecodable later one only ends the reading", async () => {
    await post("/v3/kv/put", { key: b64("gws/h"), value: b64("x") });
    const body = JSON.stringify({ create_request: { key: b64("gws/h"), start_revision: 1 } }) + JSON.stringify({ progress_request: {} }) + '{"bad';
    const answer = await request("POST", "/v3/watch", body, 700);
    const got = lines(answer.text) as Array<{ result: Record<string, unknown> }>;
    expect(got[0].result.created).toBe(true);
    expect(got.some((l) => l.result.watch_id === "-1")).toBe(true);
    expect(got.some((l) => Array.isArray(l.result.events))).toBe(true);
  });

  it("watch: requests are read as they arrive, answers stream meanwhile (body still open)", async () => {
    const key = b64("gws/slow");
    const seen: string[] = [];
    let req: http.ClientRequest | undefined;
    const done = new Promise<void>((resolve) => {
      req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/v3/watch", agent: false }, (res) => {
        res.setEncoding("utf8");
        let buf = "";
        res.on("data", (c: string) => {
          buf += c;
          for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
            seen.push(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
          }
          if (seen.length >= 3) resolve();
        });
      });
      req.on("error", () => undefined);
    });
    const waitFor = async (n: number): Promise<void> => {
      for (let i = 0; i < 100 && seen.length < n; i++) await sleep(20);
      expect(seen.length).toBeGreaterThanOrEqual(n);
    };
    req!.write(JSON.stringify({ create_request: { key } }));
    await waitFor(1);
    expect(JSON.parse(seen[0])).toMatchObject({ result: { created: true } });
    await post("/v3/kv/put", { key, value: b64("1") });
    await waitFor(2);
    // A request split across writes is taken once complete.
    req!.write('{"cancel_request":');
    await sleep(50);
    expect(seen.length).toBe(2);
    req!.write('{"watch_id":"0"}}');
    await done;
    expect(JSON.parse(seen[2])).toMatchObject({ result: { canceled: true } });
    req!.destroy();
  });

  it("stream whose first request does not decode: 500 with code 2", async () => {
    const answer = await post("/v3/watch", '{"create_request":{"key":5}}');
    expect(answer.status).toBe(500);
    expect(JSON.parse(answer.text)).toEqual({
      error: "json: cannot unmarshal number into Go value of type []uint8",
      message: "json: cannot unmarshal number into Go value of type []uint8",
      code: 2,
    });
    const eof = await post("/v3/lease/keepalive", '{"ID":"5"');
    expect([eof.status, eof.text]).toEqual([500, '{"error":"unexpected EOF","message":"unexpected EOF","code":2}']);
  });

  it("lease keepalive: one line per request, then the response ends; unknown leases get TTL 0 (omitted)", async () => {
    const grant = JSON.parse((await post("/v3/lease/grant", { TTL: 30 })).text) as { ID: string; TTL: string };
    expect(grant.TTL).toBe("30");
    const answer = await post("/v3/lease/keepalive", JSON.stringify({ ID: grant.ID }) + JSON.stringify({ ID: "5" }));
    expect(answer.status).toBe(200);
    const got = lines(answer.text) as Array<{ result: { ID: string; TTL?: string; header: unknown } }>;
    expect(got.map((l) => [l.result.ID, l.result.TTL])).toEqual([[grant.ID, "30"], ["5", undefined]]);
    const empty = await post("/v3/lease/keepalive", "");
    expect([empty.status, empty.text]).toEqual([200, ""]);
  });
});

describe("gateway routing", () => {
  it("serves /v3beta like /v3, not /v3alpha", async () => {
    const beta = await post("/v3beta/kv/range", { key: b64("gws/none") });
    expect(beta.status).toBe(200);
    expect(Object.keys(JSON.parse(beta.text) as object)).toEqual(["header"]);
    const alpha = await post("/v3alpha/kv/range", { key: b64("gws/none") });
    expect([alpha.status, alpha.text]).toEqual([404, "404 page not found\n"]);
  });

  it("unknown method 404 Not Found, wrong HTTP method 405, /v3 301, OPTIONS 200 with CORS headers", async () => {
    expect(await post("/v3beta/nope", {})).toMatchObject({ status: 404, text: "Not Found\n" });
    expect(await post("/v3/maintenance/hashkv", {})).toMatchObject({ status: 404, text: "Not Found\n" });
    expect(await request("GET", "/v3/kv/range")).toMatchObject({ status: 405, text: "Method Not Allowed\n" });
    const redirect = await request("GET", "/v3?a=1&b=2");
    expect([redirect.status, redirect.headers.location, redirect.text]).toEqual([301, "/v3/?a=1&b=2", '<a href="/v3/?a=1&amp;b=2">Moved Permanently</a>.\n\n']);
    const options = await request("OPTIONS", "/v3/kv/range");
    expect(options.status).toBe(200);
    expect(options.headers["access-control-allow-origin"]).toBe("*");
  });

  it("the Auth service is routed (auth off: anyone may list users); bodies are read as JSON first", async () => {
    const answer = await post("/v3/auth/user/list", {});
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.text)).toMatchObject({ header: {} });
    expect((await post("/v3/lock/lock", "{x")).status).toBe(400);
    expect((await post("/v3/auth/status", {})).text).toBe("Not Found\n");
  });

  it("FailedPrecondition maps to 412 (grpc-gateway v1)", async () => {
    const list = JSON.parse((await post("/v3/cluster/member/list", {})).text) as { members: Array<{ ID: string }> };
    const answer = await post("/v3/cluster/member/promote", { ID: list.members[0].ID });
    expect(answer.status).toBe(412);
    expect(JSON.parse(answer.text)).toMatchObject({ code: 9, error: "etcdserver: can only promote a learner member" });
  });

  it("requests over gRPC's receive limit fail with ResourceExhausted (429)", async () => {
    // --max-request-bytes=4096: the limit is 4096 + 512 KiB on the protobuf size.
    const limit = 4096 + 512 * 1024;
    const value = Buffer.alloc(limit).toString("base64");
    const answer = await post("/v3/kv/put", { key: b64("gws/big"), value });
    expect(answer.status).toBe(429);
    expect(JSON.parse(answer.text)).toMatchObject({ code: 8, error: `grpc: received message larger than max (${limit + 13} vs. ${limit})` });
    const mid = await post("/v3/kv/put", { key: b64("gws/big"), value: Buffer.alloc(8192).toString("base64") });
    expect([mid.status, JSON.parse(mid.text)]).toEqual([400, { error: "etcdserver: request is too large", message: "etcdserver: request is too large", code: 3 }]);
  });
});
