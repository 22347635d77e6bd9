/**
 * Snapshot transfer against real etcd 3.4 (skipped when /usr/bin/etcd is missing):
 *  - to etcd: sendSnapshot POSTs a merged snapshot (our image as an etcd database, the v2 store
 *    taken from etcd's own snapshot file) to a running single-member etcd as a new leader of a
 *    higher term; etcd takes it (204), installs the database and serves our keys from it;
 *  - from etcd: two real members and a stand-in third (our snapshot handler on its peer URL; it
 *    answers heartbeats with our message codec, and nothing else) form a cluster; once the leader has compacted its log past what the
 *    stand-in has, it POSTs a snapshot, which the handler takes and turns into an image holding
 *    the keys written.
 * Network: loopback, free ports.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KeyValue } from "@etcd-ts/proto/mvccpb/kv";
import { Snapshot as PbSnapshot } from "@etcd-ts/proto/raftpb/raft";
import { nullLogger } from "../../server/src/pkg/logger.js";
import { MessageType, emptyMessage } from "../../server/src/raft/types.js";
import { decodeMessage, encodeMessage } from "../../server/src/rafthttp/message-codec.js";
import { peerPostHeaders, type PeerIdentity } from "../../server/src/rafthttp/peer-headers.js";
import { createSnapshotHandler } from "../../server/src/rafthttp/snapshot-handler.js";
import { sendSnapshot } from "../../server/src/rafthttp/snapshot-sender.js";
import { etcdSnapshotDatabase } from "../../server/src/server/etcd-database-image.js";
import type { MergedSnapshot, PeerHandler } from "../../server/src/server/transport-port.js";
import { imageOf, pairs } from "../../server/test/rafthttp/snapshot-fixtures.js";
import { GrpcLiteClient } from "../harness/grpc-lite.js";
import { freePorts, killChild, sleep, trackChild } from "../harness/processes.js";

const ETCD = process.env.ETCD_REFERENCE_BIN ?? "/usr/bin/etcd";
const root = mkdtempSync(path.join(os.tmpdir(), "peer-wire-etcd-"));
const children: ChildProcess[] = [];
const clients: GrpcLiteClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(children.map((c) => killChild(c)));
  rmSync(root, { recursive: true, force: true });
});

function startEtcd(name: string, client: number, peer: number, cluster: string, extra: string[] = []): string {
  const dir = path.join(root, name);
  const child = spawn(ETCD, [
    "--name", name, "--data-dir", dir,
    "--listen-client-urls", `http://127.0.0.1:${client}`, "--advertise-client-urls", `http://127.0.0.1:${client}`,
    "--listen-peer-urls", `http://127.0.0.1:${peer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peer}`,
    "--initial-cluster", cluster, "--initial-cluster-token", "peer-wire", ...extra,
  ], { stdio: ["ignore", "ignore", "pipe"] });
  const log: Buffer[] = [];
  child.stderr!.on("data", (c: Buffer) => log.push(c));
  (child as ChildProcess & { log?: Buffer[] }).log = log;
  trackChild(child);
  children.push(child);
  return dir;
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (${String(last)})`);
}

function client(port: number): GrpcLiteClient {
  const c = new GrpcLiteClient({ url: `http://127.0.0.1:${port}`, callTimeoutMs: 10_000 });
  clients.push(c);
  return c;
}

/** The v2 store in etcd's newest snapshot file (snappb.Snapshot {crc = 1, data = 2} around raftpb.Snapshot). */
function v2StoreOf(dataDir: string): Buffer {
  const snapDir = path.join(dataDir, "member", "snap");
  const files = readdirSync(snapDir).filter((f) => f.endsWith(".snap")).sort();
  const b = readFileSync(path.join(snapDir, files[files.length - 1]!));
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    for (let s = 0; ; s += 7) {
      const c = b[pos++]!;
      v += (c & 0x7f) * 2 ** s;
      if (c < 0x80) return v;
    }
  };
  while (pos < b.length) {
    const key = varint();
    if (key === 0x08) varint();
    else if (key === 0x12) {
      const n = varint();
      return Buffer.from(PbSnapshot.decode(b.subarray(pos, pos + n)).data!);
    } else throw new Error(`unexpected field ${key} in ${files[files.length - 1]}`);
  }
  throw new Error("no data in the snapshot file");
}

