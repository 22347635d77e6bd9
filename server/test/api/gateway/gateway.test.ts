/**
 * The HTTP gateway's JSON mapping (json-mapping.ts over schema.ts) and its status mapping
 * (gateway.ts). Expected texts come from etcd 3.4.23's gateway (grpc-gateway over jsonpb and Go's
 * encoding/json), recorded with curl against /usr/bin/etcd.
 */
import { describe, expect, it } from "vitest";
import { GATEWAY_SCHEMA } from "../../../src/api/gateway/schema.js";
import { GatewayCodec, GatewayInputError, JsonReader, decodeBase64Std } from "../../../src/api/gateway/json-mapping.js";
import { errorBody, httpStatusOf, streamErrorChunk } from "../../../src/api/gateway/gateway.js";
import { Compare_CompareResult, Compare_CompareTarget, RangeRequest_SortOrder } from "@etcd-ts/proto/etcdserverpb/rpc";

const codec = new GatewayCodec(GATEWAY_SCHEMA);
const b64 = (s: string): string => Buffer.from(s).toString("base64");

function decodeText(type: string, text: string): Record<string, unknown> {
  const v = new JsonReader(text).next();
  return v === undefined ? codec.empty(type) : codec.decode(type, v);
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayInputError);
    return (err as Error).message;
  }
  throw new Error("no error");
}

describe("gateway JSON output", () => {
  const header = { clusterId: 6878750039025194678n, memberId: 16142149176449103983n, revision: 4n, raftTerm: 2n };
  const headerJson = '{"cluster_id":"6878750039025194678","member_id":"16142149176449103983","revision":"4","raft_term":"2"}';

  it("writes .proto names in declaration order, int64 as strings, bytes as base64, defaults omitted", () => {
    const resp = {
      header, more: true, count: 2n,
      kvs: [{ key: Buffer.from("gw/a"), createRevision: 2n, modRevision: 4n, version: 2n, value: Buffer.from("3"), lease: 0n }],
    };
    expect(codec.encode("etcdserverpb.RangeResponse", resp)).toBe(
      `{"header":${headerJson},"kvs":[{"key":"Z3cvYQ==","create_revision":"2","mod_revision":"4","version":"2","value":"Mw=="}],"more":true,"count":"2"}`,
    );
    expect(codec.encode("etcdserverpb.RangeResponse", { header, kvs: [], more: false, count: 0n })).toBe(`{"header":${headerJson}}`);
  });

  it("writes nested oneofs and empty messages that are present", () => {
    const resp = {
      header, succeeded: true,
      responses: [{ responsePut: { header: { clusterId: 0n, memberId: 0n, revision: 5n, raftTerm: 0n } } }, { responseDeleteRange: {} }],
    };
    expect(codec.encode("etcdserverpb.TxnResponse", resp)).toBe(
      `{"header":${headerJson},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"5"}}},{"response_delete_range":{}}]}`,
    );
  });

  it("writes oneof members even at their default value, enums by name", () => {
    const cmp = { result: Compare_CompareResult.NOT_EQUAL, target: Compare_CompareTarget.VALUE, key: Buffer.from("a"), value: Buffer.alloc(0), rangeEnd: Buffer.alloc(0) };
    expect(codec.encode("etcdserverpb.Compare", cmp)).toBe('{"result":"NOT_EQUAL","target":"VALUE","key":"YQ==","value":""}');
    expect(codec.encode("etcdserverpb.Compare", { ...cmp, result: 0, target: 0 })).toBe('{"key":"YQ==","value":""}');
  });

  it("keeps uint64 above 2^63 and negative int64 exact; uint32 as a number", () => {
    expect(codec.encode("etcdserverpb.LeaseTimeToLiveResponse", { ID: 1234n, TTL: -1n, grantedTTL: 0n, keys: [] })).toBe('{"ID":"1234","TTL":"-1"}');
    expect(codec.encode("etcdserverpb.HashResponse", { header: undefined, hash: 3287440328 })).toBe('{"hash":3287440328}');
    expect(codec.encode("etcdserverpb.Member", { ID: 2n ** 64n - 1n, name: "n", peerURLs: ["http://a"], clientURLs: [], isLearner: false }))
      .toBe('{"ID":"18446744073709551615","name":"n","peerURLs":["http://a"]}');
  });
});

