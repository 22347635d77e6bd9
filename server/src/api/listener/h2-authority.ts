/**
 * Go's gRPC clients send `:authority` as the dial target verbatim, so `etcdctl
 * --endpoints=http://host:2379 endpoint status` sends `:authority: http://host:2379`. Go's HTTP/2
 * server accepts that; Node's (nghttp2) rejects the stream with PROTOCOL_ERROR. This module sits
 * between the client socket and the HTTP/2 session and rewrites literal `:authority` header
 * fields in the client's HEADERS frames into a plain, valid value, leaving every other byte as it
 * came. It costs a JS stream between socket and session, so the client listener puts it only on
 * connections whose first request carries such an authority (`firstBlockAuthority`,
 * `isUrlAuthority`); every other connection is handed to the session natively.
 *
 * HPACK keeps a dynamic table on both sides. A rewritten field may enter nghttp2's table with a
 * value no longer than the client's, so nghttp2 never evicts an entry before the client does and
 * every index the client sends still names the same entry on our side. Values are replaced by the
 * host part when they are plain text, else by "localhost" cut to fit (a Huffman-coded value is
 * never shorter than its code).
 *
 * Frame layout (RFC 7540 §4.1): length(24) type(8) flags(8) R+stream(32), payload. HEADERS
 * (type 1) may carry PADDED (0x8) and PRIORITY (0x20) fields around the header block; a block
 * continued in CONTINUATION frames (no END_HEADERS, 0x4) is passed on untouched.
 */
import { Duplex } from "node:stream";
import { decodeHuffman } from "./hpack-huffman.js";

const FRAME_HEADER_BYTES = 9;
const TYPE_HEADERS = 1;
const TYPE_SETTINGS = 4;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const PREFACE_BYTES = 24;
/** Frames larger than this are passed through without buffering them whole. */
const MAX_BUFFERED_FRAME_BYTES = 1 << 24;

/** A header block that does not decode (RFC 7541 §5, §6). */
export class HpackBlockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HpackBlockError";
  }
}

/**
 * Decodes an HPACK integer with an N-bit prefix at `pos`; returns [value, next position].
 * @throws HpackBlockError when the integer is cut short or too large.
 */
function readInt(buf: Uint8Array, pos: number, prefixBits: number): [number, number] {
  if (pos >= buf.length) throw new HpackBlockError("hpack: truncated integer");
  const max = (1 << prefixBits) - 1;
  let value = buf[pos]! & max;
  pos++;
  if (value < max) return [value, pos];
  let shift = 0;
  for (;;) {
    if (pos >= buf.length || shift > 28) throw new HpackBlockError("hpack: bad integer");
    const b = buf[pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, pos];
  }
}

