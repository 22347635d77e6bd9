/**
 * What a normal raft entry's data is, decided as etcd 3.4 decides it: an InternalRaftRequest when
 * it unmarshals as one without error (gogo's generated Unmarshal is strict: a known field with
 * the wrong wire type, a truncated field or an end-group tag is an error), else a bare v2
 * `Request` (what 3.4's v2 path and its publish/updateClusterVersion propose).
 *
 * The strict check covers the wire types and lengths of InternalRaftRequest's own fields and,
 * recursively, of its `v2` Request; other nested messages are checked only for well-formed
 * framing (their contents are decoded by the generated code, which skips mismatches).
 *
 * `encodeV2Request` writes a Request as gogo does for etcd's proto2 definition: every field but
 * PrevExist and Refresh on the wire even when zero, in field order.
 */
import { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import { Request } from "@etcd-ts/proto/etcdserverpb/etcdserver";

export type DecodedEntry = { kind: "internal"; req: InternalRaftRequest } | { kind: "v2"; req: Request };

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

/** InternalRaftRequest's fields in etcd 3.4 and their wire types (all messages but ID). */
const INTERNAL_FIELDS = new Map<number, number>([
  [1, WT_VARINT], [2, WT_LEN], [3, WT_LEN], [4, WT_LEN], [5, WT_LEN], [6, WT_LEN], [7, WT_LEN], [8, WT_LEN],
  [9, WT_LEN], [10, WT_LEN], [11, WT_LEN], [100, WT_LEN], [1000, WT_LEN], [1011, WT_LEN], [1012, WT_LEN],
  [1100, WT_LEN], [1101, WT_LEN], [1102, WT_LEN], [1103, WT_LEN], [1104, WT_LEN], [1105, WT_LEN], [1106, WT_LEN],
  [1107, WT_LEN], [1200, WT_LEN], [1201, WT_LEN], [1202, WT_LEN], [1203, WT_LEN], [1204, WT_LEN],
  [1300, WT_LEN], [1301, WT_LEN],
]);

/** Request's fields: strings 2, 3, 4, 6; every other a varint. */
const REQUEST_STRINGS = new Set([2, 3, 4, 6]);

function requestWireType(field: number): number | undefined {
  if (field < 1 || field > 17) return undefined;
  return REQUEST_STRINGS.has(field) ? WT_LEN : WT_VARINT;
}

/** Where the last varint read by readVarint ended (no object per varint: this runs per entry). */
let varintEnd = 0;

/**
 * Reads a varint at `pos` (before `end`) as a number (exact below 2^53; a larger one is only skipped or compared
 * with a length, where the rounding cannot change the outcome); its end goes to `varintEnd`.
 * Returns -1 when it is truncated or longer than 10 bytes.
 */
function readVarint(b: Uint8Array, pos: number, end: number): number {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) return -1;
    const c = b[pos + i]!;
    v += (c & 0x7f) * scale;
    scale *= 128;
    if (c < 0x80) {
      varintEnd = pos + i + 1;
      return v;
    }
  }
  return -1;
}

type FieldCheck = (field: number, b: Uint8Array, start: number, end: number) => boolean;

/**
 * Whether `b[start, end)` unmarshals without error under a schema `known` (field → wire type);
 * `nested` checks the contents of a length-delimited field (undefined: anything goes).
 */
function validMessage(b: Uint8Array, start: number, end: number, known: (field: number) => number | undefined, nested?: FieldCheck): boolean {
  let pos = start;
  while (pos < end) {
    // The wire type is the low 3 bits of the tag's first byte, exactly, whatever the tag's size.
    const wt = b[pos]! & 7;
    const tag = readVarint(b, pos, end);
    if (tag < 0) return false;
    pos = varintEnd;
    const field = Math.floor(tag / 8);
    if (wt === 4 || field <= 0) return false;
    const expected = known(field);
    if (expected !== undefined && expected !== wt) return false;
    switch (wt) {
      case WT_VARINT: {
        if (readVarint(b, pos, end) < 0) return false;
        pos = varintEnd;
        break;
      }
      case WT_I64:
        pos += 8;
        if (pos > end) return false;
        break;
      case WT_I32:
        pos += 4;
        if (pos > end) return false;
        break;
      case WT_LEN: {
        const len = readVarint(b, pos, end);
        if (len < 0 || len > end - varintEnd) return false;
        const fieldStart = varintEnd;
        const fieldEnd = fieldStart + len;
        if (expected !== undefined && nested !== undefined && !nested(field, b, fieldStart, fieldEnd)) return false;
        pos = fieldEnd;
        break;
      }
      default:
        return false; // groups (3) are not used by etcd's messages
    }
  }
  return true;
}

const anyField = (): undefined => undefined;
const internalField = (f: number): number | undefined => INTERNAL_FIELDS.get(f);
const internalNested: FieldCheck = (field, b, start, end) => (field === 2 ? validRequest(b, start, end) : validMessage(b, start, end, anyField));

function validRequest(b: Uint8Array, start = 0, end = b.length): boolean {
  return validMessage(b, start, end, requestWireType);
}

function validInternalRaftRequest(b: Uint8Array): boolean {
  return validMessage(b, 0, b.length, internalField, internalNested);
}

/**
 * Decodes a normal entry's data (non-empty).
 * @throws Error when it is neither an InternalRaftRequest nor a v2 Request (corruption).
 */
export function decodeEntry(data: Uint8Array): DecodedEntry {
  if (validInternalRaftRequest(data)) return { kind: "internal", req: InternalRaftRequest.decode(data) };
  if (validRequest(data)) return { kind: "v2", req: Request.decode(data) };
  throw new Error("neither an InternalRaftRequest nor a v2 Request");
}

/** A v2 Request's bytes as etcd 3.4 (gogo) writes them. */
export function encodeV2Request(r: Request): Uint8Array {
  const out: number[] = [];
  const varint = (v: bigint): void => {
    let x = BigInt.asUintN(64, v);
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
  };
  const num = (field: number, v: bigint): void => {
    varint(BigInt(field << 3));
    varint(v);
  };
  const str = (field: number, s: string): void => {
    const bytes = Buffer.from(s);
    varint(BigInt((field << 3) | WT_LEN));
    varint(BigInt(bytes.length));
    for (const c of bytes) out.push(c);
  };
  const bool = (field: number, v: boolean | undefined): void => num(field, v ? 1n : 0n);
  num(1, r.ID ?? 0n);
  str(2, r.Method ?? "");
  str(3, r.Path ?? "");
  str(4, r.Val ?? "");
  bool(5, r.Dir);
  str(6, r.PrevValue ?? "");
  num(7, r.PrevIndex ?? 0n);
  if (r.PrevExist !== undefined) bool(8, r.PrevExist);
  num(9, r.Expiration ?? 0n);
  bool(10, r.Wait);
  num(11, r.Since ?? 0n);
  bool(12, r.Recursive);
  bool(13, r.Sorted);
  bool(14, r.Quorum);
  num(15, r.Time ?? 0n);
  bool(16, r.Stream);
  if (r.Refresh !== undefined) bool(17, r.Refresh);
  return Uint8Array.from(out);
}
