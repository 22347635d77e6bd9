/**
 * MvccStore.restore: a store takes another's backend image (a leader's snapshot) and becomes it:
 * same revisions, compaction, ranges and HashKV; watchers registered before catch up from the new
 * contents (or are told they were compacted past), as etcd's watchableStore.Restore does.
 * Time runs on manual clocks, so back-off and compaction pauses move only when the test says.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrCompacted } from "../../src/mvcc/errors.js";
import type { Event } from "../../src/mvcc/key-value.js";
import type { WatchMessage, WatchSink } from "../../src/mvcc/watch-hub.js";
import { b, Harness, ManualClock, s, tempDir } from "./helpers.js";

const ZERO = Buffer.from([0]);

class Collector implements WatchSink {
  messages: WatchMessage[] = [];
  accept = true;

  send(m: WatchMessage): boolean {
    if (!this.accept) return false;
    this.messages.push(m);
    return true;
  }

  get lines(): string[] {
    return this.messages.flatMap((m) =>
      "events" in m ? m.events.map((e: Event) => `${e.type} ${s(e.kv.key)}=${s(e.kv.value)}@${e.kv.modRevision}`) : [`compacted@${m.compactRevision}`],
    );
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 5000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

let source: Harness;
let target: Harness;
let sourceClock: ManualClock;
let targetClock: ManualClock;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  const t1 = await tempDir();
  const t2 = await tempDir();
  cleanups.push(t1.cleanup, t2.cleanup);
  sourceClock = new ManualClock();
  targetClock = new ManualClock();
  source = await Harness.open(t1.dir, { compactionBatchEntries: 4, compactionPauseMs: 1 }, { clock: sourceClock });
  target = await Harness.open(t2.dir, { compactionBatchEntries: 4, compactionPauseMs: 1, watch: { retryDelayMaxMs: 1 } }, { clock: targetClock });
});

afterEach(async () => {
  await source.close();
  await target.close();
  for (const c of cleanups.splice(0)) await c();
});

/** Runs `p` to completion, moving `clock` whenever the work sleeps on it. */
async function withClock<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
  let settled = false;
  const out = p.finally(() => (settled = true));
  while (!settled) {
    if (clock.pendingTimers() > 0) clock.advance(1);
    await new Promise((r) => setImmediate(r));
  }
  return out;
}

/** Revisions 2..41 on keys a0..a4, b0 and b1, two deletes, compacted at 20. */
async function sourceHistory(): Promise<void> {
  for (let i = 0; i < 38; i++) await source.put(i % 3 === 0 ? `b${i % 2}` : `a${i % 5}`, `v${i}`);
  await source.del("a1");
  await source.del("b0");
  await withClock(sourceClock, source.store.compact(20));
}