function writeInt(value: number, prefixBits: number, firstByteHigh: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteHigh | value]);
  const out = [firstByteHigh | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

function safeAuthority(raw: Buffer, huffman: boolean): Buffer | undefined {
  if (!huffman) {
    const text = raw.toString("latin1");
    const scheme = text.indexOf("://");
    if (scheme < 0 && !text.includes("/")) return undefined; // already valid: leave it
    const host = (scheme >= 0 ? text.slice(scheme + 3) : text).split("/")[0]!;
    return Buffer.from(host.length > 0 ? host : "localhost".slice(0, Math.max(1, raw.length)), "latin1");
  }
  return Buffer.from("localhost".slice(0, Math.max(1, raw.length)), "latin1");
}

/** HPACK static table (RFC 7541 Appendix A): entries 1..61; entry 1 is `:authority` (no value). */
const STATIC_TABLE_ENTRIES = 61;
const STATIC_AUTHORITY_INDEX = 1;

/** Reads a string literal at `pos`; returns [its bytes (Huffman-coded or not), huffman, next position]. */
function readStringLiteral(block: Uint8Array, pos: number): [Uint8Array, boolean, number] {
  const huffman = pos < block.length && (block[pos]! & 0x80) !== 0;
  const [length, at] = readInt(block, pos, 7);
  if (at + length > block.length) throw new HpackBlockError("hpack: truncated string literal");
  return [block.subarray(at, at + length), huffman, at + length];
}

function literalText(bytes: Uint8Array, huffman: boolean): string {
  return huffman ? decodeHuffman(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
}

/**
 * The `:authority` of the first header block a client sends on a connection, decoded as HPACK
 * decodes that block: with an empty dynamic table, holding only what the block itself adds.
 * Returns the first `:authority` value (latin1, one char per byte), or undefined when the block
 * has none. Other fields are skipped without decoding their values. Evictions are not modelled:
 * an index past the entries the block added is an error.
 *
 * @throws HpackBlockError or HpackHuffmanError when the block is malformed; the caller should then
 *   treat the connection as if its authority needed rewriting (the conservative path).
 */
export function firstBlockAuthority(block: Uint8Array): string | undefined {
  // Entries the block has added so far. None of them is an :authority field: decoding stops at
  // the first one.
  let entriesAdded = 0;
  const isAuthorityIndex = (index: number): boolean => {
    if (index === 0 || index > STATIC_TABLE_ENTRIES + entriesAdded) {
      throw new HpackBlockError(`hpack: index ${index} outside the table`);
    }
    return index === STATIC_AUTHORITY_INDEX;
  };
  let pos = 0;
  while (pos < block.length) {
    const b = block[pos]!;
    if (b & 0x80) {
      const [index, next] = readInt(block, pos, 7); // indexed field
      pos = next;
      if (isAuthorityIndex(index)) return ""; // the static entry has no value
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      pos = readInt(block, pos, 5)[1]; // dynamic table size update
      continue;
    }
    const incremental = (b & 0xc0) === 0x40;
    const [nameIndex, afterName] = readInt(block, pos, incremental ? 6 : 4);
    pos = afterName;
    let authority: boolean;
    if (nameIndex === 0) {
      const [name, huffman, next] = readStringLiteral(block, pos);
      pos = next;
      authority = literalText(name, huffman) === ":authority";
    } else {
      authority = isAuthorityIndex(nameIndex);
    }
    const [value, huffman, next] = readStringLiteral(block, pos);
    pos = next;
    if (authority) return literalText(value, huffman);
    if (incremental) entriesAdded++;
  }
  return undefined;
}

/**
 * Whether an `:authority` value is URL-shaped (`http://host:port`, `host/path`), which Node's
 * HTTP/2 rejects and `AuthorityRewriter` must fix. A host, `host:port` or `[v6]:port` is not.
 */
export function isUrlAuthority(authority: string): boolean {
  return authority.includes("/");
}

/**
 * Rewrites `:authority` in one complete header block. Returns the block unchanged (same object)
 * when there is nothing to rewrite or the block does not parse.
 */
export function rewriteHeaderBlock(block: Buffer): Buffer {
  const parts: Buffer[] = [];
  let copyFrom = 0;
  let pos = 0;
  try {
    while (pos < block.length) {
      const b = block[pos]!;
      if (b & 0x80) {
        pos = readInt(block, pos, 7)[1]; // indexed field
        continue;
      }
      if ((b & 0xe0) === 0x20) {
        pos = readInt(block, pos, 5)[1]; // dynamic table size update
        continue;
      }
      const prefixBits = (b & 0xc0) === 0x40 ? 6 : 4; // with incremental indexing : without / never
      const fieldStart = pos;
      const [nameIndex, afterName] = readInt(block, pos, prefixBits);
      pos = afterName;
      let isAuthority = nameIndex === 1;
      if (nameIndex === 0) {
        const huff = (block[pos]! & 0x80) !== 0;
        const [len, p] = readInt(block, pos, 7);
        const name = block.subarray(p, p + len);
        isAuthority = !huff && name.toString("latin1") === ":authority";
        pos = p + len;
      }
      const valueStart = pos;
      const huffman = (block[pos]! & 0x80) !== 0;
      const [valueLen, valueBytesAt] = readInt(block, pos, 7);
      pos = valueBytesAt + valueLen;
      if (pos > block.length) return block;
      if (!isAuthority) continue;
      const replacement = safeAuthority(block.subarray(valueBytesAt, pos), huffman);
      if (replacement === undefined) continue;
      parts.push(block.subarray(copyFrom, valueStart), writeInt(replacement.length, 7, 0), replacement);
      copyFrom = pos;
      void fieldStart;
    }
  } catch {
    return block;
  }
  if (parts.length === 0) return block;
  parts.push(block.subarray(copyFrom));
  return Buffer.concat(parts);
}

/** Rewrites one HEADERS frame (header included); returns it unchanged when not applicable. */
function rewriteHeadersFrame(frame: Buffer): Buffer {
  const flags = frame[4]!;
  if ((flags & FLAG_END_HEADERS) === 0) return frame;
  let start = FRAME_HEADER_BYTES;
  let end = frame.length;
  let padLength = 0;
  if (flags & FLAG_PADDED) {
    padLength = frame[start]!;
    start += 1;
    end -= padLength;
  }
  if (flags & FLAG_PRIORITY) start += 5;
  if (start > end) return frame;
  const block = frame.subarray(start, end);
  const rewritten = rewriteHeaderBlock(block);
  if (rewritten === block) return frame;
  const out = Buffer.concat([frame.subarray(0, start), rewritten, frame.subarray(end)]);
  out.writeUIntBE(out.length - FRAME_HEADER_BYTES, 0, 3);
  return out;
}

export interface AuthorityRewriterOptions {
  /**
   * How many of the client's SETTINGS ACK frames to remove before they reach the session: 1 when
   * the listener sent the client a SETTINGS frame of its own whose ACK has not arrived yet (the
   * session would take that ACK for one of its own SETTINGS and fail the connection). Default 0.
   */
  settingsAcksToDrop?: number;
}

/**
 * A duplex over a client socket whose readable side is the socket's bytes with `:authority`
 * rewritten (and, if asked, the client's first SETTINGS ACKs removed), and whose writable side
 * writes to the socket. The socket's bytes must start with the client connection preface.
 */
export class AuthorityRewriter extends Duplex {
  private pending: Buffer = Buffer.alloc(0);
  private prefaceLeft = PREFACE_BYTES;
  /** Bytes of an oversized frame still to pass through unparsed. */
  private passThrough = 0;
  private settingsAcksToDrop: number;

  constructor(
    private readonly socket: Duplex,
    options: AuthorityRewriterOptions = {},
  ) {
    super({ allowHalfOpen: false });
    this.settingsAcksToDrop = options.settingsAcksToDrop ?? 0;
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(this.process(chunk))) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
  }

  private process(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, data.length);
      out.push(data.subarray(0, n));
      data = data.subarray(n);
      this.prefaceLeft -= n;
    }
    while (data.length > 0) {
      if (this.passThrough > 0) {
        const n = Math.min(this.passThrough, data.length);
        out.push(data.subarray(0, n));
        data = data.subarray(n);
        this.passThrough -= n;
        continue;
      }
      if (data.length < FRAME_HEADER_BYTES) break;
      const length = data.readUIntBE(0, 3);
      const type = data[3]!;
      const total = FRAME_HEADER_BYTES + length;
      if (type === TYPE_SETTINGS && (data[4]! & FLAG_ACK) !== 0 && length === 0 && this.settingsAcksToDrop > 0) {
        this.settingsAcksToDrop--;
        data = data.subarray(FRAME_HEADER_BYTES);
        continue;
      }
      if (type !== TYPE_HEADERS || total > MAX_BUFFERED_FRAME_BYTES) {
        // Not ours to change: pass it on as it streams in.
        const n = Math.min(total, data.length);
        out.push(data.subarray(0, n));
        this.passThrough = total - n;
        data = data.subarray(n);
        continue;
      }
      if (data.length < total) break;
      out.push(rewriteHeadersFrame(data.subarray(0, total)));
      data = data.subarray(total);
    }
    if (data.length > 0) this.pending = Buffer.from(data);
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }
}
