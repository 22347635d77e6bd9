/**
 * The lean paths (lean-unary.ts, lean-stream.ts) on pkg/h2's streams: `LeanH2Stream` presents,
 * over an `H2Stream`, the part of node's ServerHttp2Stream the lean paths use, so the same takers
 * serve both node:http2's sessions and our own HTTP/2 connections.
 *
 * Contract, for what the lean paths use (and as node's ServerHttp2Stream does it):
 * - `respond(headers, { waitForTrailers })` / `respond(headers, { endStream: true })` (a
 *   trailers-only answer); `write(data, cb)`; `end(data?)`, after which, when the response waits
 *   for trailers, 'wantTrailers' is emitted (synchronously here) and `sendTrailers(headers)` ends
 *   the stream; `close(code)` resets it; `pause()` / `resume()`;
 * - events 'data' (a chunk), 'end' (the client's half-close), 'aborted' (closed by a reset before
 *   the client's half-close) and 'close', with `this` the stream; 'data' and 'end' come
 *   synchronously from the connection's socket handler, 'close' in a setImmediate batched per
 *   connection (never in a nextTick per stream), after `closed` / `destroyed` became true;
 * - a write callback is called in that batch when the frame was queued under the high-water mark,
 *   else when the queue drained (or, with an error, when the stream closed first);
 * - `rstCode`, `closed`, `destroyed`, `id`, `session.socket` (peer address and TLS socket for
 *   lean-path.ts's connection facts; one session object per connection).
 * Headers are encoded with pkg/h2's HPACK (no dynamic table); the constant response headers and
 * OK trailers are encoded once. Unlike node, no `date` header is added (gRPC clients ignore it).
 */
import type http2 from "node:http2";
import type { Socket } from "node:net";
import { encodeHeaderBlock } from "../../pkg/h2/hpack.js";
import { H2_NO_ERROR } from "../../pkg/h2/frame-codec.js";
import type { H2Stream } from "../../pkg/h2/h2-connection.js";
import { OK_TRAILERS, RESPONSE_HEADERS } from "./lean-path.js";

/** The HPACK block for node-style outgoing headers: pseudo-fields first, names lower case. */
export function encodeOutgoingHeaders(headers: http2.OutgoingHttpHeaders): Buffer {
  const pseudo: string[] = [];
  const regular: string[] = [];
  for (const key of Object.keys(headers)) {
    const value = headers[key];
    if (value === undefined || value === null) continue;
    const name = key.toLowerCase();
    const out = name.charCodeAt(0) === 58 /* ':' */ ? pseudo : regular;
    if (Array.isArray(value)) for (const v of value) out.push(name, String(v));
    else out.push(name, String(value));
  }
  return encodeHeaderBlock(pseudo.length === 0 ? regular : pseudo.concat(regular));
}

const DEFAULT_RESPONSE: http2.OutgoingHttpHeaders = { ":status": 200 };
const RESPONSE_BLOCK = encodeOutgoingHeaders(RESPONSE_HEADERS);
const OK_TRAILERS_BLOCK = encodeOutgoingHeaders(OK_TRAILERS);

function blockOf(headers: http2.OutgoingHttpHeaders): Buffer {
  if (headers === RESPONSE_HEADERS) return RESPONSE_BLOCK;
  if (headers === OK_TRAILERS) return OK_TRAILERS_BLOCK;
  return encodeOutgoingHeaders(headers);
}

/** What a connection's streams share: their `session` and the batch of deferred calls. */
export class LeanH2Session {
  private readonly deferred: Array<() => void> = [];
  private scheduled = false;
  private readonly run = (): void => {
    const list = this.deferred;
    // calls deferred by these calls join this batch
    try {
      for (let i = 0; i < list.length; i++) list[i]!();
    } finally {
      list.length = 0;
      this.scheduled = false;
    }
  };

  /** `socket` is the connection's (for the peer address and the TLS socket). */
  constructor(readonly socket: Socket) {}

