/**
 * One client port, two protocols, as etcd serves them: each accepted connection is sniffed; an
 * HTTP/2 connection preface goes to the gRPC server (through grpc-js's connection injector), an
 * HTTP/1 request line to the HTTP/1.1 handler (/health, /version, /metrics, the JSON gateway).
 * Anything else is closed without a byte in answer, as etcd's connection multiplexer (cmux,
 * which tries its HTTP/2 and HTTP/1 matchers and closes what neither takes) does; node's HTTP
 * server would have answered "400 Bad Request". TLS, when configured, wraps the socket before
 * the sniffing.
 *
 * With `serveH2` (pkg/h2's own server) an HTTP/2 connection goes there as soon as its preface is
 * seen. Otherwise it is handed over in one of two ways (see h2-opening.ts): natively (the
 * session takes the socket's handle), or through `AuthorityRewriter` for the few clients whose
 * requests carry a URL-shaped `:authority`. To tell them apart the listener answers the preface
 * with a SETTINGS frame of its own and reads on until the client's first request, a frame that
 * needs the session, or a short idle deadline after the client's ACK of that SETTINGS.
 */
import net from "node:net";
import tls from "node:tls";
import http from "node:http";
import type http2 from "node:http2";
import type { Duplex } from "node:stream";
import type { Logger } from "../../pkg/logger.js";
import { AuthorityRewriter } from "./h2-authority.js";
import { H2_PREFACE, H2Opening, serverSettingsFrame, type H2Path } from "./h2-opening.js";

/** cmux's bound on an HTTP/1 request line (its maxHTTPRead; a longer first line is not HTTP/1). */
const REQUEST_LINE_BYTES_MAX = 4096;

/**
 * cmux's HTTP1 matcher on a connection's first line (without its line end): "METHOD SP URI SP
 * PROTO" split at the first two spaces, PROTO an HTTP/1.x version as Go's ParseHTTPVersion
 * reads it ("HTTP/1.0", "HTTP/1.1", or "HTTP/1.D" with D one digit).
 */
function isHttp1RequestLine(line: string): boolean {
  const s1 = line.indexOf(" ");
  if (s1 < 0) return false;
  const s2 = line.indexOf(" ", s1 + 1);
  if (s2 < 0) return false;
  const proto = line.slice(s2 + 1);
  return proto.length === 8 && proto.startsWith("HTTP/1.") && proto.charCodeAt(7) >= 0x30 && proto.charCodeAt(7) <= 0x39;
}

/**
 * Whether `bytes` open with an HTTP/1 request line, read as cmux reads it (bufio's ReadLine: the
 * line without "\n" or "\r\n", within REQUEST_LINE_BYTES_MAX); undefined while the line is
 * still incomplete and under the bound.
 */
function startsWithHttp1RequestLine(bytes: Buffer): boolean | undefined {
  const lineEnd = bytes.indexOf(0x0a);
  if (lineEnd < 0) return bytes.length < REQUEST_LINE_BYTES_MAX ? undefined : false;
  if (lineEnd >= REQUEST_LINE_BYTES_MAX) return false;
  const end = lineEnd > 0 && bytes[lineEnd - 1] === 0x0d ? lineEnd - 1 : lineEnd;
  return isHttp1RequestLine(bytes.toString("latin1", 0, end));
}

/** Bytes a client may trickle before we must decide; the preface is 24 bytes. */
const SNIFF_TIMEOUT_MS = 10_000;
/**
 * How long an HTTP/2 client may stay silent after ACKing our SETTINGS before it is handed over
 * natively without a first request. Go clients send their first request within microseconds of
 * the ACK; the wait is generous because a URL-authority client misjudged as idle would fail its
 * requests, while waiting costs nothing to a client that does send (it is decided at once).
 */
