/**
 * The lean stream path: etcd's LeaseKeepAlive and Watch bidirectional streams served straight on
 * the HTTP/2 streams of the gRPC server's own sessions, beside lean-unary.ts and with the wire
 * pieces of lean-path.ts, without grpc-js's per-call machinery (intercepting call, read queue, a
 * Duplex with its Readable and Writable state per stream, a serializer's extra copy per message).
 * etcd's clients open one keep-alive stream per `KeepAliveOnce` (one request, one response, then
 * a cancel), which makes its cost per stream the cost of a keep-alive; a watch stream carries
 * every event of its watchers, which makes the cost per message the cost of a watch event.
 *
 * Contract: to a client the lean stream path is indistinguishable from grpc-js 1.14.7 serving the
 * same registry. Per stream it:
 * - takes a stream only when grpc-js would serve it plainly (lean-path.ts `plainCallTimeout`);
 * - calls the registry's own handler for the method (metrics, learner gate, tracing wrapper and
 *   the services' own logic included) with a call object that behaves, for what those
 *   use, as grpc-js's ServerDuplexStream over its BaseServerInterceptingCall, ticks and
 *   microtasks included (the handlers' own promise chains race them): a chunk's messages are
 *   decoded each in a microtask of its own and handed over as 'data' one per tick, the first
 *   when a read is pending; 'end' at the client's half-close, after the messages before it;
 *   `pause`/`resume`; `write` as the objectMode Writable's: one message in flight at a time
 *   (the response headers go with the first), the rest buffered, false returned once 16 are
 *   unsent (the one in flight included) and writes still taken, 'drain' when none is unsent
 *   again (not while ending or destroyed), the next buffered message sent before the finished
 *   write's callback; a message is done when the HTTP/2 stream took it, so HTTP/2 flow control
 *   from a client that stops reading holds the writes back exactly as grpc-js's; `end` (its
 *   status follows the writes before it); an 'error' event (its status, by grpc-js's
 *   serverErrorToStatus, ends the call); 'finish' on the tick after the status; `cancelled`
 *   and 'cancelled' on the tick after the call is over (status sent, client reset, deadline);
 *   'close' on the tick after the call is destroyed (after 'cancelled', or, as the Duplex's
 *   autoDestroy, once both 'finish' and 'end' went); a write after `end` as the Writable's (an
 *   'error', and no status at all when writes were still pending), one after destruction only
 *   errs its callback; `getPeer`, `getAuthContext`, `getDeadline`, `metadata`;
 * - reads messages by grpc-js's decoder rules (lean-path.ts `MessageReader`): a message over the
 *   receive limit answers RESOURCE_EXHAUSTED as soon as its prefix arrives (none of its chunk's
 *   messages is delivered); one that does not decode answers INTERNAL "Error deserializing
 *   request" and nothing after it is handed over;
 * - answers with grpc-js's headers, a DATA frame per message (over the send limit: RESOURCE_EXHAUSTED
 *   instead, and the write never completes, as grpc-js's), and trailers `grpc-status`,
 *   `grpc-message` (percent-encoded); a status before any message is a trailers-only response;
 *   a passed `grpc-timeout` answers DEADLINE_EXCEEDED "Deadline exceeded".
 *
 * Known differences, none visible in messages or statuses: grpc-js pauses the HTTP/2 stream after
 * every message until its handler reads on (this path reads on until 16 messages wait
 * undelivered, as a paused Readable buffers), so HTTP/2 window updates may differ; a paused call
 * here hands its queue over one per tick after `resume`, where a Readable flushes its buffer at once.
 *
 * Pipelined streams (Watch): grpc-js hands the HTTP/2 stream one message at a time, the next when
 * the previous went out on the socket (a loop turn or more later), so of the five events one put
 * makes for five watchers of a stream the fifth waits four socket writes. Here a pipelined
 * stream's messages go to the HTTP/2 stream as they are written (HTTP/2 flow control still
 * holds them there), and the Writable's accounting stays as it was: a message counts as unsent
 * until the HTTP/2 stream took it, `write` returns false at 16 unsent, 'drain', callbacks and the
 * final status wait for the same events. The one visible difference: a status that cuts a stream
 * short while messages are unsent (a deadline, a bad request) comes after every message written
 * before it; grpc-js sends only those its HTTP/2 stream held, and its next buffered message, written
 * after the stream's end, fails, which leaves the stream with no status at all until the client
 * goes (lean-watch.test.ts shows both).
 */
