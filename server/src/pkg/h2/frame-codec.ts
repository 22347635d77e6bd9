/**
 * HTTP/2 frames (RFC 9113 §4, §6): an incremental parser over a connection's bytes and a writer
 * that packs outgoing frames into few buffers.
 *
 * Frame layout (§4.1): 24-bit payload length, 8-bit type, 8-bit flags, 1 reserved bit + 31-bit
 * stream id, then the payload. The parser checks each frame's own shape (§6: lengths, stream id
 * 0 or not, padding) and hands the frame's meaning to a FrameSink; the protocol state (streams,
 * windows, SETTINGS) is the connection's.
 *
 * Errors: a connection error is an H2ConnectionError thrown out of FrameParser.push (the
 * connection must send GOAWAY with its code and close; the parser is unusable after). A stream
 * error is reported through FrameSink.onStreamError and parsing goes on with the next frame.
 */

export const FRAME_DATA = 0x0;
export const FRAME_HEADERS = 0x1;
export const FRAME_PRIORITY = 0x2;
export const FRAME_RST_STREAM = 0x3;
export const FRAME_SETTINGS = 0x4;
export const FRAME_PUSH_PROMISE = 0x5;
export const FRAME_PING = 0x6;
export const FRAME_GOAWAY = 0x7;
export const FRAME_WINDOW_UPDATE = 0x8;
export const FRAME_CONTINUATION = 0x9;

export const FLAG_END_STREAM = 0x1;
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;
export const FLAG_PADDED = 0x8;
export const FLAG_PRIORITY = 0x20;

/** Error codes (§7). */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_FLOW_CONTROL_ERROR = 0x3;
export const H2_SETTINGS_TIMEOUT = 0x4;
export const H2_STREAM_CLOSED = 0x5;
export const H2_FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_COMPRESSION_ERROR = 0x9;
export const H2_CONNECT_ERROR = 0xa;
export const H2_ENHANCE_YOUR_CALM = 0xb;
export const H2_INADEQUATE_SECURITY = 0xc;
export const H2_HTTP_1_1_REQUIRED = 0xd;

/** SETTINGS identifiers (§6.5.2). */
export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

export const FRAME_HEADER_BYTES = 9;
/** The smallest SETTINGS_MAX_FRAME_SIZE, and its default (§6.5.2). */
export const DEFAULT_MAX_FRAME_SIZE = 16384;
export const MAX_FRAME_SIZE_LIMIT = 16777215;
export const MAX_WINDOW = 0x7fffffff;

/** The client connection preface (§3.4). */
export const CLIENT_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** A connection error (§5.4.1): GOAWAY with `code`, then close. */
export class H2ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "H2ConnectionError";
  }
}

/** A stream error (§5.4.2): RST_STREAM with `code` on `streamId`; the connection goes on. */
export class H2StreamError extends Error {
  constructor(
    readonly streamId: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "H2StreamError";
  }
}

/**
 * What the parser reports, frame by frame, in wire order. Buffers handed over may be views of the
 * socket's chunk: the sink copies what it keeps past the call. A sink method may throw
 * H2ConnectionError (the parse stops) or H2StreamError (reported back through onStreamError).
 */
export interface FrameSink {
  /** `data` has the padding removed; `flowLength` is the whole payload, padding included (§6.9.1). */
  onData(streamId: number, endStream: boolean, data: Buffer, flowLength: number): void;
  /** A HEADERS frame's field block fragment (padding and priority removed). */
  onHeaders(streamId: number, endStream: boolean, endHeaders: boolean, fragment: Buffer, dependency: number): void;
  onContinuation(streamId: number, endHeaders: boolean, fragment: Buffer): void;
  onPriority(streamId: number, dependency: number): void;
  onRstStream(streamId: number, code: number): void;
  /** `settings` is [id0, value0, id1, value1, ...]; empty for an ACK. */
  onSettings(ack: boolean, settings: number[]): void;
  onPing(ack: boolean, opaque: Buffer): void;
  onGoaway(lastStreamId: number, code: number, debug: Buffer): void;
  onWindowUpdate(streamId: number, increment: number): void;
  /** Frames of unknown type (§5.5), for the CONTINUATION rule; otherwise ignored. */
  onUnknown(type: number, streamId: number): void;
  onStreamError(err: H2StreamError): void;
}

