/**
 * Raft messages as etcd 3.4 members put them on the wire (raftpb.Message, proto2), straight from
 * and to our raft model, with no intermediate protobuf objects: the hot path of a cluster is a
 * MsgApp carrying many entries.
 *
 * Encoding, byte for byte what etcd's marshaller writes (proto/raftpb/raft.proto states it):
 *   Message           type 1, to 2, from 3, term 4, logTerm 5, index 6 (always), entries 7 (each),
 *                     commit 8, snapshot 9 (always, an empty Snapshot when there is none), reject
 *                     10, rejectHint 11 (always), context 12 (only when non-empty)
 *   Entry             type 1, term 2, index 3 (always), data 4 (only when non-empty)
 *   Snapshot          data 1 (only when non-empty), metadata 2 (always)
 *   SnapshotMetadata  conf_state 1, index 2, term 3 (always)
 *   ConfState         voters 1, learners 2, voters_outgoing 3, learners_next 4 (each, unpacked),
 *                     auto_leave 5 (always)
 * Our model has no "set but empty" bytes: etcd writes an empty Entry.Data or Message.Context it
 * received set-but-empty as a zero-length field, we write nothing; both decode to the same
 * message.
 *
 * Decoding accepts what etcd's unmarshaller accepts: fields in any order, repeated occurrences
 * (the last scalar wins, an embedded message merges, entries and IDs append), packed or unpacked
 * ConfState IDs, unknown fields of any wire type (skipped, groups included). It refuses with
 * RaftWireDecodeError what etcd refuses (truncation, wrong wire type for a known field, illegal
 * tags, varints over 10 bytes) and, beyond etcd, terms and indexes above 2^53 - 1, which our model
 * cannot hold. It allocates only in proportion to its input.
 */
import { EntryType, MessageType, NO_ENTRIES, type ConfState, type Entry, type Message, type NodeId, type Snapshot } from "../raft/types.js";

/** The bytes are not a raftpb message etcd would accept (or carry a value our model cannot hold). */
export class RaftWireDecodeError extends Error {
  override name = "RaftWireDecodeError";
}

const EMPTY = new Uint8Array(0);
const TWO_32 = 4294967296;

// ---- sizes -------------------------------------------------------------------------------------

/** Bytes of a varint holding a non-negative safe integer. */
function sizeOfNumber(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 4;
  v = Math.floor(v / 0x10000000);
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n + 1;
}

/**
 * The varint encodings of the node IDs encoded lately. A member's messages name a handful of IDs,
 * mostly above 2^53, whose encoding would otherwise take a few bigint operations (allocations)
 * per message. Looked up by comparison, not in a Map: a Map hashes a bigint key in C++ on every
 * lookup, and a message's size and bytes look up its two IDs twice each. Bounded, slots reused
 * round robin.
 */
const ID_ENCODINGS_MAX = 8;
const idEncodingKeys: bigint[] = [];
const idEncodingValues: Uint8Array[] = [];
let idEncodingNext = 0;

function idEncoding(v: bigint): Uint8Array {
  for (let i = 0; i < idEncodingKeys.length; i++) {
    if (idEncodingKeys[i] === v) return idEncodingValues[i]!;
  }
  const bytes: number[] = [];
  let x = v;
  while (x >= 0x80n) {
    bytes.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  bytes.push(Number(x));
  const enc = Uint8Array.from(bytes);
  const slot = idEncodingNext;
  idEncodingNext = (idEncodingNext + 1) % ID_ENCODINGS_MAX;
  idEncodingKeys[slot] = v;
  idEncodingValues[slot] = enc;
  return enc;
}

function sizeOfId(v: bigint): number {
  return v < 0x80n ? 1 : idEncoding(v).length;
}

function checkIndex(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`raft message ${what} ${v} is not a uint64 we can encode`);
}

function checkId(v: bigint, what: string): void {
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`raft message ${what} ${v} is not a uint64`);
}

