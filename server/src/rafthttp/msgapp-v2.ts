/**
 * etcd's msgappv2 stream framing (the stream a leader's MsgApps travel on): three frame kinds,
 * each opening with a type byte.
 *
 *   0  link heartbeat       just the byte; stands for a MsgHeartbeat with every field zero
 *                           (etcd's linkHeartbeatMessage: to and from 0)
 *   1  compact MsgApp       count (uint64 BE), then per entry its size (uint64 BE) and marshalled
 *                           Entry, then commit (uint64 BE); term, logTerm and index are not sent
 *                           but taken from the state both ends keep (below), to/from from the
 *                           stream's ends
 *   2  full message         size (uint64 BE) and marshalled Message
 *
 * The state, the same at both ends, starts at term 0, index 0:
 *   - a full message sets term := m.term, index := the last entry's index, or m.index without
 *     entries;
 *   - a compact frame leaves term, and adds its entry count to index;
 *   - the encoder sends a message compact exactly when m.index = index, m.logTerm = term and
 *     m.term = m.logTerm (etcd's rule, whatever the message's type: the stream carries only
 *     MsgApps and link heartbeats); the decoder gives it term and logTerm := term, index :=
 *     index (as of the frame's start).
 *
 * The decoder is incremental (chunks cut anywhere) and bounded: it refuses a frame larger than
 * its limit (etcd's 512 MiB message limit by default) before holding it, counting a compact
 * frame's bytes as they come, and holds at most the bytes received of one frame. Unlike etcd it
 * never allocates for an announced entry count or size, and answers garbage with an error
 * instead of a crash.
 */
import { MessageType, type Entry, type Message, type NodeId } from "../raft/types.js";
import { ByteQueue } from "./byte-queue.js";
import { RaftWireDecodeError, decodeEntry, decodeMessage, entrySize, messageSize, writeEntry, writeMessage } from "./message-codec.js";
import { writeU64BE } from "../pkg/u64-le.js";
import { ErrExceedSizeLimit, ErrUnexpectedEOF, MESSAGE_READ_LIMIT } from "./message-stream.js";

const FRAME_LINK_HEARTBEAT = 0;
const FRAME_APP_ENTRIES = 1;
const FRAME_APP = 2;
/** The context of the messages built here (none: shared, nothing can write into it). */
const NO_CONTEXT = new Uint8Array(0);

/** A msgappv2 frame of a type etcd does not know (etcd's text). */
export class MsgAppV2FrameError extends Error {
  override name = "MsgAppV2FrameError";
}

/** Whether a message is the link heartbeat (a MsgHeartbeat from and to 0). */
export function isLinkHeartbeat(m: Message): boolean {
  return m.type === MessageType.Heartbeat && m.to === 0n && m.from === 0n;
}

/** The message a link heartbeat frame stands for. */
export function linkHeartbeatMessage(): Message {
  return {
    type: MessageType.Heartbeat, to: 0n, from: 0n, term: 0, logTerm: 0, index: 0, entries: [], commit: 0,
    reject: false, rejectHint: 0, context: NO_CONTEXT,
  };
}

/**
 * Moves the entries' data out of the pushed chunks into one buffer of their own (one allocation
 * per frame rather than per entry: small buffers are what costs), so that entries kept in the
 * raft log hold no chunk alive.
 */
function ownData(entries: Entry[]): void {
  let total = 0;
  for (const e of entries) total += e.data.byteLength;
  if (total === 0) return;
  const store = new Uint8Array(total);
  let off = 0;
  for (const e of entries) {
    const n = e.data.byteLength;
    if (n === 0) continue;
    store.set(e.data, off);
    e.data = store.subarray(off, off + n);
    off += n;
  }
}

/** The sending end of one msgappv2 stream (a new encoder per connection). */
export class MsgAppV2Encoder {
  private term = 0;
  private index = 0;

