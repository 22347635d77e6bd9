/**
 * A deliberately tiny gRPC client for tests: unary calls over one HTTP/2 session, with protobuf
 * messages encoded and decoded by hand. It knows only the handful of etcd messages the
 * cross-process tests need (KV Put/Range, Cluster MemberList, Maintenance Status), so it works
 * against any etcd-compatible server without depending on generated code.
 *
 * Wire facts used (from etcd's public .proto files):
 *   ResponseHeader { uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; }
 *   KeyValue { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3; int64 version = 4;
 *              bytes value = 5; int64 lease = 6; }
 *   PutRequest { bytes key = 1; bytes value = 2; int64 lease = 3; bool prev_kv = 4; ... }
 *   PutResponse { ResponseHeader header = 1; KeyValue prev_kv = 2; }
 *   DeleteRangeRequest { bytes key = 1; bytes range_end = 2; bool prev_kv = 3; }
 *   DeleteRangeResponse { ResponseHeader header = 1; int64 deleted = 2; repeated KeyValue prev_kvs = 3; }
 *   RangeRequest { bytes key = 1; bytes range_end = 2; int64 limit = 3; int64 revision = 4; ...
 *                  bool serializable = 7; ... }
 *   RangeResponse { ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; }
 *   MemberListResponse { ResponseHeader header = 1; repeated Member members = 2; }
 *   Member { uint64 ID = 1; string name = 2; repeated string peerURLs = 3; repeated string clientURLs = 4; bool isLearner = 5; }
 *   StatusResponse { header = 1; string version = 2; int64 dbSize = 3; uint64 leader = 4;
 *                    uint64 raftIndex = 5; uint64 raftTerm = 6; uint64 raftAppliedIndex = 7; ... }
 */
import http2 from "node:http2";

// ---------------------------------------------------------------------------------------------
// Protobuf encoding (only varint and length-delimited fields are needed).

function encodeVarint(value: bigint, out: number[]): void {
  let v = BigInt.asUintN(64, value);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/** Builds a protobuf message field by field; fields are written in the order they are added. */
export class ProtoWriter {
  private readonly bytes: number[] = [];

  varint(field: number, value: bigint | number | boolean): this {
    const v = typeof value === "boolean" ? (value ? 1n : 0n) : BigInt(value);
    if (v === 0n) return this; // proto3 default values are not written
    encodeVarint(BigInt((field << 3) | 0), this.bytes);
    encodeVarint(v, this.bytes);
    return this;
  }

  bytesField(field: number, value: Uint8Array | string): this {
    const b = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    if (b.length === 0) return this;
    encodeVarint(BigInt((field << 3) | 2), this.bytes);
    encodeVarint(BigInt(b.length), this.bytes);
    for (const x of b) this.bytes.push(x);
    return this;
  }

  finish(): Buffer {
    return Buffer.from(this.bytes);
  }
}

/** One decoded field: varints as bigint, length-delimited fields as raw bytes. */
export type ProtoValue = bigint | Buffer;

/** Decodes one message level into field number -> values (in wire order). Throws on malformed input. */
export function decodeFields(buf: Buffer): Map<number, ProtoValue[]> {
  const fields = new Map<number, ProtoValue[]>();
  let pos = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) throw new Error("protobuf: truncated varint");
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
    throw new Error("protobuf: varint too long");
  };
  while (pos < buf.length) {
    const tag = readVarint();
    const field = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    let value: ProtoValue;
    switch (wireType) {
      case 0:
        value = readVarint();
        break;
      case 1:
        value = buf.subarray(pos, pos + 8);
        pos += 8;
        break;
      case 2: {
        const len = Number(readVarint());
        if (pos + len > buf.length) throw new Error("protobuf: truncated bytes field");
        value = buf.subarray(pos, pos + len);
        pos += len;
        break;
      }
      case 5:
        value = buf.subarray(pos, pos + 4);
        pos += 4;
        break;
      default:
        throw new Error(`protobuf: unsupported wire type ${wireType}`);
    }
    const list = fields.get(field);
    if (list) list.push(value);
    else fields.set(field, [value]);
  }
  return fields;
}

function intField(fields: Map<number, ProtoValue[]>, n: number): bigint {
  const v = fields.get(n)?.[0];
  if (v === undefined) return 0n;
  if (typeof v !== "bigint") throw new Error(`protobuf: field ${n} is not a varint`);
  return BigInt.asIntN(64, v);
}

function bytesField(fields: Map<number, ProtoValue[]>, n: number): Buffer {
  const v = fields.get(n)?.[0];
  if (v === undefined) return Buffer.alloc(0);
  if (typeof v === "bigint") throw new Error(`protobuf: field ${n} is not length-delimited`);
  return v;
}

function messages(fields: Map<number, ProtoValue[]>, n: number): Buffer[] {
  return (fields.get(n) ?? []).map((v) => {
    if (typeof v === "bigint") throw new Error(`protobuf: field ${n} is not a message`);
    return v;
  });
}

