/**
 * The lean unary path: etcd's hot unary methods (KV and Lease) served straight on the HTTP/2
 * streams of the gRPC server's own sessions, without grpc-js's per-call machinery (intercepting
 * call, metadata copy, read queue, a Writable per unary call, status objects), while every other
 * stream (Watch, LeaseKeepAlive, Snapshot, the other services, unknown methods, anything unusual)
 * goes to grpc-js untouched, on the same session.
 *
 * Contract: to a client the lean path is indistinguishable from grpc-js 1.14.7 serving the same
 * registry. Per call it:
 * - takes a stream only when grpc-js would serve it plainly: a lean method's path, a content-type
 *   starting `application/grpc`, no `grpc-encoding` other than `identity` (gzip and deflate go to
 *   grpc-js, which inflates them), a `grpc-timeout` that grpc-js parses (an unparsable one goes to
 *   grpc-js, which answers it);
 * - reads length-prefixed messages as grpc-js's decoder does: a message longer than the receive
 *   limit answers RESOURCE_EXHAUSTED "Received message larger than max (N vs M)" as soon as its
 *   prefix arrives; the compressed flag is ignored under identity encoding (as grpc-js); a message
 *   that does not decode answers INTERNAL "Error deserializing request"; a second message answers
 *   UNIMPLEMENTED "Received a second request message for server streaming method <path>", none
 *   "Received no request message for server streaming method <path>"; the handler runs at the
 *   client's half-close, as grpc-js runs it;
 * - calls the registry's own handler for the method (metrics, learner gate, tracing and the
 *   `unary()` adapter included) with a call object that offers what those read: `request`,
 *   `metadata` (`get`, `getMap`, with grpc-js's validation of keys and values), `getPeer()`,
 *   `getAuthContext()` (the verified TLS client certificate), `getDeadline()`, `cancelled` and the
 *   'cancelled' event (the client reset the stream, or its deadline passed);
 * - answers with grpc-js's headers (`:status` 200, `content-type: application/grpc+proto`,
 *   `grpc-accept-encoding: identity,deflate,gzip`, `grpc-encoding: identity`), one DATA frame, and
 *   trailers `grpc-status: 0`, `grpc-message: OK`; an error as a trailers-only response with its
 *   code and `encodeURI` of its details (grpc-js's percent-encoding), after grpc-js's
 *   serverErrorToStatus rules; a passed `grpc-timeout` as DEADLINE_EXCEEDED "Deadline exceeded".
 *
 * Known difference: grpc-js logs (stderr) metadata entries it drops as invalid; this path drops
 * them silently. With GRPC_NODE_DEBUG_SEND_ERROR_DETAILS=true grpc-js words some errors
 * differently; the path is then not installed.
 */
