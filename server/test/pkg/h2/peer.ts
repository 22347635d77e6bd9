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

/** `onSocket` sees each accepted socket before its connection is made (tests that watch its writes). */
export async function startServer(onStream: (stream: H2Stream) => void, options: H2ConnectionOptions = {}, onSocket?: (socket: net.Socket) => void): Promise<TestServer> {
  const connections: H2Connection[] = [];
  const errors: Error[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    onSocket?.(socket);
    connections.push(new H2Connection(options, { socket, handlers: { onStream, onError: (err) => errors.push(err) } }));
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
  data?: Buffer;
}

function recordingSink(frames: RawFrame[]): FrameSink {
  const push = (type: number, streamId: number, extra: Partial<RawFrame> = {}): void => {
    frames.push({ type, flags: 0, streamId, text: "", ...extra });
  };
  return {
    onData: (id, endStream, data) => push(0, id, { data: Buffer.from(data), flags: endStream ? 1 : 0 }),
    onHeaders: (id, endStream) => push(1, id, { flags: endStream ? 1 : 0 }),
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
}

/**
 * Sends `bytes` on a fresh connection and returns the frames the server sent until it closed
 * the socket, `until` holds for the frames so far, or `timeoutMs` passed.
 */
export async function rawExchange(
  port: number,
  bytes: Buffer,
  timeoutMs = 5000,
  until: (frames: RawFrame[]) => boolean = () => false,
): Promise<{ frames: RawFrame[]; closed: boolean }> {
  const client = await RawClient.connect(port);
  client.socket.write(bytes);
  await client.waitFor(() => client.isClosed || until(client.frames), timeoutMs).catch(() => {});
  const closed = client.isClosed;
  client.socket.destroy();
  return { frames: client.frames, closed };
}

/** A client that writes frames by hand and records the server's, for exchanges step by step. */
export class RawClient {
  readonly frames: RawFrame[] = [];
  private closed = false;

  private constructor(readonly socket: net.Socket) {
    const parser = new FrameParser(recordingSink(this.frames), 1 << 24);
    socket.on("data", (chunk) => parser.push(chunk));
    socket.on("close", () => (this.closed = true));
    socket.on("error", () => {});
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    return new RawClient(socket);
  }

  send(build: (w: FrameWriter) => void): void {
    const w = new FrameWriter();
    build(w);
    for (const b of w.take()) this.socket.write(b);
  }

  /** The DATA octets received on `streamId` so far. */
  dataOn(streamId: number): number {
    return this.frames.filter((f) => f.type === 0 && f.streamId === streamId).reduce((n, f) => n + f.data!.length, 0);
  }

  async waitFor(done: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error("RawClient.waitFor timed out");
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async waitClosed(timeoutMs: number): Promise<boolean> {
    await this.waitFor(() => this.closed, timeoutMs).catch(() => {});
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The client preface and an empty SETTINGS, then whatever `build` writes. */
export function clientBytes(build: (w: FrameWriter) => void = () => {}): Buffer {
  const w = new FrameWriter();
  w.settings([]);
  build(w);
  return Buffer.concat([CLIENT_PREFACE, ...w.take()]);
}