const FIRST_REQUEST_WAIT_MS = 100;
/**
 * How long the opening may take in all. Its one use: a client that has not ACKed our SETTINGS
 * by then (RFC 9113 says "immediately"), or is stuck inside a frame, goes through
 * `AuthorityRewriter`, which works with any authority and removes the ACK should it come later.
 */
const OPENING_WAIT_MS = 1_000;
/**
 * Bound on what one HTTP/2 connection may send before it is handed over. A client's first
 * flight is its SETTINGS, WINDOW_UPDATE, one request's HEADERS and at most 64 KiB of DATA (the
 * initial flow-control window).
 */
const H2_OPENING_BYTES_MAX = 256 * 1024;

export interface ClientListenerDeps {
  /** Takes a gRPC connection: `conn` to serve, `socket` the client's own (for its byte counts). */
  injectGrpc: (conn: Duplex, socket: Duplex) => void;
  http1: http.Server;
  logger: Logger;
  /**
   * When set, takes every HTTP/2 connection instead of `injectGrpc` (no opening is read, no
   * SETTINGS sent): the socket comes paused, its bytes so far (the preface first) unshifted; the
   * listener resumes it after the call.
   */
  serveH2?: (socket: Duplex) => void;
}

export interface ClientH2Options {
  /**
   * The SETTINGS the gRPC server's HTTP/2 sessions send (grpc-js sends only
   * `maxConcurrentStreams`, from `grpc.max_concurrent_streams`); the listener's own SETTINGS frame
   * carries the same values. Default: none (all protocol defaults).
   */
  settings?: http2.Settings;
  /** Overrides FIRST_REQUEST_WAIT_MS (tests). */
  firstRequestWaitMs?: number;
}

/** HTTP/2 connections handed to the gRPC server since start, by path (process-wide). */
const h2Handovers: Record<H2Path, number> = { native: 0, rewrite: 0 };

/**
 * How many HTTP/2 connections this process has handed to the gRPC server natively and through
 * `AuthorityRewriter` (a debugging aid; tests compare two snapshots). A fresh object.
 */
export function h2HandoverCounts(): Record<H2Path, number> {
  return { ...h2Handovers };
}

/** Routes one connection by its first bytes. */
export function sniffConnection(socket: Duplex, deps: ClientListenerDeps, h2: ClientH2Options = {}): void {
  let buffered = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
  const onError = (): void => {
    clearTimeout(timer);
  };
  socket.on("error", onError);
  const onData = (chunk: Buffer): void => {
    buffered = Buffer.concat([buffered, chunk]);
    const n = Math.min(buffered.length, H2_PREFACE.length);
    const isH2Prefix = buffered.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2Prefix && buffered.length < H2_PREFACE.length) return; // need more bytes
    const http1 = isH2Prefix ? false : startsWithHttp1RequestLine(buffered);
    if (http1 === undefined) return; // need the whole first line
    clearTimeout(timer);
    socket.removeListener("data", onData);
    socket.removeListener("error", onError);
    if (isH2Prefix && deps.serveH2 !== undefined) {
      socket.pause();
      socket.unshift(buffered);
      deps.serveH2(socket);
      socket.resume();
      return;
    }
    if (isH2Prefix) {
      routeH2(socket, buffered, deps, h2);
      return;
    }
    if (!http1) {
      socket.destroy();
      return;
    }
    socket.pause();
    socket.unshift(buffered);
    deps.http1.emit("connection", socket);
    socket.resume();
  };
  socket.on("data", onData);
}

/**
 * Reads the opening of an HTTP/2 connection (whose bytes so far, preface first, are `first`)
 * and hands it to the gRPC server natively or through `AuthorityRewriter` (see h2-opening.ts).
 * Called from a 'data' handler: the socket is flowing.
 */
