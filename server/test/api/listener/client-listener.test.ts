/**
 * The client port's HTTP/2 routing, end to end against an in-process member: which path each
 * connection takes (native, or through AuthorityRewriter), told apart by the listener's debug log
 * line and `h2HandoverCounts()`, and that every kind of client still gets its answers:
 *  (a) a grpc-js client (sends its request without waiting for the server's SETTINGS);
 *  (b) etcdctl 3.4 `endpoint status` / `endpoint hashkv` with an http:// endpoint (URL authority);
 *  (c) etcdctl 3.4 `put` / `get` with a host:port endpoint;
 *  (d) an HTTP/2 client that idles 200 ms after the handshake before its first request;
 *  (e) HTTP/1.1 `GET /health` on the same port;
 *  (f) hand-framed clients: ACK of our SETTINGS late or early, URL or host authority.
 * These are the routes to node:http2 (`ETCD_TS_H2=node`); test/own-h2 covers the default.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { h2HandoverCounts } from "../../../src/api/listener/client-listener.js";
import { resolveConfig } from "../../../src/etcdmain/config.js";
import { startMember, type RunningMember } from "../../../src/etcdmain/start-member.js";
import { KVClient, PutRequest, RangeRequest } from "@etcd-ts/proto/etcdserverpb/rpc";
import { createLogger } from "../../../src/pkg/logger.js";
import { runEtcdctl } from "../../../../test/harness/etcdctl.js";
import { freePorts, sleep } from "../../../../test/harness/processes.js";

interface Handover {
  path: "native" | "rewrite";
  reason: string;
  authority?: string;
}

let member: RunningMember;
let savedH2Mode: string | undefined;
let dataDir: string;
let port: number;
const handovers: Handover[] = [];

/** Runs `step` and returns the handovers logged meanwhile (plus a short settling delay). */
async function handoversDuring(step: () => Promise<void>, settleMs = 50): Promise<Handover[]> {
  const from = handovers.length;
  await step();
  await sleep(settleMs);
  return handovers.slice(from);
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), "etcd-ts-client-listener-"));
  const [clientPort, peerPort] = await freePorts(2);
  port = clientPort!;
  const invocation = resolveConfig(
    [
      "--name=x",
      `--data-dir=${path.join(dataDir, "d")}`,
      `--listen-client-urls=http://127.0.0.1:${port}`,
      `--advertise-client-urls=http://127.0.0.1:${port}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=x=http://127.0.0.1:${peerPort}`,
    ],
    {},
  );
  if (invocation.kind !== "run") throw new Error("expected a run invocation");
  const logger = createLogger({
    level: "debug",
    write: (line) => {
      if (!line.includes("http2 connection handed over")) return;
      const { path: p, reason, authority } = JSON.parse(line) as Handover;
      handovers.push(authority === undefined ? { path: p, reason } : { path: p, reason, authority });
    },
  });
  // These routes are node:http2's (pkg/h2 serves the client port by default and needs none).
  savedH2Mode = process.env.ETCD_TS_H2;
  process.env.ETCD_TS_H2 = "node";
  member = await startMember(invocation.config, logger);
});

afterAll(async () => {
  if (savedH2Mode === undefined) delete process.env.ETCD_TS_H2;
  else process.env.ETCD_TS_H2 = savedH2Mode;
  await member?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** A gRPC RangeRequest { key: "foo" }, framed (no compression flag, 4-byte length). */
const RANGE_FOO = Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x66, 0x6f, 0x6f]);

