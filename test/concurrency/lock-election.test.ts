/**
 * The Lock and Election services, differentially: each case runs the same script of gRPC calls
 * (grpc-js with the generated service definitions) and gateway requests (HTTP POST JSON) against
 * a real etcd 3.4 and against etcd-ts, side by side, and the two transcripts must be equal.
 *
 * Both servers have the same identity (DIFF_IDENTITY: same member and cluster IDs), and the
 * scripts grant leases with chosen IDs and revoke them before the case ends, so revisions, keys
 * and headers agree; only lease IDs the servers choose themselves (a request with lease 0 gets a
 * fresh 60 s lease) are replaced by placeholders. Cases run in order on the same pair of servers.
 * `SHOW_TRANSCRIPTS=1` prints etcd's transcript of each case.
 *
 * Interoperability: `etcdctl lock` (the client-side recipe, same key layout) holding a lock makes
 * a Lock call on the same name wait, and `etcdctl elect -l` sees what Campaign and Proclaim write.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, Metadata, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { KVClient, LeaseClient, RangeRequest } from "@etcd-ts/proto/etcdserverpb/rpc";
import { LockClient } from "@etcd-ts/proto/v3lockpb/v3lock";
import { ElectionClient, type CampaignResponse, type LeaderResponse } from "@etcd-ts/proto/v3electionpb/v3election";
import { DIFF_IDENTITY } from "../etcdctl/diff-suite.js";
import { spawnEtcdctl } from "../harness/etcdctl.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

const reference = referenceEtcdPath();
const B = (s: string): Buffer => Buffer.from(s, "utf8");
const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

type Answer<T> = { ok: T } | { code: number; details: string };

/** One server and the clients and transcript of the script running against it. */
class Side {
  readonly log: string[] = [];
  /** Lease IDs the server chose, in the order the script met them (normalised to placeholders). */
  readonly chosenLeases: bigint[] = [];
  readonly lock: LockClient;
  readonly election: ElectionClient;
  readonly kv: KVClient;
  readonly lease: LeaseClient;

  constructor(readonly name: string, readonly member: Member) {
    const addr = `127.0.0.1:${member.clientPort}`;
    this.lock = new LockClient(addr, credentials.createInsecure());
    this.election = new ElectionClient(addr, credentials.createInsecure());
    this.kv = new KVClient(addr, credentials.createInsecure());
    this.lease = new LeaseClient(addr, credentials.createInsecure());
  }

  close(): void {
    for (const c of [this.lock, this.election, this.kv, this.lease]) c.close();
  }

  rec(label: string, value: unknown): void {
    this.log.push(`${label}: ${render(value)}`);
  }

  /** Notes a lease the server chose, so the transcript shows a placeholder for it. */
  chose(lease: bigint): void {
    if (!this.chosenLeases.includes(lease)) this.chosenLeases.push(lease);
  }

  transcript(): string {
    let text = this.log.join("\n");
    this.chosenLeases.forEach((id, i) => {
      text = text.split(id.toString()).join(`<lease-${i}>`).split(id.toString(16)).join(`<lease-${i}-hex>`);
    });
    return text;
  }

  // ---- gRPC ----

  call<T>(start: (cb: (err: ServiceError | null, value?: T) => void) => unknown): Promise<Answer<T>> {
    return new Promise((resolve) => {
      start((err, value) => resolve(err ? { code: err.code, details: err.details } : { ok: value as T }));
    });
  }

  grant(id: bigint, ttlSeconds: number): Promise<Answer<unknown>> {
    return this.call((cb) => this.lease.leaseGrant({ TTL: BigInt(ttlSeconds), ID: id }, cb));
  }

  revoke(id: bigint): Promise<Answer<unknown>> {
    return this.call((cb) => this.lease.leaseRevoke({ ID: id }, cb));
  }

  /** The keys under `prefix` with their create revisions and leases. */
  async keys(prefix: string): Promise<string[]> {
    const end = Buffer.from(prefix);
    end[end.length - 1]! += 1;
    const a = await this.call<{ kvs: Array<{ key: Buffer; createRevision: bigint; lease: bigint }> }>((cb) =>
      this.kv.range(RangeRequest.fromPartial({ key: B(prefix), rangeEnd: end }), cb));
    if (!("ok" in a)) return [`error ${a.code} ${a.details}`];
    return a.ok.kvs.map((kv) => `${kv.key.toString()}@${kv.createRevision} lease=${kv.lease}`);
  }

