/**
 * A storage engine in memory, for simulations: `MemoryLevelStore` is the disk (it outlives every
 * engine opened on it), `MemoryEngine` the open database.
 *
 * The disk keeps what LevelDB keeps: the batches written so far, in order, each applied whole.
 * A batch written without sync is visible at once but only reaches the durable state when a later
 * synced batch or a background flush (`flush()`, what the OS does on its own schedule) carries it
 * there; a synced batch makes itself and everything before it durable. Two ways to lose the
 * process:
 *  - `kill()`: the process died, the OS did not: nothing written is lost;
 *  - `crash(rng)`: power loss: the unsynced batches are lost, except a random prefix of whole
 *    batches (LevelDB's log recovery stops at the first incomplete batch, never half-applies one).
 * Either way the engine that was open is cut off: its pending and later asynchronous calls never
 * settle (a dead process runs nothing more; iterators it opens never yield) and its synchronous
 * reads throw. A new engine may then
 * be opened on the disk.
 *
 * Keys and values are copied in on write and out on read, so callers and disk share no memory.
 * Operations are applied synchronously when called (a crash after `writeBatch` returned keeps or
 * loses the batch as a whole, as above).
 */
import sortedBtree from "sorted-btree";
import { drawInt, type RandomInt } from "../../pkg/random-int.js";
import { BackendClosedError, type EngineIterator, type EngineOp, type EngineRange, type StorageEngine } from "./engine.js";

// sorted-btree is CommonJS: under Node's ESM loader the class is the `default` of module.exports.
type BTreeClass = typeof sortedBtree.default;
const BTree: BTreeClass =
  (sortedBtree as unknown as { default?: BTreeClass }).default ?? (sortedBtree as unknown as BTreeClass);
type Tree = sortedBtree.default<Buffer, Buffer>;

function newTree(): Tree {
  return new BTree<Buffer, Buffer>(undefined, Buffer.compare);
}

/** A stored operation: private copies of key and value. */
interface StoredOp {
  del: boolean;
  key: Buffer;
  value: Buffer;
}

const NEVER = new Promise<never>(() => undefined);
const EMPTY = Buffer.alloc(0);

function cutOffError(): Error {
  return new Error("memory engine: cut off by a crash of its disk");
}

/** What `MemoryLevelStore.crash` did. */
export interface LevelCrashOutcome {
  /** Unsynced batches that survived (a prefix of them). */
  keptBatches: number;
  lostBatches: number;
}

/** The simulated disk of a MemoryEngine. */
export class MemoryLevelStore {
  /** What survives a power loss. */
  private durable: Tree = newTree();
  /** The durable state with the unsynced batches applied: what reads see. */
  private live: Tree = newTree();
  /** Batches written since the durable state was last brought up to date, oldest first. */
  private unsynced: StoredOp[][] = [];
  private liveBytes = 0;
  private durableBytes = 0;
  /** @internal The engine open on this disk, if any. */
  holder: MemoryEngine | undefined;

  /**
   * Background writeback: every batch written so far becomes durable. A simulation calls it on
   * its own schedule, as an OS flushes its page cache; until then unsynced batches are kept.
   */
  flush(): void {
    this.durable = this.live.clone();
    this.durableBytes = this.liveBytes;
    this.unsynced = [];
  }

  /**
   * Power loss. Without `rng` every unsynced batch is lost; with it, a prefix of
   * `rng(unsynced + 1)` whole batches survives. Cuts off the open engine (see the top of this file).
   */
  crash(rng?: RandomInt): LevelCrashOutcome {
    const n = this.unsynced.length;
    const kept = rng === undefined || n === 0 ? 0 : drawInt(rng, n + 1);
    const survivors = this.unsynced.slice(0, kept);
    this.cutOff();
    this.live = this.durable.clone();
    this.liveBytes = this.durableBytes;
    this.unsynced = [];
    for (const batch of survivors) this.apply(batch);
    this.flush();
    return { keptBatches: kept, lostBatches: n - kept };
  }

