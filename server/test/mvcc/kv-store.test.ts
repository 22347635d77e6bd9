import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrCompacted, ErrFutureRev } from "../../src/mvcc/errors.js";
import { Bucket } from "../../src/mvcc/backend/backend.js";
import { DEFAULT_VALUE_CACHE_BYTES, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, valueCacheBytesForQuota } from "../../src/mvcc/kv-store.js";
import { encodeRevisionValue } from "../../src/mvcc/revision.js";
import { b, Harness, ManualClock, s, tempDir } from "./helpers.js";

const ZERO = Buffer.from([0]);

let h: Harness;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  const t = await tempDir();
  cleanup = t.cleanup;
  h = await Harness.open(t.dir);
});

afterEach(async () => {
  await h.close();
  await cleanup();
});

async function keyBucketEntries(): Promise<number> {
  let n = 0;
  for await (const _ of h.backend.iterate("key", { keysOnly: true })) n++;
  return n;
}

function brief(kv: { key: Buffer; value: Buffer; createRevision: number; modRevision: number; version: number }) {
  return [s(kv.key), s(kv.value), kv.createRevision, kv.modRevision, kv.version];
}

describe("value cache budget", () => {
  it("is a sixteenth of the backend quota, between 1 MiB and the default", () => {
    const MiB = 1024 * 1024;
    expect(valueCacheBytesForQuota(64 * MiB)).toBe(4 * MiB);
    expect(valueCacheBytesForQuota(2 * 1024 * MiB)).toBe(DEFAULT_VALUE_CACHE_BYTES);
    expect(valueCacheBytesForQuota(8 * 1024 * MiB)).toBe(DEFAULT_VALUE_CACHE_BYTES);
    expect(valueCacheBytesForQuota(1)).toBe(MiB);
  });
});

