/**
 * Protobuf encoding through one reused writer. A fresh BinaryWriter starts with an empty buffer
 * and grows it by doubling from 128 bytes, so every message of a few hundred bytes cost three
 * allocations and copies before its final copy; on the hot paths (each proposal, each response)
 * that was 2-3% of the CPU under load. The shared writer keeps its grown buffer: one copy remains,
 * the result (`finish()` returns a fresh Uint8Array, so callers own it).
 *
 * Safe because encoding is synchronous and never reenters (no callbacks run while it encodes). A
 * message that fails to encode (an out-of-range value) leaves the writer reset.
 */
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import type { ByteArena } from "./byte-arena.js";

/** What ts-proto generates for each message. */
export interface MessageEncoder<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

const shared = new BinaryWriter();

/** `encoder.encode(message).finish()`, without a fresh writer per call. */
export function encodeMessage<T>(encoder: MessageEncoder<T>, message: T): Uint8Array {
  try {
    return encoder.encode(message, shared).finish();
  } catch (e) {
    shared.finish();
    throw e;
  }
}

/** Zero prefixes of 0 to 8 bytes, made once. */
const ZEROS = Array.from({ length: 9 }, (_, n) => new Uint8Array(n));

/** The writer's own state (private in @bufbuild/protobuf 2.x; checked below before it is used). */
interface WriterState {
  buffer: Uint8Array;
  pos: number;
  stackPos: number[];
}

/** Whether the writer keeps its bytes as `encodeShared` reads them (else it uses finish()). */
const writerStateReadable = ((): boolean => {
  const probe = new BinaryWriter().uint32(300) as unknown as Partial<WriterState>;
  return probe.buffer instanceof Uint8Array && probe.pos === 2 && Array.isArray(probe.stackPos) && probe.buffer[0] === 0xac && probe.buffer[1] === 0x02;
})();

/**
 * Encodes `message` into the shared writer, after `prefix` when given, and returns its bytes with
 * the writer reset: a view into the writer's buffer, valid until the next encode (the caller
 * copies it at once), or finish()'s own array when the writer's state is not readable.
 */
function encodeShared<T>(encoder: MessageEncoder<T>, message: T, prefix?: Uint8Array): Uint8Array {
  try {
    encoder.encode(message, prefix === undefined ? shared : shared.raw(prefix));
  } catch (e) {
    shared.finish();
    throw e;
  }
  if (!writerStateReadable) return shared.finish();
  const state = shared as unknown as WriterState;
  const bytes = state.buffer.subarray(0, state.pos);
  state.pos = 0;
  state.stackPos = [];
  return bytes;
}

/**
 * `encodeMessage` with `prefixBytes` zero bytes before the message, as a Buffer, in one copy: for
 * a frame header the caller fills in (gRPC's 5-byte length prefix) without a second copy of the
 * message into the frame. The copy is taken from Node's buffer pool (finish() allocates an
 * ArrayBuffer of its own per message, which costs more than the encoding of a small one).
 */
export function encodeMessageAfter<T>(encoder: MessageEncoder<T>, message: T, prefixBytes: number): Buffer {
  const bytes = encodeShared(encoder, message, ZEROS[prefixBytes] ?? new Uint8Array(prefixBytes));
  const out = Buffer.allocUnsafe(bytes.length);
  out.set(bytes);
  return out;
}

/**
 * `encodeMessage`, the bytes copied straight into `arena` (see byte-arena.ts): one copy, and no
 * ArrayBuffer of their own (finish() makes one per message).
 */
export function encodeMessageToArena<T>(encoder: MessageEncoder<T>, message: T, arena: ByteArena): Buffer {
  return arena.copy(encodeShared(encoder, message));
}
