/**
 * Synced appends through the segment's O_DSYNC handle: a synced write starts at the last synced
 * offset and carries the unsynced bytes again, unchanged (an O_DSYNC write syncs only its own
 * range); past rewriteBytesMax the sync falls back to writev + fdatasync; a cut resets the range;
 * recovery reads a torn synced write as it reads any torn write. Power cannot be pulled here, so
 * the tests record every synced write (path, offset, bytes) through the `openSyncedAppend` seam
 * and compare it with the file.
 */
import { constants, existsSync, readFileSync, writeFileSync, promises as fsp } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrWalCorrupt, Wal, type SyncedAppendFile, type WalOptions } from "../../src/wal/index.js";
import { INLINE_BYTES_MAX } from "../../src/wal/wal.js";
import { RecordType } from "../../src/wal/record-codec.js";
import { readU64LE } from "../../src/pkg/u64-le.js";
import { entry, hs, tempDir } from "./wal-helpers.js";

const META = new TextEncoder().encode("member=1 cluster=2");
let t: { dir: string; cleanup: () => void };
let walDir: string;

beforeEach(() => {
  t = tempDir("etcd-ts-wal-synced-");
  walDir = path.join(t.dir, "wal");
});
afterEach(() => t.cleanup());

interface SyncedWrite {
  file: string;
  position: number;
  data: Buffer;
}

/** An `openSyncedAppend` that opens the real O_DSYNC handle and records what goes through it. */
function recording(): { open: NonNullable<WalOptions["openSyncedAppend"]>; writes: SyncedWrite[]; closed: string[] } {
  const writes: SyncedWrite[] = [];
  const closed: string[] = [];
  const open = async (file: string): Promise<SyncedAppendFile> => {
    const fh = await fsp.open(file, constants.O_WRONLY | constants.O_DSYNC);
    return {
      writev: async (buffers, position) => {
        const r = await fh.writev(buffers, position);
        writes.push({ file, position, data: Buffer.concat(buffers).subarray(0, r.bytesWritten) });
        return r;
      },
      close: async () => {
        closed.push(file);
        await fh.close();
      },
    };
  };
  return { open, writes, closed };
}

/** Drops a Wal as a killed process would: its files closed and lock released, nothing flushed. */
async function abandon(wal: Wal): Promise<void> {
  const w = wal as unknown as {
    tail: { fh: { close(): Promise<void> }; synced?: { close(): Promise<void> } };
    pipeline: { stop(): Promise<void> };
    lock: { release(): Promise<void> };
  };
  await w.pipeline.stop();
  await w.tail.synced?.close();
  await w.tail.fh.close();
  await w.lock.release();
}

/** The synced offset a sync mark frame at `offset` of `buf` carries. */
function syncMarkAt(buf: Buffer, offset: number): number {
  expect(buf[offset + 4]).toBe(RecordType.SyncMark);
  return readU64LE(buf, offset + 16);
}

