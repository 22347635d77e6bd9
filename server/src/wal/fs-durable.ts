/** Small filesystem helpers with the durability rules the WAL relies on (Linux semantics). */
import { writevSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";

/**
 * How a segment's space is reserved before records are written into it:
 *  - "zeros": write zeros up to the segment size, then fsync. Blocks are really allocated, so a
 *    later fdatasync (or O_DSYNC write) flushes only data (no allocation metadata), and a full disk fails at cut time
 *    (in the background pipeline), not in the middle of an append. Costs one extra sequential
 *    write of the segment. The default.
 *  - "sparse": ftruncate to the segment size. Instant, but blocks are allocated on first write.
 * Node has no fallocate(2); these are the two portable choices. Either way the tail reads as
 * zeros, which the reader treats as "never written".
 */
export type Preallocation = "zeros" | "sparse";

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/** Grows `fh` (currently `currentBytes` long) to `targetBytes` per `mode`; never shrinks it. */
export async function preallocate(fh: FileHandle, currentBytes: number, targetBytes: number, mode: Preallocation): Promise<void> {
  if (currentBytes >= targetBytes) return;
  if (mode === "sparse") {
    await fh.truncate(targetBytes);
    return;
  }
  let pos = currentBytes;
  while (pos < targetBytes) {
    const n = Math.min(ZERO_CHUNK.length, targetBytes - pos);
    const { bytesWritten } = await fh.write(ZERO_CHUNK, 0, n, pos);
    if (bytesWritten <= 0) throw new Error("short write while preallocating");
    pos += bytesWritten;
  }
}

/** The one call `writevAll` needs: a positioned writev (FileHandle's, or a test's wrapper). */
export interface PositionedWriter {
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
}

/** Writes all of `bufs` at `position`, looping over short writes. */
export async function writevAll(fh: PositionedWriter, bufs: Buffer[], position: number): Promise<number> {
  let pending = nonEmpty(bufs);
  let pos = position;
  let guard = 0;
  while (pending.length > 0) {
    if (++guard > 1000) throw new Error("writev made no progress");
    const { bytesWritten } = await fh.writev(pending, pos);
    pos += bytesWritten;
    pending = unwritten(pending, bytesWritten);
  }
  return totalBytes(bufs);
}

/**
 * `writevAll` on the calling thread: positioned writev(2) calls made synchronously. For a small
 * synced append, where handing the write to libuv's thread pool and back costs more than the wait.
 */
export function writevAllSync(fd: number, bufs: Buffer[], position: number): number {
  let pending = nonEmpty(bufs);
  let pos = position;
  let guard = 0;
  while (pending.length > 0) {
    if (++guard > 1000) throw new Error("writev made no progress");
    const bytesWritten = writevSync(fd, pending, pos);
    pos += bytesWritten;
    pending = unwritten(pending, bytesWritten);
  }
  return totalBytes(bufs);
}

function totalBytes(bufs: Buffer[]): number {
  let total = 0;
  for (const b of bufs) total += b.length;
  return total;
}

function nonEmpty(bufs: Buffer[]): Buffer[] {
  return bufs.filter((b) => b.length > 0);
}

/** What of `pending` a write of `bytesWritten` bytes left over. */
function unwritten(pending: Buffer[], bytesWritten: number): Buffer[] {
  let skip = bytesWritten;
  const rest: Buffer[] = [];
  for (const b of pending) {
    if (skip >= b.length) {
      skip -= b.length;
    } else {
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return rest;
}

export function isErrno(e: unknown, code: string): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === code;
}
