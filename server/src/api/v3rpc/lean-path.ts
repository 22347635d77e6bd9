/**
 * What the lean paths share (lean-unary.ts for the hot unary methods, lean-stream.ts for the
 * LeaseKeepAlive and Watch streams): grpc-js 1.14.7's wire constants, its reading of a call's headers
 * (content-type, encoding, `grpc-timeout`), its length-prefixed message decoder, its
 * percent-encoding of `grpc-message`, its serverErrorToStatus, the request metadata and the
 * connection facts handlers read, and the hook that offers every new HTTP/2 stream of grpc-js's
 * own servers to the lean paths before grpc-js sees it.
 *
 * Contract: each piece behaves as the grpc-js 1.14.7 code it stands for (named at each piece);
 * a client cannot tell which served a stream.
 */
import http2 from "node:http2";
import { TLSSocket } from "node:tls";
import type { EventEmitter } from "node:events";
import { Metadata, type MetadataValue } from "@grpc/grpc-js";
import { encodeMessageAfter, type MessageEncoder } from "../../pkg/proto-encode.js";

/** gRPC status codes the lean paths produce themselves. */
export const OK = 0;
export const CANCELLED = 1;
export const UNKNOWN = 2;
export const DEADLINE_EXCEEDED = 4;
export const RESOURCE_EXHAUSTED = 8;
export const UNIMPLEMENTED = 12;
export const INTERNAL = 13;

