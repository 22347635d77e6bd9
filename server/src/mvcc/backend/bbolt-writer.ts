/**
 * Streams a bbolt (BoltDB) database file from sorted key/value pairs, in bounded memory: the file
 * format etcd's backend uses and `etcdctl snapshot status|restore` read (see bbolt-format.ts for
 * the page layout).
 *
 * Layout written:
 *   page 0, 1   meta (same fields; meta 1 carries txid - 1, as bbolt's own copy does)
 *   page 2      freelist (empty: every page below the high-water mark is in use)
 *   page 3..    each bucket's page tree, in the order the buckets were written: its leaf pages
 *               left to right, then each branch level bottom-up; the bucket root is the last page
 *               written for it (a single leaf when everything fits in one page)
 *   last pages  the root bucket: one leaf element per top-level bucket (sorted by name)
 * Every bucket gets its own page tree (never inline), which bbolt reads like any other bucket.
 * Leaf pages are filled up to one page; an element larger than that gets a leaf page of its own
 * with overflow pages.
 *
 * Memory: one leaf page of pending elements plus, per bucket being written, one (first key, page
 * id) pair per leaf page (about 1 per 100 keys for etcd's key bucket) to build the branch levels.
 *
 * Usage:
 *   const w = await BboltWriter.create(path);
 *   w.beginBucket(Buffer.from("key"));
 *   for (...) await w.put(k, v);        // keys strictly ascending (byte order) within a bucket
 *   await w.endBucket();
 *   ... more buckets, in any order, each name once ...
 *   const info = await w.finish();      // fsyncs and closes the file
 * On any error call `abort()`; the file is then incomplete and should be removed by the caller.
 */
import { open, type FileHandle } from "node:fs/promises";
import {
  BBOLT_PAGE_SIZE_DEFAULT,
  BRANCH_ELEMENT_BYTES,
  BUCKET_HEADER_BYTES,
  BUCKET_LEAF_FLAG,
  KEY_BYTES_MAX,
  LEAF_ELEMENT_BYTES,
  PAGE_HEADER_BYTES,
  PageFlag,
  VALUE_BYTES_MAX,
  encodeMeta,
} from "./bbolt-format.js";

export interface BboltWriterOptions {
  /** Page size in bytes (a power of two, at least 1024). Default 4096, as etcd uses. */
  pageSizeBytes?: number;
  /** Transaction id stored in meta page 0 (meta 1 gets one less). Default 2. */
  txid?: bigint;
  /** Contiguous page bytes gathered before one file write. Default 1 MiB. */
  writeBufferBytes?: number;
}

export interface BboltFileInfo {
  /** Pages in the file (the meta's high-water mark). */
  pageCount: number;
  /** File size: pageCount * pageSize. */
  sizeBytes: number;
  /** Top-level buckets written, sorted by name. */
  bucketNames: Buffer[];
}

/** Thrown for calls that break the writer's contract (order, sizes, state). */
export class BboltWriterUsageError extends Error {
  readonly code = "BBOLT_WRITER_USAGE";
}

interface ChildRef {
  firstKey: Buffer;
  pgid: number;
}

interface PendingElement {
  key: Buffer;
  value: Buffer;
  flags: number;
}

/** Collects elements of one tree level into pages, writing each page when it is full. */
class OpenTree {
  readonly leaves: ChildRef[] = [];
  private readonly pending: PendingElement[] = [];
  private pendingBytes = PAGE_HEADER_BYTES;
  lastKey: Buffer | undefined;
  count = 0;

  constructor(readonly name: Buffer) {}

  add(e: PendingElement, pageSize: number): boolean {
    const size = LEAF_ELEMENT_BYTES + e.key.length + e.value.length;
    const full = this.pending.length > 0 && (this.pendingBytes + size > pageSize || this.pending.length >= 0xffff);
    this.pending.push(e);
    this.pendingBytes += size;
    this.count++;
    return full;
  }

