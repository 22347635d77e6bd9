/**
 * Watch streams as clients see them, differentially: the same conversations (grpc-js's generated
 * client) go to a real etcd 3.4 and to etcd-ts side by side, and every response (watch ID,
 * created/canceled, compact revision, cancel reason, fragment flag, events, header revision) and
 * how the stream ended are recorded; the transcripts must be equal. Conversations: create, events
 * (puts, deletes, a txn's many events), cancel; several watchers on one stream (prefix, prev kv,
 * filters) fanned out over a hundred writes; progress requests; a start revision below the
 * compacted one; a catch-up large enough to be fragmented (with --max-request-bytes lowered so
 * that fragments start at 576 KiB); and a client that half-closes (etcd keeps the stream, and its
 * watchers, until the client goes).
 *
 * Both servers have the same identity (DIFF_IDENTITY) and get the same requests in the same order,
 * so revisions agree. `SHOW_TRANSCRIPTS=1` prints etcd's transcript.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { KVClient, type WatchRequest, type WatchResponse, WatchClient, type PutResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { DIFF_IDENTITY } from "../etcdctl/diff-suite.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { closeSides, compareTranscripts } from "./sides.js";

const reference = referenceEtcdPath();
/** --max-request-bytes of both servers: fragments start at this plus 512 KiB. */
const MAX_REQUEST_BYTES = 64 * 1024;
const B = (s: string) => Buffer.from(s);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A response as the transcript shows it: IDs hidden, keys as text, long values by their length. */
function render(value: unknown): string {
  return JSON.stringify(value, (k, x: unknown) => {
    if (k === "memberId" || k === "clusterId" || k === "raftTerm") return "<id>";
    if (typeof x === "bigint") return x.toString();
    if (x !== null && typeof x === "object" && (x as { type?: unknown }).type === "Buffer") {
      const b = Buffer.from((x as { data: number[] }).data);
      return b.length > 64 ? `<${b.length} bytes>` : b.toString("utf8");
    }
    return x;
  });
}

const watchCreate = (c: Partial<NonNullable<WatchRequest["createRequest"]>>): WatchRequest =>
  ({ createRequest: { key: B(""), rangeEnd: B(""), startRevision: 0n, progressNotify: false, filters: [], prevKv: false, watchId: 0n, fragment: false, ...c } }) as WatchRequest;

/** One watch stream, recording what arrives. */
class Conversation {
  readonly got: WatchResponse[] = [];
  ended = "";
  readonly stream: ClientDuplexStream<WatchRequest, WatchResponse>;

  constructor(client: WatchClient) {
    this.stream = client.watch();
    this.stream.on("data", (r: WatchResponse) => this.got.push(r));
    this.stream.on("error", (e: ServiceError) => (this.ended = `error ${e.code} ${e.details}`));
    this.stream.on("end", () => (this.ended ||= "end"));
  }

  async send(req: WatchRequest, waitMs = 150): Promise<void> {
    this.stream.write(req);
    await sleep(waitMs);
  }

  /** Waits (bounded) until `n` responses arrived. */
  async responses(n: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.got.length < n && Date.now() < deadline) await sleep(10);
  }

  /** Events received so far. */
  eventCount(): number {
    return this.got.reduce((n, r) => n + r.events.length, 0);
  }
}

/** One server, its clients and its transcript. */
class Side {
  readonly log: string[] = [];
  readonly kv: KVClient;
  readonly watch: WatchClient;

  constructor(readonly name: string, readonly member: Member) {
    const addr = `127.0.0.1:${member.clientPort}`;
    this.kv = new KVClient(addr, credentials.createInsecure());
    this.watch = new WatchClient(addr, credentials.createInsecure());
  }

  close(): void {
    this.kv.close();
    this.watch.close();
  }

