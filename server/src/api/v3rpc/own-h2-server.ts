/**
 * The client port's gRPC connections on pkg/h2 (by default; `ETCD_TS_H2=node` keeps node:http2): each
 * connection is an `H2Connection`; each of its streams is offered to the lean takers (lean-unary,
 * lean-stream, ...) through `LeanH2Stream`; a stream they all refuse (every other method, unknown
 * paths, calls they do not serve plainly) is forwarded to grpc-js through an `H2Bridge` (one
 * in-process session per connection, opened at its first such stream), so every method works.
 *
 * Contract:
 * - the connection advertises and enforces `maxConcurrentStreams` (--max-concurrent-streams);
 *   message size limits are the takers' (and grpc-js's for bridged streams);
 * - keepalive as grpc-js's server does it: a PING every `keepaliveTimeMs`, the connection
 *   destroyed when its ACK has not come within `keepaliveTimeoutMs` (0 turns pings off); and
 *   etcd's policy on the client's own pings (--grpc-keepalive-min-time, grpc-go's enforcement:
 *   see H2ConnectionOptions.pingPolicy), when `pingMinTimeMs` is above 0;
 * - `close()` is graceful: every connection sends GOAWAY, its open streams finish, its socket ends
 *   after the last; connections served later are closed at once; `destroy()` cuts them all;
 * - bridges reach grpc-js through a private Unix socket once `start()` opened it (else through
 *   in-memory pairs); bridged calls keep the client's peer address (the socket's preamble, or
 *   `carryBridgedPeers` for the pairs) but lose the TLS socket, so a listener with client-certificate authentication must not
 *   use this server (start-member keeps it off there).
 */
import type http2 from "node:http2";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { H2Connection } from "../../pkg/h2/h2-connection.js";
import { H2Bridge, LocalBridgeListener } from "../../pkg/h2/h2-bridge.js";
import type { Logger } from "../../pkg/logger.js";
import { grpcHttp2Servers, type LeanTaker } from "./lean-path.js";
import { LeanH2Session, LeanH2Stream } from "./lean-h2-stream.js";
import { isGrpcRequest } from "./non-grpc-streams.js";

export interface OwnH2ServerOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS per connection. */
  maxConcurrentStreams: number;
  /** Interval of the server's keepalive PINGs (0: none). */
  keepaliveTimeMs: number;
  /** How long a keepalive PING may wait for its ACK before the connection is destroyed. */
  keepaliveTimeoutMs: number;
  /**
   * The least interval between a client's PINGs (etcd's --grpc-keepalive-min-time; pings without
   * an open stream are held to two hours, as etcd sets PermitWithoutStream false); 0: no policy.
   */
  pingMinTimeMs?: number;
}

export interface OwnH2ServerDeps {
  /** Offered each stream in turn; the first that takes it serves it. */
  takers: readonly LeanTaker[];
  /** Hands grpc-js the server end of a bridge's in-memory connection (its connection injector). */
  connectGrpc(serverEnd: Duplex): void;
  /**
   * Takes the server end of a bridge for requests that are not gRPC (non-grpc-streams.ts), with
   * whether the client's connection is TLS; absent, they go to grpc-js like any other.
   */
  connectHttp?(serverEnd: Duplex, secure: boolean): void;
  logger: Logger;
}

const BRIDGE_PEER = Symbol("etcd-ts.bridge-peer");

interface PeerName {
  address: string | undefined;
  port: number | undefined;
  family: string | undefined;
}

/** `end`, marked with `socket`'s peer address for `carryBridgedPeers`. */
function withPeerOf(end: Duplex, socket: Socket): Duplex {
  (end as Duplex & { [BRIDGE_PEER]?: PeerName })[BRIDGE_PEER] = { address: socket.remoteAddress, port: socket.remotePort, family: socket.remoteFamily };
  return end;
}

const carrying = new WeakSet<object>();

/**
 * Makes grpc-js's calls on bridged streams see the client's peer address (call.getPeer()): node
 * wraps the bridge's in-memory end in a socket of its own whose address is none; each new session
 * of `grpcServer`'s HTTP/2 servers (its private `http2Servers`, through grpcHttp2Servers)
 * on such an end gets the client's address as that socket's peer name (net.Socket's
 * `_peername`, which its remoteAddress / remotePort read when the handle has no address). Returns
 * false, changing nothing, when grpc-js's internals are not as expected.
 */
export function carryBridgedPeers(grpcServer: object): boolean {
  const servers = grpcHttp2Servers(grpcServer);
  if (servers === undefined) return false;
  for (const server of servers) {
    if (carrying.has(server)) continue;
    carrying.add(server);
    server.prependListener("session", (session: http2.ServerHttp2Session) => {
      const socket = session.socket as (Socket & { stream?: unknown; _peername?: unknown }) | undefined;
      const peer = (socket?.stream as { [BRIDGE_PEER]?: PeerName } | undefined)?.[BRIDGE_PEER];
      if (peer !== undefined && peer.address !== undefined) socket!._peername = peer;
    });
  }
  return true;
}