  /** Removes and returns all pending elements but the last (when `keepLast`). */
  take(keepLast: boolean): PendingElement[] {
    const n = keepLast ? this.pending.length - 1 : this.pending.length;
    const out = this.pending.splice(0, n);
    this.pendingBytes = PAGE_HEADER_BYTES;
    for (const e of this.pending) this.pendingBytes += LEAF_ELEMENT_BYTES + e.key.length + e.value.length;
    return out;
  }
}

export class BboltWriter {
  private nextPgid = 3;
  private bufferStartPgid = 3;
  private readonly buffer: Buffer[] = [];
  private bufferBytes = 0;
  private open: OpenTree | undefined;
  private readonly roots: ChildRef[] = [];
  private readonly names = new Set<string>();
  private state: "open" | "finished" | "aborted" = "open";

  private constructor(
    private readonly fd: FileHandle,
    private readonly pageSize: number,
    private readonly txid: bigint,
    private readonly writeBufferBytes: number,
  ) {}

  /** Creates (or truncates) `filePath` and returns a writer for it. */
  static async create(filePath: string, options: BboltWriterOptions = {}): Promise<BboltWriter> {
    const pageSize = options.pageSizeBytes ?? BBOLT_PAGE_SIZE_DEFAULT;
    if (pageSize < 1024 || (pageSize & (pageSize - 1)) !== 0) {
      throw new BboltWriterUsageError(`bbolt: page size ${pageSize} is not a power of two >= 1024`);
    }
    const txid = options.txid ?? 2n;
    if (txid < 1n) throw new BboltWriterUsageError("bbolt: txid must be at least 1");
    const fd = await open(filePath, "w+");
    return new BboltWriter(fd, pageSize, txid, options.writeBufferBytes ?? 1024 * 1024);
  }

  /** Starts a top-level bucket. Names are unique and non-empty; one bucket is open at a time. */
  beginBucket(name: Buffer): void {
    this.assertState();
    if (this.open !== undefined) throw new BboltWriterUsageError("bbolt: a bucket is already open");
    if (name.length === 0 || name.length > KEY_BYTES_MAX) throw new BboltWriterUsageError("bbolt: bad bucket name length");
    const id = name.toString("hex");
    if (this.names.has(id)) throw new BboltWriterUsageError(`bbolt: bucket ${name.toString()} written twice`);
    this.names.add(id);
    this.open = new OpenTree(Buffer.from(name));
  }

  /**
   * Adds `key` → `value` to the open bucket. Keys must be strictly ascending in byte order.
   * The writer keeps references to the buffers until their page is written: do not mutate them.
   */
  async put(key: Buffer, value: Buffer): Promise<void> {
    this.assertState();
    const tree = this.open;
    if (tree === undefined) throw new BboltWriterUsageError("bbolt: put outside a bucket");
    if (key.length === 0 || key.length > KEY_BYTES_MAX) throw new BboltWriterUsageError(`bbolt: key length ${key.length} out of range`);
    if (value.length > VALUE_BYTES_MAX) throw new BboltWriterUsageError("bbolt: value too large");
    if (tree.lastKey !== undefined && Buffer.compare(tree.lastKey, key) >= 0) {
      throw new BboltWriterUsageError("bbolt: keys must be strictly ascending within a bucket");
    }
    tree.lastKey = key;
    if (tree.add({ key, value, flags: 0 }, this.pageSize)) await this.writeLeaf(tree.leaves, tree.take(true));
  }

  /** Closes the open bucket: writes its last leaf and its branch levels. */
  async endBucket(): Promise<void> {
    this.assertState();
    const tree = this.open;
    if (tree === undefined) throw new BboltWriterUsageError("bbolt: no bucket open");
    const rest = tree.take(false);
    if (rest.length > 0 || tree.leaves.length === 0) await this.writeLeaf(tree.leaves, rest);
    const root = await this.writeBranches(tree.leaves);
    this.roots.push({ firstKey: tree.name, pgid: root });
    this.open = undefined;
  }