  /** The frame for `m`, and the state advanced past it. */
  encode(m: Message): Uint8Array {
    if (isLinkHeartbeat(m)) return Uint8Array.of(FRAME_LINK_HEARTBEAT);
    if (this.index === m.index && this.term === m.logTerm && m.logTerm === m.term) {
      let size = 1 + 8 + 8;
      for (const e of m.entries) size += 8 + entrySize(e);
      // sizes checked by messageSize in the full path; here only what a compact frame carries
      const out = Buffer.allocUnsafe(size);
      out[0] = FRAME_APP_ENTRIES;
      writeU64BE(out, 1, m.entries.length);
      let pos = 9;
      for (const e of m.entries) {
        if (!Number.isSafeInteger(e.term) || e.term < 0 || !Number.isSafeInteger(e.index) || e.index < 0) {
          throw new RangeError(`entry term/index ${e.term}/${e.index} is not a uint64 we can encode`);
        }
        writeU64BE(out, pos, entrySize(e));
        pos = writeEntry(out, pos + 8, e);
      }
      writeU64BE(out, pos, m.commit);
      this.index += m.entries.length;
      return out;
    }
    const size = messageSize(m);
    const out = Buffer.allocUnsafe(1 + 8 + size);
    out[0] = FRAME_APP;
    writeU64BE(out, 1, size);
    writeMessage(out, 9, m);
    this.term = m.term;
    this.index = m.entries.length > 0 ? m.entries[m.entries.length - 1]!.index : m.index;
    return out;
  }
}

export interface MsgAppV2DecoderOptions {
  /** This member: the compact frames' `to`. */
  local: NodeId;
  /** The stream's other end: the compact frames' `from`. */
  remote: NodeId;
  /** Largest frame accepted, in bytes; default MESSAGE_READ_LIMIT. */
  limit?: number;
}

type Phase =
  | { kind: "type" }
  | { kind: "size" }
  | { kind: "message"; size: number }
  | { kind: "count" }
  | { kind: "entry-size"; m: Message; left: number; bytes: number }
  | { kind: "entry"; m: Message; left: number; bytes: number; size: number }
  | { kind: "commit"; m: Message };

/**
 * The receiving end of one msgappv2 stream (a new decoder per connection). After it has thrown,
 * the stream is unusable and the decoder must not be fed again.
 */
export class MsgAppV2Decoder {
  private readonly queue = new ByteQueue();
  private readonly local: NodeId;
  private readonly remote: NodeId;
  private readonly limit: number;
  private term = 0;
  private index = 0;
  private phase: Phase = { kind: "type" };

  constructor(options: MsgAppV2DecoderOptions) {
    this.local = options.local;
    this.remote = options.remote;
    this.limit = options.limit ?? MESSAGE_READ_LIMIT;
  }

  /**
   * Takes the next chunk; returns the messages it completed, in order. The decoder may keep
   * views of the chunk until the frame it belongs to is complete: the caller must not modify a
   * chunk it has pushed. Returned messages own their bytes (they hold no pushed chunk).
   * @throws MsgAppV2FrameError, ErrExceedSizeLimit, RaftWireDecodeError.
   */
  push(chunk: Uint8Array): Message[] {
    this.queue.push(chunk);
    const out: Message[] = [];
    for (;;) {
      const m = this.step();
      if (m === null) return out;
      if (m !== undefined) out.push(m);
    }
  }

  /**
   * The stream has ended: throws ErrUnexpectedEOF if it ended inside a frame (etcd's decoder
   * returns io.EOF between frames, ErrUnexpectedEOF inside one).
   */
  end(): void {
    if (this.phase.kind !== "type" || this.queue.length > 0) throw new ErrUnexpectedEOF();
  }

