/**
 * --quota-backend-bytes: writes that would grow the backend past the quota raise the NOSPACE
 * alarm and fail with etcd's "database space exceeded"; reads keep working; the alarm shows in
 * `etcdctl alarm list` and `endpoint status`, survives a restart, and `alarm disarm` clears it.
 */
import { afterAll, describe, expect, it } from "vitest";
import { binaryUnderTest, startMember, type Member } from "../harness/member.js";
import { killAllChildren, sleep } from "../harness/processes.js";
import { runEtcdctl } from "../harness/etcdctl.js";

describe("backend quota", () => {
  let member: Member | undefined;

  afterAll(async () => {
    await member?.destroy();
    await killAllChildren();
  });

  it("raises NOSPACE, refuses writes, keeps reads, and disarms", async () => {
    member = await startMember({ binary: binaryUnderTest(), name: "quota", extraArgs: ["--quota-backend-bytes=200000"] });
    const ctl = (...args: string[]) => runEtcdctl(member!.clientUrl, args);
    const value = "x".repeat(20_000);
    let refused = "";
    for (let i = 0; i < 40 && refused === ""; i++) {
      const r = await ctl("put", `big/${i}`, value);
      if (r.code !== 0) refused = r.stderr;
      else await sleep(1100); // the member samples its backend size once a second
    }
    expect(refused).toContain("Error: etcdserver: mvcc: database space exceeded");
    const memberIdHex = (await ctl("endpoint", "status")).stdout.split(", ")[1]!;
    const alarms = await ctl("alarm", "list");
    expect(alarms.stdout).toBe(`memberID:${BigInt("0x" + memberIdHex)} alarm:NOSPACE \n`);
    expect((await ctl("get", "big/0", "--print-value-only")).stdout).toBe(value + "\n");
    expect((await ctl("put", "small", "v")).stderr).toContain("database space exceeded");

    await member.stop();
    await member.start();
    expect((await ctl("alarm", "list")).stdout).toContain("alarm:NOSPACE");

    await ctl("del", "big/", "--prefix");
    const disarm = await ctl("alarm", "disarm");
    expect(disarm.stdout).toContain("alarm:NOSPACE");
    expect((await ctl("alarm", "list")).stdout).toBe("");
  });
});