// ---------------------------------------------------------------------------------------------
// etcd messages.

export interface ResponseHeader {
  clusterId: bigint;
  memberId: bigint;
  revision: bigint;
  raftTerm: bigint;
}

export interface KeyValue {
  key: string;
  createRevision: bigint;
  modRevision: bigint;
  version: bigint;
  value: string;
  lease: bigint;
}

export interface Member {
  id: bigint;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface StatusResponse {
  header: ResponseHeader;
  version: string;
  leader: bigint;
  raftIndex: bigint;
  raftTerm: bigint;
  raftAppliedIndex: bigint;
}

function decodeHeader(buf: Buffer): ResponseHeader {
  const f = decodeFields(buf);
  return {
    clusterId: BigInt.asUintN(64, intField(f, 1)),
    memberId: BigInt.asUintN(64, intField(f, 2)),
    revision: intField(f, 3),
    raftTerm: BigInt.asUintN(64, intField(f, 4)),
  };
}

function decodeKeyValue(buf: Buffer): KeyValue {
  const f = decodeFields(buf);
  return {
    key: bytesField(f, 1).toString("utf8"),
    createRevision: intField(f, 2),
    modRevision: intField(f, 3),
    version: intField(f, 4),
    value: bytesField(f, 5).toString("utf8"),
    lease: intField(f, 6),
  };
}

// ---------------------------------------------------------------------------------------------
// gRPC over HTTP/2.

/** A gRPC call that ended with a non-OK status. `code` is the gRPC status code. */
export class GrpcError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`grpc status ${code}: ${details}`);
  }
}

export interface GrpcLiteOptions {
  /** e.g. "http://127.0.0.1:23790" */
  url: string;
  /** Per-call deadline. */
  callTimeoutMs?: number;
}

/**
 * One HTTP/2 session to an etcd client URL. Calls fail (reject) on transport errors, timeouts and
 * non-OK gRPC statuses; the client never retries. `close()` must be called by the owner.
 */
export class GrpcLiteClient {
  private session: http2.ClientHttp2Session | undefined;
  private readonly callTimeoutMs: number;