  /** Advances by one phase: a message completed, undefined (progress), null (needs bytes). */
  private step(): Message | undefined | null {
    const q = this.queue;
    const p = this.phase;
    switch (p.kind) {
      case "type": {
        if (q.length < 1) return null;
        const t = q.readByte();
        if (t === FRAME_LINK_HEARTBEAT) return linkHeartbeatMessage();
        if (t === FRAME_APP) this.phase = { kind: "size" };
        else if (t === FRAME_APP_ENTRIES) this.phase = { kind: "count" };
        else throw new MsgAppV2FrameError(`failed to parse type ${t} in msgappv2 stream`);
        return undefined;
      }
      case "size": {
        if (q.length < 8) return null;
        const size = q.readUint64();
        if (typeof size === "bigint" || size > this.limit) throw new ErrExceedSizeLimit(size, this.limit);
        this.phase = { kind: "message", size };
        return undefined;
      }
      case "message": {
        if (q.length < p.size) return null;
        const m = decodeMessage(q.take(p.size, false), true);
        this.phase = { kind: "type" };
        this.term = m.term;
        this.index = m.entries.length > 0 ? m.entries[m.entries.length - 1]!.index : m.index;
        return m;
      }
      case "count": {
        if (q.length < 8) return null;
        const count = q.readUint64();
        // every entry takes at least its 8-byte size: a count the limit cannot hold is refused now
        if (typeof count === "bigint" || count * 8 > this.limit) throw new ErrExceedSizeLimit(count, this.limit);
        const m: Message = {
          type: MessageType.App, from: this.remote, to: this.local, term: this.term, logTerm: this.term,
          index: this.index, entries: [], commit: 0, reject: false, rejectHint: 0, context: NO_CONTEXT,
        };
        this.phase = count === 0 ? { kind: "commit", m } : { kind: "entry-size", m, left: count, bytes: 17 };
        return undefined;
      }
      case "entry-size": {
        // fast path: entries lying whole in the first chunk are parsed in place, in one go
        const buf = q.frontChunk();
        if (buf !== undefined) {
          const pos = q.frontOffset;
          let at = pos;
          let left = p.left;
          let bytes = p.bytes;
          while (left > 0 && buf.byteLength - at >= 8) {
            const hi = ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
            const lo = ((buf[at + 4]! << 24) | (buf[at + 5]! << 16) | (buf[at + 6]! << 8) | buf[at + 7]!) >>> 0;
            if (hi !== 0 || buf.byteLength - at - 8 < lo || bytes + 8 + lo > this.limit) break; // the slow path decides
            p.m.entries.push(decodeEntry(buf, at + 8, at + 8 + lo));
            this.index++;
            bytes += 8 + lo;
            at += 8 + lo;
            left--;
          }
          if (at > pos) {
            q.skip(at - pos);
            this.phase = left > 0 ? { kind: "entry-size", m: p.m, left, bytes } : { kind: "commit", m: p.m };
            return undefined;
          }
        }
        if (q.length < 8) return null;
        const size = q.readUint64();
        const bytes = typeof size === "bigint" ? Infinity : p.bytes + 8 + size;
        if (typeof size === "bigint" || bytes > this.limit) throw new ErrExceedSizeLimit(size, this.limit);
        this.phase = { kind: "entry", m: p.m, left: p.left, bytes, size };
        return undefined;
      }
      case "entry": {
        if (q.length < p.size) return null;
        // a view into the pushed chunk where it lies whole; the frame's data is copied out at its end
        const e: Entry = decodeEntry(q.take(p.size, false));
        p.m.entries.push(e);
        this.index++;
        this.phase = p.left > 1 ? { kind: "entry-size", m: p.m, left: p.left - 1, bytes: p.bytes } : { kind: "commit", m: p.m };
        return undefined;
      }
      case "commit": {
        if (q.length < 8) return null;
        const commit = q.readUint64();
        if (typeof commit === "bigint") throw new RaftWireDecodeError("msgappv2: commit index does not fit 53 bits");
        p.m.commit = commit;
        this.phase = { kind: "type" };
        ownData(p.m.entries);
        return p.m;
      }
    }
  }
}