describe("revisions, versions, generations", () => {
  it("starts empty at revision 1", async () => {
    expect(h.store.currentRevision).toBe(1);
    expect(h.store.compactRevision).toBe(-1);
    const r = await h.store.range(b("\0"), ZERO, {});
    expect(r).toEqual({ kvs: [], count: 0, revision: 1 });
  });

  it("put/delete/re-create follow etcd's revision, version and generation rules", async () => {
    const kv1 = await h.put("a", "1");
    expect(brief(kv1)).toEqual(["a", "1", 2, 2, 1]);
    const kv2 = await h.put("a", "2", 7n);
    expect(brief(kv2)).toEqual(["a", "2", 2, 3, 2]);
    expect(kv2.lease).toBe(7n);
    expect(await h.del("a")).toBe(1);
    expect(h.store.currentRevision).toBe(4);
    expect(await h.get("a")).toBeUndefined();
    const kv3 = await h.put("a", "3");
    expect(brief(kv3)).toEqual(["a", "3", 5, 5, 1]);
    // history
    expect(brief((await h.get("a", 2))!)).toEqual(["a", "1", 2, 2, 1]);
    expect(brief((await h.get("a", 3))!)).toEqual(["a", "2", 2, 3, 2]);
    expect(await h.get("a", 4)).toBeUndefined();
    expect(await h.get("a", 1)).toBeUndefined();
  });

  it("a txn takes one main revision with sub revisions; a txn without changes does not bump", async () => {
    const txn = h.store.write();
    expect(txn.revision).toBe(2);
    txn.put(b("a"), b("1"), 0n);
    txn.put(b("b"), b("1"), 0n);
    const r = txn.put(b("a"), b("2"), 0n);
    expect(r.prev).toMatchObject({ modRevision: 2, version: 1, createRevision: 2 });
    expect(brief(r.kv)).toEqual(["a", "2", 2, 2, 2]);
    const events = await h.commit(txn);
    expect(events.map((e) => [e.type, s(e.kv.key), s(e.kv.value)])).toEqual([
      ["PUT", "a", "1"],
      ["PUT", "b", "1"],
      ["PUT", "a", "2"],
    ]);
    expect(h.store.currentRevision).toBe(2);

    const empty = h.store.write();
    expect(empty.deleteRange(b("zzz"), undefined)).toEqual([]);
    expect(await h.commit(empty)).toEqual([]);
    expect(h.store.currentRevision).toBe(2);
    expect(await keyBucketEntries()).toBe(3);
  });

  it("reads inside a txn see its writes; other readers once it ended, before its batch is written", async () => {
    await h.put("a", "1");
    const txn = h.store.write();
    txn.put(b("a"), b("2"), 0n);
    txn.put(b("c"), b("x"), 0n);
    const inside = await txn.range(b("a"), b("z"));
    expect(inside.kvs.map((kv) => s(kv.value))).toEqual(["2", "x"]);
    expect(inside.revision).toBe(3);
    const outside = await h.store.range(b("a"), b("z"));
    expect(outside.kvs.map((kv) => s(kv.value))).toEqual(["1"]);
    expect(outside.revision).toBe(2);
    const batch = h.backend.batch();
    txn.end(batch);
    // Published at once, served from memory until the batch is in LevelDB.
    expect(h.store.currentRevision).toBe(3);
    expect(h.store.writtenRevision).toBe(2);
    const writing = h.backend.write(batch);
    const before = await h.store.range(b("a"), b("z"));
    expect(before.kvs.map((kv) => s(kv.value))).toEqual(["2", "x"]);
    await writing;
    expect(h.store.writtenRevision).toBe(3);
    expect((await h.store.range(b("a"), b("z"))).kvs.map((kv) => s(kv.value))).toEqual(["2", "x"]);
  });

  it("values of a revision not yet written are read from memory even when the cache dropped them", async () => {
    const h2 = await Harness.open((await tempDir()).dir, { valueCacheBytes: 0 });
    const txn = h2.store.write();
    txn.put(b("a"), b("1"), 0n);
    const batch = h2.backend.batch();
    txn.end(batch);
    expect((await h2.store.range(b("a"), undefined)).kvs.map((kv) => s(kv.value))).toEqual(["1"]);
    // HashKV scans LevelDB: it waits for the batch.
    const hash = h2.store.hashKV(0);
    await h2.backend.write(batch);
    expect((await hash).revision).toBe(2);
    expect((await h2.store.range(b("a"), undefined)).kvs.map((kv) => s(kv.value))).toEqual(["1"]);
    await h2.close();
  });

  it("deleteRange returns the deleted keys' state and writes one tombstone each", async () => {
    await h.put("a", "1", 5n);
    await h.put("b", "1");
    await h.put("b", "2");
    await h.put("c", "1");
    const txn = h.store.write();
    const deleted = txn.deleteRange(b("a"), b("c"));
    expect(deleted.map((d) => [s(d.key), d.modRevision, d.version, d.lease])).toEqual([
      ["a", 2, 1, 5n],
      ["b", 4, 2, 0n],
    ]);
    const events = await h.commit(txn);
    expect(events.map((e) => [e.type, s(e.kv.key), e.kv.modRevision])).toEqual([
      ["DELETE", "a", 6],
      ["DELETE", "b", 6],
    ]);
    expect((await h.store.range(b("\0"), ZERO)).kvs.map((kv) => s(kv.key))).toEqual(["c"]);
  });

  it("groups several txns in one backend batch", async () => {
    const batch = h.backend.batch();
    const t1 = h.store.write();
    t1.put(b("a"), b("1"), 0n);
    t1.end(batch);
    const t2 = h.store.write();
    expect(t2.revision).toBe(3);
    expect((await t2.range(b("a"), undefined)).kvs[0]!.value.toString()).toBe("1");
    t2.put(b("a"), b("2"), 0n);
    t2.end(batch);
    expect(h.store.currentRevision).toBe(3);
    expect(h.store.writtenRevision).toBe(1);
    batch.setConsistentIndex(9);
    await h.backend.write(batch);
    expect(h.store.writtenRevision).toBe(3);
    expect(brief((await h.get("a"))!)).toEqual(["a", "2", 2, 3, 2]);
    expect(h.backend.consistentIndex()).toBe(9);
  });
});

