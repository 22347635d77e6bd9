/**
 * Both WAL directories against their contract (wal-dir-compliance.ts); then what only the
 * in-memory log can show: power loss with lost and torn records, and that it cuts segments where
 * the real log does.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { FsWalDir, MemoryWalDir, type WalLog } from "../../src/wal/index.js";
import type { Entry, HardState } from "../../src/raft/types.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";
import { describeWalDir, type WalSave } from "./wal-dir-compliance.js";
import { applyEntries, entry, hs, tempDir } from "./wal-helpers.js";
import { settles } from "../../../test/harness/settles.js";

const WAL_MODULE = fileURLToPath(new URL("../../src/wal/wal.ts", import.meta.url));
const SMALL = 4096;

/** A child process creates or opens the log in `dir`, saves `saves` and SIGKILLs itself. */
function writeAndKillFs(dir: string, segmentSizeBytes: number | undefined, metadata: Uint8Array, saves: WalSave[]): Promise<void> {
  const script = `
    import { Wal } from ${JSON.stringify(WAL_MODULE)};
    let input = "";
    for await (const chunk of process.stdin) input += chunk;
    const { dir, segmentSizeBytes, metadata, saves } = JSON.parse(input);
    const options = { segmentSizeBytes, preallocation: "sparse" };
    const wal = Wal.exists(dir)
      ? (await Wal.open(dir, { index: 0, term: 0 }, options)).wal
      : await Wal.create(dir, Buffer.from(metadata, "hex"), options);
    for (const s of saves) {
      const hardState = s.hardState === null ? undefined : { term: s.hardState.term, vote: BigInt(s.hardState.vote), commit: s.hardState.commit };
      const entries = s.entries.map((e) => ({ term: e.term, index: e.index, type: e.type, data: Buffer.from(e.data, "hex") }));
      await wal.save(hardState, entries, { sync: s.sync, deferred: s.deferred });
    }
    process.kill(process.pid, "SIGKILL");
  `;
  const input = JSON.stringify({
    dir,
    segmentSizeBytes,
    metadata: Buffer.from(metadata).toString("hex"),
    saves: saves.map((s) => ({
      hardState: s.hardState === undefined ? null : { ...s.hardState, vote: s.hardState.vote.toString() },
      entries: s.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString("hex") })),
      sync: s.sync,
      deferred: s.deferred === true,
    })),
  });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["pipe", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code, signal) => (signal === "SIGKILL" ? resolve() : reject(new Error(`writer exited without being killed (${signal ?? code})`))));
    child.stdin.end(input);
  });
}

describeWalDir("FsWalDir", ({ smallSegments }) => {
  const t = tempDir("etcd-ts-wal-dir-");
  const dir = path.join(t.dir, "member", "wal");
  const segmentSizeBytes = smallSegments ? SMALL : undefined;
  return {
    dir: new FsWalDir({ dir, wal: { segmentSizeBytes, preallocation: "sparse" } }),
    writeAndKill: (metadata, saves) => writeAndKillFs(dir, segmentSizeBytes, metadata, saves),
    destroy: t.cleanup,
  };
});

describeWalDir("MemoryWalDir", ({ smallSegments }) => {
  const dir = new MemoryWalDir({ segmentSizeBytes: smallSegments ? SMALL : undefined });
  return {
    dir,
    writeAndKill: async (metadata, saves) => {
      const wal = dir.exists() ? (await dir.open({ index: 0, term: 0 })).wal : await dir.create(metadata);
      for (const s of saves) await wal.save(s.hardState, s.entries, { sync: s.sync, deferred: s.deferred });
      dir.kill();
    },
    destroy: () => undefined,
  };
});

const META = new TextEncoder().encode("meta");

