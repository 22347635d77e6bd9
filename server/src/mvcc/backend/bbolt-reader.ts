/**
 * Reads a bbolt (BoltDB) file: meta selection, top-level buckets (page trees and inline buckets)
 * and an integrity check in the spirit of bbolt's `tx.Check` (every page below the high-water mark
 * reachable exactly once or free). Used to verify what BboltWriter produced and to inspect real
 * etcd snapshots; synchronous and unoptimised (reads pages with positional reads as it walks).
 * Format: see bbolt-format.ts.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import {
  BRANCH_ELEMENT_BYTES,
  BUCKET_HEADER_BYTES,
  BUCKET_LEAF_FLAG,
  LEAF_ELEMENT_BYTES,
  PAGE_HEADER_BYTES,
  PageFlag,
  decodeMeta,
  metaError,
  type BboltMeta,
} from "./bbolt-format.js";

export class BboltFormatError extends Error {
  readonly code = "BBOLT_FORMAT";
}

interface PageView {
  /** Page id, or -1 for an inline bucket's page. */
  pgid: number;
  buf: Buffer;
  flags: number;
  count: number;
  overflow: number;
}

interface Element {
  flags: number;
  key: Buffer;
  value: Buffer;
  /** Branch elements only. */
  child: number;
}

/** Where a bucket's content lives: a page tree (root > 0) or an inline leaf page. */
interface BucketRef {
  root: number;
  inline?: Buffer;
}

const PAGES_VISITED_MAX = 1 << 30;

export class BboltReader {
  readonly meta: BboltMeta;
  readonly pageSize: number;
  readonly fileBytes: number;

  private constructor(private readonly fd: number, fileBytes: number) {
    this.fileBytes = fileBytes;
    const head = Buffer.alloc(Math.min(fileBytes, 64 * 1024));
    readSync(fd, head, 0, head.length, 0);
    // Page 0's meta tells the page size; page 1 sits one page further.
    const pageSize0 = head.length >= 32 ? head.readUInt32LE(PAGE_HEADER_BYTES + 8) : 0;
    if (metaError(head, PAGE_HEADER_BYTES) !== undefined && pageSize0 === 0) throw new BboltFormatError("bbolt: invalid meta pages");
    const candidates: BboltMeta[] = [];
    if (metaError(head, PAGE_HEADER_BYTES) === undefined) candidates.push(decodeMeta(head, PAGE_HEADER_BYTES));
    const pageSize = candidates[0]?.pageSize ?? pageSize0;
    if (pageSize + PAGE_HEADER_BYTES + 64 <= head.length && metaError(head, pageSize + PAGE_HEADER_BYTES) === undefined) {
      candidates.push(decodeMeta(head, pageSize + PAGE_HEADER_BYTES));
    }
    if (candidates.length === 0) throw new BboltFormatError("bbolt: no valid meta page");
    candidates.sort((a, b) => (a.txid > b.txid ? -1 : a.txid < b.txid ? 1 : 0));
    this.meta = candidates[0]!;
    this.pageSize = this.meta.pageSize;
  }