describe("range", () => {
  beforeEach(async () => {
    for (const k of ["a", "b", "ba", "c", "d"]) await h.put(k, `v-${k}`);
    await h.del("d");
  });

  it("single key, [key, end), key and above, everything", async () => {
    const keys = async (key: Buffer, end: Buffer | undefined) => (await h.store.range(key, end)).kvs.map((kv) => s(kv.key));
    expect(await keys(b("b"), undefined)).toEqual(["b"]);
    expect(await keys(b("b"), Buffer.alloc(0))).toEqual(["b"]);
    expect(await keys(b("bb"), undefined)).toEqual([]);
    expect(await keys(b("b"), b("c"))).toEqual(["b", "ba"]);
    expect(await keys(b("b"), ZERO)).toEqual(["b", "ba", "c"]);
    expect(await keys(ZERO, ZERO)).toEqual(["a", "b", "ba", "c"]);
    expect(await keys(b("c"), b("a"))).toEqual([]);
    expect(await keys(b("d"), undefined)).toEqual([]);
  });

  it("limit, count, countOnly, keysOnly", async () => {
    const r = await h.store.range(b("a"), ZERO, { limit: 2 });
    expect(r.kvs.map((kv) => s(kv.key))).toEqual(["a", "b"]);
    expect(r.count).toBe(4);
    expect(r.revision).toBe(7);
    const c = await h.store.range(b("a"), ZERO, { countOnly: true });
    expect(c).toEqual({ kvs: [], count: 4, revision: 7 });
    const k = await h.store.range(b("a"), b("b"), { keysOnly: true });
    expect(k.kvs[0]!.value.length).toBe(0);
    expect(k.kvs[0]!.modRevision).toBe(2);
    // the cached version keeps its value
    expect(s((await h.get("a"))!.value)).toBe("v-a");
  });

  it("historical reads and the revision errors", async () => {
    expect((await h.store.range(ZERO, ZERO, { revision: 3 })).kvs.map((kv) => s(kv.key))).toEqual(["a", "b"]);
    expect((await h.store.range(ZERO, ZERO, { revision: 6 })).count).toBe(5);
    expect((await h.store.range(ZERO, ZERO, { revision: 3 })).revision).toBe(7);
    await expect(h.store.range(ZERO, ZERO, { revision: 8 })).rejects.toThrow("mvcc: required revision is a future revision");
    await expect(h.store.range(ZERO, ZERO, { revision: 8 })).rejects.toBeInstanceOf(ErrFutureRev);
    await h.store.compact(4);
    await expect(h.store.range(ZERO, ZERO, { revision: 3 })).rejects.toThrow("mvcc: required revision has been compacted");
    await expect(h.store.range(ZERO, ZERO, { revision: 3 })).rejects.toBeInstanceOf(ErrCompacted);
    expect((await h.store.range(ZERO, ZERO, { revision: 4 })).kvs.map((kv) => s(kv.key))).toEqual(["a", "b", "ba"]);
  });

  it("txn ranges check revisions against the txn's view", async () => {
    const txn = h.store.write();
    await expect(txn.range(b("a"), undefined, { revision: 8 })).rejects.toBeInstanceOf(ErrFutureRev);
    txn.put(b("z"), b("1"), 0n);
    expect((await txn.range(b("z"), undefined, { revision: 8 })).count).toBe(1);
    await h.commit(txn);
  });
});