/** The encoded size of an entry (without its field key and length prefix). */
export function entrySize(e: Entry): number {
  let n = 3 + sizeOfNumber(e.type) + sizeOfNumber(e.term) + sizeOfNumber(e.index);
  const d = e.data.byteLength;
  if (d > 0) n += 1 + sizeOfNumber(d) + d;
  return n;
}

function idsSize(ids: readonly NodeId[] | undefined): number {
  if (ids === undefined) return 0;
  let n = 0;
  for (const id of ids) n += 1 + sizeOfId(id);
  return n;
}

function confStateSize(cs: ConfState): number {
  return idsSize(cs.voters) + idsSize(cs.learners) + idsSize(cs.votersOutgoing) + idsSize(cs.learnersNext) + 2;
}

function metadataSize(s: Snapshot | undefined): number {
  if (s === undefined) return 8; // conf_state {auto_leave false}, index 0, term 0
  const cs = confStateSize(s.metadata.confState);
  return 1 + sizeOfNumber(cs) + cs + 1 + sizeOfNumber(s.metadata.index) + 1 + sizeOfNumber(s.metadata.term);
}

function snapshotSize(s: Snapshot | undefined): number {
  const md = metadataSize(s);
  let n = 1 + sizeOfNumber(md) + md;
  const d = s === undefined ? 0 : s.data.byteLength;
  if (d > 0) n += 1 + sizeOfNumber(d) + d;
  return n;
}

/** The encoded size of a message (etcd's Message.Size()). Checks the message's values. */
export function messageSize(m: Message): number {
  checkIndex(m.type, "type");
  checkIndex(m.term, "term");
  checkIndex(m.logTerm, "logTerm");
  checkIndex(m.index, "index");
  checkIndex(m.commit, "commit");
  checkIndex(m.rejectHint, "rejectHint");
  checkId(m.to, "to");
  checkId(m.from, "from");
  let n =
    6 + sizeOfNumber(m.type) + sizeOfId(m.to) + sizeOfId(m.from) + sizeOfNumber(m.term) + sizeOfNumber(m.logTerm) +
    sizeOfNumber(m.index);
  for (const e of m.entries) {
    checkIndex(e.term, "entry term");
    checkIndex(e.index, "entry index");
    checkIndex(e.type, "entry type");
    const s = entrySize(e);
    n += 1 + sizeOfNumber(s) + s;
  }
  n += 1 + sizeOfNumber(m.commit);
  const s = snapshotSize(m.snapshot);
  n += 1 + sizeOfNumber(s) + s;
  n += 2 + 1 + sizeOfNumber(m.rejectHint);
  const c = m.context.byteLength;
  if (c > 0) n += 1 + sizeOfNumber(c) + c;
  return n;
}

// ---- writing -----------------------------------------------------------------------------------

