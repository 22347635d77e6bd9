/**
 * The backend's start-up checksum verification on real LevelDB files: a database written by
 * classic-level (many small tables, snappy-compressed blocks, bloom filters) verifies clean; a
 * flipped bit anywhere in a table's blocks, or in a log record followed by others, is reported
 * with its file; a cut-off log tail is accepted as torn. Flip positions come from a seeded RNG
 * (SEED=, printed on failure).
 */
import { ClassicLevel } from "classic-level";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendCorruptError, snappyDecompress, verifyLevelDbFiles } from "../../src/mvcc/backend/leveldb-verify.js";

const SEED = Number(process.env.SEED ?? 20261204);

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

async function writeDb(dir: string, count: number, flush: boolean): Promise<void> {
  const db = new ClassicLevel<string, string>(dir, { writeBufferSize: 64 * 1024 });
  await db.open();
  for (let i = 0; i < count; i += 100) {
    const batch = db.batch();
    for (let j = i; j < i + 100; j++) batch.put(`key-${String(j).padStart(6, "0")}`, `value-${j}-${"abcdefgh".repeat(j % 30)}`);
    await batch.write();
  }
  if (flush) await db.compactRange("\u0000", "\uffff");
  await db.close();
}

function copyDir(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
}

describe("verifyLevelDbFiles", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "leveldb-verify-"));
  const tablesDir = path.join(root, "tables");
  const logDir = path.join(root, "log");

  beforeAll(async () => {
    await writeDb(tablesDir, 6000, true);
    await writeDb(logDir, 300, false);
  }, 60_000);
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it("passes a sound database and reads every block", () => {
    const r = verifyLevelDbFiles(tablesDir);
    expect(r.tables).toBeGreaterThan(1);
    expect(r.blocks).toBeGreaterThan(r.tables * 3);
    const l = verifyLevelDbFiles(logDir);
    expect(l.logRecords).toBeGreaterThan(2);
    expect(l.tornTails).toEqual([]);
    expect(verifyLevelDbFiles(path.join(root, "missing")).tables).toBe(0);
  });

  it("reports a flipped bit in any block of a table", () => {
    const random = rng(SEED);
    const tables = fs.readdirSync(tablesDir).filter((n) => n.endsWith(".ldb"));
    for (let trial = 0; trial < 12; trial++) {
      const dir = path.join(root, `flip-${trial}`);
      copyDir(tablesDir, dir);
      const name = tables[Math.floor(random() * tables.length)]!;
      const file = path.join(dir, name);
      const b = fs.readFileSync(file);
      // Within the blocks (the footer's padding is unused by LevelDB too).
      const at = Math.floor(random() * (b.length - 48));
      b[at] = b[at]! ^ (1 << Math.floor(random() * 8));
      fs.writeFileSync(file, b);
      let err: unknown;
      try {
        verifyLevelDbFiles(dir);
      } catch (e) {
        err = e;
      }
      expect(err, `seed=${SEED} trial=${trial} ${name}@${at}`).toBeInstanceOf(BackendCorruptError);
      expect((err as BackendCorruptError).file).toBe(file);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("tells a damaged log record from a torn tail", () => {
    const log = fs.readdirSync(logDir).find((n) => n.endsWith(".log"))!;
    const damaged = path.join(root, "log-damaged");
    copyDir(logDir, damaged);
    const b = fs.readFileSync(path.join(damaged, log));
    b[100] = b[100]! ^ 0x10;
    fs.writeFileSync(path.join(damaged, log), b);
    expect(() => verifyLevelDbFiles(damaged)).toThrow(/log record checksum mismatch before valid records/);

    const torn = path.join(root, "log-torn");
    copyDir(logDir, torn);
    const t = fs.readFileSync(path.join(torn, log));
    fs.writeFileSync(path.join(torn, log), t.subarray(0, t.length - 10));
    const r = verifyLevelDbFiles(torn);
    expect(r.tornTails.length).toBe(1);
  });

  it("decompresses snappy's elements", () => {
    // "abcabcabcabcX": literal "abc", copy (offset 3, length 9), literal "X"
    const src = Buffer.from([13, 2 << 2, 0x61, 0x62, 0x63, ((9 - 4) << 2) | 1, 3, 0 << 2, 0x58]);
    expect(snappyDecompress(src).toString()).toBe("abcabcabcabcX");
    expect(() => snappyDecompress(Buffer.from([5, 0 << 2, 0x61]))).toThrow();
  });
});
