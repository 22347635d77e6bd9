/**
 * etcd's HTTP endpoints on the client port (the v3 JSON gateway that HTTP clients use, /version)
 * against real etcd and the server under test, through the same differential harness as the
 * etcdctl suites (see diff-suite.ts). Keys and values are base64 on the gateway; int64 fields
 * are JSON strings.
 */
import { describe } from "vitest";
import { diffSuite } from "./diff-suite.js";

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

describe("HTTP gateway", () => {
  const s = diffSuite("gateway");

  s.case("version", async (c) => {
    await c.http("GET", "/version");
  });

  s.case("the v2 API without --enable-v2", async (c) => {
    await c.http("GET", "/v2/keys/foo");
    await c.http("PUT", "/v2/keys/foo", "value=1", { contentType: "application/x-www-form-urlencoded" });
    await c.http("GET", "/v2/keys");
    await c.http("GET", "/v2/members");
    await c.http("POST", "/v2/members", { peerURLs: ["http://127.0.0.1:1"] });
    await c.http("GET", "/v2/machines");
    await c.http("GET", "/v2/stats/self");
  });

  s.case("kv: put, range, delete, txn, compaction", async (c) => {
    await c.http("POST", "/v3/kv/put", { key: b64("gw/a"), value: b64("1") });
    await c.http("POST", "/v3/kv/put", { key: b64("gw/b"), value: b64("2"), prev_kv: true });
    await c.http("POST", "/v3/kv/put", { key: b64("gw/a"), value: b64("3"), prev_kv: true });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/a") });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/"), range_end: b64("gw0") });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/"), range_end: b64("gw0"), limit: 1, sort_order: "DESCEND", sort_target: "VALUE" });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/"), range_end: b64("gw0"), count_only: true });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/"), range_end: b64("gw0"), keys_only: true, revision: 2 });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/missing") });
    await c.http("POST", "/v3/kv/txn", {
      compare: [{ key: b64("gw/a"), target: "VALUE", result: "EQUAL", value: b64("3") }],
      success: [{ request_put: { key: b64("gw/c"), value: b64("4") } }, { request_range: { key: b64("gw/c") } }],
      failure: [{ request_delete_range: { key: b64("gw/a") } }],
    });
    await c.http("POST", "/v3/kv/txn", {
      compare: [{ key: b64("gw/a"), target: "VERSION", result: "GREATER", version: 5 }],
      success: [],
      failure: [{ request_range: { key: b64("gw/a") } }],
    });
    await c.http("POST", "/v3/kv/deleterange", { key: b64("gw/b"), prev_kv: true });
    await c.http("POST", "/v3/kv/deleterange", { key: b64("gw/zzz") });
    await c.http("POST", "/v3/kv/compaction", { revision: 3 });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/a"), revision: 2 });
    await c.http("POST", "/v3/kv/range", { key: b64("gw/a"), revision: 1000 });
  });

  s.case("errors", async (c) => {
    await c.http("POST", "/v3/kv/put", { value: b64("no key") });
    await c.http("POST", "/v3/kv/put", "{not json");
    await c.http("POST", "/v3/kv/range", { key: "!!!not-base64" });
    await c.http("POST", "/v3/kv/put", { key: b64("gw/x"), value: b64("v"), lease: 1234 });
    await c.http("POST", "/v3/nope", {});
  });

  s.case("lease and cluster", async (c) => {
    await c.http("POST", "/v3/lease/timetolive", { ID: 1234 });
    await c.http("POST", "/v3/kv/lease/revoke", { ID: 1234 });
    await c.http("POST", "/v3/lease/leases", {});
    await c.http("POST", "/v3/cluster/member/list", {});
    await c.http("POST", "/v3/maintenance/status", {});
  });
});