function writeNumber(out: Uint8Array, pos: number, v: number): number {
  while (v > 0x7fffffff) {
    out[pos++] = (v & 0x7f) | 0x80; // & takes the low 32 bits: the low 7 are exact
    v = Math.floor(v / 0x80);
  }
  while (v > 0x7f) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

function writeId(out: Uint8Array, pos: number, v: bigint): number {
  if (v < 0x80n) {
    out[pos] = Number(v);
    return pos + 1;
  }
  const enc = idEncoding(v);
  out.set(enc, pos);
  return pos + enc.length;
}

/** Writes an entry's fields (no key, no length prefix) at `pos`; returns the end. */
export function writeEntry(out: Uint8Array, pos: number, e: Entry): number {
  out[pos++] = 0x08;
  pos = writeNumber(out, pos, e.type);
  out[pos++] = 0x10;
  pos = writeNumber(out, pos, e.term);
  out[pos++] = 0x18;
  pos = writeNumber(out, pos, e.index);
  const d = e.data.byteLength;
  if (d > 0) {
    out[pos++] = 0x22;
    pos = writeNumber(out, pos, d);
    out.set(e.data, pos);
    pos += d;
  }
  return pos;
}

function writeIds(out: Uint8Array, pos: number, key: number, ids: readonly NodeId[] | undefined): number {
  if (ids === undefined) return pos;
  for (const id of ids) {
    out[pos++] = key;
    pos = writeId(out, pos, id);
  }
  return pos;
}

function writeSnapshot(out: Uint8Array, pos: number, s: Snapshot | undefined): number {
  out[pos++] = 0x4a;
  pos = writeNumber(out, pos, snapshotSize(s));
  if (s === undefined) {
    // metadata { conf_state {auto_leave false}, index 0, term 0 }
    out.set([0x12, 0x08, 0x0a, 0x02, 0x28, 0x00, 0x10, 0x00, 0x18, 0x00], pos);
    return pos + 10;
  }
  const d = s.data.byteLength;
  if (d > 0) {
    out[pos++] = 0x0a;
    pos = writeNumber(out, pos, d);
    out.set(s.data, pos);
    pos += d;
  }
  out[pos++] = 0x12;
  pos = writeNumber(out, pos, metadataSize(s));
  const cs = s.metadata.confState;
  out[pos++] = 0x0a;
  pos = writeNumber(out, pos, confStateSize(cs));
  pos = writeIds(out, pos, 0x08, cs.voters);
  pos = writeIds(out, pos, 0x10, cs.learners);
  pos = writeIds(out, pos, 0x18, cs.votersOutgoing);
  pos = writeIds(out, pos, 0x20, cs.learnersNext);
  out[pos++] = 0x28;
  out[pos++] = cs.autoLeave === true ? 1 : 0;
  out[pos++] = 0x10;
  pos = writeNumber(out, pos, s.metadata.index);
  out[pos++] = 0x18;
  pos = writeNumber(out, pos, s.metadata.term);
  return pos;
}

/**
 * Writes the message at `out[pos]`, which must have room for `messageSize(m)` bytes (the caller
 * computed it, e.g. for a length prefix); returns the end position.
 */
export function writeMessage(out: Uint8Array, pos: number, m: Message): number {
  out[pos++] = 0x08;
  pos = writeNumber(out, pos, m.type);
  out[pos++] = 0x10;
  pos = writeId(out, pos, m.to);
  out[pos++] = 0x18;
  pos = writeId(out, pos, m.from);
  out[pos++] = 0x20;
  pos = writeNumber(out, pos, m.term);
  out[pos++] = 0x28;
  pos = writeNumber(out, pos, m.logTerm);
  out[pos++] = 0x30;
  pos = writeNumber(out, pos, m.index);
  for (const e of m.entries) {
    out[pos++] = 0x3a;
    pos = writeNumber(out, pos, entrySize(e));
    pos = writeEntry(out, pos, e);
  }
  out[pos++] = 0x40;
  pos = writeNumber(out, pos, m.commit);
  pos = writeSnapshot(out, pos, m.snapshot);
  out[pos++] = 0x50;
  out[pos++] = m.reject ? 1 : 0;
  out[pos++] = 0x58;
  pos = writeNumber(out, pos, m.rejectHint);
  const c = m.context.byteLength;
  if (c > 0) {
    out[pos++] = 0x62;
    pos = writeNumber(out, pos, c);
    out.set(m.context, pos);
    pos += c;
  }
  return pos;
}

/**
 * etcd's marshalled form of the message (what Message.Marshal() returns).
 * @throws RangeError when a term or index is not a safe non-negative integer or an ID not a uint64.
 */
export function encodeMessage(m: Message): Uint8Array {
  const size = messageSize(m);
  const out = Buffer.allocUnsafe(size);
  const end = writeMessage(out, 0, m);
  if (end !== size) throw new Error(`raft message encoder wrote ${end} bytes, sized ${size}`);
  return out;
}

// ---- reading -----------------------------------------------------------------------------------

/** A cursor over one message's bytes; positions are absolute in `buf`. */
/** Node IDs decoded lately, by their low and high 32 bits: reused rather than allocated per message. */
const ID_CACHE_SIZE = 16;
const idCacheLo = new Uint32Array(ID_CACHE_SIZE);
const idCacheHi = new Uint32Array(ID_CACHE_SIZE);
const idCacheValue: bigint[] = [];
let idCacheNext = 0;

function cachedId(lo: number, hi: number): bigint {
  for (let i = 0; i < idCacheValue.length; i++) {
    if (idCacheLo[i] === lo && idCacheHi[i] === hi) return idCacheValue[i]!;
  }
  const v = hi === 0 ? BigInt(lo) : hi < 0x200000 ? BigInt(hi * TWO_32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
  const slot = idCacheNext;
  idCacheNext = (idCacheNext + 1) % ID_CACHE_SIZE;
  idCacheLo[slot] = lo;
  idCacheHi[slot] = hi;
  idCacheValue[slot] = v;
  return v;
}

class Reader {
  pos: number;
  /** The varint just read by varint64: low and high 32 bits. */
  lo = 0;
  hi = 0;
  /** Whether bytes() copies (else it returns views of buf). */
  copyBytes = false;
  constructor(
    public buf: Uint8Array,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  /** Starts over on `buf[start, end)` (the decoders reuse one reader: no object per message). */
  reset(buf: Uint8Array, start: number, end: number, copyBytes: boolean): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.lo = 0;
    this.hi = 0;
    this.copyBytes = copyBytes;
    this.tooWide = undefined;
    return this;
  }

  /** Reads a varint of up to 10 bytes into lo/hi (bits above 64 dropped, as etcd drops them). */
  varint64(): void {
    const buf = this.buf;
    let pos = this.pos;
    const end = this.end;
    let lo = 0;
    let hi = 0;
    let b: number;
    for (let shift = 0; shift < 28; shift += 7) {
      if (pos >= end) throw truncated();
      b = buf[pos++]!;
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) {
        this.pos = pos;
        this.lo = lo >>> 0;
        this.hi = 0;
        return;
      }
    }
    // 5th byte: 4 bits to lo, 3 to hi
    if (pos >= end) throw truncated();
    b = buf[pos++]!;
    lo |= (b & 0x0f) << 28;
    hi = (b & 0x7f) >> 4;
    if (b >= 0x80) {
      // bytes 6 to 10 fill hi from bit 3 on; the 10th keeps one bit, as etcd's does
      for (let shift = 3; ; shift += 7) {
        if (shift > 31) throw new RaftWireDecodeError("proto: integer overflow");
        if (pos >= end) throw truncated();
        b = buf[pos++]!;
        hi |= (b & 0x7f) << shift;
        if (b < 0x80) break;
      }
    }
    this.pos = pos;
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  /**
   * A varint that must fit a safe integer (terms, indexes). One that does not is noted in
   * `tooWide` and refused once the whole message has parsed, so that etcd's own errors, found
   * further on, take precedence.
   */
  number(what: string): number {
    this.varint64();
    if (this.hi >= 0x200000) this.tooWide ??= what;
    return this.hi * TWO_32 + this.lo;
  }

  /** The first term or index read that our model cannot hold. */
  tooWide: string | undefined;

  id(): bigint {
    this.varint64();
    return cachedId(this.lo, this.hi);
  }

  /** buf[start, end) as a view, or a copy of its own with copyBytes. */
  bytes(start: number, end: number): Uint8Array {
    return this.copyBytes ? this.buf.slice(start, end) : this.buf.subarray(start, end);
  }

  bool(): boolean {
    this.varint64();
    return this.lo !== 0 || this.hi !== 0;
  }

  /** A length prefix; returns the absolute end of the field's bytes. */
  lengthEnd(): number {
    this.varint64();
    const len = this.hi * TWO_32 + this.lo;
    if (this.hi >= 0x80000000) throw new RaftWireDecodeError("proto: negative length found during unmarshaling");
    const fieldEnd = this.pos + len;
    if (fieldEnd > this.end) throw truncated();
    return fieldEnd;
  }

  /** Skips a field of wire type `wire` whose key was just read (etcd's skip, groups included). */
  skip(wire: number, depth = 0): void {
    switch (wire) {
      case 0:
        this.varint64();
        return;
      case 1:
        if (this.pos + 8 > this.end) throw truncated();
        this.pos += 8;
        return;
      case 2:
        this.pos = this.lengthEnd();
        return;
      case 5:
        if (this.pos + 4 > this.end) throw truncated();
        this.pos += 4;
        return;
      case 3: {
        if (depth >= 64) throw new RaftWireDecodeError("raftpb: groups nested too deep");
        for (;;) {
          this.varint64();
          const inner = this.lo & 7;
          if (inner === 4) return;
          this.skip(inner, depth + 1);
        }
      }
      default:
        throw new RaftWireDecodeError(`proto: illegal wireType ${wire}`);
    }
  }

  /** Reads a field key; returns the field number, leaves the wire type in `this.lo & 7`. */
  key(message: string): number {
    this.varint64();
    const wire = this.lo & 7;
    const field = ((this.lo >>> 3) | (this.hi << 29)) | 0; // etcd takes int32(key >> 3)
    if (wire === 4) throw new RaftWireDecodeError(`proto: ${message}: wiretype end group for non-group`);
    if (field <= 0) {
      // etcd's text shows the whole key where it says "wire type"
      const key = (BigInt(this.hi) << 32n) | BigInt(this.lo);
      throw new RaftWireDecodeError(`proto: ${message}: illegal tag ${field} (wire type ${key})`);
    }
    return field;
  }
}

function truncated(): RaftWireDecodeError {
  return new RaftWireDecodeError("unexpected EOF");
}

function wrongWire(wire: number, field: string): RaftWireDecodeError {
  return new RaftWireDecodeError(`proto: wrong wireType = ${wire} for field ${field}`);
}

/** Reads one Entry occupying r.buf[r.pos, end); byte fields are views into the buffer. */
function readEntry(r: Reader, end: number): Entry {
  const outer = r.end;
  r.end = end;
  const e: Entry = { term: 0, index: 0, type: EntryType.Normal, data: EMPTY };
  while (r.pos < end) {
    const field = r.key("Entry");
    const wire = r.lo & 7;
    switch (field) {
      case 1:
        if (wire !== 0) throw wrongWire(wire, "Type");
        r.varint64();
        e.type = r.lo | 0; // etcd keeps the low 32 bits of the enum
        break;
      case 2:
        if (wire !== 0) throw wrongWire(wire, "Term");
        e.term = r.number("Entry.Term");
        break;
      case 3:
        if (wire !== 0) throw wrongWire(wire, "Index");
        e.index = r.number("Entry.Index");
        break;
      case 4: {
        if (wire !== 2) throw wrongWire(wire, "Data");
        const fe = r.lengthEnd();
        e.data = r.bytes(r.pos, fe);
        r.pos = fe;
        break;
      }
      default:
        r.skip(wire);
    }
  }
  r.end = outer;
  return e;
}

function readConfState(r: Reader, end: number, cs: ConfState): void {
  const outer = r.end;
  r.end = end;
  while (r.pos < end) {
    const field = r.key("ConfState");
    const wire = r.lo & 7;
    if (field >= 1 && field <= 4) {
      const list = idList(cs, field);
      if (wire === 0) list.push(r.id());
      else if (wire === 2) {
        const fe = r.lengthEnd();
        const inner = r.end;
        r.end = fe;
        while (r.pos < fe) list.push(r.id());
        r.end = inner;
      } else throw wrongWire(wire, ["Voters", "Learners", "VotersOutgoing", "LearnersNext"][field - 1]!);
    } else if (field === 5) {
      if (wire !== 0) throw wrongWire(wire, "AutoLeave");
      if (r.bool()) cs.autoLeave = true;
      else delete cs.autoLeave; // absent means false: decoded states compare equal to built ones
    } else r.skip(wire);
  }
  r.end = outer;
}

function idList(cs: ConfState, field: number): NodeId[] {
  switch (field) {
    case 1:
      return cs.voters;
    case 2:
      return cs.learners;
    case 3:
      return (cs.votersOutgoing ??= []);
    default:
      return (cs.learnersNext ??= []);
  }
}

function readMetadata(r: Reader, end: number, s: Snapshot): void {
  const outer = r.end;
  r.end = end;
  while (r.pos < end) {
    const field = r.key("SnapshotMetadata");
    const wire = r.lo & 7;
    switch (field) {
      case 1: {
        if (wire !== 2) throw wrongWire(wire, "ConfState");
        readConfState(r, r.lengthEnd(), s.metadata.confState);
        break;
      }
      case 2:
        if (wire !== 0) throw wrongWire(wire, "Index");
        s.metadata.index = r.number("SnapshotMetadata.Index");
        break;
      case 3:
        if (wire !== 0) throw wrongWire(wire, "Term");
        s.metadata.term = r.number("SnapshotMetadata.Term");
        break;
      default:
        r.skip(wire);
    }
  }
  r.end = outer;
}

function readSnapshot(r: Reader, end: number, s: Snapshot): void {
  const outer = r.end;
  r.end = end;
  while (r.pos < end) {
    const field = r.key("Snapshot");
    const wire = r.lo & 7;
    switch (field) {
      case 1: {
        if (wire !== 2) throw wrongWire(wire, "Data");
        const fe = r.lengthEnd();
        s.data = r.bytes(r.pos, fe);
        r.pos = fe;
        break;
      }
      case 2:
        if (wire !== 2) throw wrongWire(wire, "Metadata");
        readMetadata(r, r.lengthEnd(), s);
        break;
      default:
        r.skip(wire);
    }
  }
  r.end = outer;
}

/** The reader the decoders reuse (decoding is synchronous and never re-entered). */
const sharedReader = new Reader(EMPTY, 0, 0);

function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: EMPTY };
}

