/**
 * Forwards streams of our own HTTP/2 connections to a node:http2 server in the same process: one
 * in-process client session per bridge, opened at the first stream, whose socket is one end of an
 * in-memory duplex pair; the other end is handed to the server (`deps.connect`, e.g. grpc-js's
 * connection injector). Each forwarded stream becomes one request of that session.
 *
 * Contract, per forwarded stream:
 * - request: the client's fields (pseudo-fields included, a URL-shaped `:authority` cut to its
 *   host, see plainAuthority; pkg/h2 refused connection-specific ones) open the request, its DATA follows as the request body, its END_STREAM ends it;
 * - response: the server's headers, DATA and trailers go back as they come (a headers-only
 *   response with END_STREAM, gRPC's trailers-only answer, stays one);
 * - flow control both ways: a request body the session does not take pauses the client's stream
 *   (its window then closes the client's sending); a response the client's window does not take
 *   pauses the server's request (node's window then closes the server's sending);
 * - cancellation both ways: a reset from the client closes the request with its code; a reset
 *   from the server resets the client's stream with its code (CANCEL when the request closed
 *   before its response ended without one); a session the server closed or sent GOAWAY is
 *   replaced by a fresh one at the next stream; a request the session refuses to open resets the
 *   stream with REFUSED_STREAM; after close(), every new stream is refused.
 *
 * What the server sees differs from a direct connection: the peer address is that of the
 * in-memory socket (none), and there is no TLS socket (no client certificate): keep the bridge
 * off where the server reads either (client-certificate authentication).
 */
import http2 from "node:http2";
import net from "node:net";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { duplexPair, type Duplex } from "node:stream";
import type { H2Stream } from "./h2-connection.js";
import { H2_CANCEL, H2_NO_ERROR, H2_REFUSED_STREAM } from "./frame-codec.js";
import { encodeHeaderBlock } from "./hpack.js";

export interface H2BridgeOptions {
  /** The session's per-stream receive window (response data buffered per stream). Default 1 MiB. */
  initialWindowSize?: number;
  /** The session's connection receive window. Default 4 MiB. */
  connectionWindowSize?: number;
}

export interface H2BridgeDeps {
  /** Takes the server's end of a fresh in-memory connection (the server reads a client preface from it). */
  connect(serverEnd: Duplex): void;
  /**
   * When set, opens the session's connection instead (e.g. LocalBridgeListener.dial: a native
   * socket on both sides, much cheaper per frame than the in-memory pair's JS streams); `connect`
   * is then unused.
   */
  dial?(): Duplex;
}

/** A client's address, as a bridged server should see it. */
export interface BridgePeer {
  address: string | undefined;
  port: number | undefined;
  family: string | undefined;
}

/** Bound on the preamble line a bridge connection starts with. */
const PREAMBLE_BYTES_MAX = 512;

export interface LocalBridgeListenerOptions {
  /**
   * Where to listen (a file in a directory only this user may enter; a stale socket there is
   * replaced). Default: a fresh directory under the system's temporary directory, removed by close().
   */
  socketPath?: string;
}

export interface LocalBridgeListenerDeps {
  /** Takes the server's end of a bridge connection (its preface follows), its peer name set. */
  connect(serverEnd: net.Socket): void;
}

/**
 * A private Unix socket, in a directory only this user may enter, through which
 * bridges reach the in-process server on native sockets (node's HTTP/2 then reads and writes the
 * handles itself on both sides, where an in-memory pair costs two JS stream sockets per frame).
 * Each connection starts with a preamble, one JSON line with the client's address, which the
 * server end gets as its peer name (`remoteAddress` / `remotePort` of a Unix socket are otherwise
 * empty); the HTTP/2 preface follows.
 */
export class LocalBridgeListener {
  private server: net.Server | undefined;
  private dir: string | undefined;
  private socketPath: string | undefined;

  constructor(
    private readonly options: LocalBridgeListenerOptions,
    private readonly deps: LocalBridgeListenerDeps,
  ) {}

  /** Whether listen() succeeded and close() was not called. */
  get listening(): boolean {
    return this.server !== undefined;
  }

