/** Test helpers: an h2 server on a loopback port running H2Connection, and a raw frame client. */
import * as net from "node:net";
import { CLIENT_PREFACE, FrameParser, type FrameSink, FrameWriter } from "../../../src/pkg/h2/frame-codec.js";
import { H2Connection, type H2ConnectionOptions, type H2Stream } from "../../../src/pkg/h2/h2-connection.js";

export interface TestServer {
  port: number;
  connections: H2Connection[];
  errors: Error[];
  close(): Promise<void>;
}

export async function startServer(onStream: (stream: H2Stream) => void, options: H2ConnectionOptions = {}): Promise<TestServer> {
  const connections: H2Connection[] = [];
  const errors: Error[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    connections.push(new H2Connection(socket, options, { onStream, onError: (err) => errors.push(err) }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  text: string;
  code?: number;
}

/**
 * Sends `bytes` on a fresh connection and returns the frames the server sent until it closed
 * the socket (or `timeoutMs` passed).
 */
export async function rawExchange(port: number, bytes: Buffer, timeoutMs = 5000): Promise<{ frames: RawFrame[]; closed: boolean }> {
  const frames: RawFrame[] = [];
  const push = (type: number, streamId: number, extra: Partial<RawFrame> = {}): void => {
    frames.push({ type, flags: 0, streamId, text: "", ...extra });
  };
  const sink: FrameSink = {
    onData: (id) => push(0, id),
    onHeaders: (id) => push(1, id),
    onContinuation: (id) => push(9, id),
    onPriority: (id) => push(2, id),
    onRstStream: (id, code) => push(3, id, { code }),
    onSettings: (ack) => push(4, 0, { flags: ack ? 1 : 0 }),
    onPing: (ack) => push(6, 0, { flags: ack ? 1 : 0 }),
    onGoaway: (_last, code, debug) => push(7, 0, { code, text: debug.toString() }),
    onWindowUpdate: (id) => push(8, id),
    onUnknown: (type, id) => push(type, id),
    onStreamError: () => {},
  };
  const parser = new FrameParser(sink, 1 << 24);
  const socket = net.connect(port, "127.0.0.1");
  socket.on("data", (chunk) => parser.push(chunk));
  socket.write(bytes);
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on("error", () => {});
  });
  socket.destroy();
  return { frames, closed };
}

/** The client preface and an empty SETTINGS, then whatever `build` writes. */
export function clientBytes(build: (w: FrameWriter) => void = () => {}): Buffer {
  const w = new FrameWriter();
  w.settings([]);
  build(w);
  return Buffer.concat([CLIENT_PREFACE, ...w.take()]);
}
