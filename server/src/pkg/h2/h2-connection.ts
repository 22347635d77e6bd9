/**
 * The server side of one HTTP/2 connection (RFC 9113) over a socket, with a small stream API for
 * gRPC-style handlers: no Duplex per stream, no nextTick per stream; a stream's events are
 * plain callbacks called synchronously from the socket's 'data' handler (or from the
 * application's own calls).
 *
 * What it does:
 * - checks the client preface (§3.4), sends our SETTINGS (MAX_CONCURRENT_STREAMS,
 *   INITIAL_WINDOW_SIZE, MAX_HEADER_LIST_SIZE) and raises the connection window; the peer's first
 *   frame must be SETTINGS; SETTINGS are acknowledged, PINGs answered; ours must be acknowledged
 *   within settingsAckTimeoutMs (SETTINGS_TIMEOUT);
 * - opens streams on HEADERS (odd, increasing ids; §5.1.1), decodes field blocks with HPACK (a
 *   decoding error is COMPRESSION_ERROR for the connection), checks them (§8.2, §8.3: lower-case
 *   names, pseudo-fields first and known, no connection-specific fields), refuses streams past
 *   MAX_CONCURRENT_STREAMS (RST_STREAM REFUSED_STREAM) and lists past MAX_HEADER_LIST_SIZE
 *   (RST_STREAM ENHANCE_YOUR_CALM);
 * - inbound flow control (§5.2, §6.9): both windows are credited as data is consumed (delivered
 *   to onData while the stream is not paused, or dropped), so a paused stream holds at most its
 *   window (INITIAL_WINDOW_SIZE octets) and all paused streams together at most the connection's;
 * - outbound flow control: DATA never exceeds the peer's connection and stream windows or its
 *   MAX_FRAME_SIZE; SETTINGS_INITIAL_WINDOW_SIZE changes shift every stream's window (§6.9.2);
 *   data that cannot go is queued per stream; write() returns false past the stream's high-water
 *   mark and onDrain is called when the queue falls below it again; a queue past its hard bound
 *   resets the stream (INTERNAL_ERROR);
 * - batching: frames produced in one event-loop turn go out in one socket write per connection,
 *   at the loop's next pass (setImmediate, one for all connections), except that a turn which
 *   completes a connection's last open stream writes at its end (process.nextTick): nothing
 *   could join that answer, and it need not wait out the loop's next pass over I/O (at one
 *   request at a time, about 40 us of each round trip). Every connection's output of that turn
 *   goes then, in the order it was produced (a watch event before the answer to the put behind
 *   it). A PING's ack waits one pass (grpc-go's BDP pings come just ahead of its next request,
 *   served first);
 *   while the socket is congested (write returned false until 'drain'), DATA waits in the queues;
 * - errors: a connection error sends GOAWAY with its code and closes the socket (the listening
 *   server is not affected); a stream error sends RST_STREAM; a peer that keeps sending while our
 *   output to it piles up (16 MiB), or that resets more unanswered streams a second than
 *   peerResetsPerSecondMax (rapid reset), or that pings more often than its pingPolicy allows
 *   (GOAWAY debug data "too_many_pings", as grpc-go), is cut off with ENHANCE_YOUR_CALM; close()
 *   is a graceful GOAWAY: open streams finish, new ones are ignored, the socket ends when the last
 *   one closes.
 *
 * For code written against node's ServerHttp2Stream (the lean paths): respond(headers,
 * { waitForTrailers }) + end(frame) + 'wantTrailers' → sendTrailers(t) becomes respond(block),
 * write(frame), end(trailerBlock) (blocks pre-encoded with encodeHeaderBlock); a trailers-only
 * answer is respond(block, true); 'data' / 'end' / 'close' are onData / onEnd / onClose; a
 * write(frame, cb) whose cb paces the next write becomes: go on at once when write() returned
 * true, else at onDrain; rstCode, pause() / resume() keep their meaning;
 * `destroyed || closed` is `closed`; session.socket is stream.socket; the request headers are
 * stream.headers (flat) or headersObject().
 *
 * Not done: server push, priorities (PRIORITY is parsed and ignored), content-length checks,
 * strict STREAM_CLOSED errors for frames on streams closed long ago (they
 * are ignored, as frames in flight after our RST_STREAM must be).
 */
import type { Socket } from "node:net";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME_SIZE,
  FrameParser,
  type FrameSink,
  FrameWriter,
  H2ConnectionError,
  H2StreamError,
  H2_CANCEL,
  H2_COMPRESSION_ERROR,
  H2_ENHANCE_YOUR_CALM,
  H2_FLOW_CONTROL_ERROR,
  H2_INTERNAL_ERROR,
  H2_NO_ERROR,
  H2_PROTOCOL_ERROR,
  H2_REFUSED_STREAM,
  H2_SETTINGS_TIMEOUT,
  H2_STREAM_CLOSED,
  MAX_FRAME_SIZE_LIMIT,
  MAX_WINDOW,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  SETTINGS_MAX_HEADER_LIST_SIZE,
} from "./frame-codec.js";
import { HpackDecoder, HpackError } from "./hpack.js";
import { OrderedSlots } from "../ordered-slots.js";

/** The protocol's default window (§6.9.2), before any SETTINGS or WINDOW_UPDATE. */
const DEFAULT_WINDOW = 65535;
/** Output gathered in one turn past this is treated as congestion: DATA waits in the queues. */
const WRITER_BYTES_MAX = 256 * 1024;
/**
 * Output waiting in the socket and the writer past which a peer that sends but does not read
 * (PING or SETTINGS floods, requests whose answers pile up) is cut off with ENHANCE_YOUR_CALM.
 * DATA never gets there: it waits in the stream queues while the socket is congested.
 */
