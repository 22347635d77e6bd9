/**
 * The key index's compact layout against a reference: the straightforward layout (an array of
 * generation objects, each with its revision array) that the index used before, whose answers
 * the store's model and parity tests established. Random histories of puts, tombstones,
 * restores, reads at every revision, keep() and compactions must give the same answers.
 *
 * SEED=n replays one run; RUNS=n runs more seeds (default 200).
 */
import { describe, expect, it } from "vitest";
import { KeyIndex, type VisibleRevision } from "../../src/mvcc/key-index.js";
import { NO_LEASE } from "../../src/mvcc/key-value.js";
import { RevisionSet } from "../../src/mvcc/revision.js";
import { rng, seedFromEnv } from "./helpers.js";

class RefGeneration {
  /** Version of the newest revision in this generation. */
  ver: number;
  createdMain: number;
  createdSub: number;
  /** Flat `[main, sub, ...]`, ascending. */
  revs: number[];

  constructor(ver: number, createdMain: number, createdSub: number, revs: number[]) {
    this.ver = ver;
    this.createdMain = createdMain;
    this.createdSub = createdSub;
    this.revs = revs;
  }

  get count(): number {
    return this.revs.length >> 1;
  }

  isEmpty(): boolean {
    return this.revs.length === 0;
  }

  lastMain(): number {
    return this.revs[this.revs.length - 2]!;
  }
}

/** What `KeyIndex.get` finds: the visible revision of a key at some revision. */

class ReferenceKeyIndex {
  /**
   * The key as the index orders it (indexKey: one char per byte). The index keeps no Buffer of
   * the key: a Buffer view costs about 100 bytes of heap per key on top of the string the tree
   * already holds.
   */
  readonly keyStr: string;
  generations: RefGeneration[];
  /** Lease of the newest put (meaningful while the last generation is live). */
  lease: bigint = NO_LEASE;
  modMain = 0;
  modSub = 0;

  constructor(keyStr: string) {
    this.keyStr = keyStr;
    this.generations = [new RefGeneration(0, 0, 0, [])];
  }

  /** The key's bytes: a fresh Buffer on every call (callers that keep it copy it into an arena). */
  get key(): Buffer {
    return Buffer.from(this.keyStr, "latin1");
  }

  isEmpty(): boolean {
    return this.generations.length === 1 && this.generations[0]!.isEmpty();
  }

  /** True if the newest generation is live (the key exists at head). */
  isLive(): boolean {
    return !this.generations[this.generations.length - 1]!.isEmpty();
  }

  /** Appends a revision to the live generation (creating the key if it is deleted). */
  put(main: number, sub: number): void {
    if (main < this.modMain || (main === this.modMain && sub <= this.modSub)) {
      throw new Error(`mvcc: key index put ${main}/${sub} not after ${this.modMain}/${this.modSub}`);
    }
    const g = this.generations[this.generations.length - 1]!;
    if (g.isEmpty()) {
      g.createdMain = main;
      g.createdSub = sub;
      // An exact-size array: push() onto an empty one reserves room for 17 numbers, about 120
      // bytes per key that is written once (most keys).
      g.revs = [main, sub];
    } else {
      g.revs.push(main, sub);
    }
    g.ver++;
    this.modMain = main;
    this.modSub = sub;
  }

  /** Rebuild helper: starts the key from a stored record whose older history is compacted away. */
  restore(createdMain: number, modMain: number, modSub: number, ver: number): void {
    this.generations = [new RefGeneration(ver, createdMain, 0, [modMain, modSub])];
    this.modMain = modMain;
    this.modSub = modSub;
  }

  /** Ends the live generation with a tombstone at {main, sub}. The key must be live. */
  tombstone(main: number, sub: number): void {
    if (!this.isLive()) throw new Error("mvcc: tombstone on a key that is not live");
    this.put(main, sub);
    this.generations.push(new RefGeneration(0, 0, 0, []));
    this.lease = NO_LEASE;
  }

  /** The generation that holds the key's state at `rev`, or undefined (key absent at rev). */
  private findGeneration(rev: number): RefGeneration | undefined {
    const gens = this.generations;
    const last = gens.length - 1;
    for (let i = last; i >= 0; i--) {
      const g = gens[i]!;
      if (g.isEmpty()) continue;
      if (i !== last && g.lastMain() <= rev) return undefined; // deleted at or before rev
      if (g.revs[0]! <= rev) return g;
    }
    return undefined;
  }

  /** The newest revision with main <= `rev`, with the key's created revision and version then. */
  get(rev: number): VisibleRevision | undefined {
    // Fast path: reading at or above the newest change of a live key.
    const gens = this.generations;
    const lastG = gens[gens.length - 1]!;
    if (this.modMain <= rev) {
      if (lastG.isEmpty()) return undefined;
      return { modMain: this.modMain, modSub: this.modSub, createdMain: lastG.createdMain, version: lastG.ver };
    }
    const g = this.findGeneration(rev);
    if (!g) return undefined;
    const revs = g.revs;
    for (let i = revs.length - 2; i >= 0; i -= 2) {
      if (revs[i]! <= rev) {
        const n = i >> 1;
        return { modMain: revs[i]!, modSub: revs[i + 1]!, createdMain: g.createdMain, version: g.ver - (g.count - 1 - n) };
      }
    }
    return undefined;
  }

