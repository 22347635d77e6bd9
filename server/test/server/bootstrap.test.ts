/**
 * Bootstrap refuses a backend behind the raft snapshot the WAL resumes from: the entries it lacks
 * are no longer replayed (a leader's snapshot whose install was cut short leaves this behind).
 */
import { afterEach, expect, it } from "vitest";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { systemClock } from "../../src/pkg/clock.js";
import { nullLogger } from "../../src/pkg/logger.js";
import type { Snapshot } from "../../src/raft/types.js";
import { bootstrapMember, type BootstrapOptions, type MemberWal } from "../../src/server/bootstrap.js";
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
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const backend = await Backend.open(t.dir);
  cleanups.push(() => backend.close());
  const batch = backend.batch();
  batch.setConsistentIndex(consistentIndex, 1);
  await backend.write(batch);
  const snapshot: Snapshot = { metadata: { index: 10, term: 1, confState: { voters: [1n], learners: [] } }, data: new Uint8Array(0) };
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
    fatal: () => undefined, randomSeed: 1, logger: nullLogger,
  });
  return member.server.applied;
}

it("refuses a backend whose consistent index is behind the snapshot", async () => {
  await expect(restart(7)).rejects.toThrow(/consistent index 7 is behind the raft snapshot at 10/);
});

it("resumes from a backend at or past the snapshot", async () => {
  expect(await restart(10)).toBe(10);
});
