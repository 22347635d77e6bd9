/**
 * Out-of-range and odd field values on the v3 RPCs, differentially: the same gRPC requests (grpc-js
 * with the generated clients) go to a real etcd 3.4 and to etcd-ts, side by side, and each answer
 * (the response, or the status code and message) is recorded; the two transcripts must be equal.
 * These are the values etcdctl cannot send or checks itself: negative and huge revisions and
 * limits, sort options outside their enums, empty keys and odd range ends, lease IDs and TTLs,
 * member IDs, compaction of future revisions, watch IDs, fragment and progress requests.
 *
 * Both servers have the same identity (DIFF_IDENTITY); revisions agree because both run the same
 * writes in the same order. `SHOW_TRANSCRIPTS=1` prints etcd's transcript.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { ClusterClient, KVClient, LeaseClient, MaintenanceClient, WatchClient, type WatchRequest, type WatchResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { DIFF_IDENTITY } from "../etcdctl/diff-suite.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { sleep } from "../harness/processes.js";
import { closeSides, compareTranscripts } from "./sides.js";

const reference = referenceEtcdPath();
const B = (s: string): Buffer => Buffer.from(s, "utf8");
const I64_MAX = 9223372036854775807n;

/** One server, its clients and its transcript. */
class Side {
  readonly log: string[] = [];
  readonly kv: KVClient;
  readonly lease: LeaseClient;
  readonly cluster: ClusterClient;
  readonly maintenance: MaintenanceClient;
  readonly watch: WatchClient;

  constructor(readonly name: string, readonly member: Member) {
    const addr = `127.0.0.1:${member.clientPort}`;
    this.kv = new KVClient(addr, credentials.createInsecure());
    this.lease = new LeaseClient(addr, credentials.createInsecure());
    this.cluster = new ClusterClient(addr, credentials.createInsecure());
    this.maintenance = new MaintenanceClient(addr, credentials.createInsecure());
    this.watch = new WatchClient(addr, credentials.createInsecure());
  }

  close(): void {
    for (const c of [this.kv, this.lease, this.cluster, this.maintenance, this.watch]) c.close();
  }

