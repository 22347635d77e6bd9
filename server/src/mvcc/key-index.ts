/**
 * The in-memory key index: for every key, its generations of revisions.
 *
 * A generation is one life of a key: from the put that created it to the tombstone that deleted
 * it (inclusive). The last generation is the live one, or empty if the key is currently deleted.
 * Example: put@2, put@4, delete@6, put@8 gives generations [2,4,6(t)], [8].
 *
 * Layout (measured: about 290 bytes of heap per key written once became about 130). Most keys
 * have one generation with few revisions, so a KeyIndex holds its newest generation in its own
 * fields (`ver`, `createdMain`, `revs`) and allocates nothing else until the key has more than
 * one revision: `revs === null` means the newest generation is the single revision
 * `{modMain, modSub}` (or empty when `ver === 0`); otherwise `revs` is that generation's flat
 * `[main0, sub0, main1, sub1, ...]` (ascending, ending with `{modMain, modSub}`). Older
 * generations (each ending with its tombstone) are `past`, oldest first, `undefined` when none.
 * `ver` is the version of a generation's newest revision; the version of the i-th revision is
 * `ver - (count - 1 - i)`, which stays right after compaction trims older revisions.
 *
 * Semantics follow etcd's keyIndex (get/compact/keep), so the revisions compaction keeps, and
 * therefore the data a member keeps, are the same as etcd's.
 */
import sortedBtree from "sorted-btree";

// sorted-btree is CommonJS: under Node's ESM loader the class is the `default` of module.exports.
type BTreeClass = typeof sortedBtree.default;
const BTree: BTreeClass =
  (sortedBtree as unknown as { default?: BTreeClass }).default ?? (sortedBtree as unknown as BTreeClass);
import { NO_LEASE } from "./key-value.js";
import { RevisionSet } from "./revision.js";

/** A generation as the slow paths see it (older generations are kept in this form). */
class Generation {
  constructor(
    /** Version of the newest revision in this generation (0: empty). */
    readonly ver: number,
    readonly createdMain: number,
    /** Flat `[main, sub, ...]`, ascending (empty: the generation is empty). */
    readonly revs: number[],
  ) {}

  get count(): number {
    return this.revs.length >> 1;
  }

  lastMain(): number {
    return this.revs[this.revs.length - 2]!;
  }
}

/**
 * Up to this many numbers, a generation's revision array grows by an exact-size copy: push()
 * reserves room for 16 more numbers (128 bytes) per key, and most keys stay short.
 */
const EXACT_REVS_MAX = 32;

/** `revs` with `{main, sub}` appended (a new exact-size array while short, else in place). */
function appendRevision(revs: number[], main: number, sub: number): number[] {
  const n = revs.length;
  if (n >= EXACT_REVS_MAX) {
    revs.push(main, sub);
    return revs;
  }
  const out = new Array<number>(n + 2);
  for (let i = 0; i < n; i++) out[i] = revs[i]!;
  out[n] = main;
  out[n + 1] = sub;
  return out;
}

/** What `KeyIndex.get` finds: the visible revision of a key at some revision. */
export interface VisibleRevision {
  modMain: number;
  modSub: number;
  createdMain: number;
  version: number;
}

export class KeyIndex {
  /**
   * The key as the index orders it (indexKey: one char per byte). The index keeps no Buffer of
   * the key: a Buffer view costs about 100 bytes of heap per key on top of the string the tree
   * already holds.
   */
  readonly keyStr: string;
  /** Lease of the newest put (meaningful while the newest generation is live). */
  lease: bigint = NO_LEASE;
  /** The key's newest revision (its newest put or tombstone); 0/0 before any. */
  modMain = 0;
  modSub = 0;
  /** Version of the newest generation's newest revision; 0 = the newest generation is empty. */
  private ver = 0;
  /** Created main revision of the newest generation (when not empty). */
  private createdMain = 0;
  /** The newest generation's revisions when it has more than one (see the module doc). */
  private revs: number[] | null = null;
  /** Older generations, each ended by a tombstone, oldest first. */
  private past: Generation[] | undefined = undefined;