describe.skipIf(!existsSync(ETCD))("snapshot transfer with real etcd 3.4", () => {
  it("etcd installs a snapshot sendSnapshot sends, and serves its keys", async () => {
    const [clientPort, peerPort] = await freePorts(2);
    const dir = startEtcd("y", clientPort!, peerPort!, `y=http://127.0.0.1:${peerPort}`, ["--snapshot-count", "10"]);
    const c = client(clientPort!);
    await until("etcd to serve", 20_000, async () => (await c.status()).leader !== 0n || undefined);
    for (let i = 0; i < 15; i++) await c.put(`etcd-own-${i}`, "x");
    const v2 = await until("etcd's snapshot file", 10_000, async () => v2StoreOf(dir));
    const status = await c.status();
    const self = status.header.memberId;
    const fakeLeader = 0x1234n;
    const m = emptyMessage(MessageType.Snap, self, fakeLeader);
    m.term = Number(status.raftTerm) + 1;
    const index = Number(status.raftIndex) + 100;
    m.snapshot = { data: v2, metadata: { index, term: m.term, confState: { voters: [self, fakeLeader], learners: [] } } };
    const merged: MergedSnapshot = { message: m, image: imageOf(pairs()) };
    const sendDir = path.join(root, "send");
    rmSync(sendDir, { recursive: true, force: true });
    await import("node:fs").then((fs) => fs.mkdirSync(sendDir));
    const result = await sendSnapshot(merged, `http://127.0.0.1:${peerPort}`, {
      localId: fakeLeader, clusterId: status.header.clusterId, peerUrls: ["http://127.0.0.1:1"], snapDir: sendDir,
    }, { database: etcdSnapshotDatabase, logger: nullLogger });
    expect(result).toMatchObject({ ok: true });
    // etcd applies it: our keys, at our revision, served from the installed database
    const got = await until("etcd to serve the snapshot's keys", 20_000, async () => {
      const r = await c.range("key-0123", { serializable: true });
      return r.kvs.length === 1 ? r : undefined;
    });
    expect(got.kvs[0]!.value).toBe("value 123 ".repeat(123 % 7));
    expect(got.header.revision).toBe(301n);
    const old = await c.range("etcd-own-1", { serializable: true });
    expect(old.kvs).toHaveLength(0);
    expect(children[children.length - 1]!.exitCode).toBeNull();
  }, 90_000);

  it("a real etcd leader sends a lagging member a snapshot the handler takes", async () => {
    const [c1, p1, c2, p2, ps] = await freePorts(5);
    const cluster = `a=http://127.0.0.1:${p1},b=http://127.0.0.1:${p2},s=http://127.0.0.1:${ps}`;
    // the stand-in's peer URL: the snapshot handler, and nothing else but polite no-ops
    const received: MergedSnapshot[] = [];
    const member: PeerHandler = {
      process: () => undefined,
      receiveSnapshot: (merged) => void received.push(merged),
      isIdRemoved: () => false,
      reportUnreachable: () => undefined,
      reportRemoved: () => undefined,
      reportSnapshot: () => undefined,
    };
    const snapDir = path.join(root, "stand-in");
    await import("node:fs").then((fs) => fs.mkdirSync(snapDir));
    let identity: PeerIdentity | undefined;
    let handler: ((req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) | undefined;
    const server = http.createServer((req, res) => {
      if (req.url === "/raft/snapshot" && handler !== undefined) return void handler(req, res);
      req.resume();
      if (req.url === "/version") return void res.end(JSON.stringify({ etcdserver: "3.4.23", etcdcluster: "3.4.0" }));
      if (req.method === "POST" && req.url === "/raft") {
        // pipeline messages: answer heartbeats (so that the leader keeps probing), ignore the rest
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        return void req.on("end", () => {
          res.statusCode = 204;
          res.end();
          const m = decodeMessage(Buffer.concat(chunks));
          const urls = req.headers["x-peerurls"];
          if (m.type !== MessageType.Heartbeat || identity === undefined || typeof urls !== "string") return;
          const resp = emptyMessage(MessageType.HeartbeatResp, m.from, identity.localId);
          resp.term = m.term;
          const out = http.request(new URL("/raft", urls.split(",")[0]!), { method: "POST", headers: peerPostHeaders(identity, "application/protobuf") });
          out.on("error", () => undefined);
          out.on("response", (r) => r.resume());
          out.end(encodeMessage(resp));
        });
      }
      res.statusCode = 404;
      res.end("not here\n");
    });
    await new Promise<void>((r) => server.listen(ps, "127.0.0.1", r));
    try {
      startEtcd("a", c1!, p1!, cluster, ["--snapshot-count", "100"]);
      startEtcd("b", c2!, p2!, cluster, ["--snapshot-count", "100"]);
      const a = client(c1!);
      const status = await until("the two real members to elect", 30_000, async () => {
        const s = await a.status();
        return s.leader !== 0n ? s : undefined;
      });
      const members = (await a.memberList()).members;
      const standIn = members.find((mm) => mm.peerUrls.includes(`http://127.0.0.1:${ps}`))!.id;
      identity = { localId: standIn, clusterId: status.header.clusterId, peerUrls: [`http://127.0.0.1:${ps}`] };
      handler = createSnapshotHandler(
        { localId: standIn, clusterId: status.header.clusterId, snapDir },
        { member, database: etcdSnapshotDatabase, logger: nullLogger },
      );
      // past etcd's 5000 catch-up entries kept behind a snapshot, so the stand-in's next entry is gone
      const writes = 5_400;
      let next = 0;
      await Promise.all(Array.from({ length: 32 }, async () => {
        for (let i = next++; i < writes; i = next++) await a.put(`k-${String(i).padStart(5, "0")}`, `v${i}`);
      }));
      const merged = await until("the leader's snapshot", 60_000, async () => received[0]);
      const snap = merged.message.snapshot!;
      expect(merged.message.type).toBe(MessageType.Snap);
      expect(merged.message.to).toBe(standIn);
      expect(snap.metadata.index).toBeGreaterThan(5_000);
      expect(snap.metadata.confState.voters.length).toBe(3);
      expect(Buffer.from(snap.data).toString().startsWith('{"Root"')).toBe(true);
      const keys = new Map<string, string>();
      let consistentIndex = 0;
      for await (const [k, v] of merged.image) {
        if (k[0] === 0x01) {
          const kv = KeyValue.decode(v);
          keys.set(kv.key.toString(), kv.value.toString());
        } else if (k[0] === 0x02 && k.subarray(1).toString() === "consistent_index") consistentIndex = v.readUInt32BE(0) * 2 ** 32 + v.readUInt32BE(4);
      }
      expect(consistentIndex).toBeGreaterThanOrEqual(snap.metadata.index);
      expect(keys.get("k-00042")).toBe("v42");
      expect(keys.size).toBeGreaterThan(4_000);
    } finally {
      await new Promise((r) => server.close(r));
      server.closeAllConnections();
    }
  }, 180_000);
});