  /** Creates the directory and listens. */
  async listen(): Promise<void> {
    let dir: string | undefined;
    let socketPath = this.options.socketPath;
    if (socketPath === undefined) {
      dir = mkdtempSync(path.join(tmpdir(), "etcd-ts-h2-"));
      chmodSync(dir, 0o700);
      socketPath = path.join(dir, "bridge.sock");
    } else {
      rmSync(socketPath, { force: true }); // left by a process that did not stop cleanly
    }
    const server = net.createServer((socket) => this.accept(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(socketPath, () => {
          server.removeListener("error", reject);
          resolve();
        });
      });
    } catch (err) {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    server.on("error", noop);
    this.server = server;
    this.dir = dir;
    this.socketPath = socketPath;
  }

  /** A connection to the server, announcing `peer`. */
  dial(peer: BridgePeer): net.Socket {
    if (this.socketPath === undefined) throw new Error("bridge listener not listening");
    const socket = net.connect(this.socketPath);
    socket.write(`${JSON.stringify(peer)}\n`);
    return socket;
  }

  private accept(socket: net.Socket): void {
    let buffered: Buffer = Buffer.alloc(0);
    socket.on("error", noop);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const nl = buffered.indexOf(10);
      if (nl < 0) {
        if (buffered.length > PREAMBLE_BYTES_MAX) socket.destroy();
        return;
      }
      socket.removeListener("data", onData);
      socket.pause();
      let peer: BridgePeer;
      try {
        peer = JSON.parse(buffered.subarray(0, nl).toString("utf8")) as BridgePeer;
      } catch {
        socket.destroy();
        return;
      }
      // net.Socket reads its peer name from here when its handle (a pipe) has none
      if (typeof peer.address === "string") (socket as net.Socket & { _peername?: BridgePeer })._peername = peer;
      if (buffered.length > nl + 1) socket.unshift(buffered.subarray(nl + 1));
      this.deps.connect(socket);
    };
    socket.on("data", onData);
  }

  /** Stops listening and removes the directory. */
  close(): void {
    this.server?.close(); // removes the socket file
    this.server = undefined;
    if (this.dir !== undefined) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
    this.socketPath = undefined;
  }
}

const { NGHTTP2_FLAG_END_STREAM } = http2.constants;

function noop(): void {}

/** Fields of node's incoming headers as a flat list, pseudo-fields first. */
function fieldsOf(headers: http2.IncomingHttpHeaders): string[] {
  const pseudo: string[] = [];
  const regular: string[] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    const out = name.charCodeAt(0) === 58 /* ':' */ ? pseudo : regular;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, String(value));
  }
  return pseudo.concat(regular);
}

/**
 * An `:authority` node's server accepts: Go's gRPC clients send the dial target verbatim
 * (`http://host:2379`), which nghttp2 refuses with PROTOCOL_ERROR; such a value becomes its host
 * part (`host:2379`), or "localhost" when it has none.
 */
export function plainAuthority(authority: string): string {
  if (!authority.includes("/")) return authority;
  const scheme = authority.indexOf("://");
  const rest = scheme >= 0 ? authority.slice(scheme + 3) : authority;
  const host = rest.slice(0, rest.indexOf("/") >= 0 ? rest.indexOf("/") : rest.length);
  return host === "" ? "localhost" : host;
}