  /** Calls a unary method and records its answer under `label`. */
  async call<Req, Res>(label: string, fn: (req: Req, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res | undefined> {
    const answer = await new Promise<{ ok: Res } | { code: number; details: string }>((resolve) => {
      fn(req, (err, res) => resolve(err ? { code: err.code, details: err.details } : { ok: res }));
    });
    this.log.push(`${label}: ${render("ok" in answer ? answer.ok : answer)}`);
    return "ok" in answer ? answer.ok : undefined;
  }

  /**
   * Opens a watch stream, sends `requests` one by one (waiting `gapMs` after each), collects the
   * responses for `collectMs` after the last, and records them (watch IDs and revisions kept).
   */
  async watchScript(label: string, requests: WatchRequest[], collectMs = 600, gapMs = 150, between?: (i: number) => Promise<void>, shape?: (r: WatchResponse) => unknown): Promise<void> {
    const stream: ClientDuplexStream<WatchRequest, WatchResponse> = this.watch.watch();
    const got: WatchResponse[] = [];
    let ended = "";
    stream.on("data", (r: WatchResponse) => got.push(r));
    stream.on("error", (e: ServiceError) => (ended = `stream error ${e.code} ${e.details}`));
    for (let i = 0; i < requests.length; i++) {
      stream.write(requests[i]!);
      await sleep(gapMs);
      await between?.(i);
    }
    await sleep(collectMs);
    stream.cancel();
    this.log.push(`${label}:`);
    for (const r of got) this.log.push(`  ${render(shape ? shape(r) : r)}`);
    if (ended !== "" && !ended.includes("Cancelled")) this.log.push(`  ${ended}`);
  }
}

function render(value: unknown): string {
  return JSON.stringify(value, (k, x: unknown) => {
    if (k === "memberId" || k === "clusterId") return "<id>";
    if (typeof x === "bigint") return x.toString();
    if (x !== null && typeof x === "object" && (x as { type?: unknown }).type === "Buffer") return Buffer.from((x as { data: number[] }).data).toString("utf8");
    return x;
  });
}

const watchCreate = (c: Partial<NonNullable<WatchRequest["createRequest"]>>): WatchRequest =>
  ({ createRequest: { key: B(""), rangeEnd: B(""), startRevision: 0n, progressNotify: false, filters: [], prevKv: false, watchId: 0n, fragment: false, ...c } }) as WatchRequest;

describe.skipIf(reference === undefined)("odd field values on the v3 RPCs against etcd 3.4", () => {
  let sides: Side[] = [];

  beforeAll(async () => {
    const [ref, cand] = await Promise.all([
      startMember({ binary: serverBinaryFromSpec(reference), ...DIFF_IDENTITY }),
      startMember({ binary: etcdTsBinary(), ...DIFF_IDENTITY }),
    ]);
    sides = [new Side("etcd", ref), new Side("etcd-ts", cand)];
  });

  afterAll(() => closeSides(sides));

  const compare = (script: (s: Side) => Promise<void>): Promise<void> => compareTranscripts(sides, script);

  it("Range, Put, DeleteRange: revisions, limits, sort options, keys and range ends", async () => {
    await compare(async (s) => {
      const kv = s.kv;
      for (const k of ["a", "b", "c"]) await s.call(`put ${k}`, kv.put.bind(kv), { key: B(`o/${k}`), value: B(k), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });
      const range = (over: Record<string, unknown>) => ({ key: B("o/"), rangeEnd: B("o0"), limit: 0n, revision: 0n, sortOrder: 0, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n, ...over });
      const r = kv.range.bind(kv);
      await s.call("range revision -1", r, range({ revision: -1n }));
      await s.call("range revision huge", r, range({ revision: I64_MAX }));
      await s.call("range limit -1", r, range({ limit: -1n }));
      await s.call("range limit 1", r, range({ limit: 1n }));
      await s.call("range sort order 7", r, range({ sortOrder: 7 }));
      // Not sent: a sort target outside the enum with a sort order (or none) makes etcd 3.4's
      // apply sort with no sorter, and the process dies (a nil sort.Interface).
      await s.call("range sort order -1", r, range({ sortOrder: -1 }));
      await s.call("range descend by key, no target", r, range({ sortOrder: 2 }));
      await s.call("range empty key", r, range({ key: B(""), rangeEnd: B("") }));
      await s.call("range empty key, end \\0", r, range({ key: B(""), rangeEnd: Buffer.from([0]) }));
      await s.call("range key \\0, end \\0", r, range({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]), keysOnly: true }));
      await s.call("range end before key", r, range({ key: B("o/c"), rangeEnd: B("o/a") }));
      await s.call("range end equal key", r, range({ key: B("o/a"), rangeEnd: B("o/a") }));
      await s.call("range min mod revision -5", r, range({ minModRevision: -5n, countOnly: true }));
      await s.call("range max create revision -1", r, range({ maxCreateRevision: -1n, countOnly: true }));
      await s.call("range count only with limit", r, range({ countOnly: true, limit: 1n }));
      await s.call("range serializable revision -3", r, range({ serializable: true, revision: -3n, keysOnly: true }));
      await s.call("range limit 1 with a mod revision filter", r, range({ limit: 1n, minModRevision: 3n, keysOnly: true }));
      await s.call("range limit 2 sorted by value, descending", r, range({ limit: 2n, sortOrder: 2, sortTarget: 4 }));
      await s.call("range keys only and count only", r, range({ keysOnly: true, countOnly: true }));
      await s.call("range limit huge", r, range({ limit: I64_MAX, keysOnly: true }));
      const p = kv.put.bind(kv);
      const put = (over: Record<string, unknown>) => ({ key: B("o/p"), value: B("v"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false, ...over });
      await s.call("put empty key", p, put({ key: B("") }));
      await s.call("put lease -1", p, put({ lease: -1n }));
      await s.call("put lease unknown", p, put({ lease: 12345n }));
      await s.call("put ignore value on a missing key", p, put({ key: B("o/missing"), ignoreValue: true, value: B("") }));
      await s.call("put ignore value with a value", p, put({ ignoreValue: true }));
      await s.call("put ignore lease with a lease", p, put({ ignoreLease: true, lease: 5n }));
      await s.call("put ignore lease on a missing key", p, put({ key: B("o/missing2"), ignoreLease: true }));
      const d = kv.deleteRange.bind(kv);
      await s.call("delete empty key", d, { key: B(""), rangeEnd: B(""), prevKv: false });
      await s.call("delete end before key", d, { key: B("o/c"), rangeEnd: B("o/a"), prevKv: false });
      await s.call("delete \\0 end, prev kv", d, { key: B("o/c"), rangeEnd: Buffer.from([0]), prevKv: true });
      // Never compacted (compacted revision -1): -1 is not below it, so etcd keeps the watch and
      // it sees writes from now on; -2 is below it and cancels as compacted at -1.
      await s.watchScript("start revision -1 and -2 before any compaction", [
        watchCreate({ key: B("o/m"), startRevision: -1n }),
        watchCreate({ key: B("o/m"), startRevision: -2n }),
      ], 600, 150, async (i) => {
        if (i === 1) await s.call("put o/m", kv.put.bind(kv), { key: B("o/m"), value: B("m"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });
      });
    });
  });

  it("Txn and Compact: compare targets and results outside their enums, duplicates, future and past revisions", async () => {
    await compare(async (s) => {
      const kv = s.kv;
      const t = kv.txn.bind(kv);
      const cmp = (over: Record<string, unknown>) => ({ result: 0, target: 3, key: B("o/a"), rangeEnd: B(""), value: B("a"), ...over });
      const putOp = (k: string) => ({ requestPut: { key: B(k), value: B("x"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } });
      await s.call("txn compare result 9", t, { compare: [cmp({ result: 9 })], success: [], failure: [] });
      await s.call("txn compare target 9", t, { compare: [cmp({ target: 9 })], success: [], failure: [] });
      await s.call("txn compare empty key", t, { compare: [cmp({ key: B("") })], success: [], failure: [] });
      await s.call("txn duplicate puts", t, { compare: [], success: [putOp("o/t"), putOp("o/t")], failure: [] });
      await s.call("txn put with an empty key", t, { compare: [], success: [putOp("")], failure: [] });
      await s.call("txn range with sort order 5", t, { compare: [], success: [{ requestRange: { key: B("o/a"), rangeEnd: B(""), limit: 0n, revision: 0n, sortOrder: 5, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n } }], failure: [] });
      await s.call("txn compare over a range (create revision < 100)", t, { compare: [cmp({ target: 1, result: 2, rangeEnd: B("o0"), createRevision: 100n })], success: [], failure: [] });
      await s.call("txn compare lease of a range end \\0", t, { compare: [cmp({ target: 4, result: 0, rangeEnd: Buffer.from([0]), lease: 0n })], success: [], failure: [] });
      // Several members of a oneof on the wire: protobuf keeps the last one.
      await s.call("txn compare with two targets (create revision, then value on the wire)", t, { compare: [cmp({ target: 1, result: 2, createRevision: 100n, value: B("zz") })], success: [], failure: [] });
      const rangeAndPut = { requestRange: { key: B("o/a"), rangeEnd: B(""), limit: 0n, revision: 0n, sortOrder: 0, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n }, ...putOp("o/both") };
      await s.call("txn op with a range and a put", t, { compare: [], success: [rangeAndPut], failure: [] });
      const nested = (k: string) => ({ requestTxn: { compare: [], success: [putOp(k)], failure: [] } });
      await s.call("txn nested put of a key the outer txn puts", t, { compare: [], success: [putOp("o/n"), nested("o/n")], failure: [] });
      await s.call("txn nested delete of a key the outer txn puts", t, { compare: [], success: [putOp("o/n"), { requestTxn: { compare: [], success: [{ requestDeleteRange: { key: B("o/n"), rangeEnd: B(""), prevKv: false } }], failure: [] } }], failure: [] });
      await s.call("txn nested puts in both branches", t, { compare: [], success: [nested("o/n1")], failure: [nested("o/n1")] });
      await s.call("txn 129 ops", t, { compare: [], success: Array.from({ length: 129 }, (_, i) => putOp(`o/many${i}`)), failure: [] });
      const c = kv.compact.bind(kv);
      await s.call("compact huge", c, { revision: I64_MAX, physical: false });
      await s.call("compact -1", c, { revision: -1n, physical: false });
      await s.call("compact 0", c, { revision: 0n, physical: false });
      await s.call("compact 3", c, { revision: 3n, physical: true });
      await s.call("compact 3 again", c, { revision: 3n, physical: false });
      await s.call("compact 2", c, { revision: 2n, physical: false });
      await s.call("range at the compacted revision", kv.range.bind(kv), { key: B("o/a"), rangeEnd: B(""), limit: 0n, revision: 3n, sortOrder: 0, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n });
      await s.call("range at a compacted revision", kv.range.bind(kv), { key: B("o/a"), rangeEnd: B(""), limit: 0n, revision: 2n, sortOrder: 0, sortTarget: 0, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0n, maxModRevision: 0n, minCreateRevision: 0n, maxCreateRevision: 0n });
    });
  });

  it("Lease and Cluster: IDs and TTLs out of range", async () => {
    await compare(async (s) => {
      const l = s.lease;
      await s.call("grant ttl 0, id 77", l.leaseGrant.bind(l), { TTL: 0n, ID: 77n });
      await s.call("grant ttl -5, id 78", l.leaseGrant.bind(l), { TTL: -5n, ID: 78n });
      await s.call("grant ttl huge, id 79", l.leaseGrant.bind(l), { TTL: 9_000_000_001n, ID: 79n });
      await s.call("grant id -1", l.leaseGrant.bind(l), { TTL: 10n, ID: -1n });
      await s.call("grant id 77 again", l.leaseGrant.bind(l), { TTL: 10n, ID: 77n });
      await s.call("time to live -1", l.leaseTimeToLive.bind(l), { ID: -1n, keys: false });
      await s.call("time to live 0", l.leaseTimeToLive.bind(l), { ID: 0n, keys: true });
      await s.call("revoke 0", l.leaseRevoke.bind(l), { ID: 0n });
      await s.call("revoke -1", l.leaseRevoke.bind(l), { ID: -1n });
      await s.call("revoke 77", l.leaseRevoke.bind(l), { ID: 77n });
      // Keep-alives for unknown, zero and negative IDs (the -1 lease is still there).
      const ka = l.leaseKeepAlive();
      const kaGot: unknown[] = [];
      ka.on("data", (r: unknown) => kaGot.push(r));
      ka.on("error", () => undefined);
      for (const id of [4242n, 0n, -1n, 78n]) {
        ka.write({ ID: id });
        await sleep(150);
      }
      ka.cancel();
      s.log.push(`keep-alive 4242, 0, -1, 78: ${render(kaGot.map((r) => ({ ...(r as object), TTL: (r as { TTL: bigint }).TTL > 0n ? "<ttl>" : (r as { TTL: bigint }).TTL })))}`);
      await s.call("leases", l.leaseLeases.bind(l), {});
      await s.call("revoke -1 again", l.leaseRevoke.bind(l), { ID: -1n });
      await s.call("revoke 78", l.leaseRevoke.bind(l), { ID: 78n });
      const c = s.cluster;
      await s.call("member remove 0", c.memberRemove.bind(c), { ID: 0n });
      await s.call("member update unknown", c.memberUpdate.bind(c), { ID: 42n, peerURLs: ["http://127.0.0.1:9"] });
      await s.call("member promote unknown", c.memberPromote.bind(c), { ID: 42n });
      await s.call("member add no URLs", c.memberAdd.bind(c), { peerURLs: [], isLearner: false });
      await s.call("member add a bad URL", c.memberAdd.bind(c), { peerURLs: ["127.0.0.1:9"], isLearner: false });
      const m = s.maintenance;
      await s.call("hash kv future", m.hashKv.bind(m), { revision: I64_MAX });
      await s.call("move leader to 0", m.moveLeader.bind(m), { targetID: 0n });
      // Not sent: an alarm action outside the enum makes etcd 3.4's applier answer nothing, and the
      // handler's type assertion on that kills the process.
    });
  });

  it("Watch: start revisions, ranges, IDs, fragment and progress", async () => {
    await compare(async (s) => {
      const put = (k: string): Promise<unknown> => s.call(`put ${k}`, s.kv.put.bind(s.kv), { key: B(k), value: B("w"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });
      await s.watchScript("start revision -1 (compacted store), -1 again with an ID, huge", [
        watchCreate({ key: B("o/w"), startRevision: -1n }),
        watchCreate({ key: B("o/w"), startRevision: -7n, watchId: 5n }),
        watchCreate({ key: B("o/w"), startRevision: I64_MAX, watchId: 6n }),
      ]);
      await s.watchScript("key >= range end, then a duplicate ID, then a negative ID", [
        watchCreate({ key: B("o/z"), rangeEnd: B("o/a"), watchId: 3n }),
        watchCreate({ key: B("o/a"), rangeEnd: B("o/b"), watchId: 3n }),
        watchCreate({ key: B("o/a"), rangeEnd: B("o/b"), watchId: 3n }),
        watchCreate({ key: B("o/a"), watchId: -4n }),
      ]);
      await s.watchScript("create and progress in one request", [
        { ...watchCreate({ key: B("o/x") }), progressRequest: {} } as WatchRequest,
        { ...watchCreate({ key: B("o/y") }), cancelRequest: { watchId: 0n } } as WatchRequest,
      ]);
      // Large values replayed in one catch-up response: a watcher that asked for fragments gets
      // them split once the response reaches --max-request-bytes plus 512 KiB (2 MiB here), so
      // three 600 KB events go whole and three 800 KB ones in fragments; the other gets them whole.
      const shape = (r: WatchResponse): unknown => ({ watchId: r.watchId, created: r.created, fragment: r.fragment, events: r.events.map((e) => `${e.kv!.key.toString()}@${e.kv!.modRevision}:${e.kv!.value.length}`) });
      for (const size of [600_000, 800_000]) {
        const keys = [0, 1, 2].map((i) => `o/big${size}-${i}`);
        let start = 0n;
        for (const k of keys) {
          const res = await s.call(`put ${k}`, s.kv.put.bind(s.kv), { key: B(k), value: Buffer.alloc(size, 97), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false }) as { header?: { revision: bigint } } | undefined;
          if (start === 0n) start = res?.header?.revision ?? 0n;
        }
        await s.watchScript(`replays of three ${size}-byte events`, [
          watchCreate({ key: B(`o/big${size}`), rangeEnd: B(`o/big${size}.`), startRevision: start, fragment: true }),
          watchCreate({ key: B(`o/big${size}`), rangeEnd: B(`o/big${size}.`), startRevision: start }),
        ], 1_500, 300, undefined, shape);
      }
      await s.watchScript("cancel an unknown ID, progress, fragment", [
        { cancelRequest: { watchId: 99n } } as WatchRequest,
        { progressRequest: {} } as WatchRequest,
        watchCreate({ key: B("o/f"), fragment: true, progressNotify: true }),
        { progressRequest: {} } as WatchRequest,
      ], 600, 150, async (i) => {
        if (i === 2) await put("o/f");
      });
    });
  });
});
