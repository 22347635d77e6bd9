/**
 * Prepares the next segment file in the background, so that cutting to a new segment does not wait
 * for file creation and preallocation. One file is always being prepared (or ready) while the Wal
 * is open: `take()` hands it over and starts preparing the next. Files are named `<n>.tmp` inside
 * the WAL directory; the Wal renames a taken file to its segment name once its header is durable.
 * Leftover `*.tmp` files (a crash) are removed when the WAL is opened.
 */
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { preallocate, type Preallocation } from "./fs-durable.js";

export interface PreparedFile {
  path: string;
  fh: FileHandle;
}

export class FilePipeline {
  private next: Promise<PreparedFile> | undefined;
  private counter = 0;

  constructor(
    private readonly dir: string,
    private readonly sizeBytes: number,
    private readonly mode: Preallocation,
  ) {}

  start(): void {
    if (this.next === undefined) this.next = this.prepare();
  }

  /** The prepared file (waits if it is not ready yet); the caller owns it from now on. */
  take(): Promise<PreparedFile> {
    const p = this.next ?? this.prepare();
    this.next = this.prepare();
    return p;
  }

  /** Discards the file being prepared. */
  async stop(): Promise<void> {
    const p = this.next;
    this.next = undefined;
    if (p === undefined) return;
    try {
      const f = await p;
      await f.fh.close();
      await fsp.rm(f.path, { force: true });
    } catch {
      // Preparation failed; nothing to clean beyond a possible partial file, removed on next open.
    }
  }

  private prepare(): Promise<PreparedFile> {
    const filePath = path.join(this.dir, `${this.counter++}.tmp`);
    const p = (async () => {
      const fh = await fsp.open(filePath, "w+");
      try {
        await preallocate(fh, 0, this.sizeBytes, this.mode);
        await fh.sync();
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      return { path: filePath, fh };
    })();
    // A failure is reported to whoever takes the file; do not let it become an unhandled rejection.
    p.catch(() => undefined);
    return p;
  }
}
