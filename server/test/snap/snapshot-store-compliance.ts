/**
 * The SnapshotStore contract (server/src/snap/snapshot-store.ts), written once and run against
 * every implementation: `describeSnapshotStore(name, newDir)`.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrNoSnapshot, ErrSnapshotCorrupt, snapshotFileName } from "../../src/snap/index.js";
import type { SnapshotStore } from "../../src/snap/snapshot-store.js";
import type { Snapshot } from "../../src/raft/types.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";

/** A snapshot directory for one test, with raw access to its files. */
export interface SnapDir {
  /** A snapshotter on the directory, as a (re)started member opens it. */
  open(): SnapshotStore;
  /** Every file name in the directory, sorted ([] when it does not exist yet). */
  fileNames(): string[];
  readFile(name: string): Buffer | undefined;
  /** Writes raw bytes under `name` (a damaged or foreign file). */
  writeFile(name: string, bytes: Uint8Array): void;
  destroy(): void;
}

export function snap(term: number, index: number, data = `state@${index}`): Snapshot {
  return {
    metadata: { term, index, confState: { voters: [1n, 2n, 0xffffffffffffffffn], learners: index % 2 === 0 ? [7n] : [] } },
    data: new TextEncoder().encode(data),
  };
}

export function describeSnapshotStore(name: string, newDir: () => SnapDir): void {
  describe(`SnapshotStore compliance: ${name}`, () => {
    let dir: SnapDir;
    let s: SnapshotStore;

    beforeEach(() => {
      dir = newDir();
      s = dir.open();
    });

    afterEach(() => dir.destroy());

    it("starts empty", async () => {
      expect(await s.names()).toEqual([]);
      expect(await s.loadNewest()).toBeUndefined();
      await expect(s.loadNewestAvailable([{ index: 0, term: 0 }])).rejects.toBeInstanceOf(ErrNoSnapshot);
    });

    it("saves term-index named snapshots, lists them newest first and loads the newest", async () => {
      await s.save(snap(1, 10));
      await s.save(snap(2, 20));
      await s.save(snap(2, 15));
      await s.save(snap(0, 0)); // empty: not stored
      expect(await s.names()).toEqual([snapshotFileName(2, 20), snapshotFileName(2, 15), snapshotFileName(1, 10)]);
      expect(dir.fileNames()).toEqual([snapshotFileName(1, 10), snapshotFileName(2, 15), snapshotFileName(2, 20)]);
      expect(await s.loadNewest()).toEqual(snap(2, 20));
      expect(await s.load(snapshotFileName(2, 15))).toEqual(snap(2, 15));
    });

    it("keeps what it saved for the next snapshotter (a restart)", async () => {
      await s.save(snap(3, 30, "x".repeat(10_000)));
      const again = dir.open();
      expect(await again.loadNewest()).toEqual(snap(3, 30, "x".repeat(10_000)));
    });

    it("stores its own copy: changing the saved or loaded data changes nothing", async () => {
      const original = snap(1, 5, "abc");
      await s.save(original);
      original.data[0] = 0x7a;
      const loaded = (await s.loadNewest())!;
      expect(new TextDecoder().decode(loaded.data)).toBe("abc");
      loaded.data[0] = 0x7a;
      expect(new TextDecoder().decode((await s.loadNewest())!.data)).toBe("abc");
    });

    it("sets aside snapshots that fail verification and falls back to older ones", async () => {
      await s.save(snap(1, 10));
      await s.save(snap(1, 20, "x".repeat(1000)));
      await s.save(snap(1, 30));
      const newest = snapshotFileName(1, 30);
      const bytes = dir.readFile(newest)!;
      bytes[bytes.length - 3]! ^= 0x10;
      dir.writeFile(newest, bytes);
      const second = snapshotFileName(1, 20);
      dir.writeFile(second, dir.readFile(second)!.subarray(0, 500));
      await expect(s.load(newest)).rejects.toBeInstanceOf(ErrSnapshotCorrupt);
      expect(await s.loadNewest()).toEqual(snap(1, 10));
      expect(dir.fileNames()).toEqual([snapshotFileName(1, 10), `${second}.broken`, `${newest}.broken`]);
      expect(await s.names()).toEqual([snapshotFileName(1, 10)]);
    });

    it("refuses a snapshot whose contents do not match its name; a missing one is ENOENT", async () => {
      await s.save(snap(1, 10));
      dir.writeFile(snapshotFileName(1, 11), dir.readFile(snapshotFileName(1, 10))!);
      await expect(s.load(snapshotFileName(1, 11))).rejects.toBeInstanceOf(ErrSnapshotCorrupt);
      await expect(s.load(snapshotFileName(9, 99))).rejects.toMatchObject({ code: "ENOENT" });
    });

    it("loadNewestAvailable picks the newest snapshot the WAL has a marker for", async () => {
      await s.save(snap(1, 10));
      await s.save(snap(2, 20));
      await s.save(snap(3, 30));
      expect(await s.loadNewestAvailable([{ index: 10, term: 1 }, { index: 20, term: 2 }])).toEqual(snap(2, 20));
      expect(await s.loadNewestAvailable([{ index: 30, term: 3 }])).toEqual(snap(3, 30));
      await expect(s.loadNewestAvailable([{ index: 20, term: 9 }])).rejects.toBeInstanceOf(ErrNoSnapshot);
    });

    it("purge keeps the newest N and removes leftovers of interrupted saves", async () => {
      for (let i = 1; i <= 6; i++) await s.save(snap(1, i * 10));
      dir.writeFile("leftover.snap.tmp", new Uint8Array([1]));
      dir.writeFile("notes.txt", new Uint8Array([1]));
      const removed = await s.purge(2);
      expect(removed.length).toBe(5);
      expect(await s.names()).toEqual([snapshotFileName(1, 60), snapshotFileName(1, 50)]);
      expect(dir.fileNames()).toEqual([snapshotFileName(1, 50), snapshotFileName(1, 60), "notes.txt"]);
      expect(await s.purge(2)).toEqual([]);
      await expect(s.purge(0)).rejects.toBeInstanceOf(RangeError);
    });

    it("agrees with a model under random saves, damage and purges (SEED=)", async () => {
      const seed = testSeed();
      try {
        const r = new SeededRandom(seed);
        const good = new Map<string, Snapshot>();
        for (let step = 0; step < 40; step++) {
          const roll = r.next();
          if (roll < 0.6) {
            const sn = snap(r.int(1, 4), r.int(1, 60), `d${step}`);
            await s.save(sn);
            good.set(snapshotFileName(sn.metadata.term, sn.metadata.index), sn);
          } else if (roll < 0.75 && good.size > 0) {
            const victim = [...good.keys()][r.int(0, good.size - 1)]!;
            const bytes = dir.readFile(victim)!;
            // Any byte but the reserved header field [12, 16), which the format does not check.
            const at = r.next() < 0.2 ? r.int(0, 11) : r.int(16, bytes.length - 1);
            bytes[at]! ^= 1 << r.int(0, 7);
            dir.writeFile(victim, bytes);
            good.delete(victim);
          } else if (roll < 0.85) {
            const keep = r.int(1, 4);
            await s.purge(keep);
            const listed = [...(await s.names())];
            for (const n of [...good.keys()]) if (!listed.includes(n)) good.delete(n);
            expect(listed.length).toBeLessThanOrEqual(keep);
          } else {
            const newest = await s.loadNewest();
            const expected = [...good.keys()].sort().reverse()[0];
            expect(newest).toEqual(expected === undefined ? undefined : good.get(expected));
            if (expected !== undefined) expect((await s.names())[0]).toBe(expected);
          }
        }
      } catch (e) {
        console.error(`snapshot store model test failed with SEED=${seed}`);
        throw e;
      }
    });
  });
}
