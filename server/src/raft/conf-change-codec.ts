/**
 * Encoding of ConfChange entries' data, byte-compatible with etcd's raftpb.ConfChange (proto2):
 *
 *   field 1 ID      varint (always written)
 *   field 2 Type    varint (always written)
 *   field 3 NodeID  varint (always written)
 *   field 4 Context bytes  (written when non-empty)
 *
 * so that WAL files and snapshots carry the same bytes etcd 3.4 writes.
 */
import { ConfChangeType, type ConfChange } from "./types.js";

/** Thrown by decodeConfChange on malformed input. */
export class ErrConfChangeDecode extends Error {
  override name = "ErrConfChangeDecode";
}

function varintLength(v: bigint): number {
  let n = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    n++;
  }
  return n;
}

function writeVarint(out: Uint8Array, pos: number, v: bigint): number {
  while (v >= 0x80n) {
    out[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[pos++] = Number(v);
  return pos;
}

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const id = cc.id ?? 0n;
  const type = BigInt(cc.type);
  const size =
    1 + varintLength(id) + 1 + varintLength(type) + 1 + varintLength(cc.nodeId) +
    (cc.context.byteLength > 0 ? 1 + varintLength(BigInt(cc.context.byteLength)) + cc.context.byteLength : 0);
  const out = new Uint8Array(size);
  let pos = 0;
  out[pos++] = 0x08;
  pos = writeVarint(out, pos, id);
  out[pos++] = 0x10;
  pos = writeVarint(out, pos, type);
  out[pos++] = 0x18;
  pos = writeVarint(out, pos, cc.nodeId);
  if (cc.context.byteLength > 0) {
    out[pos++] = 0x22;
    pos = writeVarint(out, pos, BigInt(cc.context.byteLength));
    out.set(cc.context, pos);
    pos += cc.context.byteLength;
  }
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const cc: ConfChange = { id: 0n, type: ConfChangeType.AddNode, nodeId: 0n, context: new Uint8Array(0) };
  let pos = 0;
  const readVarint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (pos >= data.length) throw new ErrConfChangeDecode("truncated varint");
      const b = data[pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, v);
      shift += 7n;
    }
    throw new ErrConfChangeDecode("varint too long");
  };
  while (pos < data.length) {
    const key = Number(readVarint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) {
      const v = readVarint();
      if (field === 1) cc.id = v;
      else if (field === 2) cc.type = Number(v) as ConfChangeType;
      else if (field === 3) cc.nodeId = v;
    } else if (wire === 2) {
      const len = Number(readVarint());
      if (pos + len > data.length) throw new ErrConfChangeDecode("truncated bytes field");
      if (field === 4) cc.context = data.slice(pos, pos + len);
      pos += len;
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else {
      throw new ErrConfChangeDecode(`unsupported wire type ${wire}`);
    }
  }
  if (pos > data.length) throw new ErrConfChangeDecode("truncated fixed field");
  return cc;
}