  put(key: string, value: string | Buffer): Promise<PutResponse> {
    return new Promise((resolve, reject) =>
      this.kv.put({ key: B(key), value: typeof value === "string" ? B(value) : value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false }, (err, res) => (err ? reject(err) : resolve(res))));
  }

  del(key: string, rangeEnd = ""): Promise<unknown> {
    return new Promise((resolve, reject) => this.kv.deleteRange({ key: B(key), rangeEnd: B(rangeEnd), prevKv: false }, (err, res) => (err ? reject(err) : resolve(res))));
  }

  /** A txn of puts of `keys`, all with `value`. */
  txnPuts(keys: string[], value: string): Promise<unknown> {
    const success = keys.map((k) => ({ requestPut: { key: B(k), value: B(value), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } }));
    return new Promise((resolve, reject) => this.kv.txn({ compare: [], success, failure: [] } as never, (err, res) => (err ? reject(err) : resolve(res))));
  }

  compact(revision: bigint): Promise<unknown> {
    return new Promise((resolve, reject) => this.kv.compact({ revision, physical: true }, (err, res) => (err ? reject(err) : resolve(res))));
  }

  record(label: string, c: Conversation, shape?: (r: WatchResponse) => unknown): void {
    this.log.push(`${label}:`);
    for (const r of c.got) this.log.push(`  ${render(shape ? shape(r) : r)}`);
    if (c.ended !== "") this.log.push(`  stream ${c.ended}`);
  }
}