  /**
   * @internal Calls `fn` in this connection's next batch: a setImmediate, which runs after the
   * connection's own (scheduled earlier) wrote the turn's frames to the socket, as node calls
   * write callbacks and emits 'close' once nghttp2 has sent the frames.
   */
  defer(fn: () => void): void {
    this.deferred.push(fn);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }
}

const ADAPTER = Symbol("etcd-ts.lean-h2-stream");

interface TaggedStream extends H2Stream {
  [ADAPTER]?: LeanH2Stream;
}

function onH2Data(this: TaggedStream, chunk: Buffer): void {
  this[ADAPTER]!.emit("data", chunk);
}

function onH2End(this: TaggedStream): void {
  this[ADAPTER]!.emit("end");
}

function onH2Drain(this: TaggedStream): void {
  this[ADAPTER]!.drained();
}

function onH2Close(this: TaggedStream, code: number): void {
  this[ADAPTER]!.closedWith(code);
}

function streamClosedError(): Error & { code: string } {
  return Object.assign(new Error("The stream was destroyed"), { code: "ERR_STREAM_DESTROYED" });
}

type WriteCallback = (err?: Error | null) => void;
type Listener = (this: LeanH2Stream, arg?: unknown) => void;

/** One registered listener. */
interface ListenerEntry {
  readonly event: string;
  readonly fn: Listener;
  readonly once: boolean;
}

/** Removes `a[i]` (nothing when i < 0), keeping the order: for a handful of entries a loop costs less than splice. */
function removeAt<T>(a: T[], i: number): void {
  if (i < 0) return;
  for (let j = i + 1; j < a.length; j++) a[j - 1] = a[j]!;
  a.pop();
}

/**
 * The part of EventEmitter the lean paths use (on, once, off, emit with at most one argument),
 * with EventEmitter's order and its snapshot at emit (a listener removed during an emit is still
 * called by it, one added is not). A stream has a handful of listeners; an EventEmitter costs,
 * per stream, its events object and, per once(), a bound wrapper and its state.
 */
class StreamEvents {
  private readonly entries: ListenerEntry[] = [];

  on(event: string, fn: Listener, once = false): void {
    this.entries.push({ event, fn, once });
  }

  off(event: string, fn: Listener): void {
    const es = this.entries;
    // As EventEmitter: the most recently added matching listener goes.
    for (let i = es.length - 1; i >= 0; i--) {
      if (es[i]!.event === event && es[i]!.fn === fn) {
        removeAt(es, i);
        return;
      }
    }
  }

  emit(target: LeanH2Stream, event: string, arg?: unknown): boolean {
    const es = this.entries;
    let first: ListenerEntry | undefined;
    let more: ListenerEntry[] | undefined;
    for (const e of es) {
      if (e.event !== event) continue;
      if (first === undefined) first = e;
      else (more ??= [first]).push(e);
    }
    if (first === undefined) return false;
    if (more === undefined) {
      if (first.once) removeAt(es, es.indexOf(first));
      first.fn.call(target, arg);
      return true;
    }
    for (const e of more) if (e.once) removeAt(es, es.indexOf(e));
    for (const e of more) e.fn.call(target, arg);
    return true;
  }
}

/** Node's ServerHttp2Stream, the lean paths' subset of it, over an H2Stream (see the file comment). */
export class LeanH2Stream {
  /** The request's headers as node gives them (repeated names joined with ", "). */
  readonly headers: http2.IncomingHttpHeaders;
  private waitForTrailers = false;
  private responded = false;
  private ending = false;
  /** Write callbacks waiting for the stream's queue to drain. */
  private drainCallbacks: WriteCallback[] | undefined;
  private readonly events = new StreamEvents();

  constructor(
    readonly h2: H2Stream,
    readonly session: LeanH2Session,
  ) {
    this.headers = h2.headersObject();
    (h2 as TaggedStream)[ADAPTER] = this;
    h2.onData = onH2Data;
    h2.onEnd = onH2End;
    h2.onDrain = onH2Drain;
    h2.onClose = onH2Close;
  }

