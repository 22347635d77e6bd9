/**
 * The storage engine under the backend: an ordered key-value store of byte strings with atomic
 * batches, point reads and snapshot iterators (what the backend needs of LevelDB). Two
 * implementations: ClassicLevelEngine (LevelDB on disk, production) and MemoryEngine (in memory,
 * with a simulated disk that loses unsynced writes on a crash). Keys order by bytes
 * (Buffer.compare).
 *
 * Ownership: buffers handed to `writeBatch` must not be mutated afterwards; buffers returned by
 * reads belong to the caller.
 */

/**
 * One operation of a batch. It carries its encodings so that classic-level's storage layer takes
 * it as it is (no per-operation copy or transcoding on the write path); other engines ignore them.
 */
export interface EngineOp {
  type: "put" | "del";
  key: Buffer;
  /** Required for "put". */
  value?: Buffer;
  keyEncoding: "buffer";
  valueEncoding: "buffer";
}

/** Bounds and direction of an iterator, on whole keys. Absent bounds are open. */
export interface EngineRange {
  gt?: Buffer;
  gte?: Buffer;
  lt?: Buffer;
  lte?: Buffer;
  /** Descending key order. Default false. */
  reverse?: boolean;
  /** Most entries the iterator yields (absent: no limit). */
  limit?: number;
  /**
   * Read values. Default true. When false, the value slot of every entry carries nothing (it is
   * undefined at run time): read keys only.
   */
  values?: boolean;
}

/**
 * An iterator over the engine as it was when the iterator was created: writes made afterwards are
 * not seen. The caller must `close()` it (also after an error).
 */
export interface EngineIterator {
  /**
   * Up to `size` (> 0) next entries; fewer does not mean the end, an empty array does. Rejects
   * once the iterator or its engine is closed.
   */
  nextv(size: number): Promise<Array<[Buffer, Buffer]>>;
  /** Idempotent. */
  close(): Promise<void>;
}

export interface StorageEngine {
  /**
   * Applies `ops` in order, atomically: after a crash either all of them are there or none.
   * Visible to reads once the promise resolves. A write issued after the previous one resolved
   * comes after it; writes in flight together may apply in any order (LevelDB runs them on a
   * thread pool), so a caller that needs an order issues one at a time. With `sync`,
   * resolves after this batch and everything written before it is durable; without, a crash (power
   * loss) may lose it, but only together with every later batch. Rejects with BackendClosedError
   * when the engine is closed; any other rejection means the outcome is unknown.
   */
  writeBatch(ops: EngineOp[], options: { sync: boolean }): Promise<void>;
  /** The value of `key`, or undefined. */
  get(key: Buffer): Promise<Buffer | undefined>;
  /** The values of `keys`, in order; undefined for each absent one. */
  getMany(keys: Buffer[]): Promise<(Buffer | undefined)[]>;
  /** `get`, synchronously (it may block the event loop on the engine's I/O). */
  getSync(key: Buffer): Buffer | undefined;
  /** A snapshot iterator (see EngineIterator) over `range`. */
  iterator(range: EngineRange): EngineIterator;
  /** Estimated bytes the data in [start, end) occupies; recent writes may not count yet. */
  approximateSize(start: Buffer, end: Buffer): Promise<number>;
  /** Rewrites the data in [start, end) to drop deleted entries; reads and writes go on meanwhile. */
  compactRange(start: Buffer, end: Buffer): Promise<void>;
  /** Bytes the engine occupies on its disk. */
  sizeBytes(): Promise<number>;
  /**
   * Closes the engine (open iterators with it). Writes that resolved stay as durable as they
   * were. Idempotent.
   */
  close(): Promise<void>;
}

/** The backend or its engine is closed. */
export class BackendClosedError extends Error {
  readonly code = "BACKEND_CLOSED";
  constructor() {
    super("backend: closed");
  }
}
