/**
 * Reading a segment file for recovery without holding the whole preallocated file in memory.
 *
 * A segment is preallocated to its full size (64 MiB by default) and written from the start, so
 * the newest segment is mostly zeros that were never written; sealed segments are truncated to
 * their data. Reading whole files made every start allocate and touch one segment-sized buffer
 * (the member's peak RSS grew by 64 MiB at each start, even on a fresh data dir).
 *
 * `readSegmentBytes` returns every byte up to the file's last nonzero byte, followed by up to
 * `zeroPadBytes` zeros (never past the file's end), and the file's real size. Everything the
 * recovery scan can find is in there: frames, damage and sync marks all lie before the last
 * nonzero byte, and past it the file reads as zeros, as the pad does. The one case the pad cannot
 * stand for is a torn frame whose declared length reaches past the pad: the scan then stops at it
 * with "truncated frame" rather than a CRC mismatch, and its outcome (a torn tail, or corruption in
 * a sealed segment) is the same.
 */
import type { FileHandle } from "node:fs/promises";
import { promises as fsp } from "node:fs";
import { readFully } from "../pkg/read-fully.js";

/** Bytes read per step while looking for the last nonzero byte from the end. */
const SEARCH_CHUNK_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(SEARCH_CHUNK_BYTES);

/** Zeros kept after the last nonzero byte (at least a sector and a frame header). */
export const SEGMENT_ZERO_PAD_BYTES = 64 * 1024;

export interface SegmentBytes {
  /** The file's bytes up to its last nonzero byte, then zeros (see the module comment). */
  buf: Buffer;
  /** The file's size on disk. */
  fileBytes: number;
}

export async function readSegmentBytes(file: string, zeroPadBytes = SEGMENT_ZERO_PAD_BYTES): Promise<SegmentBytes> {
  const fh = await fsp.open(file, "r");
  try {
    const fileBytes = (await fh.stat()).size;
    const dataEnd = await lastNonZeroEnd(fh, fileBytes);
    const buf = Buffer.alloc(Math.min(fileBytes, dataEnd + zeroPadBytes));
    await readExactly(fh, buf, dataEnd, 0);
    return { buf, fileBytes };
  } finally {
    await fh.close();
  }
}

/** The offset just past the file's last nonzero byte (0 when it is all zeros). */
async function lastNonZeroEnd(fh: FileHandle, fileBytes: number): Promise<number> {
  const chunk = Buffer.allocUnsafe(Math.min(SEARCH_CHUNK_BYTES, Math.max(fileBytes, 1)));
  let end = fileBytes;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const n = end - start;
    await readExactly(fh, chunk, n, start);
    if (chunk.compare(ZEROS, 0, n, 0, n) !== 0) {
      let i = n - 1;
      while (chunk[i] === 0) i--;
      return start + i + 1;
    }
    end = start;
  }
  return 0;
}

/** Reads exactly `length` bytes at `position` into the start of `into`. */
async function readExactly(fh: FileHandle, into: Buffer, length: number, position: number): Promise<void> {
  const got = await readFully(fh, into, length, position);
  if (got < length) throw new Error(`segment shorter than expected: read ${got} of ${length} bytes at ${position}`);
}