async function everything(h: Harness, revision = 0): Promise<string[]> {
  const r = await h.store.range(ZERO, ZERO, { revision });
  return r.kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}@${kv.createRevision}/${kv.modRevision}/v${kv.version}`);
}

describe("MvccStore.restore", () => {
  it("takes the image's revisions, compaction, ranges and hash", async () => {
    await sourceHistory();
    for (let i = 0; i < 50; i++) await target.put(`other${i % 7}`, `${i}`);
    await withClock(targetClock, target.store.compact(30));

    const restoring = target.store.restore(source.backend.iterateAll());
    const readMeanwhile = everything(target); // waits for the new contents
    await withClock(targetClock, restoring);
    expect(await readMeanwhile).toEqual(await everything(source));

    expect(target.store.currentRevision).toBe(source.store.currentRevision);
    expect(target.store.currentRevision).toBe(41);
    expect(target.store.compactRevision).toBe(20);
    expect(await target.store.hashKV(0)).toEqual(await source.store.hashKV(0));
    expect(await target.store.hashKV(30)).toEqual(await source.store.hashKV(30));
    for (const rev of [20, 25, 38, 41]) expect(await everything(target, rev)).toEqual(await everything(source, rev));
    await expect(target.store.range(ZERO, ZERO, { revision: 19 })).rejects.toBeInstanceOf(ErrCompacted);
    expect(target.backend.consistentIndex()).toBe(source.backend.consistentIndex());
    // Writes go on from the image's head.
    target.index = target.backend.consistentIndex();
    expect((await target.put("a0", "after")).modRevision).toBe(42);
  });

  it("finishes a compaction the image had scheduled, and stops its own", async () => {
    for (let i = 0; i < 30; i++) await source.put(`k${i % 4}`, `${i}`);
    // The source's compaction sleeps on its clock after its first batch: the image sees it half done.
    const sourceCompaction = source.store.compact(25);
    await until(() => sourceClock.pendingTimers() > 0, "the source's compaction paused");
    const image = source.backend.iterateAll();
    const it = image[Symbol.asyncIterator]();
    const first = await it.next(); // the LevelDB snapshot is taken now
    async function* rest(): AsyncIterable<[Buffer, Buffer]> {
      if (!first.done) yield first.value;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    }
    for (let i = 0; i < 40; i++) await target.put(`t${i % 3}`, `${i}`);
    const targetCompaction = target.store.compact(35);
    await until(() => targetClock.pendingTimers() > 0, "the target's compaction paused");

    await withClock(targetClock, target.store.restore(rest()));
    await withClock(targetClock, targetCompaction);
    await withClock(targetClock, target.store.resumedCompaction);
    await withClock(sourceClock, sourceCompaction);

    expect(target.store.compactRevision).toBe(25);
    expect(await target.store.hashKV(0)).toEqual(await source.store.hashKV(0));
    const keys = async (h: Harness): Promise<string[]> => {
      const out: string[] = [];
      for await (const [k] of h.backend.iterate("key", { keysOnly: true })) out.push(k.toString("hex"));
      return out;
    };
    expect(await keys(target)).toEqual(await keys(source));
  });

  it("sends watchers back to catch up from the new contents, or cancels them as compacted", async () => {
    await sourceHistory(); // head 41, compacted at 20
    for (let i = 0; i < 10; i++) await target.put(`a${i % 5}`, `t${i}`); // head 11
    // Synced since 12 on keys nobody writes: its next revision stays 12, compacted in the image
    // (etcd cancels such a watcher too).
    const early = new Collector();
    target.store.watch({ key: b("c"), end: b("d"), startRevision: 0, prevKv: false }, early);
    for (let i = 10; i < 25; i++) await target.put(`a${i % 5}`, `t${i}`); // head 26
    const late = new Collector(); // synced at 27
    const lateWatcher = target.store.watch({ key: b("a"), end: b("b"), startRevision: 0, prevKv: false }, late);
    const behind = new Collector(); // catching up from 22, refusing for now
    behind.accept = false;
    const behindWatcher = target.store.watch({ key: b("a0"), startRevision: 22, prevKv: false }, behind);
    const future = new Collector(); // waits for revision 45
    target.store.watch({ key: b("a"), end: b("b"), startRevision: 45, prevKv: false }, future);
    await until(() => targetClock.pendingTimers() > 0, "the refusing watcher backing off");
    expect(early.lines).toEqual([]);
    expect(late.lines).toEqual([]);

    await withClock(targetClock, target.store.restore(source.backend.iterateAll()));
    behind.accept = true;
    behindWatcher.resume();
    await until(() => lateWatcher.isSynced && behindWatcher.isSynced, "watchers synced");
    await withClock(targetClock, target.store.watchersIdle());

    const sourceEvents = async (key: string, end: string | undefined, from: number): Promise<string[]> => {
      const out = new Collector();
      const w = source.store.watch({ key: b(key), end: end === undefined ? undefined : b(end), startRevision: from, prevKv: false }, out);
      await until(() => w.isSynced, "source watcher synced");
      w.cancel();
      return out.lines;
    };
    expect(early.lines).toEqual(["compacted@20"]);
    expect(late.lines).toEqual(await sourceEvents("a", "b", 27));
    expect(late.lines.length).toBeGreaterThan(0);
    expect(behind.lines).toEqual(await sourceEvents("a0", undefined, 22));
    expect(behind.lines.length).toBeGreaterThan(0);
    expect(future.lines).toEqual([]);

    // Synced again: new writes reach them at once.
    target.index = target.backend.consistentIndex();
    await target.put("a3", "x"); // 42
    for (let r = 42; r < 45; r++) await target.put("a4", `y${r}`);
    await until(() => future.lines.length === 1, "the future watcher's first event");
    expect(late.lines.slice(-4)).toEqual(["PUT a3=x@42", "PUT a4=y42@43", "PUT a4=y43@44", "PUT a4=y44@45"]);
    expect(future.lines).toEqual(["PUT a4=y44@45"]);
  });

  it("refuses while a write txn is open", async () => {
    const txn = target.store.write();
    await expect(target.store.restore(source.backend.iterateAll())).rejects.toThrow(/write is in progress/);
    await target.commit(txn);
  });
});
