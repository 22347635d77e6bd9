/**
 * MemoryStorage's packed entries against a model (a plain array of entries): random appends
 * (with overlaps that replace a tail), compactions, snapshots and releases, then every read
 * compared. SEED=n replays a run; a failure prints its seed.
 */
import { describe, it, expect } from "vitest";
import { EntryType, ErrCompacted, ErrUnavailable, MemoryStorage, seededRng, type Entry } from "../../src/raft/index.js";

function payload(rng: () => number, index: number, term: number): Uint8Array {
  // Mostly small payloads, some empty, a few above a quarter of a chunk (their own chunk).
  const r = rng();
  const n = r < 0.1 ? 0 : r < 0.99 ? Math.floor(rng() * 400) : 70_000 + Math.floor(rng() * 100_000);
  const b = new Uint8Array(n).fill((index * 31 + term * 7) & 0xff);
  if (n > 0) b[n - 1] = index & 0xff;
  return b;
}

function runSeed(seed: number): void {
  const source = seededRng(seed);
  const rng = (): number => source.nextInt(1 << 30) / (1 << 30);
  const s = new MemoryStorage();
  let base = 0;
  let baseTerm = 0;
  let model: Entry[] = []; // model[i] has index base + 1 + i
  let term = 1;
  const views: { e: Entry; copy: Uint8Array }[] = [];
  for (let step = 0; step < 400; step++) {
    const r = rng();
    const last = base + model.length;
    if (r < 0.55) {
      // Append, sometimes overlapping the tail (a new leader's entries replace it).
      const at = rng() < 0.2 && model.length > 0 ? base + 1 + Math.floor(rng() * model.length) : last + 1;
      if (rng() < 0.2) term++;
      const n = 1 + Math.floor(rng() * 40);
      const batch: Entry[] = [];
      for (let i = 0; i < n; i++) {
        const index = at + i;
        batch.push({ term, index, type: rng() < 0.05 ? EntryType.ConfChange : EntryType.Normal, data: payload(rng, index, term) });
      }
      s.append(batch);
      model = model.slice(0, at - base - 1).concat(batch);
    } else if (r < 0.7 && model.length > 0) {
      const to = base + 1 + Math.floor(rng() * model.length);
      baseTerm = model[to - base - 1]!.term;
      s.compact(to);
      model = model.slice(to - base);
      base = to;
    } else if (r < 0.75) {
      const to = last + 1 + Math.floor(rng() * 10);
      term++;
      s.applySnapshot({ metadata: { index: to, term, confState: { voters: [1n], learners: [] } }, data: new Uint8Array(0) });
      base = to;
      baseTerm = term;
      model = [];
    } else if (r < 0.85 && model.length > 0) {
      s.releaseEntries(base + 1 + Math.floor(rng() * model.length));
    } else if (model.length > 0) {
      // Keep a view that was read: later writes must not change its bytes.
      const i = base + 1 + Math.floor(rng() * model.length);
      const e = s.entries(i, i + 1, Infinity)[0]!;
      views.push({ e, copy: e.data.slice() });
    }
    // Check everything.
    expect(s.firstIndex()).toBe(base + 1);
    expect(s.lastIndex()).toBe(base + model.length);
    expect(s.term(base)).toBe(baseTerm);
    expect(() => s.term(base + model.length + 1)).toThrow(ErrUnavailable);
    if (base > 0) expect(() => s.term(base - 1)).toThrow(ErrCompacted);
    if (model.length > 0) {
      const got = s.entries(base + 1, base + model.length + 1, Infinity);
      expect(got.length).toBe(model.length);
      for (let i = 0; i < model.length; i++) {
        const want = model[i]!;
        const e = got[i]!;
        const same = e.index === want.index && e.term === want.term && e.type === want.type &&
          Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).equals(want.data) && s.term(want.index) === want.term;
        if (!same) expect({ ...e, data: [...e.data] }).toEqual({ ...want, data: [...want.data] });
      }
      // The size limit: at least one entry, then whole entries within the limit.
      const limit = Math.floor(rng() * 2000);
      const cut = s.entries(base + 1, base + model.length + 1, limit);
      let size = 0;
      let n = 0;
      for (const e of model) {
        size += e.data.byteLength + 12;
        if (n > 0 && size > limit) break;
        n++;
      }
      expect(cut.length).toBe(n);
    }
    for (const v of views) expect(Buffer.from(v.e.data).equals(Buffer.from(v.copy))).toBe(true);
  }
}

describe("MemoryStorage: packed entries", () => {
  it("reads back what a model holds, over random appends, overlaps, compactions and snapshots", () => {
    const seeds = process.env.SEED !== undefined ? [Number(process.env.SEED)] : Array.from({ length: 8 }, (_, i) => i + 1);
    for (const seed of seeds) {
      try {
        runSeed(seed);
      } catch (err) {
        console.error(`seed=${seed}`);
        throw err;
      }
    }
  });

  it("returns the appended objects until they are released, then equal copies", () => {
    const s = new MemoryStorage();
    const e1: Entry = { term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array([1, 2, 3]) };
    const e2: Entry = { term: 1, index: 2, type: EntryType.Normal, data: new Uint8Array([4]) };
    s.append([e1, e2]);
    expect(s.entries(1, 3, Infinity)).toEqual([e1, e2]);
    expect(s.entries(1, 3, Infinity)[0]).toBe(e1);
    s.releaseEntries(1);
    const [r1, r2] = s.entries(1, 3, Infinity);
    expect(r1).not.toBe(e1);
    expect(r1).toEqual(e1);
    expect(r2).toBe(e2);
  });

  it("costs its payload plus a few bytes per entry", () => {
    const s = new MemoryStorage();
    const n = 100_000;
    const batch: Entry[] = [];
    for (let i = 1; i <= n; i++) batch.push({ term: 1, index: i, type: EntryType.Normal, data: new Uint8Array(300) });
    s.append(batch);
    s.releaseEntries(n);
    const fp = s.footprint();
    expect(fp.recentEntries).toBe(0);
    expect(fp.payloadChunkBytes).toBeLessThan(n * 300 * 1.01 + 256 * 1024);
    s.compact(n - 5000);
    expect(s.footprint().payloadChunkBytes).toBeLessThan(5000 * 300 + 2 * 256 * 1024);
  });
});
