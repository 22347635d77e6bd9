import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ErrSnapshotMismatch,
  ErrSnapshotNotFound,
  ErrWalClosed,
  ErrWalCorrupt,
  ErrWalExists,
  ErrWalFailed,
  ErrWalLocked,
  ErrWalNotFound,
  Wal,
} from "../../src/wal/index.js";
import type { Entry } from "../../src/raft/types.js";
import { applyEntries, entry, hs, tempDir } from "./wal-helpers.js";
import { crc32c, crc32cUpdate } from "../../src/pkg/crc32c.js";

const META = new TextEncoder().encode("member=1 cluster=2");
let t: { dir: string; cleanup: () => void };
let walDir: string;

beforeEach(() => {
  t = tempDir();
  walDir = path.join(t.dir, "member", "wal");
});
afterEach(() => t.cleanup());

function segs(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith(".wal")).sort();
}

describe("Wal round trips", () => {
  it("creates, saves many batches, reopens with the same entries, hardState and metadata", async () => {
    expect(Wal.exists(walDir)).toBe(false);
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20 });
    expect(Wal.exists(walDir)).toBe(true);
    const model: Entry[] = [];
    let index = 0;
    for (let b = 0; b < 200; b++) {
      const batch: Entry[] = [];
      for (let k = 0; k < (b % 7) + 1; k++) {
        index++;
        batch.push(entry(index, 1 + Math.floor(b / 50), new Uint8Array(index % 300).fill(index & 0xff)));
      }
      applyEntries(model, batch);
      await wal.save(hs(1 + Math.floor(b / 50), Math.max(0, index - 3), 7n), batch, { sync: b % 3 === 0 });
    }
    await wal.close();
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(Buffer.from(r.metadata).toString()).toBe("member=1 cluster=2");
    expect(r.hardState).toEqual({ term: 4, vote: 7n, commit: index - 3 });
    expect(r.entries).toEqual(model);
    await r.wal.close();
  });

  it("refuses create over an existing log and open of a missing one", async () => {
    await expect(Wal.open(walDir, { index: 0, term: 0 })).rejects.toBeInstanceOf(ErrWalNotFound);
    const wal = await Wal.create(walDir, META);
    await wal.close();
    await expect(Wal.create(walDir, META)).rejects.toBeInstanceOf(ErrWalExists);
  });

  it("cuts to new segments, names them seq-firstIndex, and reads across them", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 4096, preallocation: "sparse" });
    const model: Entry[] = [];
    for (let i = 1; i <= 300; i++) {
      const batch = [entry(i, 2, new Uint8Array(100).fill(i & 0xff))];
      applyEntries(model, batch);
      await wal.save(hs(2, i - 1, 3n), batch, { sync: i % 10 === 0 });
    }
    await wal.close();
    const names = segs(walDir);
    expect(names.length).toBeGreaterThan(5);
    expect(names[0]).toBe("0000000000000000-0000000000000000.wal");
    for (let k = 1; k < names.length; k++) {
      const [seq, first] = names[k]!.replace(".wal", "").split("-").map((h) => Number.parseInt(h, 16));
      expect(seq).toBe(k);
      // The first entry of segment k is `first` (the index after the last entry of segment k-1).
      expect(first).toBeGreaterThan(1);
      // Sealed segments are truncated to their data; the newest stays preallocated.
      if (k < names.length - 1) expect(statSync(path.join(walDir, names[k]!)).size).toBeLessThan(4096 + 256);
    }
    expect(statSync(path.join(walDir, names[names.length - 1]!)).size).toBeGreaterThanOrEqual(4096);
    const r = await Wal.open(walDir, { index: 0, term: 0 }, { segmentSizeBytes: 4096 });
    expect(r.entries).toEqual(model);
    expect(r.hardState).toEqual(hs(2, 299, 3n));
    // Appending after reopen continues the chain and the sequence.
    await r.wal.save(hs(3, 300, 3n), [entry(301, 3)], { sync: true });
    await r.wal.close();
    const r2 = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r2.entries.length).toBe(301);
    expect(r2.entries[300]).toEqual(entry(301, 3));
    await r2.wal.close();
  });

  it("open after a snapshot marker returns only later entries; releaseTo drops older segments", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 4096, preallocation: "sparse" });
    for (let i = 1; i <= 200; i++) await wal.save(hs(1, i, 1n), [entry(i, 1, new Uint8Array(64))], { sync: false });
    const conf = { voters: [1n, 2n, 0xffffffffffffffffn], learners: [9n] };
    await wal.saveSnapshot({ index: 150, term: 1, confState: conf });
    for (let i = 201; i <= 260; i++) await wal.save(hs(1, i, 1n), [entry(i, 1, new Uint8Array(64))], { sync: false });
    const before = segs(walDir);
    await wal.releaseTo(150);
    const after = segs(walDir);
    expect(after.length).toBeLessThan(before.length);
    // The segment that holds index 150 is kept.
    const firstKept = Number.parseInt(after[0]!.split("-")[1]!.replace(".wal", ""), 16);
    expect(firstKept).toBeLessThanOrEqual(150);
    await wal.close();

    const r = await Wal.open(walDir, { index: 150, term: 1 });
    expect(r.entries.map((e) => e.index)).toEqual(Array.from({ length: 110 }, (_, k) => 151 + k));
    expect(r.hardState.commit).toBe(260);
    await r.wal.close();
    expect(await Wal.validSnapshotEntries(walDir)).toEqual([{ index: 150, term: 1, confState: conf }]);
    await expect(Wal.open(walDir, { index: 150, term: 2 })).rejects.toBeInstanceOf(ErrSnapshotMismatch);
    await expect(Wal.open(walDir, { index: 0, term: 0 })).rejects.toBeInstanceOf(ErrWalNotFound);
    await expect(Wal.open(walDir, { index: 170, term: 1 })).rejects.toBeInstanceOf(ErrSnapshotNotFound);
  });

  it("locks the directory against a second open, in this process and from stale files", async () => {
    const wal = await Wal.create(walDir, META);
    await expect(Wal.open(walDir, { index: 0, term: 0 })).rejects.toBeInstanceOf(ErrWalLocked);
    await wal.close();
    // A lock left by a process that no longer exists is taken over.
    writeFileSync(path.join(walDir, "wal.lock"), JSON.stringify({ pid: 2 ** 22 + 12345 }));
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(existsSync(path.join(walDir, "wal.lock"))).toBe(true);
    await r.wal.close();
    expect(existsSync(path.join(walDir, "wal.lock"))).toBe(false);
    // A lock held by a live process (our parent) is respected.
    writeFileSync(path.join(walDir, "wal.lock"), JSON.stringify({ pid: process.ppid }));
    await expect(Wal.open(walDir, { index: 0, term: 0 })).rejects.toBeInstanceOf(ErrWalLocked);
  });

  it("group-commits concurrent saves and rejects saves after close", async () => {
    let observedFsyncs = 0;
    let observedBytes = 0;
    const observer = { observeFsyncSeconds: () => void observedFsyncs++, addWrittenBytes: (n: number) => void (observedBytes += n) };
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 64 * 1024, preallocation: "sparse", observer });
    const writers = 32;
    const perWriter = 40;
    const ps: Promise<void>[] = [];
    let index = 0;
    for (let round = 0; round < perWriter; round++) {
      for (let w = 0; w < writers; w++) {
        index++;
        ps.push(wal.save(hs(1, index - 1), [entry(index, 1, new Uint8Array(200))], { sync: true }));
      }
      if (round % 4 === 0) await ps[ps.length - 1];
    }
    await Promise.all(ps);
    const st = wal.stats();
    // Group commit: far fewer fsyncs than synced saves.
    expect(st.fsyncs).toBeLessThan(index / 4);
    expect(st.cuts).toBeGreaterThan(0);
    expect(observedFsyncs).toBe(st.fsyncs);
    expect(observedBytes).toBe(st.bytesWritten);
    await wal.close();
    await expect(wal.save(undefined, [entry(index + 1, 1)], { sync: true })).rejects.toBeInstanceOf(ErrWalClosed);
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((e) => e.index)).toEqual(Array.from({ length: index }, (_, k) => k + 1));
    await r.wal.close();
  });

  it("keeps bigint votes and entry types exactly", async () => {
    const wal = await Wal.create(walDir, META);
    const e = { index: 1, term: 2 ** 40, type: 1, data: new Uint8Array([0, 255]) };
    await wal.save({ term: 2 ** 40, vote: 0xfedcba9876543210n, commit: 1 }, [e], { sync: true });
    await wal.close();
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.hardState).toEqual({ term: 2 ** 40, vote: 0xfedcba9876543210n, commit: 1 });
    expect(r.entries).toEqual([e]);
    await r.wal.close();
  });
});

