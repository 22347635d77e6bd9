/**
 * A raw HTTP/2 gRPC client for wire tests: sends scripted request streams (frames, gaps,
 * half-close, resets) and records the answer as it came (headers but `date`, DATA bytes,
 * trailers, reset code), so that two servers' answers can be compared frame for frame; and the
 * grpc-js server those tests put on a loopback port.
 */
import http2 from "node:http2";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { carryBridgedPeers, OwnH2Server } from "../../../src/api/v3rpc/own-h2-server.js";
import { installedLeanTakers } from "../../../src/api/v3rpc/lean-path.js";
import { createLogger } from "../../../src/pkg/logger.js";

/** A gRPC message frame: the compressed flag, the 4-byte length, the message. */
export function frame(message: Uint8Array, flag = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

export interface RawRequest {
  path: string;
  headers?: Record<string, string>;
  /** Written one by one, `gapMs` apart (default 2); a Buffer per write. */
  writes: Buffer[];
  gapMs?: number;
  /** Half-close after the writes (default true). */
  end?: boolean;
  /** Reset the stream (CANCEL) this long after the writes (a client that never half-closes gives up). */
  cancelAfterMs?: number;
  /** Reset the stream (CANCEL) as the first answer arrives (etcd's KeepAliveOnce). */
  cancelAtData?: boolean;
  /** Runs after write `i` and its gap, before the next write (e.g. changes that make the server answer). */
  between?: (i: number) => Promise<void>;
}

export interface RawAnswer {
  headers: Record<string, unknown>;
  data: string;
  trailers: Record<string, unknown> | undefined;
  rstCode: number;
  /** The stream was still open after STUCK_MS and was reset. */
  stuck?: true;
}

const STUCK_MS = 2000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withoutDate(h: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h)) if (k !== "date") out[k] = v;
  return out;
}

/** Sends `request` on a stream of `session` (or of a connection of its own to `port`). */
export async function sendRaw(port: number, request: RawRequest, session?: http2.ClientHttp2Session): Promise<RawAnswer> {
  const own = session === undefined;
  const s = session ?? http2.connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      if (own) s.on("error", reject);
      const stream = s.request({ ":method": "POST", ":path": request.path, "content-type": "application/grpc", te: "trailers", ...request.headers });
      let headers: Record<string, unknown> = {};
      let trailers: Record<string, unknown> | undefined;
      const data: Buffer[] = [];
      stream.on("response", (h) => (headers = withoutDate({ ...h })));
      stream.on("trailers", (t) => (trailers = { ...t }));
      stream.on("data", (d: Buffer) => {
        data.push(d);
        if (request.cancelAtData) stream.close(http2.constants.NGHTTP2_CANCEL);
      });
      stream.on("error", () => {});
      let stuck = false;
      const timer = setTimeout(() => {
        stuck = true;
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }, STUCK_MS);
      stream.on("close", () => {
        clearTimeout(timer);
        resolve({ headers, data: Buffer.concat(data).toString("hex"), trailers, rstCode: stream.rstCode ?? 0, ...(stuck ? { stuck: true as const } : {}) });
      });
      void (async () => {
        for (let i = 0; i < request.writes.length; i++) {
          if (stream.closed) return;
          stream.write(request.writes[i]!);
          await sleep(request.gapMs ?? 2);
          await request.between?.(i);
        }
        if (request.end !== false && !stream.closed) stream.end();
        if (request.cancelAfterMs !== undefined) {
          await sleep(request.cancelAfterMs);
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        }
      })();
    });
  } finally {
    if (own) s.close();
  }
}

/**
 * Serves `registry` with a grpc-js server (receive limit `maxReceiveBytes`) on a free loopback
 * port, through a connection injector as etcd-ts does; `beforeListen` runs once the injector
 * exists (where etcd-ts installs the lean paths); `options` adds grpc-js server options.
 */
export async function serveOnLoopback(
  registry: ReadonlyArray<{ definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }>,
  maxReceiveBytes: number,
  beforeListen: (server: grpc.Server) => void,
  options: grpc.ServerOptions = {},
): Promise<{ port: number; close(): Promise<void> }> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": maxReceiveBytes, "grpc.enable_channelz": 0, ...options });
  for (const s of registry) server.addService(s.definition, s.implementation);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  beforeListen(server);
  // ETCD_TS_H2=own: connections on pkg/h2, the installed lean takers first, the rest bridged
  const own =
    process.env.ETCD_TS_H2 === "own"
      ? new OwnH2Server(
          { maxConcurrentStreams: 1000, keepaliveTimeMs: 0, keepaliveTimeoutMs: 0 },
          { takers: installedLeanTakers(server), connectGrpc: (c) => injector.injectConnection(c), logger: createLogger({ level: "error" }) },
        )
      : undefined;
  if (own !== undefined) carryBridgedPeers(server);
  const listener = net.createServer((socket) => (own !== undefined ? own.serve(socket) : injector.injectConnection(socket)));
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  return {
    port: (listener.address() as net.AddressInfo).port,
    close: async () => {
      own?.destroy();
      injector.destroy();
      server.forceShutdown();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}
