/**
 * The lean unary path against grpc-js itself: two gRPC servers with the same services (real
 * `unary()` adapters, metrics, learner gate), one with the lean path installed, get the same raw
 * HTTP/2 requests (well-formed calls, errors, oversized, missing, extra and undecodable messages,
 * compression flags and encodings, deadlines, odd metadata, unknown methods, a stream); their
 * answers must match frame for frame (headers but `date`, DATA bytes, trailers, resets), and so
 * must their metric counts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import zlib from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  KVService, LeaseService, PutRequest, RangeRequest, WatchService, LeaseGrantRequest,
  type PutResponse, type RangeResponse, type WatchRequest,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import { unary } from "../../../src/api/v3rpc/grpc-util.js";
import { GrpcMetrics } from "../../../src/api/v3rpc/grpc-metrics.js";
import { gateMember } from "../../../src/api/v3rpc/member-gate.js";
import { installLeanUnary, LeanUnaryServer, LEAN_UNARY_PATHS } from "../../../src/api/v3rpc/lean-unary.js";
import type { ServiceEntry } from "../../../src/api/v3rpc/service-registry.js";
import { ServerError } from "../../../src/server/errors.js";
import { frame, sendRaw, serveOnLoopback, type RawRequest } from "./raw-grpc.js";

const MAX_RECEIVE = 1024;
const header = { clusterId: 1n, memberId: 2n, revision: 3n, raftTerm: 4n };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The services both servers serve: what each handler does depends on the request's key. */
function services(metrics: GrpcMetrics): ServiceEntry[] {
  const kv = {
    range: unary(async (req: RangeRequest, ctx): Promise<RangeResponse> => ({
      header,
      kvs: [
        { key: Buffer.from("token"), value: Buffer.from(ctx.token ?? "<none>"), createRevision: 0n, modRevision: 0n, version: 0n, lease: 0n },
        { key: Buffer.from("peer"), value: Buffer.from(String(/^127\.0\.0\.1:\d+$/.test(ctx.remoteAddress))), createRevision: 0n, modRevision: 0n, version: 0n, lease: 0n },
        { key: Buffer.from("key"), value: req.key, createRevision: 0n, modRevision: 0n, version: 0n, lease: 0n },
      ],
      more: false,
      count: 3n,
    })),
    put: unary(async (req: PutRequest): Promise<PutResponse> => {
      const key = req.key.toString();
      if (key === "nospace") throw new ServerError("NoSpace");
      if (key === "boom") throw new Error("boom é ü 100% <x>");
      if (key === "slow") await sleep(400);
      return { header, prevKv: undefined };
    }),
  };
  const lease = {
    leaseGrant: unary(async (req: LeaseGrantRequest) => ({ header, ID: req.ID === 0n ? 42n : req.ID, TTL: req.TTL, error: "" })),
  };
  const watch = {
    watch: (call: grpc.ServerDuplexStream<WatchRequest, unknown>) => {
      call.on("data", () => call.write({ header, watchId: 1n, created: true, canceled: false, compactRevision: 0n, cancelReason: "", fragment: false, events: [] }));
      call.on("end", () => call.end());
    },
  };
  const learner = { isLearner: false, hasLeader: true, onLeaderLongLost: () => () => false };
  const entry = (definition: ServiceDefinition, implementation: UntypedServiceImplementation): ServiceEntry => ({
    definition,
    implementation: gateMember(definition, metrics.instrument(definition, implementation), learner),
  });
  return [
    entry(KVService as ServiceDefinition, kv as unknown as UntypedServiceImplementation),
    entry(LeaseService as ServiceDefinition, lease as unknown as UntypedServiceImplementation),
    entry(WatchService as ServiceDefinition, watch as unknown as UntypedServiceImplementation),
  ];
}

interface Side {
  port: number;
  lean?: LeanUnaryServer;
  metrics: GrpcMetrics;
  close(): Promise<void>;
}

async function startSide(lean: boolean): Promise<Side> {
  const metrics = new GrpcMetrics({ extensive: false });
  const registry = services(metrics);
  const leanServer = lean ? new LeanUnaryServer({ maxReceiveMessageBytes: MAX_RECEIVE, maxSendMessageBytes: 2 ** 31 - 1 }, { services: registry }) : undefined;
  const served = await serveOnLoopback(registry, MAX_RECEIVE, (server) => {
    if (leanServer !== undefined) expect(installLeanUnary(server, leanServer)).toEqual({ installed: true, servers: 1 });
  });
  return {
    port: served.port,
    lean: leanServer,
    metrics,
    close: () => served.close(),
  };
}

type Request = RawRequest;

const send = sendRaw;

const put = (key: string, value = "v") => PutRequest.encode(PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) })).finish();
const range = (key: string) => RangeRequest.encode(RangeRequest.fromPartial({ key: Buffer.from(key) })).finish();

