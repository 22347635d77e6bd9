/**
 * etcdctl txn (requests read from stdin, with and without -i) against real etcd and the server
 * under test (see diff-suite.ts). etcdctl cannot express nested txns, so none are tested here.
 * Lease compares (`lease("k") = "<id>"`) are not tested either: etcdctl 3.4 panics while parsing
 * them ("panic: bad value" in clientv3.mustInt64orLeaseID) before sending anything.
 *
 * stdin format: compare lines, a blank line, success requests, a blank line, failure requests.
 */
import { describe } from "vitest";
import { diffSuite } from "./diff-suite.js";

/** Builds etcdctl's txn stdin from its three sections. */
function txn(compares: string[], success: string[], failure: string[]): string {
  return [...compares, "", ...success, "", ...failure, ""].join("\n") + "\n";
}

describe("etcdctl txn", () => {
  const s = diffSuite("txn");

  s.case("value compare: success and failure branches", async (c) => {
    await c.ctl(["put", "txn1/a", "1"]);
    await c.ctl(["put", "txn1/b", "x"]);
    const body = (v: string) => txn([`val("txn1/a") = "${v}"`], ["put txn1/a 2", "get txn1/a"], ["put txn1/b failed", "get txn1/b"]);
    await c.ctl(["txn"], { stdin: body("1") });
    await c.ctl(["txn"], { stdin: body("1") });
    await c.ctl(["txn", "-w", "json"], { stdin: body("2") });
    await c.ctl(["txn", "-w", "fields"], { stdin: body("nope") });
    await c.ctl(["txn", "-w", "protobuf"], { stdin: body("2") });
    await c.ctl(["get", "txn1/", "--prefix", "-w", "json"]);
  });

  s.case("compare operators on value, version, create and mod revisions", async (c) => {
    await c.ctl(["put", "txn2/k", "m"]);
    await c.ctl(["put", "txn2/k", "n"]);
    const rev = JSON.parse((await c.ctl(["get", "txn2/k", "-w", "json"])).stdout) as {
      kvs: Array<{ create_revision: number; mod_revision: number }>;
    };
    const create = rev.kvs[0]!.create_revision;
    const mod = rev.kvs[0]!.mod_revision;
    const compares = [
      `val("txn2/k") > "a"`, `val("txn2/k") < "a"`, `val("txn2/k") != "n"`, `value("txn2/k") = "n"`,
      `ver("txn2/k") = "2"`, `version("txn2/k") > "1"`, `ver("txn2/k") < "2"`, `ver("txn2/k") != "3"`,
      `c("txn2/k") = "${create}"`, `create("txn2/k") < "${create}"`, `c("txn2/k") > "${create - 1}"`,
      `m("txn2/k") = "${mod}"`, `mod("txn2/k") > "${mod}"`, `m("txn2/k") != "${mod}"`,
      `ver("txn2/missing") = "0"`, `c("txn2/missing") = "0"`, `val("txn2/missing") = ""`,
    ];
    for (const cmp of compares) {
      await c.ctl(["txn"], { stdin: txn([cmp], ["get txn2/k"], ["get txn2/missing"]) });
    }
    // Several compares: all must hold.
    await c.ctl(["txn", "-w", "json"], { stdin: txn([`ver("txn2/k") = "2"`, `val("txn2/k") = "n"`], ["put txn2/k o"], ["get txn2/k"]) });
    await c.ctl(["txn", "-w", "json"], { stdin: txn([`ver("txn2/k") = "3"`, `val("txn2/k") = "n"`], ["put txn2/k p"], ["get txn2/k"]) });
  });

  s.case("requests with flags inside a txn", async (c) => {
    for (const k of ["a", "b", "c"]) await c.ctl(["put", `txn4/${k}`, k]);
    await c.ctl(["txn", "-w", "json"], {
      stdin: txn([], ["get txn4/ --prefix", "get txn4/a txn4/c", "del txn4/c --prev-kv", "put txn4/d d --prev-kv", "get txn4/ --prefix --keys-only --limit=2"], []),
    });
    await c.ctl(["txn"], {
      stdin: txn([`ver("txn4/c") = "0"`], ["del txn4/ --prefix", "get txn4/ --prefix"], []),
    });
    await c.ctl(["txn", "-w", "fields"], { stdin: txn([], ["put txn4/e e", "get txn4/e", "del txn4/e"], []) });
    const rev = (JSON.parse((await c.ctl(["get", "txn4/", "--prefix", "-w", "json"])).stdout) as { header: { revision: number } }).header.revision;
    await c.ctl(["txn", "-w", "json"], {
      stdin: txn([], [
        `get txn4/ --prefix --rev=${rev - 3}`,
        "get txn4/ --prefix --sort-by=VALUE --order=DESCEND",
        "get txn4/ --from-key --limit=1",
        `get txn4/ --prefix --rev=${rev + 100}`,
      ], []),
    });
    await c.ctl(["get", "txn4/", "--prefix", "-w", "json"]);
  });

  s.case("empty and trivial txns", async (c) => {
    await c.ctl(["txn"], { stdin: "\n\n\n" });
    await c.ctl(["txn", "-w", "json"], { stdin: "\n\n\n" });
    await c.ctl(["txn"], { stdin: "" });
    await c.ctl(["txn"], { stdin: txn([`ver("txn5/x") = "1"`], [], []) });
    await c.ctl(["txn", "-w", "json"], { stdin: txn([`ver("txn5/x") = "0"`], ["put txn5/x 1"], []) });
  });

  s.case("interactive mode", async (c) => {
    await c.ctl(["put", "txn6/k", "v"]);
    await c.ctl(["txn", "-i"], { stdin: txn([`val("txn6/k") = "v"`], ["put txn6/k w", "get txn6/k"], ["get txn6/k"]) });
    await c.ctl(["txn", "--interactive", "-w", "json"], { stdin: txn([`val("txn6/k") = "v"`], ["put txn6/k w"], ["get txn6/k"]) });
  });

  s.case("txn errors", async (c) => {
    await c.ctl(["put", "txn7/k", "v"]);
    await c.ctl(["txn"], { stdin: txn([`bogus("txn7/k") = "v"`], ["get txn7/k"], []) });
    await c.ctl(["txn"], { stdin: txn([], ["frobnicate txn7/k"], []) });
    await c.ctl(["txn"], { stdin: txn([], ["put txn7/k a", "put txn7/k b"], []) });
    await c.ctl(["txn"], { stdin: txn([], ["put txn7/k a", "del txn7/k"], []) });
    await c.ctl(["txn"], { stdin: txn([], ["put txn7/j a", "get txn7/j", "del txn7/k"], []) });
    await c.ctl(["txn"], { stdin: txn([], ["put txn7/l a --lease=abc"], []) });
    await c.ctl(["txn"], { stdin: txn([], ["put txn7/l"], []) });
    await c.ctl(["txn", "extra-arg"], { stdin: txn([], [], []) });
    // Overlapping delete and put in one branch; the same in different branches is fine.
    await c.ctl(["txn"], { stdin: txn([], ["del txn7/ --prefix", "put txn7/x 1"], []) });
    await c.ctl(["txn"], { stdin: txn([`ver("txn7/k") = "1"`], ["del txn7/ --prefix"], ["put txn7/x 1"]) });
    // etcd's default --max-txn-ops is 128.
    const ops = (n: number) => Array.from({ length: n }, (_, i) => `put txn7/ops${i} v`);
    await c.ctl(["txn"], { stdin: txn([], ops(129), []) });
    await c.ctl(["txn"], { stdin: txn([], ops(128), []) });
    await c.ctl(["txn"], { stdin: txn(Array.from({ length: 129 }, () => `ver("txn7/k") = "1"`), [], []) });
    await c.ctl(["get", "txn7/", "--prefix", "-w", "json"]);
  });
});