describe("compaction", () => {
  it("keeps the newest version <= rev per key, drops tombstones, removes the rest physically", async () => {
    await h.put("a", "1"); // 2
    await h.put("a", "2"); // 3
    await h.put("b", "1"); // 4
    await h.del("b"); // 5
    await h.put("c", "1"); // 6
    await h.put("a", "3"); // 7
    expect(await keyBucketEntries()).toBe(6);
    await expect(h.store.compact(8)).rejects.toBeInstanceOf(ErrFutureRev);
    await h.store.compact(6);
    expect(h.store.compactRevision).toBe(6);
    // a@3 (kept), c@6 (kept), a@7 (newer) remain; a@2, b@4, b@5 (tombstone) are gone.
    expect(await keyBucketEntries()).toBe(3);
    expect((await h.store.range(ZERO, ZERO, { revision: 6 })).kvs.map((kv) => [s(kv.key), s(kv.value)])).toEqual([
      ["a", "2"],
      ["c", "1"],
    ]);
    expect(brief((await h.get("a"))!)).toEqual(["a", "3", 2, 7, 3]);
    await expect(h.store.compact(6)).rejects.toBeInstanceOf(ErrCompacted);
    await expect(h.store.compact(5)).rejects.toThrow("mvcc: required revision has been compacted");
    expect(h.store.indexedKeys).toBe(2);
    const finished = await h.backend.get("meta", META_FINISHED_COMPACT);
    expect(finished).toEqual(encodeRevisionValue(6));
  });

  it("the version count survives compaction and restart", async () => {
    for (let i = 0; i < 5; i++) await h.put("k", `${i}`);
    await h.store.compact(4);
    await h.put("k", "x");
    expect(brief((await h.get("k"))!)).toEqual(["k", "x", 2, 7, 6]);
    await h.reopen();
    expect(brief((await h.get("k"))!)).toEqual(["k", "x", 2, 7, 6]);
    expect(brief((await h.get("k", 4))!)).toEqual(["k", "2", 2, 4, 3]);
    await h.put("k", "y");
    expect(brief((await h.get("k"))!)).toEqual(["k", "y", 2, 8, 7]);
  });

  it("waits for in-flight reads below the compaction before deleting", async () => {
    const t = await tempDir();
    const h2 = await Harness.open(t.dir, { valueCacheBytes: 0, syncReadMissesMax: 0, compactionPauseMs: 0 });
    const KEYS = 1500;
    for (let v = 0; v < 3; v++) {
      const batch = h2.backend.batch();
      for (let i = 0; i < KEYS; i += 100) {
        const txn = h2.store.write();
        for (let j = i; j < i + 100; j++) txn.put(b(`k${String(j).padStart(5, "0")}`), b(`v${v}`), 0n);
        txn.end(batch);
      }
      await h2.backend.write(batch);
    }
    const oldRev = KEYS / 100 + 1; // every key at version 1
    // Slow LevelDB reads down so that compaction gets to run while they are in flight.
    const backend = h2.backend;
    const getMany = backend.getManyPrefixed.bind(backend);
    backend.getManyPrefixed = async (keys: Buffer[]) => {
      await new Promise((r) => setTimeout(r, 100));
      return getMany(keys);
    };
    const reads = Array.from({ length: 12 }, () => h2.store.range(ZERO, ZERO, { revision: oldRev }));
    const compacting = h2.store.compact(h2.store.currentRevision);
    for (const r of await Promise.all(reads)) {
      expect(r.kvs.length).toBe(KEYS);
      expect(r.kvs.every((kv) => kv.value.toString() === "v0")).toBe(true);
    }
    await compacting;
    await expect(h2.store.range(ZERO, ZERO, { revision: oldRev })).rejects.toBeInstanceOf(ErrCompacted);
    await h2.close();
    await t.cleanup();
  });

  it("compaction staged into the apply batch is persisted with it", async () => {
    for (let i = 0; i < 5; i++) await h.put("k", `${i}`);
    const batch = h.backend.batch();
    const done = h.store.scheduleCompaction(4, batch);
    expect(h.store.compactRevision).toBe(4);
    batch.setConsistentIndex(100);
    await h.backend.write(batch);
    await done;
    expect(await keyBucketEntries()).toBe(3); // k@4, k@5, k@6
    expect(() => h.store.scheduleCompaction(3)).toThrow(ErrCompacted);
  });

  it("removes every dropped entry with the default batch size (large history)", async () => {
    const batchOps: Promise<void>[] = [];
    for (let i = 0; i < 6000; i++) {
      const txn = h.store.write();
      txn.put(b(`k${i % 100}`), Buffer.alloc(100, i % 256), 0n);
      const batch = h.backend.batch();
      txn.end(batch);
      batchOps.push(h.backend.write(batch));
    }
    await Promise.all(batchOps);
    await h.store.compact(5001);
    // newest <= 5001 for each of 100 keys, plus revisions 5002..6001
    expect(await keyBucketEntries()).toBe(100 + 1000);
    expect((await h.store.range(ZERO, ZERO)).count).toBe(100);
  });

  it("a compaction at a revision not yet written takes effect at once; its physical part waits for the batch", async () => {
    await h.put("k", "1"); // 2
    const batch = h.backend.batch();
    const t1 = h.store.write();
    t1.put(b("k"), b("2"), 0n); // 3, published, not written
    t1.end(batch);
    const done = h.store.scheduleCompaction(3, batch);
    expect(h.store.compactRevision).toBe(3);
    expect(h.store.scheduledCompactRevision).toBe(3);
    expect(() => h.store.scheduleCompaction(3)).toThrow(ErrCompacted);
    expect(s((await h.get("k"))!.value)).toBe("2");
    const t2 = h.store.write();
    await expect(t2.range(b("k"), undefined, { revision: 2 })).rejects.toBeInstanceOf(ErrCompacted);
    t2.end(batch);
    await h.backend.write(batch);
    expect(h.store.compactRevision).toBe(3);
    await done;
    await expect(h.get("k", 2)).rejects.toBeInstanceOf(ErrCompacted);
    expect(await keyBucketEntries()).toBe(1);
  });

  it("compacts in many bounded batches while writes continue", async () => {
    const h2 = await Harness.open((await tempDir()).dir, { compactionBatchEntries: 7, indexCompactionChunkKeys: 5, compactionPauseMs: 0 });
    for (let i = 0; i < 200; i++) await h2.put(`k${i % 30}`, `${i}`);
    const done = h2.store.compact(150);
    for (let i = 0; i < 20; i++) await h2.put(`k${i % 30}`, `late${i}`);
    await done;
    let n = 0;
    for await (const _ of h2.backend.iterate("key", { keysOnly: true })) n++;
    expect(n).toBe(30 + 51 + 20); // newest <= 150 per key, revisions 151..201, late puts
    const all = await h2.store.range(ZERO, ZERO);
    expect(all.count).toBe(30);
    expect(s(all.kvs.find((kv) => s(kv.key) === "k0")!.value)).toBe("late0");
    await h2.close();
  });
});