describe("MemoryWalDir: power loss", () => {
  it("keeps synced records, loses unsynced ones; markers, cuts and open make everything durable", async () => {
    const dir = new MemoryWalDir();
    let wal: WalLog = await dir.create(META);
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    await wal.save(hs(1, 1), [entry(2, 1)], { sync: false });
    expect(dir.unsyncedRecords()).toBe(2);
    expect(dir.crash()).toEqual({ keptRecords: 0, lostRecords: 2, torn: false });
    let r = await dir.open({ index: 0, term: 0 });
    expect(r.entries.map((e) => e.index)).toEqual([1]);
    expect(r.hardState).toEqual(hs(1, 0));
    wal = r.wal;
    await wal.save(hs(1, 1), [entry(2, 1)], { sync: false });
    await wal.saveSnapshot({ index: 1, term: 1 });
    await wal.save(undefined, [entry(3, 1)], { sync: false });
    dir.flush();
    await wal.save(undefined, [entry(4, 1)], { sync: false });
    dir.crash();
    r = await dir.open({ index: 0, term: 0 });
    expect(r.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    await r.wal.close();
  });

  it("a killed process's unsynced records are lost to a power loss before anything syncs them", async () => {
    const dir = new MemoryWalDir();
    const wal = await dir.create(META);
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: false });
    dir.kill();
    dir.crash();
    const r = await dir.open({ index: 0, term: 0 });
    expect(r.entries).toEqual([]);
    expect(r.hardState).toEqual({ term: 0, vote: 0n, commit: 0 });
  });

  it("keeps a prefix of the unsynced records, the last maybe torn and dropped on read (SEED=)", async () => {
    const seed = testSeed();
    try {
      const r = new SeededRandom(seed);
      const rng = (n: number): number => r.int(0, n - 1);
      let tornSeen = 0;
      let keptSeen = 0;
      for (let round = 0; round < 60; round++) {
        const dir = new MemoryWalDir({ segmentSizeBytes: SMALL });
        const wal = await dir.create(META);
        // Every record in save order, for the model of what a surviving prefix yields.
        const records: Array<{ e?: Entry; h?: HardState }> = [];
        let index = 0;
        for (let s = r.int(1, 12); s > 0; s--) {
          const batch: Entry[] = [];
          for (let k = r.int(0, 3); k > 0; k--) batch.push(entry(++index, 1, new Uint8Array(r.int(0, 50))));
          const h = r.next() < 0.6 ? hs(1, index) : undefined;
          const sync = r.next() < 0.3;
          await wal.save(h, batch, { sync });
          for (const e of batch) records.push({ e });
          if (h !== undefined) records.push({ h });
        }
        const durable = records.length - dir.unsyncedRecords();
        const outcome = dir.crash(rng);
        expect(outcome.keptRecords + outcome.lostRecords).toBe(records.length - durable);
        if (outcome.torn) tornSeen++;
        if (outcome.keptRecords > 0) keptSeen++;
        const readable = durable + outcome.keptRecords - (outcome.torn ? 1 : 0);
        const model: Entry[] = [];
        let hardState: HardState = { term: 0, vote: 0n, commit: 0 };
        for (const rec of records.slice(0, readable)) {
          if (rec.e) applyEntries(model, [rec.e]);
          if (rec.h) hardState = rec.h;
        }
        expect(await dir.validSnapshotEntries()).toEqual([{ index: 0, term: 0 }]);
        const reopened = await dir.open({ index: 0, term: 0 });
        expect(reopened.entries).toEqual(model);
        expect(reopened.hardState).toEqual(hardState);
        await reopened.wal.close();
      }
      expect(tornSeen).toBeGreaterThan(0);
      expect(keptSeen).toBeGreaterThan(tornSeen);
    } catch (e) {
      console.error(`memory WAL crash test failed with SEED=${seed}`);
      throw e;
    }
  });

  it("cuts a torn tail on open with a warning; validSnapshotEntries ignores it", async () => {
    const warnings: string[] = [];
    const dir = new MemoryWalDir({}, { logger: { info: () => undefined, warn: (m) => void warnings.push(m) } });
    const wal = await dir.create(META);
    await wal.save(hs(1, 1), [entry(1, 1)], { sync: true });
    await wal.save(hs(1, 1), [entry(2, 1)], { sync: false });
    // Keep both unsynced records, tear the second (the HardState).
    const picks = [2, 1];
    expect(dir.crash(() => picks.shift()!)).toEqual({ keptRecords: 2, lostRecords: 0, torn: true });
    expect(await dir.validSnapshotEntries()).toEqual([{ index: 0, term: 0 }]);
    const r = await dir.open({ index: 0, term: 0 });
    expect(r.entries.map((e) => e.index)).toEqual([1, 2]);
    expect(r.hardState).toEqual(hs(1, 1));
    expect(warnings.filter((w) => w.includes("torn"))).toHaveLength(1);
    await r.wal.close();
    await (await dir.open({ index: 0, term: 0 })).wal.close();
    expect(warnings.filter((w) => w.includes("torn"))).toHaveLength(1);
  });

  it("refuses a random source that returns something out of range", async () => {
    const dir = new MemoryWalDir();
    const wal = await dir.create(META);
    await wal.save(undefined, [entry(1, 1)], { sync: false });
    expect(() => dir.crash(() => 5)).toThrow(RangeError);
  });

  it("cuts off the log that was open: nothing it does settles or reaches the directory", async () => {
    const dir = new MemoryWalDir();
    const old = await dir.create(META);
    await old.save(hs(1, 1), [entry(1, 1)], { sync: true });
    dir.kill();
    expect(await settles(old.save(hs(1, 2), [entry(2, 1)], { sync: true }))).toBe(false);
    expect(await settles(old.saveSnapshot({ index: 1, term: 1 }))).toBe(false);
    expect(await settles(old.releaseTo(1))).toBe(false);
    expect(await settles(old.close())).toBe(false);
    const r = await dir.open({ index: 0, term: 0 });
    expect(r.entries.map((e) => e.index)).toEqual([1]);
    await r.wal.close();
  });
});