  /** The keys under `prefix` once there are `count` of them (or after a bounded wait). */
  async keysSettled(prefix: string, count: number): Promise<string[]> {
    let keys: string[] = [];
    for (let i = 0; i < 100; i++) {
      keys = await this.keys(prefix);
      if (keys.length === count) break;
      await sleep(50);
    }
    return keys;
  }

  /** Waits (bounded) until lease `id` has expired. */
  async expired(id: bigint, timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const a = await this.call<{ TTL: bigint }>((cb) => this.lease.leaseTimeToLive({ ID: id, keys: false }, cb));
      if ("ok" in a && a.ok.TTL === -1n) return true;
      await sleep(100);
    }
    return false;
  }

  observe(name: string): { messages: LeaderResponse[]; stream: ClientReadableStream<LeaderResponse>; ended: Promise<string> } {
    const messages: LeaderResponse[] = [];
    const stream = this.election.observe({ name: B(name) });
    stream.on("data", (m: LeaderResponse) => messages.push(m));
    const ended = new Promise<string>((resolve) => {
      stream.on("error", (e: ServiceError) => resolve(`error ${e.code}`));
      stream.on("end", () => resolve("end"));
    });
    return { messages, stream, ended };
  }

  // ---- gateway ----

  /** POSTs JSON to the gateway; the answer's base64 keys, values and names shown as text. */
  post(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: this.member.clientPort, path, method: "POST" }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = decodeB64(JSON.parse(text));
          } catch {
            /* not JSON: keep the text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on("error", reject);
      req.end(typeof body === "string" ? body : JSON.stringify(body));
    });
  }

  /** A streaming gateway request: its result lines as they come; `close()` ends it. */
  postStream(path: string, body: unknown): { lines: unknown[]; status: Promise<number>; close(): void } {
    const lines: unknown[] = [];
    let pending = "";
    let resolveStatus: (n: number) => void = () => undefined;
    const status = new Promise<number>((resolve) => (resolveStatus = resolve));
    const req = http.request({ host: "127.0.0.1", port: this.member.clientPort, path, method: "POST" }, (res) => {
      resolveStatus(res.statusCode ?? 0);
      res.on("data", (c: Buffer) => {
        pending += c.toString("utf8");
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line !== "") lines.push(decodeB64(JSON.parse(line)));
        }
      });
      res.on("error", () => undefined);
    });
    req.on("error", () => resolveStatus(0));
    req.end(JSON.stringify(body));
    return { lines, status, close: () => req.destroy() };
  }
}

/** Gateway JSON with the base64 of `key`, `value` and `name` fields decoded (for reading). */
function decodeB64(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeB64);
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    out[k] = (k === "key" || k === "value" || k === "name") && typeof x === "string" ? Buffer.from(x, "base64").toString("utf8") : decodeB64(x);
  }
  return out;
}

function render(value: unknown): string {
  return JSON.stringify(value, (_k, x: unknown) => {
    if (typeof x === "bigint") return x.toString();
    if (x !== null && typeof x === "object" && (x as { type?: unknown }).type === "Buffer") return Buffer.from((x as { data: number[] }).data).toString("utf8");
    return x;
  });
}

/** Whether `p` settles within `ms`. */
/**
 * A call bounded by a deadline ends on both sides at once: the server's answer (Unknown, 2, for its
 * context's error) or the client's own timer (DEADLINE_EXCEEDED, 4) arrives first, on etcd as on
 * etcd-ts, so either is the same outcome and the transcript records it as "deadline".
 */
function byDeadline<T extends object>(r: T): T | { code: number | "deadline" } {
  if (!("code" in r)) return r;
  const code = (r as { code: number }).code;
  return { code: code === 2 || code === 4 ? "deadline" : code };
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void p.then(() => (settled = true), () => (settled = true));
  await sleep(ms);
  return settled;
}