describe("restart", () => {
  it("restores revisions, keys, leases, compaction and the consistent index", async () => {
    await h.put("a", "1", 3n);
    await h.put("b", "1");
    await h.del("a");
    await h.put("a", "2");
    await h.put("c", "1", 9n);
    await h.store.compact(3);
    const before = await h.store.range(ZERO, ZERO);
    const hashBefore = await h.store.hashKV(0);
    const ci = h.backend.consistentIndex();
    expect(ci).toBe(5);
    await h.reopen();
    expect(h.backend.consistentIndex()).toBe(5);
    expect(h.store.currentRevision).toBe(6);
    expect(h.store.compactRevision).toBe(3);
    expect(await h.store.range(ZERO, ZERO)).toEqual(before);
    expect(await h.store.hashKV(0)).toEqual(hashBefore);
    const leased: string[] = [];
    h.store.forEachLeasedKey((k, l) => leased.push(`${s(k)}:${l}`));
    expect(leased).toEqual(["c:9"]);
    const txn = h.store.write();
    const r = txn.put(b("c"), b("2"), 0n);
    expect(r.prev?.lease).toBe(9n);
    expect(brief(r.kv)).toEqual(["c", "2", 6, 7, 2]);
    await h.commit(txn);
  });

  it("the revision does not go back when compaction removed the newest entries (tombstones)", async () => {
    await h.put("a", "1");
    await h.del("a");
    await h.store.compact(3);
    expect(await keyBucketEntries()).toBe(0);
    await h.reopen();
    expect(h.store.currentRevision).toBe(3);
    expect((await h.put("x", "1")).modRevision).toBe(4);
  });

  it("finishes a compaction a restart interrupted", async () => {
    for (let i = 0; i < 10; i++) await h.put(`k${i % 3}`, `${i}`);
    await h.del("k0");
    const hashAt11 = await h.store.hashKV(11);
    // Simulate a crash after the scheduled record was written but before any deletion.
    const batch = h.backend.batch();
    batch.put("meta", META_SCHEDULED_COMPACT, encodeRevisionValue(9));
    await h.backend.write(batch);
    expect(await keyBucketEntries()).toBe(11);
    await h.reopen();
    expect(h.store.compactRevision).toBe(9);
    await expect(h.store.range(ZERO, ZERO, { revision: 8 })).rejects.toBeInstanceOf(ErrCompacted);
    const hashDuring = await h.store.hashKV(11);
    await h.store.resumedCompaction;
    expect(await h.backend.get("meta", META_FINISHED_COMPACT)).toEqual(encodeRevisionValue(9));
    // newest version <= 9 per key: k0@8, k1@9, k2@7
    const after = await h.store.range(ZERO, ZERO, { revision: 9 });
    expect(after.kvs.map((kv) => [s(kv.key), s(kv.value)])).toEqual([
      ["k0", "6"],
      ["k1", "7"],
      ["k2", "5"],
    ]);
    expect((await h.store.hashKV(11)).hash).toBe(hashDuring.hash);
    expect(hashAt11.compactRevision).toBe(-1);
    await h.reopen();
    expect(h.store.compactRevision).toBe(9);
    expect((await h.store.hashKV(11)).hash).toBe(hashDuring.hash);
  });

  it("pauses between compaction batches on the store's clock", async () => {
    const t = await tempDir();
    const clock = new ManualClock();
    const h2 = await Harness.open(t.dir, { compactionBatchEntries: 3, compactionPauseMs: 5 }, { clock });
    for (let i = 0; i < 12; i++) await h2.put(`k${i % 2}`, `${i}`);
    let finished = false;
    const done = h2.store.compact(12).then(() => (finished = true));
    let pauses = 0;
    while (!finished) {
      if (clock.pendingTimers() === 0) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      // Asleep on the clock: only advancing it lets the next batch run.
      await new Promise((r) => setTimeout(r, 5));
      expect(clock.pendingTimers()).toBe(1);
      clock.advance(5);
      pauses++;
    }
    await done;
    expect(pauses).toBe(3); // 11 key-bucket entries at or below 12, read 3 at a time: 4 batches
    await h2.close();
    await t.cleanup();
  });

  it("resumes a compaction interrupted half way through its deletions", async () => {
    const t = await tempDir();
    const h2 = await Harness.open(t.dir, { compactionBatchEntries: 3, compactionPauseMs: 5 });
    for (let i = 0; i < 60; i++) await h2.put(`k${i % 5}`, `${i}`);
    await h2.del("k1");
    const expected = await h2.store.range(ZERO, ZERO);
    const done = h2.store.compact(55);
    // close while deletions are in progress
    await new Promise((r) => setTimeout(r, 20));
    await h2.store.close();
    await done;
    await h2.backend.close();
    const h3 = await Harness.open(t.dir);
    expect(h3.store.compactRevision).toBe(55);
    await h3.store.resumedCompaction;
    expect(await h3.store.range(ZERO, ZERO)).toEqual(expected);
    let n = 0;
    for await (const _ of h3.backend.iterate("key", { keysOnly: true })) n++;
    expect(n).toBe(5 + 7); // newest <= 55 per key + revisions 56..62
    await h3.close();
    await t.cleanup();
  });
});

