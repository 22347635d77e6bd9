/**
 * HPACK (RFC 7541): the header compression of HTTP/2, server side.
 *
 * The decoder keeps the peer's dynamic table (§2.3.2, §4) and decodes a complete field block into
 * a flat array [name0, value0, name1, value1, ...] of latin1 strings (one char per octet, as on
 * the wire). Every malformed input is an HpackError, which the connection answers with a
 * connection error COMPRESSION_ERROR (§4.3 of RFC 9113): after one the decoder's state is
 * undefined and the connection must not decode again.
 *
 * The encoder is stateless: it never adds to the peer's dynamic table, so it emits only indexed
 * static entries (§6.1) and literals without indexing (§6.2.2). Its output for a constant list is
 * constant, so responses and trailers can be encoded once and reused (encodeHeaderBlock).
 */
import { HuffmanError, huffmanDecode, huffmanEncode, huffmanEncodedLength } from "./huffman.js";

/** A field block broke RFC 7541 (bad index, bad integer or string, bad table size update). */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HpackError";
  }
}

/** The static table (Appendix A), 1-based: STATIC_TABLE[i - 1] is entry i. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length;

/** The overhead of an entry in the table's size accounting (§4.1). */
const ENTRY_OVERHEAD = 32;

/**
 * The decoder's dynamic table (§2.3.2): newest first, as a ring over a growable array, evicting
 * from the oldest end to keep `size <= maxSize` (§4.4).
 */
class DynamicTable {
  private names: string[] = new Array(16);
  private values: string[] = new Array(16);
  private head = 0; // slot of the newest entry
  count = 0;
  size = 0;
  maxSize: number;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  /** Entry `i` (0 = newest); the caller checked `i < count`. */
  name(i: number): string {
    return this.names[(this.head + i) & (this.names.length - 1)]!;
  }

  value(i: number): string {
    return this.values[(this.head + i) & (this.names.length - 1)]!;
  }

  add(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.maxSize) {
      // §4.4: an entry larger than the table empties it and is not added
      this.clear();
      return;
    }
    while (this.size + entrySize > this.maxSize) this.evictOldest();
    if (this.count === this.names.length) this.grow();
    const mask = this.names.length - 1;
    this.head = (this.head - 1) & mask;
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.count++;
    this.size += entrySize;
  }

  setMaxSize(maxSize: number): void {
    this.maxSize = maxSize;
    while (this.size > maxSize) this.evictOldest();
  }

  private evictOldest(): void {
    const slot = (this.head + this.count - 1) & (this.names.length - 1);
    this.size -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
    this.names[slot] = "";
    this.values[slot] = "";
    this.count--;
  }

  private clear(): void {
    while (this.count > 0) this.evictOldest();
  }

  private grow(): void {
    const n = this.names.length;
    const names: string[] = new Array(n * 2);
    const values: string[] = new Array(n * 2);
    for (let i = 0; i < this.count; i++) {
      names[i] = this.names[(this.head + i) & (n - 1)]!;
      values[i] = this.values[(this.head + i) & (n - 1)]!;
    }
    this.names = names;
    this.values = values;
    this.head = 0;
  }
}

/** What a decoded block holds beyond its fields. */
export interface DecodedBlock {
  /** [name0, value0, name1, value1, ...], latin1; owned by the caller. */
  fields: string[];
  /** The header list size of §6.5.2 of RFC 9113 (octets of names and values + 32 per field). */
  listSize: number;
}

export interface HpackDecoderOptions {
  /**
   * The SETTINGS_HEADER_TABLE_SIZE we advertise: a dynamic table size update above it is an error
   * (§4.2). Default 4096.
   */
  headerTableSizeMax?: number;
}

/** Decodes the field blocks of one connection, in order (the table is the connection's). */
export class HpackDecoder {
  private readonly table: DynamicTable;
  private readonly sizeMax: number;