  /** The process holding the engine died; every write it made stays (it reached the OS). */
  kill(): void {
    this.cutOff();
  }

  /** Batches written without sync and not yet made durable. */
  unsyncedBatches(): number {
    return this.unsynced.length;
  }

  /** @internal Applies a batch (already copied) as the newest write; `sync` makes all durable. */
  write(batch: StoredOp[], sync: boolean): void {
    this.apply(batch);
    if (sync) this.flush();
    else this.unsynced.push(batch);
  }

  /** @internal */
  get(key: Buffer): Buffer | undefined {
    return this.live.get(key);
  }

  /** @internal A frozen view of what reads see now (later writes do not show in it). */
  snapshot(): Tree {
    return this.live.clone();
  }

  /** @internal Bytes of live keys and values in [start, end). */
  bytesIn(start: Buffer, end: Buffer): number {
    let total = 0;
    for (const [k, v] of this.live.entries(start)) {
      if (Buffer.compare(k, end) >= 0) break;
      total += k.length + v.length;
    }
    return total;
  }

  /** @internal Bytes of live keys and values. */
  sizeBytes(): number {
    return this.liveBytes;
  }

  private apply(batch: StoredOp[]): void {
    for (const op of batch) {
      const old = this.live.get(op.key);
      if (old !== undefined) this.liveBytes -= op.key.length + old.length;
      if (op.del) {
        this.live.delete(op.key);
      } else {
        this.live.set(op.key, op.value);
        this.liveBytes += op.key.length + op.value.length;
      }
    }
  }

  private cutOff(): void {
    this.holder?.cutOff();
    this.holder = undefined;
  }
}

function copy(b: Buffer): Buffer {
  return Buffer.from(b);
}

/** Whether `key` is within the lower bound of `range` (gt/gte). */
function aboveLower(key: Buffer, range: EngineRange): boolean {
  if (range.gt !== undefined) return Buffer.compare(key, range.gt) > 0;
  if (range.gte !== undefined) return Buffer.compare(key, range.gte) >= 0;
  return true;
}

/** Whether `key` is within the upper bound of `range` (lt/lte). */
function belowUpper(key: Buffer, range: EngineRange): boolean {
  if (range.lt !== undefined) return Buffer.compare(key, range.lt) < 0;
  if (range.lte !== undefined) return Buffer.compare(key, range.lte) <= 0;
  return true;
}

class MemoryIterator implements EngineIterator {
  private readonly entries: IterableIterator<[Buffer, Buffer]>;
  private readonly values: boolean;
  private remaining: number;
  private closed = false;

  constructor(
    private readonly engine: MemoryEngine,
    tree: Tree,
    private readonly range: EngineRange,
  ) {
    this.values = range.values ?? true;
    this.remaining = range.limit !== undefined && range.limit >= 0 ? range.limit : Infinity;
    if (range.reverse === true) {
      const high = range.lt ?? range.lte;
      this.entries = tree.entriesReversed(high, undefined, range.lt !== undefined);
    } else {
      this.entries = tree.entries(range.gt ?? range.gte);
    }
  }

  nextv(size: number): Promise<Array<[Buffer, Buffer]>> {
    if (this.engine.isCutOff) return NEVER;
    if (this.closed) return Promise.reject(new Error("memory engine: iterator is closed"));
    const out: Array<[Buffer, Buffer]> = [];
    const want = Math.min(size >= 1 ? Math.floor(size) : 1, this.remaining);
    while (out.length < want) {
      const r = this.entries.next();
      if (r.done === true) {
        this.remaining = 0;
        break;
      }
      const [k, v] = r.value;
      const reverse = this.range.reverse === true;
      if (reverse ? !belowUpper(k, this.range) : !aboveLower(k, this.range)) continue;
      if (reverse ? !aboveLower(k, this.range) : !belowUpper(k, this.range)) {
        this.remaining = 0;
        break;
      }
      out.push([copy(k), this.values ? copy(v) : (undefined as unknown as Buffer)]);
    }
    this.remaining -= out.length;
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    if (this.engine.isCutOff) return NEVER;
    this.closed = true;
    this.engine.iteratorClosed(this);
    return Promise.resolve();
  }
}

