/**
 * etcdctl put / get / del against real etcd and the server under test (see diff-suite.ts).
 * Every case uses its own key prefix; cases run in order on one pair of servers.
 */
import { describe } from "vitest";
import { diffSuite } from "./diff-suite.js";

describe("etcdctl kv", () => {
  const s = diffSuite("kv");

  s.case("put and get in every output format", async (c) => {
    await c.ctl(["put", "basic/foo", "bar"]);
    await c.ctl(["get", "basic/foo"]);
    await c.ctl(["get", "basic/foo", "-w", "json"]);
    await c.ctl(["get", "basic/foo", "-w", "fields"]);
    await c.ctl(["get", "basic/foo", "-w", "protobuf"]);
    await c.ctl(["get", "basic/foo", "-w", "table"]);
    await c.ctl(["put", "basic/foo", "bar2", "-w", "json"]);
    await c.ctl(["put", "basic/foo", "bar3", "-w", "fields"]);
    await c.ctl(["put", "basic/foo", "bar4", "-w", "protobuf"]);
    await c.ctl(["get", "basic/foo", "-w", "json"]);
    await c.ctl(["get", "basic/missing"]);
    await c.ctl(["get", "basic/missing", "-w", "json"]);
    await c.ctl(["get", "basic/missing", "-w", "fields"]);
  });

  s.case("put --prev-kv", async (c) => {
    await c.ctl(["put", "prevkv/a", "1", "--prev-kv"]);
    await c.ctl(["put", "prevkv/a", "2", "--prev-kv"]);
    await c.ctl(["put", "prevkv/a", "3", "--prev-kv", "-w", "json"]);
    await c.ctl(["put", "prevkv/a", "4", "--prev-kv", "-w", "fields"]);
    await c.ctl(["put", "prevkv/b", "1", "--prev-kv", "-w", "json"]);
  });

  s.case("put with special keys and values", async (c) => {
    await c.ctl(["put", "special/space key", "value with spaces"]);
    await c.ctl(["put", "special/unicode-ключ", "значение ✓"]);
    await c.ctl(["put", "special/empty", ""]);
    await c.ctl(["put", "special/multi", "line1\nline2"]);
    await c.ctl(["put", "special/dash", "--", "-value-with-dash"]);
    await c.ctl(["put", "special/stdin"], { stdin: "from stdin" });
    await c.ctl(["get", "special/", "--prefix"]);
    await c.ctl(["get", "special/", "--prefix", "-w", "json"]);
    await c.ctl(["get", "special/", "--prefix", "--hex"]);
    await c.ctl(["get", "special/", "--prefix", "-w", "fields", "--hex"]);
  });

  s.case("put errors", async (c) => {
    await c.ctl(["put"]);
    await c.ctl(["put", "errors/k"]);
    await c.ctl(["put", "errors/k", "v", "extra"]);
    await c.ctl(["put", "errors/k", "v", "--lease=1234"]);
    await c.ctl(["put", "errors/k", "v", "--lease=xyz"]);
    await c.ctl(["put", "errors/k", "--ignore-value"]);
    await c.ctl(["put", "errors/missing", "--ignore-value"]);
    await c.ctl(["put", "errors/missing", "v", "--ignore-lease"]);
    await c.ctl(["put", "errors/missing", "--ignore-value", "--ignore-lease", "-w", "json"]);
    await c.ctl(["put", "errors/k", "v", "--ignore-value"]);
    await c.ctl(["put", "errors/k", "v", "--ignore-lease"]);
    await c.ctl(["put", "", "v"]);
    await c.ctl(["get", "errors/", "--prefix"]);
  });

  s.case("put --ignore-value and --ignore-lease", async (c) => {
    const lease = c.leaseId(await c.ctl(["lease", "grant", "600"]));
    await c.ctl(["put", "ignore/a", "v1", `--lease=${lease}`]);
    await c.ctl(["put", "ignore/a", "--ignore-value"]);
    await c.ctl(["get", "ignore/a", "-w", "json"]);
    await c.ctl(["put", "ignore/a", "v2", "--ignore-lease", "--prev-kv"]);
    await c.ctl(["get", "ignore/a", "-w", "json"]);
    await c.ctl(["put", "ignore/a", "--ignore-value", "--ignore-lease", "-w", "json"]);
    await c.ctl(["put", "ignore/a", "v3"]);
    await c.ctl(["get", "ignore/a", "-w", "fields"]);
    await c.ctl(["put", "ignore/b", "v1", `--lease=${lease}`]);
    await c.ctl(["put", "ignore/b", "v2", "--ignore-lease", "-w", "json", "--prev-kv"]);
    await c.ctl(["put", "ignore/b", "--ignore-value", "--ignore-lease"]);
    await c.ctl(["get", "ignore/", "--prefix", "-w", "json"]);
    await c.ctl(["lease", "revoke", lease]);
    await c.ctl(["get", "ignore/", "--prefix", "-w", "json"]);
    await c.ctl(["put", "ignore/b", "v3", "--ignore-lease"]);
    await c.ctl(["put", "ignore/b", "--ignore-value"]);
    await c.ctl(["put", "ignore/a", "v5", "--ignore-lease"]);
    await c.ctl(["get", "ignore/a", "-w", "json"]);
  });

  s.case("get ranges: prefix, from-key, range end", async (c) => {
    for (const k of ["a", "b", "b1", "c", "d", "e"]) await c.ctl(["put", `range/${k}`, `val-${k}`]);
    await c.ctl(["put", "rangf", "outside"]);
    await c.ctl(["get", "range/", "--prefix"]);
    await c.ctl(["get", "range/b", "range/d"]);
    await c.ctl(["get", "range/b", "range/b"]);
    await c.ctl(["get", "range/d", "range/b"]);
    await c.ctl(["get", "range/b", "--prefix"]);
    await c.ctl(["get", "range/c", "--from-key"]);
    await c.ctl(["get", "range/c", "--from-key", "--keys-only"]);
    await c.ctl(["get", "", "--prefix", "--keys-only"]);
    await c.ctl(["get", "rangf", "--from-key", "--limit=2", "-w", "json"]);
    await c.ctl(["get", "range/", "--prefix", "--from-key"]);
    await c.ctl(["get", "range/a", "range/z", "--prefix"]);
  });

  s.case("get limit, sort and order", async (c) => {
    // Values and versions deliberately sort differently from keys and revisions.
    const puts: Array<[string, string]> = [["c", "1"], ["a", "3"], ["b", "2"], ["a", "0"], ["d", "5"], ["b", "9"], ["b", "4"]];
    for (const [k, v] of puts) await c.ctl(["put", `sort/${k}`, v]);
    await c.ctl(["get", "sort/", "--prefix", "--limit=2"]);
    await c.ctl(["get", "sort/", "--prefix", "--limit=2", "-w", "json"]);
    await c.ctl(["get", "sort/", "--prefix", "--limit=2", "-w", "fields"]);
    for (const by of ["CREATE", "MODIFY", "VALUE", "VERSION", "KEY"]) {
      await c.ctl(["get", "sort/", "--prefix", `--sort-by=${by}`]);
      await c.ctl(["get", "sort/", "--prefix", `--sort-by=${by}`, "--order=DESCEND", "--keys-only"]);
      await c.ctl(["get", "sort/", "--prefix", `--sort-by=${by}`, "--order=ASCEND", "--limit=3", "--print-value-only"]);
    }
    await c.ctl(["get", "sort/", "--prefix", "--order=DESCEND"]);
    await c.ctl(["get", "sort/", "--prefix", "--order=DESCEND", "--limit=1", "-w", "json"]);
    await c.ctl(["get", "sort/", "--prefix", "--sort-by=BOGUS"]);
    await c.ctl(["get", "sort/", "--prefix", "--order=SIDEWAYS"]);
  });

  s.case("get output options", async (c) => {
    await c.ctl(["put", "opts/x", "1"]);
    await c.ctl(["put", "opts/y", "2"]);
    await c.ctl(["get", "opts/", "--prefix", "--keys-only"]);
    await c.ctl(["get", "opts/", "--prefix", "--keys-only", "-w", "json"]);
    // etcdctl 3.4 has no --count-only (added in 3.5): a client-side error, kept once to document it.
    await c.ctl(["get", "opts/", "--prefix", "--count-only"]);
    await c.ctl(["get", "opts/", "--prefix", "--print-value-only"]);
    await c.ctl(["get", "opts/", "--prefix", "--keys-only", "--print-value-only"]);
    await c.ctl(["get", "opts/", "--prefix", "--consistency=s"]);
    await c.ctl(["get", "opts/", "--prefix", "--consistency=s", "-w", "json"]);
    await c.ctl(["get", "opts/", "--prefix", "--consistency=l"]);
    await c.ctl(["get", "opts/", "--prefix", "--consistency=x"]);
    await c.ctl(["get"]);
    await c.ctl(["get", "opts/x", "opts/y", "opts/z"]);
    await c.ctl(["get", ""]);
    await c.ctl(["get", "", "opts/y"]);
    await c.ctl(["del", ""]);
    await c.ctl(["get", "opts/", "--prefix", "--limit=0"]);
    await c.ctl(["get", "opts/", "--prefix", "--limit=100", "-w", "json"]);
    await c.ctl(["get", "opts/", "--prefix", "--limit=-1"]);
  });

  s.case("get --rev and revision filters", async (c) => {
    await c.ctl(["put", "rev/a", "a1", "-w", "json"]);
    await c.ctl(["put", "rev/b", "b1"]);
    await c.ctl(["put", "rev/a", "a2"]);
    await c.ctl(["put", "rev/c", "c1"]);
    await c.ctl(["del", "rev/b"]);
    await c.ctl(["put", "rev/b", "b2"]);
    const head = JSON.parse((await c.ctl(["get", "rev/a", "-w", "json"])).stdout) as { header: { revision: number } };
    const h = head.header.revision;
    for (let r = h - 6; r <= h; r++) await c.ctl(["get", "rev/", "--prefix", `--rev=${r}`]);
    await c.ctl(["get", "rev/", "--prefix", `--rev=${h - 3}`, "-w", "json"]);
    await c.ctl(["get", "rev/", "--prefix", `--rev=${h + 1}`]);
    await c.ctl(["get", "rev/", "--prefix", `--rev=${h + 1000}`, "-w", "json"]);
    await c.ctl(["get", "rev/", "--prefix", "--rev=-1"]);
    await c.ctl(["get", "rev/", "--prefix", `--min-mod-revision=${h - 2}`]);
    await c.ctl(["get", "rev/", "--prefix", `--max-mod-revision=${h - 2}`]);
    await c.ctl(["get", "rev/", "--prefix", `--min-create-revision=${h - 4}`]);
    await c.ctl(["get", "rev/", "--prefix", `--max-create-revision=${h - 4}`]);
    await c.ctl(["get", "rev/", "--prefix", `--min-mod-revision=${h - 3}`, `--max-mod-revision=${h - 1}`, "-w", "json"]);
    await c.ctl(["get", "rev/", "--prefix", `--min-create-revision=${h - 5}`, "--limit=1", "-w", "json"]);
    await c.ctl(["get", "rev/", "--prefix", `--rev=${h - 2}`, `--max-mod-revision=${h - 4}`]);
  });

  s.case("del", async (c) => {
    for (const k of ["a", "b", "c", "d", "e", "f"]) await c.ctl(["put", `del/${k}`, k]);
    await c.ctl(["put", "del2", "z"]);
    await c.ctl(["del", "del/a"]);
    await c.ctl(["del", "del/a"]);
    await c.ctl(["del", "del/b", "--prev-kv"]);
    await c.ctl(["del", "del/c", "-w", "json", "--prev-kv"]);
    await c.ctl(["del", "del/missing", "-w", "json"]);
    await c.ctl(["del", "del/d", "-w", "fields", "--prev-kv"]);
    await c.ctl(["del", "del/e", "del/g"]);
    await c.ctl(["put", "del/a", "again"]);
    await c.ctl(["del", "del/", "--prefix", "--prev-kv"]);
    await c.ctl(["get", "del", "--prefix"]);
    for (const k of ["x", "y"]) await c.ctl(["put", `~delfrom/${k}`, k]);
    await c.ctl(["del", "~delfrom/y", "--from-key", "-w", "json"]);
    await c.ctl(["get", "~delfrom/", "--prefix"]);
    await c.ctl(["del"]);
    await c.ctl(["del", "a", "b", "c"]);
    await c.ctl(["del", "del/", "--prefix", "--from-key"]);
    await c.ctl(["del", "del2", "-w", "protobuf"]);
  });

  s.case("request size limits", async (c) => {
    // etcd's default --max-request-bytes is 1.5 MiB. (Messages over 2 MiB never leave etcdctl:
    // its gRPC send limit is 2 MiB.)
    const mib = 1024 * 1024;
    await c.ctl(["put", "size/1mib"], { stdin: "a".repeat(mib) });
    await c.ctl(["put", "size/1.7mib"], { stdin: "b".repeat(Math.floor(1.7 * mib)) });
    await c.ctl(["get", "size/", "--prefix", "--keys-only"]);
    await c.ctl(["txn"], { stdin: `\nput size/t1 ${"d".repeat(100_000)}\nput size/t2 ${"e".repeat(100_000)}\n\n\n` });
    await c.ctl(["get", "size/", "--prefix", "--keys-only", "-w", "json"]);
  });
});
