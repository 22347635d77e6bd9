/**
 * The lean Watch stream against grpc-js itself: two gRPC servers with the same registry (the real
 * watch service, each over a real MVCC store of its own that the test writes to alike, with
 * metrics and the learner gate), one with the lean paths installed, get the same raw HTTP/2
 * request sequences (create and cancel, half-close (the stream stays), events one by one and many at once, two watchers, a
 * catch-up from history, fragments, progress requests, half-close, client resets, deadlines,
 * oversized and undecodable requests, a response over the send limit, a learner's refusal);
 * their answers must match frame for frame (headers but `date`, DATA bytes, trailers, resets),
 * and so must their metric counts. A client that stops reading must hold the server back (at
 * most a Writable's 16 messages wait on either) and get every event once it reads again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { WatchRequest, WatchResponse, WatchService } from "@etcd-ts/proto/etcdserverpb/rpc";
import { GrpcMetrics } from "../../../src/api/v3rpc/grpc-metrics.js";
import { gateMember } from "../../../src/api/v3rpc/member-gate.js";
import { gateState, type GateState } from "./gate-state.js";
import { watchService } from "../../../src/api/v3rpc/watch-service.js";
import { LeanUnaryServer } from "../../../src/api/v3rpc/lean-unary.js";
import { LEAN_STREAM_PATHS, LeanStreamServer } from "../../../src/api/v3rpc/lean-stream.js";
import { installLeanPath } from "../../../src/api/v3rpc/lean-path.js";
import type { ServiceEntry } from "../../../src/api/v3rpc/service-registry.js";
import type { EtcdServer } from "../../../src/server/etcd-server.js";
import { nullLogger } from "../../../src/pkg/logger.js";
import { Harness, tempDir } from "../../mvcc/helpers.js";
import { frame, sendRaw, serveOnLoopback, type RawAnswer, type RawRequest } from "./raw-grpc.js";

const MAX_RECEIVE = 1024;
/** The send limit: a catch-up response of the slow-reader case fits, two 600 KB events do not. */
const MAX_SEND = 1024 * 1024;
/** Responses of this many bytes or more are split for watchers that asked for fragments. */
const FRAGMENT_BYTES = 300;
const PATH = "/etcdserverpb.Watch/Watch";

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

interface Side {
  port: number;
  lean?: LeanStreamServer;
  metrics: GrpcMetrics;
  learner: GateState;
  store: Harness;
  /** Most messages written and not yet taken by the HTTP/2 stream at once, on any stream. */
  maxUnsent: number;
  close(): Promise<void>;
}

/** Counts each stream's unsent messages through the write callbacks (the Writable's length). */
function trackUnsent(side: { maxUnsent: number }, impl: UntypedServiceImplementation): UntypedServiceImplementation {
  return {
    watch: (call: grpc.ServerDuplexStream<WatchRequest, WatchResponse>) => {
      const write = call.write;
      let unsent = 0;
      call.write = function (this: unknown, message: WatchResponse) {
        unsent++;
        side.maxUnsent = Math.max(side.maxUnsent, unsent);
        return write.call(this, message, () => unsent--);
      } as typeof call.write;
      (impl.watch as (c: unknown) => void)(call);
    },
  };
}

async function startSide(lean: boolean): Promise<Side> {
  const dir = await tempDir();
  const store = await Harness.open(dir.dir);
  const member = {
    header: (revision?: number) => ({ clusterId: 1n, memberId: 2n, revision: BigInt(revision ?? store.store.currentRevision), raftTerm: 4n }),
    get store() {
      return store.store;
    },
    options: { maxRequestBytes: 1024 * 1024 },
    auth: { enabled: false },
    checkWatch: async () => undefined,
  } as unknown as EtcdServer;
  const metrics = new GrpcMetrics({ extensive: false });
  const learner = gateState();
  const side = { maxUnsent: 0 };
  const definition = WatchService as ServiceDefinition;
  const service = watchService(member, { progressNotifyIntervalMs: 0, fragmentBytesMax: FRAGMENT_BYTES }, nullLogger) as unknown as UntypedServiceImplementation;
  const implementation = gateMember(definition, metrics.instrument(definition, trackUnsent(side, service)), learner);
  const registry: ServiceEntry[] = [{ definition, implementation }];
  const limits = { maxReceiveMessageBytes: MAX_RECEIVE, maxSendMessageBytes: MAX_SEND };
  const leanStreams = lean ? new LeanStreamServer(limits, { services: registry }) : undefined;
  const served = await serveOnLoopback(registry, MAX_RECEIVE, (server) => {
    if (leanStreams !== undefined) {
      expect(installLeanPath(server, [new LeanUnaryServer(limits, { services: registry }), leanStreams])).toEqual({ installed: true, servers: 1 });
    }
  }, { "grpc.max_send_message_length": MAX_SEND });
  return Object.assign(side, {
    port: served.port,
    lean: leanStreams,
    metrics,
    learner,
    store,
    close: async () => {
      await served.close();
      await store.close();
      await dir.cleanup();
    },
  });
}

