/**
 * The lean LeaseKeepAlive stream against grpc-js itself: two gRPC servers with the same registry
 * (the real lease service over a scripted member, metrics, learner gate), one with the lean
 * paths installed, get the same raw HTTP/2 request sequences (keep-alives one by one and
 * pipelined, unknown leases, errors before and after answers, half-close before, during and
 * after requests, client cancels, deadlines, oversized, undecodable and partial messages); their
 * answers must match frame for frame (headers but `date`, DATA bytes, trailers, resets), and so
 * must their metric counts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import zlib from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { LeaseKeepAliveRequest, LeaseService, type LeaseKeepAliveResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { GrpcMetrics } from "../../../src/api/v3rpc/grpc-metrics.js";
import { gateMember } from "../../../src/api/v3rpc/member-gate.js";
import { leaseService } from "../../../src/api/v3rpc/lease-service.js";
import { LeanUnaryServer } from "../../../src/api/v3rpc/lean-unary.js";
import { LEAN_STREAM_PATHS, LeanStreamServer } from "../../../src/api/v3rpc/lean-stream.js";
import { installLeanPath } from "../../../src/api/v3rpc/lean-path.js";
import type { ServiceEntry } from "../../../src/api/v3rpc/service-registry.js";
import type { EtcdServer } from "../../../src/server/etcd-server.js";
import { frame, sendRaw, serveOnLoopback, type RawAnswer, type RawRequest } from "./raw-grpc.js";
import { ServerError } from "../../../src/server/errors.js";
import { nullLogger } from "../../../src/pkg/logger.js";

const MAX_RECEIVE = 1024;
const PATH = "/etcdserverpb.Lease/LeaseKeepAlive";
const header = { clusterId: 1n, memberId: 2n, revision: 3n, raftTerm: 4n };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The member behind the lease service: what a renew does depends on the lease ID. */
const member = {
  header: () => header,
  async leaseRenew(id: bigint): Promise<number> {
    switch (id) {
      case 1n: return 10;
      case 2n: return 0; // not found, as the member answers it
      case 3n: throw new ServerError("NotLeader");
      case 4n: await sleep(300); return 10;
      case 5n: throw new Error("boom é ü 100% <x>");
      case 6n: await sleep(50); throw new ServerError("LeaderChanged");
      default: return Number(id);
    }
  },
} as unknown as EtcdServer;

interface Side {
  port: number;
  lean?: LeanStreamServer;
  metrics: GrpcMetrics;
  learner: { isLearner: boolean };
  close(): Promise<void>;
}

async function startSide(lean: boolean): Promise<Side> {
  const metrics = new GrpcMetrics({ extensive: false });
  const learner = { isLearner: false, hasLeader: true, onLeaderLongLost: () => () => false };
  const definition = LeaseService as ServiceDefinition;
  const implementation = leaseService(member, nullLogger) as unknown as UntypedServiceImplementation;
  const registry: ServiceEntry[] = [{ definition, implementation: gateMember(definition, metrics.instrument(definition, implementation), learner) }];
  const limits = { maxReceiveMessageBytes: MAX_RECEIVE, maxSendMessageBytes: 2 ** 31 - 1 };
  const leanStreams = lean ? new LeanStreamServer(limits, { services: registry }) : undefined;
  const served = await serveOnLoopback(registry, MAX_RECEIVE, (server) => {
    if (leanStreams !== undefined) {
      expect(installLeanPath(server, [new LeanUnaryServer(limits, { services: registry }), leanStreams])).toEqual({ installed: true, servers: 1 });
    }
  });
  return {
    port: served.port,
    lean: leanStreams,
    metrics,
    learner,
    close: () => served.close(),
  };
}

const ka = (id: bigint) => frame(LeaseKeepAliveRequest.encode({ ID: id }).finish());

type Request = Omit<RawRequest, "path">;
type Answer = RawAnswer;

function send(port: number, request: Request, session?: http2.ClientHttp2Session): Promise<Answer> {
  return sendRaw(port, { gapMs: 5, ...request, path: PATH }, session);
}

const oversized = Buffer.concat([Buffer.from([0, 0, 0, 4, 1]), Buffer.alloc(MAX_RECEIVE + 1)]);
const garbage = frame(Buffer.from([0xff, 0xff, 0xff]));

