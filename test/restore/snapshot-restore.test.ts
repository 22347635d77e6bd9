/**
 * `etcd-ts snapshot status|restore` (the offline tools) on snapshots of etcd-ts and of real etcd
 * 3.4, with real processes:
 *   - `snapshot status` prints exactly what etcdctl 3.4 prints for the same file (simple, table,
 *     json);
 *   - a restored etcd-ts member serves the same keys (revisions, versions, leases), the same
 *     lease and the same HashKV (hash and compact revision) as the member the snapshot was taken
 *     of;
 *   - a 3-member initial cluster restored from one file forms and agrees on HashKV, also when two
 *     members are restored by etcdctl and run etcd 3.4 and the third is etcd-ts;
 *   - --bump-revision/--mark-compacted: a watcher that had reached revision R gets the compacted
 *     error when it resumes at R+1, reads at or below the bump fail as compacted, and new writes
 *     land above R + bump;
 *   - the sha256 check: a file without the trailer needs --skip-hash-check, a damaged file is
 *     refused; the errors are etcdctl's.
 * Skipped when /usr/bin/etcd (ETCD_REFERENCE_BIN) or etcdctl is missing.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { etcdctlPath, runEtcdctl } from "../harness/etcdctl.js";
import { ProtoWriter } from "../harness/grpc-lite.js";
import { errorLine, runEtcdTs } from "../harness/etcd-ts-tool.js";
import { Member, etcdTsBinary, referenceEtcdPath, startMember, type ServerBinary } from "../harness/member.js";
import { freePorts } from "../harness/processes.js";

const reference = referenceEtcdPath();
const haveTools = reference !== undefined && fs.existsSync(etcdctlPath());
const LEASE_ID = 0x4242n;

async function ctl(endpoint: string, args: string[]): Promise<string> {
  const r = await runEtcdctl(endpoint, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function writeWorkload(m: Member): Promise<void> {
  const g = m.grpc();
  for (let i = 0; i < 60; i++) await g.put(`r/k${String(i).padStart(3, "0")}`, `v${i}-${"x".repeat(i % 40)}`);
  for (let i = 0; i < 60; i += 5) await g.put(`r/k${String(i).padStart(3, "0")}`, `again-${i}`);
  await g.deleteRange("r/k010", { rangeEnd: "r/k020" });
  const head = (await g.range("r/k000")).header.revision;
  await ctl(m.clientUrl, ["compaction", String(head - 5n)]);
  await g.unary("/etcdserverpb.Lease/LeaseGrant", new ProtoWriter().varint(1, 900).varint(2, LEASE_ID).finish());
  await g.put("r/leased", "yes", { lease: LEASE_ID });
  await g.put("r/last", "done");
}

interface View {
  revision: unknown;
  kvs: unknown[];
  leases: string[];
  leaseKeys: string;
  hash: bigint;
  compactRevision: bigint;
}

async function viewOf(m: Member): Promise<View> {
  const got = JSON.parse(await ctl(m.clientUrl, ["get", "", "--from-key", "-w", "json"])) as { header: Record<string, unknown>; kvs: unknown[] };
  const leases = (await ctl(m.clientUrl, ["lease", "list"])).trim().split("\n").sort();
  const ttl = await ctl(m.clientUrl, ["lease", "timetolive", LEASE_ID.toString(16), "--keys"]);
  const h = await m.grpc().hashKv(0n);
  return {
    revision: got.header.revision,
    kvs: got.kvs,
    leases,
    leaseKeys: ttl.replace(/remaining\(\d+s\)/, "remaining(N)"),
    hash: h.hash,
    compactRevision: h.compactRevision,
  };
}

/** An etcd-ts member (not started) whose data dir `etcd-ts snapshot restore` fills. */
async function restoredMember(
  file: string,
  name: string,
  cluster: Array<{ name: string; peer: number; client: number }>,
  extra: string[] = [],
  prepare?: (dataDir: string) => void,
): Promise<Member> {
  const self = cluster.find((c) => c.name === name)!;
  const initialCluster = cluster.map((c) => `${c.name}=http://127.0.0.1:${c.peer}`).join(",");
  const m = new Member({
    binary: etcdTsBinary(),
    name,
    clusterToken: "restored-token",
    initialCluster,
    ports: { client: self.client, peer: self.peer },
    readyMembers: cluster.length,
    readyTimeoutMs: 90_000, // a new cluster elects and publishes under the shared machine's load
  });
  prepare?.(m.dataDir);
  const r = await runEtcdTs([
    "snapshot", "restore", file,
    "--name", name,
    "--initial-cluster", initialCluster,
    "--initial-cluster-token", "restored-token",
    "--initial-advertise-peer-urls", `http://127.0.0.1:${self.peer}`,
    "--data-dir", m.dataDir,
    ...extra,
  ]);
  if (r.code !== 0) throw new Error(`etcd-ts snapshot restore failed (${r.code}): ${r.stderr}`);
  return m;
}