const encode = (req: Partial<WatchRequest>) => frame(WatchRequest.encode(req as WatchRequest).finish());
const B = (s: string) => Buffer.from(s);
function create(key: string, over: Partial<NonNullable<WatchRequest["createRequest"]>> = {}): Buffer {
  return encode({
    createRequest: { key: B(key), rangeEnd: Buffer.alloc(0), startRevision: 0n, progressNotify: false, filters: [], prevKv: false, watchId: 0n, fragment: false, ...over },
  });
}
const prefix = (key: string): Partial<NonNullable<WatchRequest["createRequest"]>> => ({ rangeEnd: B(key.slice(0, -1) + String.fromCharCode(key.charCodeAt(key.length - 1) + 1)) });
const cancel = (id: bigint) => encode({ cancelRequest: { watchId: id } });
const progress = () => encode({ progressRequest: {} });

/** A raw request whose hook writes to the side's own store. */
type Request = Omit<RawRequest, "path" | "between"> & { between?: (store: Harness, i: number) => Promise<void> };

function send(side: Side, request: Request, session?: http2.ClientHttp2Session): Promise<RawAnswer> {
  const { between, ...rest } = request;
  return sendRaw(side.port, {
    // A half-closed watch stream stays open (as etcd's): the client resets it after a while.
    gapMs: 20, cancelAfterMs: 100, ...rest, path: PATH,
    ...(between !== undefined ? { between: (i: number) => between(side.store, i) } : {}),
  }, session);
}

/** `n` puts of `key`+i, one revision each. */
async function puts(h: Harness, key: string, n: number, value = "v"): Promise<void> {
  for (let i = 0; i < n; i++) await h.put(`${key}${i}`, value);
}

/** One txn putting `n` keys (one response, `n` events). */
async function txnPuts(h: Harness, key: string, n: number, value: string): Promise<void> {
  const txn = h.store.write();
  for (let i = 0; i < n; i++) txn.put(B(`${key}${i}`), B(value), 0n);
  await h.commit(txn);
}

/**
 * Watches `key` (a prefix) from a raw stream that stops reading after the created answer, until
 * `resume`; records the events and the trailers.
 */
function slowReader(side: Side, key: string, headers: Record<string, string> = {}) {
  const session = http2.connect(`http://127.0.0.1:${side.port}`);
  const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", ...headers });
  const chunks: Buffer[] = [];
  let created = false;
  let trailers: Record<string, unknown> | undefined;
  stream.on("data", (d: Buffer) => {
    chunks.push(d);
    if (!created) {
      created = true;
      stream.pause();
    }
  });
  stream.on("trailers", (t) => (trailers = { ...t }));
  stream.on("error", () => {});
  let closed: number | undefined;
  stream.on("close", () => (closed = stream.rstCode ?? 0));
  stream.write(create(key, prefix(key)));
  return {
    created: () => created,
    trailers: () => trailers,
    /** The stream's reset code once it closed (0: it ended). */
    closed: () => closed,
    resume: () => stream.resume(),
    /** The events received so far, as key@revision. */
    events: () => {
      const out: string[] = [];
      const all = Buffer.concat(chunks);
      for (let at = 0; at + 5 <= all.length;) {
        const length = all.readUInt32BE(at + 1);
        if (at + 5 + length > all.length) break;
        const r = WatchResponse.decode(all.subarray(at + 5, at + 5 + length));
        for (const e of r.events) out.push(`${e.kv!.key.toString()}@${e.kv!.modRevision}`);
        at += 5 + length;
      }
      return out;
    },
    close: () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    },
  };
}