const CASES: Record<string, Request> = {
  "one keep-alive, half-close": { writes: [ka(1n)] },
  "KeepAliveOnce: a request, cancel at the answer": { writes: [ka(1n)], end: false, cancelAtData: true },
  "unknown lease (TTL 0)": { writes: [ka(2n)] },
  "unknown lease, KeepAliveOnce": { writes: [ka(2n)], end: false, cancelAtData: true },
  "two requests in one write": { writes: [Buffer.concat([ka(1n), ka(2n)])] },
  "two requests in two writes": { writes: [ka(1n), ka(2n)] },
  "twenty requests in one write": { writes: [Buffer.concat(Array.from({ length: 20 }, (_, i) => ka(BigInt(100 + i))))] },
  "half-close before any request": { writes: [] },
  "no half-close, the client cancels": { writes: [ka(1n)], end: false, cancelAfterMs: 100 },
  "cancel with a request in flight": { writes: [ka(4n)], end: false, cancelAfterMs: 50 },
  "half-close with a request in flight": { writes: [ka(4n)] },
  "half-close with requests in flight, answered in order": { writes: [Buffer.concat([ka(4n), ka(1n), ka(4n)])] },
  "not leader": { writes: [ka(3n)] },
  "not leader, no half-close": { writes: [ka(3n)], end: false, cancelAfterMs: 200 },
  "an error after an answer": { writes: [ka(1n), ka(3n)] },
  "an error right behind an answer": { writes: [Buffer.concat([ka(1n), ka(3n)])] },
  "an error before a request in the same write": { writes: [Buffer.concat([ka(3n), ka(1n)])] },
  "a late error with a request queued behind": { writes: [Buffer.concat([ka(6n), ka(1n)])] },
  "a write after the error's end, an answer in flight": { writes: [Buffer.concat([ka(1n), ka(3n), ka(1n)])], end: false, cancelAfterMs: 300 },
  "an unknown error, text to percent-encode": { writes: [ka(5n)] },
  "message over the limit": { writes: [oversized] },
  "prefix over the limit, body never sent": { writes: [Buffer.from([0, 0, 1, 0, 0])], end: false, cancelAfterMs: 100 },
  "message over the limit after an answer": { writes: [ka(1n), oversized] },
  "a request and an oversized prefix in one write": { writes: [Buffer.concat([ka(1n), Buffer.from([0, 0, 1, 0, 0])])] },
  "undecodable message": { writes: [garbage] },
  "undecodable after a request in one write": { writes: [Buffer.concat([ka(1n), garbage])] },
  "undecodable before a request in one write": { writes: [Buffer.concat([garbage, ka(1n)])] },
  "undecodable after an answer": { writes: [ka(1n), garbage] },
  "a partial message, then half-close": { writes: [ka(1n).subarray(0, 3)] },
  "a message byte by byte": { writes: [...ka(1n)].map((b) => Buffer.from([b])), gapMs: 1 },
  "compressed flag without an encoding": { writes: [frame(LeaseKeepAliveRequest.encode({ ID: 1n }).finish(), 1)] },
  "deadline passes with a request in flight": { headers: { "grpc-timeout": "100m" }, writes: [ka(4n)], end: false, cancelAfterMs: 400 },
  "deadline passes after an answer": { headers: { "grpc-timeout": "100m" }, writes: [ka(1n)], end: false, cancelAfterMs: 300 },
  "deadline passes, no request": { headers: { "grpc-timeout": "50m" }, writes: [], end: false, cancelAfterMs: 300 },
  "deadline kept": { headers: { "grpc-timeout": "5S" }, writes: [ka(1n)] },
  "a deadline already passed": { headers: { "grpc-timeout": "99999999H" }, writes: [ka(1n)] },
  "token and client version metadata": { headers: { token: "abc.123", "client-api-version": "3.4" }, writes: [ka(1n)] },
  "gzip": { headers: { "grpc-encoding": "gzip" }, writes: [frame(zlib.gzipSync(LeaseKeepAliveRequest.encode({ ID: 1n }).finish()), 1)] },
  "invalid grpc-timeout": { headers: { "grpc-timeout": "soon" }, writes: [ka(1n)] },
};

/** Cases grpc-js serves on the lean side too (not a plain call). */
const DELEGATED = new Set(["gzip", "invalid grpc-timeout"]);

