/**
 * A client that opens HTTP/2 streams and resets them in the same write (a call cancelled at
 * once; h2spec does it too) must not take the server down. grpc-js answered such a stream after
 * node:http2 had destroyed it, and the uncaught ERR_HTTP2_INVALID_STREAM ended etcd-ts; see
 * server/src/api/v3rpc/grpc-stream-guard.ts.
 *
 * Each case: a few connections, each opening streams on gRPC and non-gRPC paths (lean methods,
 * bridged ones, an unknown one, "/"), with and without a body, each reset at once; then the
 * member must still be running and answer a put and a get. Then valid calls on lean, bridged and
 * streaming methods, each reset a few milliseconds after it was sent, while the server answers. Runs on etcd-ts's three client-port
 * paths (pkg/h2 with bridging, node:http2 alone, grpc-js alone) and on etcd 3.4 when installed.
 */
import http2 from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member, type ServerBinary } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";

const PATHS = [
  "/",
  "/etcdserverpb.KV/Range",
  "/etcdserverpb.KV/Put",
  "/etcdserverpb.Maintenance/Status",
  "/etcdserverpb.Watch/Watch",
  "/etcdserverpb.Lease/LeaseKeepAlive",
  "/etcdserverpb.Cluster/MemberList",
  "/no.Such/Method",
];

/** An HTTP/2 session to `url`, once connected; its later errors are ignored (the server may reset it). */
async function connected(url: string): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return session;
}

/** Opens every path × {gRPC POST, plain GET} × {with, without END_STREAM} and resets each stream in the same tick. */
async function openAndReset(url: string): Promise<void> {
  const session = await connected(url);
  const closed: Array<Promise<void>> = [];
  for (const path of PATHS) {
    for (const grpc of [true, false]) {
      for (const endStream of [true, false]) {
        const headers: http2.OutgoingHttpHeaders = { ":path": path, ":method": grpc ? "POST" : "GET" };
        if (grpc) Object.assign(headers, { "content-type": "application/grpc", te: "trailers" });
        const req = session.request(headers, { endStream });
        req.on("error", () => {});
        if (!endStream) req.write(Buffer.from([0, 0, 0, 0, 0]));
        req.close(http2.constants.NGHTTP2_CANCEL);
        closed.push(new Promise<void>((resolve) => req.once("close", () => resolve())));
      }
    }
  }
  await Promise.all(closed);
  // a PING round trip: the server has read everything sent before it
  await new Promise<void>((resolve) => session.ping(() => resolve()));
  session.close();
}

/** gRPC bodies for calls on lean and bridged methods, unary and streaming. */
const EMPTY = Buffer.from([0, 0, 0, 0, 0]);
const KEY_A = Buffer.from([0, 0, 0, 0, 3, 0x0a, 1, 0x61]);
const CALLS: Array<[string, Buffer]> = [
  ["/etcdserverpb.KV/Range", KEY_A],
  ["/etcdserverpb.KV/Put", Buffer.from([0, 0, 0, 0, 6, 0x0a, 1, 0x61, 0x12, 1, 0x62])],
  ["/etcdserverpb.KV/Txn", EMPTY],
  ["/etcdserverpb.KV/DeleteRange", Buffer.from([0, 0, 0, 0, 3, 0x0a, 1, 0x7a])],
  ["/etcdserverpb.Maintenance/Status", EMPTY],
  ["/etcdserverpb.Maintenance/HashKV", EMPTY],
  ["/etcdserverpb.Maintenance/Snapshot", EMPTY],
  ["/etcdserverpb.Cluster/MemberList", EMPTY],
  ["/etcdserverpb.Lease/LeaseGrant", Buffer.from([0, 0, 0, 0, 2, 0x08, 60])],
  ["/etcdserverpb.Lease/LeaseKeepAlive", Buffer.from([0, 0, 0, 0, 2, 0x08, 1])],
  ["/etcdserverpb.Watch/Watch", Buffer.from([0, 0, 0, 0, 5, 0x0a, 3, 0x0a, 1, 0x61])],
  ["/v3electionpb.Election/Leader", KEY_A],
  ["/grpc.health.v1.Health/Check", EMPTY],
];

/** Each call (whole, or its body without END_STREAM) reset 0-3 ms after it was sent: while the server is mid-answer. */
async function callAndResetLater(url: string, rounds: number, seed: number): Promise<void> {
  let x = seed >>> 0 || 1;
  const next = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const session = await connected(url);
  const closed: Array<Promise<void>> = [];
  for (let r = 0; r < rounds; r++) {
    for (const [path, body] of CALLS) {
      const req = session.request({ ":path": path, ":method": "POST", "content-type": "application/grpc", te: "trailers" });
      req.on("error", () => {});
      req.on("data", () => {});
      if (next() < 0.5) req.end(body);
      else req.write(body);
      const delay = Math.floor(next() * 4);
      closed.push(new Promise<void>((resolve) => req.once("close", () => resolve())));
      setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), delay);
    }
  }
  await Promise.all(closed);
  session.close();
}

const targets: Array<{ name: string; binary: ServerBinary; env?: Record<string, string> }> = [
  { name: "etcd-ts (pkg/h2, bridged to grpc-js)", binary: etcdTsBinary() },
  { name: "etcd-ts (node:http2)", binary: etcdTsBinary(), env: { ETCD_TS_H2: "node" } },
  { name: "etcd-ts (grpc-js alone)", binary: etcdTsBinary(), env: { ETCD_TS_LEAN_UNARY: "off" } },
];
const reference = referenceEtcdPath();
if (reference !== undefined) targets.push({ name: "etcd 3.4", binary: serverBinaryFromSpec(reference) });

describe("HTTP/2 streams reset as they are opened", () => {
  let member: Member | undefined;

  afterEach(async () => {
    await member?.destroy();
    member = undefined;
    await killAllChildren();
  });

  for (const t of targets) {
    it(`leave ${t.name} running and answering`, async () => {
      member = await startMember({ binary: t.binary, name: "early-reset", env: t.env });
      for (let i = 0; i < 4; i++) await openAndReset(member.clientUrl);
      for (let i = 1; i <= 3; i++) await callAndResetLater(member.clientUrl, 20, i);
      // a crash surfaces a moment after the barrage
      await new Promise((r) => setTimeout(r, 200));
      expect(member.running, `${t.name} exited:\n${member.logTail()}`).toBe(true);
      const c = member.grpc();
      await c.put("after-reset", "still here");
      const r = await c.range("after-reset");
      expect(r.kvs.map((kv) => kv.value.toString())).toEqual(["still here"]);
    }, 60_000);
  }
});