describe.skipIf(reference === undefined)("Lock and Election services against etcd 3.4", () => {
  let sides: Side[] = [];

  beforeAll(async () => {
    const identity = { ...DIFF_IDENTITY };
    const [ref, cand] = await Promise.all([
      startMember({ binary: serverBinaryFromSpec(reference), ...identity }),
      startMember({ binary: etcdTsBinary(), ...identity }),
    ]);
    sides = [new Side("etcd", ref), new Side("etcd-ts", cand)];
  });

  afterAll(async () => {
    for (const s of sides) s.close();
    await Promise.all(sides.map((s) => s.member.destroy()));
    await killAllChildren();
  });

  /** Runs `script` against both servers at once and compares the transcripts. */
  async function differential(script: (s: Side) => Promise<void>): Promise<void> {
    for (const s of sides) s.log.length = 0;
    await Promise.all(sides.map((s) => script(s)));
    const [ref, cand] = sides.map((s) => s.transcript());
    if (process.env.SHOW_TRANSCRIPTS === "1") console.log(ref);
    expect(cand, `etcd transcript:\n${ref}`).toBe(ref);
  }

  it("lock: a second locker waits until the first unlocks; unlock of a missing key; re-lock with the same lease", async () => {
    await differential(async (s) => {
      await s.grant(0x1001n, 300);
      await s.grant(0x1002n, 300);
      s.rec("lock A", await s.call((cb) => s.lock.lock({ name: B("l1"), lease: 0x1001n }, cb)));
      const b = s.call((cb) => s.lock.lock({ name: B("l1"), lease: 0x1002n }, cb));
      s.rec("B answered within 500ms", await settlesWithin(b, 500));
      s.rec("keys", await s.keys("l1/"));
      s.rec("lock A again (same lease)", await s.call((cb) => s.lock.lock({ name: B("l1"), lease: 0x1001n }, cb)));
      s.rec("unlock A", await s.call((cb) => s.lock.unlock({ key: B("l1/1001") }, cb)));
      s.rec("lock B", await b);
      s.rec("keys", await s.keys("l1/"));
      s.rec("unlock B", await s.call((cb) => s.lock.unlock({ key: B("l1/1002") }, cb)));
      s.rec("unlock missing", await s.call((cb) => s.lock.unlock({ key: B("l1/nope") }, cb)));
      s.rec("unlock empty key", await s.call((cb) => s.lock.unlock({ key: B("") }, cb)));
      s.rec("revoke", [await s.revoke(0x1001n), await s.revoke(0x1002n)]);
    });
  });

  it("lock: several lockers get the lock in the order they asked, each when the one before unlocks", async () => {
    await differential(async (s) => {
      const ids = [0x2001n, 0x2002n, 0x2003n, 0x2004n];
      for (const id of ids) await s.grant(id, 300);
      const order: string[] = [];
      const waiting = [];
      for (const id of ids) {
        const p = s.call<{ key: Buffer }>((cb) => s.lock.lock({ name: B("lc"), lease: id }, cb));
        void p.then(() => order.push(id.toString(16)));
        waiting.push(p);
        await sleep(50); // each in turn: their keys are created in this order
      }
      s.rec("keys", await s.keys("lc/"));
      for (const [i, id] of ids.entries()) {
        s.rec(`locker ${i} answer`, await waiting[i]);
        s.rec("others still waiting", (await Promise.all(waiting.slice(i + 1).map((w) => settlesWithin(w, 100)))).every((settled) => !settled));
        s.rec(`unlock ${i}`, await s.call((cb) => s.lock.unlock({ key: B(`lc/${id.toString(16)}`) }, cb)));
      }
      s.rec("order", order);
      for (const id of ids) await s.revoke(id);
    });
  });

  it("lock: bad leases; lease 0 gets a fresh 60 s lease; an empty name", async () => {
    await differential(async (s) => {
      s.rec("lock missing lease", await s.call((cb) => s.lock.lock({ name: B("l2"), lease: 0x999n }, cb)));
      s.rec("lock negative lease", await s.call((cb) => s.lock.lock({ name: B("l2"), lease: -5n }, cb)));
      const fresh = await s.call<{ key: Buffer }>((cb) => s.lock.lock({ name: B("l2"), lease: 0n }, cb));
      if ("ok" in fresh) s.chose(BigInt(`0x${fresh.ok.key.toString().slice(3)}`));
      s.rec("lock lease 0", fresh);
      const ttl = await s.call<{ grantedTTL: bigint }>((cb) => s.lease.leaseTimeToLive({ ID: s.chosenLeases[0] ?? 0n, keys: true }, cb));
      s.rec("its lease", "ok" in ttl ? { grantedTTL: ttl.ok.grantedTTL } : ttl);
      const empty = await s.call<{ key: Buffer }>((cb) => s.lock.lock({ name: B(""), lease: 0n }, cb));
      if ("ok" in empty) s.chose(BigInt(`0x${empty.ok.key.toString().slice(1)}`));
      s.rec("lock empty name", empty);
      s.rec("revoke", [await s.revoke(s.chosenLeases[0]!), await s.revoke(s.chosenLeases[1]!)]);
    });
  });

  it("lock: the holder's lease expiring frees the lock; a waiter whose own lease expires still gets its answer (etcd 3.4)", async () => {
    await differential(async (s) => {
      await s.grant(0x3001n, 2);
      await s.grant(0x3002n, 300);
      s.rec("lock A (ttl 2)", await s.call((cb) => s.lock.lock({ name: B("l3"), lease: 0x3001n }, cb)));
      const b = s.call((cb) => s.lock.lock({ name: B("l3"), lease: 0x3002n }, cb));
      s.rec("A's lease expired", await s.expired(0x3001n));
      s.rec("lock B", await b);
      await s.grant(0x3003n, 2);
      const c = s.call((cb) => s.lock.lock({ name: B("l3"), lease: 0x3003n }, cb));
      s.rec("C's lease expired", await s.expired(0x3003n));
      s.rec("C answered", await settlesWithin(c, 200));
      s.rec("keys", await s.keys("l3/"));
      s.rec("unlock B", await s.call((cb) => s.lock.unlock({ key: B("l3/3002") }, cb)));
      s.rec("lock C", await c);
      s.rec("revoke", await s.revoke(0x3002n));
    });
  });

  it("lock: a waiter that goes away deletes its key (and only its key)", async () => {
    await differential(async (s) => {
      await s.grant(0x4001n, 300);
      await s.grant(0x4002n, 300);
      s.rec("lock A", await s.call((cb) => s.lock.lock({ name: B("l4"), lease: 0x4001n }, cb)));
      const b = await s.call((cb) => s.lock.lock({ name: B("l4"), lease: 0x4002n }, new Metadata(), { deadline: Date.now() + 700 }, cb));
      s.rec("lock B with a deadline", byDeadline(b));
      s.rec("keys", await s.keysSettled("l4/", 1));
      s.rec("revoke", [await s.revoke(0x4001n), await s.revoke(0x4002n)]);
    });
  });

  it("election: two candidates; campaign, proclaim, leader, observe and resign; hand-overs seen by observe", async () => {
    await differential(async (s) => {
      await s.grant(0x5001n, 300);
      await s.grant(0x5002n, 300);
      await s.grant(0x5003n, 300);
      s.rec("leader with none", await s.call((cb) => s.election.leader({ name: B("e1") }, cb)));
      const obs = s.observe("e1");
      await sleep(200);
      const a = await s.call<CampaignResponse>((cb) => s.election.campaign({ name: B("e1"), lease: 0x5001n, value: B("a1") }, cb));
      s.rec("campaign A", a);
      const b = s.call<CampaignResponse>((cb) => s.election.campaign({ name: B("e1"), lease: 0x5002n, value: B("b1") }, cb));
      s.rec("B elected within 500ms", await settlesWithin(b, 500));
      const aKey = "ok" in a ? a.ok.leader : undefined;
      s.rec("proclaim A", await s.call((cb) => s.election.proclaim({ leader: aKey, value: B("a2") }, cb)));
      s.rec("proclaim with a stale rev", await s.call((cb) => s.election.proclaim({ leader: { ...aKey!, rev: aKey!.rev + 100n }, value: B("x") }, cb)));
      s.rec("proclaim by a key never elected", await s.call((cb) => s.election.proclaim({ leader: { name: B("e1"), key: B("e1/5003"), rev: aKey!.rev, lease: 0x5003n }, value: B("x") }, cb)));
      s.rec("leader", await s.call((cb) => s.election.leader({ name: B("e1") }, cb)));
      s.rec("resign by a non-owner", await s.call((cb) => s.election.resign({ leader: { ...aKey!, rev: 1n } }, cb)));
      s.rec("resign A", await s.call((cb) => s.election.resign({ leader: aKey }, cb)));
      const bAnswer = await b;
      s.rec("campaign B", bAnswer);
      s.rec("leader", await s.call((cb) => s.election.leader({ name: B("e1") }, cb)));
      s.rec("campaign C", byDeadline(await s.call((cb) => s.election.campaign({ name: B("e1"), lease: 0x5003n, value: B("c1") }, new Metadata(), { deadline: Date.now() + 300 }, cb))));
      s.rec("keys after C went away", await s.keysSettled("e1/", 1));
      s.rec("revoke B's lease", await s.revoke(0x5002n));
      s.rec("campaign A again", await s.call((cb) => s.election.campaign({ name: B("e1"), lease: 0x5001n, value: B("a3") }, cb)));
      s.rec("re-campaign A with a new value", await s.call((cb) => s.election.campaign({ name: B("e1"), lease: 0x5001n, value: B("a4") }, cb)));
      s.rec("leader", await s.call((cb) => s.election.leader({ name: B("e1") }, cb)));
      await sleep(300);
      obs.stream.cancel();
      s.rec("observe", obs.messages);
      s.rec("revoke", [await s.revoke(0x5001n), await s.revoke(0x5003n)]);
      s.rec("leader after all left", await s.call((cb) => s.election.leader({ name: B("e1") }, cb)));
    });
  });

  it("election: errors and leases the request does not name", async () => {
    await differential(async (s) => {
      s.rec("campaign missing lease", await s.call((cb) => s.election.campaign({ name: B("e2"), lease: 0x999n, value: B("v") }, cb)));
      s.rec("proclaim without leader", await s.call((cb) => s.election.proclaim({ leader: undefined, value: B("v") }, cb)));
      s.rec("resign without leader", await s.call((cb) => s.election.resign({ leader: undefined }, cb)));
      s.rec("proclaim empty leader", await s.call((cb) => s.election.proclaim({ leader: { name: B(""), key: B(""), rev: 0n, lease: 7n }, value: B("v") }, cb)));
      await s.grant(0x6001n, 300);
      const a = await s.call<CampaignResponse>((cb) => s.election.campaign({ name: B("e2"), lease: 0x6001n, value: B("v") }, cb));
      s.rec("campaign", a);
      const key = "ok" in a ? a.ok.leader : undefined;
      s.rec("proclaim with a missing lease", await s.call((cb) => s.election.proclaim({ leader: { ...key!, lease: 0x999n }, value: B("w") }, cb)));
      const fresh = await s.call<CampaignResponse>((cb) => s.election.campaign({ name: B("e3"), lease: 0n, value: B("z") }, cb));
      const chosen = "ok" in fresh ? fresh.ok.leader!.lease : 0n;
      s.chose(chosen);
      s.rec("campaign lease 0", fresh);
      s.rec("revoke", [await s.revoke(0x6001n), await s.revoke(chosen)]);
      // Proclaim and Resign naming lease 0 get a fresh session lease too; Proclaim's put moves
      // the leader's key onto it.
      await s.grant(0x6002n, 300);
      const e4 = await s.call<CampaignResponse>((cb) => s.election.campaign({ name: B("e4"), lease: 0x6002n, value: B("v") }, cb));
      const e4Key = "ok" in e4 ? e4.ok.leader! : undefined;
      s.rec("proclaim naming lease 0", await s.call((cb) => s.election.proclaim({ leader: { ...e4Key!, lease: 0n }, value: B("w") }, cb)));
      const now = await s.call<LeaderResponse>((cb) => s.election.leader({ name: B("e4") }, cb));
      if ("ok" in now) s.chose(now.ok.kv!.lease);
      s.rec("leader", now);
      s.rec("resign naming lease 0", await s.call((cb) => s.election.resign({ leader: { ...e4Key!, lease: 0n } }, cb)));
      const leases = await s.call<{ leases: Array<{ ID: bigint }> }>((cb) => s.lease.leaseLeases({}, cb));
      s.rec("leases", "ok" in leases ? leases.ok.leases.length : leases);
      for (const l of "ok" in leases ? leases.ok.leases : []) await s.revoke(l.ID);
    });
  });

  it("gateway: lock contention, election and errors under /v3 and /v3beta", async () => {
    await differential(async (s) => {
      await s.grant(0x7001n, 300);
      await s.grant(0x7002n, 300);
      s.rec("lock A", await s.post("/v3/lock/lock", { name: b64("g1"), lease: String(0x7001) }));
      const b = s.post("/v3beta/lock/lock", { name: b64("g1"), lease: String(0x7002) });
      s.rec("B answered within 500ms", await settlesWithin(b, 500));
      s.rec("unlock A", await s.post("/v3/lock/unlock", { key: b64("g1/7001") }));
      s.rec("lock B", await b);
      const gone = s.postStream("/v3/lock/lock", { name: b64("g1"), lease: String(0x7001) });
      await sleep(300);
      s.rec("keys while a gateway client waits", await s.keys("g1/"));
      gone.close();
      s.rec("keys after it went away", await s.keysSettled("g1/", 1));
      s.rec("lock missing lease", await s.post("/v3/lock/lock", { name: b64("g1"), lease: "12345" }));
      s.rec("unlock empty", await s.post("/v3/lock/unlock", {}));
      s.rec("leader none", await s.post("/v3/election/leader", { name: b64("g2") }));
      const obs = s.postStream("/v3/election/observe", { name: b64("g2") });
      await sleep(200);
      const a = await s.post("/v3/election/campaign", { name: b64("g2"), lease: String(0x7001), value: b64("x") });
      s.rec("campaign", a);
      const leader = (a.body as { leader?: Record<string, string> }).leader ?? {};
      const leaderKey = { name: b64(leader.name ?? ""), key: b64(leader.key ?? ""), rev: leader.rev, lease: leader.lease };
      s.rec("proclaim", await s.post("/v3/election/proclaim", { leader: leaderKey, value: b64("y") }));
      s.rec("proclaim not leader", await s.post("/v3/election/proclaim", { leader: { ...leaderKey, rev: "1" }, value: b64("y") }));
      s.rec("proclaim no leader field", await s.post("/v3/election/proclaim", {}));
      s.rec("leader", await s.post("/v3beta/election/leader", { name: b64("g2") }));
      s.rec("resign", await s.post("/v3/election/resign", { leader: leaderKey }));
      s.rec("leader after resign", await s.post("/v3/election/leader", { name: b64("g2") }));
      await sleep(300);
      s.rec("observe status", await obs.status);
      s.rec("observe lines", obs.lines);
      obs.close();
      s.rec("revoke", [await s.revoke(0x7001n), await s.revoke(0x7002n)]);
    });
  });

  it("interoperates with etcdctl's client-side recipes (same key layout)", async () => {
    await differential(async (s) => {
      const holder = spawnEtcdctl(s.member.clientUrl, ["lock", "i1"]);
      const printed = await holder.waitFor((out) => out.includes("\n"), 10_000);
      const line = holder.stdout.trim();
      s.rec("etcdctl lock holds", printed && line.startsWith("i1/"));
      if (printed) s.chose(BigInt(`0x${line.slice(3)}`));
      await s.grant(0x8001n, 300);
      const mine = s.call((cb) => s.lock.lock({ name: B("i1"), lease: 0x8001n }, cb));
      s.rec("Lock answered while etcdctl holds", await settlesWithin(mine, 500));
      await holder.stop("SIGINT");
      s.rec("Lock after etcdctl released", await mine);
      s.rec("unlock", await s.call((cb) => s.lock.unlock({ key: B("i1/8001") }, cb)));

      const watcher = spawnEtcdctl(s.member.clientUrl, ["elect", "-l", "i2"]);
      await sleep(300);
      const a = await s.call<CampaignResponse>((cb) => s.election.campaign({ name: B("i2"), lease: 0x8001n, value: B("first") }, cb));
      s.rec("campaign", a);
      if ("ok" in a) s.rec("proclaim", await s.call((cb) => s.election.proclaim({ leader: a.ok.leader, value: B("second") }, cb)));
      await watcher.waitFor((out) => out.includes("second"), 3_000);
      s.rec("etcdctl elect -l printed", (await watcher.stop("SIGINT")).stdout);
      s.rec("revoke", await s.revoke(0x8001n));
    });
  });
});