const OUTPUT_BYTES_MAX = 16 << 20;
/** Above this a turn's small buffers are written with cork/uncork instead of one copy. */
const CONCAT_BYTES_MAX = 64 * 1024;

export interface H2ConnectionOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise and enforce. Default 1000. */
  maxConcurrentStreams?: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE we advertise: each stream's inbound window. Default 1 MiB. */
  initialWindowSize?: number;
  /** The connection's inbound window (raised by WINDOW_UPDATE at start). Default 4 MiB. */
  connectionWindowSize?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce (§6.5.2 accounting). Default 64 KiB. */
  maxHeaderListSize?: number;
  /** A stream's queued outbound octets at which write() starts returning false. Default 64 KiB. */
  streamWriteHighWaterBytes?: number;
  /** A stream's queued outbound octets past which it is reset (INTERNAL_ERROR). Default 16 MiB. */
  streamWriteQueueBytesMax?: number;
  /**
   * Streams the peer may reset before we answered them, per second, before the connection is cut
   * off with ENHANCE_YOUR_CALM (a rapid-reset flood makes us start work it never waits for).
   * Default 1000.
   */
  peerResetsPerSecondMax?: number;
  /** How long the peer has to acknowledge our SETTINGS (SETTINGS_TIMEOUT past it, §6.5.3). Default 10000. */
  settingsAckTimeoutMs?: number;
  /** How long a connection that failed waits for the peer to close before destroying. Default 1000. */
  closeLingerMs?: number;
  /**
   * A policy on the peer's PINGs, as gRPC servers enforce one (grpc-go's keepalive
   * EnforcementPolicy): a PING that follows the previous one sooner than `minTimeMs` (or, with no
   * stream open and `permitWithoutStream` false, sooner than two hours) is a strike, unless we
   * sent headers or data since; past two strikes the connection is cut off with GOAWAY
   * ENHANCE_YOUR_CALM "too_many_pings". Absent: PINGs are only answered.
   */
  pingPolicy?: H2PingPolicy;
}

/** A policy on the peer's PINGs (see H2ConnectionOptions.pingPolicy). */
export interface H2PingPolicy {
  minTimeMs: number;
  permitWithoutStream: boolean;
}

/** grpc-go's maxPingStrikes and defaultPingTimeout. */
const PING_STRIKES_MAX = 2;
const PING_WITHOUT_STREAMS_MIN_MS = 2 * 3600 * 1000;

/**
 * A peer's PINGs counted against a ping policy, as grpc-go's handlePing counts them: a PING sooner
 * than the minimum time after the previous one (two hours with no stream open, unless the policy
 * permits pings without streams) is a strike, none is when the server sent headers or data since
 * the previous PING, and the third strike is one too many. Shared by pkg/h2's connections and the
 * node:http2 ones (api/v3rpc/node-h2-pings.ts).
 */
export class PingStrikes {
  private lastPingAt = -Infinity;
  private strikes = 0;

  constructor(private readonly policy: H2PingPolicy) {}

  /**
   * Counts a PING arriving at `nowMs` with `openStreams` open; `answeredSince`: headers or data
   * went out since the previous one. True when the connection is to be cut off (GOAWAY
   * ENHANCE_YOUR_CALM "too_many_pings").
   */
  ping(nowMs: number, openStreams: number, answeredSince: boolean): boolean {
    const last = this.lastPingAt;
    this.lastPingAt = nowMs;
    if (answeredSince) {
      this.strikes = 0;
      return false;
    }
    const minMs = openStreams < 1 && !this.policy.permitWithoutStream ? PING_WITHOUT_STREAMS_MIN_MS : this.policy.minTimeMs;
    if (nowMs - last < minMs) this.strikes++;
    return this.strikes > PING_STRIKES_MAX;
  }
}

/** The application's side of a connection. */
export interface H2ConnectionHandlers {
  /**
   * A stream's request headers are complete. Set the stream's callbacks here, synchronously: its
   * data follows right after this returns.
   */
  onStream(stream: H2Stream): void;
  /** The connection is gone (socket closed); every stream got onClose before. */
  onClose?(): void;
  /** A connection error, ours or the peer's socket's, for logging; onClose follows. */
  onError?(err: Error): void;
  /** The peer sent GOAWAY. */
  onGoaway?(code: number, lastStreamId: number): void;
  /** A PING arrived (the ACK is sent already) or our PING was acknowledged. */
  onPing?(ack: boolean): void;
}

export interface H2ConnectionDeps {
  /** A connected socket (TCP, or TLS after ALPN chose "h2"); the connection takes its events. */
  socket: Socket;
  handlers: H2ConnectionHandlers;
}

interface PendingEnd {
  trailers: Uint8Array | undefined;
}

/**
 * One request stream. The application sets the callbacks in onStream; all of them run
 * synchronously (never after a nextTick of their own). Writes after the stream closed are
 * dropped (write returns false); calling respond twice, or write/end before respond or after
 * end, throws (programming errors).
 */