describe("Wal synced appends (O_DSYNC)", () => {
  it("a synced save after unsynced saves writes them again, byte for byte, from the last synced offset", async () => {
    const rec = recording();
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse", openSyncedAppend: rec.open });
    await wal.save(hs(1, 0), [entry(1, 1, new Uint8Array(300).fill(1))], { sync: true });
    const s1 = wal.tailPosition();
    expect(rec.writes.length).toBe(1);
    expect(rec.writes[0]!.file).toBe(s1.path);
    // A follower's commit-only HardState and an entry, neither synced.
    await wal.save(hs(1, 1), [], { sync: false });
    await wal.save(undefined, [entry(2, 1, new Uint8Array(500).fill(2))], { sync: false });
    const u = wal.tailPosition().offsetBytes;
    expect(rec.writes.length).toBe(1);
    const unsyncedOnDisk = readFileSync(s1.path).subarray(s1.offsetBytes, u);
    expect(unsyncedOnDisk.length).toBe(u - s1.offsetBytes);

    await wal.save(hs(1, 2), [entry(3, 1, new Uint8Array(200).fill(3))], { sync: true });
    const e = wal.tailPosition().offsetBytes;
    expect(rec.writes.length).toBe(2);
    const w = rec.writes[1]!;
    expect(w.position).toBe(s1.offsetBytes);
    expect(w.data.length).toBe(e - s1.offsetBytes);
    // The rewritten range is what was already there; the new batch's sync mark claims only s1.
    expect(Buffer.compare(w.data.subarray(0, u - s1.offsetBytes), unsyncedOnDisk)).toBe(0);
    const file = readFileSync(s1.path);
    expect(Buffer.compare(file.subarray(s1.offsetBytes, e), w.data)).toBe(0);
    expect(syncMarkAt(file, u)).toBe(s1.offsetBytes);
    expect(syncMarkAt(file, s1.offsetBytes)).toBe(s1.offsetBytes);
    const st = wal.stats();
    expect(st.fsyncs).toBe(2);
    expect(st.fdatasyncs).toBe(0);
    expect(st.rewrittenBytes).toBe(u - s1.offsetBytes);
    // Appended bytes count once, however often they are written.
    expect(st.bytesWritten).toBe(e - s1.offsetBytes + rec.writes[0]!.data.length);

    // Close syncs what is left unsynced the same way: the range again, nothing new.
    await wal.save(hs(1, 3), [], { sync: false });
    const end = wal.tailPosition().offsetBytes;
    await wal.close();
    expect(rec.writes.length).toBe(3);
    expect(rec.writes[2]!.position).toBe(e);
    expect(rec.writes[2]!.data.length).toBe(end - e);
    expect(rec.closed).toEqual([s1.path]);

    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((x) => x.index)).toEqual([1, 2, 3]);
    expect(r.hardState).toEqual(hs(1, 3));
    await r.wal.close();
  });

  it("deferred saves wait in memory and lead the next write; close writes them; a crash loses only them", async () => {
    const rec = recording();
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse", openSyncedAppend: rec.open });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    const s1 = wal.tailPosition().offsetBytes;
    const writes = wal.stats().writes;
    // Commit-only HardStates: resolved at once, nothing written.
    await wal.save(hs(1, 1), [], { sync: false, deferred: true });
    await wal.save(hs(1, 1), [], { sync: false, deferred: true });
    expect(wal.stats().writes).toBe(writes);
    expect(wal.tailPosition().offsetBytes).toBe(s1);
    // The next synced save carries them, in order, in its one write.
    await wal.save(hs(1, 1), [entry(2, 1)], { sync: true });
    expect(wal.stats().writes).toBe(writes + 1);
    expect(rec.writes.length).toBe(2);
    expect(rec.writes[1]!.position).toBe(s1);
    const afterSync = wal.tailPosition().offsetBytes;
    // Held again, then close writes and syncs them.
    await wal.save(hs(1, 2), [], { sync: false, deferred: true });
    expect(wal.tailPosition().offsetBytes).toBe(afterSync);
    await wal.close();
    let r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((x) => x.index)).toEqual([1, 2]);
    expect(r.hardState).toEqual(hs(1, 2));
    // Without close (a process crash: the Wal is dropped), a held HardState is lost, nothing else.
    await r.wal.save(hs(1, 2), [entry(3, 1)], { sync: true });
    await r.wal.save(hs(1, 3), [], { sync: false, deferred: true });
    await abandon(r.wal);
    r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((x) => x.index)).toEqual([1, 2, 3]);
    expect(r.hardState).toEqual(hs(1, 2));
    // Deferred saves past the bound are written (unsynced) rather than held.
    const before = r.wal.stats().writes;
    for (let i = 0; i < 2000; i++) await r.wal.save(hs(1, 3), [], { sync: false, deferred: true });
    expect(r.wal.stats().writes).toBeGreaterThan(before);
    expect(r.wal.stats().fsyncs).toBe(0);
    await r.wal.close();
  });

  it("a synced save with nothing unsynced writes only its own batch; the default handle is O_DSYNC", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse" });
    for (let i = 1; i <= 5; i++) await wal.save(hs(1, i - 1), [entry(i, 1)], { sync: true });
    const st = wal.stats();
    expect(st.fsyncs).toBe(5);
    expect(st.writes).toBe(5);
    expect(st.rewrittenBytes).toBe(0);
    expect(st.fdatasyncs).toBe(0);
    const fd = (wal as unknown as { tail: { synced: { fd: number } } }).tail.synced.fd;
    const fdinfo = `/proc/self/fdinfo/${fd}`;
    if (existsSync(fdinfo)) {
      const flags = Number.parseInt(/flags:\s*([0-7]+)/.exec(readFileSync(fdinfo, "utf8"))![1]!, 8);
      expect(flags & constants.O_DSYNC).toBe(constants.O_DSYNC);
    }
    await wal.close();
  });

  it("falls back to writev + fdatasync when more than rewriteBytesMax went unsynced, then resumes", async () => {
    const rec = recording();
    const wal = await Wal.create(walDir, META, {
      segmentSizeBytes: 1 << 20,
      preallocation: "sparse",
      rewriteBytesMax: 2048,
      openSyncedAppend: rec.open,
    });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    const before = wal.tailPosition().offsetBytes;
    for (let i = 2; i <= 5; i++) await wal.save(undefined, [entry(i, 1, new Uint8Array(500).fill(i))], { sync: false });
    expect(wal.tailPosition().offsetBytes - before).toBeGreaterThan(2048);
    await wal.save(hs(1, 5), [entry(6, 1)], { sync: true });
    let st = wal.stats();
    expect(rec.writes.length).toBe(1);
    expect(st.fsyncs).toBe(2);
    expect(st.fdatasyncs).toBe(1);
    expect(st.rewrittenBytes).toBe(0);

    // After the fdatasync the range starts over: small unsynced saves are carried again.
    const s = wal.tailPosition().offsetBytes;
    await wal.save(hs(1, 6), [], { sync: false });
    const u = wal.tailPosition().offsetBytes;
    await wal.save(undefined, [entry(7, 1)], { sync: true });
    st = wal.stats();
    expect(rec.writes.length).toBe(2);
    expect(rec.writes[1]!.position).toBe(s);
    expect(rec.writes[1]!.data.length).toBe(wal.tailPosition().offsetBytes - s);
    expect(st.fdatasyncs).toBe(1);
    expect(st.rewrittenBytes).toBe(u - s);
    await wal.close();
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((x) => x.index)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await r.wal.close();
  });

  it("keeps unsynced bytes up to exactly rewriteBytesMax", async () => {
    const rec = recording();
    const probe = await Wal.create(path.join(t.dir, "probe"), META, { segmentSizeBytes: 1 << 20, preallocation: "sparse" });
    await probe.save(hs(1, 0), [entry(1, 1)], { sync: true });
    const p0 = probe.tailPosition().offsetBytes;
    await probe.save(undefined, [entry(2, 1, new Uint8Array(500))], { sync: false });
    const oneSave = probe.tailPosition().offsetBytes - p0;
    await probe.close();

    const wal = await Wal.create(walDir, META, {
      segmentSizeBytes: 1 << 20,
      preallocation: "sparse",
      rewriteBytesMax: 2 * oneSave,
      openSyncedAppend: rec.open,
    });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    for (let i = 2; i <= 3; i++) await wal.save(undefined, [entry(i, 1, new Uint8Array(500))], { sync: false });
    await wal.save(undefined, [entry(4, 1)], { sync: true });
    expect(wal.stats().rewrittenBytes).toBe(2 * oneSave);
    expect(wal.stats().fdatasyncs).toBe(0);
    await wal.close();
  });

  it("a cut between unsynced and synced saves: the synced write covers only the new segment; handles close at cut", async () => {
    const rec = recording();
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 4096, preallocation: "sparse", openSyncedAppend: rec.open });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    const first = wal.tailPosition().path;
    let i = 1;
    while (wal.stats().cuts === 0) {
      i++;
      await wal.save(hs(1, i - 1), [entry(i, 1, new Uint8Array(200).fill(i))], { sync: false });
      expect(i).toBeLessThan(100);
    }
    expect(rec.closed).toEqual([first]);
    const after = wal.tailPosition();
    expect(after.path).not.toBe(first);
    const headerEnd = after.offsetBytes;
    i++;
    await wal.save(undefined, [entry(i, 1, new Uint8Array(200).fill(i))], { sync: false });
    i++;
    await wal.save(hs(1, i - 1), [entry(i, 1)], { sync: true });
    const last = rec.writes[rec.writes.length - 1]!;
    expect(rec.writes.length).toBe(2);
    expect(last.file).toBe(after.path);
    expect(last.position).toBe(headerEnd);
    expect(last.data.length).toBe(wal.tailPosition().offsetBytes - headerEnd);
    await wal.close();
    expect(rec.closed).toEqual([first, after.path]);
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    expect(r.entries.map((x) => x.index)).toEqual(Array.from({ length: i }, (_, k) => k + 1));
    await r.wal.close();
  });

  it("a power loss during a synced write that carries unsynced bytes: a lost sector is a torn tail, until a later sync mark covers it", async () => {
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse" });
    for (let i = 1; i <= 3; i++) await wal.save(hs(1, i), [entry(i, 1, new Uint8Array(100).fill(i))], { sync: true });
    const synced = wal.tailPosition().offsetBytes;
    // ~6 KiB unsynced, then a synced save that writes all of it again in one O_DSYNC write.
    const big = Array.from({ length: 20 }, (_, k) => entry(4 + k, 1, new Uint8Array(280).fill(0x5a)));
    await wal.save(hs(1, 3), big, { sync: false });
    const u = wal.tailPosition().offsetBytes;
    await wal.save(hs(1, 24), [entry(24, 1)], { sync: true });
    expect(wal.stats().rewrittenBytes).toBeGreaterThan(6000);
    const end = wal.tailPosition();
    await wal.close();
    const original = readFileSync(end.path);
    // The synced write's own sync mark names the start of the range it wrote, not more.
    expect(syncMarkAt(original, u)).toBe(synced);
    const sector = Math.ceil((synced + 2048) / 512) * 512;
    const torn = Buffer.from(original);
    torn.fill(0, sector, sector + 512);
    writeFileSync(end.path, torn);
    const warnings: string[] = [];
    const r = await Wal.open(walDir, { index: 0, term: 0 }, {
      logger: { info: () => undefined, warn: (m, f) => void warnings.push(`${m} ${JSON.stringify(f)}`) },
    });
    expect(r.entries.slice(0, 3).map((e) => e.index)).toEqual([1, 2, 3]);
    expect(r.entries.length).toBeLessThan(24);
    expect(r.hardState).toEqual(hs(1, 3));
    expect(warnings.join("\n")).toMatch(/unwritten sector .* dropped/);
    await r.wal.close();

    // Once the synced write completed, the next write's sync mark proves the range durable.
    writeFileSync(end.path, original);
    const again = await Wal.open(walDir, { index: 0, term: 0 });
    expect(again.entries.length).toBe(24);
    await again.wal.save(hs(1, 25), [entry(25, 1)], { sync: false });
    await again.wal.close();
    const withLater = readFileSync(end.path);
    withLater.fill(0, sector, sector + 512);
    writeFileSync(end.path, withLater);
    const err = await Wal.open(walDir, { index: 0, term: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErrWalCorrupt);
    expect((err as Error).message).toMatch(/had been fsynced/);
  });
});