/** A request's headers for node's session.request: repeated fields become arrays. */
function requestHeaders(fields: readonly string[]): http2.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = name === ":authority" ? plainAuthority(fields[i + 1]!) : fields[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

/** Forwards H2Streams to an in-process node:http2 server (see the file comment). */
export class H2Bridge {
  private session: http2.ClientHttp2Session | undefined;
  private closed = false;
  private readonly initialWindowSize: number;
  private readonly connectionWindowSize: number;

  constructor(
    options: H2BridgeOptions,
    private readonly deps: H2BridgeDeps,
  ) {
    this.initialWindowSize = options.initialWindowSize ?? 1 << 20;
    this.connectionWindowSize = options.connectionWindowSize ?? 4 << 20;
  }

  /** Whether a session is open (tests). */
  get connected(): boolean {
    return this.session !== undefined;
  }

  private sessionFor(): http2.ClientHttp2Session {
    if (this.session !== undefined && !this.session.closed && !this.session.destroyed) return this.session;
    let clientEnd: Duplex;
    if (this.deps.dial !== undefined) {
      clientEnd = this.deps.dial();
    } else {
      const [c, serverEnd] = duplexPair();
      clientEnd = c;
      this.deps.connect(serverEnd);
    }
    const session = http2.connect("http://localhost", {
      createConnection: () => clientEnd,
      settings: { initialWindowSize: this.initialWindowSize, enablePush: false },
      // gRPC streams are many and small; node's default per-session memory bound is 10 MiB
      maxSessionMemory: 64,
      peerMaxConcurrentStreams: 2 ** 31 - 1,
    });
    session.on("error", noop);
    session.once("connect", () => {
      if (!session.destroyed) session.setLocalWindowSize(this.connectionWindowSize);
    });
    // a session the server sent GOAWAY takes no new requests: the next stream opens a fresh one
    const forget = (): void => {
      if (this.session === session) this.session = undefined;
    };
    session.once("goaway", forget);
    session.once("close", forget);
    this.session = session;
    return session;
  }

  /**
   * Forwards `stream` (called in the connection's onStream, before its data): sets its callbacks,
   * opens its request.
   */
  forward(stream: H2Stream): void {
    if (this.closed) {
      stream.reset(H2_REFUSED_STREAM);
      return;
    }
    let req: http2.ClientHttp2Stream;
    try {
      req = this.sessionFor().request(requestHeaders(stream.headers), { endStream: false });
    } catch {
      stream.reset(H2_REFUSED_STREAM);
      return;
    }
    let trailers: http2.IncomingHttpHeaders | undefined;
    let responseEnded = false;
    let responded = false;
    // node emits 'response' in a nextTick, after which 'data' (and 'end') of the same read may
    // already have come: they wait here until the response headers went
    let early: Buffer[] | undefined;
    let earlyEnd = false;
    const onData = (chunk: Buffer): void => {
      if (stream.closed || stream.ended) return;
      if (!responded) {
        (early ??= []).push(chunk);
        return;
      }
      if (!stream.write(chunk)) req.pause();
    };
    const onEnd = (): void => {
      if (responseEnded || stream.closed) return;
      if (!responded) {
        earlyEnd = true;
        return;
      }
      responseEnded = true;
      stream.end(trailers === undefined ? undefined : encodeHeaderBlock(fieldsOf(trailers)));
    };
    req.on("error", noop);
    req.on("response", (headers, flags) => {
      if (stream.closed || responded) return;
      responded = true;
      const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      if (endStream) responseEnded = true;
      stream.respond(encodeHeaderBlock(fieldsOf(headers)), endStream);
      const chunks = early;
      early = undefined;
      if (chunks !== undefined) for (const c of chunks) onData(c);
      if (earlyEnd) onEnd();
    });
    req.on("data", onData);
    req.on("trailers", (headers) => {
      trailers = headers;
    });
    req.on("end", onEnd);
    req.on("close", () => {
      if (stream.closed || stream.ended) return;
      const code = req.rstCode;
      stream.reset(code !== undefined && code !== H2_NO_ERROR ? code : H2_CANCEL);
    });
    req.on("drain", () => stream.resume());
    stream.onData = (chunk) => {
      if (!req.write(chunk)) stream.pause();
    };
    stream.onEnd = () => {
      req.end();
    };
    stream.onDrain = () => req.resume();
    stream.onClose = (code) => {
      // a stream that closed normally before the server's answer ended (the client reset it with
      // NO_ERROR) is a cancellation to the server
      if (!req.closed && !req.destroyed) req.close(code !== H2_NO_ERROR ? code : responseEnded ? H2_NO_ERROR : H2_CANCEL);
    };
  }

  /** Closes the session (gracefully: open requests finish); later streams are refused. */
  close(): void {
    this.closed = true;
    this.session?.close();
  }

  /** Closes the session at once. */
  destroy(): void {
    this.closed = true;
    this.session?.destroy();
  }
}
