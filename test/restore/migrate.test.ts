/**
 * `etcd-ts migrate --data-dir`: a stopped real etcd 3.4 member's data dir converted in place.
 *   - one member, after writes, overwrites, deletes, a compaction, a lease with a key and member
 *     snapshots (--snapshot-count 10): etcd-ts started with the same flags serves the same keys,
 *     revision, member ID, cluster ID, lease and HashKV, and its raft position continues etcd's;
 *     the original data is kept at member.etcd34-backup; a second migrate is refused;
 *   - a member whose WAL lives in a separate --wal-dir (both moved aside, both rewritten);
 *   - one member of a 3-member real etcd cluster stopped, migrated and started as etcd-ts: it
 *     rejoins, catches up with writes made while it was down and converges (HashKV) with the two
 *     etcd 3.4 members.
 * Skipped when /usr/bin/etcd (ETCD_REFERENCE_BIN) or etcdctl is missing.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Cluster } from "../harness/cluster.js";
import { etcdctlPath, runEtcdctl } from "../harness/etcdctl.js";
import { ProtoWriter } from "../harness/grpc-lite.js";
import { etcdTsBinary, referenceEtcdPath, startMember, type Member, type ServerBinary } from "../harness/member.js";
import { runEtcdTs } from "../harness/etcd-ts-tool.js";

const reference = referenceEtcdPath();
const haveTools = reference !== undefined && fs.existsSync(etcdctlPath());
const etcd34 = (): ServerBinary => ({ kind: "etcd", command: reference!, prefixArgs: [] });
const LEASE_ID = 0x5151n;

async function ctl(endpoint: string, args: string[]): Promise<string> {
  const r = await runEtcdctl(endpoint, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function view(m: Member): Promise<Record<string, unknown>> {
  const got = JSON.parse(await ctl(m.clientUrl, ["get", "", "--from-key", "-w", "json"])) as { header: Record<string, unknown>; kvs: unknown[] };
  const h = await m.grpc().hashKv(0n);
  const ttl = await ctl(m.clientUrl, ["lease", "timetolive", LEASE_ID.toString(16), "--keys"]);
  return {
    clusterId: got.header.cluster_id,
    memberId: got.header.member_id,
    revision: got.header.revision,
    kvs: got.kvs,
    hash: h.hash,
    compactRevision: h.compactRevision,
    leaseKeys: ttl.replace(/remaining\(\d+s\)/, "remaining(N)"),
  };
}

describe.skipIf(!haveTools)("etcd-ts migrate: an etcd 3.4 data dir in place", () => {
  const owned: Member[] = [];
  let cluster: Cluster | undefined;

  afterAll(async () => {
    for (const m of owned) await m.destroy();
    await cluster?.destroy();
  });

  it("one member: same keys, revision, IDs, lease and HashKV; raft continues; the original is kept", async () => {
    const m = await startMember({ binary: etcd34(), name: "mig", extraArgs: ["--snapshot-count", "10"] });
    owned.push(m);
    const g = m.grpc();
    for (let i = 0; i < 40; i++) await g.put(`m/k${String(i).padStart(2, "0")}`, `v${i}`);
    for (let i = 0; i < 40; i += 3) await g.put(`m/k${String(i).padStart(2, "0")}`, `again${i}`);
    await g.deleteRange("m/k30", { rangeEnd: "m/k35" });
    await ctl(m.clientUrl, ["compaction", "20"]);
    await g.unary("/etcdserverpb.Lease/LeaseGrant", new ProtoWriter().varint(1, 900).varint(2, LEASE_ID).finish());
    await g.put("m/leased", "yes", { lease: LEASE_ID });
    const before = await view(m);
    const statusBefore = await g.status();
    const running = await runEtcdTs(["migrate", "--data-dir", m.dataDir]);
    expect(running.code).toBe(1);
    expect(running.stderr).toContain("is locked: the etcd member is still running (stop it first)");
    await m.stop();
    expect(fs.readdirSync(path.join(m.dataDir, "member", "snap")).filter((f) => f.endsWith(".snap")).length).toBeGreaterThan(0);

    const r = await runEtcdTs(["migrate", "--data-dir", m.dataDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("member.etcd34-backup");
    expect(fs.statSync(path.join(m.dataDir, "member.etcd34-backup", "snap", "db")).isFile()).toBe(true);
    expect(fs.statSync(path.join(m.dataDir, "member", "snap", "db")).isDirectory()).toBe(true);
    const again = await runEtcdTs(["migrate", "--data-dir", m.dataDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already an etcd-ts data dir");

    m.options.binary = etcdTsBinary();
    await m.start();
    expect(await view(m)).toEqual(before);
    const statusAfter = await m.grpc().status();
    // Same log: the index continues (an election and etcd-ts's publish add a few entries).
    expect(statusAfter.raftIndex).toBeGreaterThanOrEqual(statusBefore.raftIndex);
    expect(statusAfter.raftIndex).toBeLessThan(statusBefore.raftIndex + 10n);
    expect(statusAfter.raftTerm).toBeGreaterThan(statusBefore.raftTerm);
    const put = await m.grpc().put("m/after", "1");
    expect(put.revision).toBe(BigInt(before.revision as number) + 1n);
    await m.stop();
  }, 120_000);

  it("a member with v2 keys (--enable-v2), with and without a snapshot: the same v2 tree and store index", async () => {
    const tree = async (m: Member): Promise<{ index: string | null; body: string }> => {
      const res = await fetch(`${m.clientUrl}/v2/keys/?recursive=true&sorted=true`);
      return { index: res.headers.get("x-etcd-index"), body: await res.text() };
    };
    const v2 = async (m: Member, method: string, key: string, value?: string): Promise<void> => {
      const res = await fetch(`${m.clientUrl}/v2/keys/${key}`, {
        method,
        body: value === undefined ? undefined : `value=${value}`,
        headers: value === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" },
      });
      expect(res.status, `${method} ${key}`).toBeLessThan(300);
    };
    for (const snapshotCount of [10, 100_000]) {
      const m = await startMember({ binary: etcd34(), name: `v2mig${snapshotCount}`, extraArgs: ["--enable-v2", "--snapshot-count", String(snapshotCount)] });
      owned.push(m);
      for (let i = 0; i < 15; i++) await v2(m, "PUT", `a/k${i}`, `v${i}`);
      await v2(m, "POST", "queue", "first");
      await v2(m, "DELETE", "a/k3");
      // A membership change after etcd's snapshot, then more v2 writes.
      await ctl(m.clientUrl, ["member", "add", "--learner", "absent", "--peer-urls", "http://127.0.0.1:1"]);
      for (let i = 0; i < 5; i++) await v2(m, "PUT", `b/k${i}`, `w${i}`);
      await m.grpc().put("v3key", "x");
      const before = await tree(m);
      await m.stop();
      const snaps = fs.readdirSync(path.join(m.dataDir, "member", "snap")).filter((f) => f.endsWith(".snap"));
      expect(snaps.length > 0, `a snapshot with --snapshot-count ${snapshotCount}`).toBe(snapshotCount === 10);
      const r = await runEtcdTs(["migrate", "--data-dir", m.dataDir]);
      expect(r.code, r.stderr).toBe(0);
      m.options.binary = etcdTsBinary();
      await m.start();
      const after = await tree(m);
      expect(after.body, `--snapshot-count ${snapshotCount}`).toBe(before.body);
      // etcd-ts's publish of its attributes at start is one more v2 write, as etcd's own restart makes.
      expect(Number(after.index)).toBe(Number(before.index) + 1);
      expect((await ctl(m.clientUrl, ["member", "list"])).split("\n").filter((l) => l !== "").length).toBe(2);
      await m.stop();
    }
  }, 120_000);

  it("a member with a separate --wal-dir", async () => {
    const walParent = fs.mkdtempSync(path.join(os.tmpdir(), "migrate-wal-"));
    const walDir = path.join(walParent, "wal");
    const m = await startMember({ binary: etcd34(), name: "walsep", extraArgs: ["--wal-dir", walDir, "--snapshot-count", "10"] });
    owned.push(m);
    for (let i = 0; i < 25; i++) await m.grpc().put(`w/k${i}`, `v${i}`);
    const before = await m.grpc().hashKv(0n);
    await m.stop();
    const r = await runEtcdTs(["migrate", "--data-dir", m.dataDir, "--wal-dir", walDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(walDir + ".etcd34-backup")).toBe(true);
    m.options.binary = etcdTsBinary();
    await m.start();
    const after = await m.grpc().hashKv(0n);
    expect({ hash: after.hash, revision: after.header.revision }).toEqual({ hash: before.hash, revision: before.header.revision });
    await m.stop();
    fs.rmSync(walParent, { recursive: true, force: true });
  }, 120_000);

  it("a member of a 3-member etcd 3.4 cluster, migrated in place, rejoins as etcd-ts", async () => {
    cluster = await Cluster.start({ binaries: [etcd34(), etcd34(), etcd34()], extraArgs: ["--snapshot-count", "20"] });
    const c = cluster;
    for (let i = 0; i < 30; i++) await c.grpc(0).put(`c/k${i}`, `v${i}`);
    await c.waitConverged();
    const victim = 2;
    const idBefore = c.memberId(victim);
    await c.kill(victim, "SIGTERM");
    // Writes it misses while it is down.
    for (let i = 30; i < 45; i++) await c.grpc(0).put(`c/k${i}`, `v${i}`);
    const m = c.members[victim]!;
    const r = await runEtcdTs(["migrate", "--data-dir", m.dataDir]);
    expect(r.code, r.stderr).toBe(0);
    m.options.binary = etcdTsBinary();
    m.options.readyMembers = 3;
    await c.restart(victim);
    const converged = await c.waitConverged(60_000);
    const status = await c.grpc(victim).status();
    expect(status.header.memberId).toBe(idBefore);
    // It serves writes made through an etcd 3.4 member, and takes part in new ones.
    await c.grpc(victim).put("c/from-etcd-ts", "1");
    const after = await c.waitConverged(30_000);
    expect(after.revision).toBe(converged.revision + 1);
  }, 180_000);
});
