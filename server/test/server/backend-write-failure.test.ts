/**
 * Applied entries reach LevelDB at the backend's batch interval, after their clients are answered
 * (backend.ts, apply-loop.ts). A write that fails then must still stop the member: its state is
 * ahead of its database, and only a restart from the WAL puts them together again. One member on
 * LevelDB whose engine refuses writes once armed.
 */
import { afterEach, expect, it } from "vitest";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { ClassicLevelEngine } from "../../src/mvcc/backend/classic-level-engine.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { bootstrapMember } from "../../src/server/bootstrap.js";
import { MemoryWalDir } from "../../src/wal/memory-wal.js";
import { MemorySnapDir, MemorySnapshotter } from "../../src/snap/memory-snapshotter.js";
import { ManualClock, tempDir } from "../mvcc/helpers.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const b = (s: string): Buffer => Buffer.from(s);
const putReq = (key: string) => ({ key: b(key), value: b("v"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });

it("a backend write that fails after its entries were answered stops the member", async () => {
  const clock = new ManualClock();
  const t = await tempDir();
  cleanups.push(t.cleanup);
  const engine = await ClassicLevelEngine.open({ dir: t.dir });
  let armed = false;
  const writeBatch = engine.writeBatch.bind(engine);
  engine.writeBatch = (ops, o) => (armed ? Promise.reject(new Error("injected: disk gone")) : writeBatch(ops, o));
  const fatal: string[] = [];
  const member = await bootstrapMember(
    {
      name: "one", clientUrls: ["http://one:2379"], maxRequestBytes: 1 << 20, maxTxnOps: 128,
      electionMs: 100, heartbeatMs: 10, quotaBackendBytes: 0, requestTimeoutMs: 500,
      snapshotCount: 10_000, snapshotCatchUpEntries: 5, maxSnapshots: 0,
      initialCluster: new Map([["one", ["http://one:2380"]]]), initialClusterToken: "write-failure", preVote: true,
      enableLeaseCheckpoint: false, unsafeNoFsync: false, autoCompactionMode: "periodic", autoCompactionRetention: "0",
    },
    {
      wal: new MemoryWalDir(), snapshotter: new MemorySnapshotter({ dir: new MemorySnapDir() }),
      backend: await Backend.openOn(engine, { clock }),
      transport: { send: () => undefined, sendSnapshot: () => undefined },
      clock,
      fatal: (message, fields) => {
        fatal.push(`${message} ${String(fields.error)}`);
      },
      randomSeed: 7, logger: nullLogger,
    },
  );
  cleanups.push(() => member.stop());
  member.start();
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    const out = p.finally(() => (done = true));
    for (let i = 0; !done; i++) {
      if (i > 20_000) throw new Error("timed out");
      clock.advance(5);
      await new Promise((r) => setTimeout(r, 0));
    }
    return out;
  };
  await settle(member.server.ready);
  await settle(member.server.put(putReq("before")));

  armed = true;
  // Answered from memory: the write waits for the batch interval.
  const answered = await settle(member.server.put(putReq("after")));
  expect(answered.header?.revision).toBeGreaterThan(1n);
  expect(fatal).toEqual([]);
  for (let i = 0; i < 100 && fatal.length === 0; i++) {
    clock.advance(10);
    await new Promise((r) => setTimeout(r, 1));
  }
  expect(fatal).toHaveLength(1);
  expect(fatal[0]).toMatch(/^apply failed: a backend write failed .*injected: disk gone/);
});