describe("client listener: HTTP/2 paths", () => {
  it("(a) grpc-js client: native", async () => {
    const before = h2HandoverCounts();
    const seen = await handoversDuring(async () => {
      const client = new KVClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      try {
        await new Promise<void>((resolve, reject) =>
          client.put(PutRequest.fromPartial({ key: Buffer.from("foo"), value: Buffer.from("bar") }), (err) => (err ? reject(err) : resolve())),
        );
        const kvs = await new Promise<unknown[]>((resolve, reject) =>
          client.range(RangeRequest.fromPartial({ key: Buffer.from("foo") }), (err, res) => (err ? reject(err) : resolve(res.kvs))),
        );
        expect(kvs.length).toBe(1);
      } finally {
        client.close();
      }
    });
    expect(seen).toEqual([{ path: "native", reason: "request", authority: `127.0.0.1:${port}` }]);
    const after = h2HandoverCounts();
    expect(after.native - before.native).toBe(1);
    expect(after.rewrite - before.rewrite).toBe(0);
  });

  it("(b) etcdctl endpoint status / hashkv with an http:// endpoint: rewrite, and they succeed", async () => {
    const endpoint = `http://127.0.0.1:${port}`;
    for (const args of [["endpoint", "status"], ["endpoint", "hashkv"]]) {
      const seen = await handoversDuring(async () => {
        const r = await runEtcdctl(endpoint, args);
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        expect(r.stdout.startsWith(`${endpoint}, `)).toBe(true);
      });
      expect(seen).toContainEqual({ path: "rewrite", reason: "url-authority", authority: endpoint });
      // etcdctl's main connection stays idle (or closes before it is decided): never rewritten.
      expect(seen.filter((h) => h.path === "rewrite").length).toBe(1);
    }
  });

  it("(c) etcdctl put / get with a host:port endpoint: native only", async () => {
    const endpoint = `127.0.0.1:${port}`;
    const seen = await handoversDuring(async () => {
      const put = await runEtcdctl(endpoint, ["put", "k", "v"]);
      expect(put.stdout).toBe("OK\n");
      const get = await runEtcdctl(endpoint, ["get", "k"]);
      expect(get.stdout).toBe("k\nv\n");
    });
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every((h) => h.path === "native")).toBe(true);
    expect(seen.filter((h) => h.reason === "request").map((h) => h.authority)).toEqual([endpoint, endpoint]);
  });

  it("(d) a client idle for 200 ms after the handshake: native, then served", async () => {
    const seen = await handoversDuring(async () => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      try {
        await new Promise<void>((resolve, reject) => {
          session.once("remoteSettings", () => resolve());
          session.once("error", reject);
        });
        await sleep(200);
        const req = session.request({
          ":method": "POST",
          ":path": "/etcdserverpb.KV/Range",
          "content-type": "application/grpc",
          te: "trailers",
        });
        const chunks: Buffer[] = [];
        const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("trailers", resolve));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.end(RANGE_FOO);
        expect((await trailers)["grpc-status"]).toBe("0");
        expect(Buffer.concat(chunks).includes(Buffer.from("bar"))).toBe(true);
      } finally {
        session.close();
      }
    });
    expect(seen).toEqual([{ path: "native", reason: "idle" }]);
  });

  it("(e) HTTP/1.1 GET /health on the same port", async () => {
    const out = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn("curl", ["-s", "-m", "10", `http://127.0.0.1:${port}/health`]);
      let stdout = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.once("error", reject);
      child.once("exit", (code) => resolve({ code, stdout }));
    });
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ health: "true" });
  });

  describe("(f) hand-framed clients", () => {
    it.each([
      { name: "prompt ACK, host authority", authority: "127.0.0.1", ackDelayMs: 0, expected: { path: "native", reason: "request" } },
      { name: "prompt ACK, URL authority", authority: "http://127.0.0.1", ackDelayMs: 0, expected: { path: "rewrite", reason: "url-authority" } },
      { name: "late ACK, URL authority", authority: "http://127.0.0.1", ackDelayMs: 300, expected: { path: "rewrite", reason: "url-authority" } },
      { name: "ACK after the listener gave up waiting", authority: "127.0.0.1", ackDelayMs: 1_300, expected: { path: "rewrite", reason: "no-settings-ack" } },
    ])("$name", async ({ authority, ackDelayMs, expected }) => {
      let result: RawResult | undefined;
      const seen = await handoversDuring(async () => {
        result = await rawRange(port, authority, ackDelayMs);
      });
      expect(seen).toEqual([{ ...expected, authority }]);
      expect(result!.goaway).toBe(false);
      expect(result!.rstStream).toBe(false);
      expect(result!.data.includes(Buffer.from("bar"))).toBe(true);
      expect(result!.trailersEndStream).toBe(true);
    });
  });
});

interface RawResult {
  goaway: boolean;
  rstStream: boolean;
  /** DATA payloads of stream 1. */
  data: Buffer;
  /** A HEADERS frame with END_STREAM arrived on stream 1. */
  trailersEndStream: boolean;
}

function rawFrame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK literal without indexing; `nameIndex` 0 means a literal name follows. */
function literal(nameIndex: number, name: string, value: string): Buffer {
  const parts: Buffer[] = [];
  if (nameIndex === 0) parts.push(Buffer.from([0, name.length]), Buffer.from(name));
  else parts.push(nameIndex < 15 ? Buffer.from([nameIndex]) : Buffer.from([15, nameIndex - 15]));
  parts.push(Buffer.from([value.length]), Buffer.from(value));
  return Buffer.concat(parts);
}

/**
 * One unary Range over a raw TCP connection: preface, SETTINGS, the request at once (HEADERS +
 * DATA), and SETTINGS ACKs; the ACK of the first SETTINGS received comes `ackDelayMs` late.
 */
function rawRange(port: number, authority: string, ackDelayMs: number): Promise<RawResult> {
  const block = Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http
    literal(4, ":path", "/etcdserverpb.KV/Range"),
    literal(1, ":authority", authority),
    literal(31, "content-type", "application/grpc"),
    literal(0, "te", "trailers"),
  ]);
  const result: RawResult = { goaway: false, rstStream: false, data: Buffer.alloc(0), trailersEndStream: false };
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const deadline = setTimeout(() => finish(new Error("raw client: no answer within 10 s")), 10_000);
    let settingsSeen = 0;
    let pending = Buffer.alloc(0);
    const finish = (err?: Error): void => {
      clearTimeout(deadline);
      socket.destroy();
      if (err) reject(err);
      else resolve(result);
    };
    socket.on("connect", () => {
      socket.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
          rawFrame(4, 0, 0),
          rawFrame(1, 0x4, 1, block),
          rawFrame(0, 0x1, 1, RANGE_FOO),
        ]),
      );
    });
    socket.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3);
        if (pending.length < 9 + length) break;
        const type = pending[3]!;
        const flags = pending[4]!;
        const stream = pending.readUInt32BE(5) & 0x7fffffff;
        const payload = pending.subarray(9, 9 + length);
        pending = pending.subarray(9 + length);
        if (type === 4 && (flags & 1) === 0) {
          const ack = rawFrame(4, 1, 0);
          if (settingsSeen++ === 0 && ackDelayMs > 0) setTimeout(() => socket.write(ack), ackDelayMs);
          else socket.write(ack);
        } else if (type === 7) {
          result.goaway = true;
          finish();
        } else if (type === 3) {
          result.rstStream = true;
          finish();
        } else if (type === 0 && stream === 1) {
          result.data = Buffer.concat([result.data, payload]);
        } else if (type === 1 && stream === 1 && (flags & 1) !== 0) {
          result.trailersEndStream = true;
          // Give a late protocol error (the session's answer to a stray ACK) time to show.
          setTimeout(() => finish(), ackDelayMs + 200);
        }
      }
    });
    socket.on("error", (err) => finish(err));
  });
}
