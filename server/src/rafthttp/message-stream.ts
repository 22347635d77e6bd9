/**
 * The "message" stream's framing (etcd's messageEncoder/messageDecoder), also the head of a
 * snapshot POST's body: each raft message as an 8-byte big-endian length, then the marshalled
 * Message (message-codec.ts).
 *
 * The decoder is incremental: feed it the stream's chunks as they arrive, cut anywhere, and it
 * returns the messages completed so far. It refuses a length above its limit (etcd's 512 MiB
 * by default) with etcd's error before reading the frame, and holds at most one partial frame:
 * the bytes received, never the length announced.
 */
import type { Message } from "../raft/types.js";
import { writeU64BE } from "../pkg/u64-le.js";
import { ByteQueue } from "./byte-queue.js";
import { decodeMessage, decodeMessageAt, messageSize, writeMessage } from "./message-codec.js";

/** etcd's bound on one framed message (readBytesLimit). */
export const MESSAGE_READ_LIMIT = 512 * 1024 * 1024;

/** A frame announced more bytes than the decoder's limit (etcd's ErrExceedSizeLimit). */
export class ErrExceedSizeLimit extends Error {
  override name = "ErrExceedSizeLimit";
  constructor(readonly announced: number | bigint, readonly limit: number) {
    super("rafthttp: error limit exceeded");
  }
}

/** The stream ended inside a frame (Go's io.ErrUnexpectedEOF). */
export class ErrUnexpectedEOF extends Error {
  override name = "ErrUnexpectedEOF";
  constructor() {
    super("unexpected EOF");
  }
}

/** One message as the stream carries it: length prefix and marshalled message, one buffer. */
export function encodeMessageFrame(m: Message): Uint8Array {
  const size = messageSize(m);
  const out = Buffer.allocUnsafe(8 + size);
  writeU64BE(out, 0, size);
  const end = writeMessage(out, 8, m);
  if (end !== 8 + size) throw new Error(`raft message encoder wrote ${end - 8} bytes, sized ${size}`);
  return out;
}

export interface MessageStreamDecoderOptions {
  /** Largest frame accepted, in bytes; default MESSAGE_READ_LIMIT. */
  limit?: number;
}

/**
 * Incremental decoder of the message stream. After it has thrown, the stream is unusable (as
 * etcd drops the connection); the decoder must not be fed again.
 */
export class MessageStreamDecoder {
  private readonly queue = new ByteQueue();
  private readonly limit: number;
  /** Length of the frame being received, once its prefix is in. */
  private frameLength = -1;

  constructor(options: MessageStreamDecoderOptions = {}) {
    this.limit = options.limit ?? MESSAGE_READ_LIMIT;
  }

  /**
   * Takes the next chunk; returns the messages it completed, in order.
   * @throws ErrExceedSizeLimit, RaftWireDecodeError (a frame that is not a Message).
   */
  push(chunk: Uint8Array): Message[] {
    this.queue.push(chunk);
    const out: Message[] = [];
    for (;;) {
      const m = this.next();
      if (m === undefined) return out;
      out.push(m);
    }
  }

  /** The next whole message in what was pushed, if any. */
  next(): Message | undefined {
    if (this.frameLength < 0) {
      if (this.queue.length < 8) return undefined;
      const n = this.queue.readUint64();
      if (typeof n === "bigint" || n > this.limit) throw new ErrExceedSizeLimit(n, this.limit);
      this.frameLength = n;
    }
    const n = this.frameLength;
    if (this.queue.length < n) return undefined;
    this.frameLength = -1;
    // The frame is read in place where it lies in one chunk (most messages, append and heartbeat
    // responses, keep none of its bytes); what a message keeps (entries, context) is copied out.
    const chunk = this.queue.frontChunk();
    const at = this.queue.frontOffset;
    if (chunk === undefined || chunk.byteLength - at < n) return decodeMessage(this.queue.take(n), false);
    const m = decodeMessageAt(chunk, at, at + n, true);
    this.queue.skip(n);
    return m;
  }

  /** Bytes received that belong to no whole message yet. */
  get pending(): number {
    return this.queue.length + (this.frameLength >= 0 ? 8 : 0);
  }

  /**
   * The stream has ended: throws ErrUnexpectedEOF if it ended inside a frame (a clean end
   * between frames is etcd's io.EOF, which is no error).
   */
  end(): void {
    if (this.pending > 0) throw new ErrUnexpectedEOF();
  }
}
