import { describe, expect, it } from "vitest";
import { InternalRaftRequest } from "@etcd-ts/proto/etcdserverpb/raft_internal";
import { PutResponse } from "@etcd-ts/proto/etcdserverpb/rpc";
import { encodeMessage, encodeMessageAfter } from "../../src/pkg/proto-encode.js";

describe("encodeMessage", () => {
  it("gives the bytes a fresh writer gives, call after call, small and large, each result its own", () => {
    const outs: Uint8Array[] = [];
    for (const n of [1, 300, 70_000, 5]) {
      const req = InternalRaftRequest.fromPartial({ ID: BigInt(n), put: { key: Buffer.from(`k${n}`), value: Buffer.alloc(n, 7) } });
      const out = encodeMessage(InternalRaftRequest, req);
      expect(Buffer.from(out).equals(Buffer.from(InternalRaftRequest.encode(req).finish()))).toBe(true);
      outs.push(out);
    }
    // Earlier results are not overwritten by later encodes.
    expect(InternalRaftRequest.decode(outs[1]!).put?.value.length).toBe(300);
    const header = { clusterId: 1n, memberId: 2n, revision: 3n, raftTerm: 4n };
    expect(PutResponse.decode(encodeMessage(PutResponse, { header, prevKv: undefined })).header).toEqual(header);
  });

  it("is reset after a message that fails to encode", () => {
    const bad = InternalRaftRequest.fromPartial({ ID: 1n, put: { key: Buffer.from("k"), value: Buffer.from("v"), lease: 1n << 70n } });
    expect(() => encodeMessage(InternalRaftRequest, bad)).toThrow();
    const good = InternalRaftRequest.fromPartial({ ID: 9n });
    expect(Buffer.from(encodeMessage(InternalRaftRequest, good)).equals(Buffer.from(InternalRaftRequest.encode(good).finish()))).toBe(true);
  });
});

describe("encodeMessageAfter", () => {
  it("gives the zero prefix then a fresh writer's bytes, each result its own, mixed with encodeMessage", () => {
    const outs: Buffer[] = [];
    for (const n of [1, 300, 70_000, 5]) {
      const req = InternalRaftRequest.fromPartial({ ID: BigInt(n), put: { key: Buffer.from(`k${n}`), value: Buffer.alloc(n, 7) } });
      const out = encodeMessageAfter(InternalRaftRequest, req, 5);
      expect(out).toBeInstanceOf(Buffer);
      expect(out.equals(Buffer.concat([Buffer.alloc(5), InternalRaftRequest.encode(req).finish()]))).toBe(true);
      // The shared writer is reset: a plain encode after it has no prefix.
      expect(Buffer.from(encodeMessage(InternalRaftRequest, req)).equals(Buffer.from(InternalRaftRequest.encode(req).finish()))).toBe(true);
      outs.push(out);
    }
    expect(InternalRaftRequest.decode(outs[1]!.subarray(5)).put?.value.length).toBe(300);
    expect(encodeMessageAfter(InternalRaftRequest, InternalRaftRequest.fromPartial({}), 0).length).toBe(0);
  });

  it("is reset after a message that fails to encode", () => {
    const bad = InternalRaftRequest.fromPartial({ ID: 1n, put: { key: Buffer.from("k"), value: Buffer.from("v"), lease: 1n << 70n } });
    expect(() => encodeMessageAfter(InternalRaftRequest, bad, 5)).toThrow();
    const good = InternalRaftRequest.fromPartial({ ID: 9n });
    expect(encodeMessageAfter(InternalRaftRequest, good, 5).equals(Buffer.concat([Buffer.alloc(5), InternalRaftRequest.encode(good).finish()]))).toBe(true);
  });
});