export class H2Stream {
  /** The request's fields, [name0, value0, ...], latin1, pseudo-fields first. */
  readonly headers: string[];
  /** The request trailers, when the peer sent any. */
  trailers: string[] | undefined = undefined;
  /** A DATA payload, padding removed; a view the callback may keep. */
  onData: ((chunk: Buffer) => void) | undefined = undefined;
  /** The peer ended its side (END_STREAM); after the data it had sent. */
  onEnd: (() => void) | undefined = undefined;
  /** The stream closed: 0 (NO_ERROR) when both sides ended, else the RST_STREAM code (ours or the peer's). */
  onClose: ((code: number) => void) | undefined = undefined;
  /** The outbound queue fell below the high-water mark after write() returned false. */
  onDrain: (() => void) | undefined = undefined;
  /** The code the stream closed with (see onClose); undefined while open. */
  rstCode: number | undefined = undefined;
  closed = false;
  /** Whether the peer ended its side. */
  remoteEnded = false;
  /** Whether our END_STREAM went out (or was queued after the data). */
  ended = false;
  headersSent = false;

  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** @internal */ recvUnacked = 0;
  /** @internal */ paused = false;
  /** @internal */ inbound: Buffer[] | undefined = undefined;
  /** @internal */ inboundBytes = 0;
  /** @internal */ inboundEnd = false;
  /** @internal */ queue: Uint8Array[] = [];
  /** @internal */ queueHead = 0;
  /** @internal */ queuedBytes = 0;
  /** @internal */ pendingEnd: PendingEnd | undefined = undefined;
  /** @internal */ needDrain = false;

  constructor(
    readonly connection: H2Connection,
    readonly id: number,
    headers: string[],
    sendWindow: number,
    recvWindow: number,
  ) {
    this.headers = headers;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The first value of field `name` (lower case), or undefined. */
  header(name: string): string | undefined {
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
    return undefined;
  }

  /** The fields as a plain object; repeated names are joined with ", " (as node:http2 does). */
  headersObject(): Record<string, string> {
    const out: Record<string, string> = {};
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      const prev = out[name];
      out[name] = prev === undefined ? h[i + 1]! : `${prev}, ${h[i + 1]!}`;
    }
    return out;
  }

  /** The socket the stream's connection runs on. */
  get socket(): Socket {
    return this.connection.socket;
  }

  /**
   * Sends the response's field block (HPACK-encoded, e.g. a constant from encodeHeaderBlock);
   * `endStream` makes it a headers-only (gRPC trailers-only) response. Dropped if closed.
   */
  respond(block: Uint8Array, endStream = false): void {
    if (this.headersSent) throw new Error(`h2 stream ${this.id}: respond called twice`);
    this.headersSent = true;
    if (this.closed) return;
    this.connection.sendHeaders(this, block, endStream);
  }

  /**
   * Queues `data` as DATA frames (sent as the windows allow). Returns false when the stream's
   * queue is at or past its high-water mark (wait for onDrain) or the stream is closed.
   * The caller must not change `data` afterwards.
   */
  write(data: Uint8Array): boolean {
    if (!this.headersSent) throw new Error(`h2 stream ${this.id}: write before respond`);
    if (this.ended) throw new Error(`h2 stream ${this.id}: write after end`);
    if (this.closed) return false;
    return this.connection.sendData(this, data);
  }

  /** Ends our side: with `trailers` (an HPACK block) as a final HEADERS, else an empty DATA. */
  end(trailers?: Uint8Array): void {
    if (!this.headersSent) throw new Error(`h2 stream ${this.id}: end before respond`);
    if (this.ended) throw new Error(`h2 stream ${this.id}: end called twice`);
    this.ended = true;
    if (this.closed) return;
    this.connection.sendEnd(this, trailers);
  }

  /** Resets the stream with `code` (default CANCEL); onClose(code) follows synchronously. */
  reset(code: number = H2_CANCEL): void {
    if (this.closed) return;
    this.connection.resetStream(this, code);
  }

  /** Stops delivering data (it is buffered, at most a window's worth) and crediting the window. */
  pause(): void {
    this.paused = true;
  }

  /** Delivers what was buffered while paused, then carries on. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.connection.deliverBuffered(this);
  }

  /** Octets written but not yet sent (waiting for windows or the socket). */
  get writableLength(): number {
    return this.queuedBytes;
  }
}

function protocolError(message: string): H2ConnectionError {
  return new H2ConnectionError(H2_PROTOCOL_ERROR, message);
}

const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
/** The request pseudo-fields (§8.3.1), each with a bit of its own for the repeat check. */
const REQUEST_PSEUDO = new Map([[":method", 1], [":scheme", 2], [":path", 4], [":authority", 8]]);

/**
 * Field names found free of upper case, so that a name seen before is not scanned again: a
 * client sends the same dozen names on every request (as the same strings, when they come from
 * HPACK's tables). Bounded; emptied when full.
 */
const lowerCaseNames = new Set<string>();
const LOWER_CASE_NAMES_MAX = 512;

function hasUpperCase(name: string): boolean {
  if (lowerCaseNames.has(name)) return false;
  for (let c = 0; c < name.length; c++) {
    const ch = name.charCodeAt(c);
    if (ch >= 0x41 && ch <= 0x5a) return true;
  }
  if (lowerCaseNames.size >= LOWER_CASE_NAMES_MAX) lowerCaseNames.clear();
  lowerCaseNames.add(name);
  return false;
}