  constructor(keyStr: string) {
    this.keyStr = keyStr;
  }

  /** The key's bytes: a fresh Buffer on every call (callers that keep it copy it into an arena). */
  get key(): Buffer {
    return Buffer.from(this.keyStr, "latin1");
  }

  isEmpty(): boolean {
    return this.ver === 0 && this.past === undefined;
  }

  /** True if the newest generation is live (the key exists at head). */
  isLive(): boolean {
    return this.ver !== 0;
  }

  /** Appends a revision to the live generation (creating the key if it is deleted). */
  put(main: number, sub: number): void {
    if (main < this.modMain || (main === this.modMain && sub <= this.modSub)) {
      throw new Error(`mvcc: key index put ${main}/${sub} not after ${this.modMain}/${this.modSub}`);
    }
    if (this.ver === 0) {
      this.createdMain = main;
      this.revs = null;
    } else if (this.revs === null) {
      this.revs = [this.modMain, this.modSub, main, sub];
    } else {
      this.revs = appendRevision(this.revs, main, sub);
    }
    this.ver++;
    this.modMain = main;
    this.modSub = sub;
  }

  /** Rebuild helper: starts the key from a stored record whose older history is compacted away. */
  restore(createdMain: number, modMain: number, modSub: number, ver: number): void {
    this.past = undefined;
    this.ver = ver;
    this.createdMain = createdMain;
    this.revs = null;
    this.modMain = modMain;
    this.modSub = modSub;
  }

  /** Ends the live generation with a tombstone at {main, sub}. The key must be live. */
  tombstone(main: number, sub: number): void {
    if (!this.isLive()) throw new Error("mvcc: tombstone on a key that is not live");
    this.put(main, sub);
    const ended = new Generation(this.ver, this.createdMain, this.revs!);
    if (this.past === undefined) this.past = [ended];
    else this.past.push(ended);
    this.ver = 0;
    this.createdMain = 0;
    this.revs = null;
    this.lease = NO_LEASE;
  }

  /** The newest generation in the slow paths' form. */
  private newest(): Generation {
    if (this.ver === 0) return new Generation(0, 0, []);
    return new Generation(this.ver, this.createdMain, this.revs ?? [this.modMain, this.modSub]);
  }

  /** All generations, oldest first, the newest last (possibly empty). */
  private generations(): Generation[] {
    const newest = this.newest();
    return this.past === undefined ? [newest] : [...this.past, newest];
  }

  /** Replaces the generations with `gens` (oldest first, the newest last). */
  private setGenerations(gens: Generation[]): void {
    const newest = gens[gens.length - 1]!;
    this.past = gens.length > 1 ? gens.slice(0, -1) : undefined;
    this.ver = newest.ver;
    this.createdMain = newest.createdMain;
    this.revs = newest.count > 1 ? newest.revs : null;
  }

  /** The generation that holds the key's state at `rev`, or undefined (key absent at rev). */
  private findGeneration(rev: number): Generation | undefined {
    const gens = this.generations();
    const last = gens.length - 1;
    for (let i = last; i >= 0; i--) {
      const g = gens[i]!;
      if (g.count === 0) continue;
      if (i !== last && g.lastMain() <= rev) return undefined; // deleted at or before rev
      if (g.revs[0]! <= rev) return g;
    }
    return undefined;
  }

