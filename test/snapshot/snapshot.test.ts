/**
 * `etcdctl snapshot save|status|restore` against etcd-ts and real etcd 3.4, side by side.
 *
 * Both servers get the same identity (name, cluster token, advertised URLs) and the same writes:
 * puts (enough keys for several bbolt leaf pages, one value bigger than a page), overwrites,
 * deletes, a compaction, a lease granted with a fixed ID and a key attached to it. Then:
 *   - `snapshot status -w json` must print the same hash, revision and total key count for both
 *     files (the hash covers every bucket, key and value: the files hold the same data);
 *   - `snapshot restore` must accept both files (sha256 check included);
 *   - a real etcd started on each restored data dir must serve the same keys, the same lease and
 *     refuse the compacted revision the same way.
 * Skipped when /usr/bin/etcd (ETCD_REFERENCE_BIN) or etcdctl is missing.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BboltReader } from "../../server/src/mvcc/backend/bbolt-reader.js";
import { etcdctlPath, runEtcdctl } from "../harness/etcdctl.js";
import { ProtoWriter } from "../harness/grpc-lite.js";
import { Member, binaryUnderTest, referenceEtcdPath, startMember, type ServerBinary } from "../harness/member.js";

const reference = referenceEtcdPath();
const haveTools = reference !== undefined && fs.existsSync(etcdctlPath());

const IDENTITY = {
  name: "snap-diff",
  clusterToken: "snap-diff-token",
  advertiseClientUrl: "http://127.0.0.1:2379",
  advertisePeerUrl: "http://127.0.0.1:2380",
};
const RESTORED = { name: "restored", advertisePeerUrl: "http://127.0.0.1:2390" };
const LEASE_ID = 0x1234n;

interface Side {
  label: string;
  server: Member;
  file: string;
  restored?: Member;
}

async function ctl(endpoint: string, args: string[]): Promise<string> {
  const r = await runEtcdctl(endpoint, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function writeWorkload(m: Member, tailLeaseGrants: number): Promise<number> {
  const g = m.grpc();
  for (let i = 0; i < 300; i++) await g.put(`snap/k${String(i).padStart(4, "0")}`, `value-${i}-${"x".repeat(i % 50)}`);
  await g.put("snap/big", "B".repeat(100_000));
  for (let i = 0; i < 300; i += 7) await g.put(`snap/k${String(i).padStart(4, "0")}`, `overwritten-${i}`);
  await g.deleteRange("snap/k0100", { rangeEnd: "snap/k0120" });
  const head = (await g.range("snap/k0001")).header.revision;
  await ctl(m.clientUrl, ["compaction", String(head - 10n)]);
  await g.unary("/etcdserverpb.Lease/LeaseGrant", new ProtoWriter().varint(1, 600).varint(2, LEASE_ID).finish());
  await g.put("snap/leased", "with-lease", { lease: LEASE_ID });
  await g.put("snap/last", "done");
  // Entries that change no key: etcd 3.4 stores no consistent index for them, except when it
  // snapshots (then it stores the applied index).
  for (let i = 1; i <= tailLeaseGrants; i++) {
    await g.unary("/etcdserverpb.Lease/LeaseGrant", new ProtoWriter().varint(1, 600).varint(2, LEASE_ID + BigInt(i)).finish());
  }
  return Number(head - 10n);
}

const SCENARIOS = [
  { label: "default settings", extraArgs: [] as string[], tailLeaseGrants: 0 },
  // Member snapshots every 20 entries; the last ones come after the last key change.
  { label: "--snapshot-count=20, lease grants after the last write", extraArgs: ["--snapshot-count", "20"], tailLeaseGrants: 45 },
];

describe.skipIf(!haveTools).each(SCENARIOS)("etcdctl snapshot: etcd-ts vs real etcd ($label)", ({ extraArgs, tailLeaseGrants }) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "snapshot-diff-"));
  const sides: Side[] = [];
  let compactedAt = 0;

  beforeAll(async () => {
    const binaries: Array<[string, ServerBinary]> = [
      ["etcd", { kind: "etcd", command: reference!, prefixArgs: [] }],
      ["etcd-ts", binaryUnderTest()],
    ];
    for (const [label, binary] of binaries) {
      const server = await startMember({ binary, ...IDENTITY, extraArgs });
      sides.push({ label, server, file: path.join(scratch, `${label}.db`) });
    }
    for (const s of sides) compactedAt = await writeWorkload(s.server, tailLeaseGrants);
  }, 180_000);

  afterAll(async () => {
    for (const s of sides) {
      await s.restored?.destroy();
      await s.server.destroy();
    }
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("snapshot save, then status prints the same hash, revision and key count", async () => {
    const statuses: Array<Record<string, number>> = [];
    for (const s of sides) {
      const host = s.server.clientUrl.replace("http://", "");
      await ctl(host, ["snapshot", "save", s.file]);
      // The saved file is the bbolt database followed by the 32-byte sha256 trailer.
      expect(fs.statSync(s.file).size % 512, s.label).toBe(32);
      statuses.push(JSON.parse(await ctl(s.server.clientUrl, ["snapshot", "status", s.file, "-w", "json"])) as Record<string, number>);
    }
    // Bucket by bucket (first): names the bucket and key that differ when the hashes do.
    const dumps = sides.map((s) => {
      const r = BboltReader.open(s.file);
      try {
        expect(r.check(), s.label).toEqual([]);
        const out: Record<string, string[]> = {};
        for (const [name, pairs] of r.dump()) out[name] = pairs.map(([k, v]) => `${k.toString("hex")}=${v.length > 64 ? `${v.length}B` : v.toString("hex")}`);
        return out;
      } finally {
        r.close();
      }
    });
    expect(dumps[1]).toEqual(dumps[0]);
    const [ref, cand] = statuses;
    expect({ hash: cand!.hash, revision: cand!.revision, totalKey: cand!.totalKey }).toEqual({
      hash: ref!.hash,
      revision: ref!.revision,
      totalKey: ref!.totalKey,
    });
    expect(cand!.totalSize).toBeGreaterThan(0);
  }, 120_000);

  it("snapshot restore accepts both files; real etcd on the restored dirs serves the same data", async () => {
    for (const s of sides) {
      const member = new Member({
        binary: { kind: "etcd", command: reference!, prefixArgs: [] },
        name: RESTORED.name,
        advertisePeerUrl: RESTORED.advertisePeerUrl,
      });
      s.restored = member;
      await ctl(s.server.clientUrl, [
        "snapshot", "restore", s.file,
        "--data-dir", member.dataDir,
        "--name", RESTORED.name,
        "--initial-cluster", `${RESTORED.name}=${RESTORED.advertisePeerUrl}`,
        "--initial-advertise-peer-urls", RESTORED.advertisePeerUrl,
      ]);
      await member.start();
    }
    const views: Array<{ kvs: unknown[]; leases: string[]; compacted: boolean } & Record<string, unknown>> = [];
    for (const s of sides) {
      const url = s.restored!.clientUrl;
      const got = JSON.parse(await ctl(url, ["get", "", "--prefix", "-w", "json"])) as { header: Record<string, unknown>; kvs: Array<Record<string, unknown>> };
      // `lease list` prints Go map order: compare the set.
      const leases = (await ctl(url, ["lease", "list"])).trim().split("\n").sort();
      const ttl = await ctl(url, ["lease", "timetolive", LEASE_ID.toString(16), "--keys"]);
      const old = await runEtcdctl(url, ["get", "snap/k0001", `--rev=${compactedAt - 1}`]);
      views.push({
        revision: got.header.revision,
        clusterId: got.header.cluster_id,
        memberId: got.header.member_id,
        // Values by digest keeps a failure message readable (one value is 100 kB).
        kvs: got.kvs.map((kv) => ({ ...kv, value: createHash("sha256").update(String(kv.value)).digest("hex").slice(0, 16) })),
        leases,
        leaseKeys: ttl.replace(/remaining\(\d+s\)/, "remaining(N)"),
        compacted: old.stderr.includes("required revision has been compacted"),
      });
    }
    expect(views[1]).toEqual(views[0]);
    const parsed = views[1]!;
    expect(parsed.kvs.length).toBeGreaterThan(250);
    expect(parsed.compacted).toBe(true);
    expect(parsed.leases).toContain("0000000000001234");
  }, 120_000);
});
