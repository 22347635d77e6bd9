/**
 * Seeded model test of the watch hub: random watchers (single keys, ranges, start revisions in
 * the past, present and future, filters, prevKv) on consumers that stall and drain at random,
 * against random puts, deletes, multi-op txns and compactions. Every watcher must receive exactly
 * the events a model derives from the write history: none lost, none duplicated, in order, each
 * revision whole; a watcher left behind a compaction gets one compacted signal after a prefix.
 * As in etcd, a watcher may start AT the compact revision; it then cannot see the changes of that
 * revision that compaction dropped (tombstones, and versions superseded within the revision),
 * so those events are optional in the comparison.
 *
 * SEED=n replays (timing aside); RUNS=n runs more seeds (default 3).
 */
import { describe, expect, it } from "vitest";
import type { WatchMessage, WatchSink, WatchFilter } from "../../src/mvcc/watch-hub.js";
import { Harness, rng, tempDir } from "./helpers.js";

const KEYS = ["a", "b", "ba", "c", "d"];

interface ModelEvent {
  rev: number;
  type: "PUT" | "DELETE";
  key: string;
  value: string;
  create: number;
  version: number;
  /** The key's value@modRevision at rev-1, if it existed. */
  prev: string | undefined;
}

interface TestWatcher {
  key: string;
  end: string | undefined; // undefined single, "\0" from key
  start: number; // effective first revision
  filters: WatchFilter[];
  prevKv: boolean;
  messages: WatchMessage[];
  accepting: () => boolean;
  paused: boolean;
}

function matches(w: TestWatcher, key: string): boolean {
  if (w.end === undefined) return key === w.key;
  if (key < w.key) return false;
  return w.end === "\u0000" || key < w.end;
}

