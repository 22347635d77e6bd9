/**
 * Raft snapshot files: one file per snapshot, `%016x-%016x.snap` (term, index), in one directory.
 *
 * Format (version 1, integers little-endian, u64 values are safe integers or bigint member IDs):
 *   offset  size  field
 *   0       8     magic "etsnap01"
 *   8       4     crc32c of bytes [16, end of file)
 *   12      4     reserved, 0
 *   16      8     index
 *   24      8     term
 *   32      4     voterCount, then voterCount × u64 voter IDs
 *   ..      4     learnerCount, then learnerCount × u64 learner IDs
 *   ..      8     dataBytes, then dataBytes of state-machine data (the rest of the file)
 *
 * Files are written atomically (tmp + fsync + rename + directory fsync), so a file with the final
 * name is complete unless the disk damaged it; damaged files are renamed to `<name>.broken` when a
 * load meets them, and the next older snapshot is tried.
 */
import { promises as fsp } from "node:fs";
import path from "node:path";
import { crc32c, crc32cUpdate } from "../pkg/crc32c.js";
import type { Snapshot } from "../raft/types.js";
import { ErrNoSnapshot, ErrSnapshotCorrupt } from "./errors.js";
import type { SnapshotStore } from "./snapshot-store.js";
import { writeFileAtomic } from "./fs-durable.js";
import { fsyncDir } from "../pkg/fsync-dir.js";
import { exponentialBuckets, HistogramCell } from "../pkg/metric-cells.js";
import { readU64LE, writeU64LE } from "../pkg/u64-le.js";

export interface SnapLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface SnapshotterOptions {
  /** The snapshot directory (etcd: <data-dir>/member/snap); created by `save` if missing. */
  dir: string;
}

export interface SnapshotterDependencies {
  logger?: SnapLogger;
}

const MAGIC = Buffer.from("etsnap01", "latin1");
const HEADER_BYTES = 16;
const SNAP_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
const NOOP_LOGGER: SnapLogger = { info: () => undefined, warn: () => undefined };

export function snapshotFileName(term: number, index: number): string {
  return `${hex16(term)}-${hex16(index)}.snap`;
}

export function parseSnapshotFileName(name: string): { term: number; index: number } | undefined {
  const m = SNAP_NAME.exec(name);
  if (m === null) return undefined;
  const term = Number.parseInt(m[1]!, 16);
  const index = Number.parseInt(m[2]!, 16);
  if (!Number.isSafeInteger(term) || !Number.isSafeInteger(index)) return undefined;
  return { term, index };
}

function hex16(n: number): string {
  return n.toString(16).padStart(16, "0");
}



/** Encodes a snapshot file: [header+metadata, data] (the data is not copied). */
export function encodeSnapshotFile(s: Snapshot): Uint8Array[] {
  const { voters, learners } = s.metadata.confState;
  const metaBytes = 16 + 4 + 8 * voters.length + 4 + 8 * learners.length + 8;
  const head = Buffer.alloc(HEADER_BYTES + metaBytes);
  MAGIC.copy(head, 0);
  let p = HEADER_BYTES;
  writeU64LE(head, p, s.metadata.index, "snap");
  writeU64LE(head, p + 8, s.metadata.term, "snap");
  p += 16;
  for (const ids of [voters, learners]) {
    head.writeUInt32LE(ids.length, p);
    p += 4;
    for (const id of ids) {
      head.writeBigUInt64LE(id, p);
      p += 8;
    }
  }
  writeU64LE(head, p, s.data.length, "snap");
  const crc = crc32cOf([head.subarray(HEADER_BYTES), s.data]);
  head.writeUInt32LE(crc, 8);
  return [head, s.data];
}

function crc32cOf(parts: Uint8Array[]): number {
  let c = 0;
  for (const part of parts) c = crc32cUpdate(c, part);
  return c;
}

/** Decodes and verifies a whole snapshot file. Throws ErrSnapshotCorrupt. */
export function decodeSnapshotFile(file: string, buf: Buffer): Snapshot {
  const bad = (reason: string): never => {
    throw new ErrSnapshotCorrupt(file, reason);
  };
  if (buf.length < HEADER_BYTES + 16 + 4 + 4 + 8) bad(`file too short (${buf.length} bytes)`);
  if (!buf.subarray(0, 8).equals(MAGIC)) bad("bad magic");
  const stored = buf.readUInt32LE(8);
  const actual = crc32c(buf, HEADER_BYTES);
  if (stored !== actual) bad(`crc mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`);
  let p = HEADER_BYTES;
  const index = readU64LE(buf, p);
  const term = readU64LE(buf, p + 8);
  if (index < 0 || term < 0) bad("index/term out of range");
  p += 16;
  const lists: bigint[][] = [];
  for (let k = 0; k < 2; k++) {
    if (p + 4 > buf.length) bad("truncated confState");
    const n = buf.readUInt32LE(p);
    p += 4;
    if (p + 8 * n > buf.length) bad("truncated confState");
    const ids: bigint[] = [];
    for (let i = 0; i < n; i++, p += 8) ids.push(buf.readBigUInt64LE(p));
    lists.push(ids);
  }
  if (p + 8 > buf.length) bad("truncated data length");
  const dataBytes = readU64LE(buf, p);
  p += 8;
  if (dataBytes !== buf.length - p) bad(`data length ${dataBytes} does not match the file (${buf.length - p} bytes left)`);
  const data = new Uint8Array(dataBytes);
  data.set(buf.subarray(p));
  return { metadata: { index, term, confState: { voters: lists[0]!, learners: lists[1]! } }, data };
}

