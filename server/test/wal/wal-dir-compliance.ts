/**
 * The WalDir/WalLog contract (server/src/wal/wal-dir.ts), written once and run against every
 * implementation: `describeWalDir(name, newDir)`.
 *
 * Randomised cases take SEED= and print the seed when they fail.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ErrSnapshotMismatch,
  ErrSnapshotNotFound,
  ErrWalClosed,
  ErrWalCorrupt,
  ErrWalExists,
  ErrWalLocked,
  ErrWalNotFound,
  type WalDir,
  type WalLog,
} from "../../src/wal/index.js";
import type { Entry, HardState } from "../../src/raft/types.js";
import { SeededRandom, testSeed } from "../../../test/harness/seeded-random.js";
import { applyEntries, entry, hs } from "./wal-helpers.js";

export interface WalSave {
  hardState?: HardState;
  entries: Entry[];
  sync: boolean;
  deferred?: boolean;
}

/** A WAL directory for one test. */
export interface WalTestDir {
  dir: WalDir;
  /**
   * A process creates the log (with `metadata`) or opens it from {0, 0}, makes `saves` one after
   * another and is killed without closing. Returns once it is gone.
   */
  writeAndKill(metadata: Uint8Array, saves: WalSave[]): Promise<void>;
  destroy(): void;
}

export interface WalTestDirOptions {
  /** Small segments (4096 bytes) so that tests cut and release segments; else the default. */
  smallSegments: boolean;
}

const META = new TextEncoder().encode("member=1 cluster=2");
const ZERO = { index: 0, term: 0 };