describe("Wal recovery edges", () => {
  it("cuts a partial last record with a warning, and names file and offset for mid-log damage", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse" });
    for (let i = 1; i <= 10; i++) await wal.save(hs(1, i), [entry(i, 1, new Uint8Array(100).fill(i))], { sync: true });
    const before9 = wal.tailPosition().offsetBytes;
    await wal.save(hs(1, 11), [entry(11, 1, new Uint8Array(100).fill(11))], { sync: true });
    const end = wal.tailPosition();
    await wal.close();

    // Torn: the last save was only half written.
    const buf = readFileSync(end.path);
    const torn = Buffer.from(buf);
    torn.fill(0, before9 + 60, end.offsetBytes);
    writeFileSync(end.path, torn);
    const warnings: string[] = [];
    const logger = { info: () => undefined, warn: (m: string) => void warnings.push(m) };
    const r = await Wal.open(walDir, { index: 0, term: 0 }, { logger });
    expect(r.entries.length).toBe(10);
    expect(r.hardState).toEqual(hs(1, 10));
    expect(warnings.some((w) => w.includes("torn"))).toBe(true);
    await r.wal.save(hs(1, 11), [entry(11, 2)], { sync: true });
    await r.wal.close();

    // Mid-log: damage record 5 while later records are intact.
    const now = readFileSync(end.path);
    now[300]! ^= 0x01;
    writeFileSync(end.path, now);
    const err = await Wal.open(walDir, { index: 0, term: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrWalCorrupt);
    expect(String((err as Error).message)).toMatch(new RegExp(`${path.basename(end.path)} at offset \\d+: .*had been fsynced`));
  });

  it("refuses a log with a missing middle segment and removes leftover tmp files", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 4096, preallocation: "sparse" });
    for (let i = 1; i <= 100; i++) await wal.save(undefined, [entry(i, 1, new Uint8Array(100))], { sync: false });
    await wal.close();
    writeFileSync(path.join(walDir, "7.tmp"), "leftover of a crash during a cut");
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(existsSync(path.join(walDir, "7.tmp"))).toBe(false);
    await r.wal.close();
    const names = segs(walDir);
    rmSync(path.join(walDir, names[2]!));
    const err = await Wal.open(walDir, { index: 0, term: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrWalCorrupt);
    expect((err as Error).message).toMatch(/missing segment/);
  });

  it("refuses segments that do not chain (a segment from another log)", async () => {
    const other = path.join(t.dir, "other");
    for (const d of [walDir, other]) {
      const w = await Wal.create(d, META, { segmentSizeBytes: 4096, preallocation: "sparse" });
      for (let i = 1; i <= 60; i++) await w.save(undefined, [entry(i, 1, new Uint8Array(100).fill(d === walDir ? 1 : 2))], { sync: false });
      await w.close();
    }
    const name = segs(walDir)[1]!;
    expect(segs(other)[1]).toBe(name);
    writeFileSync(path.join(walDir, name), readFileSync(path.join(other, name)));
    const err = await Wal.open(walDir, { index: 0, term: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrWalCorrupt);
    expect((err as Error).message).toMatch(/does not continue/);
  });

  it("poisons itself after an I/O failure and closes saves racing with close cleanly", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse" });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    // Simulate the disk going away under the open file (both of its handles).
    const tail = (wal as unknown as { tail: { fh: { close(): Promise<void> }; synced?: { close(): Promise<void> } } }).tail;
    await tail.synced?.close();
    await tail.fh.close();
    await expect(wal.save(undefined, [entry(2, 1)], { sync: true })).rejects.toBeInstanceOf(ErrWalFailed);
    await expect(wal.save(undefined, [entry(3, 1)], { sync: true })).rejects.toBeInstanceOf(ErrWalFailed);
    await wal.close();

    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((e) => e.index)).toEqual([1]);
    const racing = [2, 3, 4].map((i) => r.wal.save(undefined, [entry(i, 1)], { sync: true }));
    const closing = r.wal.close();
    const late = r.wal.save(undefined, [entry(5, 1)], { sync: true }).catch((e: unknown) => e);
    await Promise.all(racing);
    await closing;
    expect(await late).toBeInstanceOf(ErrWalClosed);
    const again = await Wal.open(walDir, { index: 0, term: 0 });
    expect(again.entries.map((e) => e.index)).toEqual([1, 2, 3, 4]);
    await again.wal.close();
  });
});