  constructor(private readonly options: GrpcLiteOptions) {
    this.callTimeoutMs = options.callTimeoutMs ?? 5_000;
  }

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2.connect(this.options.url);
    session.on("error", () => {
      /* surfaced through the pending streams */
    });
    session.on("close", () => {
      if (this.session === session) this.session = undefined;
    });
    // Do not keep the test process alive just for an idle session.
    session.unref();
    this.session = session;
    return session;
  }

  /** Sends one unary request; resolves with the response message bytes. */
  unary(path: string, request: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.connect();
      } catch (err) {
        reject(err);
        return;
      }
      const frame = Buffer.alloc(5 + request.length);
      frame.writeUInt8(0, 0);
      frame.writeUInt32BE(request.length, 1);
      request.copy(frame, 5);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": `${this.callTimeoutMs}m`,
        });
      } catch (err) {
        session.destroy();
        reject(err);
        return;
      }
      const chunks: Buffer[] = [];
      let headers: http2.IncomingHttpHeaders = {};
      let settled = false;
      const finish = (err: Error | undefined, value?: Buffer): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value!);
      };
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(new Error(`grpc-lite: ${path} timed out after ${this.callTimeoutMs}ms`));
      }, this.callTimeoutMs);
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", (err) => finish(err));
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("close", () => {
        const status = trailers["grpc-status"] ?? headers["grpc-status"];
        if (status === undefined) {
          finish(new Error(`grpc-lite: ${path}: stream closed without grpc-status (rst ${stream.rstCode})`));
          return;
        }
        const code = Number(status);
        if (code !== 0) {
          const msg = String(trailers["grpc-message"] ?? headers["grpc-message"] ?? "");
          finish(new GrpcError(code, decodeURIComponent(msg)));
          return;
        }
        const body = Buffer.concat(chunks);
        if (body.length < 5) {
          finish(new Error(`grpc-lite: ${path}: empty response body`));
          return;
        }
        const len = body.readUInt32BE(1);
        finish(undefined, body.subarray(5, 5 + len));
      });
      stream.end(frame);
    });
  }

  async put(key: string, value: string, opts: { lease?: bigint } = {}): Promise<ResponseHeader> {
    const req = new ProtoWriter().bytesField(1, key).bytesField(2, value).varint(3, opts.lease ?? 0n).finish();
    const res = decodeFields(await this.unary("/etcdserverpb.KV/Put", req));
    return decodeHeader(bytesField(res, 1));
  }

  /** DeleteRange { key = 1; range_end = 2; prev_kv = 3 } -> { header = 1; deleted = 2 }. */
  async deleteRange(key: string, opts: { rangeEnd?: string } = {}): Promise<{ header: ResponseHeader; deleted: bigint }> {
    const req = new ProtoWriter().bytesField(1, key).bytesField(2, opts.rangeEnd ?? "").finish();
    const res = decodeFields(await this.unary("/etcdserverpb.KV/DeleteRange", req));
    return { header: decodeHeader(bytesField(res, 1)), deleted: intField(res, 2) };
  }

  async range(
    key: string,
    opts: { rangeEnd?: string; revision?: bigint; limit?: bigint; serializable?: boolean } = {},
  ): Promise<{ header: ResponseHeader; kvs: KeyValue[]; more: boolean; count: bigint }> {
    const req = new ProtoWriter()
      .bytesField(1, key)
      .bytesField(2, opts.rangeEnd ?? "")
      .varint(3, opts.limit ?? 0n)
      .varint(4, opts.revision ?? 0n)
      .varint(7, opts.serializable ?? false)
      .finish();
    const res = decodeFields(await this.unary("/etcdserverpb.KV/Range", req));
    return {
      header: decodeHeader(bytesField(res, 1)),
      kvs: messages(res, 2).map(decodeKeyValue),
      more: intField(res, 3) !== 0n,
      count: intField(res, 4),
    };
  }

  /**
   * A compare-and-set transaction: if `key`'s value equals `expected` (undefined: the key is
   * absent, i.e. its version is 0) put `value`, else read the key. Answers whether it succeeded
   * and, when not, what it read.
   */
  async txnCas(key: string, expected: string | undefined, value: string): Promise<{ header: ResponseHeader; succeeded: boolean; current: KeyValue | undefined }> {
    // Compare { result = 1 (EQUAL=0), target = 2 (VERSION=0, VALUE=3), key = 3, version = 4, value = 7 }
    const compare = expected === undefined
      ? new ProtoWriter().bytesField(3, key).finish()
      : new ProtoWriter().varint(2, 3).bytesField(3, key).bytesField(7, expected).finish();
    // RequestOp { request_range = 1, request_put = 2 }
    const put = new ProtoWriter().bytesField(2, new ProtoWriter().bytesField(1, key).bytesField(2, value).finish()).finish();
    const get = new ProtoWriter().bytesField(1, new ProtoWriter().bytesField(1, key).finish()).finish();
    // TxnRequest { compare = 1, success = 2, failure = 3 }
    const req = new ProtoWriter().bytesField(1, compare).bytesField(2, put).bytesField(3, get).finish();
    const res = decodeFields(await this.unary("/etcdserverpb.KV/Txn", req));
    const succeeded = intField(res, 2) !== 0n;
    let current: KeyValue | undefined;
    if (!succeeded) {
      const op = decodeFields(messages(res, 3)[0] ?? Buffer.alloc(0));
      const range = decodeFields(bytesField(op, 1));
      const kv = messages(range, 2)[0];
      current = kv === undefined ? undefined : decodeKeyValue(kv);
    }
    return { header: decodeHeader(bytesField(res, 1)), succeeded, current };
  }

  async memberList(): Promise<{ header: ResponseHeader; members: Member[] }> {
    const res = decodeFields(await this.unary("/etcdserverpb.Cluster/MemberList", Buffer.alloc(0)));
    return {
      header: decodeHeader(bytesField(res, 1)),
      members: messages(res, 2).map((m) => {
        const f = decodeFields(m);
        return {
          id: BigInt.asUintN(64, intField(f, 1)),
          name: bytesField(f, 2).toString("utf8"),
          peerUrls: messages(f, 3).map((b) => b.toString("utf8")),
          clientUrls: messages(f, 4).map((b) => b.toString("utf8")),
          isLearner: intField(f, 5) !== 0n,
        };
      }),
    };
  }

  async status(): Promise<StatusResponse> {
    const res = decodeFields(await this.unary("/etcdserverpb.Maintenance/Status", Buffer.alloc(0)));
    return {
      header: decodeHeader(bytesField(res, 1)),
      version: bytesField(res, 2).toString("utf8"),
      leader: BigInt.asUintN(64, intField(res, 4)),
      raftIndex: BigInt.asUintN(64, intField(res, 5)),
      raftTerm: BigInt.asUintN(64, intField(res, 6)),
      raftAppliedIndex: BigInt.asUintN(64, intField(res, 7)),
    };
  }

  /** HashKVRequest { int64 revision = 1 } -> HashKVResponse { header = 1; uint32 hash = 2; int64 compact_revision = 3 }. */
  async hashKv(revision: bigint): Promise<{ header: ResponseHeader; hash: bigint; compactRevision: bigint }> {
    const req = new ProtoWriter().varint(1, revision).finish();
    const res = decodeFields(await this.unary("/etcdserverpb.Maintenance/HashKV", req));
    return { header: decodeHeader(bytesField(res, 1)), hash: BigInt.asUintN(32, intField(res, 2)), compactRevision: intField(res, 3) };
  }

  close(): void {
    this.session?.close();
    this.session?.destroy();
    this.session = undefined;
  }
}