async function onePort(): Promise<{ name: string; peer: number; client: number }> {
  const [client, peer] = await freePorts(2);
  return { name: "restored", client: client!, peer: peer! };
}

const SOURCES: Array<{ label: string; binary: () => ServerBinary }> = [
  { label: "etcd-ts", binary: etcdTsBinary },
  { label: "etcd 3.4", binary: () => ({ kind: "etcd", command: reference!, prefixArgs: [] }) },
];

describe.skipIf(!haveTools).each(SOURCES)("etcd-ts snapshot status|restore of a snapshot of $label", ({ binary }) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "restore-"));
  const file = path.join(scratch, "snapshot.db");
  let before: View;
  const members: Member[] = [];

  beforeAll(async () => {
    const source = await startMember({ binary: binary(), name: "source", extraArgs: ["--snapshot-count", "25"] });
    members.push(source);
    await writeWorkload(source);
    before = await viewOf(source);
    await ctl(source.clientUrl, ["snapshot", "save", file]);
    await source.stop();
  }, 180_000);

  afterAll(async () => {
    for (const m of members) await m.destroy();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("snapshot status prints what etcdctl prints, in every format", async () => {
    for (const format of ["simple", "table", "json"]) {
      const ours = await runEtcdTs(["snapshot", "status", file, "-w", format]);
      const theirs = await runEtcdctl("127.0.0.1:1", ["snapshot", "status", file, "-w", format]);
      expect(theirs.code).toBe(0);
      expect({ code: ours.code, stdout: ours.stdout }, format).toEqual({ code: 0, stdout: theirs.stdout });
    }
    const missing = await runEtcdTs(["snapshot", "status"]);
    expect(missing.code).toBe(128);
    expect(errorLine(missing.stderr)).toBe("Error: snapshot status requires exactly one argument");
  }, 60_000);

  it("a restored member serves the same keys, revisions, leases and HashKV", async () => {
    const m = await restoredMember(file, "restored", [await onePort()]);
    members.push(m);
    await m.start();
    const after = await viewOf(m);
    expect(after).toEqual(before);
    // It is a new cluster of one, and takes writes above the restored revision.
    const members_ = JSON.parse(await ctl(m.clientUrl, ["member", "list", "-w", "json"])) as { members: Array<{ name: string }> };
    expect(members_.members.map((x) => x.name)).toEqual(["restored"]);
    const put = await m.grpc().put("r/after", "1");
    expect(put.revision).toBe(BigInt(before.revision as number) + 1n);
    await m.stop();
  }, 120_000);
});