const oversized = Buffer.concat([Buffer.from([0, 0, 0, 4, 1]), Buffer.alloc(MAX_RECEIVE + 1)]);
const garbage = frame(Buffer.from([0xff, 0xff, 0xff]));
const after0 = (fn: (h: Harness) => Promise<void>) => async (h: Harness, i: number) => {
  if (i === 0) await fn(h);
};

const CASES: Record<string, Request> = {
  "half-close at once (the stream stays until the client resets)": { writes: [], cancelAfterMs: 100 },
  "create, half-close, events after it": {
    writes: [create("a")],
    cancelAfterMs: 300,
    between: after0(async (h) => void setTimeout(() => void h.put("a", "after"), 20)),
  },
  "create, events, cancel, half-close": { writes: [create("a"), cancel(0n)], between: after0((h) => puts(h, "a", 1).then(() => h.put("a", "x")).then(() => h.del("a")).then(() => undefined)) },
  "create, an event, no half-close, the client resets": { writes: [create("b")], end: false, cancelAfterMs: 100, between: after0((h) => h.put("b", "1").then(() => undefined)) },
  "create, progress, cancel of an unknown watch": { writes: [create("c"), progress(), cancel(42n)] },
  "three creates in one write, two IDs chosen, one taken": {
    writes: [Buffer.concat([create("d"), create("d", { watchId: 7n }), create("d", { watchId: 7n }), create("d")]), cancel(1n)],
    between: after0((h) => h.put("d", "1").then(() => undefined)),
  },
  "two watchers, fifty events each (fan-out)": { writes: [Buffer.concat([create("e/", prefix("e/")), create("e/", prefix("e/"))])], between: after0((h) => puts(h, "e/", 50)) },
  "a txn of twenty keys (one response, many events)": { writes: [create("f/", prefix("f/"))], between: after0((h) => txnPuts(h, "f/", 20, "x")) },
  "fragments": { writes: [create("g/", { ...prefix("g/"), fragment: true })], between: after0((h) => txnPuts(h, "g/", 12, "y".repeat(60))) },
  "catch-up from history, prev kv": { writes: [create("h/", { ...prefix("h/"), startRevision: 1n, prevKv: true })] },
  "a response over the send limit": { writes: [create("i/", prefix("i/")), progress()], between: after0((h) => txnPuts(h, "i/", 2, "z".repeat(600_000))) },
  "a watch with the client resetting at the created answer": { writes: [create("j")], end: false, cancelAtData: true },
  "deadline passes with a watch open": { headers: { "grpc-timeout": "150m" }, writes: [create("k")], end: false, cancelAfterMs: 400 },
  "deadline passes, no request": { headers: { "grpc-timeout": "50m" }, writes: [], end: false, cancelAfterMs: 300 },
  "deadline kept": { headers: { "grpc-timeout": "5S" }, writes: [create("k")] },
  "request over the limit": { writes: [oversized] },
  "request over the limit after a create": { writes: [create("l"), oversized] },
  "undecodable request": { writes: [garbage] },
  "undecodable after a create in one write": { writes: [Buffer.concat([create("m"), garbage])] },
  "undecodable after an event": { writes: [create("m"), garbage], between: after0((h) => h.put("m", "1").then(() => undefined)) },
  "a partial request, then half-close": { writes: [create("n").subarray(0, 6)] },
};