describe("Wal inline synced writes", () => {
  /** An O_DSYNC opener that offers its descriptor for inline writes and counts the pool's writes. */
  function inlineCapable(): { open: NonNullable<WalOptions["openSyncedAppend"]>; poolWrites: () => number } {
    let pool = 0;
    const open = async (file: string): Promise<SyncedAppendFile> => {
      const fh = await fsp.open(file, constants.O_WRONLY | constants.O_DSYNC);
      return {
        fd: fh.fd,
        writev: (buffers, position) => {
          pool++;
          return fh.writev(buffers, position);
        },
        close: () => fh.close(),
      };
    };
    return { open, poolWrites: () => pool };
  }

  it("an inline save is durable on disk before save returns, with the same bytes a pooled write would put there", async () => {
    const opener = inlineCapable();
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse", openSyncedAppend: opener.open });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true }); // opens the synced handle
    expect(opener.poolWrites()).toBe(1);
    const before = wal.tailPosition().offsetBytes;
    await wal.save(hs(1, 1), [], { sync: false, deferred: true }); // held: leads the next write

    const p = wal.save(hs(1, 1), [entry(2, 1, new Uint8Array(700).fill(7))], { sync: true, inline: true });
    // Written before save returned: nothing was awaited yet.
    const after = wal.tailPosition().offsetBytes;
    expect(after).toBeGreaterThan(before + 700);
    expect(wal.stats().fsyncs).toBe(2);
    expect(opener.poolWrites()).toBe(1);
    const file = readFileSync(wal.tailPosition().path);
    expect(syncMarkAt(file, before)).toBe(before);
    await p;

    const r0 = await reopenEntries(wal);
    expect(r0).toEqual([1, 2]);
  });

  it("a batch holding a save that did not ask, or too many bytes, goes through the pool", async () => {
    const opener = inlineCapable();
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 4 << 20, preallocation: "sparse", openSyncedAppend: opener.open });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
    expect(opener.poolWrites()).toBe(1);

    // A pooled write in flight; an inline and a plain save queue behind it and share the next write.
    const p1 = wal.save(undefined, [entry(2, 1)], { sync: true });
    const p2 = wal.save(undefined, [entry(3, 1)], { sync: true, inline: true });
    const p3 = wal.save(undefined, [entry(4, 1)], { sync: true });
    await Promise.all([p1, p2, p3]);
    expect(opener.poolWrites()).toBe(3);

    // Alone behind a pooled write, an inline save is written inline once its turn comes.
    const q1 = wal.save(undefined, [entry(5, 1)], { sync: true });
    const q2 = wal.save(undefined, [entry(6, 1)], { sync: true, inline: true });
    await Promise.all([q1, q2]);
    expect(opener.poolWrites()).toBe(4);

    // Larger than INLINE_BYTES_MAX: pooled even though it asked.
    await wal.save(undefined, [entry(7, 1, new Uint8Array(INLINE_BYTES_MAX + 1))], { sync: true, inline: true });
    expect(opener.poolWrites()).toBe(5);
    // Inline without sync means nothing: an unsynced write.
    await wal.save(undefined, [entry(8, 1)], { sync: false, inline: true });
    expect(opener.poolWrites()).toBe(5);
    expect(wal.stats().fsyncs).toBe(6); // q2 was one of them, inline

    expect(await reopenEntries(wal)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("an opener without a descriptor keeps every synced write in the pool", async () => {
    const rec = recording();
    const wal = await Wal.create(walDir, META, { segmentSizeBytes: 1 << 20, preallocation: "sparse", openSyncedAppend: rec.open });
    await wal.save(hs(1, 0), [entry(1, 1)], { sync: true, inline: true });
    const p = wal.save(undefined, [entry(2, 1)], { sync: true, inline: true });
    expect(rec.writes.length).toBe(1);
    await p;
    expect(rec.writes.length).toBe(2);
    expect(await reopenEntries(wal)).toEqual([1, 2]);
  });

  /** Closes `wal` and returns the indexes a fresh open reads back. */
  async function reopenEntries(wal: Wal): Promise<number[]> {
    await wal.close();
    const r = await Wal.open(walDir, { index: 0, term: 0 });
    await r.wal.close();
    return r.entries.map((e) => e.index);
  }
});
