/**
 * Raft snapshots in memory, for simulations: `MemorySnapDir` is the snapshot directory (it
 * outlives the members that use it), `MemorySnapshotter` a SnapshotStore on it.
 *
 * Files hold the same bytes as on disk (snapshotter.ts's format) and are verified the same way on
 * load. Every operation takes effect when it is called and is durable at once (on disk, files are
 * written to a temp name, fsynced and renamed, and the directory fsynced): a crash loses nothing
 * here. What a crash (or kill) does is cut off the snapshotters opened before it: their pending
 * and later calls never settle, so a dead member's leftover work cannot touch the directory a
 * restarted member reads.
 */
import type { Snapshot } from "../raft/types.js";
import { ErrNoSnapshot, ErrSnapshotCorrupt } from "./errors.js";
import type { SnapshotStore } from "./snapshot-store.js";
import {
  decodeSnapshotFile,
  encodeSnapshotFile,
  parseSnapshotFileName,
  snapshotFileName,
  type SnapshotterDependencies,
  type SnapLogger,
} from "./snapshotter.js";

const NOOP_LOGGER: SnapLogger = { info: () => undefined, warn: () => undefined };
const NEVER = new Promise<never>(() => undefined);

function notFound(file: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), { code: "ENOENT" });
}

export interface MemorySnapDirOptions {
  /** How the directory is named in errors and logs. Default "memory-snap". */
  name?: string;
}

/** A snapshot directory in memory: file name → bytes. */
export class MemorySnapDir {
  readonly name: string;
  private readonly files = new Map<string, Buffer>();
  /** Bumped by crash/kill; snapshotters of an older generation are cut off. */
  private generationValue = 0;

  constructor(options: MemorySnapDirOptions = {}) {
    this.name = options.name ?? "memory-snap";
  }

  /** Power loss: the files stay (they were durable); snapshotters opened so far are cut off. */
  crash(): void {
    this.generationValue++;
  }

  /** The process died: the files stay; snapshotters opened so far are cut off. */
  kill(): void {
    this.generationValue++;
  }

  /** Every file name in the directory (set-aside `.broken` files included), sorted. */
  fileNames(): string[] {
    return [...this.files.keys()].sort();
  }

  /** A copy of a file's bytes, or undefined. */
  readFile(name: string): Buffer | undefined {
    const b = this.files.get(name);
    return b === undefined ? undefined : Buffer.from(b);
  }

  /**
   * Writes a file as it is, bypassing the snapshot format: what an operator's tool or a failing
   * disk may leave (tests use it to damage snapshots).
   */
  writeFile(name: string, bytes: Uint8Array): void {
    this.files.set(name, Buffer.from(bytes));
  }

  /** @internal */
  get generation(): number {
    return this.generationValue;
  }

  /** @internal The stored bytes, not a copy: do not mutate. */
  bytes(name: string): Buffer | undefined {
    return this.files.get(name);
  }

  /** @internal */
  remove(name: string): void {
    this.files.delete(name);
  }

  /** @internal */
  rename(from: string, to: string): void {
    const b = this.files.get(from);
    if (b === undefined) throw notFound(`${this.name}/${from}`);
    this.files.delete(from);
    this.files.set(to, b);
  }
}

export interface MemorySnapshotterOptions {
  dir: MemorySnapDir;
}

/** A SnapshotStore on a MemorySnapDir; same behaviour as Snapshotter on a directory. */
export class MemorySnapshotter implements SnapshotStore {
  private readonly dir: MemorySnapDir;
  private readonly generation: number;
  private readonly logger: SnapLogger;

  constructor(options: MemorySnapshotterOptions, dependencies: SnapshotterDependencies = {}) {
    this.dir = options.dir;
    this.generation = options.dir.generation;
    this.logger = dependencies.logger ?? NOOP_LOGGER;
  }

  save(snapshot: Snapshot): Promise<void> {
    return this.run(() => {
      if (snapshot.metadata.index === 0) return;
      const name = snapshotFileName(snapshot.metadata.term, snapshot.metadata.index);
      this.dir.writeFile(name, Buffer.concat(encodeSnapshotFile(snapshot)));
      this.logger.info("snap: saved", { file: name, dataBytes: snapshot.data.length });
    });
  }

  load(name: string): Promise<Snapshot> {
    return this.run(() => this.loadNow(name));
  }

  loadNewest(): Promise<Snapshot | undefined> {
    return this.run(() => this.loadMatching(() => true));
  }

  loadNewestAvailable(walSnaps: { index: number; term: number }[]): Promise<Snapshot> {
    return this.run(() => {
      const wanted = new Set(walSnaps.map((s) => `${s.term}/${s.index}`));
      const snap = this.loadMatching((t, i) => wanted.has(`${t}/${i}`));
      if (snap === undefined) throw new ErrNoSnapshot(this.dir.name);
      return snap;
    });
  }

  names(): Promise<string[]> {
    return this.run(() => this.snapNames());
  }

  purge(keep: number): Promise<string[]> {
    return this.run(() => {
      if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`snap: purge must keep at least 1 file, got ${keep}`);
      const doomed = this.snapNames().slice(keep);
      for (const n of this.dir.fileNames()) if (n.endsWith(".snap.tmp")) doomed.push(n);
      for (const n of doomed) this.dir.remove(n);
      if (doomed.length > 0) this.logger.info("snap: purged", { removed: doomed });
      return doomed;
    });
  }

  /** Runs `op` now and settles with its outcome; never settles once this snapshotter is cut off. */
  private run<T>(op: () => T): Promise<T> {
    if (this.generation !== this.dir.generation) return NEVER;
    try {
      return Promise.resolve(op());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private snapNames(): string[] {
    return this.dir.fileNames().filter((n) => parseSnapshotFileName(n) !== undefined).reverse();
  }

  private loadNow(name: string): Snapshot {
    const file = `${this.dir.name}/${name}`;
    const bytes = this.dir.bytes(name);
    if (bytes === undefined) throw notFound(file);
    const snap = decodeSnapshotFile(file, bytes);
    const fromName = parseSnapshotFileName(name);
    if (fromName !== undefined && (fromName.index !== snap.metadata.index || fromName.term !== snap.metadata.term)) {
      throw new ErrSnapshotCorrupt(file, `contents (term ${snap.metadata.term}, index ${snap.metadata.index}) do not match the name`);
    }
    return snap;
  }

  private loadMatching(accept: (term: number, index: number) => boolean): Snapshot | undefined {
    for (const name of this.snapNames()) {
      const id = parseSnapshotFileName(name)!;
      if (!accept(id.term, id.index)) continue;
      try {
        return this.loadNow(name);
      } catch (e) {
        if (!(e instanceof ErrSnapshotCorrupt)) throw e;
        this.logger.warn("snap: setting aside a broken snapshot file", { file: name, reason: e.reason });
        this.dir.rename(name, `${name}.broken`);
      }
    }
    return undefined;
  }
}