  /** Writes the root bucket, the freelist and both meta pages; fsyncs and closes the file. */
  async finish(): Promise<BboltFileInfo> {
    this.assertState();
    if (this.open !== undefined) throw new BboltWriterUsageError("bbolt: finish with a bucket open");
    const sorted = [...this.roots].sort((a, b) => Buffer.compare(a.firstKey, b.firstKey));
    const rootTree = new OpenTree(Buffer.alloc(0));
    for (const r of sorted) {
      const header = Buffer.alloc(BUCKET_HEADER_BYTES);
      header.writeBigUInt64LE(BigInt(r.pgid), 0); // root page; sequence stays 0
      if (rootTree.add({ key: r.firstKey, value: header, flags: BUCKET_LEAF_FLAG }, this.pageSize)) {
        await this.writeLeaf(rootTree.leaves, rootTree.take(true));
      }
    }
    const rest = rootTree.take(false);
    if (rest.length > 0 || rootTree.leaves.length === 0) await this.writeLeaf(rootTree.leaves, rest);
    const rootPgid = await this.writeBranches(rootTree.leaves);
    await this.flushBuffer();

    const head = Buffer.alloc(this.pageSize * 3);
    const highWater = BigInt(this.nextPgid);
    for (const id of [0, 1]) {
      const at = id * this.pageSize;
      head.writeBigUInt64LE(BigInt(id), at);
      head.writeUInt16LE(PageFlag.meta, at + 8);
      encodeMeta(head, at + PAGE_HEADER_BYTES, {
        pageSize: this.pageSize,
        flags: 0,
        rootPgid: BigInt(rootPgid),
        rootSequence: 0n,
        freelistPgid: 2n,
        highWaterPgid: highWater,
        txid: id === 0 ? this.txid : this.txid - 1n,
      });
    }
    const freelistAt = 2 * this.pageSize;
    head.writeBigUInt64LE(2n, freelistAt);
    head.writeUInt16LE(PageFlag.freelist, freelistAt + 8); // count 0: nothing is free
    await this.fd.write(head, 0, head.length, 0);
    await this.fd.sync();
    await this.fd.close();
    this.state = "finished";
    return {
      pageCount: this.nextPgid,
      sizeBytes: this.nextPgid * this.pageSize,
      bucketNames: sorted.map((r) => r.firstKey),
    };
  }

