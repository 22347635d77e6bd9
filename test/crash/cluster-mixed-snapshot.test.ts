/**
 * Mixed clusters catching up by snapshot: a member of one binary joins a running cluster of the
 * other whose leader has compacted its log past what the joiner could get by entries (more than
 * the 5000 kept behind a snapshot), so the leader sends it a snapshot over POST /raft/snapshot
 * (the v2 store JSON plus the bbolt database). Both directions; the joiner then serves every key
 * and carries commits.
 * Binaries as in cluster-mixed.test.ts: `ETCD_BIN` old (default /usr/bin/etcd), `NEW_BIN` new.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { referenceEtcdPath, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

const oldBinary: ServerBinary = serverBinaryFromSpec(process.env.ETCD_BIN ?? referenceEtcdPath() ?? "/usr/bin/etcd");
const newBinary: ServerBinary = serverBinaryFromSpec(process.env.NEW_BIN);
const KEYS = 5200;

async function joinBySnapshot(initial: ServerBinary, joiner: ServerBinary, token: string): Promise<void> {
  let cluster: Cluster | undefined;
  try {
    cluster = await Cluster.start({
      binary: initial, size: 3, namePrefix: "s", clusterToken: token,
      extraArgs: ["--heartbeat-interval=50", "--election-timeout=500", "--snapshot-count=20"],
    });
    const leader = await cluster.waitLeader();
    const client = cluster.grpc(leader);
    for (let i = 0; i < KEYS; i += 40) {
      await Promise.all(Array.from({ length: 40 }, (_, j) => client.put(`snap/${i + j}`, `v${i + j}`)));
    }
    const i = await cluster.addMember({ binary: joiner });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await cluster.grpc(i).range(`snap/${KEYS - 1}`, { serializable: true }).catch(() => undefined);
      if (r?.kvs[0]?.value === `v${KEYS - 1}`) break;
      if (Date.now() > deadline) throw new Error(`joined ${joiner.kind} member did not catch up`);
      await sleep(200);
    }
    // It came by the snapshot path (both binaries log this on the receiving side).
    expect(cluster.members[i]!.logTail(10_000_000)).toContain("receiving database snapshot");
    expect(Number((await cluster.grpc(i).range("snap/", { rangeEnd: "snap0", serializable: true, limit: 1n })).count)).toBe(KEYS);
    // It carries commits: 4 voters, one down.
    const victim = [0, 1, 2].find((j) => j !== leader)!;
    await cluster.kill(victim);
    await cluster.grpc(i).put("snap/after", "yes");
    expect((await cluster.grpc(i).range("snap/after")).kvs[0]?.value).toBe("yes");
    await cluster.restart(victim);
    await cluster.waitConverged(30_000);
  } catch (err) {
    console.error(cluster?.logTails(3_000) ?? "");
    throw err;
  } finally {
    await cluster?.destroy();
  }
}

describe("mixed clusters: catching up by snapshot", () => {
  afterAll(async () => {
    await killAllChildren();
  });

  it("a new member joins an old cluster by the old leader's snapshot", async () => {
    await joinBySnapshot(oldBinary, newBinary, "mixed-snap-a");
  }, 180_000);

  it("an old member joins a new cluster by the new leader's snapshot", async () => {
    await joinBySnapshot(newBinary, oldBinary, "mixed-snap-b");
  }, 180_000);
});