let scratchSnapshot = emptySnapshot();

/** The scratch snapshot, emptied (readSnapshot fills it field by field). */
function resetScratchSnapshot(): Snapshot {
  const s = scratchSnapshot;
  s.data = EMPTY;
  s.metadata.index = 0;
  s.metadata.term = 0;
  const cs = s.metadata.confState;
  if (cs.voters.length > 0) cs.voters = [];
  if (cs.learners.length > 0) cs.learners = [];
  delete cs.votersOutgoing;
  delete cs.learnersNext;
  delete cs.autoLeave;
  return s;
}

/** Whether a decoded snapshot is etcd's empty Snapshot (what non-MsgSnap messages carry). */
function isEmptySnapshot(s: Snapshot): boolean {
  const cs = s.metadata.confState;
  return (
    s.data.byteLength === 0 && s.metadata.index === 0 && s.metadata.term === 0 && cs.voters.length === 0 &&
    cs.learners.length === 0 && cs.votersOutgoing === undefined && cs.learnersNext === undefined && cs.autoLeave !== true
  );
}

/**
 * Decodes etcd's marshalled Message. The message's byte fields (entries' data, the snapshot's
 * data, the context) are views into `bytes`, which the caller hands over: it must not change
 * them afterwards (the stream decoders hand over a private copy of each frame). A snapshot that
 * is etcd's empty one (every message but MsgSnap carries it) is left out of the result.
 * @throws RaftWireDecodeError on bytes etcd would refuse, or values our model cannot hold.
 */