describe("lean Watch stream", { timeout: 20_000 }, () => {
  let plain: Side;
  let lean: Side;
  beforeAll(async () => {
    plain = await startSide(false);
    lean = await startSide(true);
    // The same history on both sides (for the catch-up case).
    for (const side of [plain, lean]) {
      await side.store.put("h/1", "a");
      await side.store.put("h/2", "b");
      await side.store.put("h/1", "c");
    }
  });
  afterAll(async () => {
    await plain?.close();
    await lean?.close();
  });

  it("serves Watch", () => {
    expect(LEAN_STREAM_PATHS).toContain(PATH);
    expect(lean.lean!.paths).toEqual([PATH]);
  });

  /** The watch method's counts: started, received, sent, handled by code. */
  const cells = (side: Side) => {
    const c = side.metrics.methods.find((m) => m.method === "Watch")!;
    return [c.started, c.received, c.sent, ...c.handled];
  };
  const delta = (after: number[], before: number[]) => after.map((v, i) => v - before[i]!);

  for (const [name, request] of Object.entries(CASES)) {
    it(`answers as grpc-js: ${name}`, async () => {
      const before = lean.lean!.taken;
      const [plainBefore, leanBefore] = [cells(plain), cells(lean)];
      const [want, got] = await Promise.all([send(plain, request), send(lean, request)]);
      expect(got).toEqual(want);
      expect(want.stuck).toBeUndefined();
      if (name.includes("events after it")) expect(got.data).toContain(B("after").toString("hex"));
      expect(lean.lean!.taken - before).toBe(1);
      await sleep(20);
      expect(delta(cells(lean), leanBefore)).toEqual(delta(cells(plain), plainBefore));
      // Every watcher of the stream is gone with it.
      expect(lean.store.store.watcherCounts()).toEqual(plain.store.store.watcherCounts());
      expect(lean.store.store.watcherCounts()).toEqual({ synced: 0, unsynced: 0 });
    });
  }

  it("answers as grpc-js: ten watch streams at once on one connection", async () => {
    const requests: Request[] = Array.from({ length: 10 }, (_, i) => ({ writes: [create(`p${i}`), cancel(0n)] }));
    const run = async (side: Side) => {
      const session = http2.connect(`http://127.0.0.1:${side.port}`);
      const out = await Promise.all(requests.map((r) => send(side, r, session)));
      session.close();
      return out;
    };
    const [want, got] = await Promise.all([run(plain), run(lean)]);
    expect(got).toEqual(want);
  });

  it("answers as grpc-js: a learner refuses the stream", async () => {
    plain.learner.isLearner = lean.learner.isLearner = true;
    try {
      const [want, got] = await Promise.all([send(plain, { writes: [create("q")] }), send(lean, { writes: [create("q")] })]);
      expect(got).toEqual(want);
      expect(got.headers["grpc-status"]).toBe("14");
    } finally {
      plain.learner.isLearner = lean.learner.isLearner = false;
    }
  });

  it("answers as grpc-js: a stream that requires a leader is refused without one, and ended once the leader is long lost", async () => {
    const requireLeader = { headers: { hasleader: "true" } };
    try {
      // Refused at once while there is no leader.
      plain.learner.hasLeader = lean.learner.hasLeader = false;
      const [want, got] = await Promise.all([send(plain, { ...requireLeader, writes: [create("q")] }), send(lean, { ...requireLeader, writes: [create("q")] })]);
      expect(got).toEqual(want);
      expect(got.headers["grpc-status"]).toBe("14");
      expect(got.headers["grpc-message"]).toBe("etcdserver:%20no%20leader");
      // Without the metadata the same stream is served.
      const [servedPlain, servedLean] = await Promise.all([send(plain, { writes: [create("q")], cancelAfterMs: 50 }), send(lean, { writes: [create("q")], cancelAfterMs: 50 })]);
      expect(servedLean).toEqual(servedPlain);
      expect(servedLean.data.length).toBeGreaterThan(0);
      // Open with a leader, never half-closed (as a watching client): ended with "no leader" when it is long lost.
      plain.learner.hasLeader = lean.learner.hasLeader = true;
      const open = (side: Side) =>
        send(side, { ...requireLeader, writes: [create("q")], end: false, cancelAfterMs: 1000, between: async () => {
          side.learner.loseLeaderLong();
        } });
      const [wantEnded, gotEnded] = await Promise.all([open(plain), open(lean)]);
      expect(gotEnded).toEqual(wantEnded);
      expect(gotEnded.stuck).toBeUndefined();
      expect(gotEnded.trailers?.["grpc-status"]).toBe("14");
      expect(gotEnded.trailers?.["grpc-message"]).toBe("etcdserver:%20no%20leader");
    } finally {
      plain.learner.hasLeader = lean.learner.hasLeader = true;
    }
  });

  it("holds a client that stops reading to a Writable's buffer, and catches it up when it reads again", async () => {
    const EVENTS = 400;
    const value = "w".repeat(2000);
    const sides = [plain, lean];
    for (const side of sides) side.maxUnsent = 0;
    const readers = sides.map((side) => slowReader(side, "s/"));
    try {
      await until(() => readers.every((r) => r.created()), "the watches");
      const sentBefore = sides.map((s) => cells(s)[2]!);
      await Promise.all(sides.map((s) => puts(s.store, "s/", EVENTS, value)));
      await sleep(300);
      // Flow control held the server back: far fewer responses went than events happened, and
      // at most the Writable's 16 waited on the server.
      const sentPaused = sides.map((s, i) => cells(s)[2]! - sentBefore[i]!);
      for (const n of sentPaused) expect(n).toBeLessThan(EVENTS / 2);
      for (const s of sides) expect(s.maxUnsent).toBeLessThanOrEqual(16);
      expect(lean.maxUnsent).toBe(plain.maxUnsent);
      for (const r of readers) r.resume();
      await until(() => readers.every((r) => r.events().length === EVENTS), "every event", 15_000).catch((e: Error) => {
        throw new Error(`${e.message}: events received ${readers.map((r) => r.events().length).join(", ")} of ${EVENTS}`);
      });
      const want = Array.from({ length: EVENTS }, (_, i) => `s/${i}`);
      for (const r of readers) expect(r.events().map((e) => e.split("@")[0])).toEqual(want);
      expect(readers[1]!.events()).toEqual(readers[0]!.events());
    } finally {
      for (const r of readers) r.close();
    }
    await until(() => lean.store.store.watcherCounts().synced + lean.store.store.watcherCounts().unsynced === 0, "the watchers cancelled");
  });

  it("a status that cuts a backlog short follows the messages written before it (grpc-js's stream hangs)", async () => {
    // The one documented difference of a pipelined stream: a deadline passes while a client that
    // stopped reading holds events back. Once it reads again, the lean stream sends every event
    // written before the deadline, then DEADLINE_EXCEEDED; grpc-js sends what its HTTP/2 stream
    // held, then its next buffered write fails (written after the stream's end) and the stream
    // is left with no status at all until the client goes.
    const sides = [plain, lean];
    const readers = sides.map((side) => slowReader(side, "u/", { "grpc-timeout": "1S" }));
    try {
      await until(() => readers.every((r) => r.created()), "the watches");
      await Promise.all(sides.map((s) => puts(s.store, "u/", 200, "u".repeat(2000))));
      await sleep(1200);
      for (const r of readers) r.resume();
      await until(() => readers[1]!.trailers() !== undefined, "the lean stream's status");
      await sleep(300);
      const [want, got] = readers.map((r) => r.events());
      expect(readers[1]!.trailers()).toMatchObject({ "grpc-status": "4", "grpc-message": "Deadline%20exceeded" });
      expect(got!.slice(0, want!.length)).toEqual(want);
      expect(got!.length).toBeGreaterThan(want!.length);
      expect(got!.length).toBeLessThanOrEqual(want!.length + 16);
      expect(readers[0]!.trailers()).toBeUndefined();
      expect(readers[0]!.closed()).toBeUndefined();
    } finally {
      for (const r of readers) r.close();
    }
  });

  it("answers a grpc-js client alike, and the metrics count alike", async () => {
    const Client = grpc.makeGenericClientConstructor(WatchService as unknown as grpc.ServiceDefinition, "Watch");
    const converse = (side: Side, key: string, how: "end" | "cancel") =>
      new Promise<{ responses: unknown[]; status?: { code: number; details: string } }>((resolve) => {
        const client = new Client(`127.0.0.1:${side.port}`, grpc.credentials.createInsecure());
        const call = (client as unknown as { watch(md: grpc.Metadata): grpc.ClientDuplexStream<unknown, WatchResponse> }).watch(new grpc.Metadata());
        const responses: unknown[] = [];
        call.on("data", (r: WatchResponse) => {
          responses.push(r);
          if (r.created) void puts(side.store, `${key}/`, 5);
          if (r.events.length > 0 && r.events[0]!.kv!.key.toString() === `${key}/4`) {
            if (how === "cancel") call.cancel();
            else call.end();
          }
        });
        call.on("error", () => {});
        call.on("status", (s: grpc.StatusObject) => {
          client.close();
          resolve({ responses, status: { code: s.code, details: s.details } });
        });
        call.write({ createRequest: { key: B(`${key}/`), rangeEnd: B(`${key}0`) } });
      });
    for (const [key, how] of [["t1", "end"], ["t2", "cancel"]] as const) {
      const [want, got] = await Promise.all([converse(plain, key, how), converse(lean, key, how)]);
      expect(got).toEqual(want);
    }
    await sleep(100);
    const counts = (m: GrpcMetrics) => ({
      methods: m.methods.map((c) => [c.service, c.method, c.started, c.received, c.sent, [...c.handled]]),
      versions: m.clientRequests(),
    });
    expect(counts(lean.metrics)).toEqual(counts(plain.metrics));
  });
});