  /** The newest revision with main <= `rev`, with the key's created revision and version then. */
  get(rev: number): VisibleRevision | undefined {
    // Fast path: reading at or above the newest change of a live key.
    if (this.modMain <= rev) {
      if (this.ver === 0) return undefined;
      return { modMain: this.modMain, modSub: this.modSub, createdMain: this.createdMain, version: this.ver };
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
  private static doCompact(gens: Generation[], atRev: number, available: RevisionSet): [number, number] {
    let genIdx = 0;
    while (genIdx < gens.length - 1) {
      const g = gens[genIdx]!;
      if (g.lastMain() > atRev) break;
      genIdx++;
    }
    const revs = gens[genIdx]!.revs;
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
    if (this.past === undefined) {
      // Fast path (one generation, nothing allocated): keep the newest revision <= atRev.
      if (this.ver === 0) return;
      const kept = this.keepNewest(atRev, available);
      const revs = this.revs;
      if (revs !== null && kept !== undefined && kept > 0) this.revs = kept === revs.length - 2 ? null : revs.slice(kept);
      return;
    }
    const gens = this.generations();
    let [genIdx, revIndex] = KeyIndex.doCompact(gens, atRev, available);
    let g = gens[genIdx]!;
    if (g.count > 0) {
      if (revIndex > 0) gens[genIdx] = g = new Generation(g.ver, g.createdMain, g.revs.slice(revIndex * 2));
      // A generation reduced to its tombstone is gone entirely.
      if (g.count === 1 && genIdx !== gens.length - 1) {
        available.delete(g.revs[0]!, g.revs[1]!);
        genIdx++;
      }
    }
    this.setGenerations(genIdx > 0 ? gens.slice(genIdx) : gens);
  }

  /** Adds to `available` the revision a compaction at `atRev` would keep; changes nothing. */
  keep(atRev: number, available: RevisionSet): void {
    if (this.isEmpty()) return;
    if (this.past === undefined) {
      this.keepNewest(atRev, available);
      return;
    }
    const gens = this.generations();
    const [genIdx, revIndex] = KeyIndex.doCompact(gens, atRev, available);
    const g = gens[genIdx]!;
    if (g.count > 0 && revIndex === g.count - 1 && genIdx !== gens.length - 1) {
      available.delete(g.revs[revIndex * 2]!, g.revs[revIndex * 2 + 1]!);
    }
  }

  /**
   * For a key of one (live) generation: adds its newest revision <= atRev to `available`.
   * @returns that revision's offset in `revs` (undefined when there is none, or no `revs`)
   */
  private keepNewest(atRev: number, available: RevisionSet): number | undefined {
    const revs = this.revs;
    if (revs === null) {
      if (this.modMain <= atRev) available.add(this.modMain, this.modSub);
      return undefined;
    }
    for (let i = revs.length - 2; i >= 0; i -= 2) {
      if (revs[i]! <= atRev) {
        available.add(revs[i]!, revs[i + 1]!);
        return i;
      }
    }
    return undefined;
  }
}

/** Index keys are the key bytes as a latin1 string: string order equals byte order. */
export function indexKey(key: Buffer): string {
  return key.toString("latin1");
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** All keys, ordered. */
export class TreeIndex {
  // Keys are strings only: plain `<` (sorted-btree's default comparator first tests for numbers,
  // then compares types, on every step of every search).
  private readonly tree = new BTree<string, KeyIndex>(undefined, compareStrings, 64);

  get size(): number {
    return this.tree.size;
  }

  get(key: string): KeyIndex | undefined {
    return this.tree.get(key);
  }

  set(key: string, ki: KeyIndex): void {
    this.tree.set(key, ki);
  }

  delete(key: string): void {
    this.tree.delete(key);
  }

  clear(): void {
    this.tree.clear();
  }

  /**
   * Visits the keys in `[start, end)` in order; `end === undefined` means no upper bound. The
   * visitor returns true to stop. The tree must not be modified during the visit.
   */
  forRange(start: string, end: string | undefined, visit: (ki: KeyIndex, key: string) => boolean | void): void {
    if (end !== undefined && end <= start) return;
    const high = end ?? this.tree.maxKey();
    if (high === undefined) return;
    this.tree.forRange(start, high, end === undefined, (k, ki) => {
      if (visit(ki, k) === true) return { break: true };
      return undefined;
    });
  }

  /** The first key strictly after `key` (undefined at the end). */
  nextKey(key: string | undefined): string | undefined {
    return key === undefined ? this.tree.minKey() : this.tree.nextHigherKey(key);
  }
}