describe.skipIf(!haveTools)("etcd-ts snapshot restore: clusters, revision bump, integrity", () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "restore-more-"));
  const file = path.join(scratch, "snapshot.db");
  let before: View;
  const members: Member[] = [];

  beforeAll(async () => {
    const source = await startMember({ binary: { kind: "etcd", command: reference!, prefixArgs: [] }, name: "source" });
    members.push(source);
    await writeWorkload(source);
    before = await viewOf(source);
    await ctl(source.clientUrl, ["snapshot", "save", file]);
    await source.stop();
  }, 120_000);

  afterAll(async () => {
    for (const m of members) await m.destroy();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("one file restored for each of 3 members gives a cluster that forms and agrees", async () => {
    const ports = await freePorts(6);
    const cluster = ["m1", "m2", "m3"].map((name, i) => ({ name, client: ports[2 * i]!, peer: ports[2 * i + 1]! }));
    const three: Member[] = [];
    for (const c of cluster) three.push(await restoredMember(file, c.name, cluster));
    members.push(...three);
    await Promise.all(three.map((m) => m.start()));
    const list = JSON.parse(await ctl(three[0]!.clientUrl, ["member", "list", "-w", "json"])) as { members: Array<{ name: string }> };
    expect(list.members.map((x) => x.name).sort()).toEqual(["m1", "m2", "m3"]);
    for (const m of three) {
      const h = await m.grpc().hashKv(0n);
      expect({ hash: h.hash, compactRevision: h.compactRevision }).toEqual({ hash: before.hash, compactRevision: before.compactRevision });
    }
    await three[0]!.grpc().put("r/cluster", "formed");
    const got = JSON.parse(await ctl(three[2]!.clientUrl, ["get", "r/cluster", "-w", "json"])) as { kvs: Array<{ value: string }> };
    expect(Buffer.from(got.kvs[0]!.value, "base64").toString()).toBe("formed");
    expect((await viewOf(three[1]!)).leases).toEqual(before.leases);
    await Promise.all(three.map((m) => m.stop()));
  }, 180_000);

  it("members restored by etcdctl (etcd 3.4) and by etcd-ts from one file form one cluster", async () => {
    const ports = await freePorts(6);
    const cluster = ["x1", "x2", "x3"].map((name, i) => ({ name, client: ports[2 * i]!, peer: ports[2 * i + 1]! }));
    const initialCluster = cluster.map((c) => `${c.name}=http://127.0.0.1:${c.peer}`).join(",");
    const mixed: Member[] = [];
    for (const c of cluster.slice(0, 2)) {
      const m = new Member({
        binary: { kind: "etcd", command: reference!, prefixArgs: [] },
        name: c.name,
        clusterToken: "restored-token",
        initialCluster,
        ports: { client: c.client, peer: c.peer },
        readyMembers: 3,
        readyTimeoutMs: 90_000,
      });
      await ctl("127.0.0.1:1", [
        "snapshot", "restore", file, "--name", c.name, "--initial-cluster", initialCluster, "--initial-cluster-token", "restored-token",
        "--initial-advertise-peer-urls", `http://127.0.0.1:${c.peer}`, "--data-dir", m.dataDir,
      ]);
      mixed.push(m);
    }
    mixed.push(await restoredMember(file, "x3", cluster));
    members.push(...mixed);
    await Promise.all(mixed.map((m) => m.start()));
    await mixed[2]!.grpc().put("r/mixed", "yes");
    await mixed[0]!.grpc().range("r/mixed"); // linearizable: applied on the etcd member too
    const hashes = new Set<bigint>();
    const clusterIds = new Set<bigint>();
    for (const m of mixed) {
      const st = await m.grpc().status();
      const h = await m.grpc().hashKv(BigInt(before.revision as number) + 1n);
      hashes.add(h.hash);
      clusterIds.add(st.header.clusterId);
    }
    expect(hashes.size).toBe(1);
    expect(clusterIds.size).toBe(1);
    await Promise.all(mixed.map((m) => m.stop()));
  }, 180_000);

  it("--bump-revision with --mark-compacted: no revision at or below R is seen again", async () => {
    const R = Number(before.revision);
    const BUMP = 1000;
    const usage = await runEtcdTs(["snapshot", "restore", file, "--bump-revision", "5", "--data-dir", path.join(scratch, "x")]);
    expect({ code: usage.code, error: errorLine(usage.stderr) }).toEqual({ code: 128, error: "Error: --mark-compacted required if --revision-bump > 0" });

    const m = await restoredMember(file, "restored", [await onePort()], ["--bump-revision", String(BUMP), "--mark-compacted"]);
    members.push(m);
    await m.start();
    // A watcher that had seen R resumes at R+1: compacted, at the bumped revision.
    const watch = await runEtcdctl(m.clientUrl, ["watch", "r/k000", `--rev=${R + 1}`], { timeoutMs: 10_000 });
    expect(watch.stdout + watch.stderr).toContain("required revision has been compacted");
    const old = await runEtcdctl(m.clientUrl, ["get", "r/last", `--rev=${R}`]);
    expect(old.stderr).toContain("required revision has been compacted");
    const h = await m.grpc().hashKv(0n);
    expect(h.compactRevision).toBe(BigInt(R + BUMP));
    // Reads show the data at the bumped revision; the next write lands above it.
    const got = JSON.parse(await ctl(m.clientUrl, ["get", "", "--from-key", "-w", "json"])) as { header: { revision: number }; kvs: unknown[] };
    expect(got.header.revision).toBe(R + BUMP);
    expect(got.kvs).toEqual(before.kvs);
    const put = await m.grpc().put("r/after-bump", "1");
    expect(put.revision).toBe(BigInt(R + BUMP + 1));
    // Survives a restart (the compaction finished, the marker is gone, the revision stays).
    await m.restart();
    const again = await m.grpc().range("r/after-bump");
    expect(again.header.revision).toBe(BigInt(R + BUMP + 1));
    await m.stop();
  }, 120_000);

  it("checks the sha256 trailer as etcdctl does", async () => {
    const noHash = path.join(scratch, "no-hash.db");
    const bad = path.join(scratch, "bad.db");
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(noHash, bytes.subarray(0, bytes.length - 32));
    const flipped = Buffer.from(bytes);
    flipped[5000] = flipped[5000]! ^ 0x01;
    fs.writeFileSync(bad, flipped);
    const port = await onePort();
    const flags = (dir: string): string[] => [
      "--name", "restored", "--initial-cluster", `restored=http://127.0.0.1:${port.peer}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${port.peer}`, "--data-dir", path.join(scratch, dir),
    ];
    const missing = path.join(scratch, "missing.db");
    for (const args of [["snapshot", "status", missing], ["snapshot", "restore", missing, ...flags("ts-missing")]]) {
      const ours = await runEtcdTs(args);
      const theirs = await runEtcdctl("127.0.0.1:1", args);
      expect({ code: ours.code, error: errorLine(ours.stderr) }).toEqual({ code: theirs.code, error: errorLine(theirs.stderr) });
    }
    for (const [f, dir] of [[noHash, "a"], [bad, "b"]] as const) {
      const ours = await runEtcdTs(["snapshot", "restore", f, ...flags(`ts-${dir}`)]);
      const theirs = await runEtcdctl("127.0.0.1:1", ["snapshot", "restore", f, ...flags(`etcd-${dir}`)]);
      expect(theirs.code).toBe(1);
      expect({ code: ours.code, error: errorLine(ours.stderr) }).toEqual({ code: 1, error: errorLine(theirs.stderr) });
    }
    // A db without the trailer (as copied from a data dir) restores with --skip-hash-check; the
    // leftover of an interrupted restore is replaced.
    const m = await restoredMember(noHash, "restored", [port], ["--skip-hash-check"], (dir) => {
      fs.mkdirSync(path.join(dir, "member.restoring", "snap"), { recursive: true });
      fs.writeFileSync(path.join(dir, "member.restoring", "snap", "junk"), "x");
    });
    members.push(m);
    await m.start();
    expect((await m.grpc().hashKv(0n)).hash).toBe(before.hash);
    await m.stop();
  }, 120_000);
});
