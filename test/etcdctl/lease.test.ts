/**
 * etcdctl lease grant / keep-alive --once / timetolive / list / revoke, keys attached to leases,
 * and expiry, against real etcd and the server under test (see diff-suite.ts). Lease IDs and the
 * remaining TTL are normalised (diff-suite.ts explains why); every case revokes the leases it
 * granted so that `lease list` in a later case sees only its own.
 */
import { describe } from "vitest";
import { diffSuite, sleep } from "./diff-suite.js";

describe("etcdctl lease", () => {
  const s = diffSuite("lease");

  s.case("grant, timetolive, keep-alive --once, revoke in every format", async (c) => {
    const a = c.leaseId(await c.ctl(["lease", "grant", "600"]));
    const b = c.leaseId(await c.ctl(["lease", "grant", "300", "-w", "json"]));
    const d = c.leaseId(await c.ctl(["lease", "grant", "120", "-w", "fields"]));
    await c.ctl(["put", "l1/a1", "x", `--lease=${a}`]);
    await c.ctl(["put", "l1/a2", "y", `--lease=${a}`]);
    await c.ctl(["put", "l1/b", "z", `--lease=${b}`]);
    await c.ctl(["get", "l1/", "--prefix", "-w", "json"]);
    // etcd lists a lease's keys in Go map order, so --keys is only asked of single-key leases.
    await c.ctl(["lease", "timetolive", a]);
    await c.ctl(["lease", "timetolive", a, "-w", "json"]);
    await c.ctl(["lease", "timetolive", b, "--keys"]);
    await c.ctl(["lease", "timetolive", b, "--keys", "-w", "json"]);
    await c.ctl(["lease", "timetolive", b, "-w", "json"]);
    await c.ctl(["lease", "timetolive", b, "--keys", "-w", "fields"]);
    await c.ctl(["lease", "timetolive", d, "--keys"]);
    await c.ctl(["lease", "keep-alive", "--once", a]);
    await c.ctl(["lease", "keep-alive", "--once", b, "-w", "json"]);
    await c.ctl(["lease", "keep-alive", "--once", d, "-w", "fields"]);
    await c.ctl(["lease", "list"], { sortLines: true });
    await c.ctl(["lease", "revoke", d, "-w", "json"]);
    await c.ctl(["lease", "revoke", b, "-w", "fields"]);
    await c.ctl(["get", "l1/", "--prefix"]);
    await c.ctl(["lease", "list", "-w", "json"]);
    await c.ctl(["lease", "list", "-w", "fields"]);
    await c.ctl(["lease", "revoke", a]);
    await c.ctl(["get", "l1/", "--prefix", "-w", "json"]);
    await c.ctl(["lease", "list"]);
    await c.ctl(["lease", "list", "-w", "json"]);
  });

  s.case("revoked leases", async (c) => {
    const a = c.leaseId(await c.ctl(["lease", "grant", "600"]));
    await c.ctl(["put", "l2/k", "v", `--lease=${a}`]);
    await c.ctl(["lease", "revoke", a]);
    await c.ctl(["lease", "revoke", a]);
    await c.ctl(["lease", "timetolive", a]);
    await c.ctl(["lease", "timetolive", a, "--keys", "-w", "json"]);
    await c.ctl(["lease", "keep-alive", "--once", a]);
    await c.ctl(["put", "l2/k", "v", `--lease=${a}`]);
    await c.ctl(["get", "l2/", "--prefix", "-w", "json"]);
  });

  s.case("lease argument errors and nonexistent leases", async (c) => {
    await c.ctl(["lease", "grant"]);
    await c.ctl(["lease", "grant", "abc"]);
    await c.ctl(["lease", "grant", "10", "20"]);
    await c.ctl(["lease", "revoke"]);
    await c.ctl(["lease", "revoke", "zz"]);
    await c.ctl(["lease", "revoke", "123456"]);
    await c.ctl(["lease", "timetolive", "123456"]);
    await c.ctl(["lease", "timetolive", "123456", "-w", "json"]);
    await c.ctl(["lease", "timetolive"]);
    await c.ctl(["lease", "keep-alive", "--once", "123456"]);
    await c.ctl(["lease", "keep-alive", "--once"]);
    await c.ctl(["lease", "list", "extra"]);
  });

  s.case("revoking a lease deletes its keys in one revision, in key order", async (c) => {
    const head = JSON.parse((await c.ctl(["get", "l6-probe", "-w", "json"])).stdout) as { header: { revision: number } };
    const a = c.leaseId(await c.ctl(["lease", "grant", "600"]));
    for (const k of ["m", "c", "x", "a"]) await c.ctl(["put", `l6/${k}`, k, `--lease=${a}`]);
    await c.ctl(["put", "l6/free", "f"]);
    await c.ctl(["lease", "revoke", a]);
    const w = c.background(["watch", "l6/", "--prefix", "--prev-kv", `--rev=${head.header.revision + 1}`, "-w", "json"]);
    await w.waitForMatches(/[{,]"kv":/g, 9);
    await w.stop();
    await c.ctl(["get", "l6/", "--prefix", "-w", "json"]);
  });

  s.case("TTL bounds", async (c) => {
    // etcd's maximum lease TTL is 9000000000 s.
    await c.ctl(["lease", "grant", "9000000001"]);
    const big = c.leaseId(await c.ctl(["lease", "grant", "9000000000"]));
    await c.ctl(["lease", "timetolive", big]);
    await c.ctl(["lease", "revoke", big]);
  });

  s.case("minimum TTL and expiry", async (c) => {
    // etcd raises TTLs below its minimum (derived from the election timeout) to that minimum.
    const short = c.leaseId(await c.ctl(["lease", "grant", "1"]));
    const zero = c.leaseId(await c.ctl(["lease", "grant", "0", "-w", "json"]));
    await c.ctl(["put", "l4/short", "s", `--lease=${short}`]);
    await c.ctl(["put", "l4/zero", "z", `--lease=${zero}`]);
    await c.ctl(["put", "l4/stay", "v"]);
    const head = JSON.parse((await c.ctl(["get", "l4/", "--prefix", "-w", "json"])).stdout) as { header: { revision: number } };
    // Both leases (2 s) must have expired and their keys been deleted well within 6 s.
    await sleep(6_000);
    await c.ctl(["get", "l4/", "--prefix", "-w", "json"]);
    // The expiry delete as a watcher sees it. (One key only: two leases expiring together are
    // revoked in no defined order.)
    const w = c.background(["watch", "l4/short", "--prev-kv", `--rev=${head.header.revision - 2}`]);
    await w.waitForLines(/^(PUT|DELETE)$/, 3);
    await w.stop();
    await c.ctl(["lease", "timetolive", short]);
    await c.ctl(["lease", "keep-alive", "--once", zero]);
    await c.ctl(["lease", "list"]);
  });

  s.case("keep-alive extends a short lease", async (c) => {
    const a = c.leaseId(await c.ctl(["lease", "grant", "3"]));
    await c.ctl(["put", "l5/k", "v", `--lease=${a}`]);
    for (let i = 0; i < 4; i++) {
      await sleep(1_000);
      await c.ctl(["lease", "keep-alive", "--once", a]);
    }
    await c.ctl(["get", "l5/k"]);
    await c.ctl(["lease", "revoke", a]);
    await c.ctl(["get", "l5/k"]);
  });

  s.case("keys moving between leases", async (c) => {
    const a = c.leaseId(await c.ctl(["lease", "grant", "600"]));
    const b = c.leaseId(await c.ctl(["lease", "grant", "600"]));
    await c.ctl(["put", "l8/detach", "1", `--lease=${a}`]);
    await c.ctl(["put", "l8/move", "1", `--lease=${a}`]);
    await c.ctl(["put", "l8/gone", "1", `--lease=${a}`]);
    await c.ctl(["put", "l8/detach", "2"]);
    await c.ctl(["put", "l8/move", "2", `--lease=${b}`]);
    await c.ctl(["del", "l8/gone"]);
    await c.ctl(["lease", "timetolive", a, "--keys"]);
    await c.ctl(["lease", "timetolive", b, "--keys"]);
    await c.ctl(["lease", "revoke", a]);
    await c.ctl(["get", "l8/", "--prefix", "-w", "json"]);
    await c.ctl(["lease", "revoke", b]);
    await c.ctl(["get", "l8/", "--prefix", "-w", "json"]);
    const head = JSON.parse((await c.ctl(["get", "l8/", "--prefix", "-w", "json"])).stdout) as { header: { revision: number } };
    const w = c.background(["watch", "l8/", "--prefix", `--rev=${head.header.revision - 6}`]);
    await w.waitForLines(/^(PUT|DELETE)$/, 7);
    await w.stop();
  });

  s.case("streaming keep-alive", async (c) => {
    const a = c.leaseId(await c.ctl(["lease", "grant", "3"]));
    await c.ctl(["put", "l7/k", "v", `--lease=${a}`]);
    // etcdctl renews about every TTL/3 s; the number of lines depends on time, so only the
    // first two are compared.
    const ka = c.background(["lease", "keep-alive", a], { firstLines: 2 });
    await ka.waitForLines(/keepalived/, 2, 10_000);
    await sleep(3_500);
    await c.ctl(["get", "l7/k"]);
    await ka.stop();
    const kaJson = c.background(["lease", "keep-alive", a, "-w", "json"], { firstLines: 1 });
    await kaJson.waitForLines(/"TTL"/, 1, 10_000);
    await kaJson.stop();
    await c.ctl(["lease", "revoke", a]);
    // Keep-alive of a lease that is gone: etcdctl reports it and exits.
    const gone = c.background(["lease", "keep-alive", a]);
    await gone.wait(10_000);
  });
});