  /**
   * Finds the generation compaction at `atRev` starts from and the index (in pairs) of the newest
   * revision <= atRev in it (-1 if none), adding that revision to `available`.
   */
  private doCompact(atRev: number, available: RevisionSet): [number, number] {
    const gens = this.generations;
    let genIdx = 0;
    while (genIdx < gens.length - 1) {
      const g = gens[genIdx]!;
      if (g.lastMain() > atRev) break;
      genIdx++;
    }
    const g = gens[genIdx]!;
    const revs = g.revs;
    for (let i = revs.length - 2; i >= 0; i -= 2) {
      if (revs[i]! <= atRev) {
        available.add(revs[i]!, revs[i + 1]!);
        return [genIdx, i >> 1];
      }
    }
    return [genIdx, -1];
  }

  /**
   * Drops every revision a compaction at `atRev` removes and records the one it keeps in
   * `available`. Afterwards the key answers `get(r)` for every r >= atRev exactly as before.
   * The caller removes the key from the tree if it becomes empty.
   */
  compact(atRev: number, available: RevisionSet): void {
    let [genIdx, revIndex] = this.doCompact(atRev, available);
    const g = this.generations[genIdx]!;
    if (!g.isEmpty()) {
      if (revIndex !== -1) g.revs = g.revs.slice(revIndex * 2);
      // A generation reduced to its tombstone is gone entirely.
      if (g.count === 1 && genIdx !== this.generations.length - 1) {
        available.delete(g.revs[0]!, g.revs[1]!);
        genIdx++;
      }
    }
    if (genIdx > 0) this.generations = this.generations.slice(genIdx);
  }

  /** Adds to `available` the revision a compaction at `atRev` would keep; changes nothing. */
  keep(atRev: number, available: RevisionSet): void {
    if (this.isEmpty()) return;
    const [genIdx, revIndex] = this.doCompact(atRev, available);
    const g = this.generations[genIdx]!;
    if (!g.isEmpty() && revIndex === g.count - 1 && genIdx !== this.generations.length - 1) {
      available.delete(g.revs[revIndex * 2]!, g.revs[revIndex * 2 + 1]!);
    }
  }
}


/** The revisions (of those given) a set holds, as "main/sub" strings. */
function members(set: RevisionSet, revs: Array<[number, number]>): string[] {
  return revs.filter(([m, s]) => set.has(m, s)).map(([m, s]) => `${m}/${s}`);
}

function runHistory(seed: number): void {
  const r = rng(seed);
  const pick = (n: number) => Math.floor(r() * n);
  const ki = new KeyIndex("k");
  const ref = new ReferenceKeyIndex("k");
  let main = 1 + pick(3);
  let compacted = 0;
  const seen: Array<[number, number]> = [];
  if (r() < 0.3) {
    // As a rebuild starts a key whose older history is compacted away.
    const created = 1 + pick(main);
    const ver = 1 + pick(5);
    main++;
    ki.restore(created, main, 0, ver);
    ref.restore(created, main, 0, ver);
    seen.push([main, 0]);
    compacted = main - 1;
  }
  const steps = 5 + pick(40);
  for (let step = 0; step < steps; step++) {
    const op = r();
    if (op < 0.5) {
      main += 1 + pick(2);
      const sub = pick(3);
      ki.put(main, sub);
      ref.put(main, sub);
      seen.push([main, sub]);
    } else if (op < 0.7) {
      if (ref.isLive()) {
        main += 1;
        ki.tombstone(main, 1);
        ref.tombstone(main, 1);
        seen.push([main, 1]);
      }
    } else if (op < 0.85) {
      const at = compacted + pick(main - compacted + 1);
      const a = new RevisionSet();
      const b = new RevisionSet();
      ki.keep(at, a);
      ref.keep(at, b);
      expect(members(a, seen), `keep(${at})`).toEqual(members(b, seen));
      expect(a.size).toBe(b.size);
    } else {
      const at = compacted + pick(main - compacted + 1);
      const a = new RevisionSet();
      const b = new RevisionSet();
      ki.compact(at, a);
      ref.compact(at, b);
      compacted = at;
      expect(members(a, seen), `compact(${at})`).toEqual(members(b, seen));
      expect(a.size).toBe(b.size);
      if (ref.isEmpty()) {
        expect(ki.isEmpty()).toBe(true);
        return; // the store drops an emptied key
      }
    }
    expect(ki.isEmpty()).toBe(ref.isEmpty());
    expect(ki.isLive()).toBe(ref.isLive());
    expect([ki.modMain, ki.modSub]).toEqual([ref.modMain, ref.modSub]);
    for (let at = compacted; at <= main + 1; at++) {
      const got: VisibleRevision | undefined = ki.get(at);
      expect(got, `get(${at}) after step ${step}`).toEqual(ref.get(at));
    }
  }
}

describe("key index layout", () => {
  it("answers as the reference layout over random histories", () => {
    const env = process.env.SEED;
    const runs = env ? 1 : Number(process.env.RUNS ?? 200);
    for (let i = 0; i < runs; i++) {
      const seed = env ? seedFromEnv() : seedFromEnv() + i;
      try {
        runHistory(seed);
      } catch (err) {
        console.error(`key index layout: seed=${seed}`);
        throw err;
      }
    }
  });

  it("tombstone clears the lease; the key's bytes come back from its string", () => {
    const ki = new KeyIndex("a\u00ff");
    ki.put(2, 0);
    ki.lease = 7n;
    ki.tombstone(3, 0);
    expect(ki.lease).toBe(NO_LEASE);
    expect(ki.key).toEqual(Buffer.from([0x61, 0xff]));
    expect(ki.isLive()).toBe(false);
    expect(ki.isEmpty()).toBe(false);
  });
});
