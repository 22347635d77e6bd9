/**
 * The in-memory key index: for every key, its generations of revisions.
 *
 * A generation is one life of a key: from the put that created it to the tombstone that deleted
 * it (inclusive). The last generation is the live one, or empty if the key is currently deleted.
 * Example: put@2, put@4, delete@6, put@8 gives generations [2,4,6(t)], [8].
 *
 * Revisions inside a generation are kept as a flat number array `[main0, sub0, main1, sub1, ...]`
 * (ascending). `ver` is the version of the generation's newest revision; the version of the i-th
 * revision is `ver - (count - 1 - i)`, which stays right after compaction trims older revisions.
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

export class Generation {
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
  generations: Generation[];
  /** Lease of the newest put (meaningful while the last generation is live). */
  lease: bigint = NO_LEASE;
  modMain = 0;
  modSub = 0;

  constructor(keyStr: string) {
    this.keyStr = keyStr;
    this.generations = [new Generation(0, 0, 0, [])];
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
    this.generations = [new Generation(ver, createdMain, 0, [modMain, modSub])];
    this.modMain = modMain;
    this.modSub = modSub;
  }

  /** Ends the live generation with a tombstone at {main, sub}. The key must be live. */
  tombstone(main: number, sub: number): void {
    if (!this.isLive()) throw new Error("mvcc: tombstone on a key that is not live");
    this.put(main, sub);
    this.generations.push(new Generation(0, 0, 0, []));
    this.lease = NO_LEASE;
  }

  /** The generation that holds the key's state at `rev`, or undefined (key absent at rev). */
  private findGeneration(rev: number): Generation | undefined {
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

/** Index keys are the key bytes as a latin1 string: string order equals byte order. */
export function indexKey(key: Buffer): string {
  return key.toString("latin1");
}

/** All keys, ordered. */
export class TreeIndex {
  private readonly tree = new BTree<string, KeyIndex>(undefined, undefined, 64);

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