/** An open database on a MemoryLevelStore. At most one is open per store. */
export class MemoryEngine implements StorageEngine {
  private closed = false;
  private cut = false;
  private readonly iterators = new Set<MemoryIterator>();

  private constructor(private readonly store: MemoryLevelStore) {}

  /** Opens the database on `store`. Throws when an engine is already open on it. */
  static open(store: MemoryLevelStore): MemoryEngine {
    if (store.holder !== undefined) throw new Error("memory engine: the store is already open");
    const engine = new MemoryEngine(store);
    store.holder = engine;
    return engine;
  }

  /** @internal */
  get isCutOff(): boolean {
    return this.cut;
  }

  writeBatch(ops: EngineOp[], options: { sync: boolean }): Promise<void> {
    if (this.cut) return NEVER;
    if (this.closed) return Promise.reject(new BackendClosedError());
    const batch: StoredOp[] = new Array(ops.length);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.type === "put" && op.value === undefined) return Promise.reject(new TypeError("memory engine: put without a value"));
      batch[i] = { del: op.type === "del", key: copy(op.key), value: op.type === "put" ? copy(op.value!) : EMPTY };
    }
    this.store.write(batch, options.sync);
    return Promise.resolve();
  }

  get(key: Buffer): Promise<Buffer | undefined> {
    if (this.cut) return NEVER;
    if (this.closed) return Promise.reject(new BackendClosedError());
    const v = this.store.get(key);
    return Promise.resolve(v === undefined ? undefined : copy(v));
  }

  getMany(keys: Buffer[]): Promise<(Buffer | undefined)[]> {
    if (this.cut) return NEVER;
    if (this.closed) return Promise.reject(new BackendClosedError());
    return Promise.resolve(keys.map((k) => {
      const v = this.store.get(k);
      return v === undefined ? undefined : copy(v);
    }));
  }

  getSync(key: Buffer): Buffer | undefined {
    if (this.cut) throw cutOffError();
    if (this.closed) throw new BackendClosedError();
    const v = this.store.get(key);
    return v === undefined ? undefined : copy(v);
  }

  iterator(range: EngineRange): EngineIterator {
    // Opening an iterator does no I/O yet: a dead process's reads simply never come back.
    if (this.cut) return { nextv: () => NEVER, close: () => NEVER };
    if (this.closed) throw new BackendClosedError();
    const it = new MemoryIterator(this, this.store.snapshot(), range);
    this.iterators.add(it);
    return it;
  }

  /** Live bytes of keys and values in [start, end). */
  approximateSize(start: Buffer, end: Buffer): Promise<number> {
    if (this.cut) return NEVER;
    if (this.closed) return Promise.reject(new BackendClosedError());
    return Promise.resolve(this.store.bytesIn(start, end));
  }

  /** Nothing to rewrite in memory; resolves once the engine is known to be open. */
  compactRange(_start: Buffer, _end: Buffer): Promise<void> {
    if (this.cut) return NEVER;
    if (this.closed) return Promise.reject(new BackendClosedError());
    return Promise.resolve();
  }

  /** Live bytes of keys and values. */
  sizeBytes(): Promise<number> {
    if (this.cut) return NEVER;
    if (this.closed) return Promise.reject(new BackendClosedError());
    return Promise.resolve(this.store.sizeBytes());
  }

  close(): Promise<void> {
    if (this.cut) return NEVER;
    if (!this.closed) {
      this.closed = true;
      for (const it of [...this.iterators]) void it.close();
      this.store.holder = undefined;
    }
    return Promise.resolve();
  }

  /** @internal */
  iteratorClosed(it: MemoryIterator): void {
    this.iterators.delete(it);
  }

  /** @internal Called by the store on kill/crash. */
  cutOff(): void {
    this.cut = true;
    this.iterators.clear();
  }
}
