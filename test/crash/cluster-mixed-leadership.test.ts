/**
 * Leadership across binaries: in a cluster of three "new" members and one "old" one, the leader
 * hands over with move-leader (MsgTimeoutNow) from new to old and back, and a new leader stopped
 * gracefully (SIGTERM) hands over before it goes; writes commit after each change.
 * Binaries as in cluster-mixed.test.ts: `ETCD_BIN` old (default /usr/bin/etcd), `NEW_BIN` new.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { referenceEtcdPath, serverBinaryFromSpec, type ServerBinary } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";

const oldBinary: ServerBinary = serverBinaryFromSpec(process.env.ETCD_BIN ?? referenceEtcdPath() ?? "/usr/bin/etcd");
const newBinary: ServerBinary = serverBinaryFromSpec(process.env.NEW_BIN);

describe("mixed clusters: leadership transfer", () => {
  afterAll(async () => {
    await killAllChildren();
  });

  it("move-leader from new to old and back; a new leader's graceful stop hands over", async () => {
    let cluster: Cluster | undefined;
    try {
      cluster = await Cluster.start({
        binary: newBinary, size: 3, namePrefix: "l", clusterToken: "mixed-lead",
        extraArgs: ["--heartbeat-interval=50", "--election-timeout=500"],
      });
      const c = cluster;
      const old = await c.addMember({ binary: oldBinary });
      const write = async (k: string): Promise<void> => {
        await c.withAnswering((g) => g.put(`lead/${k}`, k));
      };
      await write("start");
      await c.moveLeader(old);
      expect(await c.waitLeader()).toBe(old);
      await write("on-old");
      await c.moveLeader(0);
      expect(await c.waitLeader()).toBe(0);
      await write("on-new");
      await c.kill(0, "SIGTERM");
      const next = await c.waitLeader();
      expect(next).not.toBe(0);
      await write("after-stop");
      expect((await c.grpc(old).range("lead/after-stop")).kvs[0]?.value).toBe("after-stop");
    } catch (err) {
      console.error(cluster?.logTails(3_000) ?? "");
      throw err;
    } finally {
      await cluster?.destroy();
    }
  }, 120_000);
});