function routeH2(socket: Duplex, first: Buffer, deps: ClientListenerDeps, h2: ClientH2Options): void {
  const opening = new H2Opening();
  const firstRequestWaitMs = h2.firstRequestWaitMs ?? FIRST_REQUEST_WAIT_MS;
  let idleTimer: NodeJS.Timeout | undefined;
  let finished = false;

  const cleanUp = (): void => {
    finished = true;
    clearTimeout(openingTimer);
    clearTimeout(idleTimer);
    socket.removeListener("data", onData);
    socket.removeListener("end", onEnd);
    socket.removeListener("close", cleanUp);
    socket.removeListener("error", cleanUp);
  };
  const handOver = (path: H2Path, reason: string): void => {
    if (finished) return;
    cleanUp();
    const settingsAcksToDrop = opening.settingsAckSeen ? 0 : 1;
    socket.pause();
    socket.unshift(opening.takeBytes());
    h2Handovers[path]++;
    deps.logger.debug("http2 connection handed over", { path, reason, authority: opening.decision?.authority });
    deps.injectGrpc(path === "native" ? socket : new AuthorityRewriter(socket, { settingsAcksToDrop }), socket);
  };
  const step = (): void => {
    if (finished) return;
    const decision = opening.decision;
    if (decision?.path === "rewrite") {
      handOver("rewrite", decision.reason); // the rewriter removes an ACK that is still to come
      return;
    }
    if (opening.settingsAckSeen) {
      if (decision === undefined && opening.bufferedBytes > H2_OPENING_BYTES_MAX) opening.decide("native", "opening-too-large");
      const decided = opening.decision;
      if (decided !== undefined) {
        handOver(decided.path, decided.reason);
      } else if (idleTimer === undefined) {
        armIdleTimer();
      }
      return;
    }
    // Without the ACK the session cannot have the socket: only the rewriter can remove an ACK
    // that is still to come.
    if (opening.unframeable || opening.bufferedBytes > H2_OPENING_BYTES_MAX) handOver("rewrite", decision?.reason ?? "opening-too-large");
  };
  const armIdleTimer = (): void => {
    // A timer fires before the poll phase reads sockets: decide in the check phase, after bytes
    // that had already arrived have been read. A frame still arriving gets more time (up to the
    // opening's deadline).
    idleTimer = setTimeout(
      () =>
        setImmediate(() => {
          if (finished) return;
          if (opening.endsIncomplete) {
            armIdleTimer();
            return;
          }
          opening.decide("native", "idle");
          step();
        }),
      firstRequestWaitMs,
    );
  };
  const onData = (chunk: Buffer): void => {
    opening.push(chunk);
    step();
  };
  const onEnd = (): void => {
    // Half-closed before its first request was handed over: nothing will answer it.
    cleanUp();
    socket.destroy();
  };
  const openingTimer = setTimeout(
    () => handOver("rewrite", opening.settingsAckSeen ? "opening-timeout" : "no-settings-ack"),
    OPENING_WAIT_MS,
  );

  socket.on("data", onData);
  socket.on("end", onEnd);
  socket.on("close", cleanUp);
  socket.on("error", cleanUp); // the socket is destroyed; nothing else to do
  socket.write(serverSettingsFrame(h2.settings));
  opening.push(first);
  step();
}

/**
 * The server for one client URL's connections (TLS with ALPN h2 and http/1.1 when `tls` is set):
 * each connection is sniffed and routed. It does not listen itself; a HeldListener bound before
 * the member booted hands it the connections (pkg/held-listener.ts).
 */
export function clientConnectionServer(options: { tls?: tls.TlsOptions; h2?: ClientH2Options; admit?: (socket: tls.TLSSocket) => boolean }, deps: ClientListenerDeps): net.Server {
  return options.tls
    ? tls.createServer({ ...options.tls, ALPNProtocols: ["h2", "http/1.1"] }, (s) => {
        // `admit` refuses (and destroys) a connection whose certificate breaks a rule of etcd's.
        if (options.admit === undefined || options.admit(s)) sniffConnection(s, deps, options.h2);
      })
    : net.createServer((s) => {
        s.setNoDelay(true);
        sniffConnection(s, deps, options.h2);
      });
}