// grpc-js 1.14.7's constants, byte for byte (server-interceptors.ts, metadata.ts).
const DEADLINE_REGEX = /(\d{1,8})\s*([HMSmun])/;
const DEADLINE_UNIT_MS: Record<string, number> = { H: 3600000, M: 60000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
const LEGAL_KEY = /^[:0-9a-z_.-]+$/;
const LEGAL_VALUE = /^[ -~]*$/;
/** Headers grpc-js removes from the metadata it gives handlers. */
const NOT_METADATA = new Set(["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "te", "content-type"]);

/** grpc-js's response headers, prepared once (Node copies them when it sends; `date` is added by Node). */
export const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = {
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
};
/** Headers of a response whose status follows its messages as trailers. */
export const RESPONSE_OPTIONS: http2.ServerStreamResponseOptions = { waitForTrailers: true };
export const OK_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": 0, "grpc-message": "OK" };
export const TRAILERS_ONLY_OPTIONS: http2.ServerStreamResponseOptions = { endStream: true };

/** A status as grpc-js's call sends it. */
export interface LeanStatus {
  code: number;
  details: string;
  metadata?: Metadata | undefined;
}

/** grpc-js's encoding of grpc-message (encodeURI); a lone surrogate, which encodeURI refuses, becomes U+FFFD. */
export function percentEncode(details: string): string {
  try {
    return encodeURI(details);
  } catch {
    return encodeURI(String(details).replace(/[\uD800-\uDFFF]/g, "\uFFFD"));
  }
}

/** grpc-js's trailers-only response headers for a status (no message was sent). */
export function trailersOnlyHeaders(code: number, details: string, metadata: Metadata | undefined): http2.OutgoingHttpHeaders {
  return {
    "grpc-status": code,
    "grpc-message": percentEncode(details),
    ":status": 200,
    "content-type": "application/grpc+proto",
    ...metadata?.toHttp2Headers(),
  };
}

/** grpc-js's trailers for a status after messages. */
export function statusTrailers(code: number, details: string, metadata: Metadata | undefined): http2.OutgoingHttpHeaders {
  if (code === OK && details === "OK" && metadata === undefined) return OK_TRAILERS;
  return { "grpc-status": code, "grpc-message": percentEncode(details), ...metadata?.toHttp2Headers() };
}

/**
 * grpc-js's serializeMessage and send limit: `value`'s length-prefixed frame (compressed flag 0),
 * or the status that answers instead (INTERNAL when it does not encode, RESOURCE_EXHAUSTED over
 * `maxSendBytes`, -1 meaning no limit).
 */
export function frameResponse(encode: (value: unknown) => Uint8Array, value: unknown, maxSendBytes: number): Buffer | LeanStatus {
  let body: Uint8Array;
  try {
    body = encode(value);
  } catch {
    return { code: INTERNAL, details: "Error serializing response" };
  }
  if (maxSendBytes !== -1 && body.length > maxSendBytes) {
    return { code: RESOURCE_EXHAUSTED, details: `Sent message larger than max (${body.length + 5} vs. ${maxSendBytes})` };
  }
  const frame = Buffer.allocUnsafe(body.length + 5);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

/**
 * `frameResponse` for a generated message encoder, in one copy: the message is encoded right
 * behind room for the prefix, which is then filled in.
 */
export function frameMessage<T>(encoder: MessageEncoder<T>, value: T, maxSendBytes: number): Buffer | LeanStatus {
  let frame: Buffer;
  try {
    frame = encodeMessageAfter(encoder, value, 5);
  } catch {
    return { code: INTERNAL, details: "Error serializing response" };
  }
  const bodyBytes = frame.length - 5;
  if (maxSendBytes !== -1 && bodyBytes > maxSendBytes) {
    return { code: RESOURCE_EXHAUSTED, details: `Sent message larger than max (${frame.length} vs. ${maxSendBytes})` };
  }
  frame.writeUInt32BE(bodyBytes, 1);
  return frame;
}

/** grpc-js's serverErrorToStatus: what a handler's error (a callback's or an 'error' event's) answers. */
export function serverErrorToStatus(err: unknown, trailer?: Metadata): LeanStatus {
  const e = (typeof err === "object" && err !== null ? err : { message: String(err) }) as { code?: unknown; details?: unknown; message?: unknown; metadata?: Metadata };
  let code = UNKNOWN;
  let details = "message" in e ? e.message : "Unknown Error";
  if ("code" in e && typeof e.code === "number" && Number.isInteger(e.code)) {
    code = e.code;
    if ("details" in e && typeof e.details === "string") details = e.details;
  }
  return { code, details: details as string, metadata: trailer ?? e.metadata ?? undefined };
}

/** `plainCallTimeout`'s answer for a stream the lean paths leave to grpc-js. */
export const NOT_PLAIN = null;

/**
 * Whether grpc-js would serve a call with these headers plainly, and its timeout: NOT_PLAIN for
 * a content-type not starting `application/grpc`, a `grpc-encoding` other than `identity`
 * (grpc-js inflates gzip and deflate, and answers the others), or a `grpc-timeout` grpc-js does
 * not parse (it answers it); otherwise the timeout in milliseconds by grpc-js's arithmetic
 * (overflow of huge hour counts included: a negative timeout fires at once), undefined for none.
 */
export function plainCallTimeout(headers: http2.IncomingHttpHeaders): number | undefined | typeof NOT_PLAIN {
  const contentType = headers["content-type"];
  if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) return NOT_PLAIN;
  const encoding = headers["grpc-encoding"];
  if (encoding !== undefined && encoding !== "identity") return NOT_PLAIN;
  const timeout = headers["grpc-timeout"];
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "string" || !LEGAL_VALUE.test(timeout)) return NOT_PLAIN;
  const match = DEADLINE_REGEX.exec(timeout);
  if (match === null) return NOT_PLAIN;
  return (Number(match[1]) * DEADLINE_UNIT_MS[match[2]!]!) | 0;
}

const NO_MESSAGES: Buffer[] = [];

/**
 * grpc-js's StreamDecoder under identity encoding: length-prefixed messages out of DATA chunks.
 * The compressed flag is ignored (as grpc-js does under identity); each message is a copy of its
 * own, as grpc-js's decoder makes (decoded bytes fields are views of it).
 */
export class MessageReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The length of the message being read; -1 while its prefix is incomplete. */
  private messageBytes = -1;
  /** After an oversized prefix: grpc-js's RESOURCE_EXHAUSTED details. */
  oversize: string | undefined;

  /** @param maxBytes grpc-js's `grpc.max_receive_message_length` (-1: no limit). */
  constructor(private readonly maxBytes: number) {}

  /**
   * The messages `chunk` completes, in order; undefined when a prefix in it announces a message
   * over the limit (then `oversize` says so, and none of the chunk's messages count, as grpc-js's
   * decoder throws for the whole chunk).
   */
  read(chunk: Buffer): Buffer[] | undefined {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    let out = NO_MESSAGES;
    for (;;) {
      if (this.messageBytes < 0) {
        if (this.buffered < 5) break;
        const head = this.chunks[0]!.length >= 5 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
        const length = head.readUInt32BE(1);
        if (this.maxBytes !== -1 && length > this.maxBytes) {
          this.oversize = `Received message larger than max (${length} vs ${this.maxBytes})`;
          this.clear();
          return undefined;
        }
        this.messageBytes = length;
      }
      const end = 5 + this.messageBytes;
      if (this.buffered < end) break;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      const message = Buffer.from(all.subarray(5, end));
      if (all.length > end) {
        this.chunks = [all.subarray(end)];
        this.buffered = all.length - end;
      } else {
        this.chunks = [];
        this.buffered = 0;
      }
      this.messageBytes = -1;
      if (out === NO_MESSAGES) out = [message];
      else out.push(message);
    }
    return out;
  }

  /** Forgets what is buffered (the call is over). */
  clear(): void {
    this.chunks = [];
    this.buffered = 0;
  }
}

/** What the calls of one connection share: the peer as grpc-js writes it, the TLS socket if any. */
interface ConnectionInfo {
  readonly peer: string;
  readonly tls: TLSSocket | undefined;
}

const connections = new WeakMap<object, ConnectionInfo>();
const NO_CONNECTION: ConnectionInfo = { peer: "unknown", tls: undefined };

/** The connection facts of a stream's session, found once per session (as grpc-js finds them per call). */
function connectionOf(stream: http2.ServerHttp2Stream): ConnectionInfo {
  const session = stream.session;
  if (session === undefined) return NO_CONNECTION;
  let info = connections.get(session);
  if (info === undefined) {
    const socket = session.socket;
    const peer = socket?.remoteAddress ? (socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress) : "unknown";
    info = { peer, tls: socket instanceof TLSSocket ? socket : undefined };
    connections.set(session, info);
  }
  return info;
}

/** grpc-js's call.getPeer(). */
export function peerOf(stream: http2.ServerHttp2Stream): string {
  return connectionOf(stream).peer;
}

/** grpc-js's call.getAuthContext(): the verified TLS client certificate, if any. */
export function authContextOf(stream: http2.ServerHttp2Stream): { transportSecurityType?: string; sslPeerCertificate?: unknown } {
  const socket = connectionOf(stream).tls;
  if (socket === undefined || !socket.authorized) return {};
  const peerCertificate = socket.getPeerCertificate();
  return { transportSecurityType: "ssl", sslPeerCertificate: peerCertificate.raw ? peerCertificate : undefined };
}

const BINARY_KEY = 1;
const NO_TEXT_KEY = 0;
/** textMetadataName's answers, by the key as given: callers ask for a few constant keys per request. */
const textMetadataNames = new Map<string, string | typeof BINARY_KEY | typeof NO_TEXT_KEY>();
const TEXT_METADATA_NAMES_MAX = 64;

/**
 * The header a text metadata key is read from (its lower-case form), BINARY_KEY for a `-bin` key,
 * or NO_TEXT_KEY for a key that names no metadata (a pseudo-header, a transport header, an
 * illegal key), checked as grpc-js checks keys.
 */
function textMetadataName(key: string): string | typeof BINARY_KEY | typeof NO_TEXT_KEY {
  let name = textMetadataNames.get(key);
  if (name === undefined) {
    const lower = key.toLowerCase();
    if (lower.endsWith("-bin")) name = BINARY_KEY;
    else if (lower.charCodeAt(0) === 58 /* ':' */ || NOT_METADATA.has(lower) || !LEGAL_KEY.test(lower)) name = NO_TEXT_KEY;
    else name = lower;
    if (textMetadataNames.size >= TEXT_METADATA_NAMES_MAX) textMetadataNames.clear();
    textMetadataNames.set(key, name);
  }
  return name;
}

/**
 * The request's metadata as grpc-js gives it to handlers, read from the HTTP/2 headers on demand:
 * pseudo-headers and the transport's own headers left out, keys and values checked as grpc-js
 * checks them (an invalid entry is absent). Anything past plain `get` of a text key builds
 * grpc-js's own Metadata once.
 */
export class LeanMetadata {
  private full: Metadata | undefined;

  constructor(private readonly headers: http2.IncomingHttpHeaders) {}

  get(key: string): MetadataValue[] {
    const name = textMetadataName(key);
    if (name === BINARY_KEY) return this.metadata().get(key.toLowerCase());
    if (name === NO_TEXT_KEY) return [];
    const value = this.headers[name];
    if (value === undefined) return [];
    if (typeof value === "string") return LEGAL_VALUE.test(value) ? [value] : [];
    const out: string[] = [];
    for (const v of value) {
      if (!LEGAL_VALUE.test(v)) break; // grpc-js stops adding at the first invalid value
      out.push(v);
    }
    return out;
  }

  getMap(): { [key: string]: MetadataValue } {
    return this.metadata().getMap();
  }

  toHttp2Headers(): http2.OutgoingHttpHeaders {
    return this.metadata().toHttp2Headers();
  }

  /** grpc-js's Metadata for these headers, as its server call builds it. */
  metadata(): Metadata {
    if (this.full === undefined) {
      const m = Metadata.fromHttp2Headers(this.headers);
      for (const key of NOT_METADATA) m.remove(key);
      this.full = m;
    }
    return this.full;
  }
}

/** A lean path: serves a stream and returns true, or returns false having touched nothing. */
export interface LeanTaker {
  take(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
}

/**
 * The HTTP/2 servers grpc-js's Server has made for its injectors and listeners (its private
 * `http2Servers` map, in 1.14.7), or undefined when grpc-js keeps no such map. Every hook on
 * grpc-js's servers (the lean path, the stream guard, the non-gRPC router, the ping police,
 * bridged peers) reads them here.
 */
export function grpcHttp2Servers(grpcServer: object): EventEmitter[] | undefined {
  const servers = (grpcServer as { http2Servers?: unknown }).http2Servers;
  return servers instanceof Map ? [...(servers.keys() as IterableIterator<EventEmitter>)] : undefined;
}

/**
 * Replaces every 'stream' listener of each of grpc-js's HTTP/2 servers not yet in `done` by
 * `wrap(listener)`, and adds the server to `done` (the stream guard and the non-gRPC router each
 * wrap once). False (nothing changed) when grpc-js's internals are not as expected.
 */
export function wrapGrpcStreamListeners<L extends (...args: any[]) => void>(grpcServer: object, done: WeakSet<object>, wrap: (listener: L) => L): boolean {
  const servers = grpcHttp2Servers(grpcServer);
  if (servers === undefined) return false;
  for (const server of servers) {
    if (done.has(server)) continue;
    for (const listener of server.listeners("stream") as L[]) {
      server.removeListener("stream", listener);
      server.on("stream", wrap(listener));
    }
    done.add(server);
  }
  return true;
}

/** What the hook needs of grpc-js's Server beyond its HTTP/2 servers (private in 1.14.7). */
interface Http2ServersHolder {
  /** `grpc.max_connection_idle_ms`, its "unlimited" being ~(1 << 31). */
  sessionIdleTimeout?: unknown;
  /** The server's `interceptors` option. */
  interceptors?: unknown;
}

/** grpc-js's "no idle timeout". */
const IDLE_UNLIMITED = ~(1 << 31);

const hooked = new WeakSet<object>();
/** The takers installed on each grpc-js server (own-h2-server.ts offers streams to the same). */
const installedTakers = new WeakMap<object, readonly LeanTaker[]>();

/** The takers `installLeanPath` installed on `grpcServer` (empty when it installed none). */
export function installedLeanTakers(grpcServer: object): readonly LeanTaker[] {
  return installedTakers.get(grpcServer) ?? [];
}

export type LeanInstallResult = { installed: true; servers: number } | { installed: false; reason: string };

/**
 * Puts `takers` in front of the stream handler of every HTTP/2 server `grpcServer` has made so
 * far (call it after `createConnectionInjector`, once): each new stream is offered to each taker
 * in turn and goes on to grpc-js when all refuse. Installs nothing, and says why, when grpc-js's
 * internals are not as expected (the lean paths are then simply off) or when
 * GRPC_NODE_DEBUG_SEND_ERROR_DETAILS=true (grpc-js then words errors differently).
 */
export function installLeanPath(grpcServer: object, takers: LeanTaker | readonly LeanTaker[]): LeanInstallResult {
  if ((process.env.GRPC_NODE_DEBUG_SEND_ERROR_DETAILS ?? "false") === "true") {
    return { installed: false, reason: "GRPC_NODE_DEBUG_SEND_ERROR_DETAILS is set" };
  }
  const list: readonly LeanTaker[] = Array.isArray(takers) ? takers : [takers as LeanTaker];
  if (list.length === 0) return { installed: false, reason: "no lean path to install" };
  const holder = grpcServer as Http2ServersHolder;
  const servers = grpcHttp2Servers(grpcServer);
  if (servers === undefined) return { installed: false, reason: "grpc-js keeps no http2Servers map" };
  // What the lean paths do not do: count streams for idle connections, run server interceptors.
  if (holder.sessionIdleTimeout !== IDLE_UNLIMITED) return { installed: false, reason: "grpc.max_connection_idle_ms is set" };
  if (!Array.isArray(holder.interceptors) || holder.interceptors.length > 0) return { installed: false, reason: "the server has interceptors" };
  const targets: Array<{ server: EventEmitter; grpcOnStream: (...args: unknown[]) => void }> = [];
  for (const server of servers) {
    if (hooked.has(server)) continue;
    const listeners = server.listeners("stream");
    if (listeners.length !== 1) return { installed: false, reason: `an http2 server has ${listeners.length} stream listeners` };
    targets.push({ server, grpcOnStream: listeners[0] as (...args: unknown[]) => void });
  }
  if (targets.length === 0) return { installed: false, reason: "no http2 server to hook" };
  const [first, second] = list;
  const take: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean =
    list.length === 1 ? (s, h) => first!.take(s, h)
    : list.length === 2 ? (s, h) => first!.take(s, h) || second!.take(s, h)
    : (s, h) => list.some((t) => t.take(s, h));
  for (const { server, grpcOnStream } of targets) {
    server.removeListener("stream", grpcOnStream);
    server.on("stream", function (this: unknown, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) {
      if (!take(stream, headers)) grpcOnStream.call(this, stream, headers, ...rest);
    });
    hooked.add(server);
  }
  installedTakers.set(grpcServer, [...(installedTakers.get(grpcServer) ?? []), ...list]);
  return { installed: true, servers: targets.length };
}
