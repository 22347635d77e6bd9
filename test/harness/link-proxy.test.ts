/**
 * The link proxy against fake peers: plain TCP servers that answer request heads the way etcd's
 * peer handlers shape them (a stream GET gets an endless response, a pipeline POST its body echoed
 * back), so each rule's effect per direction is visible byte for byte.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { LinkProxy } from "./link-proxy.js";
import { sleep } from "./processes.js";

/** A fake peer listener: echoes everything it receives, prefixed with its name. */
async function fakePeer(name: string): Promise<{ port: number; received: string[]; sockets: net.Socket[]; close(): Promise<void> }> {
  const received: string[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on("error", () => {});
    s.on("data", (d: Buffer) => {
      received.push(d.toString());
      s.write(`${name}:${d.toString()}`);
    });
  });
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

interface Dialed {
  socket: net.Socket;
  data: () => string;
  closed: () => boolean;
}

async function dial(port: number): Promise<Dialed> {
  const socket = net.connect({ host: "127.0.0.1", port });
  let text = "";
  let closed = false;
  socket.on("data", (d: Buffer) => (text += d.toString()));
  socket.on("error", () => {});
  socket.on("close", () => (closed = true));
  await new Promise<void>((r) => socket.once("connect", () => r()));
  return { socket, data: () => text, closed: () => closed };
}

const streamHead = (fromId: string): string => `GET /raft/stream/msgapp/${fromId} HTTP/1.1\r\nHost: x\r\nX-Server-From: ${fromId}\r\n\r\n`;
const pipelineHead = (fromId: string): string => `POST /raft HTTP/1.1\r\nHost: x\r\nX-Server-From: ${fromId}\r\nContent-Length: 5\r\n\r\n`;