describe("lean LeaseKeepAlive stream", { timeout: 8000 }, () => {
  let plain: Side;
  let lean: Side;
  beforeAll(async () => {
    plain = await startSide(false);
    lean = await startSide(true);
  });
  afterAll(async () => {
    await plain?.close();
    await lean?.close();
  });

  it("serves LeaseKeepAlive", () => {
    expect(LEAN_STREAM_PATHS).toContain(PATH);
    expect(lean.lean!.paths).toEqual([PATH]);
  });

  /** The keep-alive method's counts: started, received, sent, handled by code. */
  const cells = (side: Side) => {
    const c = side.metrics.methods.find((m) => m.method === "LeaseKeepAlive")!;
    return [c.started, c.received, c.sent, ...c.handled];
  };
  const delta = (after: number[], before: number[]) => after.map((v, i) => v - before[i]!);

  for (const [name, request] of Object.entries(CASES)) {
    it(`answers as grpc-js: ${name}`, async () => {
      const before = lean.lean!.taken;
      const [plainBefore, leanBefore] = [cells(plain), cells(lean)];
      const [want, got] = await Promise.all([send(plain.port, request), send(lean.port, request)]);
      expect(got).toEqual(want);
      expect(lean.lean!.taken - before).toBe(DELEGATED.has(name) ? 0 : 1);
      await sleep(20);
      expect(delta(cells(lean), leanBefore)).toEqual(delta(cells(plain), plainBefore));
    });
  }

  it("answers as grpc-js: many KeepAliveOnce in a row on one connection", async () => {
    const run = async (port: number) => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const out: Answer[] = [];
      for (let i = 0; i < 50; i++) out.push(await send(port, { writes: [ka(BigInt(i % 3 === 0 ? 2 : 1))], end: false, cancelAtData: true }, session));
      session.close();
      return out;
    };
    const [want, got] = await Promise.all([run(plain.port), run(lean.port)]);
    expect(got).toEqual(want);
  });

  it("answers as grpc-js: forty streams at once on one connection, some delegated", async () => {
    const requests: Request[] = Array.from({ length: 40 }, (_, i) =>
      i % 5 === 4 ? CASES["gzip"]! : i % 3 === 0 ? { writes: [ka(BigInt(i))], end: false, cancelAtData: true } : { writes: [ka(1n), ka(2n)] });
    const run = async (port: number) => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const out = await Promise.all(requests.map((r) => send(port, r, session)));
      session.close();
      return out;
    };
    const [want, got] = await Promise.all([run(plain.port), run(lean.port)]);
    expect(got).toEqual(want);
  });

  it("answers as grpc-js: a learner refuses the stream", async () => {
    plain.learner.isLearner = lean.learner.isLearner = true;
    try {
      const [want, got] = await Promise.all([send(plain.port, { writes: [ka(1n)] }), send(lean.port, { writes: [ka(1n)] })]);
      expect(got).toEqual(want);
      expect(got.headers["grpc-status"]).toBe("14");
    } finally {
      plain.learner.isLearner = lean.learner.isLearner = false;
    }
  });

  it("answers a grpc-js client alike, and the metrics count alike", async () => {
    const Client = grpc.makeGenericClientConstructor(LeaseService as unknown as grpc.ServiceDefinition, "Lease");
    const converse = (port: number, ids: bigint[], how: "end" | "cancel") =>
      new Promise<{ responses: unknown[]; status?: { code: number; details: string } }>((resolve) => {
        const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
        const md = new grpc.Metadata();
        md.set("token", "tok");
        const call = (client as unknown as { leaseKeepAlive(md: grpc.Metadata): grpc.ClientDuplexStream<unknown, LeaseKeepAliveResponse> }).leaseKeepAlive(md);
        const responses: unknown[] = [];
        call.on("data", (r: LeaseKeepAliveResponse) => {
          responses.push(r);
          if (how === "cancel" && responses.length === ids.length) call.cancel();
        });
        call.on("error", () => {});
        call.on("status", (s: grpc.StatusObject) => {
          client.close();
          resolve({ responses, status: { code: s.code, details: s.details } });
        });
        for (const id of ids) call.write({ ID: id });
        if (how === "end") call.end();
      });
    for (const [ids, how] of [[[1n, 2n], "end"], [[1n], "cancel"], [[1n, 3n], "end"], [[2n, 1n, 100n], "cancel"]] as const) {
      const [want, got] = await Promise.all([converse(plain.port, [...ids], how), converse(lean.port, [...ids], how)]);
      expect(got).toEqual(want);
    }
    await sleep(500); // the slow renews of the cases above finish
    const counts = (m: GrpcMetrics) => ({
      methods: m.methods.map((c) => [c.service, c.method, c.started, c.received, c.sent, [...c.handled]]),
      versions: m.clientRequests(),
    });
    expect(counts(lean.metrics)).toEqual(counts(plain.metrics));
  });
});