  /** Opens `filePath` read-only. @throws BboltFormatError when neither meta page is valid. */
  static open(filePath: string): BboltReader {
    const fd = openSync(filePath, "r");
    try {
      return new BboltReader(fd, fstatSync(fd).size);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Top-level bucket names in order. */
  bucketNames(): Buffer[] {
    const out: Buffer[] = [];
    for (const e of this.walk({ root: Number(this.meta.rootPgid) })) {
      if ((e.flags & BUCKET_LEAF_FLAG) !== 0) out.push(e.key);
    }
    return out;
  }

  /** Key/value pairs of a top-level bucket in order; undefined when there is no such bucket. */
  entries(bucket: Buffer | string): Array<[Buffer, Buffer]> | undefined {
    const ref = this.bucketRef(typeof bucket === "string" ? Buffer.from(bucket) : bucket);
    if (ref === undefined) return undefined;
    return [...this.pairs(ref)];
  }

  /**
   * Iterates a top-level bucket's key/value pairs in order, one page in memory at a time (for
   * big files). Yields nothing when there is no such bucket.
   */
  *iterate(bucket: Buffer | string): Generator<[Buffer, Buffer]> {
    const ref = this.bucketRef(typeof bucket === "string" ? Buffer.from(bucket) : bucket);
    if (ref !== undefined) yield* this.pairs(ref);
  }

  private *pairs(ref: BucketRef): Generator<[Buffer, Buffer]> {
    for (const e of this.walk(ref)) {
      if ((e.flags & BUCKET_LEAF_FLAG) !== 0) continue; // nested buckets are not listed
      yield [e.key, e.value];
    }
  }

  /** Every top-level bucket with its entries, sorted by bucket name. */
  dump(): Map<string, Array<[Buffer, Buffer]>> {
    const out = new Map<string, Array<[Buffer, Buffer]>>();
    for (const name of this.bucketNames()) out.set(name.toString(), this.entries(name) ?? []);
    return out;
  }

  /**
   * Checks the file as bbolt's `tx.Check` does, plus ordering: returns the problems found (empty
   * when the file is sound).
   */
  check(): string[] {
    const errors: string[] = [];
    const highWater = Number(this.meta.highWaterPgid);
    if (this.fileBytes < highWater * this.pageSize) errors.push(`file has ${this.fileBytes} bytes, high-water mark needs ${highWater * this.pageSize}`);
    const freed = new Set<number>();
    const reachable = new Set<number>([0, 1]);
    const freelistPgid = Number(this.meta.freelistPgid);
    if (this.meta.freelistPgid !== 0xffffffffffffffffn) {
      const p = this.page(freelistPgid);
      if ((p.flags & PageFlag.freelist) === 0) errors.push(`page ${freelistPgid}: freelist page has flags ${p.flags}`);
      for (let i = 0; i <= p.overflow; i++) reachable.add(freelistPgid + i);
      let count = p.count;
      let at = PAGE_HEADER_BYTES;
      if (count === 0xffff) {
        count = Number(p.buf.readBigUInt64LE(at));
        at += 8;
      }
      for (let i = 0; i < count; i++) {
        const id = Number(p.buf.readBigUInt64LE(at + i * 8));
        if (freed.has(id)) errors.push(`page ${id}: already freed`);
        freed.add(id);
      }
    }
    const visit = (pgid: number, depth: number): void => {
      if (depth > 64) {
        errors.push(`page ${pgid}: tree too deep`);
        return;
      }
      if (pgid >= highWater) {
        errors.push(`page ${pgid}: out of bounds: ${highWater}`);
        return;
      }
      const p = this.page(pgid);
      if (p.pgid !== pgid) errors.push(`page ${pgid}: header says id ${p.pgid}`);
      for (let i = 0; i <= p.overflow; i++) {
        if (reachable.has(pgid + i)) errors.push(`page ${pgid + i}: multiple references`);
        reachable.add(pgid + i);
      }
      if (freed.has(pgid)) errors.push(`page ${pgid}: reachable freed`);
      if ((p.flags & (PageFlag.branch | PageFlag.leaf)) === 0) {
        errors.push(`page ${pgid}: invalid type: ${p.flags}`);
        return;
      }
      const elements = this.elements(p);
      for (let i = 1; i < elements.length; i++) {
        if (Buffer.compare(elements[i - 1]!.key, elements[i]!.key) >= 0) errors.push(`page ${pgid}: keys out of order at element ${i}`);
      }
      if ((p.flags & PageFlag.branch) !== 0) {
        for (const e of elements) {
          const childFirst = this.firstKey(e.child);
          if (childFirst !== undefined && Buffer.compare(e.key, childFirst) > 0) errors.push(`page ${pgid}: branch key above child ${e.child}'s first key`);
          visit(e.child, depth + 1);
        }
      } else {
        for (const e of elements) {
          if ((e.flags & BUCKET_LEAF_FLAG) === 0) continue;
          const ref = this.decodeBucket(e.value);
          if (ref.root !== 0) visit(ref.root, depth + 1);
        }
      }
    };
    visit(Number(this.meta.rootPgid), 0);
    // Keys must ascend across leaves of each bucket too.
    for (const name of this.bucketNames()) {
      const list = this.entries(name) ?? [];
      for (let i = 1; i < list.length; i++) {
        if (Buffer.compare(list[i - 1]![0], list[i]![0]) >= 0) {
          errors.push(`bucket ${name.toString()}: keys out of order at entry ${i}`);
          break;
        }
      }
    }
    // Without a stored freelist (bbolt's NoFreelistSync, as etcd runs it) bbolt takes every
    // unreachable page for free.
    if (this.meta.freelistPgid !== 0xffffffffffffffffn) {
      for (let i = 0; i < highWater; i++) {
        if (!reachable.has(i) && !freed.has(i)) errors.push(`page ${i}: unreachable unfreed`);
      }
    }
    return errors;
  }

  private bucketRef(name: Buffer): BucketRef | undefined {
    for (const e of this.walk({ root: Number(this.meta.rootPgid) })) {
      if ((e.flags & BUCKET_LEAF_FLAG) !== 0 && e.key.equals(name)) return this.decodeBucket(e.value);
    }
    return undefined;
  }

  private decodeBucket(value: Buffer): BucketRef {
    if (value.length < BUCKET_HEADER_BYTES) throw new BboltFormatError("bbolt: bucket value too short");
    const root = Number(value.readBigUInt64LE(0));
    if (root !== 0) return { root };
    return { root: 0, inline: value.subarray(BUCKET_HEADER_BYTES) };
  }

  private firstKey(pgid: number): Buffer | undefined {
    const p = this.page(pgid);
    if (p.count === 0) return undefined;
    return this.elements(p)[0]!.key;
  }

  /** Leaf elements of a bucket's tree, in order. */
  private *walk(ref: BucketRef): Generator<Element> {
    let visited = 0;
    // Pages still to visit: an inline page, or page ids read when their turn comes.
    const stack: Array<PageView | number> = [];
    if (ref.inline !== undefined) {
      const buf = ref.inline;
      stack.push({ pgid: -1, buf, flags: buf.readUInt16LE(8), count: buf.readUInt16LE(10), overflow: 0 });
    } else {
      stack.push(ref.root);
    }
    // Depth-first, left to right: push children in reverse.
    while (stack.length > 0) {
      if (++visited > PAGES_VISITED_MAX) throw new BboltFormatError("bbolt: too many pages (cycle?)");
      const top = stack.pop()!;
      const p = typeof top === "number" ? this.page(top) : top;
      const elements = this.elements(p);
      if ((p.flags & PageFlag.branch) !== 0) {
        for (let i = elements.length - 1; i >= 0; i--) stack.push(elements[i]!.child);
      } else if ((p.flags & PageFlag.leaf) !== 0) {
        yield* elements;
      } else {
        throw new BboltFormatError(`bbolt: page ${p.pgid} is neither branch nor leaf (flags ${p.flags})`);
      }
    }
  }

  private elements(p: PageView): Element[] {
    const out: Element[] = [];
    const branch = (p.flags & PageFlag.branch) !== 0;
    for (let i = 0; i < p.count; i++) {
      const at = PAGE_HEADER_BYTES + i * (branch ? BRANCH_ELEMENT_BYTES : LEAF_ELEMENT_BYTES);
      if (branch) {
        const pos = p.buf.readUInt32LE(at);
        const ksize = p.buf.readUInt32LE(at + 4);
        const child = Number(p.buf.readBigUInt64LE(at + 8));
        out.push({ flags: 0, key: this.slice(p, at + pos, ksize), value: Buffer.alloc(0), child });
      } else {
        const flags = p.buf.readUInt32LE(at);
        const pos = p.buf.readUInt32LE(at + 4);
        const ksize = p.buf.readUInt32LE(at + 8);
        const vsize = p.buf.readUInt32LE(at + 12);
        out.push({ flags, key: this.slice(p, at + pos, ksize), value: this.slice(p, at + pos + ksize, vsize), child: 0 });
      }
    }
    return out;
  }

  private slice(p: PageView, at: number, length: number): Buffer {
    if (at + length > p.buf.length) throw new BboltFormatError(`bbolt: element runs past page ${p.pgid}`);
    return Buffer.from(p.buf.subarray(at, at + length));
  }

  private page(pgid: number): PageView {
    const at = pgid * this.pageSize;
    if (at + PAGE_HEADER_BYTES > this.fileBytes) throw new BboltFormatError(`bbolt: page ${pgid} beyond end of file`);
    const header = Buffer.alloc(PAGE_HEADER_BYTES);
    readSync(this.fd, header, 0, PAGE_HEADER_BYTES, at);
    const overflow = header.readUInt32LE(12);
    const length = (overflow + 1) * this.pageSize;
    if (at + length > this.fileBytes) throw new BboltFormatError(`bbolt: page ${pgid} (+${overflow}) beyond end of file`);
    const buf = Buffer.alloc(length);
    readSync(this.fd, buf, 0, length, at);
    return {
      pgid: Number(buf.readBigUInt64LE(0)),
      buf,
      flags: buf.readUInt16LE(8),
      count: buf.readUInt16LE(10),
      overflow,
    };
  }
}
