import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { LeanMetadata } from "../../src/api/v3rpc/lean-path.js";

/** grpc-js's server-side metadata for these headers, as its server call builds it. */
function grpcJs(headers: Record<string, string | string[]>): Metadata {
  const m = Metadata.fromHttp2Headers(headers);
  for (const key of ["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "te", "content-type"]) m.remove(key);
  return m;
}

describe("LeanMetadata.get", () => {
  it("answers every key as grpc-js's Metadata does, asked twice (the second from what the first remembered)", () => {
    const headers: Record<string, string | string[]> = {
      ":path": "/etcdserverpb.KV/Put",
      ":authority": "127.0.0.1:2379",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": "5S",
      token: "abc.123",
      authorization: "basic-token",
      "x-multi": ["one", "two"],
      "x-bad-value": "caf\u00e9",
      "x-some-bin": Buffer.from("hi").toString("base64"),
      "user-agent": "grpc-go/1.26.0",
    };
    const keys = [
      "token", "Token", "TOKEN", "authorization", "x-multi", "x-bad-value", "x-some-bin", "X-Some-Bin", "user-agent",
      ":path", ":authority", "content-type", "te", "grpc-timeout", "absent", "bad key", "bad/key", "",
    ];
    const lean = new LeanMetadata(headers);
    const want = grpcJs(headers);
    for (let round = 0; round < 2; round++) {
      for (const key of keys) {
        if (key === "" || key === "bad key" || key === "bad/key") {
          expect(lean.get(key), key).toEqual([]);
          continue;
        }
        expect(lean.get(key), key).toEqual(want.get(key));
      }
    }
  });
});
