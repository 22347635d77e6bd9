/**
 * A backend behind the raft snapshot the WAL resumes from (a leader's snapshot whose install a
 * crash cut short leaves this behind) gets the database kept for that snapshot installed; without
 * one, bootstrap refuses it: the entries it lacks are no longer replayed.
 * A restart takes its membership from the v2 store (etcd 3.4's snapshot data), or from the
 * records of a data dir written before the v2 store was kept. A member told by a peer that it
 * was removed resolves `removed` (the process then stops).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { systemClock } from "../../src/pkg/clock.js";
import { nullLogger } from "../../src/pkg/logger.js";
import type { Snapshot } from "../../src/raft/types.js";
import { bootstrapMember, type BootstrapOptions, type MemberWal } from "../../src/server/bootstrap.js";
import type { EtcdServer } from "../../src/server/etcd-server.js";
import { MvccStore } from "../../src/mvcc/kv-store.js";
import { MvccStorePort } from "../../src/server/mvcc-store-port.js";
import { MemorySnapshotDatabases, type SnapshotDatabases } from "../../src/server/snapshot-databases.js";
import { MemorySnapDir } from "../../src/snap/memory-snapshotter.js";
import { tempDir } from "../mvcc/helpers.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const options: BootstrapOptions = {
  name: "one", clientUrls: ["http://one:2379"], maxRequestBytes: 1 << 20, maxTxnOps: 128,
  electionMs: 100, heartbeatMs: 10, quotaBackendBytes: 0, requestTimeoutMs: 1000,
  snapshotCount: 100, maxSnapshots: 0, initialCluster: undefined, initialClusterToken: "t", preVote: true,
  enableLeaseCheckpoint: false, unsafeNoFsync: false, autoCompactionMode: "periodic", autoCompactionRetention: "0",
};

async function restart(consistentIndex: number): Promise<unknown> {
  return (await restartMember(consistentIndex)).applied;
}

async function restartMember(
  consistentIndex: number,
  snapshotData: Uint8Array = new Uint8Array(0),
  records: Array<["members" | "membersRemoved" | "cluster", string, string]> = [],
  snapshotDatabases?: SnapshotDatabases,
): Promise<EtcdServer> {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const backend = await Backend.open(t.dir);
  cleanups.push(() => backend.close());
  const batch = backend.batch();
  batch.setConsistentIndex(consistentIndex, 1);
  for (const [bucket, k, v] of records) batch.put(bucket, Buffer.from(k), Buffer.from(v));
  await backend.write(batch);
  const snapshot: Snapshot = { metadata: { index: 10, term: 1, confState: { voters: [1n], learners: [] } }, data: snapshotData };
  const wal: MemberWal = { save: async () => undefined, saveSnapshot: async () => undefined, releaseTo: async () => undefined, close: async () => undefined };
  const member = await bootstrapMember(options, {
    wal: {
      exists: () => true,
      create: async () => wal,
      open: async () => ({ wal, metadata: Buffer.from(JSON.stringify({ memberId: "1", clusterId: "2" })), hardState: { term: 1, vote: 1n, commit: 10 }, entries: [] }),
      validSnapshotEntries: async () => [{ index: 10, term: 1 }],
    },
    snapshotter: { save: async () => undefined, purge: async () => undefined, loadNewestAvailable: async () => snapshot },
    backend, transport: { send: () => undefined, sendSnapshot: () => undefined }, clock: systemClock,
    fatal: () => undefined, randomSeed: 1, logger: nullLogger, snapshotDatabases,
  });
  cleanups.push(() => member.server.stop());
  return member.server;
}

it("refuses a backend whose consistent index is behind the snapshot", async () => {
  await expect(restart(7)).rejects.toThrow(/consistent index 7 is behind the raft snapshot at 10/);
});

/** A snap directory keeping, for the snapshot at 10, the image of a store that put `k` at index 10. */
async function keptImage(imageIndex: number): Promise<MemorySnapDir> {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const backend = await Backend.open(t.dir);
  cleanups.push(() => backend.close());
  const store = new MvccStorePort(backend, await MvccStore.open(backend, {}, { clock: systemClock }));
  const w = store.beginWrite();
  w.put(Buffer.from("k"), Buffer.from("from the leader"), 0n);
  await w.commit(imageIndex);
  const image: [Buffer, Buffer][] = [];
  for await (const kv of store.image()) image.push(kv);
  const dir = new MemorySnapDir();
  MemorySnapshotDatabases.keep(dir, 10, image);
  MemorySnapshotDatabases.keep(dir, 4, image);
  return dir;
}

it("installs the database kept for the snapshot when the backend is behind it (a crash cut its install short)", async () => {
  const dir = await keptImage(10);
  const server = await restartMember(7, new Uint8Array(0), [], new MemorySnapshotDatabases(dir));
  expect(server.applied).toBe(10);
  const got = await server.store.range(Buffer.from("k"), undefined, {});
  expect(got.kvs.map((kv) => kv.value.toString())).toEqual(["from the leader"]);
  expect(dir.fileNames(), "the kept databases up to the snapshot are released").toEqual([]);
});

it("refuses a backend behind the snapshot when the kept database is behind it too", async () => {
  const dir = await keptImage(8);
  await expect(restartMember(7, new Uint8Array(0), [], new MemorySnapshotDatabases(dir))).rejects.toThrow(/consistent index 8 is behind the raft snapshot at 10/);
});

it("resumes from a backend at or past the snapshot", async () => {
  expect(await restart(10)).toBe(10);
});

it("restarts a data dir written before the v2 store was kept (snapshot data {\"clusterVersion\"})", async () => {
  const server = await restartMember(10, Buffer.from('{"clusterVersion":"3.4.0"}'), [
    ["members", "1", '{"id":"1","name":"one","peerURLs":["http://one:2380"],"clientURLs":["http://one:2379"],"isLearner":false}'],
    ["members", "clusterVersion", "3.4.0"],
    ["members", "removed/5", "1"],
  ]);
  expect(server.membership.list().map((m) => [m.id, m.name, m.peerUrls])).toEqual([[1n, "one", ["http://one:2380"]]]);
  expect(server.membership.clusterVersion).toBe("3.4.0");
  expect(server.membership.isRemoved(5n)).toBe(true);
  expect(JSON.parse(server.membership.v2.save().toString()).Root.Children["0"].Children.version.Value).toBe("3.4.0");
});

it("restarts from etcd 3.4's snapshot data: the membership comes from its v2 store", async () => {
  const storeJson = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "v2store", "fixtures", "etcd-3.4.23-store.json"));
  const server = await restartMember(10, storeJson, [
    ["members", "15ffa49f0fb8a805", '{"id":1585166596928219141,"peerURLs":["http://127.0.0.1:42261"],"name":"n1","clientURLs":["http://127.0.0.1:40189"]}'],
    ["cluster", "clusterVersion", "3.4.0"],
  ]);
  expect(server.membership.list().map((m) => [m.id, m.name, m.clientUrls])).toEqual([[0x15ffa49f0fb8a805n, "n1", ["http://127.0.0.1:40189"]]]);
  expect(server.membership.isRemoved(0x27d724e97d334fa5n)).toBe(true);
  expect(server.membership.v2.index).toBe(10);
});

it("stops when the transport reports that a peer answered 'removed' (PeerHandler.reportRemoved resolves `removed`)", async () => {
  const server = await restartMember(10);
  let removed = false;
  void server.removed.then(() => (removed = true));
  await new Promise((r) => setTimeout(r, 10));
  expect(removed).toBe(false);
  server.reportRemoved();
  await server.removed;
  expect(removed).toBe(true);
});