describe("gateway JSON input", () => {
  it("accepts .proto and camel names, int64 as number or string, enums by name or number", () => {
    const r = decodeText("etcdserverpb.RangeRequest", `{"key":"${b64("a")}","rangeEnd":"${b64("b")}","limit":"12","revision":3,"sort_order":"DESCEND","sortTarget":4,"keys_only":true,"bogus":[1]}`);
    expect(r.key).toEqual(Buffer.from("a"));
    expect(r.rangeEnd).toEqual(Buffer.from("b"));
    expect(r.limit).toBe(12n);
    expect(r.revision).toBe(3n);
    expect(r.sortOrder).toBe(RangeRequest_SortOrder.DESCEND);
    expect(r.sortTarget).toBe(4);
    expect(r.keysOnly).toBe(true);
    expect(r.countOnly).toBe(false);
    expect(r.minModRevision).toBe(0n);
    expect("bogus" in r).toBe(false);
  });

  it("fills ts-proto defaults; an empty body is an empty request; null leaves a field unset", () => {
    expect(decodeText("etcdserverpb.PutRequest", "  ")).toEqual({
      key: Buffer.alloc(0), value: Buffer.alloc(0), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false,
    });
    expect(decodeText("etcdserverpb.PutRequest", '{"key":null}').key).toEqual(Buffer.alloc(0));
  });

  it("decodes txn ops and compares into ts-proto oneof properties", () => {
    const t = decodeText("etcdserverpb.TxnRequest", JSON.stringify({
      compare: [{ key: b64("k"), target: "VERSION", result: "GREATER", version: 5 }, { key: b64("k"), target: "VALUE", value: "" }],
      success: [{ request_put: { key: b64("k"), value: b64("v") } }],
      failure: [{ request_delete_range: { key: b64("k"), prev_kv: true } }],
    }));
    const compare = t.compare as Array<Record<string, unknown>>;
    expect(compare[0]).toMatchObject({ target: Compare_CompareTarget.VERSION, result: Compare_CompareResult.GREATER, version: 5n });
    expect(compare[0].value).toBeUndefined();
    expect(compare[1].value).toEqual(Buffer.alloc(0));
    expect((t.success as Array<Record<string, Record<string, unknown>>>)[0].requestPut.value).toEqual(Buffer.from("v"));
    expect((t.failure as Array<Record<string, Record<string, unknown>>>)[0].requestDeleteRange.prevKv).toBe(true);
  });

  it("reads one value and ignores what follows it", () => {
    expect(decodeText("etcdserverpb.RangeRequest", `{"key":"YQ=="}xx`).key).toEqual(Buffer.from("a"));
    const reader = new JsonReader('{"ID":1} {"ID":"2"}\n');
    expect(codec.decode("etcdserverpb.LeaseKeepAliveRequest", reader.next()!).ID).toBe(1n);
    expect(codec.decode("etcdserverpb.LeaseKeepAliveRequest", reader.next()!).ID).toBe(2n);
    expect(reader.next()).toBeUndefined();
  });

  // Inputs and the error etcd 3.4's gateway answered with (code 3, HTTP 400).
  const cases: Array<[string, string, string]> = [
    ["etcdserverpb.PutRequest", "{not json", "invalid character 'n' looking for beginning of object key string"],
    ["etcdserverpb.RangeRequest", '{"key":"!!!not-base64"}', "illegal base64 data at input byte 0"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ"}', "illegal base64 data at input byte 0"],
    ["etcdserverpb.RangeRequest", '{"key":5}', "json: cannot unmarshal number into Go value of type []uint8"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==","limit":"x"}', "invalid character 'x' looking for beginning of value"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==","limit":""}', "unexpected end of JSON input"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==","limit":1.5}', "json: cannot unmarshal number 1.5 into Go value of type int64"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==","sort_order":"FOO"}', 'unknown value "FOO" for enum etcdserverpb.RangeRequest_SortOrder'],
    ["etcdserverpb.RangeRequest", "[1]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==","keys_only":"true"}', "json: cannot unmarshal string into Go value of type bool"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==" "x"}', "invalid character '\"' after object key:value pair"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==",}', "invalid character '}' looking for beginning of object key string"],
    ["etcdserverpb.RangeRequest", '{"key" 1}', "invalid character '1' after object key"],
    ["etcdserverpb.RangeRequest", '{"key":tru}', "invalid character '}' in literal true (expecting 'e')"],
    ["etcdserverpb.RangeRequest", '{"key":-x}', "invalid character 'x' in numeric literal"],
    ["etcdserverpb.RangeRequest", '{"key":1.x}', "invalid character 'x' after decimal point in numeric literal"],
    ["etcdserverpb.RangeRequest", '{"key":"a\\x"}', "invalid character 'x' in string escape code"],
    ["etcdserverpb.RangeRequest", '{"key":"YQ==', "unexpected EOF"],
    ["etcdserverpb.TxnRequest", '{"compare":{"key":"YQ=="}}', "json: cannot unmarshal object into Go value of type []json.RawMessage"],
  ];
  for (const [type, body, message] of cases) {
    it(`rejects ${body} with Go's message`, () => {
      expect(errorOf(() => decodeText(type, body))).toBe(message);
    });
  }
});

describe("Go-compatible base64", () => {
  it("decodes padded standard base64 and ignores line breaks", () => {
    expect(decodeBase64Std("Z3cvYQ==")).toEqual(Buffer.from("gw/a"));
    expect(decodeBase64Std("Z3cv\r\nYg==")).toEqual(Buffer.from("gw/b"));
    expect(decodeBase64Std("")).toEqual(Buffer.alloc(0));
  });
  const bad: Array<[string, number]> = [["YQ", 0], ["YQ=", 3], ["YQ=x", 2], ["Y Q==", 1], ["YQ==YQ==", 4], ["=", 0], ["YWJj-", 4], ["YWJjZA", 4]];
  for (const [input, offset] of bad) {
    it(`rejects ${JSON.stringify(input)} at byte ${offset}`, () => {
      expect(errorOf(() => decodeBase64Std(input))).toBe(`illegal base64 data at input byte ${offset}`);
    });
  }
});

describe("gateway statuses", () => {
  it("maps gRPC codes to HTTP statuses as etcd 3.4's grpc-gateway does", () => {
    const table: Array<[number, number]> = [[0, 200], [1, 408], [2, 500], [3, 400], [4, 504], [5, 404], [6, 409], [7, 403],
      [8, 429], [9, 412], [10, 409], [11, 400], [12, 501], [13, 500], [14, 503], [15, 500], [16, 401]];
    for (const [code, http] of table) expect([code, httpStatusOf(code)]).toEqual([code, http]);
  });
  it("writes error bodies in grpc-gateway's field order", () => {
    expect(errorBody(5, "etcdserver: requested lease not found")).toBe(
      '{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}',
    );
    expect(streamErrorChunk(14, "etcdserver: no leader")).toBe(
      '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}',
    );
  });
});