/**
 * Splits a connection's bytes (after the preface) into frames: frames split across chunks, many
 * frames per chunk. A frame longer than `maxFrameSize` (our SETTINGS_MAX_FRAME_SIZE) is a
 * connection error FRAME_SIZE_ERROR (§4.2), decided from the header before any payload is held,
 * so buffering is bounded by one frame.
 */
export class FrameParser {
  maxFrameSize: number;
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private payload: Buffer | undefined; // a frame whose payload spans chunks
  private payloadFill = 0;
  private type = 0;
  private flags = 0;
  private streamId = 0;

  constructor(
    private readonly sink: FrameSink,
    maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
  ) {
    this.maxFrameSize = maxFrameSize;
  }

  /** Parses `chunk`; throws H2ConnectionError (the parser must not be used again). */
  push(chunk: Buffer): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.payload !== undefined) {
        const take = Math.min(this.payload.length - this.payloadFill, end - pos);
        chunk.copy(this.payload, this.payloadFill, pos, pos + take);
        this.payloadFill += take;
        pos += take;
        if (this.payloadFill < this.payload.length) return;
        const payload = this.payload;
        this.payload = undefined;
        this.dispatch(this.type, this.flags, this.streamId, payload);
        continue;
      }
      let length: number;
      if (this.headerFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
        // fast path: the header and maybe the whole frame are in this chunk
        length = (chunk[pos]! << 16) | (chunk[pos + 1]! << 8) | chunk[pos + 2]!;
        this.type = chunk[pos + 3]!;
        this.flags = chunk[pos + 4]!;
        this.streamId = chunk.readUInt32BE(pos + 5) & MAX_WINDOW;
        pos += FRAME_HEADER_BYTES;
      } else {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, end - pos);
        chunk.copy(this.header, this.headerFill, pos, pos + take);
        this.headerFill += take;
        pos += take;
        if (this.headerFill < FRAME_HEADER_BYTES) return;
        this.headerFill = 0;
        const h = this.header;
        length = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
        this.type = h[3]!;
        this.flags = h[4]!;
        this.streamId = h.readUInt32BE(5) & MAX_WINDOW;
      }
      if (length > this.maxFrameSize) {
        throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, `frame of ${length} octets above SETTINGS_MAX_FRAME_SIZE ${this.maxFrameSize}`);
      }
      if (end - pos >= length) {
        const payload = chunk.subarray(pos, pos + length);
        pos += length;
        this.dispatch(this.type, this.flags, this.streamId, payload);
      } else {
        this.payload = Buffer.allocUnsafe(length);
        this.payloadFill = 0;
      }
    }
  }

  private dispatch(type: number, flags: number, streamId: number, p: Buffer): void {
    try {
      dispatchFrame(this.sink, type, flags, streamId, p);
    } catch (err) {
      if (err instanceof H2StreamError) this.sink.onStreamError(err);
      else throw err;
    }
  }
}

function protocol(message: string): H2ConnectionError {
  return new H2ConnectionError(H2_PROTOCOL_ERROR, message);
}

/** Removes the padding of a PADDED frame (§6.1, §6.2); `offset` octets of other fields precede the data. */
function unpad(flags: number, p: Buffer, offset: number): Buffer {
  if ((flags & FLAG_PADDED) === 0) return offset === 0 ? p : p.subarray(offset);
  if (p.length < 1) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "padded frame without a pad length");
  const pad = p[0]!;
  // §6.1: padding that is as long as the payload or longer is a PROTOCOL_ERROR
  if (pad + 1 + offset > p.length) throw protocol("padding longer than the frame");
  return p.subarray(1 + offset, p.length - pad);
}

