/**
 * The gateway's message table (schema.ts) and its generator (scripts/gateway-schema-gen.ts): the
 * committed table is what the generator builds from proto/ and proto/gen, with .proto names,
 * protoc's json names and ts-proto's property names.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { buildSchema, checkoutSources, jsonNameOf, parseProto } from "../../../../scripts/gateway-schema-gen.js";
import { GATEWAY_SCHEMA } from "../../../src/api/gateway/schema.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

describe("gateway schema", () => {
  it("the committed table matches the .proto files and ts-proto output (regenerate with npm run proto)", () => {
    const { proto, ts } = checkoutSources(root);
    expect(buildSchema(proto, ts)).toEqual(GATEWAY_SCHEMA);
  });

  it("keeps .proto names and maps them to ts-proto's property names", () => {
    const names = (m: string): Array<[string, string]> => GATEWAY_SCHEMA.messages[m].fields.map((f) => [f.protoName, f.tsName]);
    expect(names("etcdserverpb.ResponseHeader")).toEqual([
      ["cluster_id", "clusterId"], ["member_id", "memberId"], ["revision", "revision"], ["raft_term", "raftTerm"],
    ]);
    expect(names("etcdserverpb.Member")).toEqual([
      ["ID", "ID"], ["name", "name"], ["peerURLs", "peerURLs"], ["clientURLs", "clientURLs"], ["isLearner", "isLearner"],
    ]);
    const ttl = GATEWAY_SCHEMA.messages["etcdserverpb.LeaseTimeToLiveResponse"].fields.map((f) => f.protoName);
    expect(ttl).toEqual(["header", "ID", "TTL", "grantedTTL", "keys"]);
  });

  it("json names follow protoc (underscores dropped, next letter upper-cased)", () => {
    expect(jsonNameOf("prev_kv")).toBe("prevKv");
    expect(jsonNameOf("ID")).toBe("ID");
    expect(jsonNameOf("peerURLs")).toBe("peerURLs");
    expect(jsonNameOf("range_end")).toBe("rangeEnd");
  });

  it("resolves nested enums, oneofs and cross-package types", () => {
    const p = parseProto(`syntax = "proto3"; package p;
      message A { enum E { X = 0; Y = 1; } E e = 1; oneof u { int64 n = 2; B b = 3; } repeated q.C cs = 4; }
      message B {}`);
    expect(p.messages.get("p.A")!.map((f) => [f.name, f.type, f.oneof ?? ""])).toEqual([
      ["e", "E", ""], ["n", "int64", "u"], ["b", "B", "u"], ["cs", "q.C", ""],
    ]);
    expect(p.enums.get("p.A.E")).toEqual([["X", 0], ["Y", 1]]);
    const compare = GATEWAY_SCHEMA.messages["etcdserverpb.Compare"].fields;
    expect(compare.find((f) => f.protoName === "target")).toMatchObject({ kind: "enum", typeName: "etcdserverpb.Compare.CompareTarget" });
    expect(compare.find((f) => f.protoName === "value")).toMatchObject({ kind: "bytes", oneof: "target_union" });
  });
});
