/**
 * The auth state reaching a member by snapshot: an etcd-ts member joins a cluster of real etcd 3.4
 * members whose leader has compacted its log past what the joiner could get by entries, so the
 * leader sends it a snapshot (the bbolt database with etcd's auth buckets). The joiner must then
 * know the users, roles and permissions, and that auth is on, exactly as the etcd members do.
 * Skipped without /usr/bin/etcd.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { etcdTsBinary, referenceEtcdPath, serverBinaryFromSpec } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

const reference = referenceEtcdPath();
const KEYS = 5200;
const ROOT = ["--user", "root:rootpw"];

describe.skipIf(reference === undefined)("auth state by snapshot", () => {
  let cluster: Cluster | undefined;
  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
  });

  it("an etcd-ts member that joins by a real etcd leader's snapshot has the auth state and enforces it", async () => {
    cluster = await Cluster.start({
      binary: serverBinaryFromSpec(reference),
      size: 3,
      namePrefix: "as",
      clusterToken: "auth-snap",
      extraArgs: ["--heartbeat-interval=50", "--election-timeout=500", "--snapshot-count=20", "--bcrypt-cost=4"],
    });
    const c = cluster;
    const leader = await c.waitLeader();
    const client = c.grpc(leader);
    for (let i = 0; i < KEYS; i += 40) await Promise.all(Array.from({ length: 40 }, (_, j) => client.put(`as/${i + j}`, `v${i + j}`)));
    const url0 = c.members[leader]!.clientUrl;
    for (const args of [
      ["user", "add", "root:rootpw"], ["user", "add", "u:upw"], ["role", "add", "r"], ["role", "grant-permission", "r", "read", "as/", "--prefix"],
      ["user", "grant-role", "u", "r"], ["auth", "enable"],
    ]) {
      const r = await runEtcdctl(url0, args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
    }
    // Enough entries after the auth changes for the leader to snapshot past them, too.
    for (let i = 0; i < 60; i++) expect((await runEtcdctl(url0, [...ROOT, "put", "as/tail", String(i)])).code).toBe(0);

    const joiner = await c.addMember({ binary: etcdTsBinary(), etcdctlArgs: ROOT, extraArgs: ["--heartbeat-interval=50", "--election-timeout=500", "--bcrypt-cost=4"] });
    const url = c.members[joiner]!.clientUrl;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await runEtcdctl(url, [...ROOT, "get", "as/tail", "--print-value-only", "--consistency=s"]);
      if (r.stdout === "59\n") break;
      if (Date.now() > deadline) throw new Error(`the joiner did not catch up: ${r.stdout}${r.stderr}`);
      await sleep(250);
    }
    expect(c.members[joiner]!.logTail(10_000_000)).toContain("receiving database snapshot");
    const view = async (u: string): Promise<string> => {
      const out: string[] = [];
      for (const args of [[...ROOT, "user", "list"], [...ROOT, "role", "get", "r"], ["--user", "u:upw", "get", "as/1", "--consistency=s"],
        ["--user", "u:upw", "put", "as/1", "x"], ["get", "as/1", "--consistency=s"]]) {
        const r = await runEtcdctl(u, args);
        out.push(r.stdout, r.stderr.replace(/\{"level".*\n/g, ""), String(r.code));
      }
      return out.join("|");
    };
    const expected = await view(c.members[leader]!.clientUrl);
    expect(expected).toContain("permission denied");
    expect(await view(url)).toBe(expected);
  }, 180_000);
});