describe("Wal format version", () => {
  it("refuses segments written in another format version", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 4096, preallocation: "sparse" });
    await wal.close();
    const file = path.join(walDir, segs(walDir)[0]!);
    const buf = readFileSync(file);
    // Rewrite the crc frame at offset 0 with version 2 and valid checksums.
    buf.writeUInt32LE(2, 16 + 4);
    const content = crc32cUpdate(crc32c(buf, 0, 8), buf, 16, 24);
    const le = Buffer.alloc(4);
    le.writeUInt32LE(content);
    buf.writeUInt32LE(crc32cUpdate(buf.readUInt32LE(16), le), 8);
    buf.writeUInt32LE(crc32cUpdate(content, buf, 8, 12), 12);
    writeFileSync(file, buf);
    const err = await Wal.open(walDir, { index: 0, term: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrWalCorrupt);
    expect((err as Error).message).toMatch(/unsupported WAL format version 2/);
  });
});

describe("Wal recovery after power loss mid-write", () => {
  it("cuts a last write whose middle sector never reached the disk, but refuses when a later write proves it was synced", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse" });
    for (let i = 1; i <= 5; i++) await wal.save(hs(1, i), [entry(i, 1, new Uint8Array(100).fill(i))], { sync: true });
    const lastWriteAt = wal.tailPosition().offsetBytes;
    // One write of ~6 KiB: 20 entries; pretend power failed before all its sectors were persisted.
    const big = Array.from({ length: 20 }, (_, k) => entry(6 + k, 1, new Uint8Array(280).fill(0x5a)));
    await wal.save(hs(1, 25), big, { sync: false });
    const end = wal.tailPosition();
    await wal.close();
    const original = readFileSync(end.path);
    const sector = Math.ceil((lastWriteAt + 2048) / 512) * 512;
    expect(sector + 512).toBeLessThan(end.offsetBytes - 600);
    const torn = Buffer.from(original);
    torn.fill(0, sector, sector + 512);
    writeFileSync(end.path, torn);
    const warnings: string[] = [];
    const r = await Wal.open(walDir, { index: 0, term: 0 }, { logger: { info: () => undefined, warn: (m, f) => void warnings.push(`${m} ${JSON.stringify(f)}`) } });
    // Everything of the earlier, synced writes survives; the torn write is cut at its first damaged entry.
    expect(r.entries.length).toBeGreaterThanOrEqual(5);
    expect(r.entries.length).toBeLessThan(25);
    expect(r.entries.slice(0, 5).map((e) => e.index)).toEqual([1, 2, 3, 4, 5]);
    expect(r.hardState).toEqual(hs(1, 5));
    expect(warnings.join("\n")).toMatch(/unwritten sector .* dropped/);
    await r.wal.close();

    // The same lost sector, but a later write carries a sync mark covering it: real corruption.
    writeFileSync(end.path, original);
    const again = await Wal.open(walDir, { index: 0, term: 0 });
    expect(again.entries.length).toBe(25);
    await again.wal.save(hs(1, 26), [entry(26, 1)], { sync: true });
    await again.wal.close();
    const withLater = readFileSync(end.path);
    withLater.fill(0, sector, sector + 512);
    writeFileSync(end.path, withLater);
    const err = await Wal.open(walDir, { index: 0, term: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrWalCorrupt);
    expect((err as Error).message).toMatch(/had been fsynced/);
  });
});
