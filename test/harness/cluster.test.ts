/**
 * The cluster harness against real processes (ETCD_BIN, default etcd-ts; `ETCD_BIN=/usr/bin/etcd`
 * proves it on real etcd): the link proxy sees every peer connection and attributes the stream
 * and pipeline ones to their dialer, its cuts have the effect the module comment promises on a
 * live cluster, and the membership and signal helpers do what they say.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "./cluster.js";
import { binaryUnderTest } from "./member.js";
import { killAllChildren, sleep } from "./processes.js";

const timingFlags = ["--heartbeat-interval=50", "--election-timeout=500"];

describe("cluster harness", () => {
  let cluster: Cluster | undefined;
  afterAll(async () => {
    await cluster?.destroy();
    await killAllChildren();
  });

  it("proxies peer links, cuts them per direction, and changes membership", async () => {
    cluster = await Cluster.start({ binary: binaryUnderTest(), size: 3, namePrefix: "h", clusterToken: "harness", linkProxy: true, extraArgs: timingFlags });
    const c = cluster;
    const proxy = c.proxy!;
    try {
      // Every pair has its streams, each attributed to the member that dialed it.
      const streams = proxy.describeConnections().filter((x) => x.kind === "stream");
      for (let a = 0; a < 3; a++) {
        for (let b = 0; b < 3; b++) {
          if (a !== b) expect(streams.some((s) => s.front === a && s.from === b), `stream ${b} -> ${a}`).toBe(true);
        }
      }
      expect(streams.every((s) => s.from !== undefined)).toBe(true);

      // Isolating the leader: the other two elect a new one and keep serving writes.
      const leader = await c.waitLeader();
      proxy.isolate(leader);
      const deadline = Date.now() + 10_000;
      let next = -1;
      while (Date.now() < deadline) {
        next = await c.leaderIndex();
        if (next >= 0 && next !== leader) break;
        await sleep(100);
      }
      expect(next).not.toBe(leader);
      expect(next).toBeGreaterThanOrEqual(0);
      await c.grpc(next).put("h/after-isolation", "1");
      proxy.healAll();
      await c.waitConverged(20_000);

      // One-way: the leader's messages no longer reach the followers. They stop hearing
      // heartbeats and elect another leader, although their own messages still reach it.
      const l2 = await c.waitLeader();
      for (const o of [0, 1, 2].filter((i) => i !== l2)) proxy.cut(l2, o);
      let l3 = -1;
      const d2 = Date.now() + 10_000;
      while (Date.now() < d2) {
        l3 = await c.leaderIndex();
        if (l3 >= 0 && l3 !== l2) break;
        await sleep(100);
      }
      expect(l3).not.toBe(l2);
      proxy.healAll();
      await c.waitConverged(20_000);

      // A slow link still commits.
      for (const a of [0, 1, 2]) for (const b of [0, 1, 2]) if (a !== b) proxy.delay(a, b, 100);
      const t0 = Date.now();
      await c.withAnswering((g) => g.put("h/slow", "1"), 5_000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
      proxy.healAll();

      // SIGSTOP/SIGCONT a follower.
      const l4 = await c.waitLeader();
      const f = [0, 1, 2].find((i) => i !== l4)!;
      c.pause(f);
      await c.grpc(l4).put("h/paused", "1");
      c.resume(f);
      await c.waitConverged(20_000);

      // Membership: learner in, promoted, leader moved to it, removed after moving away again.
      await c.waitReconfigurable();
      const added = await c.addMember({ binary: binaryUnderTest(), learner: true });
      // Its first entries may come by pipeline; a stream to it follows (bounded wait).
      const streamDeadline = Date.now() + 10_000;
      while (!proxy.describeConnections().some((x) => x.front === added && x.kind === "stream") && Date.now() < streamDeadline) await sleep(100);
      expect(proxy.describeConnections().some((x) => x.front === added && x.kind === "stream")).toBe(true);
      await c.promote(added);
      await c.moveLeader(added);
      expect(await c.waitLeader()).toBe(added);
      await c.moveLeader(0);
      await c.waitReconfigurable();
      await c.removeMember(added);
      expect(c.members[added]!.running).toBe(false);
      expect((await c.grpc(0).memberList()).members.length).toBe(3);
      await c.waitConverged(20_000);
    } catch (err) {
      console.error(c.logTails(2_000));
      throw err;
    }
  }, 180_000);
});
