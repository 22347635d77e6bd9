import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { PutResponse, RangeResponse, ResponseHeader } from "@etcd-ts/proto/etcdserverpb/rpc";
import { describe, expect, it } from "vitest";
import { encodeResponseHeader, generatedResponseHeaderEncode, installResponseHeaderEncoder } from "../../src/api/v3rpc/response-header-encode.js";

const U64_MAX = (1n << 64n) - 1n;
const edges = [0n, 1n, 127n, 128n, 16383n, 16384n, (1n << 31n) - 1n, 1n << 31n, (1n << 32n) - 1n, 1n << 32n, (1n << 53n) + 1n, (1n << 63n) - 1n];

function generated(h: ResponseHeader): Uint8Array {
  return generatedResponseHeaderEncode(h, new BinaryWriter()).finish();
}

function fast(h: ResponseHeader): Uint8Array {
  return encodeResponseHeader(h, new BinaryWriter()).finish();
}

describe("encodeResponseHeader", () => {
  it("writes the generated encoder's bytes for every edge of every field", () => {
    const ids = [0n, 1n, 0x8e9e05c52164694dn, U64_MAX];
    for (const clusterId of ids) {
      for (const memberId of ids) {
        for (const revision of [...edges, -1n, -(1n << 63n)]) {
          for (const raftTerm of [...edges, U64_MAX]) {
            const h = { clusterId, memberId, revision, raftTerm };
            expect(fast(h)).toEqual(generated(h));
          }
        }
      }
    }
  });

  it("refuses what the generated encoder refuses, with its error", () => {
    const cases: ResponseHeader[] = [
      { clusterId: 1n << 64n, memberId: 1n, revision: 5n, raftTerm: 2n },
      { clusterId: 1n, memberId: -1n, revision: 5n, raftTerm: 2n },
      { clusterId: 1n, memberId: 2n, revision: 1n << 63n, raftTerm: 2n },
      { clusterId: 1n, memberId: 2n, revision: 5n, raftTerm: -1n },
    ];
    for (const h of cases) {
      expect(() => generated(h)).toThrow();
      expect(() => fast(h)).toThrow(/too large/);
    }
  });

  it("once installed, the generated response encoders write the same bytes as before", () => {
    const header = { clusterId: 0x1c3a5f7b9d2e4c6an, memberId: 0x2b4d6f8a1c3e5b7dn, revision: 123456n, raftTerm: 7n };
    const before = [
      PutResponse.encode({ header, prevKv: undefined }).finish(),
      RangeResponse.encode({ header, kvs: [], more: false, count: 3n }).finish(),
    ];
    installResponseHeaderEncoder();
    expect(ResponseHeader.encode).toBe(encodeResponseHeader);
    expect(PutResponse.encode({ header, prevKv: undefined }).finish()).toEqual(before[0]);
    expect(RangeResponse.encode({ header, kvs: [], more: false, count: 3n }).finish()).toEqual(before[1]);
  });
});
