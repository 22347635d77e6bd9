import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readSegmentBytes } from "../../src/wal/segment-read.js";
import { Wal } from "../../src/wal/wal.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "segment-read-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

describe("readSegmentBytes", () => {
  it("keeps the bytes up to the last nonzero one, then zeros up to the pad, and the real size", async () => {
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 17);
    bytes.fill(7, 0, 1000);
    bytes[2 * 1024 * 1024 + 5] = 9; // a stray nonzero byte far behind the data (damage) is kept
    const { buf, fileBytes } = await readSegmentBytes(file("a", bytes), 4096);
    expect(fileBytes).toBe(bytes.length);
    expect(buf.length).toBe(2 * 1024 * 1024 + 6 + 4096);
    expect(buf.equals(bytes.subarray(0, buf.length))).toBe(true);
  });

  it("stops at the file's end, and reads an all-zero or empty file as zeros", async () => {
    const bytes = Buffer.alloc(5000);
    bytes[4999] = 1;
    expect((await readSegmentBytes(file("b", bytes), 4096)).buf.equals(bytes)).toBe(true);
    const zeros = await readSegmentBytes(file("c", Buffer.alloc(100_000)), 4096);
    expect([zeros.buf.length, zeros.fileBytes]).toEqual([4096, 100_000]);
    const empty = await readSegmentBytes(file("d", Buffer.alloc(0)));
    expect([empty.buf.length, empty.fileBytes]).toEqual([0, 0]);
  });

  it("opening a log does not hold its preallocated segment in memory", async () => {
    const before = process.memoryUsage().arrayBuffers;
    const wal = await Wal.create(path.join(dir, "wal"), Buffer.from("{}"), { segmentSizeBytes: 64 * 1024 * 1024 });
    const grown = process.memoryUsage().arrayBuffers - before;
    await wal.close();
    // It used to read the whole 64 MiB segment; now a 1 MiB search chunk and the data.
    expect(grown).toBeLessThan(8 * 1024 * 1024);
  });
});
