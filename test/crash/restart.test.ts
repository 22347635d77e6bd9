/**
 * Graceful stop and restart: a member stopped with SIGTERM exits promptly and comes back on the
 * same data dir with the same identity, revision and data, and keeps accepting writes. Runs
 * against `ETCD_BIN` (default etcd-ts; `/usr/bin/etcd` for real etcd).
 */
import { afterAll, describe, expect, it } from "vitest";
import { binaryUnderTest, startMember, type Member } from "../harness/member.js";
import { killAllChildren } from "../harness/processes.js";

describe("graceful restart", () => {
  let member: Member | undefined;

  afterAll(async () => {
    await member?.destroy();
    await killAllChildren();
  });

  it("SIGTERM, restart: same member and cluster ID, revision and data", async () => {
    member = await startMember({ binary: binaryUnderTest(), name: "restart", clusterToken: "restart-token" });
    const before = member.grpc();
    for (let i = 0; i < 50; i++) await before.put(`restart/k${i % 10}`, `v${i}`);
    const del = await before.deleteRange("restart/k9");
    expect(del.deleted).toBe(1n);
    const snapshot = await before.range("restart/", { rangeEnd: "restart0" });
    const members = await before.memberList();

    const started = Date.now();
    await member.stop();
    expect(member.running).toBe(false);
    expect(Date.now() - started, "SIGTERM took too long to stop the member").toBeLessThan(10_000);

    await member.start();
    const after = member.grpc();
    const again = await after.range("restart/", { rangeEnd: "restart0" });
    expect(again.header.revision).toBe(snapshot.header.revision);
    expect(again.header.clusterId).toBe(snapshot.header.clusterId);
    expect(again.header.memberId).toBe(snapshot.header.memberId);
    expect(again.kvs).toEqual(snapshot.kvs);
    expect((await after.memberList()).members).toEqual(members.members);

    const header = await after.put("restart/k9", "back");
    expect(header.revision).toBe(snapshot.header.revision + 1n);
    // A second restart right after a write keeps it too.
    await member.restart();
    const last = await member.grpc().range("restart/k9");
    expect(last.kvs.map((kv) => [kv.value, kv.modRevision, kv.version, kv.createRevision])).toEqual([
      ["back", header.revision, 1n, header.revision],
    ]);
  });
});