import http2 from "node:http2";
import { TLSSocket } from "node:tls";
import type { EventEmitter } from "node:events";
import { Metadata, type MetadataValue, type ServiceDefinition } from "@grpc/grpc-js";
import {
  CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeResponse,
  LeaseTimeToLiveResponse, PutResponse, RangeResponse, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { ServiceRegistry } from "./service-registry.js";

/** gRPC status codes this path produces itself. */
const UNKNOWN = 2;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNIMPLEMENTED = 12;
const INTERNAL = 13;

/** The methods served on the lean path, with their response encoders (no intermediate Buffer). */
const LEAN_ENCODERS: Record<string, { encode(message: any): { finish(): Uint8Array } }> = {
  "/etcdserverpb.KV/Range": RangeResponse,
  "/etcdserverpb.KV/Put": PutResponse,
  "/etcdserverpb.KV/DeleteRange": DeleteRangeResponse,
  "/etcdserverpb.KV/Txn": TxnResponse,
  "/etcdserverpb.KV/Compact": CompactionResponse,
  "/etcdserverpb.Lease/LeaseGrant": LeaseGrantResponse,
  "/etcdserverpb.Lease/LeaseRevoke": LeaseRevokeResponse,
  "/etcdserverpb.Lease/LeaseTimeToLive": LeaseTimeToLiveResponse,
  "/etcdserverpb.Lease/LeaseLeases": LeaseLeasesResponse,
};

/** The paths the lean path serves (every other stream is grpc-js's). */
export const LEAN_UNARY_PATHS: readonly string[] = Object.keys(LEAN_ENCODERS);

// grpc-js 1.14.7's constants, byte for byte (server-interceptors.ts, metadata.ts).
const DEADLINE_REGEX = /(\d{1,8})\s*([HMSmun])/;
const DEADLINE_UNIT_MS: Record<string, number> = { H: 3600000, M: 60000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
const LEGAL_KEY = /^[:0-9a-z_.-]+$/;
const LEGAL_VALUE = /^[ -~]*$/;
/** Headers grpc-js removes from the metadata it gives handlers. */
const NOT_METADATA = new Set(["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "te", "content-type"]);

/** Response headers, prepared once (Node copies them when it sends; `date` is added by Node). */
const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = {
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
};
const RESPONSE_OPTIONS: http2.ServerStreamResponseOptions = { waitForTrailers: true };
const OK_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": 0, "grpc-message": "OK" };
const TRAILERS_ONLY_OPTIONS: http2.ServerStreamResponseOptions = { endStream: true };

type UnaryCallback = (err: unknown, value?: unknown, trailer?: Metadata) => void;
type UnaryHandler = (call: LeanCall, callback: UnaryCallback) => void;

/** One lean method: how to read its request, write its response, and whom to call. */
interface LeanMethod {
  readonly path: string;
  readonly decode: (message: Buffer) => unknown;
  readonly encode: (value: unknown) => Uint8Array;
  readonly handler: UnaryHandler;
  readonly secondMessage: string;
  readonly noMessage: string;
}

export interface LeanUnaryOptions {
  /** grpc-js's `grpc.max_receive_message_length` of the server it sits beside. */
  maxReceiveMessageBytes: number;
  /** grpc-js's `grpc.max_send_message_length` of that server. */
  maxSendMessageBytes: number;
}

export interface LeanUnaryDeps {
  /** The services grpc-js serves; the lean methods' handlers are taken from here. */
  services: ServiceRegistry;
}

function noop(): void {}

/** grpc-js's encoding of grpc-message (encodeURI); a lone surrogate, which encodeURI refuses, becomes U+FFFD. */
function percentEncode(details: string): string {
  try {
    return encodeURI(details);
  } catch {
    return encodeURI(String(details).replace(/[\uD800-\uDFFF]/g, "\uFFFD"));
  }
}

/** Serves the lean methods of a registry on HTTP/2 streams (see the file comment). */
export class LeanUnaryServer {
  private readonly methods = new Map<string, LeanMethod>();
  /** Calls taken so far (the rest went to grpc-js). */
  taken = 0;

  constructor(readonly options: LeanUnaryOptions, deps: LeanUnaryDeps) {
    for (const service of deps.services) {
      const definition = service.definition as ServiceDefinition;
      for (const [name, method] of Object.entries(definition)) {
        const encoder = LEAN_ENCODERS[method.path];
        if (encoder === undefined || method.requestStream || method.responseStream) continue;
        const handler = service.implementation[name] as unknown as UnaryHandler | undefined;
        if (typeof handler !== "function") continue;
        this.methods.set(method.path, {
          path: method.path,
          decode: method.requestDeserialize as (m: Buffer) => unknown,
          encode: (value) => encoder.encode(value).finish(),
          handler,
          secondMessage: `Received a second request message for server streaming method ${method.path}`,
          noMessage: `Received no request message for server streaming method ${method.path}`,
        });
      }
    }
  }

  /** The paths this server takes (those of LEAN_UNARY_PATHS the registry serves). */
  get paths(): string[] {
    return [...this.methods.keys()];
  }

  /**
   * Serves `stream` when it is a plain call of a lean method and returns true; returns false,
   * having touched nothing, for any other stream (grpc-js then serves it).
   */
  take(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    const method = this.methods.get(headers[":path"] as string);
    if (method === undefined) return false;
    const contentType = headers["content-type"];
    if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) return false;
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    // grpc-js's arithmetic, overflow of huge hour counts included (a negative timeout fires at once).
    let timeoutMs: number | undefined;
    const timeout = headers["grpc-timeout"];
    if (timeout !== undefined) {
      if (typeof timeout !== "string" || !LEGAL_VALUE.test(timeout)) return false;
      const match = DEADLINE_REGEX.exec(timeout);
      if (match === null) return false;
      timeoutMs = (Number(match[1]) * DEADLINE_UNIT_MS[match[2]!]!) | 0;
    }
    new LeanCall(this.options, method, stream, headers, timeoutMs);
    this.taken++;
    return true;
  }
}

const LEAN_CALL = Symbol("etcd-ts.lean-call");

/** A stream the lean path serves, with its call. */
interface CallStream extends http2.ServerHttp2Stream {
  [LEAN_CALL]?: LeanCall;
}

function onStreamData(this: CallStream, chunk: Buffer): void {
  this[LEAN_CALL]!.onData(chunk);
}

function onStreamEnd(this: CallStream): void {
  this[LEAN_CALL]!.onEnd();
}

function onStreamWantTrailers(this: CallStream): void {
  this[LEAN_CALL]?.onWantTrailers();
}

function onStreamClose(this: CallStream): void {
  const call = this[LEAN_CALL]!;
  this[LEAN_CALL] = undefined;
  call.onClose();
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

/**
 * One call on the lean path; also the call object the handler chain sees (the subset of
 * grpc-js's ServerUnaryCall the registry's wrappers and `unary()` read).
 */
class LeanCall {
  request: unknown = undefined;
  cancelled = false;
  readonly metadata: LeanMetadata;
  /** The request's bytes so far that do not yet make a whole message. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The length of the message being read; -1 while its prefix is incomplete. */
  private messageBytes = -1;
  private messages = 0;
  /**
   * A message after the first, or one that did not decode: grpc-js then never delivers the
   * half-close, so the handler never runs.
   */
  private blocked = false;
  /** The status is sent (or the response is under way): nothing more is read or answered. */
  private finished = false;
  private deadline = Infinity;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private cancelListeners: Array<(...args: unknown[]) => void> | undefined;
  /** The handler's trailing metadata, sent with the OK status. */
  private trailer: Metadata | undefined;

  constructor(
    private readonly options: LeanUnaryOptions,
    private readonly method: LeanMethod,
    private readonly stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    timeoutMs: number | undefined,
  ) {
    this.metadata = new LeanMetadata(headers);
    // The stream's listeners are shared by all calls; they find the call on the stream.
    (stream as CallStream)[LEAN_CALL] = this;
    // As grpc-js: errors are followed by 'close', which is what counts.
    stream.on("error", noop);
    stream.once("close", onStreamClose);
    stream.on("data", onStreamData);
    stream.once("end", onStreamEnd);
    if (timeoutMs !== undefined) {
      this.deadline = Date.now() + timeoutMs;
      this.deadlineTimer = setTimeout(() => this.sendStatus(DEADLINE_EXCEEDED, "Deadline exceeded", undefined), timeoutMs);
    }
  }

  // ---- what handlers read (grpc-js's ServerUnaryCall) ----

  getPeer(): string {
    return connectionOf(this.stream).peer;
  }

  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: unknown } {
    const socket = connectionOf(this.stream).tls;
    if (socket === undefined || !socket.authorized) return {};
    const peerCertificate = socket.getPeerCertificate();
    return { transportSecurityType: "ssl", sslPeerCertificate: peerCertificate.raw ? peerCertificate : undefined };
  }

  getDeadline(): number {
    return this.deadline;
  }

  getPath(): string {
    return this.method.path;
  }

  sendMetadata(): void {}

  on(event: string, listener: (...args: unknown[]) => void): this {
    if (event === "cancelled") (this.cancelListeners ??= []).push(listener);
    return this;
  }

  once(event: string, listener: (...args: unknown[]) => void): this {
    const wrapped = (...args: unknown[]): void => {
      this.off(event, wrapped);
      listener(...args);
    };
    return this.on(event, wrapped);
  }

  off(event: string, listener: (...args: unknown[]) => void): this {
    const ls = this.cancelListeners;
    if (event === "cancelled" && ls !== undefined) {
      const i = ls.indexOf(listener);
      if (i >= 0) ls.splice(i, 1);
    }
    return this;
  }

  removeListener(event: string, listener: (...args: unknown[]) => void): this {
    return this.off(event, listener);
  }

  // ---- the stream ----

  /**
   * @internal (the stream's 'data' listener) As grpc-js's decoder: the messages a chunk completes
   * are delivered after the whole chunk is read, and none of them if it ends in an oversized one.
   */
  onData(chunk: Buffer): void {
    if (this.finished) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    for (;;) {
      if (this.messageBytes < 0) {
        if (this.buffered < 5) break;
        const head = this.chunks[0]!.length >= 5 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
        const length = head.readUInt32BE(1);
        const max = this.options.maxReceiveMessageBytes;
        if (max !== -1 && length > max) {
          this.sendStatus(RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs ${max})`, undefined);
          return;
        }
        this.messageBytes = length;
      }
      const end = 5 + this.messageBytes;
      if (this.buffered < end) break;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      // A copy of its own, as grpc-js's decoder makes: decoded bytes fields are views of it.
      const message = Buffer.from(all.subarray(5, end));
      if (all.length > end) {
        this.chunks = [all.subarray(end)];
        this.buffered = all.length - end;
      } else {
        this.chunks = [];
        this.buffered = 0;
      }
      this.messageBytes = -1;
      if (first === undefined) first = message;
      else (more ??= []).push(message);
    }
    if (first === undefined) return;
    this.onMessage(first);
    if (more !== undefined) {
      for (const m of more) {
        if (this.finished) return;
        this.onMessage(m);
      }
    }
  }

  private onMessage(message: Buffer): void {
    let request: unknown;
    try {
      request = this.method.decode(message);
    } catch {
      this.blocked = true;
      this.sendStatus(INTERNAL, "Error deserializing request", undefined);
      return;
    }
    if (++this.messages > 1) {
      this.blocked = true;
      this.sendStatus(UNIMPLEMENTED, this.method.secondMessage, undefined);
      return;
    }
    this.request = request;
  }

  /**
   * @internal (the stream's 'end' listener) The client's half-close. As in grpc-js, the handler
   * runs when one message was delivered, even if a status went out meanwhile (a deadline, an
   * oversized second message): its answer is then dropped.
   */
  onEnd(): void {
    if (this.blocked) return;
    if (this.messages === 0) {
      this.sendStatus(UNIMPLEMENTED, this.method.noMessage, undefined);
      return;
    }
    try {
      this.method.handler(this, (err, value, trailer) => this.respond(err, value, trailer));
    } catch {
      this.sendStatus(UNKNOWN, "Unknown error", undefined);
    }
  }

  /** The handler's answer (grpc-js's sendUnaryData). */
  private respond(err: unknown, value: unknown, trailer: Metadata | undefined): void {
    if (this.finished || this.isClosed()) return;
    if (err) {
      // grpc-js's serverErrorToStatus.
      const e = (typeof err === "object" ? err : { message: String(err) }) as { code?: unknown; details?: unknown; message?: unknown; metadata?: Metadata };
      let code = UNKNOWN;
      let details = "message" in e ? e.message : "Unknown Error";
      if ("code" in e && typeof e.code === "number" && Number.isInteger(e.code)) {
        code = e.code;
        if ("details" in e && typeof e.details === "string") details = e.details;
      }
      this.sendStatus(code, details as string, trailer ?? e.metadata ?? undefined);
      return;
    }
    let body: Uint8Array;
    try {
      body = this.method.encode(value);
    } catch {
      this.sendStatus(INTERNAL, "Error serializing response", undefined);
      return;
    }
    const max = this.options.maxSendMessageBytes;
    if (max !== -1 && body.length > max) {
      this.sendStatus(RESOURCE_EXHAUSTED, `Sent message larger than max (${body.length + 5} vs. ${max})`, undefined);
      return;
    }
    const frame = Buffer.allocUnsafe(body.length + 5);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    this.finished = true;
    const stream = this.stream;
    this.trailer = trailer;
    stream.respond(RESPONSE_HEADERS, RESPONSE_OPTIONS);
    stream.once("wantTrailers", onStreamWantTrailers);
    stream.end(frame);
  }

  /** @internal (the stream's 'wantTrailers' listener, after the answer's message) */
  onWantTrailers(): void {
    const metadata = this.trailer?.toHttp2Headers();
    this.stream.sendTrailers(metadata === undefined ? OK_TRAILERS : { ...OK_TRAILERS, ...metadata });
    this.notifyCancelled();
  }

  /** A status without a message: grpc-js's trailers-only response. */
  private sendStatus(code: number, details: string, metadata: Metadata | undefined): void {
    if (this.finished || this.isClosed()) return;
    this.finished = true;
    const headers: http2.OutgoingHttpHeaders = {
      "grpc-status": code,
      "grpc-message": percentEncode(details),
      ":status": 200,
      "content-type": "application/grpc+proto",
      ...metadata?.toHttp2Headers(),
    };
    this.stream.respond(headers, TRAILERS_ONLY_OPTIONS);
    this.notifyCancelled();
  }

  private isClosed(): boolean {
    if (this.stream.destroyed || this.stream.closed) {
      this.notifyCancelled();
      return true;
    }
    return false;
  }

  /** @internal (the stream's 'close' listener) */
  onClose(): void {
    this.finished = true;
    this.notifyCancelled();
  }

  /** As grpc-js's notifyOnCancel: the handler hears 'cancelled', the rest of the request is drained. */
  private notifyCancelled(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.chunks = [];
    const listeners = this.cancelListeners;
    if (listeners !== undefined && listeners.length > 0) {
      process.nextTick(() => {
        for (const l of [...listeners]) l("cancelled");
      });
    }
  }
}

/**
 * The request's metadata as grpc-js gives it to handlers, read from the HTTP/2 headers on demand:
 * pseudo-headers and the transport's own headers left out, keys and values checked as grpc-js
 * checks them (an invalid entry is absent). Anything past plain `get` of a text key builds
 * grpc-js's own Metadata once.
 */
class LeanMetadata {
  private full: Metadata | undefined;

  constructor(private readonly headers: http2.IncomingHttpHeaders) {}

  get(key: string): MetadataValue[] {
    key = key.toLowerCase();
    if (key.endsWith("-bin")) return this.metadata().get(key);
    if (key.charCodeAt(0) === 58 /* ':' */ || NOT_METADATA.has(key) || !LEGAL_KEY.test(key)) return [];
    const value = this.headers[key];
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

/** What the hook needs of grpc-js's Server: the HTTP/2 servers its injectors made (private in 1.14.7). */
interface Http2ServersHolder {
  http2Servers?: unknown;
  /** `grpc.max_connection_idle_ms`, its "unlimited" being ~(1 << 31). */
  sessionIdleTimeout?: unknown;
  /** The server's `interceptors` option. */
  interceptors?: unknown;
}

/** grpc-js's "no idle timeout". */
const IDLE_UNLIMITED = ~(1 << 31);

const hooked = new WeakSet<object>();

export type LeanInstallResult = { installed: true; servers: number } | { installed: false; reason: string };

/**
 * Puts `lean` in front of the stream handler of every HTTP/2 server `grpcServer` has made so far
 * (call it after `createConnectionInjector`): each new stream is offered to `lean.take` first and
 * goes on to grpc-js when refused. Installs nothing, and says why, when grpc-js's internals are
 * not as expected (the path is then simply off) or when GRPC_NODE_DEBUG_SEND_ERROR_DETAILS=true
 * (grpc-js then words errors differently).
 */
export function installLeanUnary(grpcServer: object, lean: LeanUnaryServer): LeanInstallResult {
  if ((process.env.GRPC_NODE_DEBUG_SEND_ERROR_DETAILS ?? "false") === "true") {
    return { installed: false, reason: "GRPC_NODE_DEBUG_SEND_ERROR_DETAILS is set" };
  }
  const holder = grpcServer as Http2ServersHolder;
  const servers = holder.http2Servers;
  if (!(servers instanceof Map)) return { installed: false, reason: "grpc-js keeps no http2Servers map" };
  // What the lean path does not do: count streams for idle connections, run server interceptors.
  if (holder.sessionIdleTimeout !== IDLE_UNLIMITED) return { installed: false, reason: "grpc.max_connection_idle_ms is set" };
  if (!Array.isArray(holder.interceptors) || holder.interceptors.length > 0) return { installed: false, reason: "the server has interceptors" };
  const targets: Array<{ server: EventEmitter; grpcOnStream: (...args: unknown[]) => void }> = [];
  for (const server of servers.keys() as IterableIterator<EventEmitter>) {
    if (hooked.has(server)) continue;
    const listeners = server.listeners("stream");
    if (listeners.length !== 1) return { installed: false, reason: `an http2 server has ${listeners.length} stream listeners` };
    targets.push({ server, grpcOnStream: listeners[0] as (...args: unknown[]) => void });
  }
  if (targets.length === 0) return { installed: false, reason: "no http2 server to hook" };
  for (const { server, grpcOnStream } of targets) {
    server.removeListener("stream", grpcOnStream);
    server.on("stream", function (this: unknown, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) {
      if (!lean.take(stream, headers)) grpcOnStream.call(this, stream, headers, ...rest);
    });
    hooked.add(server);
  }
  return { installed: true, servers: targets.length };
}