async function runOnce(seed: number): Promise<void> {
  const r = rng(seed);
  const t = await tempDir();
  const h = await Harness.open(t.dir, {
    valueCacheBytes: r() < 0.5 ? 0 : 1 << 20,
    watch: { catchUpEntriesMax: 1 + Math.floor(r() * 20), retryDelayMaxMs: 2, catchUpWatchersMax: 1 + Math.floor(r() * 4) },
  });
  const state = new Map<string, { value: string; create: number; mod: number; version: number }>();
  const history: ModelEvent[] = [];
  const watchers: TestWatcher[] = [];
  let compactRev = -1;
  const compactions: number[] = [];
  let seq = 0;

  const addWatcher = () => {
    const key = KEYS[Math.floor(r() * KEYS.length)]!;
    const x = r();
    const end = x < 0.4 ? undefined : x < 0.6 ? "\u0000" : KEYS[Math.floor(r() * KEYS.length)]! + "z";
    const cur = h.store.currentRevision;
    const y = r();
    const startRevision = y < 0.3 ? 0 : y < 0.9 ? Math.max(1, compactRev - 1) + Math.floor(r() * (cur - Math.max(1, compactRev - 1) + 1)) : cur + 1 + Math.floor(r() * 3);
    const filters: WatchFilter[] = r() < 0.15 ? ["NOPUT"] : r() < 0.15 ? ["NODELETE"] : [];
    const w: TestWatcher = {
      key,
      end,
      start: startRevision <= 0 ? cur + 1 : startRevision,
      filters,
      prevKv: r() < 0.4,
      messages: [],
      paused: r() < 0.3,
      accepting: () => true,
    };
    let inBuffer = 0;
    const capacity = 1 + Math.floor(r() * 4);
    const drain = setInterval(() => (inBuffer = Math.max(0, inBuffer - 1)), 1 + Math.floor(r() * 3));
    drain.unref();
    const sink: WatchSink = {
      send: (m) => {
        if (w.paused || inBuffer >= capacity) return false;
        inBuffer++;
        w.messages.push(m);
        return true;
      },
    };
    h.store.watch({ key: Buffer.from(key), end: end === undefined ? undefined : end === "\u0000" ? Buffer.from([0]) : Buffer.from(end), startRevision, prevKv: w.prevKv, filters }, sink);
    watchers.push(w);
  };

  for (let step = 0; step < 250; step++) {
    const x = r();
    if (x < 0.08) {
      addWatcher();
    } else if (x < 0.12) {
      const w = watchers[Math.floor(r() * watchers.length)];
      if (w) w.paused = !w.paused;
    } else if (x < 0.14 && h.store.currentRevision > compactRev + 3) {
      const rev = h.store.currentRevision - Math.floor(r() * 3);
      await h.store.compact(rev);
      compactRev = rev;
      compactions.push(rev);
    } else {
      const txn = h.store.write();
      const rev = txn.revision;
      const before = new Map(state);
      const nOps = r() < 0.8 ? 1 : 2 + Math.floor(r() * 2);
      const events: ModelEvent[] = [];
      for (let i = 0; i < nOps; i++) {
        const key = KEYS[Math.floor(r() * KEYS.length)]!;
        const p = before.get(key);
        const prev = p ? `${p.value}@${p.mod}` : undefined;
        if (r() < 0.25) {
          if (txn.deleteRange(Buffer.from(key), undefined).length > 0) {
            state.delete(key);
            events.push({ rev, type: "DELETE", key, value: "", create: 0, version: 0, prev });
          }
        } else {
          const value = `v${seq++}`;
          const cur = state.get(key);
          const next = { value, create: cur ? cur.create : rev, mod: rev, version: cur ? cur.version + 1 : 1 };
          txn.put(Buffer.from(key), Buffer.from(value), 0n);
          state.set(key, next);
          events.push({ rev, type: "PUT", key, value, create: next.create, version: next.version, prev });
        }
      }
      await h.commit(txn);
      history.push(...events);
    }
    if (step % 10 === 0) await new Promise((res) => setTimeout(res, 1));
  }
  for (const w of watchers) w.paused = false;
  const deadline = Date.now() + 20_000;
  await new Promise((res) => setTimeout(res, 5));
  while (h.store.watcherCounts().unsynced > 0) {
    if (Date.now() > deadline) throw new Error("watchers did not catch up");
    await new Promise((res) => setTimeout(res, 5));
  }

  // Events a compaction at their own revision drops: tombstones, and versions superseded later in
  // the same revision.
  const droppable = new Set<ModelEvent>();
  for (const c of compactions) {
    const atC = history.filter((e) => e.rev === c);
    atC.forEach((e, i) => {
      if (e.type === "DELETE" || atC.slice(i + 1).some((later) => later.key === e.key)) droppable.add(e);
    });
  }
  /** Drops optional expected events the watcher did not get, aligning `want` with `got`. */
  const align = (want: ModelEvent[], gotKeys: string[], describe: (e: ModelEvent) => string): ModelEvent[] => {
    const out: ModelEvent[] = [];
    let g = 0;
    for (const e of want) {
      if (g < gotKeys.length && gotKeys[g] === describe(e)) {
        out.push(e);
        g++;
      } else if (!droppable.has(e)) {
        out.push(e);
        if (g < gotKeys.length) g++;
      }
    }
    return out;
  };

  for (const [i, w] of watchers.entries()) {
    const got = w.messages.flatMap((m) => ("events" in m ? m.events : []));
    const compacted = w.messages.filter((m) => "compactRevision" in m);
    const describeGot = got.map((e) => `${e.type} ${e.kv.key}=${e.kv.value}@${e.kv.modRevision}/${e.kv.createRevision}/${e.kv.version}`);
    const describeEvent = (e: ModelEvent) => `${e.type} ${e.key}=${e.value}@${e.rev}/${e.create}/${e.version}`;
    const expected = align(
      history
        .filter((e) => e.rev >= w.start && matches(w, e.key))
        .filter((e) => !(e.type === "PUT" && w.filters.includes("NOPUT")) && !(e.type === "DELETE" && w.filters.includes("NODELETE"))),
      describeGot,
      describeEvent,
    );
    const describeWant = expected.map(describeEvent);
    const label = `watcher ${i} ${JSON.stringify({ key: w.key, end: w.end, start: w.start, filters: w.filters, prevKv: w.prevKv })}`;
    if (compacted.length > 0) {
      expect(compacted.length, label).toBe(1);
      expect(w.messages[w.messages.length - 1], label).toBe(compacted[0]);
      expect(describeWant.slice(0, describeGot.length), label).toEqual(describeGot);
      // it really was behind the compaction
      const compactedAt = (compacted[0] as { compactRevision: number }).compactRevision;
      expect(w.start, label).toBeLessThan(compactedAt);
      if (got.length > 0) expect(got[got.length - 1]!.kv.modRevision, label).toBeLessThan(compactedAt);
      continue;
    }
    expect(describeGot, label).toEqual(describeWant);
    // revisions never split across messages, batches in revision order
    let lastRev = 0;
    for (const m of w.messages) {
      if (!("events" in m) || m.events.length === 0) continue;
      expect(m.events[0]!.kv.modRevision, label).toBeGreaterThan(lastRev);
      lastRev = m.events[m.events.length - 1]!.kv.modRevision;
      expect(m.revision, label).toBeGreaterThanOrEqual(lastRev);
    }
    if (w.prevKv) {
      for (let j = 0; j < got.length; j++) {
        const e = got[j]!;
        const want = expected[j]!;
        const isCreate = want.type === "PUT" && want.create === want.rev;
        const have = e.prevKv ? `${e.prevKv.value}@${e.prevKv.modRevision}` : undefined;
        if (isCreate || want.prev === undefined) expect(have, label).toBeUndefined();
        else if (have === undefined) expect(want.rev - 1, `${label}: prevKv missing at ${want.rev}`).toBeLessThan(compactRev);
        else expect(have, label).toBe(want.prev);
      }
    } else {
      expect(got.every((e) => e.prevKv === undefined), label).toBe(true);
    }
  }
  await h.close();
  await t.cleanup();
}

describe("watch hub against a model (seeded)", () => {
  const runs = Number(process.env.RUNS ?? 3);
  const seeds = process.env.SEED ? [Number(process.env.SEED)] : Array.from({ length: runs }, () => Math.floor(Math.random() * 2 ** 31));
  for (const seed of seeds) {
    it(`seed=${seed}`, async () => {
      try {
        await runOnce(seed);
      } catch (e) {
        console.error(`watch model test failed: seed=${seed} (replay with SEED=${seed})`);
        throw e;
      }
    });
  }
});