  /** Closes the file without completing it (after an error). Idempotent. */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    await this.fd.close();
  }

  private assertState(): void {
    if (this.state !== "open") throw new BboltWriterUsageError(`bbolt: writer is ${this.state}`);
  }

  /** Writes one leaf page holding `elements` (may overflow for a big element); records it. */
  private async writeLeaf(level: ChildRef[], elements: PendingElement[]): Promise<void> {
    let dataBytes = 0;
    for (const e of elements) dataBytes += e.key.length + e.value.length;
    const nodeBytes = PAGE_HEADER_BYTES + elements.length * LEAF_ELEMENT_BYTES + dataBytes;
    const page = this.allocate(nodeBytes, PageFlag.leaf, elements.length);
    let data = PAGE_HEADER_BYTES + elements.length * LEAF_ELEMENT_BYTES;
    elements.forEach((e, i) => {
      const at = PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
      page.buf.writeUInt32LE(e.flags, at);
      page.buf.writeUInt32LE(data - at, at + 4);
      page.buf.writeUInt32LE(e.key.length, at + 8);
      page.buf.writeUInt32LE(e.value.length, at + 12);
      e.key.copy(page.buf, data);
      data += e.key.length;
      e.value.copy(page.buf, data);
      data += e.value.length;
    });
    level.push({ firstKey: elements.length > 0 ? Buffer.from(elements[0]!.key) : Buffer.alloc(0), pgid: page.pgid });
    await this.queue(page.buf);
  }

  /** Builds branch levels over `level` until one page remains; returns the root page id. */
  private async writeBranches(level: ChildRef[]): Promise<number> {
    let current = level;
    // Each branch page takes at least two children, so every round at least halves the level.
    while (current.length > 1) {
      const next: ChildRef[] = [];
      let group: ChildRef[] = [];
      let groupBytes = PAGE_HEADER_BYTES;
      for (const child of current) {
        const size = BRANCH_ELEMENT_BYTES + child.firstKey.length;
        if (group.length >= 2 && (groupBytes + size > this.pageSize || group.length >= 0xffff)) {
          await this.writeBranch(next, group);
          group = [];
          groupBytes = PAGE_HEADER_BYTES;
        }
        group.push(child);
        groupBytes += size;
      }
      await this.writeBranch(next, group);
      current = next;
    }
    return current[0]!.pgid;
  }

  private async writeBranch(level: ChildRef[], children: ChildRef[]): Promise<void> {
    let keyBytes = 0;
    for (const c of children) keyBytes += c.firstKey.length;
    const nodeBytes = PAGE_HEADER_BYTES + children.length * BRANCH_ELEMENT_BYTES + keyBytes;
    const page = this.allocate(nodeBytes, PageFlag.branch, children.length);
    let data = PAGE_HEADER_BYTES + children.length * BRANCH_ELEMENT_BYTES;
    children.forEach((c, i) => {
      const at = PAGE_HEADER_BYTES + i * BRANCH_ELEMENT_BYTES;
      page.buf.writeUInt32LE(data - at, at);
      page.buf.writeUInt32LE(c.firstKey.length, at + 4);
      page.buf.writeBigUInt64LE(BigInt(c.pgid), at + 8);
      c.firstKey.copy(page.buf, data);
      data += c.firstKey.length;
    });
    level.push({ firstKey: children[0]!.firstKey, pgid: page.pgid });
    await this.queue(page.buf);
  }

  /** Takes the next page id(s) for a node of `nodeBytes`; returns the zeroed page buffer. */
  private allocate(nodeBytes: number, flags: number, count: number): { pgid: number; buf: Buffer } {
    const pages = Math.max(1, Math.ceil(nodeBytes / this.pageSize));
    const pgid = this.nextPgid;
    this.nextPgid += pages;
    if (!Number.isSafeInteger(this.nextPgid * this.pageSize)) throw new BboltWriterUsageError("bbolt: file too large");
    const buf = Buffer.alloc(pages * this.pageSize);
    buf.writeBigUInt64LE(BigInt(pgid), 0);
    buf.writeUInt16LE(flags, 8);
    buf.writeUInt16LE(count, 10);
    buf.writeUInt32LE(pages - 1, 12);
    return { pgid, buf };
  }

  /** Appends page bytes (always the next pages in the file) to the write buffer. */
  private async queue(buf: Buffer): Promise<void> {
    this.buffer.push(buf);
    this.bufferBytes += buf.length;
    if (this.bufferBytes >= this.writeBufferBytes) await this.flushBuffer();
  }

  private async flushBuffer(): Promise<void> {
    if (this.buffer.length === 0) return;
    const all = this.buffer.length === 1 ? this.buffer[0]! : Buffer.concat(this.buffer, this.bufferBytes);
    let written = 0;
    const position = this.bufferStartPgid * this.pageSize;
    // A positional write may be short; bounded by the buffer length (each round writes > 0 bytes).
    while (written < all.length) {
      const { bytesWritten } = await this.fd.write(all, written, all.length - written, position + written);
      if (bytesWritten <= 0) throw new Error("bbolt: short write");
      written += bytesWritten;
    }
    this.bufferStartPgid += this.bufferBytes / this.pageSize;
    this.buffer.length = 0;
    this.bufferBytes = 0;
  }
}