describe("link proxy", () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup() {
    const peers = [await fakePeer("p0"), await fakePeer("p1")];
    const proxy = new LinkProxy();
    const fronts = [await proxy.addFront(0, peers[0]!.port), await proxy.addFront(1, peers[1]!.port)];
    proxy.registerMember(0, "a0");
    proxy.registerMember(1, 0xb1n);
    cleanups.push(async () => {
      await proxy.close();
      for (const p of peers) await p.close();
    });
    return { peers, proxy, fronts };
  }

  it("classifies connections by request head and attributes them by X-Server-From", async () => {
    const { proxy, fronts, peers } = await setup();
    const s = await dial(fronts[0]!);
    s.socket.write(streamHead("00b1"));
    const p = await dial(fronts[1]!);
    p.socket.write(pipelineHead("a0") + "hello");
    const o = await dial(fronts[1]!);
    o.socket.write("GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
    await sleep(100);
    expect(proxy.describeConnections().sort((x, y) => x.path.localeCompare(y.path))).toEqual([
      { front: 0, kind: "stream", from: 1, path: "GET /raft/stream/msgapp/00b1" },
      { front: 1, kind: "other", from: undefined, path: "GET /version" },
      { front: 1, kind: "pipeline", from: 0, path: "POST /raft" },
    ]);
    expect(p.data()).toContain("p1:POST /raft");
    expect(peers[1]!.received.join("")).toContain("hello");
  });

  it("a one-way cut drops the stream response of the sender and the pipeline request, nothing else", async () => {
    const { proxy, fronts, peers } = await setup();
    // 1 reads 0's stream (messages 0 → 1); 0 reads 1's stream (messages 1 → 0).
    const zeroToOne = await dial(fronts[0]!);
    zeroToOne.socket.write(streamHead("b1"));
    const oneToZero = await dial(fronts[1]!);
    oneToZero.socket.write(streamHead("a0"));
    await sleep(50);
    proxy.cut(0, 1); // messages from 0 no longer reach 1
    const before0 = zeroToOne.data().length;
    const before1 = oneToZero.data().length;
    // Peer 0 writes on the stream 1 reads: dropped. Peer 1 writes on the stream 0 reads: passes.
    peers[0]!.sockets.at(-1)!.write("msg-0-to-1");
    peers[1]!.sockets.at(-1)!.write("msg-1-to-0");
    await sleep(50);
    expect(zeroToOne.data().length).toBe(before0);
    expect(oneToZero.data().slice(before1)).toBe("msg-1-to-0");
    // A pipeline POST from 0 to 1 is swallowed; one from 1 to 0 passes.
    const pipe01 = await dial(fronts[1]!);
    pipe01.socket.write(pipelineHead("a0") + "hello");
    const pipe10 = await dial(fronts[0]!);
    pipe10.socket.write(pipelineHead("b1") + "world");
    await sleep(100);
    expect(pipe01.data()).toBe("");
    expect(peers[1]!.received.join("")).not.toContain("hello");
    expect(pipe10.data()).toContain("world");
    expect(proxy.stats.droppedBytes).toBeGreaterThan(0);
    // Healing closes the connections that lost data (their framing is broken); others stay.
    proxy.healAll();
    await sleep(50);
    expect(zeroToOne.closed()).toBe(true);
    expect(pipe01.closed()).toBe(true);
    expect(oneToZero.closed()).toBe(false);
    expect(pipe10.closed()).toBe(false);
  });

  it("reset mode closes affected connections and refuses new ones; other requests need both directions", async () => {
    const { proxy, fronts } = await setup();
    const stream = await dial(fronts[0]!);
    stream.socket.write(streamHead("b1"));
    const unaffected = await dial(fronts[1]!);
    unaffected.socket.write(streamHead("a0"));
    await sleep(50);
    proxy.cut(0, 1, "reset");
    await sleep(50);
    expect(stream.closed()).toBe(true);
    expect(unaffected.closed()).toBe(false);
    const again = await dial(fronts[0]!);
    again.socket.write(streamHead("b1"));
    await sleep(50);
    expect(again.closed()).toBe(true);
    // A request/response exchange from 1 to 0 (identified) breaks under the 0 → 1 cut too.
    const other = await dial(fronts[0]!);
    other.socket.write("POST /leases HTTP/1.1\r\nX-Server-From: b1\r\n\r\n");
    await sleep(50);
    expect(other.closed()).toBe(true);
    proxy.heal(0, 1);
    const healed = await dial(fronts[0]!);
    healed.socket.write(streamHead("b1"));
    await sleep(50);
    expect(healed.closed()).toBe(false);
    expect(healed.data()).toContain("p0:GET /raft/stream");
  });

  it("isolate blocks connections of unknown origin to the isolated member", async () => {
    const { proxy, fronts } = await setup();
    proxy.isolate(1, "reset");
    const toOne = await dial(fronts[1]!);
    toOne.socket.write("GET /version HTTP/1.1\r\n\r\n");
    const toZero = await dial(fronts[0]!);
    toZero.socket.write("GET /version HTTP/1.1\r\n\r\n");
    await sleep(50);
    expect(toOne.closed()).toBe(true);
    expect(toZero.closed()).toBe(false);
    expect(toZero.data()).toContain("p0:GET /version");
  });

  it("delays the messages of one direction, keeping their order", async () => {
    const { proxy, fronts, peers } = await setup();
    const stream = await dial(fronts[0]!);
    stream.socket.write(streamHead("b1"));
    await sleep(50);
    proxy.delay(0, 1, 200);
    const t0 = Date.now();
    const sock = peers[0]!.sockets.at(-1)!;
    const start = stream.data().length;
    for (let i = 0; i < 5; i++) sock.write(`m${i};`);
    await sleep(100);
    expect(stream.data().length).toBe(start);
    while (stream.data().length - start < "m0;m1;m2;m3;m4;".length && Date.now() - t0 < 2_000) await sleep(10);
    expect(stream.data().slice(start)).toBe("m0;m1;m2;m3;m4;");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    proxy.delay(0, 1, 0);
    const t1 = Date.now();
    sock.write("fast");
    while (!stream.data().endsWith("fast") && Date.now() - t1 < 2_000) await sleep(5);
    expect(Date.now() - t1).toBeLessThan(150);
  });
});
