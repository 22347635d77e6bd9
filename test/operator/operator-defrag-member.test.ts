/**
 * Defragmentation by rule against real members (no Kubernetes): three members with a small
 * backend quota fill up until etcd raises NOSPACE; once the keys are deleted and the revisions
 * compacted, the reconciler defragments
 * the followers, then the leader, one per pass, and disarms NOSPACE once every database is below
 * the quota; writes succeed again. Status shows each member's last defragmentation; events say
 * what was done.
 *
 * Runs on etcd 3.4 (`ETCD_DEFRAG_BIN`, default /usr/bin/etcd): its bbolt backend reports the
 * space in use apart from the file's size and shrinks the file when defragmented, which is what
 * the rules act on, in steps this test counts exactly. etcd-ts's LevelDB backend also reports
 * its space in use and shrinks when defragmented (test/bad-input/defrag-space.test.ts), but
 * LevelDB also compacts by itself in the background, so its sizes do not move in bbolt's exact
 * steps. Skipped when that binary is missing.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Reconciler } from "../../operator/src/cluster/reconciler.js";
import { GrpcEtcdAdmin } from "../../operator/src/etcd/grpc-etcd-admin.js";
import { Cluster } from "../harness/cluster.js";
import { clusterObject, MemberWorld } from "./member-world.js";

const BIN = process.env.ETCD_DEFRAG_BIN ?? "/usr/bin/etcd";
const QUOTA = 2 * 1024 * 1024;

describe.skipIf(!existsSync(BIN))("defragmentation by rule on real members", () => {
  const world = new MemberWorld();
  const admin = new GrpcEtcdAdmin({ timeoutMs: 10_000, defragTimeoutMs: 30_000 });
  const cluster = clusterObject("e", { size: 3, options: { "quota-backend-bytes": String(QUOTA) }, defrag: { fragmentationPercent: 50 } });
  let c: Cluster;
  const rec = new Reconciler(
    { clusterDomain: "cluster.local", defaultImage: "x", serverCommand: ["etcd"], requeueSteadyMs: 1, requeueWaitMs: 1, requeueActionMs: 1, defragCooldownMs: 0 },
    { store: world, etcd: admin, log: { info() {}, warn() {} }, now: () => new Date(), addressOf: world.addressOf },
  );

  /**
   * bbolt frees compacted pages for good at a later write transaction, and members report them
   * once their backend commits (every 100 ms in etcd 3.4): a few small writes, then every
   * member's Status is polled until at least `fraction` of its file is free.
   */
  const awaitFreeSpace = async (client: ReturnType<Cluster["members"][number]["grpc"]>, fraction: number) => {
    for (let i = 0; i < 3; i++) {
      await client.put("tick", String(i)).catch(() => {}); // refused under NOSPACE
      await new Promise((res) => setTimeout(res, 150));
    }
    for (const [name, pod] of world.pods) {
      for (let t = 0; ; t++) {
        const st = await admin.status({ address: pod.address });
        if ((st.dbSize - st.dbSizeInUse) / st.dbSize >= fraction) break;
        if (t > 50) throw new Error(`${name} never reported its free space: ${JSON.stringify(st)}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  };

  beforeAll(async () => {
    c = await Cluster.start({ binary: { kind: "etcd", command: BIN, prefixArgs: [] }, size: 3, namePrefix: "e-", extraArgs: [`--quota-backend-bytes=${QUOTA}`] });
    for (const m of c.members) world.pods.set(m.options.name!, { address: new URL(m.clientUrl).host, hash: rec.specHash(cluster), ready: true });
  }, 120_000);

  afterAll(async () => {
    admin.close();
    await c?.destroy();
  });

  it("fills to NOSPACE, then after compaction defragments followers first and the leader last, and disarms NOSPACE", async () => {
    // Settle: the volumes learn their member IDs; nothing to defragment on fresh databases.
    for (let i = 0; i < 6; i++) if ((await rec.reconcile(cluster)).step.kind === "steady") break;
    expect((await rec.reconcile(cluster)).step.kind).toBe("steady");
    // Leadership on the middle ordinal, so "followers first, leader last" differs from ordinal order.
    const ids = new Map(world.status!.members!.map((m) => [m.name, m.id!]));
    const leaderNow = world.status!.leader!;
    if (leaderNow !== "e-1") await admin.moveLeader({ address: world.pods.get(leaderNow)!.address }, ids.get("e-1")!);
    await rec.reconcile(cluster);
    expect(world.status!.leader).toBe("e-1");

    const client = c.members[0]!.grpc();
    const value = "x".repeat(64 * 1024);
    let nospace = false;
    for (let i = 0; i < 200 && !nospace; i++) {
      try {
        await client.put(`k${i % 8}`, value + i);
      } catch (err) {
        expect(String(err)).toMatch(/database space exceeded/);
        nospace = true;
      }
    }
    expect(nospace).toBe(true);
    const leaderAddr = world.pods.get("e-0")!.address;
    expect((await admin.alarms({ address: leaderAddr })).some((a) => a.alarm === "NOSPACE")).toBe(true);

    // Deleted and compacted: the files stay as large, the space in use drops.
    await client.deleteRange("k", { rangeEnd: "l" });
    const rev = (await client.status()).header.revision;
    const compact = await c.etcdctl(["compact", String(rev), "--physical"]);
    expect(compact.code).toBe(0);

    const steps: string[] = [];
    const members: string[] = [];
    // Until the alarm is gone (a member may report its freed pages a commit interval late).
    for (let i = 0; i < 60; i++) {
      const r = await rec.reconcile(cluster);
      if (r.step.kind === "steady" && (await admin.alarms({ address: leaderAddr })).length === 0) break;
      if (r.step.kind !== "steady") steps.push(r.step.kind);
      if (r.step.kind === "defragment") members.push(r.step.member);
      if (r.step.kind === "wait" || r.step.kind === "steady") await new Promise((res) => setTimeout(res, 100));
    }
    expect(members).toEqual(["e-2", "e-0", "e-1"]);
    expect(steps).toContain("disarm-alarm");
    expect(steps.indexOf("disarm-alarm")).toBeGreaterThan(steps.lastIndexOf("defragment"));
    expect(await admin.alarms({ address: leaderAddr })).toEqual([]);
    for (const m of world.status!.members!) {
      expect(m.dbSize!).toBeLessThan(QUOTA);
      expect(Date.parse(m.lastDefragTime!)).toBeGreaterThan(Date.now() - 120_000);
    }
    expect(world.events.filter((e) => e.startsWith("Normal Defragmented"))).toHaveLength(3);
    expect(world.events.some((e) => e.startsWith("Normal AlarmDisarmed"))).toBe(true);
    await client.put("after", "ok");
  });

  it("the fragmentation rule: a database mostly free after deletes and compaction is defragmented, once", async () => {
    const client = c.members[1]!.grpc();
    const value = "y".repeat(64 * 1024);
    for (let i = 0; i < 12; i++) await client.put(`f${i}`, value);
    await client.deleteRange("f", { rangeEnd: "g" });
    const rev = (await client.status()).header.revision;
    expect((await c.etcdctl(["compact", String(rev), "--physical"])).code).toBe(0);
    await awaitFreeSpace(client, 0.5);
    const before = world.events.length;
    const members: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await rec.reconcile(cluster);
      if (r.step.kind === "steady") break;
      if (r.step.kind === "defragment") {
        expect(r.step.reason).toBe("fragmentation");
        members.push(r.step.member);
      }
    }
    expect(members).toEqual(["e-2", "e-0", "e-1"]);
    expect(world.events.slice(before).filter((e) => e.startsWith("Normal Defragmented"))).toHaveLength(3);
    for (const m of world.status!.members!) expect((m.dbSize! - m.dbSizeInUse!) / m.dbSize!).toBeLessThan(0.5);
  });
});