/** §8.2, §8.3: a request's fields are well-formed; returns why not, or undefined. */
function malformedRequest(fields: readonly string[]): string | undefined {
  let regular = false;
  let method: string | undefined;
  let scheme = false;
  let path = false;
  let seen = 0;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.length === 0) return "empty field name";
    if (hasUpperCase(name)) return `upper-case field name ${name}`;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-field ${name} after a regular field`;
      const bit = REQUEST_PSEUDO.get(name);
      if (bit === undefined) return `unknown pseudo-field ${name}`;
      if ((seen & bit) !== 0) return `repeated pseudo-field ${name}`;
      seen |= bit;
      const value = fields[i + 1]!;
      if (name === ":method") method = value;
      else if (name === ":scheme") scheme = true;
      else if (name === ":path") {
        if (value.length === 0) return "empty :path";
        path = true;
      }
    } else {
      regular = true;
      if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
      if (name === "te" && fields[i + 1] !== "trailers") return "te other than trailers";
    }
  }
  if (method === undefined) return "no :method";
  if (method !== "CONNECT" && (!scheme || !path)) return "no :scheme or :path";
  return undefined;
}

/**
 * Connections with output waiting, in the order they first produced it since their last write.
 * Written together at the loop's next pass (one setImmediate for all), or at the end of a turn
 * that completes a connection's last open stream: then every connection's output of that turn
 * goes, in order, so that a watch event notified before a put's answer is not written after it.
 */
let outputWaiting: H2Connection[] = [];
let passFlushScheduled = false;
let turnFlushScheduled = false;

function flushWaitingOutput(): void {
  const batch = outputWaiting;
  outputWaiting = [];
  for (const c of batch) c.flushWaiting();
}

function flushAtPass(): void {
  passFlushScheduled = false;
  flushWaitingOutput();
}

function flushAtTurnEnd(): void {
  turnFlushScheduled = false;
  flushWaitingOutput();
}

/**
 * One HTTP/2 server connection on `deps.socket` (plain TCP or TLS after ALPN "h2"). It takes the
 * socket's 'data', 'drain', 'close' and 'error' events from construction on.
 */
export class H2Connection implements FrameSink {
  private readonly maxConcurrentStreams: number;
  private readonly initialWindowSize: number;
  private readonly connectionWindowSize: number;
  private readonly maxHeaderListSize: number;
  private readonly highWaterBytes: number;
  private readonly queueBytesMax: number;
  private readonly closeLingerMs: number;
  private readonly peerResetsPerSecondMax: number;
  private peerResets = 0;
  private settingsTimer: NodeJS.Timeout | undefined;
  private peerResetsSecond = 0;

  private readonly parser: FrameParser;
  private readonly writer = new FrameWriter();
  private readonly decoder = new HpackDecoder();
  private readonly streams = new OrderedSlots<number, H2Stream>();
  /** Streams with queued DATA waiting for the connection window or the socket. */
  private readonly blocked = new Set<H2Stream>();

  private prefaceFill = 0;
  private settingsReceived = false;
  private settingsAcked = false;
  private lastStreamId = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  /** The peer's advisory SETTINGS_MAX_HEADER_LIST_SIZE (unbounded when undefined). */
  peerMaxHeaderListSize: number | undefined = undefined;
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvWindow = DEFAULT_WINDOW;
  private connRecvUnacked = 0;
  private continuation: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | undefined = undefined;
  private flushScheduled = false;
  private socketBlocked = false;
  private goawaySent = false;
  private failed = false;
  private socketClosed = false;
  private readonly pingStrikes: PingStrikes | undefined;
  /** We sent headers or data since the peer's last PING: its next one is no strike. */
  private sentSincePing = false;

  /** The socket the connection runs on. */
  readonly socket: Socket;
  private readonly handlers: H2ConnectionHandlers;

  constructor(options: H2ConnectionOptions, deps: H2ConnectionDeps) {
    this.socket = deps.socket;
    this.handlers = deps.handlers;
    const socket = deps.socket;
    this.maxConcurrentStreams = options.maxConcurrentStreams ?? 1000;
    this.initialWindowSize = options.initialWindowSize ?? 1 << 20;
    this.connectionWindowSize = options.connectionWindowSize ?? 4 << 20;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 65536;
    this.highWaterBytes = options.streamWriteHighWaterBytes ?? 65536;
    this.queueBytesMax = options.streamWriteQueueBytesMax ?? 16 << 20;
    this.closeLingerMs = options.closeLingerMs ?? 1000;
    this.peerResetsPerSecondMax = options.peerResetsPerSecondMax ?? 1000;
    this.pingStrikes = options.pingPolicy === undefined ? undefined : new PingStrikes(options.pingPolicy);
    if (this.initialWindowSize > MAX_WINDOW || this.connectionWindowSize > MAX_WINDOW) throw new RangeError("h2: window above 2^31-1");
    this.parser = new FrameParser(this);

    this.writer.settings([
      SETTINGS_MAX_CONCURRENT_STREAMS,
      this.maxConcurrentStreams,
      SETTINGS_INITIAL_WINDOW_SIZE,
      this.initialWindowSize,
      SETTINGS_MAX_HEADER_LIST_SIZE,
      this.maxHeaderListSize,
      SETTINGS_ENABLE_PUSH,
      0,
    ]);
    if (this.connectionWindowSize > DEFAULT_WINDOW) {
      this.writer.windowUpdate(0, this.connectionWindowSize - DEFAULT_WINDOW);
      this.connRecvWindow = this.connectionWindowSize;
    }
    this.scheduleFlush();
    this.settingsTimer = setTimeout(() => {
      this.settingsTimer = undefined;
      this.fail(new H2ConnectionError(H2_SETTINGS_TIMEOUT, "SETTINGS not acknowledged"));
    }, options.settingsAckTimeoutMs ?? 10_000);
    this.settingsTimer.unref();

    // frames of one turn go out in one write: Nagle's delay would only add latency
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onSocketData(chunk));
    socket.on("drain", () => {
      this.socketBlocked = false;
      this.scheduleFlush();
    });
    socket.on("error", (err: Error) => this.handlers.onError?.(err));
    socket.on("close", () => this.onSocketClose());
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Sends a PING (an 8-octet payload); handlers.onPing(true) reports the ACK. */
  ping(opaque: Uint8Array = Buffer.alloc(8)): void {
    if (this.failed || this.socketClosed) return;
    this.writer.ping(false, opaque);
    this.scheduleFlush();
  }

  /**
   * Graceful close: GOAWAY(NO_ERROR) with the last stream id seen; streams open so far finish,
   * later ones are ignored; the socket ends when the last stream closes.
   */
  close(): void {
    if (this.goawaySent || this.failed || this.socketClosed) return;
    this.goawaySent = true;
    this.writer.goaway(this.lastStreamId, H2_NO_ERROR, "");
    this.scheduleFlush();
    this.maybeFinish();
  }

  /** Closes at once: every stream gets onClose(CANCEL), the socket is destroyed. */
  destroy(): void {
    this.closeAllStreams(H2_CANCEL);
    this.socket.destroy();
  }

  // ------------------------------------------------------------------ input

  private onSocketData(chunk: Buffer): void {
    if (this.failed) return;
    try {
      if (this.prefaceFill < CLIENT_PREFACE.length) {
        const n = Math.min(CLIENT_PREFACE.length - this.prefaceFill, chunk.length);
        if (chunk.compare(CLIENT_PREFACE, this.prefaceFill, this.prefaceFill + n, 0, n) !== 0) {
          throw protocolError("bad client preface");
        }
        this.prefaceFill += n;
        if (n === chunk.length) return;
        chunk = chunk.subarray(n);
      }
      this.parser.push(chunk);
      if (this.socket.writableLength + this.writer.bytes > OUTPUT_BYTES_MAX) {
        throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, "peer does not read what it asks for");
      }
    } catch (err) {
      if (err instanceof H2ConnectionError) this.fail(err);
      else if (err instanceof HpackError) this.fail(new H2ConnectionError(H2_COMPRESSION_ERROR, err.message));
      else {
        // an application callback threw: the connection's state is unknown from here
        this.fail(new H2ConnectionError(H2_INTERNAL_ERROR, "internal error"));
        this.handlers.onError?.(err as Error);
      }
    }
  }

  /** Every frame but SETTINGS and CONTINUATION: the start and CONTINUATION rules (§3.4, §6.10). */
  private guard(): void {
    if (!this.settingsReceived) throw protocolError("first frame is not SETTINGS");
    if (this.continuation !== undefined) throw protocolError("frame inside a field block");
  }

  onData(streamId: number, endStream: boolean, data: Buffer, flowLength: number): void {
    this.guard();
    if (flowLength > this.connRecvWindow) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, "DATA past the connection window");
    this.connRecvWindow -= flowLength;
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) throw protocolError(`DATA on idle stream ${streamId}`);
      this.connConsumed(flowLength);
      return; // closed: frames in flight after a reset are ignored
    }
    if (stream.remoteEnded || flowLength > stream.recvWindow) {
      this.connConsumed(flowLength);
      if (stream.remoteEnded) throw new H2StreamError(streamId, H2_STREAM_CLOSED, "DATA after END_STREAM");
      throw new H2StreamError(streamId, H2_FLOW_CONTROL_ERROR, "DATA past the stream window");
    }
    stream.recvWindow -= flowLength;
    if (flowLength > data.length) {
      // padding is consumed on arrival
      this.connConsumed(flowLength - data.length);
      this.consumed(stream, flowLength - data.length);
    }
    if (stream.paused || stream.inbound !== undefined) {
      // held: both windows are credited when the application takes it (resume)
      if (data.length > 0) {
        (stream.inbound ??= []).push(data);
        stream.inboundBytes += data.length;
      }
      if (endStream) stream.inboundEnd = true;
      return;
    }
    if (data.length > 0) {
      this.connConsumed(data.length);
      stream.onData?.(data);
      if (stream.closed) return;
      this.consumed(stream, data.length);
    }
    if (endStream) this.remoteEnd(stream);
  }

  /** Credits the connection window for `n` octets taken by the application or dropped. */
  private connConsumed(n: number): void {
    this.connRecvUnacked += n;
    if (this.connRecvUnacked >= this.connectionWindowSize / 2) {
      this.writer.windowUpdate(0, this.connRecvUnacked);
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
      this.scheduleFlush();
    }
  }

  /** @internal Delivers a resumed stream's buffered data. */
  deliverBuffered(stream: H2Stream): void {
    const inbound = stream.inbound;
    if (inbound === undefined) return;
    while (inbound.length > 0 && !stream.paused && !stream.closed) {
      const data = inbound.shift()!;
      stream.inboundBytes -= data.length;
      this.connConsumed(data.length);
      stream.onData?.(data);
      if (!stream.closed) this.consumed(stream, data.length);
    }
    if (stream.paused || stream.closed) return;
    stream.inbound = undefined;
    if (stream.inboundEnd) {
      stream.inboundEnd = false;
      this.remoteEnd(stream);
    }
    this.scheduleFlush();
  }

  private consumed(stream: H2Stream, n: number): void {
    stream.recvUnacked += n;
    if (stream.recvUnacked >= this.initialWindowSize / 2 && !stream.remoteEnded) {
      this.writer.windowUpdate(stream.id, stream.recvUnacked);
      stream.recvWindow += stream.recvUnacked;
      stream.recvUnacked = 0;
      this.scheduleFlush();
    }
  }

  onHeaders(streamId: number, endStream: boolean, endHeaders: boolean, fragment: Buffer, dependency: number): void {
    this.guard();
    if (!endHeaders) {
      this.continuation = { streamId, endStream, parts: [Buffer.from(fragment)], bytes: fragment.length };
      this.checkBlockBytes(fragment.length);
      return;
    }
    this.onFieldBlock(streamId, endStream, fragment, dependency === streamId);
  }

  onContinuation(streamId: number, endHeaders: boolean, fragment: Buffer): void {
    if (!this.settingsReceived) throw protocolError("first frame is not SETTINGS");
    const c = this.continuation;
    if (c === undefined || c.streamId !== streamId) throw protocolError("CONTINUATION without a field block");
    c.parts.push(Buffer.from(fragment));
    c.bytes += fragment.length;
    this.checkBlockBytes(c.bytes);
    if (!endHeaders) return;
    this.continuation = undefined;
    this.onFieldBlock(streamId, c.endStream, Buffer.concat(c.parts, c.bytes), false);
  }

  private checkBlockBytes(bytes: number): void {
    // a compressed block cannot usefully be far longer than the list it decodes to
    if (bytes > 2 * this.maxHeaderListSize + 1024) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, "field block too large");
  }

  private onFieldBlock(streamId: number, endStream: boolean, block: Buffer, selfDependent: boolean): void {
    // decode first, always: the dynamic table must follow every block (§4.3)
    const { fields, listSize } = this.decoder.decode(block);
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      // trailers (§8.1)
      if (existing.remoteEnded) throw new H2ConnectionError(H2_STREAM_CLOSED, "HEADERS after END_STREAM");
      if (!endStream) throw new H2StreamError(streamId, H2_PROTOCOL_ERROR, "second HEADERS without END_STREAM");
      for (let i = 0; i < fields.length; i += 2) {
        if (fields[i]!.charCodeAt(0) === 0x3a) throw new H2StreamError(streamId, H2_PROTOCOL_ERROR, "pseudo-field in trailers");
      }
      existing.trailers = fields;
      if (existing.paused || existing.inbound !== undefined) existing.inboundEnd = true;
      else this.remoteEnd(existing);
      return;
    }
    // §5.1.1: a new stream's id must exceed every id the client used (a closed stream's too);
    // grpc-go and Go's x/net end the connection likewise
    if (streamId <= this.lastStreamId) throw protocolError(`HEADERS on stream ${streamId}, not above the last stream ${this.lastStreamId}`);
    if ((streamId & 1) === 0) throw protocolError(`client stream id ${streamId} is even`);
    this.lastStreamId = streamId;
    if (this.goawaySent) return; // §6.8: streams past our GOAWAY are ignored
    if (selfDependent) throw new H2StreamError(streamId, H2_PROTOCOL_ERROR, "stream depends on itself");
    if (this.streams.size >= this.maxConcurrentStreams) throw new H2StreamError(streamId, H2_REFUSED_STREAM, "too many streams");
    if (listSize > this.maxHeaderListSize) throw new H2StreamError(streamId, H2_ENHANCE_YOUR_CALM, "header list too large");
    const malformed = malformedRequest(fields);
    if (malformed !== undefined) throw new H2StreamError(streamId, H2_PROTOCOL_ERROR, malformed);
    const recvWindow = this.settingsAcked ? this.initialWindowSize : Math.max(this.initialWindowSize, DEFAULT_WINDOW);
    const stream = new H2Stream(this, streamId, fields, this.peerInitialWindow, recvWindow);
    this.streams.add(streamId, stream);
    this.handlers.onStream(stream);
    if (endStream && !stream.closed) this.remoteEnd(stream);
  }

  private remoteEnd(stream: H2Stream): void {
    stream.remoteEnded = true;
    stream.onEnd?.();
    if (stream.closed) return;
    if (stream.ended && stream.pendingEnd === undefined) this.closeStream(stream, H2_NO_ERROR);
  }

  onPriority(streamId: number, dependency: number): void {
    this.guard();
    if (dependency === streamId) throw new H2StreamError(streamId, H2_PROTOCOL_ERROR, "stream depends on itself");
  }

  onRstStream(streamId: number, code: number): void {
    this.guard();
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) throw protocolError(`RST_STREAM on idle stream ${streamId}`);
      return;
    }
    if (!stream.headersSent) {
      const second = Math.floor(Date.now() / 1000);
      if (second !== this.peerResetsSecond) {
        this.peerResetsSecond = second;
        this.peerResets = 0;
      }
      if (++this.peerResets > this.peerResetsPerSecondMax) throw new H2ConnectionError(H2_ENHANCE_YOUR_CALM, "too many streams reset by the peer");
    }
    this.closeStream(stream, code);
  }

  onSettings(ack: boolean, settings: number[]): void {
    if (this.continuation !== undefined) throw protocolError("frame inside a field block");
    if (ack) {
      if (!this.settingsReceived) throw protocolError("first frame is not SETTINGS");
      this.settingsAcked = true;
      clearTimeout(this.settingsTimer);
      this.settingsTimer = undefined;
      return;
    }
    this.settingsReceived = true;
    let windowDelta = 0;
    for (let i = 0; i < settings.length; i += 2) {
      const id = settings[i]!;
      const value = settings[i + 1]!;
      switch (id) {
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) throw protocolError("SETTINGS_ENABLE_PUSH not 0 or 1");
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE:
          if (value > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
          windowDelta += value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          break;
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_FRAME_SIZE_LIMIT) throw protocolError("SETTINGS_MAX_FRAME_SIZE out of range");
          this.peerMaxFrameSize = value;
          break;
        case SETTINGS_MAX_HEADER_LIST_SIZE:
          this.peerMaxHeaderListSize = value;
          break;
        default:
        // HEADER_TABLE_SIZE: our encoder never uses the dynamic table; MAX_CONCURRENT_STREAMS:
        // we open none; unknown settings are ignored (§6.5.2)
      }
    }
    this.writer.settingsAck();
    if (windowDelta !== 0) {
      // §6.9.2: every stream's window moves by the change, and may go negative
      const open = this.streams.valuesInOrder();
      for (const stream of open) {
        stream.sendWindow += windowDelta;
        if (stream.sendWindow > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, "stream window above 2^31-1");
      }
      if (windowDelta > 0) for (const stream of open) if (stream.queuedBytes > 0 || stream.pendingEnd) this.blocked.add(stream);
    }
    this.scheduleFlush();
  }

  onPing(ack: boolean, opaque: Buffer): void {
    this.guard();
    if (!ack) {
      this.writer.ping(true, opaque);
      // grpc-go pings as its client reads our data (BDP estimation), so a ping often arrives just
      // ahead of the next request. The ack waits one loop pass (or goes with other output) so
      // that what was read with it is served before a write of its own: on loopback a write
      // wakes the client, 20-40 us of this thread.
      this.scheduleFlushNextPass();
      if (this.pingStrikes !== undefined) {
        const answered = this.sentSincePing;
        this.sentSincePing = false;
        if (this.pingStrikes.ping(performance.now(), this.streams.size, answered)) this.fail(new H2ConnectionError(H2_ENHANCE_YOUR_CALM, "too_many_pings"));
      }
    }
    this.handlers.onPing?.(ack);
  }

  onGoaway(lastStreamId: number, code: number, _debug: Buffer): void {
    this.guard();
    this.handlers.onGoaway?.(code, lastStreamId);
    if (!this.goawaySent) {
      // the client opens no more streams: answer in kind so the socket ends when they finish
      this.close();
    }
  }

  onWindowUpdate(streamId: number, increment: number): void {
    this.guard();
    if (streamId === 0) {
      this.connSendWindow += increment;
      if (this.connSendWindow > MAX_WINDOW) throw new H2ConnectionError(H2_FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      if (this.blocked.size > 0) this.scheduleFlush();
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) throw protocolError(`WINDOW_UPDATE on idle stream ${streamId}`);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) throw new H2StreamError(streamId, H2_FLOW_CONTROL_ERROR, "stream window above 2^31-1");
    if (stream.queuedBytes > 0 || stream.pendingEnd !== undefined) {
      this.blocked.add(stream);
      this.scheduleFlush();
    }
  }

  onUnknown(_type: number, _streamId: number): void {
    this.guard();
  }

  onStreamError(err: H2StreamError): void {
    const stream = this.streams.get(err.streamId);
    if (stream !== undefined) this.resetStream(stream, err.code);
    else {
      this.writer.rstStream(err.streamId, err.code);
      this.scheduleFlush();
    }
  }

  // ------------------------------------------------------------------ output

  /** @internal */
  sendHeaders(stream: H2Stream, block: Uint8Array, endStream: boolean): void {
    this.sentSincePing = true;
    this.writer.headers(stream.id, block, endStream, this.peerMaxFrameSize);
    this.scheduleFlush();
    if (endStream) {
      stream.ended = true;
      this.localEnd(stream);
    }
  }

  /** @internal */
  sendData(stream: H2Stream, data: Uint8Array): boolean {
    if (data.length === 0) return stream.queuedBytes < this.highWaterBytes;
    if (stream.queuedBytes === 0) {
      const sent = this.sendNow(stream, data, 0);
      if (sent < data.length) this.enqueue(stream, sent === 0 ? data : data.subarray(sent));
    } else {
      this.enqueue(stream, data);
    }
    if (stream.closed) return false;
    if (stream.queuedBytes >= this.highWaterBytes) {
      stream.needDrain = true;
      return false;
    }
    return true;
  }

  private enqueue(stream: H2Stream, data: Uint8Array): void {
    stream.queue.push(data);
    stream.queuedBytes += data.length;
    if (stream.queuedBytes > this.queueBytesMax) {
      this.resetStream(stream, H2_INTERNAL_ERROR);
      return;
    }
    this.blocked.add(stream);
  }

  /** Sends what the windows and the socket allow of `data[offset..]` now; returns the new offset. */
  private sendNow(stream: H2Stream, data: Uint8Array, offset: number): number {
    while (offset < data.length) {
      if (this.socketBlocked || this.writer.bytes >= WRITER_BYTES_MAX) break;
      const n = Math.min(data.length - offset, stream.sendWindow, this.connSendWindow, this.peerMaxFrameSize);
      if (n <= 0) break;
      this.writer.data(stream.id, offset === 0 && n === data.length ? data : data.subarray(offset, offset + n), false);
      this.sentSincePing = true;
      stream.sendWindow -= n;
      this.connSendWindow -= n;
      offset += n;
    }
    if (offset > 0) this.scheduleFlush();
    return offset;
  }

  /** Sends a stream's queue as far as it can; then its pending end. */
  private pumpStream(stream: H2Stream): void {
    const q = stream.queue;
    while (stream.queueHead < q.length) {
      const data = q[stream.queueHead]!;
      const sent = this.sendNow(stream, data, 0);
      stream.queuedBytes -= sent;
      if (sent < data.length) {
        if (sent > 0) q[stream.queueHead] = data.subarray(sent);
        break;
      }
      q[stream.queueHead++] = EMPTY;
    }
    if (stream.queueHead === q.length) {
      q.length = 0;
      stream.queueHead = 0;
      this.blocked.delete(stream);
      const end = stream.pendingEnd;
      if (end !== undefined) {
        stream.pendingEnd = undefined;
        this.emitEnd(stream, end.trailers);
      }
    }
    if (stream.needDrain && stream.queuedBytes < this.highWaterBytes && !stream.closed) {
      stream.needDrain = false;
      stream.onDrain?.();
    }
  }

  /** @internal */
  sendEnd(stream: H2Stream, trailers: Uint8Array | undefined): void {
    if (stream.queuedBytes > 0) {
      stream.pendingEnd = { trailers };
      return;
    }
    this.emitEnd(stream, trailers);
  }

  private emitEnd(stream: H2Stream, trailers: Uint8Array | undefined): void {
    this.sentSincePing = true;
    if (trailers !== undefined) this.writer.headers(stream.id, trailers, true, this.peerMaxFrameSize);
    else this.writer.data(stream.id, EMPTY, true);
    this.scheduleFlush();
    this.localEnd(stream);
  }

  private localEnd(stream: H2Stream): void {
    if (stream.remoteEnded) {
      this.closeStream(stream, H2_NO_ERROR);
    } else {
      // §8.1: a complete response may be followed by RST_STREAM(NO_ERROR) so the client stops sending
      this.writer.rstStream(stream.id, H2_NO_ERROR);
      this.closeStream(stream, H2_NO_ERROR);
    }
    // The last open stream's answer is complete: nothing else on this connection would join its
    // write, so it goes out at the end of this turn rather than after the loop's next I/O pass.
    if (this.streams.size === 0) this.scheduleFlushThisTurn();
  }

  /** @internal */
  resetStream(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    this.writer.rstStream(stream.id, code);
    this.scheduleFlush();
    this.closeStream(stream, code);
  }

  private closeStream(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.rstCode = code;
    this.streams.take(stream.id);
    this.blocked.delete(stream);
    stream.queue.length = 0; // in place: a new array per closed stream would be garbage
    stream.queueHead = 0;
    stream.queuedBytes = 0;
    stream.pendingEnd = undefined;
    if (stream.inboundBytes > 0 && !this.failed) this.connConsumed(stream.inboundBytes); // dropped
    stream.inbound = undefined;
    stream.inboundBytes = 0;
    stream.onClose?.(code);
    this.maybeFinish();
  }

  private closeAllStreams(code: number): void {
    for (const stream of this.streams.valuesInOrder()) this.closeStream(stream, code);
  }

  private maybeFinish(): void {
    if (this.goawaySent && this.streams.size === 0 && !this.failed && !this.socketClosed) {
      this.flush();
      this.socket.end();
    }
  }

  private fail(err: H2ConnectionError): void {
    if (this.failed) return;
    this.failed = true;
    clearTimeout(this.settingsTimer);
    this.handlers.onError?.(err);
    this.writer.goaway(this.lastStreamId, err.code, err.message);
    this.closeAllStreams(err.code);
    this.flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), this.closeLingerMs).unref();
  }

  private onSocketClose(): void {
    this.socketClosed = true;
    clearTimeout(this.settingsTimer);
    this.closeAllStreams(H2_CANCEL);
    this.handlers.onClose?.();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    outputWaiting.push(this);
    if (!passFlushScheduled) {
      passFlushScheduled = true;
      setImmediate(flushAtPass);
    }
  }

  /** @internal (flushWaitingOutput) */
  flushWaiting(): void {
    this.flushScheduled = false;
    this.flush();
  }

  /** Schedules the flush from the loop's next pass (unless one is already scheduled). */
  private scheduleFlushNextPass(): void {
    if (this.flushScheduled) return;
    setImmediate(this.scheduleFlushCallback);
  }

  private readonly scheduleFlushCallback = (): void => this.scheduleFlush();

  /**
   * Flushes every connection's waiting output once the current turn's callbacks and promise jobs
   * are done (process.nextTick), ahead of the pass's flush, which then finds less or nothing.
   */
  private scheduleFlushThisTurn(): void {
    if (turnFlushScheduled) return;
    turnFlushScheduled = true;
    process.nextTick(flushAtTurnEnd);
  }

  /** Pumps blocked streams, then writes everything gathered in one socket write. */
  private flush(): void {
    if (this.socketClosed || !this.socket.writable) return;
    let more = false; // stopped for the turn's output bound, not for a window or the socket
    if (this.blocked.size > 0 && !this.failed) {
      for (const stream of this.blocked) {
        if (this.socketBlocked || this.connSendWindow <= 0) break;
        if (this.writer.bytes >= WRITER_BYTES_MAX) {
          more = true;
          break;
        }
        this.pumpStream(stream);
      }
    }
    if (this.writer.empty) return;
    const bytes = this.writer.bytes;
    if (bytes >= WRITER_BYTES_MAX) more = true;
    const parts = this.writer.take();
    let ok: boolean;
    if (parts.length === 1) ok = this.socket.write(parts[0]!);
    else if (bytes <= CONCAT_BYTES_MAX) ok = this.socket.write(Buffer.concat(parts, bytes));
    else {
      this.socket.cork();
      for (const p of parts) this.socket.write(p);
      this.socket.uncork();
      ok = !this.socket.writableNeedDrain;
    }
    if (!ok) this.socketBlocked = true;
    else if (more && this.blocked.size > 0) this.scheduleFlush();
  }
}

const EMPTY = new Uint8Array(0);
