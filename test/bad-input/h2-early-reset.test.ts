/**
 * A client that opens HTTP/2 streams and resets them in the same write (a call cancelled at
 * once; h2spec does it too) must not take the server down. grpc-js answered such a stream after
 * node:http2 had destroyed it, and the uncaught ERR_HTTP2_INVALID_STREAM ended etcd-ts; see
 * server/src/api/v3rpc/grpc-stream-guard.ts.
 *
 * Each case: a few connections, each opening streams on gRPC and non-gRPC paths (lean methods,
 * bridged ones, an unknown one, "/"), with and without a body, each reset at once; then the
 * member must still be running and answer a put and a get. Runs on etcd-ts's three client-port
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

/** Opens every path × {gRPC POST, plain GET} × {with, without END_STREAM} and resets each stream in the same tick. */
async function openAndReset(url: string): Promise<void> {
  const session = http2.connect(url);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
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
