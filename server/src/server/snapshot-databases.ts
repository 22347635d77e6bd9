/**
 * The databases received with leaders' snapshots, kept on disk until their snapshot is installed
 * (etcd's `<index>.snap.db` files in the snap directory).
 *
 * Why they are kept past their arrival: raft persists a received snapshot (its file and its WAL
 * marker) before the apply path has made the backend the database that came with it. A crash in
 * between leaves a backend behind the snapshot the WAL resumes from, and the entries it lacks are
 * no longer in the WAL. As etcd 3.4 does (recoverSnapshotBackend), a restart then installs the
 * database kept for that snapshot. So a database stays until the backend is, durably, at or past
 * its snapshot: the apply path releases it once Backend.replace's synced write is in, and every
 * raft snapshot the member takes releases those at or below its index (etcd's ReleaseSnapDBs).
 *
 * The peer transport's snapshot handler writes the file (fsynced and renamed) before the member
 * sees the message; `SnapshotDatabaseFiles` reads and removes them. The simulation keeps the
 * received images in its in-memory snap directory (`MemorySnapshotDatabases`).
 */
import { readdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import type { BackendImage } from "../mvcc/backend/backend.js";
import { fsyncDir } from "../pkg/fsync-dir.js";
import type { SnapshotMetadata } from "../raft/types.js";
import type { MemorySnapDir } from "../snap/memory-snapshotter.js";
import { parseSnapshotDatabaseFileName, snapshotDatabaseFileName } from "./transport-port.js";
import { etcdDatabaseImage } from "./etcd-database-image.js";

export interface SnapshotDatabases {
  /** The database kept for the snapshot `metadata` names, as an image; undefined when none is kept. */
  open(metadata: SnapshotMetadata): BackendImage | undefined;
  /** Removes the databases kept for snapshots at or below `index`. */
  release(index: number): Promise<void>;
}

/** Kept databases as etcd 3.4 bbolt files in the member's snap directory. */
export class SnapshotDatabaseFiles implements SnapshotDatabases {
  private constructor(readonly dir: string) {}

  /**
   * Opens the kept databases in `dir`, removing what interrupted transfers left (`tmp-*.snap.db`:
   * a database being received or prepared for sending when the process stopped).
   */
  static async open(dir: string): Promise<SnapshotDatabaseFiles> {
    const leftovers = (await readdir(dir)).filter((n) => n.startsWith("tmp-") && n.endsWith(".snap.db"));
    for (const n of leftovers) await rm(path.join(dir, n), { force: true });
    return new SnapshotDatabaseFiles(dir);
  }

  open(metadata: SnapshotMetadata): BackendImage | undefined {
    const file = path.join(this.dir, snapshotDatabaseFileName(metadata.index));
    return existsSync(file) ? etcdDatabaseImage(file, metadata) : undefined;
  }

  async release(index: number): Promise<void> {
    const doomed = (await readdir(this.dir)).filter((n) => (parseSnapshotDatabaseFileName(n) ?? Infinity) <= index);
    if (doomed.length === 0) return;
    for (const n of doomed) await rm(path.join(this.dir, n), { force: true });
    await fsyncDir(this.dir);
  }
}

/**
 * Kept images in a simulated snap directory: written whole and durably (as the handler's fsynced
 * rename makes them) by `keep` before the member is handed the snapshot; cut off by a crash like
 * the directory's snapshotters (calls from an older incarnation never settle).
 */
export class MemorySnapshotDatabases implements SnapshotDatabases {
  private readonly generation: number;

  constructor(private readonly dir: MemorySnapDir) {
    this.generation = dir.generation;
  }

  /** Keeps the image received for the snapshot at `index` (one already kept stays, as on disk). */
  static keep(dir: MemorySnapDir, index: number, image: [Buffer, Buffer][]): void {
    const name = snapshotDatabaseFileName(index);
    if (dir.bytes(name) !== undefined) return;
    const parts: Buffer[] = [];
    for (const [k, v] of image) {
      const lengths = Buffer.alloc(8);
      lengths.writeUInt32BE(k.length, 0);
      lengths.writeUInt32BE(v.length, 4);
      parts.push(lengths, k, v);
    }
    dir.writeFile(name, Buffer.concat(parts));
  }

  open(metadata: SnapshotMetadata): BackendImage | undefined {
    const bytes = this.dir.readFile(snapshotDatabaseFileName(metadata.index));
    if (bytes === undefined) return undefined;
    return (async function* () {
      for (let at = 0; at < bytes.length; ) {
        const kLen = bytes.readUInt32BE(at);
        const vLen = bytes.readUInt32BE(at + 4);
        const k = bytes.subarray(at + 8, at + 8 + kLen);
        const v = bytes.subarray(at + 8 + kLen, at + 8 + kLen + vLen);
        at += 8 + kLen + vLen;
        yield [k, v] as [Buffer, Buffer];
      }
    })();
  }

  release(index: number): Promise<void> {
    if (this.generation !== this.dir.generation) return new Promise<never>(() => undefined);
    for (const n of this.dir.fileNames()) if ((parseSnapshotDatabaseFileName(n) ?? Infinity) <= index) this.dir.remove(n);
    return Promise.resolve();
  }
}