describe.skipIf(reference === undefined)("Watch streams against etcd 3.4", { timeout: 90_000 }, () => {
  let sides: Side[] = [];

  beforeAll(async () => {
    const extraArgs = [`--max-request-bytes=${MAX_REQUEST_BYTES}`];
    const [ref, cand] = await Promise.all([
      startMember({ binary: serverBinaryFromSpec(reference), ...DIFF_IDENTITY, extraArgs }),
      startMember({ binary: etcdTsBinary(), ...DIFF_IDENTITY, extraArgs }),
    ]);
    sides = [new Side("etcd", ref), new Side("etcd-ts", cand)];
  });

  afterAll(() => closeSides(sides));

  const compare = (script: (s: Side) => Promise<void>): Promise<void> => compareTranscripts(sides, script);

  it("create, events, a txn's events, cancel; progress requests", async () => {
    await compare(async (s) => {
      const c = new Conversation(s.watch);
      await c.send(watchCreate({ key: B("dw/a") }));
      await s.put("dw/a", "1");
      await s.put("dw/b", "1"); // not watched
      await s.put("dw/a", "2");
      await s.del("dw/a");
      await c.responses(4);
      await c.send({ progressRequest: {} } as WatchRequest);
      await c.send(watchCreate({ key: B("dw/t/"), rangeEnd: B("dw/t0"), prevKv: true }));
      await s.txnPuts(Array.from({ length: 10 }, (_, i) => `dw/t/${i}`), "x");
      await s.txnPuts(Array.from({ length: 10 }, (_, i) => `dw/t/${i}`), "y");
      await c.responses(8);
      await c.send({ cancelRequest: { watchId: 0n } } as WatchRequest);
      await s.put("dw/a", "3"); // the cancelled watcher sees nothing
      await c.send({ cancelRequest: { watchId: 0n } } as WatchRequest); // already gone: no answer
      await c.send({ progressRequest: {} } as WatchRequest);
      c.stream.cancel();
      s.record("create, events, cancel, progress", c);
    });
  });

  it("several watchers on one stream, a hundred writes fanned out", async () => {
    await compare(async (s) => {
      const c = new Conversation(s.watch);
      await c.send(watchCreate({ key: B("df/"), rangeEnd: B("df0") }), 50);
      await c.send(watchCreate({ key: B("df/"), rangeEnd: B("df0"), prevKv: true, watchId: 10n }), 50);
      await c.send(watchCreate({ key: B("df/k1") }), 50);
      await c.send(watchCreate({ key: B("df/"), rangeEnd: B("df0"), filters: [0] }), 50); // NOPUT
      await c.send(watchCreate({ key: B("df/"), rangeEnd: B("df0"), filters: [1] }), 50); // NODELETE
      for (let i = 0; i < 100; i++) {
        if (i % 10 === 9) await s.del(`df/k${i % 3}`);
        else await s.put(`df/k${i % 3}`, `v${i}`);
      }
      // Per watcher: prefix 100, prev kv 100, k1 ~33, NOPUT 10, NODELETE 90 (and 5 created).
      const want = 100 + 100 + 33 + 10 + 90;
      const deadline = Date.now() + 15_000;
      while (c.eventCount() < want && Date.now() < deadline) await sleep(20);
      await sleep(200);
      c.stream.cancel();
      // Ordered per watcher (the stream interleaves watchers as the server's loops go).
      const byWatcher = new Map<string, WatchResponse[]>();
      for (const r of c.got) byWatcher.set(String(r.watchId), [...(byWatcher.get(String(r.watchId)) ?? []), r]);
      for (const [id, rs] of [...byWatcher].sort(([a], [b]) => Number(a) - Number(b))) {
        s.log.push(`watcher ${id}: ${rs.length} responses, ${rs.reduce((n, r) => n + r.events.length, 0)} events`);
        for (const r of rs) s.log.push(`  ${render({ ...r, events: r.events.map((e) => `${e.type}:${e.kv!.key.toString()}=${e.kv!.value.toString()}@${e.kv!.modRevision}${e.prevKv ? `<${e.prevKv.value.toString()}` : ""}`) })}`);
      }
    });
  });

  it("a start revision below the compacted one; at it", async () => {
    await compare(async (s) => {
      const first = (await s.put("dc/k", "1")).header!.revision;
      await s.put("dc/k", "2");
      const third = (await s.put("dc/k", "3")).header!.revision;
      await s.put("dc/k", "4");
      await s.compact(third);
      const c = new Conversation(s.watch);
      await c.send(watchCreate({ key: B("dc/k"), startRevision: first }));
      await c.send(watchCreate({ key: B("dc/k"), startRevision: third }));
      await c.send(watchCreate({ key: B("dc/k"), startRevision: third - 1n, watchId: 9n }));
      await c.responses(5);
      await s.put("dc/k", "5");
      await c.responses(6);
      await sleep(100);
      c.stream.cancel();
      s.record("compacted", c);
    });
  });

  it("a catch-up past the fragment size, with and without fragments", async () => {
    await compare(async (s) => {
      const value = Buffer.alloc(60_000, 97);
      let start = 0n;
      for (let i = 0; i < 12; i++) {
        const rev = (await s.put(`dg/${String(i).padStart(2, "0")}`, value)).header!.revision;
        if (start === 0n) start = rev;
      }
      const shape = (r: WatchResponse): unknown => ({ ...r, events: r.events.map((e) => `${e.kv!.key.toString()}@${e.kv!.modRevision}:${e.kv!.value.length}`) });
      const c = new Conversation(s.watch);
      await c.send(watchCreate({ key: B("dg/"), rangeEnd: B("dg0"), startRevision: start, fragment: true }), 300);
      await c.send(watchCreate({ key: B("dg/"), rangeEnd: B("dg0"), startRevision: start }), 300);
      const deadline = Date.now() + 10_000;
      while (c.eventCount() < 24 && Date.now() < deadline) await sleep(20);
      await sleep(100);
      c.stream.cancel();
      s.record("fragments", c, shape);
    });
  });

  it("a client that half-closes keeps its stream and watchers", async () => {
    await compare(async (s) => {
      const c = new Conversation(s.watch);
      await c.send(watchCreate({ key: B("dh/k") }));
      c.stream.end();
      await sleep(200);
      await s.put("dh/k", "1");
      await s.put("dh/k", "2");
      await sleep(500);
      c.stream.cancel();
      s.record("half-close", c);
    });
  });
});
