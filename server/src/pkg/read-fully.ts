import type { FileHandle } from "node:fs/promises";

/**
 * Reads `length` bytes at `position` into the start of `into`, looping over short reads.
 * @returns the bytes read: `length`, or fewer only where the file ends first (the caller decides
 *   what a short file means).
 */
export async function readFully(fh: FileHandle, into: Buffer, length: number, position: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(into, got, length - got, position + got);
    if (bytesRead <= 0) break;
    got += bytesRead;
  }
  return got;
}