import type http2 from "node:http2";
import { EventEmitter } from "node:events";
import type { Metadata, ServiceDefinition } from "@grpc/grpc-js";
import { LeaseKeepAliveResponse, WatchResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import type { ServiceRegistry } from "./service-registry.js";
import type { MessageEncoder } from "../../pkg/proto-encode.js";
import {
  DEADLINE_EXCEEDED, INTERNAL, LeanMetadata, MessageReader, NOT_PLAIN, OK, RESOURCE_EXHAUSTED, RESPONSE_HEADERS,
  RESPONSE_OPTIONS, TRAILERS_ONLY_OPTIONS, UNKNOWN, authContextOf, frameMessage, peerOf, plainCallTimeout, serverErrorToStatus,
  statusTrailers, trailersOnlyHeaders, type LeanStatus, type LeanTaker,
} from "./lean-path.js";

/**
 * The bidirectional streams served on the lean stream path: their response encoders, and whether
 * their messages are pipelined (see the file comment).
 */
const LEAN_STREAMS: Record<string, { encoder: MessageEncoder<any>; pipelined: boolean }> = {
  "/etcdserverpb.Lease/LeaseKeepAlive": { encoder: LeaseKeepAliveResponse, pipelined: false },
  "/etcdserverpb.Watch/Watch": { encoder: WatchResponse, pipelined: true },
};

/** The paths the lean stream path serves. */
export const LEAN_STREAM_PATHS: readonly string[] = Object.keys(LEAN_STREAMS);

/** A Readable's default object high-water mark: messages a paused call queues before it stops reading. */
const READ_QUEUE_MAX = 16;
/**
 * A Writable's default object high-water mark: `write` returns false once this many messages are
 * unsent (the one on its way to the HTTP/2 stream included), and 'drain' follows when none is.
 */
const WRITE_BUFFER_MAX = 16;

type StreamHandler = (call: LeanDuplexCall) => void;

interface LeanStreamMethod {
  readonly path: string;
  readonly decode: (message: Buffer) => unknown;
  readonly encoder: MessageEncoder<unknown>;
  /** Messages go to the HTTP/2 stream as they are written, not one at a time. */
  readonly pipelined: boolean;
  readonly handler: StreamHandler;
}

export interface LeanStreamOptions {
  /** grpc-js's `grpc.max_receive_message_length` of the server it sits beside. */
  maxReceiveMessageBytes: number;
  /** grpc-js's `grpc.max_send_message_length` of that server. */
  maxSendMessageBytes: number;
}

export interface LeanStreamDeps {
  /** The services grpc-js serves; the lean streams' handlers are taken from here. */
  services: ServiceRegistry;
}

/** Serves the lean streams of a registry on HTTP/2 streams (see the file comment). */
export class LeanStreamServer implements LeanTaker {
  private readonly methods = new Map<string, LeanStreamMethod>();
  /** Streams taken so far (the rest went to grpc-js). */
  taken = 0;

  constructor(readonly options: LeanStreamOptions, deps: LeanStreamDeps) {
    for (const service of deps.services) {
      const definition = service.definition as ServiceDefinition;
      for (const [name, method] of Object.entries(definition)) {
        const lean = LEAN_STREAMS[method.path];
        if (lean === undefined || !method.requestStream || !method.responseStream) continue;
        const handler = service.implementation[name] as unknown as StreamHandler | undefined;
        if (typeof handler !== "function") continue;
        this.methods.set(method.path, {
          path: method.path,
          decode: method.requestDeserialize as (m: Buffer) => unknown,
          encoder: lean.encoder,
          pipelined: lean.pipelined,
          handler,
        });
      }
    }
  }

  /** The paths this server takes (those of LEAN_STREAM_PATHS the registry serves). */
  get paths(): string[] {
    return [...this.methods.keys()];
  }

  /**
   * Serves `stream` when it is a plain call of a lean stream and returns true; returns false,
   * having touched nothing, for any other stream (grpc-js then serves it).
   */
  take(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    const method = this.methods.get(headers[":path"] as string);
    if (method === undefined) return false;
    const timeoutMs = plainCallTimeout(headers);
    if (timeoutMs === NOT_PLAIN) return false;
    const call = new LeanDuplexCall(this.options, method, stream, headers, timeoutMs);
    this.taken++;
    call.start();
    return true;
  }
}

const LEAN_DUPLEX = Symbol("etcd-ts.lean-duplex");

/** A stream the lean stream path serves, with its call. */
interface DuplexStream extends http2.ServerHttp2Stream {
  [LEAN_DUPLEX]?: LeanDuplexCall;
}

function noop(): void {}

function onStreamData(this: DuplexStream, chunk: Buffer): void {
  this[LEAN_DUPLEX]?.onData(chunk);
}

function onStreamEnd(this: DuplexStream): void {
  this[LEAN_DUPLEX]?.onHalfClose();
}

function onStreamClose(this: DuplexStream): void {
  const call = this[LEAN_DUPLEX];
  this[LEAN_DUPLEX] = undefined;
  call?.notifyCancelled();
}

function onReadTick(call: LeanDuplexCall): void {
  call.startRead();
}

function writeAfterEnd(): Error & { code: string } {
  return Object.assign(new Error("write after end"), { code: "ERR_STREAM_WRITE_AFTER_END" });
}

function writeAfterDestroy(): Error & { code: string } {
  return Object.assign(new Error("Cannot call write after a stream was destroyed"), { code: "ERR_STREAM_DESTROYED" });
}

function emitClose(call: LeanDuplexCall): void {
  call.emitOwn("close");
}

function emitFinish(call: LeanDuplexCall): void {
  call.onFinish();
}

/**
 * One stream on the lean path; also the call object its handler chain sees (the subset of
 * grpc-js's ServerDuplexStream the registry's wrappers and the services use).
 */
class LeanDuplexCall extends EventEmitter {
  // ---- grpc-js's ServerDuplexStream ----
  cancelled = false;
  readonly metadata: LeanMetadata;
  /** The status `end` sends (an 'error' sets it, as grpc-js's does). */
  pendingStatus: LeanStatus = { code: OK, details: "OK" };
  private trailingMetadata: Metadata | undefined;

  // ---- the Readable side ----
  /** Messages (and the half-close) not yet handed over, in order (grpc-js's read queue). */
  private readQueue: ReadEntry[] | undefined;
  /** grpc-js's isReadPending: the next message may be handed over now (else on the next tick). */
  private readPending = true;
  /** The HTTP/2 stream is paused: READ_QUEUE_MAX messages wait. */
  private streamPaused = false;
  private paused = false;
  private readEnded = false;
  /** 'end' was emitted (the Readable's endEmitted). */
  private endEmitted = false;

  // ---- the Writable side ----
  /** `end` was called. */
  private ending = false;
  /** The status went, or will never go (a write after `end` destroyed the call). */
  private finalCalled = false;
  /** Messages handed to the HTTP/2 stream whose callbacks have not come. */
  private inFlight = 0;
  /**
   * A message did not go (the call was over, or it answered a status): nothing more is sent, and
   * what is written waits for ever (the Writable stays writing, as grpc-js's).
   */
  private stalled = false;
  /** Messages waiting for the one in flight (not pipelined) or for ever (stalled). */
  private writeQueue: Array<{ message: unknown; cb: ((err?: Error | null) => void) | undefined }> | undefined;
  /** Messages written and not yet taken by the HTTP/2 stream (the Writable's length). */
  private unsent = 0;
  /** A `write` returned false: 'drain' is due when nothing is unsent (the Writable's needDrain). */
  private needDrain = false;
  /** 'finish' was emitted (the Writable's finished). */
  private finished = false;
  private destroyed = false;

  // ---- the transport (grpc-js's BaseServerInterceptingCall) ----
  private readonly reader: MessageReader;
  private headersSent = false;
  private trailersPending = false;
  /** The call is over on the wire (status sent, stream closed): nothing more is read or written. */
  private over = false;
  private deadline = Infinity;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private statusToSend: LeanStatus | undefined;

  constructor(
    private readonly options: LeanStreamOptions,
    private readonly method: LeanStreamMethod,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
    timeoutMs: number | undefined,
  ) {
    super();
    this.metadata = new LeanMetadata(headers);
    this.reader = new MessageReader(options.maxReceiveMessageBytes);
    (stream as DuplexStream)[LEAN_DUPLEX] = this;
    // As grpc-js: errors are followed by 'close', which is what counts.
    stream.on("error", noop);
    stream.once("close", onStreamClose);
    stream.on("data", onStreamData);
    stream.once("end", onStreamEnd);
    if (timeoutMs !== undefined) {
      this.deadline = Date.now() + timeoutMs;
      this.deadlineTimer = setTimeout(() => this.sendStatus({ code: DEADLINE_EXCEEDED, details: "Deadline exceeded" }), timeoutMs);
    }
  }

  /** @internal Runs the handler (grpc-js's handleBidiStreaming at the request's metadata). */
  start(): void {
    if (this.checkOver()) return;
    try {
      this.method.handler(this);
    } catch {
      this.sendStatus({ code: UNKNOWN, details: "Unknown error" });
    }
  }

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

  getHost(): string {
    return (this.headers[":authority"] ?? this.headers.host) as string;
  }

  /** grpc-js's sendMetadata: the response headers now, with `metadata`, unless they went. */
  sendMetadata(metadata?: Metadata): void {
    if (this.checkOver() || this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(metadata === undefined ? RESPONSE_HEADERS : { ...RESPONSE_HEADERS, ...metadata.toHttp2Headers() }, RESPONSE_OPTIONS);
  }

  /** grpc-js's duplex listens to its own 'error': the error's status ends the call. */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "error") {
      this.pendingStatus = serverErrorToStatus(args[0]);
      this.end();
      if (this.listenerCount("error") === 0) return true;
    }
    return super.emit(event, ...args);
  }

  // ---- the Readable side ----

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    if (!this.paused) return this;
    this.paused = false;
    // As a Readable: the flow restarts on the next tick.
    process.nextTick(onReadTick, this);
    return this;
  }

  isPaused(): boolean {
    return this.paused;
  }

  private enqueue(item: ReadEntry): void {
    const queue = (this.readQueue ??= []);
    queue.push(item);
    if (queue.length >= READ_QUEUE_MAX && !this.streamPaused) {
      this.streamPaused = true;
      this.stream.pause();
    }
  }

  /**
   * Hands over the next message, or the half-close, when a read is pending (as grpc-js's
   * maybePushNextMessage into the duplex): one per tick, the next read on the tick after.
   */
  private deliver(): void {
    const queue = this.readQueue;
    if (!this.readPending || this.paused || this.destroyed || queue === undefined || queue.length === 0 || queue[0]!.raw !== undefined) return;
    this.readPending = false;
    const item = queue.shift()!;
    if (this.streamPaused && queue.length < READ_QUEUE_MAX && !this.over) {
      this.streamPaused = false;
      this.stream.resume();
    }
    if (item === END) {
      this.endReadable();
      return;
    }
    this.emit("data", item.value);
    process.nextTick(onReadTick, this);
  }

  /** @internal The duplex asks for the next message (grpc-js's startRead). */
  startRead(): void {
    if (this.checkOver()) return;
    this.readPending = true;
    this.deliver();
  }

  private endReadable(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    process.nextTick(() => {
      if (this.destroyed) return;
      this.endEmitted = true;
      super.emit("end");
      // The Duplex's autoDestroy: both sides are done.
      if (this.finished) this.destroy();
    });
  }

  /**
   * @internal (the stream's 'data' listener) As grpc-js: each of the chunk's messages is decoded
   * in a microtask of its own, in order, and handed over when it is the queue's first and a read
   * is pending; one that does not decode answers INTERNAL and blocks the queue.
   */
  onData(chunk: Buffer): void {
    if (this.checkOver()) return;
    const messages = this.reader.read(chunk);
    if (messages === undefined) {
      this.sendStatus({ code: RESOURCE_EXHAUSTED, details: this.reader.oversize! });
      return;
    }
    for (const m of messages) {
      const entry: ReadEntry = { raw: m, value: undefined };
      this.enqueue(entry);
      queueMicrotask(() => this.decode(entry));
    }
  }

  private decode(entry: ReadEntry): void {
    try {
      entry.value = this.method.decode(entry.raw!);
    } catch {
      this.sendStatus({ code: INTERNAL, details: "Error deserializing request" });
      return;
    }
    entry.raw = undefined;
    this.deliver();
  }

  /** @internal (the stream's 'end' listener) The client's half-close. */
  onHalfClose(): void {
    if (this.destroyed) return;
    this.enqueue(END);
    this.deliver();
  }

  // ---- the Writable side ----

  write(message: unknown, encodingOrCb?: unknown, cb?: (err?: Error | null) => void): boolean {
    const callback = typeof encodingOrCb === "function" ? (encodingOrCb as (err?: Error | null) => void) : cb;
    if (this.ending || this.destroyed) {
      // As a Writable: the callback hears the error; after `end` the error is emitted and the
      // call destroyed (a status not yet sent never is); a destroyed call stays silent.
      const err = this.ending ? writeAfterEnd() : writeAfterDestroy();
      if (callback !== undefined) process.nextTick(callback, err);
      if (!this.destroyed) {
        process.nextTick(() => this.emit("error", err));
        this.destroy();
      }
      return false;
    }
    const more = ++this.unsent < WRITE_BUFFER_MAX;
    if (!more) this.needDrain = true;
    if (this.stalled || (this.inFlight > 0 && !this.method.pipelined)) (this.writeQueue ??= []).push({ message, cb: callback });
    else this.sendMessage(message, callback);
    return more;
  }

  end(metadata?: Metadata): this {
    if (metadata) this.trailingMetadata = metadata;
    if (this.ending) return this;
    this.ending = true;
    if (this.unsent === 0 && !this.destroyed) this.callFinal();
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.writeQueue = undefined;
    this.readQueue = undefined;
    process.nextTick(emitClose, this);
    return this;
  }

  /** @internal Emits `event` past the 'error' handling of `emit`. */
  emitOwn(event: string): void {
    super.emit(event);
  }

  /** The Writable's _final: 'finish' on the next tick, the status now. */
  private callFinal(): void {
    if (this.finalCalled) return;
    this.finalCalled = true;
    process.nextTick(emitFinish, this);
    const status = this.pendingStatus;
    this.sendStatus({ code: status.code, details: status.details, metadata: status.metadata ?? this.trailingMetadata });
  }

  /** @internal The Writable's finish: 'finish', then the Duplex's autoDestroy once 'end' went too. */
  onFinish(): void {
    this.finished = true;
    super.emit("finish");
    if (this.endEmitted) this.destroy();
  }

  /**
   * grpc-js's sendMessage under the Writable's _write: the HTTP/2 stream's callback (it took the
   * message, which HTTP/2 flow control may hold back) ends the write; none comes when the call is
   * over or the message does not go (its status is sent instead), and the call stalls.
   */
  private sendMessage(message: unknown, cb: ((err?: Error | null) => void) | undefined): void {
    if (this.checkOver()) {
      this.stalled = true;
      return;
    }
    const frame = frameMessage(this.method.encoder, message, this.options.maxSendMessageBytes);
    if ("details" in frame) {
      this.stalled = true;
      this.sendStatus(frame);
      return;
    }
    this.inFlight++;
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, RESPONSE_OPTIONS);
    }
    this.stream.write(frame, (err?: Error | null) => {
      if (err) {
        this.stalled = true;
        this.sendStatus({ code: INTERNAL, details: "Internal server error" });
        return;
      }
      this.onWritten(cb);
    });
  }

  /**
   * The Writable's onwrite and afterWrite for a write that completed asynchronously: the next
   * buffered message goes (not pipelined), then 'drain' (when a write returned false and nothing
   * is unsent, unless ending or destroyed), then the write's callback, then the final step once
   * ending.
   */
  private onWritten(cb: ((err?: Error | null) => void) | undefined): void {
    this.inFlight--;
    this.unsent--;
    if (!this.destroyed && !this.stalled) {
      const next = this.writeQueue?.shift();
      if (next !== undefined) this.sendMessage(next.message, next.cb);
    }
    if (this.needDrain && this.unsent === 0 && !this.ending && !this.destroyed) {
      this.needDrain = false;
      super.emit("drain");
    }
    cb?.();
    if (this.ending && this.unsent === 0 && !this.destroyed) this.callFinal();
  }

  // ---- the transport ----

  /** grpc-js's sendStatus: trailers after the messages, or a trailers-only response. */
  private sendStatus(status: LeanStatus): void {
    if (this.checkOver()) return;
    if (this.headersSent) {
      if (this.trailersPending) {
        this.notifyCancelled();
        return;
      }
      this.trailersPending = true;
      this.statusToSend = status;
      this.stream.once("wantTrailers", () => {
        const s = this.statusToSend!;
        this.stream.sendTrailers(statusTrailers(s.code, s.details, s.metadata));
        this.notifyCancelled();
      });
      this.stream.end();
      return;
    }
    this.stream.respond(trailersOnlyHeaders(status.code, status.details, status.metadata), TRAILERS_ONLY_OPTIONS);
    this.notifyCancelled();
  }

  /** grpc-js's checkCancelled: the stream may be gone before its 'close'. */
  private checkOver(): boolean {
    if (!this.over && (this.stream.destroyed || this.stream.closed)) this.notifyCancelled();
    return this.over;
  }

  /**
   * @internal (also the stream's 'close' listener) grpc-js's notifyOnCancel: the call is over;
   * on the next tick the handler hears 'cancelled' and the call is destroyed.
   */
  notifyCancelled(): void {
    if (this.over) return;
    this.over = true;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.reader.clear();
    // As grpc-js: the rest of the request is drained.
    this.stream.resume();
    process.nextTick(() => {
      this.cancelled = true;
      super.emit("cancelled", "cancelled");
      this.destroy();
    });
  }
}

/** A read queue's entry: a message (`raw` until it is decoded into `value`), or END. */
interface ReadEntry {
  raw: Buffer | undefined;
  value: unknown;
}

/** The half-close's place in the read queue. */
const END: ReadEntry = { raw: undefined, value: undefined };
