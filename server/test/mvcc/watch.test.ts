import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Event } from "../../src/mvcc/key-value.js";
import type { WatchMessage, WatchSink } from "../../src/mvcc/watch-hub.js";
import type { MvccStoreOptions } from "../../src/mvcc/kv-store.js";
import { b, Harness, ManualClock, rng, s, seedFromEnv, tempDir } from "./helpers.js";

const ZERO = Buffer.from([0]);

class Collector implements WatchSink {
  messages: WatchMessage[] = [];
  accept: () => boolean = () => true;
  refused = 0;

  send(m: WatchMessage): boolean {
    if (!this.accept()) {
      this.refused++;
      return false;
    }
    this.messages.push(m);
    return true;
  }

  get events(): Event[] {
    return this.messages.flatMap((m) => ("events" in m ? m.events : []));
  }

  /** Events as "TYPE key=value@rev" strings. */
  get lines(): string[] {
    return this.events.map((e) => `${e.type} ${s(e.kv.key)}=${s(e.kv.value)}@${e.kv.modRevision}${e.prevKv ? ` prev=${s(e.prevKv.value)}@${e.prevKv.modRevision}` : ""}`);
  }
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

let h: Harness;
let cleanup: () => Promise<void>;

async function openWith(options: MvccStoreOptions): Promise<void> {
  await h.close();
  await cleanup();
  const t = await tempDir();
  cleanup = t.cleanup;
  h = await Harness.open(t.dir, options);
}

beforeEach(async () => {
  const t = await tempDir();
  cleanup = t.cleanup;
  h = await Harness.open(t.dir);
});

afterEach(async () => {
  await h.close();
  await cleanup();
});

describe("synced watchers", () => {
  it("get matching events of each committed revision, single key and ranges", async () => {
    const one = new Collector();
    const range = new Collector();
    const from = new Collector();
    h.store.watch({ key: b("a"), startRevision: 0, prevKv: false }, one);
    h.store.watch({ key: b("a"), end: b("c"), startRevision: 0, prevKv: false }, range);
    h.store.watch({ key: b("b"), end: ZERO, startRevision: 0, prevKv: false }, from);
    await h.put("a", "1");
    await h.put("b", "1");
    await h.put("z", "1");
    await h.del("a");
    expect(one.lines).toEqual(["PUT a=1@2", "DELETE a=@5"]);
    expect(range.lines).toEqual(["PUT a=1@2", "PUT b=1@3", "DELETE a=@5"]);
    expect(from.lines).toEqual(["PUT b=1@3", "PUT z=1@4"]);
    expect(one.messages.map((m) => ("revision" in m ? m.revision : -1))).toEqual([2, 5]);
    expect(h.store.watcherCounts()).toEqual({ synced: 3, unsynced: 0 });
  });

  it("delivers one revision's events together and in txn order", async () => {
    const c = new Collector();
    h.store.watch({ key: b("a"), end: b("b"), startRevision: 0, prevKv: false }, c);
    const txn = h.store.write();
    txn.put(b("a"), b("1"), 0n);
    txn.put(b("ab"), b("1"), 0n);
    txn.deleteRange(b("a"), undefined);
    txn.put(b("zz"), b("1"), 0n);
    await h.commit(txn);
    expect(c.messages.length).toBe(1);
    expect(c.lines).toEqual(["PUT a=1@2", "PUT ab=1@2", "DELETE a=@2"]);
  });

  it("a synced watcher gets each revision when its txn ends, before the batch is written", async () => {
    const c = new Collector();
    h.store.watch({ key: b("k"), startRevision: 0, prevKv: false }, c);
    const batch = h.backend.batch();
    for (let i = 0; i < 3; i++) {
      const txn = h.store.write();
      txn.put(b("k"), b(`${i}`), 0n);
      txn.end(batch);
    }
    expect(c.messages.map((m) => ("revision" in m ? m.revision : -1))).toEqual([2, 3, 4]);
    await h.backend.write(batch);
    expect(c.messages.length).toBe(3);
  });

  it("a watcher catching up over revisions not yet written gets them once they are", async () => {
    const batch = h.backend.batch();
    for (let i = 0; i < 3; i++) {
      const txn = h.store.write();
      txn.put(b("k"), b(`${i}`), 0n);
      txn.end(batch);
    }
    const c = new Collector();
    h.store.watch({ key: b("k"), startRevision: 2, prevKv: false }, c);
    await h.backend.write(batch);
    await h.store.watchersIdle();
    expect(c.lines).toEqual(["PUT k=0@2", "PUT k=1@3", "PUT k=2@4"]);
  });

  it("filters NOPUT / NODELETE; a batch filtered to nothing is not sent", async () => {
    const noPut = new Collector();
    const noDel = new Collector();
    h.store.watch({ key: b("a"), startRevision: 0, prevKv: false, filters: ["NOPUT"] }, noPut);
    h.store.watch({ key: b("a"), startRevision: 0, prevKv: false, filters: ["NODELETE"] }, noDel);
    await h.put("a", "1");
    await h.del("a");
    await h.put("a", "2");
    expect(noPut.lines).toEqual(["DELETE a=@3"]);
    expect(noPut.messages.length).toBe(1);
    expect(noDel.lines).toEqual(["PUT a=1@2", "PUT a=2@4"]);
  });

  it("fills prevKv with the key's version at revision - 1 (etcd semantics)", async () => {
    const c = new Collector();
    h.store.watch({ key: b("a"), startRevision: 0, prevKv: true }, c);
    await h.put("a", "1"); // create: no prevKv
    await h.put("a", "2");
    const txn = h.store.write();
    txn.put(b("a"), b("3"), 0n);
    txn.put(b("a"), b("4"), 0n); // prev is the version at rev-1, not the same txn's put
    await h.commit(txn);
    await h.del("a");
    expect(c.lines).toEqual(["PUT a=1@2", "PUT a=2@3 prev=1@2", "PUT a=3@4 prev=2@3", "PUT a=4@4 prev=2@3", "DELETE a=@5 prev=4@4"]);
  });

  it("prevKv without a cache falls back to the store and still delivers in order", async () => {
    await openWith({ valueCacheBytes: 0 });
    const c = new Collector();
    await h.put("a", "0");
    h.store.watch({ key: b("a"), startRevision: 0, prevKv: true }, c);
    for (let i = 1; i <= 5; i++) await h.put("a", `${i}`);
    await h.del("a");
    await until(() => c.events.length === 6, "6 events");
    expect(c.lines).toEqual(["PUT a=1@3 prev=0@2", "PUT a=2@4 prev=1@3", "PUT a=3@5 prev=2@4", "PUT a=4@6 prev=3@5", "PUT a=5@7 prev=4@6", "DELETE a=@8 prev=5@7"]);
  });

  it("watching from a future revision skips earlier ones", async () => {
    const c = new Collector();
    h.store.watch({ key: b("a"), startRevision: 4, prevKv: false }, c);
    for (let i = 0; i < 4; i++) await h.put("a", `${i}`);
    expect(c.lines).toEqual(["PUT a=2@4", "PUT a=3@5"]);
  });

  it("progress notifications and cancel", async () => {
    const c = new Collector();
    const w = h.store.watch({ key: b("a"), startRevision: 0, prevKv: false }, c);
    await h.put("b", "1");
    expect(w.isSynced).toBe(true);
    expect(w.requestProgress()).toBe(true);
    expect(c.messages).toEqual([{ events: [], revision: 2 }]);
    expect(h.store.watchSyncedRevision()).toBe(2);
    w.cancel();
    w.cancel();
    await h.put("a", "1");
    expect(c.messages.length).toBe(1);
    expect(h.store.watcherCounts()).toEqual({ synced: 0, unsynced: 0 });
  });
});

describe("unsynced watchers", () => {
  it("catch up from a historical revision in bounded chunks, then continue synced", async () => {
    await openWith({ watch: { catchUpEntriesMax: 7 } });
    for (let i = 0; i < 50; i++) await h.put(`k${i % 5}`, `${i}`);
    await h.del("k0", "k2"); // deletes k0, k1 in one revision
    const c = new Collector();
    const w = h.store.watch({ key: b("k"), end: b("l"), startRevision: 10, prevKv: false }, c);
    expect(w.isSynced).toBe(false);
    expect(h.store.watchSyncedRevision()).toBe(9);
    await until(() => w.isSynced, "synced");
    const expected: string[] = [];
    for (let i = 8; i < 50; i++) expected.push(`PUT k${i % 5}=${i}@${i + 2}`);
    expected.push("DELETE k0=@52", "DELETE k1=@52");
    expect(c.lines).toEqual(expected);
    expect(c.messages.length).toBeGreaterThan(5);
    // a revision is never split across batches
    for (const m of c.messages) {
      if (!("events" in m)) continue;
      const last = m.events[m.events.length - 1]!.kv.modRevision;
      expect(m.revision).toBeGreaterThanOrEqual(last);
    }
    await h.put("k3", "late");
    expect(c.lines[c.lines.length - 1]).toBe("PUT k3=late@53");
  });

  it("a chunk read for a slower watcher never moves a faster one back", async () => {
    await openWith({ watch: { catchUpEntriesMax: 1 } });
    for (let i = 0; i < 6; i++) await h.put("a", `${i}`); // revisions 2..7
    const slow = new Collector();
    const fast = new Collector();
    const ws = h.store.watch({ key: b("a"), startRevision: 2, prevKv: false }, slow);
    const wf = h.store.watch({ key: b("a"), startRevision: 6, prevKv: false }, fast);
    await until(() => ws.isSynced && wf.isSynced, "both synced");
    expect(slow.lines).toEqual(["PUT a=0@2", "PUT a=1@3", "PUT a=2@4", "PUT a=3@5", "PUT a=4@6", "PUT a=5@7"]);
    expect(fast.lines).toEqual(["PUT a=4@6", "PUT a=5@7"]);
  });

  it("a stalled consumer does not hold back another watcher's catch-up", async () => {
    await openWith({ watch: { catchUpEntriesMax: 1, retryDelayMaxMs: 50 } });
    for (let i = 0; i < 30; i++) await h.put("a", `${i}`);
    const stalled = new Collector();
    stalled.accept = () => false;
    const live = new Collector();
    const ws = h.store.watch({ key: b("a"), startRevision: 2, prevKv: false }, stalled);
    const wl = h.store.watch({ key: b("a"), startRevision: 2, prevKv: false }, live);
    await until(() => wl.isSynced, "the live watcher synced", 3000);
    expect(live.events.length).toBe(30);
    expect(ws.isSynced).toBe(false);
    expect(stalled.refused).toBeGreaterThan(0);
    // once it drains, the stalled one catches up too
    stalled.accept = () => true;
    ws.resume();
    await until(() => ws.isSynced, "the stalled watcher synced", 3000);
    expect(stalled.events.length).toBe(30);
  });

  it("a refusing consumer's back-off runs on the store's clock, not on wall time", async () => {
    await h.close();
    await cleanup();
    const t = await tempDir();
    cleanup = t.cleanup;
    const clock = new ManualClock();
    h = await Harness.open(t.dir, { watch: { retryDelayMaxMs: 50 } }, { clock });
    for (let i = 0; i < 3; i++) await h.put("a", `${i}`);
    const c = new Collector();
    c.accept = () => false;
    const w = h.store.watch({ key: b("a"), startRevision: 2, prevKv: false }, c);
    await until(() => c.refused === 1 && clock.pendingTimers() === 1, "the catch-up loop asleep on the clock");
    c.accept = () => true;
    await new Promise((r) => setTimeout(r, 30));
    expect(c.events).toEqual([]);
    clock.advance(1);
    await until(() => w.isSynced, "synced once the clock moved");
    expect(c.lines).toEqual(["PUT a=0@2", "PUT a=1@3", "PUT a=2@4"]);
  });

  it("catch-up fills prevKv from the store", async () => {
    for (let i = 0; i < 4; i++) await h.put("a", `${i}`);
    await h.del("a");
    const c = new Collector();
    const w = h.store.watch({ key: b("a"), startRevision: 2, prevKv: true }, c);
    await until(() => w.isSynced, "synced");
    expect(c.lines).toEqual(["PUT a=0@2", "PUT a=1@3 prev=0@2", "PUT a=2@4 prev=1@3", "PUT a=3@5 prev=2@4", "DELETE a=@6 prev=3@5"]);
  });

  it("a compacted start revision gets the compacted signal; the compact revision itself is allowed", async () => {
    for (let i = 0; i < 10; i++) await h.put("a", `${i}`);
    await h.store.compact(6);
    const old = new Collector();
    const w = h.store.watch({ key: b("a"), startRevision: 5, prevKv: false }, old);
    await until(() => old.messages.length === 1, "compacted");
    expect(old.messages).toEqual([{ compactRevision: 6 }]);
    await h.put("a", "x");
    expect(old.messages.length).toBe(1);
    expect(w.isSynced).toBe(false);
    const atCompact = new Collector();
    const w2 = h.store.watch({ key: b("a"), startRevision: 6, prevKv: false }, atCompact);
    await until(() => w2.isSynced, "synced");
    expect(atCompact.lines[0]).toBe("PUT a=4@6");
  });

  it("a full consumer refusing the compacted signal gets it again later", async () => {
    for (let i = 0; i < 5; i++) await h.put("a", `${i}`);
    await h.store.compact(4);
    const c = new Collector();
    let open = false;
    c.accept = () => open;
    const w = h.store.watch({ key: b("a"), startRevision: 2, prevKv: false }, c);
    await until(() => c.refused >= 2, "refusals");
    open = true;
    w.resume();
    await until(() => c.messages.length === 1, "compacted");
    expect(c.messages).toEqual([{ compactRevision: 4 }]);
  });
});

describe("slow consumers", () => {
  it("never block writes and catch up without losing or duplicating events (seeded)", async () => {
    const seed = seedFromEnv();
    const r = rng(seed);
    try {
      await openWith({ valueCacheBytes: r() < 0.5 ? 0 : 1 << 20, watch: { catchUpEntriesMax: 1 + Math.floor(r() * 50), retryDelayMaxMs: 5 } });
      let paused = true;
      const consumers = Array.from({ length: 4 }, (_, i) => {
        const c = new Collector();
        const capacity = 1 + Math.floor(r() * 5);
        let inBuffer = 0;
        c.accept = () => {
          // the first two consumers are stalled for the whole write phase
          if (i < 2 && paused) return false;
          if (inBuffer >= capacity) return false;
          inBuffer++;
          return true;
        };
        // drain slowly
        const timer = setInterval(() => (inBuffer = Math.max(0, inBuffer - 1 - Math.floor(r() * 2))), 1 + i);
        const prevKv = i % 2 === 1;
        const w = h.store.watch({ key: b("k"), end: b("l"), startRevision: 0, prevKv }, c);
        return { c, timer, w, prevKv };
      });
      const expected: string[] = [];
      const prevOf = new Map<string, string>();
      const expectedPrev: string[] = [];
      const started = Date.now();
      for (let i = 0; i < 300; i++) {
        const key = `k${Math.floor(r() * 6)}`;
        if (r() < 0.15) {
          const n = await h.del(key);
          if (n > 0) {
            expected.push(`DELETE ${key}=@${h.store.currentRevision}`);
            expectedPrev.push(`DELETE ${key}=@${h.store.currentRevision} prev=${prevOf.get(key)}`);
            prevOf.delete(key);
          }
        } else {
          const kv = await h.put(key, `${i}`);
          expected.push(`PUT ${key}=${i}@${kv.modRevision}`);
          const p = prevOf.get(key);
          expectedPrev.push(`PUT ${key}=${i}@${kv.modRevision}${p ? ` prev=${p}` : ""}`);
          prevOf.set(key, `${i}@${kv.modRevision}`);
        }
      }
      const writeMs = Date.now() - started;
      paused = false;
      for (const { c, w, timer } of consumers) {
        await until(() => w.isSynced && c.events.length >= expected.length, "consumer caught up", 20_000);
        clearInterval(timer);
      }
      for (const { c, prevKv } of consumers) {
        expect(c.lines).toEqual(prevKv ? expectedPrev : expected);
      }
      expect(consumers[0]!.c.refused).toBeGreaterThan(0);
      expect(consumers[1]!.c.refused).toBeGreaterThan(0);
      expect(writeMs).toBeLessThan(10_000);
    } catch (e) {
      console.error(`slow consumer test failed: seed=${seed}`);
      throw e;
    }
  });

  it("a watcher catching up across a compaction is told it was compacted", async () => {
    await openWith({ watch: { catchUpEntriesMax: 2 } });
    for (let i = 0; i < 20; i++) await h.put("a", `${i}`);
    const c = new Collector();
    let open = false;
    c.accept = () => open;
    h.store.watch({ key: b("a"), startRevision: 2, prevKv: false }, c);
    await until(() => c.refused > 0, "refused");
    await h.store.compact(15);
    open = true;
    await until(() => c.messages.length > 0, "message");
    expect(c.messages).toEqual([{ compactRevision: 15 }]);
  });
});
