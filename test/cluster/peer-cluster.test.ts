/**
 * Three etcd-ts processes started with etcd's usual cluster flags talk etcd 3.4's peer protocol
 * to each other: they elect a leader, a write on one member is read on another, and after a
 * SIGKILL of the leader the other two elect a new one and keep taking writes; the killed member
 * restarts from its data dir and catches up by the log. With a small --snapshot-count the
 * leader compacts its log behind a snapshot while a member is down, so the member catches up by
 * the snapshot path (POST /raft/snapshot), and the database it received is not kept once the
 * snapshot is installed.
 *
 * Knobs: `ETCD_BIN` (default etcd-ts; `/usr/bin/etcd` runs the same test against real etcd).
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { binaryUnderTest } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

async function put(endpoint: string, key: string, value: string): Promise<boolean> {
  const r = await runEtcdctl(endpoint, ["--command-timeout=2s", "put", key, value], { timeoutMs: 5_000 });
  return r.code === 0 && r.stdout.trim() === "OK";
}

async function get(endpoint: string, key: string, serializable = false): Promise<string> {
  const r = await runEtcdctl(endpoint, ["--command-timeout=2s", "get", key, "--print-value-only", ...(serializable ? ["--consistency=s"] : [])], { timeoutMs: 5_000 });
  return r.code === 0 ? r.stdout.trim() : `error: ${r.stderr.trim()}`;
}

/** Polls until `f` is true or `ms` pass; resolves how long it took (or -1). */
async function until(f: () => Promise<boolean>, ms: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await f()) return Date.now() - start;
    await sleep(100);
  }
  return -1;
}

describe("a cluster of three members over the peer protocol", () => {
  let cluster: Cluster | undefined;

  afterEach(async () => {
    await cluster?.destroy();
    cluster = undefined;
    await killAllChildren();
  });

  it("elects a leader, replicates, survives SIGKILL of the leader, and the killed member catches up by the log", async () => {
    cluster = await Cluster.start({ binary: binaryUnderTest(), size: 3, namePrefix: "pc", clusterToken: "peer-cluster" });
    const urls = cluster.clientUrls;
    const leader = await cluster.leaderIndex();
    expect(leader).toBeGreaterThanOrEqual(0);
    expect(await put(urls[0]!, "k0", "v0")).toBe(true);
    expect(await get(urls[2]!, "k0")).toBe("v0");

    await cluster.members[leader]!.kill("SIGKILL");
    const others = [0, 1, 2].filter((i) => i !== leader);
    const electedMs = await until(async () => {
      for (const i of others) {
        try {
          const s = await cluster!.grpc(i).status();
          if (s.leader !== 0n && s.leader === s.header.memberId) return true;
        } catch {
          /* try the next */
        }
      }
      return false;
    }, 15_000);
    console.log(`new leader elected ${electedMs} ms after SIGKILL of the leader`);
    expect(electedMs).toBeGreaterThanOrEqual(0);
    for (let i = 1; i <= 20; i++) expect(await put(urls[others[i % 2]!]!, `k${i}`, `v${i}`)).toBe(true);
    expect(await get(urls[others[0]!]!, "k20")).toBe("v20");

    await cluster.members[leader]!.start();
    const caughtUpMs = await until(async () => (await get(urls[leader]!, "k20", true)) === "v20", 15_000);
    console.log(`restarted member caught up by the log in ${caughtUpMs} ms`);
    expect(caughtUpMs).toBeGreaterThanOrEqual(0);
    expect(await put(urls[leader]!, "after", "restart")).toBe(true);
    expect(await get(urls[others[1]!]!, "after")).toBe("restart");
  });

  it("a member down while the log was compacted catches up by a snapshot", async () => {
    cluster = await Cluster.start({ binary: binaryUnderTest(), size: 3, namePrefix: "ps", clusterToken: "peer-snap", extraArgs: ["--snapshot-count", "20"] });
    const urls = cluster.clientUrls;
    const leader = await cluster.leaderIndex();
    const follower = (leader + 1) % 3;
    const other = (leader + 2) % 3;
    await cluster.members[follower]!.kill("SIGKILL");
    // etcd keeps 5000 entries behind a snapshot for slow followers; write past that (32 at a time).
    const client = cluster.grpc(leader);
    for (let i = 0; i < 5200; i += 32) {
      await Promise.all(Array.from({ length: 32 }, (_, j) => client.put(`s${i + j}`, `v${i + j}`)));
    }
    expect(await get(urls[other]!, "s5199")).toBe("v5199");
    const compactedLeader = cluster.members[leader]!;
    await cluster.members[follower]!.start();
    const caughtUpMs = await until(async () => (await get(urls[follower]!, "s5199", true)) === "v5199", 30_000);
    console.log(`restarted member caught up in ${caughtUpMs} ms after it was ready`);
    expect(caughtUpMs).toBeGreaterThanOrEqual(0);
    // It came by the snapshot path: the leader logged the send (etcd-ts and etcd 3.4's zap logger
    // say "sent database snapshot"; etcd 3.4's default capnslog logger says "database snapshot
    // [index: N, to: ID] sent out successfully").
    expect(compactedLeader.logTail(1_000_000)).toMatch(/sent database snapshot|database snapshot \[index: \d+, to: [0-9a-f]+\] sent out successfully/);
    // The received database was kept until the install was in, and not after it.
    const snapDir = path.join(cluster.members[follower]!.dataDir, "member", "snap");
    const kept = (): string[] => readdirSync(snapDir).filter((n) => n.endsWith(".snap.db"));
    expect(await until(async () => kept().length === 0, 10_000), `kept databases: ${kept().join(", ")}`).toBeGreaterThanOrEqual(0);
  }, 180_000);
});
