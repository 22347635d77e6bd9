import { existsSync, readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Snapshotter, snapshotFileName } from "../../src/snap/index.js";
import { Wal } from "../../src/wal/index.js";
import type { Snapshot } from "../../src/raft/types.js";

let dir: string;
beforeEach(() => {
  dir = path.join(mkdtempSync(path.join(os.tmpdir(), "etcd-ts-snap-")), "snap");
});
afterEach(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

function snap(term: number, index: number, data = `state@${index}`): Snapshot {
  return {
    metadata: { term, index, confState: { voters: [1n, 2n, 0xffffffffffffffffn], learners: index % 2 === 0 ? [7n] : [] } },
    data: new TextEncoder().encode(data),
  };
}

describe("Snapshotter", () => {
  it("saves term-index named files and loads the newest", async () => {
    const s = new Snapshotter({ dir });
    expect(await s.loadNewest()).toBeUndefined();
    await s.save(snap(1, 10));
    await s.save(snap(2, 20));
    await s.save(snap(2, 15));
    await s.save(snap(0, 0)); // empty: not written
    expect(readdirSync(dir).sort()).toEqual(
      [snapshotFileName(1, 10), snapshotFileName(2, 15), snapshotFileName(2, 20)].sort(),
    );
    expect(snapshotFileName(2, 20)).toBe("0000000000000002-0000000000000014.snap");
    expect(await s.loadNewest()).toEqual(snap(2, 20));
    expect(readdirSync(dir).some((n) => n.endsWith(".tmp"))).toBe(false);
  });

  it("sets aside files that fail verification and falls back to older ones", async () => {
    const s = new Snapshotter({ dir });
    await s.save(snap(1, 10));
    await s.save(snap(1, 20, "x".repeat(1000)));
    await s.save(snap(1, 30));
    // Flip one bit in the newest, truncate the second newest.
    const newest = path.join(dir, snapshotFileName(1, 30));
    const b = readFileSync(newest);
    b[b.length - 3]! ^= 0x10;
    writeFileSync(newest, b);
    const second = path.join(dir, snapshotFileName(1, 20));
    writeFileSync(second, readFileSync(second).subarray(0, 500));
    expect(await s.loadNewest()).toEqual(snap(1, 10));
    expect(existsSync(`${newest}.broken`)).toBe(true);
    expect(existsSync(`${second}.broken`)).toBe(true);
    expect(existsSync(newest)).toBe(false);
  });

  it("purge keeps the newest N", async () => {
    const s = new Snapshotter({ dir });
    for (let i = 1; i <= 6; i++) await s.save(snap(1, i * 10));
    writeFileSync(path.join(dir, "leftover.snap.tmp"), "x");
    const removed = await s.purge(2);
    expect(removed.length).toBe(5);
    expect(await s.names()).toEqual([snapshotFileName(1, 60), snapshotFileName(1, 50)]);
    expect(existsSync(path.join(dir, "leftover.snap.tmp"))).toBe(false);
    await expect(s.purge(0)).rejects.toBeInstanceOf(RangeError);
  });
});

describe("Snapshotter with the WAL's snapshot markers", () => {
  it("restarts from the newest snapshot the WAL can continue from", async () => {
    const walDir = path.join(path.dirname(dir), "wal");
    const s = new Snapshotter({ dir });
    const wal = await Wal.create(walDir, new Uint8Array([1]), { segmentSizeBytes: 4096, preallocation: "sparse" });
    const ent = (i: number) => ({ index: i, term: 2, type: 0, data: new Uint8Array(50) });
    for (let i = 1; i <= 40; i++) await wal.save({ term: 2, vote: 1n, commit: i }, [ent(i)], { sync: false });
    // etcd's order: snapshot file first, then the WAL marker, then release old segments.
    await s.save(snap(2, 30));
    await wal.saveSnapshot({ index: 30, term: 2, confState: snap(2, 30).metadata.confState });
    await wal.releaseTo(30);
    for (let i = 41; i <= 50; i++) await wal.save({ term: 2, vote: 1n, commit: i - 2 }, [ent(i)], { sync: true });
    // A snapshot file whose marker never reached the WAL (crash in between) must not be chosen.
    await s.save(snap(2, 45));
    await wal.close();

    const markers = await Wal.validSnapshotEntries(walDir);
    expect(markers.map((m) => m.index)).toEqual([30]);
    const chosen = await s.loadNewestAvailable(markers);
    expect(chosen.metadata.index).toBe(30);
    const r = await Wal.open(walDir, { index: chosen.metadata.index, term: chosen.metadata.term });
    expect(r.entries.map((e) => e.index)).toEqual(Array.from({ length: 20 }, (_, k) => 31 + k));
    expect(r.hardState.commit).toBe(48);
    await r.wal.close();
  });
});