/**
 * Decodes one marshalled Message. Its entries' data, context and snapshot data are views of
 * `bytes`, or with `copyBytes` copies of their own (for bytes the caller reuses or that would
 * keep a larger buffer alive: a view of a stream's chunk).
 */
export function decodeMessage(bytes: Uint8Array, copyBytes = false): Message {
  return decodeMessageAt(bytes, 0, bytes.byteLength, copyBytes);
}

/** decodeMessage of the Message marshalled at bytes[start, end). */
export function decodeMessageAt(bytes: Uint8Array, start: number, end: number, copyBytes: boolean): Message {
  const r = sharedReader.reset(bytes, start, end, copyBytes);
  try {
    const m = readMessage(r, end);
    if (r.tooWide !== undefined) throw new RaftWireDecodeError(`raftpb: ${r.tooWide} does not fit 53 bits`);
    return m;
  } finally {
    r.buf = EMPTY; // holds no caller's bytes between calls
  }
}

function readMessage(r: Reader, end: number): Message {
  const m: Message = {
    type: MessageType.Hup, to: 0n, from: 0n, term: 0, logTerm: 0, index: 0, entries: NO_ENTRIES, commit: 0,
    reject: false, rejectHint: 0, context: EMPTY,
  };
  let snapshot: Snapshot | undefined;
  while (r.pos < end) {
    const field = r.key("Message");
    const wire = r.lo & 7;
    switch (field) {
      case 1:
        if (wire !== 0) throw wrongWire(wire, "Type");
        r.varint64();
        m.type = r.lo | 0;
        break;
      case 2:
        if (wire !== 0) throw wrongWire(wire, "To");
        m.to = r.id();
        break;
      case 3:
        if (wire !== 0) throw wrongWire(wire, "From");
        m.from = r.id();
        break;
      case 4:
        if (wire !== 0) throw wrongWire(wire, "Term");
        m.term = r.number("Message.Term");
        break;
      case 5:
        if (wire !== 0) throw wrongWire(wire, "LogTerm");
        m.logTerm = r.number("Message.LogTerm");
        break;
      case 6:
        if (wire !== 0) throw wrongWire(wire, "Index");
        m.index = r.number("Message.Index");
        break;
      case 7:
        if (wire !== 2) throw wrongWire(wire, "Entries");
        {
          const fe = r.lengthEnd();
          if (m.entries === NO_ENTRIES) m.entries = [];
          m.entries.push(readEntry(r, fe));
        }
        break;
      case 8:
        if (wire !== 0) throw wrongWire(wire, "Commit");
        m.commit = r.number("Message.Commit");
        break;
      case 9:
        if (wire !== 2) throw wrongWire(wire, "Snapshot");
        // Every message carries a snapshot, nearly always etcd's empty one: it is read into a
        // scratch snapshot, which only a message with a real one keeps.
        readSnapshot(r, r.lengthEnd(), (snapshot ??= resetScratchSnapshot()));
        break;
      case 10:
        if (wire !== 0) throw wrongWire(wire, "Reject");
        m.reject = r.bool();
        break;
      case 11:
        if (wire !== 0) throw wrongWire(wire, "RejectHint");
        m.rejectHint = r.number("Message.RejectHint");
        break;
      case 12: {
        if (wire !== 2) throw wrongWire(wire, "Context");
        const fe = r.lengthEnd();
        m.context = r.bytes(r.pos, fe);
        r.pos = fe;
        break;
      }
      default:
        r.skip(wire);
    }
  }
  if (snapshot !== undefined && !isEmptySnapshot(snapshot)) {
    m.snapshot = snapshot;
    scratchSnapshot = emptySnapshot();
  }
  return m;
}

/** Decodes one marshalled Entry at bytes[start, end) (msgappv2's compact frames carry them bare). */
export function decodeEntry(bytes: Uint8Array, start = 0, end = bytes.byteLength): Entry {
  const r = sharedReader.reset(bytes, start, end, false);
  try {
    const e = readEntry(r, end);
    if (r.tooWide !== undefined) throw new RaftWireDecodeError(`raftpb: ${r.tooWide} does not fit 53 bits`);
    return e;
  } finally {
    r.buf = EMPTY;
  }
}
