/**
 * Snapshot transfer over loopback: sendSnapshot → createSnapshotHandler with the member's real
 * database format (server/etcd-database-image.ts), the image coming out as it went in; the
 * database on the wire checked by our bbolt reader and by `etcdctl snapshot status`; and the
 * handler's answers to bad requests, each etcd's.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FOLLOWER, LEADER, imageOf, pairs } from "./snapshot-fixtures.js";
import { BboltReader } from "../../src/mvcc/backend/bbolt-reader.js";
import { BboltWriter } from "../../src/mvcc/backend/bbolt-writer.js";
import { Bucket, bucketKey, encodeUint64, type BackendImage } from "../../src/mvcc/backend/backend.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { MessageType, emptyMessage, type Message } from "../../src/raft/types.js";
import { encodeMessageFrame } from "../../src/rafthttp/message-stream.js";
import { createSnapshotHandler } from "../../src/rafthttp/snapshot-handler.js";
import { snapshotDatabaseFileName } from "../../src/server/transport-port.js";
import { sendSnapshot } from "../../src/rafthttp/snapshot-sender.js";
import { encodeConfState } from "../../src/server/cluster/conf-change.js";
import { etcdSnapshotDatabase } from "../../src/server/etcd-database-image.js";
import { META_MVCC_CONSISTENT_INDEX } from "../../src/server/mvcc-store-port.js";
import { PeerMessageRefusedError, type MergedSnapshot, type PeerHandler } from "../../src/server/transport-port.js";

const CLUSTER = 0xcdf818194e3a8c32n;


const ETCDCTL = process.env.ETCDCTL_BIN ?? "/usr/bin/etcdctl";

const root = mkdtempSync(path.join(os.tmpdir(), "rafthttp-snapshot-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function collect(image: BackendImage): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const [k, v] of image) out.set(k.toString("hex"), v.toString("hex"));
  return out;
}

function msgSnap(index: number, term: number): Message {
  const m = emptyMessage(MessageType.Snap, FOLLOWER, LEADER);
  m.term = term;
  m.snapshot = { data: Buffer.from('{"Root":{}}'), metadata: { index, term, confState: { voters: [LEADER], learners: [FOLLOWER] } } };
  return m;
}

class FakeMember implements PeerHandler {
  received: MergedSnapshot[] = [];
  refuse: PeerMessageRefusedError | undefined;
  process(): void {}
  receiveSnapshot(merged: MergedSnapshot): void {
    if (this.refuse !== undefined) throw this.refuse;
    this.received.push(merged);
  }
  isIdRemoved(): boolean {
    return false;
  }
  reportUnreachable(): void {}
  reportRemoved(): void {}
  reportSnapshot(): void {}
}

let server: http.Server;
let url: string;
const member = new FakeMember();
const receiverDir = path.join(root, "receiver");
const senderDir = path.join(root, "sender");

beforeAll(async () => {
  for (const d of [receiverDir, senderDir]) execFileSync("mkdir", ["-p", d]);
  const handler = createSnapshotHandler(
    { localId: FOLLOWER, clusterId: CLUSTER, snapDir: receiverDir, messageLimitBytes: 1024 * 1024 },
    { member, database: etcdSnapshotDatabase, logger: nullLogger },
  );
  server = http.createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

const senderOptions = { localId: LEADER, clusterId: CLUSTER, peerUrls: ["http://127.0.0.1:2380"], snapDir: senderDir };

describe("snapshot transfer, sender to handler", () => {
  it("delivers the message and an image equal to the one sent (in etcd-ts's layout)", async () => {
    member.received = [];
    const list = pairs();
    const result = await sendSnapshot({ message: msgSnap(360, 3), image: imageOf(list) }, url, senderOptions, { database: etcdSnapshotDatabase, logger: nullLogger });
    expect(result.ok).toBe(true);
    expect(readdirSync(senderDir)).toEqual([]);
    expect(member.received).toHaveLength(1);
    const got = member.received[0]!;
    expect(got.message.snapshot?.metadata).toEqual({ index: 360, term: 3, confState: { voters: [LEADER], learners: [FOLLOWER] } });
    const file = path.join(receiverDir, snapshotDatabaseFileName(360));
    expect(existsSync(file)).toBe(true);

    // the database on the wire: a sound bbolt file in etcd's buckets, which etcdctl reads
    const reader = BboltReader.open(file);
    expect(reader.check()).toEqual([]);
    expect(reader.bucketNames().map(String).sort()).toEqual(
      ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"],
    );
    reader.close();
    if (existsSync(ETCDCTL)) {
      const status = JSON.parse(execFileSync(ETCDCTL, ["snapshot", "status", file, "-w", "json"], { encoding: "utf8" })) as { revision: number; totalKey: number };
      expect(status.revision).toBe(301);
      expect(status.totalKey).toBeGreaterThanOrEqual(300);
    }

    // and back: the image the member installs
    const image = await collect(got.image);
    expect(existsSync(file), "the file stays until the member releases it").toBe(true);
    const sent = new Map(list.map(([k, v]) => [k.toString("hex"), v.toString("hex")]));
    for (const [k, v] of sent) {
      if (k.startsWith("02")) continue; // meta: compared below
      expect(image.get(k), `bucket ${k.slice(0, 2)} key ${Buffer.from(k.slice(2), "hex").toString()}`).toBe(v);
    }
    const meta = (name: string | Buffer): string | undefined => image.get(bucketKey("meta", Buffer.from(name)).toString("hex"));
    expect(meta("consistent_index")).toBe(encodeUint64(360).toString("hex")); // max(etcd's index 340, snapshot 360)
    expect(meta(META_MVCC_CONSISTENT_INDEX)).toBe(encodeUint64(340).toString("hex"));
    expect(meta("term")).toBe(encodeUint64(3).toString("hex"));
    expect(meta("confState")).toBe(encodeConfState({ voters: [LEADER], learners: [FOLLOWER] }).toString("hex"));
    expect(meta("finishedCompactRev")).toBeDefined();
    for (const k of image.keys()) expect(Number.parseInt(k.slice(0, 2), 16)).not.toBe(Bucket.membersRemoved);
  });

  it("reports etcd's outcomes: cluster ID mismatch, member removed, unreachable", async () => {
    const deps = { database: etcdSnapshotDatabase, logger: nullLogger };
    const other = await sendSnapshot({ message: msgSnap(361, 3), image: imageOf(pairs()) }, url, { ...senderOptions, clusterId: 1n }, deps);
    expect(other).toEqual({ ok: false, failure: "ClusterIdMismatch", error: "cluster ID mismatch" });
    member.refuse = new PeerMessageRefusedError("MemberRemoved", "removed");
    try {
      const removed = await sendSnapshot({ message: msgSnap(362, 3), image: imageOf(pairs()) }, url, senderOptions, deps);
      expect(removed).toMatchObject({ ok: false, failure: "MemberRemoved" });
    } finally {
      member.refuse = undefined;
    }
    const closed = await sendSnapshot({ message: msgSnap(363, 3), image: imageOf(pairs()) }, "http://127.0.0.1:1", senderOptions, deps);
    expect(closed).toMatchObject({ ok: false, failure: "Failed" });
    expect(readdirSync(senderDir)).toEqual([]);
  });
});

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

function request(method: string, body: Uint8Array | undefined, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/raft/snapshot`, {
      method,
      headers: {
        "X-Etcd-Cluster-ID": CLUSTER.toString(16), "X-Server-Version": "3.4.23", "X-Min-Cluster-Version": "3.0.0",
        "X-Server-From": LEADER.toString(16), ...headers,
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString(), headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : Buffer.from(body));
  });
}

async function validDatabase(): Promise<Buffer> {
  const file = path.join(root, `db-${Math.random()}`);
  await etcdSnapshotDatabase.writeEtcdDatabase(imageOf(pairs()), await BboltWriter.create(file));
  const { readFileSync } = await import("node:fs");
  return readFileSync(file);
}

describe("snapshot handler: bad requests get etcd's answers, nothing crashes", () => {
  const frame = (m: Message): Buffer => Buffer.from(encodeMessageFrame(m));

  it("refuses other methods (405) and foreign requests (412)", async () => {
    const get = await request("GET", undefined);
    expect(get).toMatchObject({ status: 405, body: "Method Not Allowed\n" });
    expect(get.headers.allow).toBe("POST");
    const cid = await request("POST", frame(msgSnap(1, 1)), { "X-Etcd-Cluster-ID": "deadbeef" });
    expect(cid).toMatchObject({ status: 412, body: "cluster ID mismatch\n" });
    expect(cid.headers["x-etcd-cluster-id"]).toBe(CLUSTER.toString(16));
    expect(await request("POST", frame(msgSnap(1, 1)), { "X-Server-Version": "2.3.8" })).toMatchObject({ status: 412, body: "incompatible version\n" });
    expect(await request("POST", frame(msgSnap(1, 1)), { "X-Min-Cluster-Version": "3.5.0" })).toMatchObject({ status: 412, body: "incompatible version\n" });
    expect(await request("POST", frame(msgSnap(1, 1)), { "X-Server-Version": "garbage" })).toMatchObject({ status: 412, body: "incompatible version\n" });
  });

  it("refuses a body that is not a framed raft message (400)", async () => {
    expect(await request("POST", new Uint8Array(0))).toMatchObject({ status: 400, body: "failed to decode raft message (EOF)\n" });
    expect(await request("POST", Uint8Array.of(0, 0, 0))).toMatchObject({ status: 400, body: "failed to decode raft message (unexpected EOF)\n" });
    const long = Buffer.alloc(8);
    long.writeBigUInt64BE(1n << 62n);
    expect(await request("POST", long)).toMatchObject({ status: 400, body: "failed to decode raft message (rafthttp: error limit exceeded)\n" });
    const truncated = frame(msgSnap(1, 1)).subarray(0, 20);
    expect(await request("POST", truncated)).toMatchObject({ status: 400, body: "failed to decode raft message (unexpected EOF)\n" });
    const garbage = Buffer.from("0000000000000002" + "0c00", "hex");
    expect(await request("POST", garbage)).toMatchObject({ status: 400, body: "failed to decode raft message (proto: Message: wiretype end group for non-group)\n" });
    expect(await request("POST", frame(emptyMessage(MessageType.App, FOLLOWER, LEADER)))).toMatchObject({ status: 400, body: "wrong raft message type\n" });
  });

  it("refuses a database that is not a sound bbolt file (500), keeping nothing", async () => {
    const before = readdirSync(receiverDir);
    const bad = await request("POST", Buffer.concat([frame(msgSnap(500, 4)), Buffer.from("not a bbolt database at all")]));
    expect(bad.status).toBe(500);
    expect(bad.body).toMatch(/^failed to save KV snapshot \(/);
    const db = await validDatabase();
    const cut = await request("POST", Buffer.concat([frame(msgSnap(501, 4)), db.subarray(0, db.length - 4096)]));
    expect(cut.status).toBe(500);
    expect(cut.body).toMatch(/^failed to save KV snapshot \(/);
    expect(readdirSync(receiverDir)).toEqual(before);
  });

  it("answers the member's refusals as etcd does", async () => {
    const db = await validDatabase();
    member.refuse = new PeerMessageRefusedError("MemberRemoved", "removed");
    try {
      const removed = await request("POST", Buffer.concat([frame(msgSnap(600, 4)), db]));
      expect(removed).toMatchObject({ status: 403, body: '{"message":"cannot process message from removed member"}' });
      expect(removed.headers["content-type"]).toBe("application/json");
      member.refuse = new PeerMessageRefusedError("SnapshotBacklogFull", "4 received snapshots wait to be applied");
      const full = await request("POST", Buffer.concat([frame(msgSnap(601, 4)), db]));
      expect(full).toMatchObject({ status: 500, body: "failed to process raft message (4 received snapshots wait to be applied)\n" });
    } finally {
      member.refuse = undefined;
    }
    expect(existsSync(path.join(receiverDir, snapshotDatabaseFileName(600)))).toBe(false);
    member.received = [];
    const ok = await request("POST", Buffer.concat([frame(msgSnap(602, 4)), db]));
    expect(ok.status).toBe(204);
    expect(member.received).toHaveLength(1);
  });

  it("survives a sender that goes away mid-body", async () => {
    const db = await validDatabase();
    const body = Buffer.concat([frame(msgSnap(700, 4)), db]);
    await new Promise<void>((resolve) => {
      const req = http.request(`${url}/raft/snapshot`, {
        method: "POST",
        headers: { "X-Etcd-Cluster-ID": CLUSTER.toString(16), "Content-Length": String(body.length) },
      });
      req.on("error", () => resolve());
      req.write(body.subarray(0, body.length >> 1), () => setTimeout(() => {
        req.destroy();
        resolve();
      }, 50));
    });
    await new Promise((r) => setTimeout(r, 200));
    const fine = await request("GET", undefined);
    expect(fine.status).toBe(405);
    expect(readdirSync(receiverDir).filter((f) => f.startsWith("tmp-"))).toEqual([]);
    expect(existsSync(path.join(receiverDir, snapshotDatabaseFileName(700)))).toBe(false);
  });
});

// keep a copy of a wire database for manual inspection when asked
if (process.env.RAFTHTTP_KEEP_DB !== undefined) {
  void validDatabase().then((b) => writeFileSync(process.env.RAFTHTTP_KEEP_DB!, b));
}
