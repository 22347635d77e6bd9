/**
 * The lean unary path: etcd's hot unary methods (KV and Lease) served straight on the HTTP/2
 * streams of the gRPC server's own sessions, without grpc-js's per-call machinery (intercepting
 * call, metadata copy, read queue, a Writable per unary call, status objects), while every other
 * stream (Watch, Snapshot, the other services, unknown methods, anything unusual; LeaseKeepAlive
 * is lean-stream.ts's) goes to grpc-js untouched, on the same session. The wire pieces both lean
 * paths share (decoder, headers, trailers, percent-encoding, timeouts, metadata, the hook) are
 * lean-path.ts's.
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
import type http2 from "node:http2";
import type { Metadata, ServiceDefinition } from "@grpc/grpc-js";
import {
  CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeResponse,
  LeaseTimeToLiveResponse, PutResponse, RangeResponse, TxnResponse,
} from "@etcd-ts/proto/etcdserverpb/rpc";
import type { ServiceRegistry } from "./service-registry.js";
import type { MessageEncoder } from "../../pkg/proto-encode.js";
import {
  DEADLINE_EXCEEDED, INTERNAL, LeanMetadata, MessageReader, NOT_PLAIN, OK_TRAILERS, RESOURCE_EXHAUSTED, RESPONSE_HEADERS,
  RESPONSE_OPTIONS, TRAILERS_ONLY_OPTIONS, UNIMPLEMENTED, UNKNOWN, authContextOf, frameMessage, installLeanPath, peerOf, plainCallTimeout,
  serverErrorToStatus, trailersOnlyHeaders, type LeanTaker,
} from "./lean-path.js";

export { installLeanPath, type LeanInstallResult } from "./lean-path.js";

/** The methods served on the lean path, with their response encoders (no intermediate Buffer). */
const LEAN_ENCODERS: Record<string, MessageEncoder<any>> = {
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

type UnaryCallback = (err: unknown, value?: unknown, trailer?: Metadata) => void;
type UnaryHandler = (call: LeanCall, callback: UnaryCallback) => void;

/** One lean method: how to read its request, write its response, and whom to call. */
interface LeanMethod {
  readonly path: string;
  readonly decode: (message: Buffer) => unknown;
  /** The response's encoder. */
  readonly encoder: MessageEncoder<unknown>;
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

/** Serves the lean methods of a registry on HTTP/2 streams (see the file comment). */
export class LeanUnaryServer implements LeanTaker {
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
          encoder,
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
    const timeoutMs = plainCallTimeout(headers);
    if (timeoutMs === NOT_PLAIN) return false;
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

/**
 * One call on the lean path; also the call object the handler chain sees (the subset of
 * grpc-js's ServerUnaryCall the registry's wrappers and `unary()` read).
 */
class LeanCall {
  request: unknown = undefined;
  cancelled = false;
  readonly metadata: LeanMetadata;
  private readonly reader: MessageReader;
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
    this.reader = new MessageReader(options.maxReceiveMessageBytes);
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
    return peerOf(this.stream);
  }

  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: unknown } {
    return authContextOf(this.stream);
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
    const messages = this.reader.read(chunk);
    if (messages === undefined) {
      this.sendStatus(RESOURCE_EXHAUSTED, this.reader.oversize!, undefined);
      return;
    }
    for (const m of messages) {
      if (this.finished) return;
      this.onMessage(m);
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
      const status = serverErrorToStatus(err, trailer);
      this.sendStatus(status.code, status.details, status.metadata);
      return;
    }
    const frame = frameMessage(this.method.encoder, value, this.options.maxSendMessageBytes);
    if ("details" in frame) {
      this.sendStatus(frame.code, frame.details, undefined);
      return;
    }
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
    const headers = trailersOnlyHeaders(code, details, metadata);
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
    this.reader.clear();
    const listeners = this.cancelListeners;
    if (listeners !== undefined && listeners.length > 0) {
      process.nextTick(() => {
        for (const l of [...listeners]) l("cancelled");
      });
    }
  }
}

/**
 * Puts `lean` in front of the stream handler of every HTTP/2 server `grpcServer` has made so far
 * (lean-path.ts `installLeanPath`, with this path alone).
 */
export const installLeanUnary: (grpcServer: object, lean: LeanTaker | readonly LeanTaker[]) => ReturnType<typeof installLeanPath> = installLeanPath;
