/**
 * Corruption checks across a cluster of three etcd-ts processes, as etcd 3.4 makes them: a
 * member whose stored revisions were altered while it was down refuses to start with
 * --experimental-initial-corrupt-check ("found data inconsistency with peers"); started without
 * it, the leader's periodic check (--experimental-corrupt-check-time) finds the mismatch and
 * raises the CORRUPT alarm, after which the cluster refuses writes ("etcdserver: corrupt
 * cluster").
 */
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Backend } from "../../server/src/mvcc/backend/backend.js";
import { Cluster } from "../harness/cluster.js";
import { runEtcdctl } from "../harness/etcdctl.js";
import { etcdTsBinary } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";

/** Flips the last byte of the newest stored revision (its value) in a stopped member's backend. */
async function corruptNewestRevision(dataDir: string): Promise<void> {
  const backend = await Backend.open(path.join(dataDir, "member", "snap", "db"));
  try {
    let last: [Buffer, Buffer] | undefined;
    for await (const kv of backend.iterate("key")) last = kv;
    if (last === undefined) throw new Error("no revisions to corrupt");
    const value = Buffer.from(last[1]);
    value[value.length - 1]! ^= 0x01;
    const batch = backend.batch();
    batch.put("key", last[0], value);
    await backend.writeSynced(batch);
  } finally {
    await backend.close();
  }
}

describe("corruption checks across members", () => {
  let cluster: Cluster | undefined;

  afterEach(async () => {
    await cluster?.destroy();
    cluster = undefined;
    await killAllChildren();
  });

  it("a corrupted member refuses to start with the initial check; the leader's periodic check raises CORRUPT", async () => {
    cluster = await Cluster.start({
      binary: etcdTsBinary(),
      size: 3,
      namePrefix: "cc",
      clusterToken: "corrupt-check",
      extraArgs: ["--experimental-corrupt-check-time=1s"],
    });
    const urls = cluster.clientUrls;
    for (let i = 0; i < 5; i++) {
      const r = await runEtcdctl(urls[0]!, ["put", `k${i}`, `value-${i}`]);
      expect(r.code, r.stderr).toBe(0);
    }
    await cluster.waitConverged();
    const leader = await cluster.leaderIndex();
    const victim = (leader + 1) % 3;
    const member = cluster.members[victim]!;
    await member.stop();
    await corruptNewestRevision(member.dataDir);

    // With the initial check the member compares its HashKV with its peers' and stops.
    const withCheck = member.options.extraArgs ?? [];
    member.options.extraArgs = [...withCheck, "--experimental-initial-corrupt-check"];
    let refused = "";
    try {
      await member.start();
    } catch (err) {
      refused = (err as Error).message;
    }
    expect(refused, member.logTail(6_000)).toContain("found data inconsistency with peers");
    expect(member.running).toBe(false);

    // Without it the member starts; the leader's next check raises the alarm.
    member.options.extraArgs = withCheck;
    await member.start();
    let alarms = "";
    for (let i = 0; i < 60 && !alarms.includes("CORRUPT"); i++) {
      await sleep(250);
      alarms = (await runEtcdctl(urls[leader]!, ["alarm", "list"])).stdout;
    }
    expect(alarms).toMatch(/alarm:CORRUPT/);
    const put = await runEtcdctl(urls[leader]!, ["put", "after", "x"]);
    expect(put.code).not.toBe(0);
    expect(put.stderr).toContain("etcdserver: corrupt cluster");
  }, 120_000);
});
