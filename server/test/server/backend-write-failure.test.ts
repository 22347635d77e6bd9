/**
 * Applied entries reach LevelDB at the backend's batch interval, after their clients are answered
 * (backend.ts, apply-loop.ts). A write that fails then must still stop the member: its state is
 * ahead of its database, and only a restart from the WAL puts them together again. One member on
 * LevelDB whose engine refuses writes once armed.
 *
 * Reads likewise: a txn's compare whose backend read fails has no outcome (etcd panics on an
 * unexpected error inside a txn); taking it as false would apply the failure branch on this member
 * alone.
 */
import { afterEach, expect, it } from "vitest";
import { Backend } from "../../src/mvcc/backend/backend.js";
import { ClassicLevelEngine } from "../../src/mvcc/backend/classic-level-engine.js";
import { nullLogger } from "../../src/pkg/logger.js";
import { bootstrapMember, type Member } from "../../src/server/bootstrap.js";
import { Compare_CompareResult, Compare_CompareTarget } from "@etcd-ts/proto/etcdserverpb/rpc";
import { MemoryWalDir } from "../../src/wal/memory-wal.js";
import { MemorySnapDir, MemorySnapshotter } from "../../src/snap/memory-snapshotter.js";
import { ManualClock, tempDir } from "../mvcc/helpers.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const b = (s: string): Buffer => Buffer.from(s);
const putReq = (key: string) => ({ key: b(key), value: b("v"), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false });

interface Disk {
  dir: string;
  wal: MemoryWalDir;
  snaps: MemorySnapDir;
}

async function newDisk(): Promise<Disk> {
  const t = await tempDir();
  cleanups.push(t.cleanup);
  return { dir: t.dir, wal: new MemoryWalDir(), snaps: new MemorySnapDir() };
}

interface Started {
  member: Member;
  engine: ClassicLevelEngine;
  fatal: string[];
  /** Drives the manual clock until `p` settles. */
  settle<T>(p: Promise<T>): Promise<T>;
  /** Drives the clock a while longer, until the member reported something fatal. */
  untilFatal(): Promise<void>;
}

async function startMember(disk: Disk): Promise<Started> {
  const clock = new ManualClock();
  const engine = await ClassicLevelEngine.open({ dir: disk.dir });
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
      wal: disk.wal, snapshotter: new MemorySnapshotter({ dir: disk.snaps }),
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
  const untilFatal = async (): Promise<void> => {
    for (let i = 0; i < 100 && fatal.length === 0; i++) {
      clock.advance(10);
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  await settle(member.server.ready);
  return { member, engine, fatal, settle, untilFatal };
}

it("a backend write that fails after its entries were answered stops the member", async () => {
  const { member, engine, fatal, settle, untilFatal } = await startMember(await newDisk());
  let armed = false;
  const writeBatch = engine.writeBatch.bind(engine);
  engine.writeBatch = (ops, o) => (armed ? Promise.reject(new Error("injected: disk gone")) : writeBatch(ops, o));
  await settle(member.server.put(putReq("before")));

  armed = true;
  // Answered from memory: the write waits for the batch interval.
  const answered = await settle(member.server.put(putReq("after")));
  expect(answered.header?.revision).toBeGreaterThan(1n);
  expect(fatal).toEqual([]);
  await untilFatal();
  expect(fatal).toHaveLength(1);
  expect(fatal[0]).toMatch(/^apply failed: a backend write failed .*injected: disk gone/);
});

it("a txn whose compare cannot read the backend stops the member instead of taking the failure branch", async () => {
  const disk = await newDisk();
  const first = await startMember(disk);
  await first.settle(first.member.server.put(putReq("k")));
  await first.member.stop();
  // A restarted member has no value cached: the compare reads LevelDB.
  const { member, engine, fatal, settle, untilFatal } = await startMember(disk);
  const failure = new Error("injected: read error");
  engine.getSync = () => {
    throw failure;
  };
  engine.getMany = () => Promise.reject(failure);
  const txn = member.server.txn({
    compare: [{ key: b("k"), rangeEnd: Buffer.alloc(0), target: Compare_CompareTarget.VALUE, result: Compare_CompareResult.EQUAL, value: b("v") }],
    success: [],
    failure: [{ requestPut: putReq("took-failure-branch") }],
  });
  let answered: unknown;
  txn.then((r) => (answered = r), () => undefined);
  await untilFatal();
  expect(fatal).toHaveLength(1);
  expect(fatal[0]).toMatch(/^apply failed ErrStoreRead: mvcc: reading the key bucket failed: .*injected: read error/);
  // The failure branch was not applied, and nothing was answered.
  expect(answered).toBeUndefined();
  const rr = await member.server.range({ key: b("took-failure-branch"), rangeEnd: Buffer.alloc(0), serializable: true, countOnly: true } as never);
  expect(rr.count).toBe(0n);
  expect(rr.header?.revision).toBe(2n);
});
