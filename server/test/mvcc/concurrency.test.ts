/**
 * Reads in flight stay consistent while pipelined writes and compactions run: every read returns
 * exactly the state of its revision (checked against snapshots), and none fails because
 * compaction removed what it needed. Cache off and async reads forced, so reads really wait on
 * LevelDB while the writer and compaction proceed. SEED=n replays.
 */
import { describe, expect, it } from "vitest";
import { Harness, rng, seedFromEnv, tempDir } from "./helpers.js";

describe("concurrent reads, writes and compaction", () => {
  it("every read sees exactly its revision (seeded)", async () => {
    const seed = seedFromEnv();
    const r = rng(seed);
    const t = await tempDir();
    const h = await Harness.open(t.dir, { valueCacheBytes: 0, syncReadMissesMax: 0, compactionBatchEntries: 5, compactionPauseMs: 0, indexCompactionChunkKeys: 3 });
    const KEYS = 12;
    // snapshots[rev] = key -> value at that revision
    const snapshots: Array<Map<string, string>> = [];
    snapshots[1] = new Map();
    let state = new Map<string, string>();
    const reads: Promise<void>[] = [];
    let checked = 0;
    try {
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 1500; i++) {
        // writer: one txn per batch, pipelined (not awaited)
        const txn = h.store.write();
        const k = `k${Math.floor(r() * KEYS)}`;
        state = new Map(state);
        if (r() < 0.2) {
          txn.deleteRange(Buffer.from(k), undefined);
          state.delete(k);
        } else {
          txn.put(Buffer.from(k), Buffer.from(`v${i}`), 0n);
          state.set(k, `v${i}`);
        }
        const rev = txn.revision;
        const batch = h.backend.batch();
        const changed = txn.changes > 0;
        txn.end(batch);
        if (changed) snapshots[rev] = state;
        writes.push(h.backend.write(batch));
        if (writes.length > 32) await writes.shift();

        // readers at random published revisions >= the compact revision
        if (r() < 0.5) {
          const lo = Math.max(1, h.store.compactRevision);
          const hi = h.store.currentRevision;
          const rev = lo + Math.floor(r() * (hi - lo + 1));
          reads.push(
            h.store.range(Buffer.from([0]), Buffer.from([0]), { revision: rev }).then((res) => {
              const want = [...snapshots[rev]!.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
              expect(res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()])).toEqual(want);
              checked++;
            }),
          );
        }
        // compaction now and then, never awaited here
        if (r() < 0.02 && h.store.currentRevision - 5 > h.store.compactRevision) {
          const to = h.store.currentRevision - Math.floor(r() * 5);
          reads.push(h.store.compact(to));
        }
        if (i % 50 === 0) await new Promise((res) => setImmediate(res));
      }
      await Promise.all(writes);
      await Promise.all(reads);
      expect(checked).toBeGreaterThan(300);
    } catch (e) {
      console.error(`concurrency test failed: seed=${seed}`);
      throw e;
    } finally {
      await h.close();
      await t.cleanup();
    }
  });
});