/** etcd's etcd_snap_* / etcd_debugging_snap_* timings of .snap saves. */
export class SnapshotterCounters {
  readonly marshallingSeconds = new HistogramCell(exponentialBuckets(0.001, 2, 14));
  readonly saveSeconds = new HistogramCell(exponentialBuckets(0.001, 2, 14));
  readonly fsyncSeconds = new HistogramCell(exponentialBuckets(0.001, 2, 14));
}

export class Snapshotter implements SnapshotStore {
  readonly dir: string;
  /** Save timings (metrics). */
  readonly counters = new SnapshotterCounters();
  private readonly logger: SnapLogger;

  constructor(options: SnapshotterOptions, dependencies: SnapshotterDependencies = {}) {
    this.dir = options.dir;
    this.logger = dependencies.logger ?? NOOP_LOGGER;
  }

  /**
   * Writes `snapshot` to `<term>-<index>.snap` atomically. An empty snapshot (index 0) is not
   * written (as in etcd). Throws on I/O errors (nothing with the final name is left then).
   */
  async save(snapshot: Snapshot): Promise<void> {
    if (snapshot.metadata.index === 0) return;
    const started = performance.now();
    await fsp.mkdir(this.dir, { recursive: true });
    const name = snapshotFileName(snapshot.metadata.term, snapshot.metadata.index);
    const bytes = encodeSnapshotFile(snapshot);
    this.counters.marshallingSeconds.observe((performance.now() - started) / 1000);
    await writeFileAtomic(this.dir, path.join(this.dir, name), bytes, (seconds) => this.counters.fsyncSeconds.observe(seconds));
    this.counters.saveSeconds.observe((performance.now() - started) / 1000);
    this.logger.info("snap: saved", { file: name, dataBytes: snapshot.data.length });
  }

  /** Loads and verifies one snapshot file by name. Throws ErrSnapshotCorrupt. */
  async load(name: string): Promise<Snapshot> {
    const file = path.join(this.dir, name);
    const snap = decodeSnapshotFile(file, await fsp.readFile(file));
    const fromName = parseSnapshotFileName(name);
    if (fromName !== undefined && (fromName.index !== snap.metadata.index || fromName.term !== snap.metadata.term)) {
      throw new ErrSnapshotCorrupt(file, `contents (term ${snap.metadata.term}, index ${snap.metadata.index}) do not match the name`);
    }
    return snap;
  }

  /** The newest snapshot that verifies, or undefined if there is none; broken ones are set aside. */
  async loadNewest(): Promise<Snapshot | undefined> {
    return this.loadMatching(() => true);
  }

  /**
   * The newest snapshot whose {index, term} is among `walSnaps` (the WAL's valid snapshot markers,
   * see Wal.validSnapshotEntries), so that the WAL can be replayed on top of it. Throws ErrNoSnapshot
   * when there is none (as etcd does).
   */
  async loadNewestAvailable(walSnaps: { index: number; term: number }[]): Promise<Snapshot> {
    const wanted = new Set(walSnaps.map((s) => `${s.term}/${s.index}`));
    const snap = await this.loadMatching((t, i) => wanted.has(`${t}/${i}`));
    if (snap === undefined) throw new ErrNoSnapshot(this.dir);
    return snap;
  }

  /** Snapshot file names, newest first. */
  async names(): Promise<string[]> {
    let all: string[];
    try {
      all = await fsp.readdir(this.dir);
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") return [];
      throw e;
    }
    return all.filter((n) => parseSnapshotFileName(n) !== undefined).sort().reverse();
  }

  /** Deletes all but the newest `keep` snapshot files (and leftover `.tmp` files). */
  async purge(keep: number): Promise<string[]> {
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`snap: purge must keep at least 1 file, got ${keep}`);
    const names = await this.names();
    const doomed = names.slice(keep);
    for (const n of await fsp.readdir(this.dir)) {
      if (n.endsWith(".snap.tmp")) doomed.push(n);
    }
    if (doomed.length === 0) return [];
    for (const n of doomed) await fsp.rm(path.join(this.dir, n), { force: true });
    await fsyncDir(this.dir);
    this.logger.info("snap: purged", { removed: doomed });
    return doomed;
  }

  private async loadMatching(accept: (term: number, index: number) => boolean): Promise<Snapshot | undefined> {
    for (const name of await this.names()) {
      const id = parseSnapshotFileName(name)!;
      if (!accept(id.term, id.index)) continue;
      try {
        return await this.load(name);
      } catch (e) {
        if (!(e instanceof ErrSnapshotCorrupt)) throw e;
        this.logger.warn("snap: setting aside a broken snapshot file", { file: name, reason: e.reason });
        await fsp.rename(path.join(this.dir, name), path.join(this.dir, `${name}.broken`));
        await fsyncDir(this.dir);
      }
    }
    return undefined;
  }
}
