/**
 * The client port's policy on a client's PINGs (etcd's --grpc-keepalive-min-time, grpc-go's
 * keepalive enforcement), on etcd-ts and on the reference etcd 3.4 side by side, over raw HTTP/2:
 *
 * - with no stream open, a PING within two hours of the previous one is a strike; the third
 *   strike (the fourth PING) gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and the connection
 *   closes;
 * - a PING after the server sent headers or data (an answer) is no strike, so a client that pings
 *   between its calls is never cut off;
 * - with a stream open (a watch), PINGs further apart than the minimum time are no strikes, and
 *   closer ones are.
 *
 * etcd-ts runs twice: on pkg/h2 (its client port's own HTTP/2), and with its connections on
 * node:http2 (as under --client-cert-auth).
 */
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec, startMember, type Member } from "../harness/member.js";
import { sleep } from "../harness/processes.js";

const MIN_TIME_MS = 1000;
const etcdPath = referenceEtcdPath();

interface Outcome {
  /** The GOAWAY's code and debug data, if one came. */
  goaway?: { code: number; debug: string };
}

/** Opens a connection, runs `script` on it, and reports whether the server sent GOAWAY. */
async function onConnection(url: string, script: (s: http2.ClientHttp2Session) => Promise<void>): Promise<Outcome> {
  const session = http2.connect(url);
  const outcome: Outcome = {};
  session.on("goaway", (code, _last, data) => (outcome.goaway = { code, debug: data?.toString() ?? "" }));
  session.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  try {
    await script(session);
    await sleep(300); // a GOAWAY after the last PING
  } finally {
    session.destroy();
  }
  return outcome;
}

function ping(s: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (s.closed || s.destroyed) return resolve();
    if (!s.ping(() => resolve())) resolve();
  });
}

/** A unary Range on `s` (an empty request): the server answers with headers and trailers. */
function unary(s: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (s.closed || s.destroyed) return resolve();
    const req = s.request({ ":method": "POST", ":path": "/etcdserverpb.KV/Range", "content-type": "application/grpc", te: "trailers" });
    req.on("error", () => resolve());
    req.on("close", () => resolve());
    req.resume();
    req.end(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00])); // RangeRequest{key: ""}
  });
}

/** Opens a Watch stream and leaves it open (the server answers its headers only when it writes). */
function openWatch(s: http2.ClientHttp2Session): http2.ClientHttp2Stream {
  const req = s.request({ ":method": "POST", ":path": "/etcdserverpb.Watch/Watch", "content-type": "application/grpc", te: "trailers" });
  req.on("error", () => undefined);
  req.resume();
  // WatchRequest{create_request{key: "ping-policy"}}
  const key = Buffer.from("ping-policy");
  const create = Buffer.concat([Buffer.from([0x0a, key.length]), key]);
  const body = Buffer.concat([Buffer.from([0x0a, create.length]), create]);
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  req.write(frame);
  return req;
}

// "etcd-ts node:http2": the connections node:http2 serves for grpc-js (node-h2-pings.ts), as under
// --client-cert-auth; ETCD_TS_H2=node hands every connection there.
describe.each(["etcd-ts", "etcd-ts node:http2", "etcd"])("ping policy on %s", (kind) => {
  let member: Member;
  const skip = kind === "etcd" && etcdPath === undefined;

  beforeAll(async () => {
    if (skip) return;
    member = await startMember({
      binary: kind === "etcd" ? serverBinaryFromSpec(etcdPath) : etcdTsBinary(),
      name: `ping-${kind.replace(/[^a-z0-9-]/g, "-")}`,
      ...(kind === "etcd-ts node:http2" ? { env: { ETCD_TS_H2: "node" } } : {}),
      extraArgs: [`--grpc-keepalive-min-time=${MIN_TIME_MS / 1000}s`],
    });
  }, 60_000);

  afterAll(async () => {
    await member?.destroy();
  });

  it.skipIf(skip)("cuts off the fourth quick PING without a stream with GOAWAY ENHANCE_YOUR_CALM too_many_pings", async () => {
    const outcome = await onConnection(member.clientUrl, async (s) => {
      for (let i = 0; i < 6 && !s.closed && !s.destroyed; i++) await ping(s);
    });
    expect(outcome.goaway).toEqual({ code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, debug: "too_many_pings" });
  });

  it.skipIf(skip)("takes PINGs between calls: an answer resets the strikes", async () => {
    const outcome = await onConnection(member.clientUrl, async (s) => {
      for (let i = 0; i < 6; i++) {
        await ping(s);
        await unary(s);
      }
      await ping(s);
    });
    expect(outcome.goaway).toBeUndefined();
  });

  it.skipIf(skip)("with a stream open, takes PINGs further apart than the minimum and cuts off closer ones", async () => {
    const spaced = await onConnection(member.clientUrl, async (s) => {
      openWatch(s);
      await sleep(200);
      for (let i = 0; i < 4; i++) {
        await ping(s);
        await sleep(MIN_TIME_MS + 200);
      }
    });
    expect(spaced.goaway).toBeUndefined();
    const close = await onConnection(member.clientUrl, async (s) => {
      openWatch(s);
      await sleep(200);
      await ping(s); // the watch's created answer was sent since the connection began: no strike
      for (let i = 0; i < 4; i++) {
        await sleep(MIN_TIME_MS / 4);
        await ping(s);
      }
    });
    expect(close.goaway).toEqual({ code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, debug: "too_many_pings" });
  }, 20_000);
});
