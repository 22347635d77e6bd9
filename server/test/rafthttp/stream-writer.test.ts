/**
 * A stream writer on a real node:http answer: the writer holds a turn's frames and writes them to
 * the answer's socket together, as one HTTP/1.1 chunk, at the next tick; push() puts them on the
 * wire at once, which the Ready loop relies on before it blocks in an inline WAL write. The
 * client reading them is node:http's, which checks the chunked coding.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/pkg/clock.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { MessageStreamDecoder } from "../../src/rafthttp/message-stream.js";
import { PeerStatus } from "../../src/rafthttp/peer-status.js";
import { httpChunk, StreamWriter } from "../../src/rafthttp/stream.js";
import { MessageType, type Message } from "../../src/raft/types.js";

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

function heartbeat(commit: number): Message {
  return { type: MessageType.Heartbeat, to: 2n, from: 1n, term: 3, logTerm: 0, index: 0, entries: [], commit, reject: false, rejectHint: 0, context: new Uint8Array(0) };
}

/** A writer attached to the answer of a real GET; returns it, the answer, and what the client decodes. */
async function attached(): Promise<{ writer: StreamWriter; res: http.ServerResponse; received: Message[]; arrived: () => Promise<void> }> {
  const writer = new StreamWriter("message", "2", { status: new PeerStatus("2", { clock: systemClock, logger: nullLogger }), clock: systemClock, logger: nullLogger });
  let answer!: http.ServerResponse;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "application/octet-stream" });
    res.flushHeaders();
    answer = res;
    writer.attach(res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const received: Message[] = [];
  let notify: (() => void) | undefined;
  const decoder = new MessageStreamDecoder();
  await new Promise<void>((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/raft/stream/message/1" }, (res) => {
      res.on("data", (c: Buffer) => {
        received.push(...decoder.push(c));
        notify?.();
      });
      resolve();
    });
    req.on("error", reject);
    closers.push(() => req.destroy());
  });
  closers.push(() => {
    writer.stop();
    server.closeAllConnections();
    server.close();
  });
  const arrived = (): Promise<void> => new Promise<void>((r) => (notify = r));
  return { writer, res: answer, received, arrived };
}

describe("StreamWriter.push", () => {
  it("hands the turn's writes to the kernel at once; without it the writer holds them until nextTick", async () => {
    const { writer, res, received, arrived } = await attached();
    const socket = res.socket!;

    const written = socket.bytesWritten;
    expect(writer.send(heartbeat(7))).toBe(true);
    expect(socket.writableLength + socket.bytesWritten - written).toBe(0); // held for the end of the turn
    await arrived();
    expect(received.map((m) => m.commit)).toEqual([7]);

    writer.send(heartbeat(8));
    writer.send(heartbeat(9));
    expect(socket.writableLength).toBe(0); // the turn's frames wait in the writer, to go in one write
    writer.push();
    expect(socket.writableCorked).toBe(0);
    expect(socket.writableLength).toBe(0); // both handed to the kernel now, in one write
    while (received.length < 3) await arrived();
    expect(received.map((m) => m.commit)).toEqual([7, 8, 9]);

    // Nothing held: push is a no-op.
    writer.push();
    expect(socket.writableCorked).toBe(0);
  });
});

describe("httpChunk", () => {
  it("frames the frames as one chunk of HTTP/1.1's chunked coding", () => {
    for (const size of [1, 9, 10, 15, 16, 17, 255, 256, 4095, 4096, 65536, 1_000_001]) {
      const a = Buffer.alloc(Math.floor(size / 3), 0x61);
      const b = Buffer.alloc(size - a.length, 0x62);
      const out = httpChunk([a, new Uint8Array(0), b], size);
      expect(out.toString("latin1")).toBe(`${size.toString(16)}\r\n${a.toString("latin1")}${b.toString("latin1")}\r\n`);
    }
  });
});