describe("hashKV", () => {
  it("is deterministic across members with the same history and across physical compaction", async () => {
    const t = await tempDir();
    const other = await Harness.open(t.dir, { valueCacheBytes: 0 });
    for (const x of [h, other]) {
      for (let i = 0; i < 30; i++) await x.put(`k${i % 7}`, `v${i}`, BigInt(i % 3));
      await x.del("k3");
      await x.del("k4", "k6");
    }
    const h1 = await h.store.hashKV(0);
    expect(await other.store.hashKV(0)).toEqual(h1);
    expect(h1.revision).toBe(33);
    expect((await h.store.hashKV(20)).hash).toBe((await other.store.hashKV(20)).hash);
    await h.store.compact(25);
    await other.store.compact(25);
    expect((await h.store.hashKV(0)).hash).toBe((await other.store.hashKV(0)).hash);
    await expect(h.store.hashKV(25)).rejects.toBeInstanceOf(ErrCompacted);
    await expect(h.store.hashKV(34)).rejects.toBeInstanceOf(ErrFutureRev);
    await other.close();
    await t.cleanup();
  });
});

describe("backend bucket layout", () => {
  it("stores revisions in etcd's key format", async () => {
    await h.put("a", "1");
    await h.del("a");
    const keys: string[] = [];
    for await (const [k] of h.backend.iterate("key", { keysOnly: true })) keys.push(k.toString("hex"));
    expect(keys).toEqual(["0000000000000002" + "5f" + "0000000000000000", "0000000000000003" + "5f" + "0000000000000000" + "74"]);
    expect(Bucket.key).toBe(1);
  });
});