/** Serves gRPC connections on pkg/h2 (see the file comment). */
export class OwnH2Server {
  private readonly connections = new Set<H2Connection>();
  private closing = false;
  /** The bridges' native way to grpc-js, once start() made it (else in-memory pairs). */
  private local: LocalBridgeListener | undefined;
  private readonly take: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;
  /** Streams the takers served, streams bridged to grpc-js, requests bridged to the HTTP handler (debugging, tests). */
  readonly counts = { taken: 0, bridged: 0, http: 0, connections: 0 };

  constructor(
    private readonly options: OwnH2ServerOptions,
    private readonly deps: OwnH2ServerDeps,
  ) {
    const [first, second, ...rest] = deps.takers;
    this.take =
      first === undefined ? () => false
      : second === undefined ? (s, h) => first.take(s, h)
      : rest.length === 0 ? (s, h) => first.take(s, h) || second.take(s, h)
      : (s, h) => deps.takers.some((t) => t.take(s, h));
  }

  /**
   * Opens the bridges' private Unix socket to grpc-js (LocalBridgeListener: native sockets both
   * ways, the client's address carried in its preamble). Without it (not called, or it failed)
   * bridges use in-memory pairs, whose calls see the client's address only through
   * `carryBridgedPeers`. `socketPath` as LocalBridgeListenerOptions' (default: a fresh temporary
   * directory). Returns whether it listens.
   */
  async start(socketPath?: string): Promise<boolean> {
    const local = new LocalBridgeListener({ socketPath }, { connect: (s) => this.deps.connectGrpc(s) });
    try {
      await local.listen();
    } catch (err) {
      this.deps.logger.warn("bridge socket unavailable; bridged calls use in-memory connections", { error: String(err) });
      return false;
    }
    this.local = local;
    return true;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Serves an HTTP/2 connection on `socket` (plain, or TLS after ALPN "h2"), whose unread bytes
   * start with the client preface. The socket should be paused, its bytes unshifted: the
   * connection takes its 'data' events, the caller resumes it.
   */
  serve(socket: Socket): void {
    const session = new LeanH2Session(socket);
    const { logger, connectGrpc } = this.deps;
    let bridge: H2Bridge | undefined;
    let httpBridge: H2Bridge | undefined;
    const secure = (socket as Socket & { encrypted?: boolean }).encrypted === true;
    let keepalive: NodeJS.Timeout | undefined;
    let ackTimer: NodeJS.Timeout | undefined;
    const conn: H2Connection = new H2Connection(
      {
        maxConcurrentStreams: this.options.maxConcurrentStreams,
        // No byte bound on a stream's queue: one answer may be as large as the send limit (a range
        // of many megabytes), and the lean paths bound their streams by messages, as grpc-js over
        // node:http2 (which has no byte bound either) does.
        streamWriteQueueBytesMax: Number.MAX_SAFE_INTEGER,
        ...((this.options.pingMinTimeMs ?? 0) > 0 ? { pingPolicy: { minTimeMs: this.options.pingMinTimeMs!, permitWithoutStream: false } } : {}),
      },
      {
        socket,
        handlers: {
          onStream: (stream) => {
            const connectHttp = this.deps.connectHttp;
            if (connectHttp !== undefined && !isGrpcRequest(stream.headers)) {
              this.counts.http++;
              httpBridge ??= new H2Bridge({}, { connect: (end) => connectHttp(withPeerOf(end, socket), secure) });
              httpBridge.forward(stream);
              return;
            }
            const adapter = new LeanH2Stream(stream, session);
            if (this.take(adapter as unknown as http2.ServerHttp2Stream, adapter.headers)) {
              this.counts.taken++;
              return;
            }
            this.counts.bridged++;
            const local = this.local;
            bridge ??= new H2Bridge(
              {},
              local === undefined
                ? { connect: (end) => connectGrpc(withPeerOf(end, socket)) }
                : { connect: connectGrpc, dial: () => local.dial({ address: socket.remoteAddress, port: socket.remotePort, family: socket.remoteFamily }) },
            );
            bridge.forward(stream);
          },
          onClose: () => {
            this.connections.delete(conn);
            clearInterval(keepalive);
            clearTimeout(ackTimer);
            bridge?.close();
            httpBridge?.close();
          },
          onError: (err) => logger.debug("http2 connection error", { error: err.message }),
          onPing: (ack) => {
            if (ack && ackTimer !== undefined) {
              clearTimeout(ackTimer);
              ackTimer = undefined;
            }
          },
        },
      },
    );
    this.connections.add(conn);
    this.counts.connections++;
    const { keepaliveTimeMs, keepaliveTimeoutMs } = this.options;
    if (keepaliveTimeMs > 0) {
      keepalive = setInterval(() => {
        if (ackTimer !== undefined) return;
        conn.ping();
        ackTimer = setTimeout(() => {
          logger.debug("http2 connection keepalive timeout", {});
          conn.destroy();
        }, keepaliveTimeoutMs);
        ackTimer.unref();
      }, keepaliveTimeMs);
      keepalive.unref();
    }
    if (this.closing) conn.close();
  }

  /** Graceful close of every connection (GOAWAY; open streams finish). */
  close(): void {
    this.closing = true;
    for (const conn of this.connections) conn.close();
  }

  /** Closes every connection at once, and the bridges' socket. */
  destroy(): void {
    this.closing = true;
    for (const conn of [...this.connections]) conn.destroy();
    this.local?.close();
    this.local = undefined;
  }
}