export function describeWalDir(name: string, newDir: (options: WalTestDirOptions) => WalTestDir): void {
  describe(`WalDir compliance: ${name}`, () => {
    let t: WalTestDir;
    let small: WalTestDir;
    const open: WalLog[] = [];

    beforeEach(() => {
      t = newDir({ smallSegments: false });
      small = newDir({ smallSegments: true });
    });

    afterEach(async () => {
      for (const w of open.splice(0)) await w.close();
      t.destroy();
      small.destroy();
    });

    async function create(d: WalTestDir): Promise<WalLog> {
      const w = await d.dir.create(META);
      open.push(w);
      return w;
    }

    async function reopen(d: WalTestDir, from = ZERO): Promise<{ wal: WalLog; metadata: Uint8Array; hardState: HardState; entries: Entry[] }> {
      const r = await d.dir.open(from);
      open.push(r.wal);
      return r;
    }

    it("creates a log once; opening or reading a missing one is ErrWalNotFound", async () => {
      expect(t.dir.exists()).toBe(false);
      await expect(t.dir.open(ZERO)).rejects.toBeInstanceOf(ErrWalNotFound);
      await expect(t.dir.validSnapshotEntries()).rejects.toBeInstanceOf(ErrWalNotFound);
      const wal = await create(t);
      expect(t.dir.exists()).toBe(true);
      await expect(t.dir.create(META)).rejects.toBeInstanceOf(ErrWalExists);
      await wal.close();
      const r = await reopen(t);
      expect(Buffer.from(r.metadata).toString()).toBe("member=1 cluster=2");
      expect(r.hardState).toEqual({ term: 0, vote: 0n, commit: 0 });
      expect(r.entries).toEqual([]);
      expect(await t.dir.validSnapshotEntries()).toEqual([{ index: 0, term: 0 }]);
    });

    it("reads back what was saved: entries, the last HardState, the metadata", async () => {
      for (const d of [t, small]) {
        const wal = await create(d);
        const model: Entry[] = [];
        let index = 0;
        let last: HardState = { term: 0, vote: 0n, commit: 0 };
        for (let b = 0; b < 120; b++) {
          const batch: Entry[] = [];
          for (let k = 0; k < (b % 5) + 1; k++) {
            index++;
            batch.push(entry(index, 1 + Math.floor(b / 40), new Uint8Array(index % 200).fill(index & 0xff)));
          }
          applyEntries(model, batch);
          const h = b % 4 === 3 ? undefined : hs(1 + Math.floor(b / 40), Math.max(0, index - 3), 7n);
          if (h !== undefined) last = h;
          await wal.save(h, batch, { sync: b % 3 === 0 });
        }
        await wal.close();
        const r = await reopen(d);
        expect(Buffer.from(r.metadata).toString()).toBe("member=1 cluster=2");
        expect(r.hardState).toEqual(last);
        expect(r.entries).toEqual(model);
      }
    });

    it("resolves overwritten indexes to the latest records, dropping what followed them", async () => {
      const wal = await create(small);
      const model: Entry[] = [];
      const save = async (batch: Entry[]): Promise<void> => {
        applyEntries(model, batch);
        await wal.save(undefined, batch, { sync: true });
      };
      await save([1, 2, 3, 4, 5].map((i) => entry(i, 1)));
      await save([entry(4, 2, "new4"), entry(5, 2, "new5"), entry(6, 2)]);
      await save([entry(3, 3, "newer3")]);
      for (let i = 4; i <= 80; i++) await save([entry(i, 3, new Uint8Array(90))]);
      await save([entry(60, 4, "cut-across-segments")]);
      await wal.close();
      const r = await reopen(small);
      expect(r.entries).toEqual(model);
      expect(r.entries.length).toBe(60);
      expect(Buffer.from(r.entries[2]!.data).toString()).toBe("newer3");
    });

    it("keeps bigint votes, large terms and entry types exactly", async () => {
      const wal = await create(t);
      const e = { index: 1, term: 2 ** 40, type: 1, data: new Uint8Array([0, 255]) };
      await wal.save({ term: 2 ** 40, vote: 0xfedcba9876543210n, commit: 1 }, [e], { sync: true });
      await wal.close();
      const r = await reopen(t);
      expect(r.hardState).toEqual({ term: 2 ** 40, vote: 0xfedcba9876543210n, commit: 1 });
      expect(r.entries).toEqual([e]);
    });

    it("refuses numbers the format cannot hold and saves nothing of that call", async () => {
      const wal = await create(t);
      await wal.save(hs(1, 0), [entry(1, 1)], { sync: true });
      await expect(wal.save(undefined, [entry(2, 1), entry(1.5, 1)], { sync: true })).rejects.toBeInstanceOf(RangeError);
      await expect(wal.save(hs(-1, 0), [], { sync: true })).rejects.toBeInstanceOf(RangeError);
      await expect(wal.save({ term: 1, vote: 2n ** 64n, commit: 0 }, [], { sync: true })).rejects.toBeInstanceOf(RangeError);
      await expect(wal.saveSnapshot({ index: Number.MAX_SAFE_INTEGER + 2, term: 1 })).rejects.toBeInstanceOf(RangeError);
      await wal.save(hs(1, 1), [entry(2, 1, "fine")], { sync: true });
      await wal.close();
      const r = await reopen(t);
      expect(r.entries).toEqual([entry(1, 1), entry(2, 1, "fine")]);
      expect(r.hardState).toEqual(hs(1, 1));
    });

    it("owns its records: the caller may change what it saved and what it read", async () => {
      const wal = await create(t);
      const e = entry(1, 1, "original");
      const h = hs(1, 1);
      await wal.save(h, [e], { sync: true });
      e.data.fill(0);
      h.commit = 99;
      await wal.close();
      const r = await reopen(t);
      r.entries[0]!.data.fill(0);
      r.hardState.commit = 77;
      await r.wal.close();
      const again = await reopen(t);
      expect(again.entries).toEqual([entry(1, 1, "original")]);
      expect(again.hardState).toEqual(hs(1, 1));
    });

    it("opens after a snapshot marker with the entries after it; checks the marker's term", async () => {
      const wal = await create(small);
      for (let i = 1; i <= 200; i++) await wal.save(hs(1, i, 1n), [entry(i, 1, new Uint8Array(64))], { sync: false });
      const conf = { voters: [1n, 2n, 0xffffffffffffffffn], learners: [9n] };
      await wal.saveSnapshot({ index: 150, term: 1, confState: conf });
      await wal.saveSnapshot({ index: 190, term: 1 });
      for (let i = 201; i <= 260; i++) await wal.save(hs(1, i, 1n), [entry(i, 1, new Uint8Array(64))], { sync: false });
      await wal.saveSnapshot({ index: 300, term: 1 }); // above the commit: not valid to load yet
      await wal.close();
      expect(await small.dir.validSnapshotEntries()).toEqual([{ index: 0, term: 0 }, { index: 150, term: 1, confState: conf }, { index: 190, term: 1 }]);
      const r = await reopen(small, { index: 150, term: 1 });
      expect(r.entries.map((e) => e.index)).toEqual(Array.from({ length: 110 }, (_, k) => 151 + k));
      expect(r.hardState.commit).toBe(260);
      await r.wal.close();
      await expect(small.dir.open({ index: 150, term: 2 })).rejects.toBeInstanceOf(ErrSnapshotMismatch);
      await expect(small.dir.open({ index: 170, term: 1 })).rejects.toBeInstanceOf(ErrSnapshotNotFound);
    });

    it("releaseTo drops the log before the part holding the index; older markers are gone then", async () => {
      const wal = await create(small);
      for (let i = 1; i <= 200; i++) await wal.save(hs(1, i, 1n), [entry(i, 1, new Uint8Array(64))], { sync: false });
      await wal.saveSnapshot({ index: 150, term: 1 });
      for (let i = 201; i <= 260; i++) await wal.save(hs(1, i, 1n), [entry(i, 1, new Uint8Array(64))], { sync: false });
      await wal.releaseTo(150);
      await wal.save(hs(1, 261, 1n), [entry(261, 1)], { sync: true });
      await wal.close();
      await expect(small.dir.open(ZERO)).rejects.toBeInstanceOf(ErrWalNotFound);
      expect((await small.dir.validSnapshotEntries()).map((m) => m.index)).toEqual([150]);
      const r = await reopen(small, { index: 150, term: 1 });
      expect(r.entries.map((e) => e.index)).toEqual(Array.from({ length: 111 }, (_, k) => 151 + k));
      expect(r.hardState).toEqual(hs(1, 261, 1n));
      // Appending after the reopen continues the log.
      await r.wal.save(hs(2, 262, 1n), [entry(262, 2)], { sync: true });
      await r.wal.close();
      expect((await reopen(small, { index: 150, term: 1 })).entries.length).toBe(112);
    });

    it("refuses a log whose entries leave a gap", async () => {
      const wal = await create(t);
      await wal.save(undefined, [entry(1, 1), entry(2, 1)], { sync: true });
      await wal.save(undefined, [entry(5, 1)], { sync: true });
      await wal.close();
      await expect(t.dir.open(ZERO)).rejects.toBeInstanceOf(ErrWalCorrupt);
    });

    it("is open once at a time; a closed log refuses work; close is idempotent", async () => {
      const wal = await create(t);
      await expect(t.dir.open(ZERO)).rejects.toBeInstanceOf(ErrWalLocked);
      const racing = [1, 2, 3].map((i) => wal.save(hs(1, i), [entry(i, 1)], { sync: i === 2 }));
      const closing = wal.close();
      await expect(wal.save(undefined, [entry(4, 1)], { sync: true })).rejects.toBeInstanceOf(ErrWalClosed);
      await Promise.all(racing);
      await closing;
      await wal.close();
      await expect(wal.saveSnapshot({ index: 1, term: 1 })).rejects.toBeInstanceOf(ErrWalClosed);
      await expect(wal.releaseTo(1)).rejects.toBeInstanceOf(ErrWalClosed);
      const r = await reopen(t);
      expect(r.entries.map((e) => e.index)).toEqual([1, 2, 3]);
      expect(r.hardState).toEqual(hs(1, 3));
    });

    it("keeps everything a killed process saved, synced or not (the OS had it)", async () => {
      const saves: WalSave[] = [];
      for (let i = 1; i <= 30; i++) saves.push({ hardState: hs(1, i - 1), entries: [entry(i, 1, `kill-${i}`)], sync: i % 10 === 0 });
      await t.writeAndKill(META, saves);
      const r = await reopen(t);
      expect(r.entries.map((e) => Buffer.from(e.data).toString())).toEqual(saves.map((_, k) => `kill-${k + 1}`));
      expect(r.hardState).toEqual(hs(1, 29));
      await r.wal.save(hs(1, 30), [entry(31, 1)], { sync: true });
    });

    it("a killed process loses the deferred saves it still held, and nothing a later write carried", async () => {
      await t.writeAndKill(META, [
        { hardState: hs(1, 0), entries: [entry(1, 1)], sync: true },
        { hardState: hs(1, 1), entries: [], sync: false, deferred: true },
        // An ordinary unsynced save writes the held one before it.
        { entries: [entry(2, 1)], sync: false },
        { hardState: hs(1, 2), entries: [], sync: false, deferred: true },
      ]);
      const r = await reopen(t);
      expect(r.entries.map((e) => e.index)).toEqual([1, 2]);
      expect(r.hardState).toEqual(hs(1, 1));
      await r.wal.close();
    });

    it("agrees with a model under random saves, overwrites, markers, releases and reopens (SEED=)", async () => {
      const seed = testSeed();
      try {
        const r = new SeededRandom(seed);
        let wal = await create(small);
        let model: Entry[] = [];
        let hardState: HardState = { term: 0, vote: 0n, commit: 0 };
        let term = 1;
        let from = ZERO;
        let lastMarker = 0;
        for (let step = 0; step < 150; step++) {
          const roll = r.next();
          const last = model.length > 0 ? model[model.length - 1]!.index : from.index;
          if (roll < 0.7) {
            // As raft does: only uncommitted entries are ever overwritten.
            const floor = Math.max(from.index, hardState.commit, lastMarker);
            let next = r.next() < 0.1 && last > floor + 1 ? r.int(floor + 1, last) : last + 1;
            if (next <= last) term++;
            const batch: Entry[] = [];
            for (let k = r.int(0, 4); k > 0; k--) batch.push(entry(next++, term, new Uint8Array(r.int(0, 300)).fill(step & 0xff)));
            const newLast = batch.length > 0 ? batch[batch.length - 1]!.index : last;
            const h = r.next() < 0.7 ? hs(term, r.int(Math.min(hardState.commit, newLast), newLast), BigInt(r.int(1, 3))) : undefined;
            await wal.save(h, batch, { sync: r.next() < 0.5 });
            applyEntries(model, batch);
            if (h !== undefined) hardState = h;
          } else if (roll < 0.8 && Math.min(hardState.commit, last) > Math.max(from.index, lastMarker)) {
            // A snapshot at a committed index the log holds, newer than the last one (as raft's are).
            const at = r.int(Math.max(from.index, lastMarker) + 1, Math.min(hardState.commit, last));
            const atTerm = model.find((e) => e.index === at)!.term;
            await wal.saveSnapshot({ index: at, term: atTerm });
            lastMarker = at;
            if (r.next() < 0.5) await wal.releaseTo(at);
          } else if (roll < 0.9) {
            await wal.close();
            // Restart from the newest valid marker, as a member does.
            const valid = await small.dir.validSnapshotEntries();
            const newest = valid[valid.length - 1]!;
            const opened = await reopen(small, { index: newest.index, term: newest.term });
            wal = opened.wal;
            model = model.filter((e) => e.index > newest.index);
            from = { index: newest.index, term: newest.term };
            expect(opened.entries).toEqual(model);
            expect(opened.hardState).toEqual(hardState);
          }
        }
        await wal.close();
        const valid = await small.dir.validSnapshotEntries();
        expect(valid.every((m) => m.index <= hardState.commit)).toBe(true);
        const newest = valid[valid.length - 1]!;
        const opened = await reopen(small, { index: newest.index, term: newest.term });
        expect(opened.entries).toEqual(model.filter((e) => e.index > newest.index));
        expect(opened.hardState).toEqual(hardState);
      } catch (e) {
        console.error(`WAL model test failed with SEED=${seed}`);
        throw e;
      }
    });
  });
}