const CASES: Record<string, Request> = {
  "put ok": { path: "/etcdserverpb.KV/Put", writes: [frame(put("ok"))] },
  "range with token and client version": { path: "/etcdserverpb.KV/Range", headers: { token: "abc.123", "client-api-version": "3.4" }, writes: [frame(range("k"))] },
  "range without token": { path: "/etcdserverpb.KV/Range", writes: [frame(range("k"))] },
  "range, token with a non-ASCII byte": { path: "/etcdserverpb.KV/Range", headers: { token: "t\u00e9" }, writes: [frame(range("k"))] },
  "etcd error": { path: "/etcdserverpb.KV/Put", writes: [frame(put("nospace"))] },
  "unknown error, text to percent-encode": { path: "/etcdserverpb.KV/Put", writes: [frame(put("boom"))] },
  "lease grant": { path: "/etcdserverpb.Lease/LeaseGrant", writes: [frame(LeaseGrantRequest.encode({ TTL: 5n, ID: 0n }).finish())] },
  "message over the limit": { path: "/etcdserverpb.KV/Put", writes: [frame(put("big", "x".repeat(MAX_RECEIVE)))] },
  "prefix over the limit, body never sent": { path: "/etcdserverpb.KV/Put", writes: [Buffer.from([0, 0, 1, 0, 0])] },
  "two messages in one write": { path: "/etcdserverpb.KV/Put", writes: [Buffer.concat([frame(put("a")), frame(put("b"))])] },
  "two messages in two writes": { path: "/etcdserverpb.KV/Put", writes: [frame(put("a")), frame(put("b"))] },
  "no message": { path: "/etcdserverpb.KV/Put", writes: [] },
  "a partial message": { path: "/etcdserverpb.KV/Put", writes: [frame(put("a")).subarray(0, 7)] },
  "message byte by byte": { path: "/etcdserverpb.KV/Range", writes: [...frame(range("bytes"))].map((b) => Buffer.from([b])) },
  "undecodable message": { path: "/etcdserverpb.KV/Put", writes: [frame(Buffer.from([0xff, 0xff, 0xff]))] },
  "second message undecodable": { path: "/etcdserverpb.KV/Put", writes: [Buffer.concat([frame(put("a")), frame(Buffer.from([0xff, 0xff, 0xff]))])] },
  "compressed flag without an encoding": { path: "/etcdserverpb.KV/Put", writes: [frame(put("ok"), 1)] },
  "gzip": { path: "/etcdserverpb.KV/Range", headers: { "grpc-encoding": "gzip" }, writes: [frame(zlib.gzipSync(range("gz")), 1)] },
  "unknown encoding": { path: "/etcdserverpb.KV/Range", headers: { "grpc-encoding": "snappy" }, writes: [frame(range("k"), 1)] },
  "identity encoding": { path: "/etcdserverpb.KV/Range", headers: { "grpc-encoding": "identity" }, writes: [frame(range("k"))] },
  "deadline passes": { path: "/etcdserverpb.KV/Put", headers: { "grpc-timeout": "100m" }, writes: [frame(put("slow"))] },
  "deadline kept": { path: "/etcdserverpb.KV/Put", headers: { "grpc-timeout": "5S" }, writes: [frame(put("ok"))] },
  "deadline in nanoseconds": { path: "/etcdserverpb.KV/Put", headers: { "grpc-timeout": "99999999n" }, writes: [frame(put("slow"))] },
  "an hour count that overflows": { path: "/etcdserverpb.KV/Put", headers: { "grpc-timeout": "99999999H" }, writes: [frame(put("ok"))] },
  "invalid grpc-timeout": { path: "/etcdserverpb.KV/Put", headers: { "grpc-timeout": "soon" }, writes: [frame(put("ok"))] },
  "not grpc": { path: "/etcdserverpb.KV/Put", headers: { "content-type": "application/json" }, writes: [frame(put("ok"))] },
  "a method whose handler is missing": { path: "/etcdserverpb.KV/DeleteRange", writes: [frame(put("ok"))] },
  "unknown method": { path: "/etcdserverpb.KV/Nope", writes: [frame(put("ok"))] },
  "a stream": { path: "/etcdserverpb.Watch/Watch", writes: [frame(Buffer.alloc(0)), frame(Buffer.alloc(0))] },
};

describe("lean unary path", () => {
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

  it("serves the hot KV and Lease methods", () => {
    expect(LEAN_UNARY_PATHS).toEqual(expect.arrayContaining([
      "/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn",
      "/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke", "/etcdserverpb.Lease/LeaseTimeToLive",
    ]));
  });

  /** Cases grpc-js serves on the lean side too (not a lean method, or not a plain call). */
  const DELEGATED = new Set(["gzip", "unknown encoding", "invalid grpc-timeout", "not grpc", "unknown method", "a stream"]);

  for (const [name, request] of Object.entries(CASES)) {
    it(`answers as grpc-js: ${name}`, async () => {
      const before = lean.lean!.taken;
      const [want, got] = await Promise.all([send(plain.port, request), send(lean.port, request)]);
      expect(got).toEqual(want);
      expect(lean.lean!.taken - before).toBe(DELEGATED.has(name) ? 0 : 1);
    });
  }

  it("answers a grpc-js client alike, and the metrics count alike", async () => {
    const Client = grpc.makeGenericClientConstructor(KVService as unknown as grpc.ServiceDefinition, "KV");
    const call = (port: number, method: string, req: unknown, metadata = new grpc.Metadata()) =>
      new Promise<{ err?: { code: number; details: string }; value?: unknown }>((resolve) => {
        const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
        (client as unknown as Record<string, Function>)[method]!(req, metadata, (err: grpc.ServiceError | null, value: unknown) => {
          client.close();
          resolve(err ? { err: { code: err.code, details: err.details } } : { value });
        });
      });
    const md = new grpc.Metadata();
    md.set("token", "tok");
    for (const [method, req] of [["put", PutRequest.fromPartial({ key: Buffer.from("ok") })], ["put", PutRequest.fromPartial({ key: Buffer.from("nospace") })], ["range", RangeRequest.fromPartial({ key: Buffer.from("k") })]] as const) {
      const [want, got] = await Promise.all([call(plain.port, method, req, md), call(lean.port, method, req, md)]);
      expect(got).toEqual(want);
    }
    await sleep(500); // the slow handlers of the deadline cases finish
    const counts = (m: GrpcMetrics) => ({
      methods: m.methods.map((c) => [c.service, c.method, c.started, c.received, c.sent, [...c.handled]]),
      versions: m.clientRequests(),
    });
    expect(counts(lean.metrics)).toEqual(counts(plain.metrics));
  });
});