function dispatchFrame(sink: FrameSink, type: number, flags: number, streamId: number, p: Buffer): void {
  switch (type) {
    case FRAME_DATA: {
      if (streamId === 0) throw protocol("DATA on stream 0");
      sink.onData(streamId, (flags & FLAG_END_STREAM) !== 0, unpad(flags, p, 0), p.length);
      return;
    }
    case FRAME_HEADERS: {
      if (streamId === 0) throw protocol("HEADERS on stream 0");
      let dependency = 0;
      let fragment: Buffer;
      if ((flags & FLAG_PRIORITY) !== 0) {
        const padLength = (flags & FLAG_PADDED) !== 0 ? 1 : 0;
        if (p.length < padLength + 5) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "HEADERS too short for its priority");
        dependency = p.readUInt32BE(padLength) & MAX_WINDOW;
        fragment = unpad(flags, p, 5);
      } else {
        fragment = unpad(flags, p, 0);
      }
      sink.onHeaders(streamId, (flags & FLAG_END_STREAM) !== 0, (flags & FLAG_END_HEADERS) !== 0, fragment, dependency);
      return;
    }
    case FRAME_PRIORITY: {
      if (streamId === 0) throw protocol("PRIORITY on stream 0");
      if (p.length !== 5) throw new H2StreamError(streamId, H2_FRAME_SIZE_ERROR, "PRIORITY of the wrong length");
      sink.onPriority(streamId, p.readUInt32BE(0) & MAX_WINDOW);
      return;
    }
    case FRAME_RST_STREAM: {
      if (streamId === 0) throw protocol("RST_STREAM on stream 0");
      if (p.length !== 4) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "RST_STREAM of the wrong length");
      sink.onRstStream(streamId, p.readUInt32BE(0));
      return;
    }
    case FRAME_SETTINGS: {
      if (streamId !== 0) throw protocol("SETTINGS on a stream");
      const ack = (flags & FLAG_ACK) !== 0;
      if (ack) {
        if (p.length !== 0) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
        sink.onSettings(true, []);
        return;
      }
      if (p.length % 6 !== 0) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6");
      const settings: number[] = [];
      for (let i = 0; i < p.length; i += 6) settings.push(p.readUInt16BE(i), p.readUInt32BE(i + 2));
      sink.onSettings(false, settings);
      return;
    }
    case FRAME_PUSH_PROMISE:
      // §8.4: a client cannot push
      throw protocol("PUSH_PROMISE from a client");
    case FRAME_PING: {
      if (streamId !== 0) throw protocol("PING on a stream");
      if (p.length !== 8) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "PING of the wrong length");
      sink.onPing((flags & FLAG_ACK) !== 0, p);
      return;
    }
    case FRAME_GOAWAY: {
      if (streamId !== 0) throw protocol("GOAWAY on a stream");
      if (p.length < 8) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "GOAWAY too short");
      sink.onGoaway(p.readUInt32BE(0) & MAX_WINDOW, p.readUInt32BE(4), p.subarray(8));
      return;
    }
    case FRAME_WINDOW_UPDATE: {
      if (p.length !== 4) throw new H2ConnectionError(H2_FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong length");
      const increment = p.readUInt32BE(0) & MAX_WINDOW;
      if (increment === 0) {
        if (streamId === 0) throw protocol("WINDOW_UPDATE of 0 on the connection");
        throw new H2StreamError(streamId, H2_PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      }
      sink.onWindowUpdate(streamId, increment);
      return;
    }
    case FRAME_CONTINUATION: {
      if (streamId === 0) throw protocol("CONTINUATION on stream 0");
      sink.onContinuation(streamId, (flags & FLAG_END_HEADERS) !== 0, p);
      return;
    }
    default:
      sink.onUnknown(type, streamId);
  }
}

/** Copies smaller than this go into the writer's chunk; larger payloads are passed by reference. */
const COPY_MAX = 1024;
const CHUNK_BYTES = 16384;

/**
 * Serializes frames into a list of buffers for one socket write: small frames share a chunk,
 * large payloads are referenced, not copied (the caller must not change them after). take()
 * returns what was written since the last take.
 */
export class FrameWriter {
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private start = 0;
  private pos = 0;
  private parts: Buffer[] = [];
  /** Octets written since the last take(). */
  bytes = 0;

  /** Whether nothing was written since the last take(). */
  get empty(): boolean {
    return this.bytes === 0;
  }

  /** The buffers to write, in order; the caller owns the array. */
  take(): Buffer[] {
    this.cut();
    const parts = this.parts;
    this.parts = [];
    this.bytes = 0;
    return parts;
  }