  constructor(options: HpackDecoderOptions = {}) {
    this.sizeMax = options.headerTableSizeMax ?? 4096;
    this.table = new DynamicTable(this.sizeMax);
  }

  /** The dynamic table's current size in octets (§4.1), for tests. */
  get tableSize(): number {
    return this.table.size;
  }

  /** The dynamic table's entries, newest first, for tests. */
  tableEntries(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = 0; i < this.table.count; i++) out.push([this.table.name(i), this.table.value(i)]);
    return out;
  }

  /**
   * Decodes the complete field block `block[start, end)` (HEADERS + CONTINUATION fragments
   * joined). Throws HpackError; the connection must then end with COMPRESSION_ERROR.
   */
  decode(block: Buffer, start = 0, end = block.length): DecodedBlock {
    const fields: string[] = [];
    let listSize = 0;
    let pos = start;
    let fieldSeen = false;
    const table = this.table;
    while (pos < end) {
      const b = block[pos]!;
      let name: string;
      let value: string;
      if (b >= 0x80) {
        // §6.1 indexed field
        const index = this.readInt(block, pos, end, 7);
        pos = this.pos;
        if (index === 0) throw new HpackError("index 0");
        if (index <= STATIC_COUNT) {
          const e = STATIC_TABLE[index - 1]!;
          name = e[0];
          value = e[1];
        } else {
          const d = index - STATIC_COUNT - 1;
          if (d >= table.count) throw new HpackError(`index ${index} past the table`);
          name = table.name(d);
          value = table.value(d);
        }
      } else if (b >= 0x40 || b < 0x20) {
        // §6.2.1 literal with incremental indexing (6-bit index), §6.2.2/3 without/never (4-bit)
        const indexing = b >= 0x40;
        const index = this.readInt(block, pos, end, indexing ? 6 : 4);
        pos = this.pos;
        if (index === 0) {
          name = this.readString(block, pos, end);
          pos = this.pos;
        } else {
          name = this.nameAt(index);
        }
        value = this.readString(block, pos, end);
        pos = this.pos;
        if (indexing) table.add(name, value);
      } else {
        // §6.3 dynamic table size update: only at the start of a block (§4.2)
        if (fieldSeen) throw new HpackError("dynamic table size update after a field");
        const size = this.readInt(block, pos, end, 5);
        pos = this.pos;
        if (size > this.sizeMax) throw new HpackError(`table size update ${size} above ${this.sizeMax}`);
        table.setMaxSize(size);
        continue;
      }
      fieldSeen = true;
      fields.push(name, value);
      listSize += name.length + value.length + ENTRY_OVERHEAD;
    }
    return { fields, listSize };
  }

  // The position after the last integer or string read (saves an allocation per read).
  private pos = 0;

  private nameAt(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_TABLE[index - 1]![0];
    const d = index - STATIC_COUNT - 1;
    if (d >= this.table.count) throw new HpackError(`index ${index} past the table`);
    return this.table.name(d);
  }

  /** §5.1 integer with an N-bit prefix at `block[pos]`; sets this.pos past it. Bounded to 2^31-1. */
  private readInt(block: Uint8Array, pos: number, end: number, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let value = block[pos++]! & mask;
    if (value < mask) {
      this.pos = pos;
      return value;
    }
    let shift = 0;
    for (;;) {
      if (pos >= end) throw new HpackError("truncated integer");
      const b = block[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (value > 0x7fffffff) throw new HpackError("integer overflow");
      if ((b & 0x80) === 0) break;
      shift += 7;
    }
    this.pos = pos;
    return value;
  }

  /** §5.2 string literal at `block[pos]`; sets this.pos past it. */
  private readString(block: Buffer, pos: number, end: number): string {
    if (pos >= end) throw new HpackError("truncated string");
    const huffman = (block[pos]! & 0x80) !== 0;
    const length = this.readInt(block, pos, end, 7);
    pos = this.pos;
    if (length > end - pos) throw new HpackError("string past the block");
    this.pos = pos + length;
    if (!huffman) return block.toString("latin1", pos, pos + length);
    try {
      return huffmanDecode(block, pos, pos + length);
    } catch (err) {
      if (err instanceof HuffmanError) throw new HpackError(err.message);
      throw err;
    }
  }
}