describe("MemoryWalDir: segments", () => {
  it("cuts where the real log cuts and releases the same segments", async () => {
    const t = tempDir("etcd-ts-wal-parity-");
    try {
      const fsDir = new FsWalDir({ dir: path.join(t.dir, "wal"), wal: { segmentSizeBytes: SMALL, preallocation: "sparse" } });
      const memDir = new MemoryWalDir({ segmentSizeBytes: SMALL });
      const fsWal = await fsDir.create(META);
      const memWal = await memDir.create(META);
      const r = new SeededRandom(7);
      let index = 0;
      for (let s = 0; s < 200; s++) {
        const batch: Entry[] = [];
        for (let k = r.int(0, 3); k > 0; k--) batch.push(entry(++index, 1, new Uint8Array(r.int(0, 120))));
        const h = r.next() < 0.5 ? hs(1, index) : undefined;
        const sync = r.next() < 0.5;
        await Promise.all([fsWal.save(h, batch, { sync }), memWal.save(h, batch, { sync })]);
        if (s % 50 === 49) {
          await Promise.all([fsWal.saveSnapshot({ index, term: 1 }), memWal.saveSnapshot({ index, term: 1 })]);
          await Promise.all([fsWal.releaseTo(index - 20), memWal.releaseTo(index - 20)]);
        }
      }
      const names = fsWal.segmentNames();
      // Several cuts, and releases removed the oldest segments.
      expect(Number.parseInt(names[names.length - 1]!.slice(0, 16), 16)).toBeGreaterThan(3);
      expect(names[0]).not.toBe("0000000000000000-0000000000000000.wal");
      expect(memDir.segmentNames()).toEqual(names);
      await Promise.all([fsWal.close(), memWal.close()]);
    } finally {
      t.cleanup();
    }
  });
});