  private cut(): void {
    if (this.pos > this.start) {
      this.parts.push(this.chunk.subarray(this.start, this.pos));
      this.start = this.pos;
    }
  }

  private reserve(n: number): void {
    if (this.chunk.length - this.pos < n) {
      this.cut();
      this.chunk = Buffer.allocUnsafe(Math.max(n, CHUNK_BYTES));
      this.start = this.pos = 0;
    }
  }

  private frameHeader(length: number, type: number, flags: number, streamId: number): void {
    this.reserve(FRAME_HEADER_BYTES);
    const c = this.chunk;
    let o = this.pos;
    c[o++] = length >>> 16;
    c[o++] = (length >>> 8) & 0xff;
    c[o++] = length & 0xff;
    c[o++] = type;
    c[o++] = flags;
    c.writeUInt32BE(streamId, o);
    this.pos = o + 4;
    this.bytes += FRAME_HEADER_BYTES + length;
  }

  private payload(p: Uint8Array): void {
    if (p.length <= COPY_MAX) {
      this.reserve(p.length);
      this.chunk.set(p, this.pos);
      this.pos += p.length;
    } else {
      this.cut();
      this.parts.push(Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.length));
    }
  }

  private u32(v: number): void {
    this.chunk.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  /** One DATA frame; the caller keeps `data` within the peer's max frame size and windows. */
  data(streamId: number, data: Uint8Array, endStream: boolean): void {
    this.frameHeader(data.length, FRAME_DATA, endStream ? FLAG_END_STREAM : 0, streamId);
    if (data.length > 0) this.payload(data);
  }

  /** A field block as HEADERS plus CONTINUATIONs of at most `maxFrameSize` octets each. */
  headers(streamId: number, block: Uint8Array, endStream: boolean, maxFrameSize: number): void {
    const es = endStream ? FLAG_END_STREAM : 0;
    if (block.length <= maxFrameSize) {
      this.frameHeader(block.length, FRAME_HEADERS, es | FLAG_END_HEADERS, streamId);
      this.payload(block);
      return;
    }
    let off = 0;
    let type = FRAME_HEADERS;
    let flags = es;
    while (off < block.length) {
      const n = Math.min(maxFrameSize, block.length - off);
      const last = off + n === block.length;
      this.frameHeader(n, type, flags | (last ? FLAG_END_HEADERS : 0), streamId);
      this.payload(block.subarray(off, off + n));
      off += n;
      type = FRAME_CONTINUATION;
      flags = 0;
    }
  }

  /** SETTINGS with [id0, value0, ...]. */
  settings(settings: readonly number[]): void {
    const length = (settings.length / 2) * 6;
    this.frameHeader(length, FRAME_SETTINGS, 0, 0);
    this.reserve(length);
    for (let i = 0; i < settings.length; i += 2) {
      this.chunk.writeUInt16BE(settings[i]!, this.pos);
      this.pos += 2;
      this.u32(settings[i + 1]!);
    }
  }

  settingsAck(): void {
    this.frameHeader(0, FRAME_SETTINGS, FLAG_ACK, 0);
  }

  ping(ack: boolean, opaque: Uint8Array): void {
    this.frameHeader(8, FRAME_PING, ack ? FLAG_ACK : 0, 0);
    this.payload(opaque);
  }

  windowUpdate(streamId: number, increment: number): void {
    this.frameHeader(4, FRAME_WINDOW_UPDATE, 0, streamId);
    this.reserve(4);
    this.u32(increment);
  }

  rstStream(streamId: number, code: number): void {
    this.frameHeader(4, FRAME_RST_STREAM, 0, streamId);
    this.reserve(4);
    this.u32(code);
  }

  goaway(lastStreamId: number, code: number, debug: string): void {
    const d = Buffer.from(debug, "utf8");
    this.frameHeader(8 + d.length, FRAME_GOAWAY, 0, 0);
    this.reserve(8);
    this.u32(lastStreamId);
    this.u32(code);
    this.payload(d);
  }

  /** Any frame from raw parts, for tests and peers that misbehave on purpose. */
  raw(type: number, flags: number, streamId: number, payload: Uint8Array): void {
    this.frameHeader(payload.length, type, flags, streamId);
    this.payload(payload);
  }
}
