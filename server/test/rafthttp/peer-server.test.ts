/**
 * The peer port's answers to bad and good input, as etcd 3.4 answers them (status, text,
 * headers), and that the handler keeps serving after each.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageType, type Message } from "../../src/raft/types.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { PeerMessageRefusedError, type PeerHandler } from "../../src/server/transport-port.js";
import { encodeMessage } from "../../src/rafthttp/message-codec.js";
import { membersJson, peerRequestHandler, PeerServiceError, type PeerServices } from "../../src/rafthttp/peer-server.js";
import type { StreamRegistry } from "../../src/rafthttp/transport.js";

const CLUSTER = 0xcdf818194e3a8c32n;
const LOCAL = 0x8e9e05c52164694dn;
const PEER = 0x91bc3c398fb3c146n;
const REMOVED = 0x1234n;
const BIG = 0xfedcba9876543210n;

function message(over: Partial<Message> = {}): Message {
  return {
    type: MessageType.Heartbeat, to: LOCAL, from: PEER, term: 3, logTerm: 0, index: 0, entries: [], commit: 5,
    reject: false, rejectHint: 0, context: new Uint8Array(0), ...over,
  };
}

const processed: Message[] = [];
const remotes: [bigint, readonly string[]][] = [];
const attached: string[] = [];
const handler: PeerHandler = {
  process: (m) => {
    if (m.from === REMOVED) throw new PeerMessageRefusedError("MemberRemoved", "removed");
    if (m.type === MessageType.Snap) throw new PeerMessageRefusedError("SnapshotMisrouted", "snap");
    processed.push(m);
  },
  receiveSnapshot: () => undefined,
  isIdRemoved: (id) => id === REMOVED,
  reportUnreachable: () => undefined,
  reportRemoved: () => undefined,
  reportSnapshot: () => undefined,
};
const streams: StreamRegistry = {
  hasPeer: (id) => id === PEER,
  attachStream: (id, type, res) => {
    attached.push(`${id.toString(16)}/${type}`);
    res.end();
    return true;
  },
  addRemote: (id, urls) => void remotes.push([id, urls]),
};
const services: PeerServices = {
  clusterId: CLUSTER,
  memberId: LOCAL,
  members: () => [
    { id: BIG, name: "", peerUrls: ["http://127.0.0.1:2380"], clientUrls: [], isLearner: true },
    { id: LOCAL, name: "m0", peerUrls: ["http://127.0.0.1:2480"], clientUrls: ["http://127.0.0.1:2379"], isLearner: false },
  ],
  clusterVersion: () => "3.4.0",
  promoteMember: async (id) => {
    throw new PeerServiceError(id === LOCAL ? "MemberNotLearner" : "MemberNotFound", id === LOCAL ? "membership: can only promote a learner member" : "membership: ID not found");
  },
  leaseRenew: async (id) => {
    if (id !== 7n) throw new PeerServiceError("LeaseNotFound", "lease not found");
    return 60;
  },
  leaseTimeToLive: async () => {
    throw new PeerServiceError("LeaseNotFound", "lease not found");
  },
};

let server: http.Server;
let base: string;

const good = {
  "X-Server-From": PEER.toString(16),
  "X-Server-Version": "3.4.23",
  "X-Min-Cluster-Version": "3.0.0",
  "X-Etcd-Cluster-ID": CLUSTER.toString(16),
};

async function call(method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array | string) {
  const res = await fetch(base + path, { method, headers, body: body as RequestInit["body"] });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

beforeAll(async () => {
  server = http.createServer(peerRequestHandler({ maxMessageBytes: 1024 }, { services, handler, streams, logger: nullLogger }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

describe("POST /raft (pipeline)", () => {
  it("takes a message and answers 204", async () => {
    const r = await call("POST", "/raft", good, encodeMessage(message()));
    expect(r.status).toBe(204);
    expect(r.headers.get("x-etcd-cluster-id")).toBe(CLUSTER.toString(16));
    expect(processed.at(-1)?.commit).toBe(5);
  });

  it("refuses other methods with 405 and Allow", async () => {
    const r = await call("GET", "/raft", good);
    expect([r.status, r.text, r.headers.get("allow")]).toEqual([405, "Method Not Allowed\n", "POST"]);
  });

  it("answers 412 to another cluster or an incompatible version", async () => {
    expect(await call("POST", "/raft", { ...good, "X-Etcd-Cluster-ID": "1" }, encodeMessage(message()))).toMatchObject({ status: 412, text: "cluster ID mismatch\n" });
    expect(await call("POST", "/raft", { ...good, "X-Server-Version": "2.3.0" }, encodeMessage(message()))).toMatchObject({ status: 412, text: "incompatible version\n" });
    expect(await call("POST", "/raft", { ...good, "X-Min-Cluster-Version": "3.5.0" }, encodeMessage(message()))).toMatchObject({ status: 412, text: "incompatible version\n" });
    expect(await call("POST", "/raft", { ...good, "X-Server-Version": "garbage" }, encodeMessage(message()))).toMatchObject({ status: 412 });
  });

  it("answers 400 to an undecodable body and 413 to an oversized one", async () => {
    expect(await call("POST", "/raft", good, Uint8Array.of(0xff, 0xff, 0xff))).toMatchObject({ status: 400, text: "error unmarshalling raft message\n" });
    expect(await call("POST", "/raft", good, new Uint8Array(4096))).toMatchObject({ status: 413 });
  });

  it("answers 403 with etcd's JSON to a removed member, 400 to a MsgSnap", async () => {
    const r = await call("POST", "/raft", good, encodeMessage(message({ from: REMOVED })));
    expect([r.status, r.text, r.headers.get("content-type")]).toEqual([403, '{"message":"cannot process message from removed member"}', "application/json"]);
    expect((await call("POST", "/raft", good, encodeMessage(message({ type: MessageType.Snap })))).status).toBe(400);
  });

  it("learns a remote from X-PeerURLs", async () => {
    await call("POST", "/raft", { ...good, "X-Server-From": "abc", "X-PeerURLs": "http://10.0.0.1:2380,http://10.0.0.2:2380" }, encodeMessage(message({ from: 0xabcn })));
    expect(remotes).toContainEqual([0xabcn, ["http://10.0.0.1:2380", "http://10.0.0.2:2380"]]);
  });
});

describe("GET /raft/stream/<type>/<from>", () => {
  const to = { ...good, "X-Raft-To": LOCAL.toString(16) };

  it("attaches a peer's msgapp and message streams", async () => {
    expect((await call("GET", `/raft/stream/msgapp/${PEER.toString(16)}`, to)).status).toBe(200);
    expect((await call("GET", `/raft/stream/message/${PEER.toString(16)}`, to)).status).toBe(200);
    expect(attached).toEqual([`${PEER.toString(16)}/msgapp`, `${PEER.toString(16)}/message`]);
  });

  it("answers as etcd to bad stream requests", async () => {
    expect(await call("POST", `/raft/stream/message/${PEER.toString(16)}`, to)).toMatchObject({ status: 405, text: "Method Not Allowed\n" });
    expect(await call("GET", `/raft/stream/other/${PEER.toString(16)}`, to)).toMatchObject({ status: 404, text: "invalid path\n" });
    expect(await call("GET", "/raft/stream/msgapp/not-hex", to)).toMatchObject({ status: 404, text: "invalid from\n" });
    expect(await call("GET", `/raft/stream/msgapp/${REMOVED.toString(16)}`, to)).toMatchObject({ status: 410, text: "removed member\n" });
    expect(await call("GET", "/raft/stream/msgapp/beef", { ...to, "X-PeerURLs": "http://10.0.0.9:2380" })).toMatchObject({ status: 404, text: "error sender not found\n" });
    expect(remotes).toContainEqual([0xbeefn, ["http://10.0.0.9:2380"]]);
    expect(await call("GET", `/raft/stream/msgapp/${PEER.toString(16)}`, { ...to, "X-Raft-To": "1" })).toMatchObject({ status: 412, text: "to field mismatch\n" });
    const r = await call("GET", `/raft/stream/msgapp/${PEER.toString(16)}`, { ...to, "X-Etcd-Cluster-ID": "2" });
    expect([r.status, r.text, r.headers.get("x-server-version")]).toEqual([412, "cluster ID mismatch\n", "3.4.23"]);
  });
});

describe("members, version, leases, the rest", () => {
  it("writes members as etcd: the whole uint64 id as a number, omitempty fields", async () => {
    const r = await call("GET", "/members");
    expect(r.status).toBe(200);
    expect(r.text).toBe(
      '[{"id":18364758544493064720,"peerURLs":["http://127.0.0.1:2380"],"isLearner":true},' +
        '{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2480"],"name":"m0","clientURLs":["http://127.0.0.1:2379"]}]\n',
    );
    expect(membersJson([{ id: 1n, name: "<a&b>", peerUrls: [], clientUrls: [], isLearner: false }])).toBe('[{"id":1,"peerURLs":[],"name":"\\u003ca\\u0026b\\u003e"}]');
    expect((await call("POST", "/members")).headers.get("allow")).toBe("GET");
  });

  it("answers /version and /raft/probing", async () => {
    expect((await call("GET", "/version")).text).toBe('{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}');
    expect(JSON.parse((await call("GET", "/raft/probing")).text).OK).toBe(true);
  });

  it("answers promotion refusals with etcd's statuses", async () => {
    expect(await call("POST", "/members/promote/abc")).toMatchObject({ status: 404, text: "member abc not found in cluster\n" });
    expect(await call("POST", `/members/promote/${LOCAL}`)).toMatchObject({ status: 412, text: "membership: can only promote a learner member\n" });
    expect(await call("POST", "/members/promote/5")).toMatchObject({ status: 404, text: "membership: ID not found\n" });
  });

  it("serves lease keep-alives as protobuf, 404 for an unknown lease, 400 for garbage", async () => {
    const ok = await fetch(base + "/leases", { method: "POST", body: Uint8Array.of(0x08, 0x07) });
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer())).toEqual(Buffer.from([0x10, 0x07, 0x18, 0x3c]));
    expect(await call("POST", "/leases", {}, Uint8Array.of(0x08, 0x08))).toMatchObject({ status: 404, text: "lease not found\n" });
    expect(await call("POST", "/leases", {}, Uint8Array.of(0xff))).toMatchObject({ status: 400, text: "error unmarshalling request\n" });
    expect(await call("POST", "/leases/internal", {}, Uint8Array.of(0x0a, 0x02, 0x08, 0x07))).toMatchObject({ status: 404 });
    expect(await call("GET", "/leases")).toMatchObject({ status: 405 });
  });

  it("answers 404 elsewhere and still serves afterwards", async () => {
    expect(await call("GET", "/nothing")).toMatchObject({ status: 404, text: "404 page not found\n" });
    expect(await call("GET", "/raft/unknown")).toMatchObject({ status: 404 });
    expect((await call("POST", "/raft", good, encodeMessage(message({ commit: 9 })))).status).toBe(204);
  });
});