  get id(): number {
    return this.h2.id;
  }

  on(event: string, listener: Listener): this {
    this.events.on(event, listener);
    return this;
  }

  once(event: string, listener: Listener): this {
    this.events.on(event, listener, true);
    return this;
  }

  off(event: string, listener: Listener): this {
    this.events.off(event, listener);
    return this;
  }

  removeListener(event: string, listener: Listener): this {
    return this.off(event, listener);
  }

  /** Calls the listeners of `event` with `arg` (the events here carry at most one). */
  emit(event: string, arg?: unknown): boolean {
    return this.events.emit(this, event, arg);
  }

  get closed(): boolean {
    return this.h2.closed;
  }

  get destroyed(): boolean {
    return this.h2.closed;
  }

  get rstCode(): number | undefined {
    return this.h2.rstCode;
  }

  get headersSent(): boolean {
    return this.responded;
  }

  respond(headers: http2.OutgoingHttpHeaders = {}, options?: http2.ServerStreamResponseOptions): void {
    if (this.responded || this.h2.closed) return;
    this.responded = true;
    this.waitForTrailers = options?.waitForTrailers === true;
    this.h2.respond(blockOf(headers), options?.endStream === true);
  }

  write(data: Uint8Array, encodingOrCb?: unknown, cb?: WriteCallback): boolean {
    const callback = typeof encodingOrCb === "function" ? (encodingOrCb as WriteCallback) : cb;
    const h2 = this.h2;
    if (h2.closed || this.ending) {
      if (callback !== undefined) this.session.defer(() => callback(streamClosedError()));
      return false;
    }
    if (!this.responded) this.respond(DEFAULT_RESPONSE); // as node: a write before respond sends default headers
    const ok = h2.write(data);
    if (callback !== undefined) {
      if (ok) this.session.defer(callback);
      else if (h2.closed) this.session.defer(() => callback(streamClosedError()));
      else (this.drainCallbacks ??= []).push(callback);
    }
    return ok;
  }

  end(data?: Uint8Array | (() => void), cb?: () => void): this {
    if (typeof data === "function") {
      cb = data;
      data = undefined;
    }
    if (this.ending) return this;
    if (data !== undefined && data.length > 0) this.write(data);
    this.ending = true;
    if (cb !== undefined) this.session.defer(cb);
    const h2 = this.h2;
    if (h2.closed) return this;
    if (!this.responded) this.respond(DEFAULT_RESPONSE);
    if (this.waitForTrailers) this.emit("wantTrailers");
    else if (!h2.ended) h2.end();
    return this;
  }

  sendTrailers(headers: http2.OutgoingHttpHeaders): void {
    const h2 = this.h2;
    if (h2.closed || h2.ended) return;
    h2.end(blockOf(headers));
  }

  close(code: number = H2_NO_ERROR, callback?: () => void): void {
    if (callback !== undefined) this.once("close", callback);
    this.h2.reset(code);
  }

  pause(): this {
    this.h2.pause();
    return this;
  }

  resume(): this {
    this.h2.resume();
    return this;
  }

  /** @internal The H2Stream's queue fell below its high-water mark. */
  drained(): void {
    const list = this.drainCallbacks;
    if (list === undefined) return;
    this.drainCallbacks = undefined;
    for (const cb of list) cb();
  }

  /** @internal The H2Stream closed with `code`. */
  closedWith(code: number): void {
    const pending = this.drainCallbacks;
    this.drainCallbacks = undefined;
    const aborted = code !== H2_NO_ERROR && !this.h2.remoteEnded;
    this.session.defer(() => {
      if (pending !== undefined) for (const cb of pending) cb(streamClosedError());
      if (aborted) this.emit("aborted");
      this.emit("close");
    });
  }
}