// ---------------------------------------------------------------- encoder

const staticExact = new Map<string, number>(); // "name\0value" -> index
const staticName = new Map<string, number>(); // name -> lowest index
STATIC_TABLE.forEach(([name, value], i) => {
  const key = `${name}\0${value}`;
  if (!staticExact.has(key)) staticExact.set(key, i + 1);
  if (!staticName.has(name)) staticName.set(name, i + 1);
});

/** §5.1 integer with an N-bit prefix whose high bits are `flags`; returns the offset past it. */
export function writeInt(dst: Uint8Array, offset: number, value: number, prefixBits: number, flags: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    dst[offset++] = flags | value;
    return offset;
  }
  dst[offset++] = flags | mask;
  value -= mask;
  while (value >= 0x80) {
    dst[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  dst[offset++] = value;
  return offset;
}

function intLength(value: number, prefixBits: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return 1;
  let n = 2;
  value -= mask;
  while (value >= 0x80) {
    n++;
    value = Math.floor(value / 128);
  }
  return n;
}

/** Upper bound of a string's encoding; writeString's output fits. */
function stringLengthMax(s: string): number {
  return intLength(s.length, 7) + s.length;
}

function writeString(dst: Uint8Array, offset: number, s: string, huffman: boolean): number {
  if (huffman) {
    const hlen = huffmanEncodedLength(s);
    if (hlen < s.length) {
      offset = writeInt(dst, offset, hlen, 7, 0x80);
      return huffmanEncode(s, dst, offset);
    }
  }
  offset = writeInt(dst, offset, s.length, 7, 0);
  for (let i = 0; i < s.length; i++) dst[offset++] = s.charCodeAt(i) & 0xff;
  return offset;
}

export interface EncodeOptions {
  /** Huffman-code strings where it is shorter (default true). */
  huffman?: boolean;
}

/**
 * Encodes a field list (flat [name, value, ...], names lower case, strings latin1) as a field
 * block that leaves the peer's dynamic table alone: an exact static match is indexed, anything
 * else a literal without indexing (with the static name's index when there is one). The result
 * is a fresh Buffer the caller owns; the same input always gives the same bytes.
 */
export function encodeHeaderBlock(fields: readonly string[], options: EncodeOptions = {}): Buffer {
  const huffman = options.huffman ?? true;
  let max = 0;
  for (let i = 0; i < fields.length; i += 2) max += 1 + 5 + stringLengthMax(fields[i]!) + stringLengthMax(fields[i + 1]!);
  const dst = Buffer.allocUnsafe(max);
  let offset = 0;
  for (let i = 0; i < fields.length; i += 2) {
    offset = encodeField(dst, offset, fields[i]!, fields[i + 1]!, huffman);
  }
  return dst.subarray(0, offset);
}

/**
 * Appends one field to `dst` at `offset` (see encodeHeaderBlock); `dst` must have room for
 * fieldLengthMax(name, value) octets. Returns the offset past it.
 */
export function encodeField(dst: Uint8Array, offset: number, name: string, value: string, huffman = true): number {
  const exact = staticExact.get(`${name}\0${value}`);
  if (exact !== undefined) return writeInt(dst, offset, exact, 7, 0x80);
  const nameIndex = staticName.get(name);
  if (nameIndex !== undefined) {
    offset = writeInt(dst, offset, nameIndex, 4, 0);
  } else {
    dst[offset++] = 0;
    offset = writeString(dst, offset, name, huffman);
  }
  return writeString(dst, offset, value, huffman);
}

/** An upper bound of encodeField's output length. */
export function fieldLengthMax(name: string, value: string): number {
  return 6 + stringLengthMax(name) + stringLengthMax(value);
}
